-- spec/rockspec_spec.lua: `luarocks make` installs the rock into a local tree, and a fresh
-- interpreter loads moonbatch from that tree alone (lua-cjson from the system).
describe("the rock", function()
  local lua_bin = arg[-1]
  local version = _VERSION:match("%d%.%d")

  it("installs with luarocks make and loads from the tree", function()
    local tree = os.tmpname()
    os.remove(tree)
    local log = tree .. ".log"
    local ok = os.execute(("make -s rock LUA_VERSION=%s ROCK_TREE=%s > %s 2>&1"):format(version, tree, log))
    local f = io.open(log)
    local out = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(log)
    assert.is_true(ok == true or ok == 0, out)

    -- only the tree's paths: the checkout's lua/ and build/ must not be what loads
    local script = [[
      local m = require("moonbatch")
      local core = package.searchpath("moonbatch.core", package.cpath)
      local lua = package.searchpath("moonbatch", package.path)
      io.write(m.version, " ", core, " ", lua)
    ]]
    local cmd = ("cd / && LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' " ..
                 "LUA_CPATH='%s/lib/lua/%s/?.so;;' %s -e %q 2>&1"):format(
                 tree, version, tree, version, tree, version, lua_bin, script)
    local p = io.popen(cmd)
    local loaded = p:read("*a")
    p:close()
    os.execute("rm -rf " .. tree)
    local v, core, lua = loaded:match("^(%S+) (%S+) (%S+)$")
    assert.equal(require("moonbatch").version, v, loaded)
    assert.equal(tree .. "/lib/lua/" .. version .. "/moonbatch/core.so", core)
    assert.equal(tree .. "/share/lua/" .. version .. "/moonbatch/init.lua", lua)
  end)
end)
