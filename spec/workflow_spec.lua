-- spec/workflow_spec.lua: the whole job (upload, list, create, wait, download, cancel) with the
-- same calls against every dialect of the stand-in, changing only `provider`.
local cjson = require("cjson")
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")
local shell = require("spec.support.shell")
local exists, tmpname = shell.exists, shell.tmpname

local KEY = "sk-standin"

local function write(path, lines)
  local f = assert(io.open(path, "wb"))
  f:write(table.concat(lines, "\n") .. "\n")
  f:close()
end

local function read_lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end

-- every file in the directory of `path` whose name starts with path's name
local function leftovers(path)
  local dir, name = path:match("^(.*)/([^/]*)$")
  local p = io.popen(("ls -a %q"):format(dir))
  local found = {}
  for entry in p:lines() do
    if entry:sub(1, #name) == name then found[#found + 1] = entry end
  end
  p:close()
  return found
end

local function line(id, fail, url)
  return cjson.encode({ custom_id = id, method = "POST", url = url or "/v1/chat/completions",
    body = { model = "deepseek-ai/DeepSeek-V3", messages = { { role = "user", content = "hello " .. id } },
             standin_fail = fail or nil } })
end

-- every provider the stand-in speaks, with the same calls
local PROVIDERS = { "siliconflow", "together", "openai", "azure", "groq", "deepinfra", "dashscope", "dashscope-intl",
                    "moonshot", "zhipu", "mistral" }

describe("a whole batch job", function()
  local s, input, dir
  local inputs = {} -- endpoint -> the same four requests with that url (Zhipu's lines say /v4/...)

  -- the requests file for `provider`: its endpoint's lines, from its data
  local function input_for(provider)
    local endpoint = require("moonbatch.providers").get(provider).endpoint
    if endpoint == "/v1/chat/completions" then return input end
    if not inputs[endpoint] then
      inputs[endpoint] = dir .. "/requests" .. endpoint:gsub("%W", "-") .. ".jsonl"
      write(inputs[endpoint], { line("r1", nil, endpoint), line("r2", nil, endpoint), line("r3", true, endpoint),
                                line("r4", nil, endpoint) })
    end
    return inputs[endpoint]
  end

  setup(function()
    s = standin.start({ key = KEY })
    dir = tmpname("-workflow")
    os.execute("mkdir -p " .. dir)
    input = dir .. "/requests.jsonl"
    write(input, { line("r1"), line("r2"), line("r3", true), line("r4") })
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
    if s then s:stop() end
  end)

  before_each(function()
    s:reset()
    s:call("POST", "/config", { step_seconds = 0.2 })
  end)

  for _, provider in ipairs(PROVIDERS) do
    describe("on " .. provider, function()
      local function client()
        if not s.urls[provider] then return nil end
        return moonbatch.new({ provider = provider, base_url = s.urls[provider], api_key = KEY,
                               sleep = function(t) require("moonbatch.core").sleep(math.min(t, 0.2)) end })
      end

      it("uploads, lists, creates, waits and downloads results and errors", function()
        local c = client()
        if not c then return pending("the stand-in has no " .. provider .. " dialect") end
        local file = assert(c.files.upload({ file = input_for(provider) }))
        assert.equal("file", file.object)

        local seen = {}
        for f in c.files.each() do seen[f.id] = true end
        assert.is_true(seen[file.id])

        local batch = assert(c.batches.create({ input_file_id = file.id }))
        assert.equal("batch", batch.object)
        assert.truthy(({ validating = true, in_queue = true })[batch.status], batch.status)

        local updates = {}
        local done = assert(c.batches.wait(batch.id, { interval = 0.1,
          on_update = function(b) updates[#updates + 1] = b.status end }))
        assert.equal("completed", done.status)
        assert.equal("completed", updates[#updates])
        assert.is_true(#updates >= 2)

        local results = dir .. "/" .. provider .. "-results.jsonl"
        local got = assert(c.files.download(done.output_file_id, results))
        assert.equal(results, got.path)
        if math.type then assert.equal("integer", math.type(got.bytes)) end
        local lines = read_lines(results)
        assert.equal(3, #lines)
        local ids = {}
        for _, l in ipairs(lines) do ids[cjson.decode(l).custom_id] = true end
        assert.same({ r1 = true, r2 = true, r4 = true }, ids)

        local errors_path = dir .. "/" .. provider .. "-errors.jsonl"
        assert(c.files.download(done.error_file_id, errors_path))
        local errs = read_lines(errors_path)
        assert.equal(1, #errs)
        assert.equal("r3", cjson.decode(errs[1]).custom_id)
        assert.same({ provider .. "-results.jsonl" }, leftovers(results))
      end)

      it("cancels a running batch", function()
        local c = client()
        if not c then return pending("the stand-in has no " .. provider .. " dialect") end
        s:call("POST", "/config", { step_seconds = 5 })
        local file = assert(c.files.upload({ file = input_for(provider) }))
        local batch = assert(c.batches.create({ input_file_id = file.id }))
        local cancelled = assert(c.batches.cancel(batch.id))
        assert.truthy(({ cancelling = true, cancelled = true })[cancelled.status], cancelled.status)
        local again = assert(c.batches.get(batch.id))
        assert.equal(batch.id, again.id)
        local found = false
        for b in c.batches.each() do found = found or b.id == batch.id end
        assert.is_true(found)
      end)

      it("gives up waiting at the timeout", function()
        local c = client()
        if not c then return pending("the stand-in has no " .. provider .. " dialect") end
        s:call("POST", "/config", { step_seconds = 30 })
        local file = assert(c.files.upload({ file = input_for(provider) }))
        local batch = assert(c.batches.create({ input_file_id = file.id }))
        local done, msg, info = c.batches.wait(batch.id, { interval = 0.05, timeout = 0.3 })
        assert.is_nil(done)
        assert.equal("timeout", info.kind)
        assert.truthy(msg:find(batch.id, 1, true))
      end)

      it("leaves nothing at the target when a download is cut off", function()
        local c = client()
        if not c then return pending("the stand-in has no " .. provider .. " dialect") end
        local file = assert(c.files.upload({ file = input_for(provider) }))
        local batch = assert(c.batches.create({ input_file_id = file.id }))
        local done = assert(c.batches.wait(batch.id, { interval = 0.1 }))
        local path = s.urls[provider]:match("^https?://[^/]+(.*)$") .. "/files/" .. done.output_file_id .. "/content"
        if done.output_file_id:match("^https?://") then path = done.output_file_id:match("^https?://[^/]+(.*)$") end
        s:fault("GET", path, { { truncate = 10, count = 3 } })
        local target = dir .. "/" .. provider .. "-cut.jsonl"
        local got, _, info = c.files.download(done.output_file_id, target)
        assert.is_nil(got)
        assert.equal("network", info.kind)
        assert.is_false(exists(target))
        assert.same({}, leftovers(target))
      end)
    end)
  end

  it("follows OpenAI's cursor pages with after = last_id", function()
    local c = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY })
    for _ = 1, 5 do assert(c.files.upload({ file = input })) end
    local seen = {}
    for f in c.files.each({ limit = 2 }) do seen[#seen + 1] = f.id end
    assert.equal(5, #seen)
    local afters = {}
    for _, e in ipairs(s:log()) do
      if e.method == "GET" then afters[#afters + 1] = e.query.after or "-" end
    end
    assert.same({ "-", seen[2], seen[4] }, afters)
  end)

  it("raises when a page claims more but brings none, instead of stopping silently", function()
    s:fault("GET", "/openai/v1/files", { { status = 200, content_type = "application/json",
      body = '{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":true}' } })
    local c = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY })
    assert.has_error(function()
      for _ in c.files.each() do end
    end, "moonbatch: openai GET /files: the server says more files follow but sent none")
  end)

  it("fetches a SiliconFlow result URL without sending the key", function()
    s:call("POST", "/config", { step_seconds = 0.1, siliconflow_output_urls = true })
    local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY })
    local file = assert(c.files.upload({ file = input }))
    local batch = assert(c.batches.create({ input_file_id = file.id }))
    local done = assert(c.batches.wait(batch.id, { interval = 0.1 }))
    assert.matches("^http://", done.output_file_id)
    local target = dir .. "/url-results.jsonl"
    assert(c.files.download(done.output_file_id, target))
    assert.equal(3, #read_lines(target))
    local log = s:log()
    assert.equal("missing", log[#log].auth)
  end)

  describe("on azure", function()
    local function curl(path, opts)
      return standin.curl(s.urls.azure .. path, opts)
    end

    it("sends the key as api-key and the client's api_version on every call", function()
      local c = moonbatch.new({ provider = "azure", base_url = s.urls.azure, api_key = KEY,
                                api_version = "2025-01-01-preview" })
      local file = assert(c.files.upload({ file = input }))
      assert(c.files.get(file.id))
      assert(c.files.list())
      assert(c.batches.create({ input_file_id = file.id }))
      assert(c.batches.list())
      for _, e in ipairs(s:log()) do
        assert.equal("ok", e.auth, e.method .. " " .. e.path)
        assert.equal("2025-01-01-preview", e.query["api-version"], e.method .. " " .. e.path)
      end
    end)

    it("answers as Azure does: 401 for a Bearer key, 404 without api-version, 400 for an unknown one", function()
      local r = curl("/files?api-version=2024-10-21", { key = KEY })
      assert.equal(401, r.status)
      assert.equal("401", cjson.decode(r.body).error.code)
      r = curl("/files", { headers = { "api-key: " .. KEY } })
      assert.equal(404, r.status)
      assert.same({ error = { code = "404", message = "Resource not found" } }, cjson.decode(r.body))
      r = curl("/files?api-version=1999-01-01", { headers = { "api-key: " .. KEY } })
      assert.equal(400, r.status)
      assert.equal("BadRequest", cjson.decode(r.body).error.code)
      local c = moonbatch.new({ provider = "azure", base_url = s.urls.azure, api_key = "sk-wrong", max_retries = 0 })
      local page, msg, info = c.files.list()
      assert.is_nil(page)
      assert.equal(401, info.status)
      assert.truthy(msg:find("moonbatch: azure GET /files: HTTP 401: Access denied", 1, true), msg)
      assert.is_nil(msg:find("sk-wrong", 1, true))
    end)
  end)

  it("the stand-in keeps each compatible service's own windows and endpoints", function()
    local core = require("moonbatch.core")
    local cases = {
      { "groq", "/v1/chat/completions", "168h", 200 }, { "groq", "/v1/chat/completions", "8d", 400 },
      { "groq", "/v1/embeddings", "24h", 400 }, { "deepinfra", "/v1/chat/completions", "48h", 400 },
      { "moonshot", "/v1/chat/completions", "12h", 200 }, { "dashscope", "/v1/chat/completions", "336h", 200 },
      { "zhipu", "/v1/chat/completions", "24h", 400 }, { "zhipu", "/v4/chat/completions", "24h", 200 },
    }
    for _, case in ipairs(cases) do
      local name, endpoint, window, status = case[1], case[2], case[3], case[4]
      local up = assert(core.files.upload({ base_url = s.urls[name], api_key = KEY, file = input_for(name) }))
      local body, res = core.batches.create({ base_url = s.urls[name], api_key = KEY, input_file_id = up.id,
        endpoint = endpoint, completion_window = window })
      assert.equal(status, res.status, ("%s %s %s: %s"):format(name, endpoint, window, cjson.encode(body)))
    end
    -- Azure's upload answers 201 with the new file's Location
    local r = standin.curl(s.urls.azure .. "/files?api-version=2024-10-21", { headers = { "api-key: " .. KEY },
      form = { "purpose=batch", "file=@" .. input } })
    assert.equal(201, r.status)
    assert.truthy(r.headers.location:find("/azure/openai/files/" .. cjson.decode(r.body).id, 1, true), r.headers.location)
  end)

  it("refuses a Zhipu file whose lines say /v1/chat/completions before anything is sent", function()
    local c = moonbatch.new({ provider = "zhipu", base_url = s.urls.zhipu, api_key = KEY })
    local file, msg, info = c.files.upload({ file = input })
    assert.is_nil(file)
    assert.equal("validation", info.kind)
    assert.truthy(msg:find('url is "/v1/chat/completions", not "/v4/chat/completions"', 1, true), msg)
    assert.same({}, s:log())
  end)

  it("refuses a Moonshot file of two models before anything is sent", function()
    local two = dir .. "/two-models.jsonl"
    local other = cjson.decode(line("b"))
    other.body.model = "kimi-k2"
    write(two, { line("a"), cjson.encode(other) })
    local c = moonbatch.new({ provider = "moonshot", base_url = s.urls.moonshot, api_key = KEY })
    local file, msg, info = c.files.upload({ file = two })
    assert.is_nil(file)
    assert.equal("one_model", info.problems[1].rule, msg)
    assert.same({}, s:log())
  end)

  it("on mistral: uploads {custom_id, body} lines from the OpenAI-format file, creates a job of its model", function()
    local before = io.open(input, "rb"):read("*a")
    local c = moonbatch.new({ provider = "mistral", base_url = s.urls.mistral, api_key = KEY })
    local file = assert(c.files.upload({ file = input }))
    assert.equal("requests.jsonl", file.filename)
    assert.equal(before, io.open(input, "rb"):read("*a")) -- the user's file is untouched
    local stored = s:file_content(file.id)
    local n = 0
    for l in stored:gmatch("[^\n]+") do
      n = n + 1
      local t = cjson.decode(l)
      assert.is_nil(t.method)
      assert.is_nil(t.url)
      assert.is_string(t.custom_id)
      assert.equal("deepseek-ai/DeepSeek-V3", t.body.model)
    end
    assert.equal(4, n)
    local batch = assert(c.batches.create({ input_file_id = file.id, completion_window = "48h",
                                            metadata = { job = "x" } }))
    assert.equal("in_queue", batch.status)
    assert.equal(file.id, batch.input_file_id)
    assert.equal("48h", batch.completion_window)
    local sent = s:log()[#s:log()].json
    assert.same({ input_files = { file.id }, endpoint = "/v1/chat/completions", model = "deepseek-ai/DeepSeek-V3",
                  metadata = { job = "x" }, timeout_hours = 48 }, sent)
    local done = assert(c.batches.wait(batch.id, { interval = 0.1 }))
    assert.equal("completed", done.status)
    assert.equal("SUCCESS", done.raw.status)
    assert.same({ total = 4, completed = 3, failed = 1 }, done.request_counts)
    assert.equal("deepseek-ai/DeepSeek-V3", done.model)
    -- replace.model names the job's model; a window over 168 hours is refused before sending
    local other = assert(c.batches.create({ input_file_id = file.id, replace = { model = "mistral-small-latest" } }))
    assert.equal("mistral-small-latest", other.model)
    local ok, err = pcall(c.batches.create, { input_file_id = file.id, completion_window = "8d" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("mistral takes 1h to 7d", 1, true), tostring(err))
  end)

  it("on mistral: a sharded job creates each shard's job with the input's model", function()
    local c = moonbatch.new({ provider = "mistral", base_url = s.urls.mistral, api_key = KEY,
                              sleep = function(t) require("moonbatch.core").sleep(math.min(t, 0.2)) end })
    local results = dir .. "/mistral-job.jsonl"
    local summary = assert(moonbatch.job.run(c, { input = input, results = results, max_lines = 2, interval = 0.1 }))
    assert.equal(2, summary.shards)
    assert.equal(3, summary.succeeded)
    assert.equal(1, summary.failed)
    for _, e in ipairs(s:log()) do
      if e.method == "POST" and e.path == "/mistral/v1/batch/jobs" then
        assert.equal("deepseek-ai/DeepSeek-V3", e.json.model)
      end
    end
  end)

  it("waits out SiliconFlow's 404 right after completion", function()
    s:call("POST", "/config", { step_seconds = 0.1, content_404_seconds = 1 })
    local slept = 0
    local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY, sleep = function(t)
      slept = slept + t
      require("moonbatch.core").sleep(math.min(t, 0.5))
    end })
    local file = assert(c.files.upload({ file = input }))
    local done = assert(c.batches.wait(assert(c.batches.create({ input_file_id = file.id })).id, { interval = 0.1 }))
    local target = dir .. "/late-results.jsonl"
    assert(c.files.download(done.output_file_id, target))
    assert.equal(3, #read_lines(target))
    assert.is_true(slept >= 2)
  end)
end)
