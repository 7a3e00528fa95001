-- spec/standin_api_spec.lua: moonbatch.standin, the public module that starts the stand-in from
-- a user's test suite: the README's busted example, the base URLs, faults, settings and log,
-- an idempotent stop (and a stop when the process that started it exits), a missing nginx or
-- Lua module named by the package to install, misuse raising, and the key kept off every
-- command line.
local standin = require("moonbatch.standin")
local moonbatch = require("moonbatch")
local shell = require("spec.support.shell")
local quote, capture, execute = shell.quote, shell.capture, shell.execute

local REQUESTS = '{"custom_id":"r-1","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n'

local eventually = shell.eventually

local function answers(url)
  return execute("curl -s --noproxy '*' --max-time 1 -o /dev/null " .. quote(url) .. " 2>/dev/null")
end

describe("moonbatch.standin", function()
  local sd, dir

  setup(function()
    sd = assert(standin.start({ key = "sk-test" }))
    dir = shell.tmpdir()
    shell.write_file(dir .. "/requests.jsonl", REQUESTS)
  end)

  teardown(function()
    if sd then sd:stop() end
    if dir then execute("rm -rf " .. quote(dir)) end
  end)

  before_each(function() sd:reset() end)

  it("runs the README's example: a 503 from faults, retried, two requests in the log", function()
    sd:faults({ dialect = "siliconflow", method = "POST", path = "/files",
                faults = { { status = 503, retry_after = "0" } } })
    local client = moonbatch.new({ provider = "siliconflow", base_url = sd:url("siliconflow"), api_key = "sk-test" })
    local file, err = client.files.upload({ file = dir .. "/requests.jsonl" })
    assert.is_table(file, err)
    local log = sd:log()
    assert.equal(2, #log)
    assert.equal("POST", log[2].method)
    assert.equal("/siliconflow/v1/files", log[2].path)
    assert.equal(REQUESTS, sd:file_content(file.id))
  end)

  it("gives the base URL of each dialect, as urls and as url()", function()
    for _, name in ipairs({ "siliconflow", "siliconflow-global", "together", "openai" }) do
      assert.equal(("http://127.0.0.1:%d/%s/v1"):format(sd.port, name), sd.urls[name])
      assert.equal(sd.urls[name], sd:url(name))
    end
    assert.equal(("http://127.0.0.1:%d/_standin"):format(sd.port), sd.control)
    assert.error_matches(function() sd:url("nosuch") end, "no dialect nosuch")
    local page = assert(moonbatch.new({ provider = "openai", base_url = sd:url("openai"), api_key = "sk-test" }).files.list())
    assert.same({}, page.data)
  end)

  it("takes faults by whole path too, and refuses bad ones naming what is wrong", function()
    sd:faults({ method = "GET", path = "/openai/v1/files", faults = { { status = 500, count = 1 } } })
    local client = moonbatch.new({ provider = "openai", base_url = sd:url("openai"), api_key = "sk-test",
                                   max_retries = 0 })
    local page, _, info = client.files.list()
    assert.is_nil(page)
    assert.equal(500, info.status)
    assert.error_matches(function() sd:faults({ path = "/x", faults = {} }) end, "spec%.method must be a string")
    assert.error_matches(function() sd:faults({ method = "GET", path = "x", faults = {} }) end, "spec%.path")
    assert.error_matches(function() sd:faults({ method = "GET", path = "/x" }) end, "spec%.faults must be a list")
    assert.error_matches(function() sd:faults({ dialect = "nope", method = "GET", path = "/x", faults = {} }) end,
      "no dialect nope")
    assert.error_matches(function() sd:faults({ method = "GET", path = "/x", faults = { { teleport = 1 } } }) end,
      "HTTP 400")
  end)

  it("changes and reads the batch settings", function()
    assert.equal(0.2, sd:config({ step_seconds = 0.2 }).step_seconds)
    assert.equal(0.2, sd:config().step_seconds)
    sd:reset()
    assert.equal(1, sd:config().step_seconds)
  end)

  it("answers available() with the nginx it runs, or the package to install", function()
    local ok, nginx = standin.available()
    assert.is_true(ok, nginx)
    assert.matches("nginx$", nginx)
    local none, msg = standin.available({ nginx = "/bin/true" })
    assert.is_nil(none)
    assert.equal("/bin/true has no Lua module: install libnginx-mod-http-lua (Debian, Ubuntu: apt-get install "
      .. "libnginx-mod-http-lua) or OpenResty (https://openresty.org)", msg)
    none, msg = standin.available({ nginx = "/no/such/nginx" })
    assert.is_nil(none)
    assert.matches("^/no/such/nginx not found: install nginx and its Lua module %(Debian, Ubuntu: apt%-get install "
      .. "nginx libnginx%-mod%-http%-lua%) or OpenResty", msg)
  end)

  it("returns nil and the package to install when start cannot find nginx's Lua module", function()
    local s, msg, info = standin.start({ nginx = "/bin/true" })
    assert.is_nil(s)
    assert.matches("^moonbatch%-standin did not start: /bin/true has no Lua module: install libnginx%-mod%-http%-lua", msg)
    assert.equal("standin", info.kind)
  end)

  it("raises on misuse, naming the option", function()
    for _, case in ipairs({
      { { key = "" }, "opts%.key must be" }, { { key = "a b" }, "opts%.key must be" }, { { key = 7 }, "opts%.key" },
      { { port = "80" }, "opts%.port must be" }, { { port = 70000 }, "opts%.port" }, { { port = 1.5 }, "opts%.port" },
      { { dir = true }, "opts%.dir must be a string" }, { { watch_pid = "me" }, "opts%.watch_pid" },
      { { env = { ["A B"] = "x" } }, "opts%.env" }, { { nginx = 1 }, "opts%.nginx" },
    }) do
      assert.error_matches(function() standin.start(case[1]) end, case[2])
    end
    assert.error_matches(function() standin.start("sk-test") end, "opts must be a table")
    assert.error_matches(function() standin.available({ nginx = 1 }) end, "opts%.nginx must be a string")
  end)

  it("never puts the key on a command line", function()
    local key = "sk-only-in-a-file-" .. os.time()
    local other = assert(standin.start({ key = key }))
    finally(function() other:stop() end)
    local args = capture("ps -eo args 2>/dev/null")
    assert.truthy(args:find("moonbatch-standin", 1, true), "ps shows no stand-in: " .. args)
    assert.falsy(args:find(key, 1, true))
    -- the key did reach the stand-in
    local ok = moonbatch.new({ provider = "together", base_url = other:url("together"), api_key = key }).files.list()
    assert.is_table(ok)
  end)

  it("stops once however often stop is called, and its port closes", function()
    local other = assert(standin.start())
    local control, pid = other.control, other.pid
    assert.is_true(answers(control .. "/health"))
    other:stop()
    other:stop()
    assert.is_false(shell.alive(pid))
    assert.is_false(answers(control .. "/health"))
  end)

  it("stops when the process that started it exits without stop", function()
    local lua = arg[-1]
    -- the child loads what this process loads (the checkout's Lua, this build of moonbatch.core)
    local out = capture(("%s -e %s 2>&1"):format(quote(lua), quote(([[
      package.path, package.cpath = %q, %q
      local sd = assert(require("moonbatch.standin").start())
      io.write(sd.pid, " ", sd.control, "\n")
    ]]):format("lua/?.lua;lua/?/init.lua;" .. package.path, package.cpath))))
    local pid, control = out:match("^(%d+) (%S+)\n$")
    assert.truthy(pid, out)
    assert.is_true(eventually(5, function() return not shell.alive(tonumber(pid)) end))
    assert.is_false(answers(control .. "/health"))
  end)
end)
