-- spec/rockspec_spec.lua: `luarocks make` installs the rock into a local tree, and a fresh
-- interpreter loads moonbatch from that tree alone (lua-cjson from the system).
local shell = require("spec.support.shell")

describe("the rock", function()
  local lua_bin = arg[-1]
  local version = _VERSION:match("%d%.%d")

  it("installs with luarocks make and loads from the tree", function()
    local tree = os.tmpname()
    os.remove(tree)
    local log = tree .. ".log"
    local ok = shell.execute(("make -s rock LUA_VERSION=%s ROCK_TREE=%s > %s 2>&1"):format(version, tree, log))
    local out = shell.read_file(log) or ""
    os.remove(log)
    assert.is_true(ok, out)

    -- only the tree's paths: the checkout's lua/ and build/ must not be what loads
    -- (plain Lua 5.1 has no package.searchpath: the script carries a stand-in for it)
    local script = [[
      local searchpath = package.searchpath or function(name, path)
        name = name:gsub("%.", "/")
        for template in path:gmatch("[^;]+") do
          local file = template:gsub("%?", name)
          local f = io.open(file)
          if f then f:close() return file end
        end
      end
      local m = require("moonbatch")
      local core = searchpath("moonbatch.core", package.cpath)
      local lua = searchpath("moonbatch", package.path)
      io.write(m.version, " ", core, " ", lua)
    ]]
    local cmd = ("cd / && LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' " ..
                 "LUA_CPATH='%s/lib/lua/%s/?.so;;' %s -e %q 2>&1"):format(
                 tree, version, tree, version, tree, version, lua_bin, script)
    local loaded = shell.capture(cmd)
    os.execute("rm -rf " .. tree)
    local v, core, lua = loaded:match("^(%S+) (%S+) (%S+)$")
    assert.equal(require("moonbatch").version, v, loaded)
    assert.equal(tree .. "/lib/lua/" .. version .. "/moonbatch/core.so", core)
    assert.equal(tree .. "/share/lua/" .. version .. "/moonbatch/init.lua", lua)
  end)
end)

describe("the rockspec", function()
  local function lines_of(cmd)
    local out = {}
    for l in shell.capture(cmd):gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  local rockspec = assert(shell.read_file("moonbatch-scm-1.rockspec"))

  it("lists every Lua module of lua/moonbatch", function()
    for _, path in ipairs(lines_of("find lua/moonbatch -name '*.lua' | sort")) do
      local name = path:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.truthy(rockspec:find(('["%s"] = "%s"'):format(name, path), 1, true), path .. " is not in the rockspec")
    end
  end)

  it("compiles every C source of csrc", function()
    for _, path in ipairs(lines_of("ls csrc/*.c")) do
      assert.truthy(rockspec:find('"' .. path .. '"', 1, true), path .. " is not in the rockspec")
    end
  end)

  it("installs the command line", function()
    assert.truthy(rockspec:find('bin = { moonbatch = "bin/moonbatch" }', 1, true))
  end)
end)
