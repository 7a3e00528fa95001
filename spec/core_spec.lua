-- spec/core_spec.lua: moonbatch.core, one exchange per call, against the stand-in over real sockets.
local core = require("moonbatch.core")
local fixture = require("spec.support.fixture")
local shell = require("spec.support.shell")
local write_file, tmpname = shell.write_file, shell.tmpname

local KEY = "sk-standin"
local lua_bin = arg and arg[-1] or "lua5.4" -- the interpreter running busted

local requests = table.concat({
  '{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}',
  '{"custom_id":"r2","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}',
}, "\n") .. "\n"

describe("moonbatch.core", function()
  local s, base, input

  fixture.standin({ key = KEY, input = requests, suffix = ".jsonl" }, function(new_s, _, new_input)
    s, base, input = new_s, new_s.urls.siliconflow, new_input
  end)

  describe("files.upload", function()
    it("sends a multipart form with purpose and the file, the bearer key, and decodes the reply", function()
      local body, res = core.files.upload({ base_url = base, api_key = KEY, file = input, purpose = "batch" })
      assert.equal(200, res.status)
      assert.is_true(res.json)
      assert.equal(20000, body.code)
      assert.equal(#requests, body.data.bytes)
      assert.truthy(res.headers["content-type"]:find("application/json", 1, true))

      local log = s:log()
      assert.equal(1, #log)
      local e = log[1]
      assert.equal("POST", e.method)
      assert.equal("/siliconflow/v1/files", e.path)
      assert.equal("ok", e.auth)
      assert.truthy(e.headers["content-type"]:find("^multipart/form%-data; boundary="))
      assert.equal("batch", e.fields.purpose)
      assert.equal(input:match("[^/]+$"), e.fields.file.filename)
      assert.equal(#requests, e.fields.file.bytes)
      assert.equal(2, e.fields.file.lines)
      assert.equal(requests, s:file_content(body.data.id))
    end)

    it("sends purpose 'batch' by default, extra fields, and the filename given", function()
      core.files.upload({ base_url = base, api_key = KEY, file = input, filename = "named.jsonl",
                          fields = { extra = "1" } })
      local e = s:log()[1]
      assert.equal("batch", e.fields.purpose)
      assert.equal("1", e.fields.extra)
      assert.equal("named.jsonl", e.fields.file.filename)
    end)

    it("returns nil, msg, info{kind='io'} for a missing file and sends nothing", function()
      local body, msg, info = core.files.upload({ base_url = base, api_key = KEY, file = "/no/such.jsonl" })
      assert.is_nil(body)
      assert.truthy(msg:find("/no/such.jsonl", 1, true))
      assert.equal("io", info.kind)
      assert.equal(0, #s:log())
    end)

    it("refuses a directory as the file", function()
      local _, _, info = core.files.upload({ base_url = base, api_key = KEY, file = "/tmp" })
      assert.equal("io", info.kind)
      assert.equal(0, #s:log())
    end)

    it("reports upload progress up to the file's size", function()
      local calls, last_done, last_total, backwards = 0, -1, nil, false
      core.files.upload({ base_url = base, api_key = KEY, file = input, on_progress = function(done, total)
        calls = calls + 1
        if done < last_done then backwards = true end
        last_done, last_total = done, total
      end })
      assert.is_true(calls > 0)
      assert.is_false(backwards)
      assert.is_true(last_total >= #requests)
    end)

    it("raises an on_progress error after the transfer, and the session stays usable", function()
      local session = core.session()
      assert.has_error(function()
        core.files.upload({ base_url = base, api_key = KEY, file = input, session = session,
                            on_progress = function() error("stop here") end })
      end)
      local body, res = core.files.list({ base_url = base, api_key = KEY, purpose = "batch", session = session })
      assert.equal(200, res.status)
      assert.equal(20000, body.code)
      session:close()
    end)
  end)

  describe("files.list", function()
    it("sends GET with purpose and limit in the query", function()
      core.files.upload({ base_url = base, api_key = KEY, file = input })
      local body, res = core.files.list({ base_url = base, api_key = KEY, purpose = "batch", limit = 10 })
      assert.equal(200, res.status)
      assert.equal(1, #body.data.data)
      local e = s:log()[2]
      assert.equal("GET", e.method)
      assert.same({ purpose = "batch", limit = "10" }, e.query)
    end)

    it("percent-encodes query values and adds extra query parameters", function()
      core.files.list({ base_url = base, api_key = KEY, purpose = "a b&c", after = "f/1",
                        query = { order = "asc", n = 2 } })
      assert.same({ purpose = "a b&c", after = "f/1", order = "asc", n = "2" }, s:log()[1].query)
    end)
  end)

  describe("batches.create", function()
    it("sends the documented JSON body and returns the plain batch object", function()
      local file = core.files.upload({ base_url = base, api_key = KEY, file = input })
      local body, res = core.batches.create({ base_url = base, api_key = KEY, input_file_id = file.data.id,
        endpoint = "/v1/chat/completions", completion_window = "48h",
        metadata = { description = "nightly eval job" }, replace = { model = "deepseek-ai/DeepSeek-V3" } })
      assert.equal(200, res.status)
      assert.equal("in_queue", body.status)
      assert.equal("batch", body.object)
      local e = s:log()[2]
      assert.truthy(e.headers["content-type"]:find("application/json", 1, true))
      assert.same({ input_file_id = file.data.id, endpoint = "/v1/chat/completions",
                    completion_window = "48h", metadata = { description = "nightly eval job" },
                    replace = { model = "deepseek-ai/DeepSeek-V3" } }, e.json)
    end)

    it("sends the caller's endpoint (no default of its own) and fills completion_window", function()
      core.batches.create({ base_url = base, api_key = KEY, input_file_id = "file-x", endpoint = "/v1/embeddings" })
      local e = s:log()[1]
      assert.same({ input_file_id = "file-x", endpoint = "/v1/embeddings", completion_window = "24h" }, e.json)
    end)
  end)

  describe("replies", function()
    it("decodes a bare JSON string body (401 'Invalid token')", function()
      local body, res = core.files.list({ base_url = base, api_key = "wrong", purpose = "batch" })
      assert.equal(401, res.status)
      assert.equal("Invalid token", body)
      assert.is_true(res.json)
      assert.equal("wrong", s:log()[1].auth)
    end)

    it("returns a body that is not JSON as a string", function()
      local body, res = core.request({ url = base .. "/nowhere", headers = { Authorization = "Bearer " .. KEY } })
      assert.equal(404, res.status)
      assert.is_false(res.json)
      assert.equal("404 page not found", body)
    end)

    it("keeps the raw body when JSON is announced but broken", function()
      s:fault("GET", "/siliconflow/v1/files", { { status = 200, body = '{"code": 2', content_type = "application/json" } })
      local body, res = core.files.list({ base_url = base, api_key = KEY, purpose = "batch" })
      assert.equal('{"code": 2', body)
      assert.is_false(res.json)
      assert.is_string(res.json_error)
    end)

    it("lower-cases header names", function()
      s:fault("GET", "/siliconflow/v1/files", { { status = 503, retry_after = "7" } })
      local _, res = core.files.list({ base_url = base, api_key = KEY, purpose = "batch" })
      assert.equal(503, res.status)
      assert.equal("7", res.headers["retry-after"])
    end)

    it("refuses a reply larger than max_reply_bytes", function()
      local body, msg, info = core.files.list({ base_url = base, api_key = "wrong", purpose = "batch",
                                                max_reply_bytes = 4 })
      assert.is_nil(body)
      assert.equal("decode", info.kind)
      assert.truthy(msg:find("max_reply_bytes", 1, true))
    end)
  end)

  describe("transfer failures", function()
    it("returns kind 'network' when nothing listens", function()
      local body, msg, info = core.request({ url = "http://127.0.0.1:1/v1/files" })
      assert.is_nil(body)
      assert.is_string(msg)
      assert.equal("network", info.kind)
      assert.equal(7, info.curl_code)
    end)

    it("returns kind 'timeout' when the reply never comes", function()
      s:fault("GET", "/siliconflow/v1/files", { { hang = 3 } })
      local body, _, info = core.files.list({ base_url = base, api_key = KEY, purpose = "batch", timeout = 0.5 })
      assert.is_nil(body)
      assert.equal("timeout", info.kind)
    end)

    it("returns kind 'network' for a truncated body", function()
      s:fault("GET", "/siliconflow/v1/files", { { truncate = 10 } })
      local body, _, info = core.files.list({ base_url = base, api_key = KEY, purpose = "batch" })
      assert.is_nil(body)
      assert.equal("network", info.kind)
    end)

    it("returns kind 'network' for a connection reset in the middle of an upload", function()
      s:fault("POST", "/siliconflow/v1/files", { { reset_after = 100 } })
      local body, _, info = core.files.upload({ base_url = base, api_key = KEY, file = input })
      assert.is_nil(body)
      assert.equal("network", info.kind)
    end)
  end)

  describe("sessions", function()
    it("reuse one keep-alive connection for 100 calls", function()
      local session = core.session()
      local new_connections = 0
      for _ = 1, 100 do
        local _, res = core.files.list({ base_url = base, api_key = KEY, purpose = "batch", session = session })
        assert.equal(200, res.status)
        new_connections = new_connections + res.connects
      end
      session:close()
      assert.equal(1, new_connections)
      local log = s:log()
      assert.equal(100, #log)
      for _, e in ipairs(log) do
        assert.equal(log[1].connection, e.connection)
      end
      assert.equal(100, tonumber(log[100].connection_requests))
    end)

    it("close is idempotent and a closed session refuses requests", function()
      local session = core.session()
      session:close()
      session:close()
      assert.truthy(tostring(session):find("closed"))
      assert.has_error(function() session:request({ url = base .. "/files" }) end,
        "moonbatch.core: the session is closed")
    end)

    it("closes at garbage collection without help", function()
      for _ = 1, 50 do core.session() end
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("misuse raises before sending, naming the argument", function()
    local cases = {
      { "a missing file option", function() core.files.upload({ base_url = base }) end, "missing option 'file'" },
      { "a wrong type", function() core.files.upload({ base_url = base, file = 1 }) end,
        "bad option 'file' (string expected, got number)" },
      { "an unknown option", function() core.files.list({ base_url = base, purpos = "batch" }) end,
        "unknown option 'purpos'" },
      { "a bad limit", function() core.files.list({ base_url = base, limit = 0 }) end, "bad option 'limit'" },
      { "a missing input_file_id", function() core.batches.create({ base_url = base }) end,
        "missing option 'input_file_id'" },
      { "a missing endpoint", function() core.batches.create({ base_url = base, input_file_id = "f" }) end,
        "missing option 'endpoint'" },
      { "a header with a line break", function()
        core.request({ url = base .. "/files", headers = { ["X-A"] = "1\r\nX-B: 2" } }) end, "CR, LF" },
      { "a non-table", function() core.request("http://x") end, "table expected" },
      { "an unsupported method", function() core.request({ url = base, method = "TRACE" }) end,
        "unsupported method" },
      { "a session of the wrong type", function() core.request({ url = base, session = io.stdout }) end,
        "moonbatch.core.session expected" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local ok, err = pcall(c[2])
        assert.is_false(ok)
        assert.truthy(tostring(err):find(c[3], 1, true), tostring(err))
        assert.equal(0, #s:log())
      end)
    end
  end)

  it("gives a monotonic clock and a sleep", function()
    local t0 = core.now()
    core.sleep(0.05)
    local elapsed = core.now() - t0
    assert.is_true(elapsed >= 0.05 and elapsed < 1, tostring(elapsed))
    assert.is_true(math.abs(core.time() - os.time()) < 2)
  end)

  describe("Ctrl-C", function()
    it("ends a stalled transfer at once (lua.c's hook runs between the bytes), not at its timeout", function()
      s:fault("GET", "/siliconflow/v1/files", { { delay = 20 } })
      local script, out = tmpname(".lua"), tmpname(".txt")
      write_file(script, ([[
        package.cpath = %q .. ";" .. package.cpath
        local core = require("moonbatch.core")
        io.stderr:write("started\n")
        local b, m = core.request({ url = %q, headers = { Authorization = "Bearer " .. %q }, timeout = 30 })
        io.stderr:write("the request returned: ", tostring(m or b), "\n")
      ]]):format(package.cpath:match("^[^;]+"), base .. "/files", KEY))
      local pid = tonumber(shell.capture(("%s %s </dev/null >/dev/null 2>%s & echo $!"):format(lua_bin, script, out)))
      local t0 = core.now()
      while not (shell.read_file(out) or ""):find("started") and core.now() - t0 < 10 do core.sleep(0.02) end
      core.sleep(0.5) -- the request is out, the server silent
      local sent = core.now()
      os.execute("kill -INT " .. pid)
      while shell.alive(pid) and core.now() - sent < 10 do core.sleep(0.02) end
      local took = core.now() - sent
      local stderr = shell.read_file(out) or ""
      os.remove(script)
      os.remove(out)
      assert.is_false(shell.alive(pid), "still running 10 s after SIGINT")
      assert.matches("interrupted", stderr)
      assert.is_nil(stderr:find("the request returned", 1, true))
      assert.is_true(took < 2, ("%.2f s from SIGINT to exit"):format(took))
    end)
  end)

  describe("#slow streaming a 200 MiB upload", function()
    it("keeps the process's peak RSS under 32 MiB", function()
      local big = tmpname(".jsonl")
      local f = assert(io.open(big, "wb"))
      local line = '{"custom_id":"x","body":{"messages":[]}}' .. ("."):rep(983) .. "\n" -- 1 KiB
      local chunk = line:rep(1024)                                                    -- 1 MiB
      for _ = 1, 200 do f:write(chunk) end
      f:close()
      local script = tmpname(".lua")
      write_file(script, ([[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = %q .. ";" .. package.cpath
        local core = require("moonbatch.core")
        local body, res = core.files.upload({ base_url = %q, api_key = %q, file = %q })
        local hwm
        for l in io.lines("/proc/self/status") do hwm = hwm or l:match("^VmHWM:%%s+(%%d+) kB") end
        io.write(res and res.status or "fail", " ", body and body.data and body.data.bytes or "-", " ", hwm)
      ]]):format(package.cpath:match("^[^;]+"), base, KEY, big))
      local p = io.popen(lua_bin .. " " .. script)
      local out = p:read("*a")
      p:close()
      os.remove(script)
      os.remove(big)
      local status, bytes, hwm_kib = out:match("^(%d+) (%d+) (%d+)$")
      assert.equal("200", status, out)
      assert.equal(200 * 1024 * 1024, tonumber(bytes))
      print(("\n    200 MiB upload: peak RSS %.1f MiB"):format(tonumber(hwm_kib) / 1024))
      assert.is_true(tonumber(hwm_kib) < 32 * 1024, "peak RSS " .. hwm_kib .. " KiB")
      local e = s:log()[1]
      assert.equal(200 * 1024 * 1024, e.fields.file.bytes)
      assert.equal(200 * 1024, e.fields.file.lines)
    end)
  end)
end)
