-- spec/nvim_plugin_spec.lua: moonbatch as a Neovim plugin, the way lazy.nvim installs it: the
-- working tree's files copied into a fresh folder (a clone: nothing built, no doc/tags), its
-- build hook `make nvim` run there, then `nvim --headless --clean` with only that clone on the
-- runtimepath (nothing on package.path/cpath): moonbatch.nvim loads, :help moonbatch opens,
-- :checkhealth moonbatch reports, and an upload and a batch go through moonbatch.nvim to the
-- stand-in. Before `make nvim` the same Neovim cannot load it. Also core.curl(), which the
-- health check reports, against curl-config. The Neovim part is #slow (Lua 5.4 run only).
local shell = require("spec.support.shell")
local quote = shell.quote
local ROOT = shell.trim(shell.capture("pwd")) -- busted runs from the repository's root

describe("moonbatch.core.curl()", function()
  local core = require("moonbatch.core")

  it("describes the libcurl moonbatch runs on, as curl-config does", function()
    local c = core.curl()
    local version = shell.capture("curl-config --version 2>/dev/null"):match("libcurl (%S+)")
    if version then assert.equal(version, c.version) end
    local vernum = shell.capture("curl-config --vernum 2>/dev/null"):match("%x+")
    if vernum then assert.equal(tonumber(vernum, 16), c.version_num) end
    assert.matches("^%d+%.%d+%.%d+", c.version)
    assert.equal("number", type(c.version_num))
    if math.type then assert.equal("integer", math.type(c.version_num)) end
    assert.equal("table", type(c.features))
    assert.equal(c.ssl ~= nil, c.features.ssl)
    for name, on in pairs(c.features) do
      assert.equal("string", type(name))
      assert.equal("boolean", type(on))
    end
    -- curl(1) on this machine runs on the same libcurl: it names the same TLS backend
    local curl_line = shell.capture("curl --version 2>/dev/null"):match("^[^\n]*") or ""
    if c.ssl and curl_line:find("libcurl/" .. c.version, 1, true) then
      assert.truthy(curl_line:find(c.ssl, 1, true), curl_line .. " does not name " .. c.ssl)
    end
    assert.equal("libcurl/" .. c.version .. " " .. (c.ssl or ""), core.curl_version)
  end)
end)

describe("#slow moonbatch as a Neovim plugin (a clone on the runtimepath, make nvim)", function()
  local standin = require("spec.standin_helper")
  local KEY = "sk-plugin-7c1f0e"
  local s, tmp, clone, requests

  -- nvim --headless --clean from a neutral folder, only the clone added to the runtimepath, and
  -- no Lua paths from the environment; the results the host script wrote
  local function run_nvim(env)
    local out = tmp .. "/out.json"
    os.remove(out)
    env.MOONBATCH_PLUGIN_OUT = out
    -- the variables (a key among them) through a file the shell reads, never on a command line
    local vars = {}
    for k, v in pairs(env) do vars[#vars + 1] = ("export %s=%s\n"):format(k, quote(v)) end
    shell.write_file(tmp .. "/env.sh", table.concat(vars))
    local words = { "cd", quote(tmp), "&&", "unset LUA_PATH LUA_CPATH LUA_INIT LUA_PATH_5_1 LUA_CPATH_5_1",
                    "MOONBATCH_API_KEY SILICONFLOW_API_KEY OPENAI_API_KEY TOGETHER_API_KEY MOONBATCH_PROVIDER",
                    "MOONBATCH_BASE_URL MOONBATCH_LOG &&", ". ./env.sh &&" }
    words[#words + 1] = "timeout 60 nvim --headless --clean -i NONE -n"
    words[#words + 1] = "--cmd " .. quote("set rtp^=" .. clone)
    -- a host script that raises quits at once (with the error in nvim.log)
    words[#words + 1] = "-c " .. quote(("lua local ok, e = pcall(dofile, %q) if not ok then " ..
                                        "io.stderr:write(tostring(e), '\\n') vim.cmd('cquit') end")
                                       :format(ROOT .. "/spec/hosts/nvim_plugin.lua"))
    words[#words + 1] = "</dev/null >" .. quote(tmp .. "/nvim.log") .. " 2>&1"
    os.execute(table.concat(words, " "))
    local text = shell.read_file(out)
    assert.truthy(text, "nvim wrote nothing: " .. (shell.read_file(tmp .. "/nvim.log") or ""))
    return require("cjson").decode(text)
  end

  local function health_text(r)
    return table.concat(r.health, "\n")
  end

  local function env_for_upload()
    return { MOONBATCH_PROVIDER = "together", TOGETHER_API_KEY = KEY,
             MOONBATCH_PLUGIN_URL = s.urls.together, MOONBATCH_PLUGIN_FILE = requests }
  end

  setup(function()
    assert(shell.execute("git -C " .. quote(ROOT) .. " rev-parse --is-inside-work-tree >/dev/null 2>&1"),
           "this spec copies the files git knows: run it from a git checkout")
    s = standin.start({ key = KEY })
    tmp = shell.tmpdir()
    clone = tmp .. "/moonbatch"
    -- the working tree's files as git knows them (tracked, and new ones not ignored): nothing
    -- that make builds comes along
    assert(shell.execute(("mkdir %s && git ls-files -z --cached --others --exclude-standard | " ..
                          "tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C %s")
                         :format(quote(clone), quote(clone))))
    requests = tmp .. "/requests.jsonl"
    shell.write_file(requests, table.concat({
      '{"custom_id":"a","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}',
      '{"custom_id":"b","body":{"model":"m","messages":[{"role":"user","content":"ho"}]}}', "" }, "\n"))
  end)

  teardown(function()
    if tmp then shell.execute("rm -rf " .. quote(tmp)) end
    if s then s:stop() end
  end)

  it("cannot load moonbatch.nvim before make nvim, and :checkhealth says what to run", function()
    assert.is_false(shell.exists(clone .. "/lua/moonbatch/core.so"), "the copy is not fresh")
    assert.is_false(shell.exists(clone .. "/doc/tags"), "the copy is not fresh")
    local r = run_nvim(env_for_upload())
    assert.is_false(r.loaded)
    assert.matches("moonbatch%.core", r.load_error)
    assert.matches("ERROR: moonbatch.core cannot be loaded", health_text(r), 1, true)
    assert.truthy(health_text(r):find("run `make nvim` in " .. clone, 1, true), health_text(r))
    -- no tags yet: :help moonbatch finds nothing
    assert.is_false(r.help.moonbatch.ok)
  end)

  -- `make nvim` and what it printed, run in the clone as lazy.nvim runs its build hook:
  -- `$SHELL -c "make nvim"` in the plugin's folder
  local function make_nvim(args)
    local log = tmp .. "/make.log"
    local ok = shell.execute(("cd %s && env -u LUA_INCDIR -u CFLAGS -u MAKEFLAGS sh -c %s >%s 2>&1")
                             :format(quote(clone), quote("make nvim " .. (args or "")), quote(log)))
    return ok, shell.read_file(log) or ""
  end

  it("make nvim without Lua headers fails, naming what to install or the bad LUA_INCDIR, and builds nothing", function()
    local ok, out = make_nvim("NVIM_INCDIRS=")
    assert.is_false(ok)
    assert.truthy(out:find("make nvim: no Lua 5.1 headers (lua.h) found: install libluajit-5.1-dev", 1, true), out)
    ok, out = make_nvim("LUA_INCDIR=" .. tmp .. "/nowhere")
    assert.is_false(ok)
    assert.truthy(out:find("make nvim: LUA_INCDIR=" .. tmp .. "/nowhere has no lua.h", 1, true), out)
    assert.is_false(shell.exists(clone .. "/lua/moonbatch/core.so"))
    assert.is_false(shell.exists(clone .. "/build/nvim/moonbatch/core.so"))
  end)

  it("make nvim builds lua/moonbatch/core.so and doc/tags in the clone, as lazy.nvim's build hook runs it", function()
    local ok, out = make_nvim()
    assert.is_true(ok, out)
    assert.is_true(shell.exists(clone .. "/lua/moonbatch/core.so"), out)
    assert.truthy(out:find("make nvim: lua/moonbatch/core.so built against /", 1, true), out)
    local tags = {}
    for name, file in (shell.read_file(clone .. "/doc/tags") or ""):gmatch("([^\t\n]+)\t([^\t\n]+)\t[^\n]*") do
      tags[name] = file
    end
    for _, tag in ipairs({ "moonbatch", "moonbatch-setup", "moonbatch.nvim", "moonbatch-checkhealth",
                           "moonbatch-api", "moonbatch-errors", "moonbatch-standin", "moonbatch-options" }) do
      assert.equal("moonbatch.txt", tags[tag], tag .. " is not in doc/tags")
    end
    -- what make nvim makes stays out of git: a clone built by a plugin manager stays clean
    for _, made in ipairs({ "lua/moonbatch/core.so", "doc/tags", "build/nvim/moonbatch/core.so" }) do
      assert.is_true(shell.execute(("git -C %s check-ignore -q %s"):format(quote(ROOT), made)),
                     made .. " is not in .gitignore")
    end
  end)

  it("then loads from the runtimepath alone, opens :help, runs :checkhealth and an upload and a batch", function()
    local r = run_nvim(env_for_upload())
    assert.is_true(r.loaded, r.load_error)
    -- from the clone, through Neovim's runtimepath loader: package.path/cpath cannot find it
    assert.same({ clone .. "/lua/moonbatch/core.so" }, r.rtp_core)
    assert.same({ clone .. "/lua/moonbatch/init.lua" }, r.rtp_init)
    assert.is_false(r.cpath_core)
    assert.is_false(r.path_init)

    for tag, h in pairs(r.help) do
      assert.is_true(h.ok, tag .. ": " .. tostring(h.error))
      assert.equal("help", h.buftype, tag)
      assert.equal("moonbatch.txt", h.file, tag)
      assert.truthy(h.line:find("*" .. tag .. "*", 1, true), tag .. " is not on the line :help jumped to: " .. h.line)
    end

    assert.same({}, r.broken_links)
    assert.is_true(r.links >= 10, "too few |links| found: " .. tostring(r.links))

    local health = health_text(r)
    local core = require("moonbatch.core")
    local version = core.version or require("moonbatch").version
    assert.truthy(health:find(("OK: moonbatch.core %s loaded from %s/lua/moonbatch/core.so"):format(version, clone),
                              1, true), health)
    assert.truthy(health:find("OK: moonbatch.nvim loaded (Lua layer from " .. clone .. "/lua/moonbatch/nvim.lua)", 1, true),
                  health)
    local c = core.curl()
    assert.truthy(health:find("OK: libcurl " .. c.version .. " (", 1, true), health)
    assert.truthy(health:find("OK: TLS backend: " .. tostring(c.ssl), 1, true), health)
    assert.truthy(health:find("OK: API key for provider together (from $MOONBATCH_PROVIDER): TOGETHER_API_KEY is set",
                              1, true), health)
    assert.is_nil(health:find(KEY, 1, true), "the key is in :checkhealth's report")
    assert.is_nil(health:find("ERROR", 1, true), health)
    if shell.exists(clone .. "/lua/moonbatch/standin.lua") or shell.exists(clone .. "/lua/moonbatch/standin/init.lua") then
      assert.matches("OK: stand%-in available: nginx /%S+", health)
    else
      assert.truthy(health:find("WARNING: the stand-in is not installed: no module moonbatch.standin", 1, true), health)
    end

    -- Neovim 0.10+'s vim.health.start/ok/warn/error get the same report
    assert.is_nil(r.modern_error)
    local modern = table.concat(r.modern, "\n")
    assert.truthy(modern:find("start: moonbatch: the C module", 1, true), modern)
    assert.truthy(modern:find("ok: libcurl " .. c.version, 1, true), modern)
    assert.truthy(modern:find("ok: API key for provider together", 1, true), modern)

    -- the operation: provider from $MOONBATCH_PROVIDER, on the stand-in, callbacks on the main loop
    assert.is_nil(r.op_error)
    assert.equal("together", r.provider)
    assert.equal("file", r.file.object)
    assert.matches("^file%-", r.file.id)
    assert.equal(#shell.read_file(requests), r.file.bytes)
    assert.equal(r.file.id, r.batch.input_file_id)
    assert.is_true(r.in_main_loop)
    local paths = {}
    for _, e in ipairs(s:log()) do paths[#paths + 1] = e.method .. " " .. e.path end
    assert.same({ "POST /together/v1/files/upload", "POST /together/v1/batches" }, paths)
  end)

  it("works without a lua-cjson for Lua 5.1: Neovim's vim.json serves", function()
    s:reset()
    local r = run_nvim({ MOONBATCH_PLUGIN_NO_CJSON = "1", MOONBATCH_PROVIDER = "together", TOGETHER_API_KEY = KEY,
                         MOONBATCH_PLUGIN_URL = s.urls.together, MOONBATCH_PLUGIN_FILE = requests })
    assert.is_true(r.loaded, r.load_error)
    assert.truthy(health_text(r):find("OK: lua-cjson: Neovim's built-in vim.json", 1, true), health_text(r))
    assert.is_nil(r.op_error)
    assert.equal(r.file.id, r.batch.input_file_id)
  end)

  it("make nvim honours LUA_INCDIR: plain Lua 5.1's headers (the same ABI) build everything again and load", function()
    if not shell.exists("/usr/include/lua5.1/lua.h") then return pending("no /usr/include/lua5.1") end
    local ok, out = make_nvim("LUA_INCDIR=/usr/include/lua5.1")
    assert.is_true(ok, out)
    assert.truthy(out:find("make nvim: lua/moonbatch/core.so built against /usr/include/lua5.1/lua.h", 1, true), out)
    assert.truthy(out:find("%-I/usr/include/lua5%.1%s+%-c csrc/core%.c"), "core.c was not compiled again:\n" .. out)
    s:reset()
    local r = run_nvim(env_for_upload())
    assert.is_true(r.loaded, r.load_error)
    assert.is_nil(r.op_error)
    assert.equal(r.file.id, r.batch.input_file_id)
  end)

  it("reports a missing key and an unknown provider in :checkhealth, naming the variable", function()
    local r = run_nvim({ MOONBATCH_PROVIDER = "siliconflow-global", MOONBATCH_PLUGIN_URL = s.urls.siliconflow,
                         MOONBATCH_PLUGIN_FILE = requests })
    assert.truthy(health_text(r):find("WARNING: no API key for provider siliconflow-global (from $MOONBATCH_PROVIDER): " ..
                                      "neither SILICONFLOW_API_KEY nor MOONBATCH_API_KEY is set", 1, true), health_text(r))
    -- the upload then fails as moonbatch says, through the callback
    assert.equal("validation", r.op_kind)
    r = run_nvim({ MOONBATCH_PROVIDER = "nosuch", MOONBATCH_PLUGIN_URL = s.urls.siliconflow,
                   MOONBATCH_PLUGIN_FILE = requests })
    assert.truthy(health_text(r):find("ERROR: provider 'nosuch' (from $MOONBATCH_PROVIDER) is unknown", 1, true),
                  health_text(r))
    assert.matches("unknown provider 'nosuch'", r.new_error)
    -- vim.g.moonbatch_provider comes before $MOONBATCH_PROVIDER, for the check and for new()
    r = run_nvim({ MOONBATCH_PLUGIN_G_PROVIDER = "openai", MOONBATCH_PROVIDER = "together", OPENAI_API_KEY = KEY,
                   MOONBATCH_PLUGIN_URL = s.urls.openai, MOONBATCH_PLUGIN_FILE = requests })
    assert.truthy(health_text(r):find("OK: API key for provider openai (from vim.g.moonbatch_provider): OPENAI_API_KEY is set",
                                      1, true), health_text(r))
    assert.equal("openai", r.provider)
  end)

  it("warns in :checkhealth when lua/moonbatch/core.so is older than the C sources (make nvim not run again)", function()
    local r = run_nvim(env_for_upload())
    assert.is_nil(health_text(r):find("is older than", 1, true), health_text(r))
    assert(shell.execute("touch -d '+1 hour' " .. quote(clone .. "/csrc/multi.c")))
    r = run_nvim(env_for_upload())
    assert.truthy(health_text(r):find("WARNING: " .. clone .. "/lua/moonbatch/core.so is older than csrc/multi.c", 1, true),
                  health_text(r))
    assert.truthy(health_text(r):find("run `make nvim` in " .. clone, 1, true), health_text(r))
  end)
end)
