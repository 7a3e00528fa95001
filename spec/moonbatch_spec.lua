-- spec/moonbatch_spec.lua: the moonbatch client (canonical objects, errors, retries) against the
-- stand-in over real sockets. Sleep is injected, so retry waits are recorded, not waited.
local cjson = require("cjson")
local moonbatch = require("moonbatch")
local fixture = require("spec.support.fixture")
local tmpname = require("spec.support.shell").tmpname

local KEY = "sk-standin"

-- true when a cjson.null hides anywhere in t
local function has_null(t)
  if t == cjson.null then return true end
  if type(t) ~= "table" then return false end
  for _, v in pairs(t) do
    if has_null(v) then return true end
  end
  return false
end

describe("moonbatch", function()
  local s, input, waits

  -- a client on the stand-in whose sleeps are recorded
  local function client(opts)
    waits = {}
    return fixture.client({ base_url = s.urls.siliconflow, api_key = KEY }, opts, waits)
  end

  fixture.standin({ key = KEY, suffix = ".jsonl",
                    input = '{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
                      .. '"body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n' },
    function(new_s, _, new_input) s, input = new_s, new_input end)

  describe("new", function()
    it("raises for an unknown provider, option or type", function()
      assert.has_error(function() moonbatch.new({ provider = "nope" }) end,
        "moonbatch.new: unknown provider 'nope' (known: siliconflow, siliconflow-global, together, openai, " ..
        "azure, mistral, groq, deepinfra, dashscope, dashscope-intl, moonshot, zhipu)")
      assert.has_error(function() moonbatch.new({ timout = 1 }) end, "moonbatch.new: unknown option 'timout'")
      assert.has_error(function() moonbatch.new({ timeout = "1" }) end,
        "moonbatch.new: bad option 'timeout' (number expected, got string)")
      assert.has_error(function() moonbatch.new({ max_retries = 1.5 }) end,
        "moonbatch.new: bad option 'max_retries' (an integer from 0 to 100 expected, got 1.5)")
      assert.has_error(function() moonbatch.new("siliconflow") end)
    end)

    it("defaults to SiliconFlow's base URL", function()
      local c = moonbatch.new({ api_key = "k" })
      if os.getenv("MOONBATCH_BASE_URL") then return end
      assert.equal("https://api.siliconflow.cn/v1", c.base_url)
      assert.equal("https://api.siliconflow.com/v1", moonbatch.new({ provider = "siliconflow-global" }).base_url)
    end)

    it("takes the base URL from MOONBATCH_BASE_URL", function()
      local p = io.popen(("MOONBATCH_BASE_URL=https://example.test/v1 %s -e %q"):format(arg[-1],
        "package.path='lua/?.lua;lua/?/init.lua;'..package.path; package.cpath='" ..
        package.cpath:match("^[^;]+") .. ";'..package.cpath; io.write(require('moonbatch').new{}.base_url)"))
      local out = p:read("*a")
      p:close()
      assert.equal("https://example.test/v1", out)
    end)

    it("returns a plain table and touches no global", function()
      assert.equal("table", type(moonbatch))
      assert.is_nil(rawget(_G, "moonbatch"))
    end)
  end)

  describe("files.upload", function()
    it("returns a canonical File", function()
      local file = assert(client().files.upload({ file = input }))
      assert.equal("file", file.object)
      assert.matches("^file%-%l+$", file.id)
      assert.equal(math.type and "integer" or "number", math.type and math.type(file.bytes) or type(file.bytes))
      assert.equal(input:match("[^/]+$"), file.filename)
      assert.equal("batch", file.purpose)
      assert.is_true(math.abs(file.created_at - os.time()) < 60)
      assert.equal(file.id, file.raw.id)
      assert.is_false(has_null(file))
    end)

    it("sends one Idempotency-Key, the same on every attempt, and a new one per call", function()
      s:fault("POST", "/siliconflow/v1/files", { { status = 503, retry_after = "0" } })
      local c = client()
      assert(c.files.upload({ file = input }))
      assert(c.files.upload({ file = input }))
      local log = s:log()
      assert.equal(3, #log)
      local k1, k2, k3 = log[1].headers["idempotency-key"], log[2].headers["idempotency-key"],
                         log[3].headers["idempotency-key"]
      assert.matches("^moonbatch%-%x+$", k1)
      assert.equal(k1, k2)
      assert.not_equal(k1, k3)
    end)

    it("sends the caller's Idempotency-Key on batches.create, on every attempt", function()
      local c = client()
      local file = assert(c.files.upload({ file = input }))
      s:reset()
      s:fault("POST", "/siliconflow/v1/batches", { { status = 503, retry_after = "0" } })
      local file2 = assert(c.files.upload({ file = input }))
      local batch = assert(c.batches.create({ input_file_id = file2.id, idempotency_key = "job-abc" }))
      assert.truthy(batch.id)
      local keys = {}
      for _, e in ipairs(s:log()) do
        if e.path == "/siliconflow/v1/batches" then keys[#keys + 1] = e.headers["idempotency-key"] end
      end
      assert.same({ "job-abc", "job-abc" }, keys)
      assert.truthy(file.id)
    end)

    it("streams the file again from its first byte after a reset mid-upload", function()
      s:fault("POST", "/siliconflow/v1/files", { { reset_after = 50 } })
      local file = assert(client().files.upload({ file = input }))
      local log = s:log()
      assert.equal(2, #log)
      assert.truthy(log[1].fault)
      assert.equal(file.bytes, log[2].fields.file.bytes)
      local f = io.open(input, "rb")
      assert.equal(f:read("*a"), s:file_content(file.id))
      f:close()
    end)

    it("returns kind 'io' for a missing file after no attempt", function()
      local file, msg, info = client().files.upload({ file = "/no/such/file.jsonl" })
      assert.is_nil(file)
      assert.equal("io", info.kind)
      assert.equal(0, info.attempts)
      assert.matches("^moonbatch: siliconflow POST /files: cannot read '/no/such/file.jsonl'", msg)
      assert.equal(0, #s:log())
    end)

    it("raises on misuse, naming the argument, before sending", function()
      local c = client()
      assert.has_error(function() c.files.upload({}) end, "files.upload: missing option 'file' (string)")
      assert.has_error(function() c.files.upload({ file = input, purpose = 1 }) end,
        "files.upload: bad option 'purpose' (string expected, got number)")
      assert.has_error(function() c.files.upload({ file = input, bogus = true }) end,
        "files.upload: unknown option 'bogus'")
      assert.equal(0, #s:log())
    end)

    it("validates the file first and sends nothing when a line is wrong", function()
      local bad = tmpname(".jsonl")
      local f = assert(io.open(bad, "wb"))
      f:write('{"custom_id":"a","body":{"model":"m","messages":[{"role":"user","content":"x"}]}}\n{"custom_id":"a"}\n')
      f:close()
      local file, msg, info = client().files.upload({ file = bad })
      assert.is_nil(file)
      assert.equal("validation", info.kind)
      assert.matches("^moonbatch: siliconflow POST /files: line 2", msg)
      assert.truthy(#info.problems >= 2)
      assert.equal(0, #s:log())
      assert(client().files.upload({ file = bad, validate = false }))
      os.remove(bad)
    end)

    it("calls on_progress with the bytes sent", function()
      local last
      assert(client().files.upload({ file = input, on_progress = function(done, total) last = { done, total } end }))
      assert.is_true(last[1] > 0 and last[2] >= last[1])
    end)
  end)

  describe("files.list and files.each", function()
    it("lists with purpose batch and limit 10 by default, as a canonical Page", function()
      local c = client()
      local a = assert(c.files.upload({ file = input }))
      local b = assert(c.files.upload({ file = input }))
      local page = assert(c.files.list())
      assert.equal("list", page.object)
      assert.is_false(page.has_more)
      assert.equal(2, #page.data)
      assert.equal(b.id, page.first_id)
      assert.equal(a.id, page.last_id)
      assert.equal(1, page.data[1].line_count)
      assert.is_false(has_null(page))
      assert.same({ purpose = "batch", limit = "10" }, s:log()[3].query)
    end)

    it("passes limit through, and refuses a cursor SiliconFlow does not have", function()
      local c = client()
      assert(c.files.list({ limit = 3 }))
      assert.same({ purpose = "batch", limit = "3" }, s:log()[1].query)
      assert.has_error(function() c.files.list({ after = "file-x" }) end)
    end)

    it("iterates every file", function()
      local c = client()
      for _ = 1, 3 do assert(c.files.upload({ file = input })) end
      local ids = {}
      for file in c.files.each() do ids[#ids + 1] = file.id end
      assert.equal(3, #ids)
    end)

    it("raises the call's message when a page cannot be fetched", function()
      s:fault("GET", "/siliconflow/v1/files", { { status = 401, body = '"Invalid token"', content_type = "application/json" } })
      local c = client()
      assert.has_error(function()
        for _ in c.files.each() do end
      end, "moonbatch: siliconflow GET /files: HTTP 401: Invalid token")
    end)
  end)

  describe("batches.create", function()
    it("returns a canonical Batch", function()
      local c = client()
      local file = assert(c.files.upload({ file = input }))
      local batch = assert(c.batches.create({ input_file_id = file.id, metadata = { description = "x" },
                                              replace = { model = "deepseek-ai/DeepSeek-V3" } }))
      assert.equal("batch", batch.object)
      assert.equal("in_queue", batch.status)
      assert.equal(file.id, batch.input_file_id)
      assert.equal("24h", batch.completion_window)
      assert.equal(batch.created_at + 86400, batch.expires_at)
      assert.is_nil(batch.output_file_id)
      assert.same({ description = "x" }, batch.metadata)
      assert.is_false(has_null(batch))
      local sent = s:log()[2].json
      assert.equal("/v1/chat/completions", sent.endpoint)
      assert.same({ model = "deepseek-ai/DeepSeek-V3" }, sent.replace)
    end)

    it("returns the provider's 400 as kind 'api' with its code", function()
      local batch, msg, info = client().batches.create({ input_file_id = "file-missing" })
      assert.is_nil(batch)
      assert.equal("api", info.kind)
      assert.equal(400, info.status)
      assert.equal("20012", info.code)
      assert.matches("^moonbatch: siliconflow POST /batches: HTTP 400: ", msg)
      assert.equal(1, info.attempts)
    end)
  end)

  describe("errors", function()
    local cases = {
      { "a bare-string 401", { status = 401, body = '"Invalid token"', content_type = "application/json" },
        "api", 401, "moonbatch: siliconflow GET /files: HTTP 401: Invalid token" },
      { "a bare-string 403", { status = 403, body = '"Forbidden"', content_type = "application/json" },
        "api", 403, "moonbatch: siliconflow GET /files: HTTP 403: Forbidden" },
      { "a plain-text 404", { status = 404, body = "404 page not found", content_type = "text/plain" },
        "http", 404, "moonbatch: siliconflow GET /files: HTTP 404: 404 page not found" },
      { "a 400 {code, message, data}", { status = 400, content_type = "application/json",
        body = '{"code":20012,"message":"Model does not exist. Please check it carefully.","data":null}' },
        "api", 400, "moonbatch: siliconflow GET /files: HTTP 400: Model does not exist. Please check it carefully." },
      { "an HTML 502 from a proxy", { html = 502 }, "http", 502,
        "moonbatch: siliconflow GET /files: HTTP 502: 502 Bad Gateway" },
      { "an empty 500", { status = 500, body = "" }, "http", 500, "moonbatch: siliconflow GET /files: HTTP 500" },
      { "a 200 that is not JSON", { status = 200, body = "<html>hi</html>", content_type = "text/html" },
        "decode", 200, "moonbatch: siliconflow GET /files: reply is not JSON" },
      { "a 200 with broken JSON", { status = 200, body = '{"code":200', content_type = "application/json" },
        "decode", 200, "moonbatch: siliconflow GET /files: reply is not valid JSON" },
      { "a 200 envelope saying failure", { status = 200, content_type = "application/json",
        body = '{"code":20015,"message":"quota exceeded","status":false,"data":null}' },
        "api", 200, "moonbatch: siliconflow GET /files: quota exceeded" },
    }
    for _, c in ipairs(cases) do
      it(("turns %s into kind '%s'"):format(c[1], c[3]), function()
        local f = c[2]
        f.count = 3
        s:fault("GET", "/siliconflow/v1/files", { f })
        local page, msg, info = client().files.list()
        assert.is_nil(page)
        assert.equal(c[3], info.kind)
        assert.equal(c[4], info.status)
        assert.equal(c[5], msg:sub(1, #c[5]))
        assert.is_nil(msg:find("\n"))
        assert.equal("GET", info.method)
        assert.equal(s.urls.siliconflow .. "/files", info.url)
        assert.is_false(has_null(info))
      end)
    end

    it("needs an API key only when a call is made", function()
      if os.getenv("SILICONFLOW_API_KEY") or os.getenv("MOONBATCH_API_KEY") then
        pending("an API key is set in the environment")
        return
      end
      local c = moonbatch.new({ base_url = s.urls.siliconflow })
      local page, msg, info = c.files.list()
      assert.is_nil(page)
      assert.equal("validation", info.kind)
      assert.truthy(msg:find("SILICONFLOW_API_KEY", 1, true))
      assert.equal(0, #s:log())
    end)

    it("never shows the key, even when the server echoes it", function()
      s:fault("GET", "/siliconflow/v1/files", { { status = 401, body = '"bad key ' .. KEY .. '"',
        content_type = "application/json" } })
      local _, msg, info = client().files.list()
      assert.is_nil(msg:find(KEY, 1, true))
      for _, v in pairs(info) do assert.is_nil(tostring(v):find(KEY, 1, true)) end
    end)
  end)

  describe("retries", function()
    local path = "/siliconflow/v1/files"

    it("waits what Retry-After says (seconds) after a 503, then succeeds", function()
      s:fault("GET", path, { { status = 503, retry_after = "2" } })
      assert(client().files.list())
      assert.same({ 2 }, waits)
      assert.equal(2, #s:log())
    end)

    it("waits what retry-after-ms says after a 429", function()
      s:fault("GET", path, { { status = 429, retry_after_ms = "150" } })
      assert(client().files.list())
      assert.same({ 0.15 }, waits)
    end)

    it("waits until an HTTP-date Retry-After", function()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 5)
      s:fault("GET", path, { { status = 503, headers = { ["Retry-After"] = date }, body = "" } })
      assert(client().files.list())
      assert.equal(1, #waits)
      assert.is_true(waits[1] >= 3 and waits[1] <= 6, tostring(waits[1]))
    end)

    it("backs off 0.5 s, 1 s, then gives up after max_retries with every attempt counted", function()
      s:fault("GET", path, { { status = 503, count = 5 } })
      local page, msg, info = client().files.list()
      assert.is_nil(page)
      assert.same({ 0.5, 1 }, waits)
      assert.equal(3, info.attempts)
      assert.is_true(info.retryable)
      assert.equal("50505", info.code)
      assert.matches("HTTP 503: Model service overloaded", msg)
      assert.equal(3, #s:log())
    end)

    it("honours max_retries = 0", function()
      s:fault("GET", path, { { status = 503 } })
      local _, _, info = client({ max_retries = 0 }).files.list()
      assert.equal(1, info.attempts)
      assert.same({}, waits)
    end)

    it("ends the call when Retry-After asks for more than 120 s", function()
      s:fault("GET", path, { { status = 429, retry_after = "600" } })
      local page, _, info = client().files.list()
      assert.is_nil(page)
      assert.is_true(info.retryable)
      assert.equal(600, info.retry_after)
      assert.equal(1, info.attempts)
      assert.same({}, waits)
    end)

    it("retries SiliconFlow's overload code 50505 even in a 200 envelope", function()
      s:fault("GET", path, { { status = 200, content_type = "application/json",
        body = '{"code":50505,"message":"Model service overloaded.","status":false,"data":null}' } })
      assert(client().files.list())
      assert.equal(1, #waits)
    end)

    it("obeys x-should-retry: false on a 503 and x-should-retry: true on a 400", function()
      s:fault("GET", path, { { status = 503, headers = { ["x-should-retry"] = "false" } } })
      local _, _, info = client().files.list()
      assert.equal(1, info.attempts)
      s:fault("GET", path, { { status = 400, body = '{"code":1,"message":"later","data":null}',
        content_type = "application/json", headers = { ["x-should-retry"] = "true" } } })
      assert(client().files.list())
      assert.equal(1, #waits)
    end)

    it("does not retry a 400, 401 or 404", function()
      for _, status in ipairs({ 400, 401, 404 }) do
        s:reset()
        s:fault("GET", path, { { status = status, body = '"no"', content_type = "application/json" } })
        local _, _, info = client().files.list()
        assert.equal(1, info.attempts)
        assert.equal(1, #s:log())
      end
    end)

    it("retries a truncated reply and a connection reset", function()
      s:fault("GET", path, { { truncate = 5 }, { reset_after = 0 } })
      assert(client().files.list())
      assert.equal(2, #waits)
      assert.equal(3, #s:log())
    end)

    it("retries a reply that never comes, each attempt bounded by timeout", function()
      s:fault("GET", path, { { hang = 5, count = 3 } })
      local page, _, info = client({ timeout = 0.3 }).files.list()
      assert.is_nil(page)
      assert.equal("timeout", info.kind)
      assert.equal(3, info.attempts)
    end)

    it("bounds the whole call by deadline, attempts and waits together", function()
      s:fault("GET", path, { { hang = 5, count = 3 } })
      local core = require("moonbatch.core")
      local t0 = core.now()
      local page, _, info = client({ timeout = 10, deadline = 0.6 }).files.list()
      local elapsed = core.now() - t0
      assert.is_nil(page)
      assert.equal("timeout", info.kind)
      assert.equal(1, info.attempts)
      assert.is_true(elapsed < 2, tostring(elapsed))
    end)

    it("does not start a wait that would pass the deadline", function()
      s:fault("GET", path, { { status = 503, retry_after = "30" } })
      local page, msg, info = client({ deadline = 5 }).files.list()
      assert.is_nil(page)
      assert.same({}, waits)
      assert.equal(1, info.attempts)
      assert.equal(30, info.retry_after)
      assert.truthy(msg:find("deadline", 1, true))
    end)

    it("connection refused is retried, then kind 'network'", function()
      local c = moonbatch.new({ base_url = "http://127.0.0.1:1/v1", api_key = KEY,
                                sleep = function() end })
      local _, _, info = c.files.list()
      assert.equal("network", info.kind)
      assert.equal(3, info.attempts)
    end)
  end)

  it("speaks to siliconflow-global the same way", function()
    local c = moonbatch.new({ provider = "siliconflow-global", base_url = s.urls["siliconflow-global"],
                              api_key = KEY })
    local file = assert(c.files.upload({ file = input }))
    assert.equal("file", file.object)
    assert.equal("/siliconflow-global/v1/files", s:log()[1].path)
  end)
end)
