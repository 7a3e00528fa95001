-- spec/rockspec_spec.lua: the rock as users get it. `make rock` installs into a local tree; the
-- #slow part does what a new user on Debian does, with no environment but PATH and a fresh HOME:
-- plain `luarocks make` into fresh 5.1 and 5.4 trees from a copy of the checkout, then, from
-- another folder, require and one call against the installed stand-in started from that tree;
-- `make dist` and `luarocks install ./moonbatch-X.Y.Z-1.src.rock` into a fresh tree (no network
-- here: a download would fail); `luarocks lint`; one version everywhere.
local shell = require("spec.support.shell")
local rock = require("spec.support.rock")
local quote = shell.quote

local ROOT = shell.trim(shell.capture("pwd")) -- busted runs from the repository's root
local LUA_VERSION = _VERSION:match("%d%.%d")
local run_clean = rock.run_clean

-- the version the C module reports, which the rest must agree with
local function core_version()
  return require("moonbatch.core").version
end

local function lines_of(cmd)
  local out = {}
  for l in shell.capture(cmd):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- A file of Lua, run from outside the checkout against one tree: loads moonbatch, starts the
-- installed stand-in, lists files through it, prints what it saw as "name value" lines.
local USER_SCRIPT = [[
local searchpath = package.searchpath or function(name, path)
  name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local file = template:gsub("%?", name)
    local f = io.open(file)
    if f then f:close() return file end
  end
end
local mb = require("moonbatch")
local standin = require("moonbatch.standin")
print("version " .. mb.version)
print("core " .. searchpath("moonbatch.core", package.cpath))
print("lua " .. searchpath("moonbatch", package.path))
print("script " .. assert(standin.script()))
local sd = assert(standin.start({ key = "sk-test" }))
local client = mb.new({ provider = "siliconflow", base_url = sd:url("siliconflow"), api_key = "sk-test" })
local page, err = client.files.list()
print("listed " .. (page and #page.data or tostring(err)))
local log = sd:log()
print("logged " .. log[1].method .. " " .. log[1].path)
sd:stop()
sd:stop()
print("done")
]]

local function parse(out)
  local seen = {}
  for name, value in out:gmatch("(%S+) ([^\n]*)") do seen[name] = value end
  return seen
end

describe("the rock", function()
  local lua_bin = arg[-1]

  it("installs with make rock and loads from the tree", function()
    local tree = shell.tmpname()
    local log = tree .. ".log"
    local ok = shell.execute(("make -s rock LUA_VERSION=%s ROCK_TREE=%s > %s 2>&1"):format(LUA_VERSION, tree, log))
    local out = shell.read_file(log) or ""
    os.remove(log)
    assert.is_true(ok, out)
    -- only the tree's paths: the checkout's lua/ and build/ must not be what loads
    local cmd = ("cd / && LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' " ..
                 "LUA_CPATH='%s/lib/lua/%s/?.so;;' %s -e %s 2>&1"):format(
                 tree, LUA_VERSION, tree, LUA_VERSION, tree, LUA_VERSION, lua_bin,
                 quote(USER_SCRIPT:match("^(.-)local standin")
                   .. 'io.write(mb.version, " ", searchpath("moonbatch.core", package.cpath), " ", '
                   .. 'searchpath("moonbatch", package.path))'))
    local loaded = shell.capture(cmd)
    shell.execute("rm -rf " .. quote(tree))
    local v, core, lua = loaded:match("^(%S+) (%S+) (%S+)$")
    assert.equal(core_version(), v, loaded)
    assert.equal(tree .. "/lib/lua/" .. LUA_VERSION .. "/moonbatch/core.so", core)
    assert.equal(tree .. "/share/lua/" .. LUA_VERSION .. "/moonbatch/init.lua", lua)
  end)
end)

describe("#slow the rock, installed as a new user on Debian does", function()
  local tmp, home, src

  setup(function()
    tmp = shell.tmpdir()
    src = tmp .. "/src"
    rock.copy_checkout(src)
    assert(shell.execute("mkdir -p " .. quote(tmp .. "/x")))
    home = rock.fresh_home(tmp, { "5.1", "5.4" })
  end)

  teardown(function()
    if tmp then shell.execute("rm -rf " .. quote(tmp)) end
  end)

  for _, case in ipairs({ { "5.4", { "lua5.4" } }, { "5.1", { "lua5.1", "luajit" } } }) do
    local v, interpreters = case[1], case[2]
    it("luarocks --lua-version=" .. v .. " make, then require and a call against the installed stand-in", function()
      local tree = tmp .. "/tree-" .. v
      local ok, out = run_clean(home, src, ("luarocks --lua-version=%s --tree %s make"):format(v, quote(tree)))
      assert(ok, out)
      assert.matches("moonbatch scm%-1 is now installed", out)
      local rock_dir = ("%s/lib/luarocks/rocks-%s/moonbatch/scm-1"):format(tree, v)
      for _, path in ipairs({ tree .. "/bin/moonbatch", tree .. "/bin/moonbatch-standin",
                              rock_dir .. "/standin/nginx.conf.in", rock_dir .. "/standin/lua/standin/common.lua" }) do
        assert.is_true(shell.exists(path), path)
      end
      local script = tmp .. "/x/user.lua"
      shell.write_file(script, USER_SCRIPT)
      for _, lua in ipairs(interpreters) do
        ok, out = run_clean(home, tmp .. "/x", ('eval "$(luarocks --lua-version=%s --tree %s path)" && %s user.lua')
          :format(v, quote(tree), lua))
        assert(ok, out)
        local seen = parse(out)
        assert.equal(core_version(), seen.version, out)
        assert.equal(("%s/lib/lua/%s/moonbatch/core.so"):format(tree, v), seen.core)
        assert.equal(("%s/share/lua/%s/moonbatch/init.lua"):format(tree, v), seen.lua)
        assert.equal(rock_dir .. "/bin/moonbatch-standin", seen.script)
        assert.equal("0", seen.listed, out)
        assert.equal("GET /siliconflow/v1/files", seen.logged)
        assert.truthy(out:find("\ndone\n$"), out)
      end
      -- the commands luarocks put in the tree's bin/
      ok, out = run_clean(home, tmp .. "/x", ("%s/bin/moonbatch --version"):format(quote(tree)))
      assert(ok, out)
      assert.equal("moonbatch " .. core_version() .. "\n", out)
      ok, out = run_clean(home, tmp .. "/x", ("%s/bin/moonbatch-standin --check"):format(quote(tree)))
      assert(ok, out)
      assert.matches("nginx\n$", out)
      -- the copy in the tree's bin/ finds the files in the rock's folder, and serves
      ok, out = run_clean(home, tmp .. "/x", ([[
        %s/bin/moonbatch-standin --key sk-bin >out 2>&1 & pid=$!
        i=0; until grep -q '^control ' out || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
        url=$(sed -n 's/^openai //p' out)
        curl -s --noproxy '*' -H 'Authorization: Bearer sk-bin' "$url/files"; echo
        kill -TERM $pid; wait $pid; echo "exit $?"; cat out]]):format(quote(tree)))
      assert(ok, out)
      assert.matches('^{"object":"list","data":%[%]', out)
      assert.matches("\nexit 0\nsiliconflow http://127%.0%.0%.1:%d+/siliconflow/v1\n", out)
    end)
  end

  it("make dist, then luarocks install ./moonbatch-X.Y.Z-1.src.rock into a fresh tree (offline)", function()
    local version = core_version()
    local name = "moonbatch-" .. version
    local clone = tmp .. "/clone"
    -- make dist archives a commit: a clone of this one
    assert(shell.execute(("git clone -q %s %s 2>/dev/null"):format(quote(ROOT), quote(clone))))
    local ok, out = run_clean(home, clone, "make -s dist")
    assert(ok, out)
    for _, file in ipairs({ name .. ".tar.gz", name .. "-1.src.rock" }) do
      assert.is_true(shell.exists(clone .. "/" .. file), file .. " is missing: " .. out)
    end
    local listing = shell.capture("unzip -Z1 " .. quote(clone .. "/" .. name .. "-1.src.rock"))
    assert.same({ name .. "-1.rockspec", name .. ".tar.gz" }, (function()
      local l = {}
      for f in listing:gmatch("[^\n]+") do l[#l + 1] = f end
      table.sort(l)
      return l
    end)())
    assert.matches("^" .. name:gsub("%p", "%%%0") .. "/",
      shell.capture("tar tzf " .. quote(clone .. "/" .. name .. ".tar.gz") .. " | head -n 1"))

    local where, tree = tmp .. "/y", tmp .. "/tree-dist"
    assert(shell.execute(("mkdir -p %s && cp %s %s/"):format(quote(where), quote(clone .. "/" .. name .. "-1.src.rock"),
      quote(where))))
    ok, out = run_clean(home, where, ("luarocks --lua-version=5.4 --tree %s install ./%s-1.src.rock"):format(quote(tree), name))
    assert(ok, out)
    assert.matches("moonbatch " .. version:gsub("%p", "%%%0") .. "%-1 is now installed", out)
    ok, out = run_clean(home, where, ('eval "$(luarocks --lua-version=5.4 --tree %s path)" && '
      .. 'lua5.4 -e \'local m = require("moonbatch") print(m._VERSION, require("moonbatch.standin").script())\'')
      :format(quote(tree)))
    assert(ok, out)
    assert.equal(("moonbatch %s\t%s/lib/luarocks/rocks-5.4/moonbatch/%s-1/bin/moonbatch-standin\n")
      :format(version, tree, version), out)
  end)
end)

describe("the rockspecs", function()
  local scm = assert(shell.read_file("moonbatch-scm-1.rockspec"))
  local releases = lines_of("ls moonbatch-[0-9]*.rockspec")

  local function load_rockspec(path)
    local env = {}
    local chunk
    if setfenv then
      chunk = assert(loadfile(path))
      setfenv(chunk, env)
    else
      chunk = assert(loadfile(path, "t", env))
    end
    chunk()
    return env
  end

  it("are one release rockspec, moonbatch-<moonbatch.core's version>-1, beside the scm one", function()
    assert.same({ "moonbatch-" .. core_version() .. "-1.rockspec" }, releases)
    assert.equal(core_version() .. "-1", load_rockspec(releases[1]).version)
    assert.equal("scm-1", load_rockspec("moonbatch-scm-1.rockspec").version)
  end)

  it("give one version everywhere: moonbatch.core, moonbatch, make version, moonbatch --version", function()
    local version = core_version()
    assert.matches("^%d+%.%d+%.%d+$", version)
    local moonbatch = require("moonbatch")
    assert.equal(version, moonbatch.version)
    assert.equal("moonbatch " .. version, moonbatch._VERSION)
    assert.equal(version .. "\n", shell.capture("make -s version"))
    assert.equal("moonbatch " .. version .. "\n", shell.capture("bin/moonbatch --version 2>&1"))
  end)

  it("the release one is what make rockspec writes from the scm one", function()
    local dir = shell.tmpdir()
    local ok = shell.execute(("cp moonbatch-scm-1.rockspec %s/ && cd %s && lua5.4 %s/scripts/release-rockspec %s")
      :format(quote(dir), quote(dir), quote(ROOT), core_version()))
    local written = shell.read_file(dir .. "/" .. releases[1])
    shell.execute("rm -rf " .. quote(dir))
    assert.is_true(ok)
    assert.equal(written, shell.read_file(releases[1]), "run make rockspec: " .. releases[1] .. " is stale")
    local release = load_rockspec(releases[1])
    local name = "moonbatch-" .. core_version()
    assert.equal(name .. ".tar.gz", release.source.url:match("[^/]+$"))
    assert.equal(name, release.source.dir)
    assert.matches("^https://", release.source.url)
    assert.same(load_rockspec("moonbatch-scm-1.rockspec").build, release.build)
  end)

  it("pass luarocks lint", function()
    for _, path in ipairs({ "moonbatch-scm-1.rockspec", releases[1] }) do
      local out = shell.capture(("luarocks lint %s 2>&1; echo \"rc=$?\""):format(quote(path)))
      assert.matches("rc=0\n$", out, path .. ": " .. out)
    end
  end)

  it("look for libcurl by its library only, not in one include folder", function()
    local curl = load_rockspec("moonbatch-scm-1.rockspec").external_dependencies.CURL
    assert.same({ library = "curl" }, curl)
  end)

  it("list every Lua module of lua/moonbatch", function()
    for _, path in ipairs(lines_of("find lua/moonbatch -name '*.lua' | sort")) do
      local name = path:gsub("^lua/", ""):gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.truthy(scm:find(('["%s"] = "%s"'):format(name, path), 1, true), path .. " is not in the rockspec")
    end
  end)

  it("compile every C source of csrc", function()
    for _, path in ipairs(lines_of("ls csrc/*.c")) do
      assert.truthy(scm:find('"' .. path .. '"', 1, true), path .. " is not in the rockspec")
    end
  end)

  it("install the command line and the stand-in with its files", function()
    local build = load_rockspec("moonbatch-scm-1.rockspec").build
    assert.same({ moonbatch = "bin/moonbatch", ["moonbatch-standin"] = "bin/moonbatch-standin" }, build.install.bin)
    local copied = {}
    for _, d in ipairs(build.copy_directories) do copied[d] = true end
    assert.is_true(copied.standin)
  end)
end)
