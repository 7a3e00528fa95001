-- spec/contract_spec.lua: every request moonbatch sends is one the providers' own OpenAPI documents
-- accept. Prism (tools/prism, see spec/contract_helper.lua) serves spec/contract/siliconflow.yaml
-- (seeds 000, 002, 003) and spec/contract/together.yaml (seed 004) as mock servers that check each
-- request against the document and answer with the document's examples. Each operation runs
-- through moonbatch.core and through the client; Prism must find no violation, and the client must
-- turn the example replies into canonical objects. Requests that break a document on purpose show
-- that the check bites. Groq's, DeepInfra's, Azure OpenAI's and Mistral's documents (spec/contract/, copied
-- from ../shared/reference/specs/ with the changes their headers name) run the same way from one
-- table (SERVICES, at the end).
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local contract = require("spec.contract_helper")
local shell = require("spec.support.shell")
local write_file, tmpname = shell.write_file, shell.tmpname

local KEY = "sk-test"

local requests = table.concat({
  '{"custom_id":"r1","method":"POST","url":"/v1/chat/completions",' ..
    '"body":{"model":"deepseek-ai/DeepSeek-V3","messages":[{"role":"user","content":"Hi"}]}}',
  '{"custom_id":"r2","method":"POST","url":"/v1/chat/completions",' ..
    '"body":{"model":"deepseek-ai/DeepSeek-V3","messages":[{"role":"user","content":"Bye"}]}}',
}, "\n") .. "\n"

-- Prism's verdict on one exchange through moonbatch.core: a 2xx and no violation
local function assert_accepted(body, res, what)
  assert(body ~= nil, what .. ": the transfer failed: " .. tostring(res))
  local found = contract.violations(res, body)
  assert(#found == 0, what .. ": Prism found " .. contract.describe(found))
  assert(res.status >= 200 and res.status < 300,
    what .. ": HTTP " .. tostring(res.status) .. " without violations")
end

-- Prism's refusal: the status, and a violation at `location` whose message mentions `word`
local function assert_refused(status, location, word, body, res, what)
  assert(body ~= nil, what .. ": the transfer failed: " .. tostring(res))
  local found = contract.violations(res, body)
  assert(res.status == status, ("%s: HTTP %s, not %d (%s)")
    :format(what, tostring(res.status), status, contract.describe(found)))
  assert(contract.has(found, location, word), ("%s: no violation at %s naming %q, only: %s")
    :format(what, location, tostring(word), contract.describe(found)))
end

-- Runs fn with moonbatch.core's operations wrapped to record every exchange the client makes;
-- returns the exchanges, each { op =, body =, res = }, and fn's results.
local recorded_ops = {
  { core.files, "upload", "files.upload" }, { core.files, "list", "files.list" },
  { core.batches, "create", "batches.create" }, { core, "request", "request" },
}
local function recording(fn)
  local log, saved = {}, {}
  for i, r in ipairs(recorded_ops) do
    local t, name, label = r[1], r[2], r[3]
    local original = t[name]
    saved[i] = original
    t[name] = function(opts, ...)
      local body, res, info = original(opts, ...)
      -- a prepared request is not an exchange: it is sent by core.request, recorded there
      if not (type(opts) == "table" and opts.prepare) then
        log[#log + 1] = { op = label, body = body, res = res, info = info }
      end
      return body, res, info
    end
  end
  local results = { n = 0 }
  local function keep(...) results = { n = select("#", ...), ... } end
  keep(pcall(fn))
  for i, r in ipairs(recorded_ops) do r[1][r[2]] = saved[i] end
  if not results[1] then error(results[2], 0) end
  return log, (table.unpack or unpack)(results, 2, results.n)
end

-- every exchange of a client call reached Prism and was accepted
local function assert_all_accepted(log, what, count)
  assert(#log == (count or 1), ("%s: %d exchanges, %d expected"):format(what, #log, count or 1))
  for i, e in ipairs(log) do
    assert_accepted(e.body, e.res, ("%s (exchange %d, %s)"):format(what, i, e.op))
  end
end

-- the mock server of the block running now, its URL, and an input file of `requests`: set by the
-- block's setup, start_mock(document), and removed by its teardown, stop_mock
local mock, url, input

local function start_mock(document)
  return function()
    mock = contract.start(document)
    url = mock.url
    input = tmpname(".jsonl")
    write_file(input, requests)
  end
end

local function stop_mock()
  if input then os.remove(input) end
  if mock then mock:stop() end
  mock, url, input = nil, nil, nil
end

describe("contract: SiliconFlow's OpenAPI document (seeds 000, 002, 003) #contract", function()
  setup(start_mock("spec/contract/siliconflow.yaml"))
  teardown(stop_mock)

  describe("through moonbatch.core", function()
    it("POST /files: the upload form (purpose, file) and the bearer key are accepted", function()
      local body, res = core.files.upload({ base_url = url, api_key = KEY, file = input, purpose = "batch" })
      assert_accepted(body, res, "core.files.upload")
      assert.equal(20000, body.code)
      assert.equal("file-jkvytbjtow", body.data.id)
    end)

    it("POST /files: purpose defaults to 'batch', which the document's enum allows", function()
      local body, res = core.files.upload({ base_url = url, api_key = KEY, file = input })
      assert_accepted(body, res, "core.files.upload without purpose")
    end)

    it("GET /files: purpose and limit in the query are accepted", function()
      local body, res = core.files.list({ base_url = url, api_key = KEY, purpose = "batch", limit = 10 })
      assert_accepted(body, res, "core.files.list")
      assert.equal("file-kkhtqklcnm", body.data.data[1].id)
      body, res = core.files.list({ base_url = url, api_key = KEY, purpose = "batch" })
      assert_accepted(body, res, "core.files.list without limit")
    end)

    it("POST /batches: the JSON body, with and without metadata and replace, is accepted", function()
      local body, res = core.batches.create({ base_url = url, api_key = KEY, input_file_id = "file-jkvytbjtow",
        endpoint = "/v1/chat/completions", completion_window = "24h" })
      assert_accepted(body, res, "core.batches.create")
      assert.equal("batch_rdyqgrcgjg", body.id)
      body, res = core.batches.create({ base_url = url, api_key = KEY, input_file_id = "file-jkvytbjtow",
        endpoint = "/v1/chat/completions", completion_window = "336h", metadata = { description = "nightly eval job" },
        replace = { model = "deepseek-ai/DeepSeek-R1" } })
      assert_accepted(body, res, "core.batches.create with metadata and replace")
    end)
  end)

  describe("through the client", function()
    local client

    setup(function()
      client = moonbatch.new({ provider = "siliconflow", base_url = url, api_key = KEY, max_retries = 0 })
    end)

    teardown(function()
      if client then client.close() end
    end)

    it("files.upload sends what the document accepts and returns a File from its example", function()
      local log, file, msg = recording(function() return client.files.upload({ file = input }) end)
      assert(file, msg)
      assert_all_accepted(log, "files.upload")
      assert.equal("file-jkvytbjtow", file.id)
      assert.equal("file", file.object)
      assert.equal(8509, file.bytes)
      assert.equal(1741685396, file.created_at)   -- from the upload's createdAt
      assert.equal("requests.jsonl", file.filename)
      assert.equal("batch", file.purpose)
      assert.equal(1741685396, file.raw.createdAt)
    end)

    it("files.list sends what the document accepts and returns a Page of File", function()
      local log, page, msg = recording(function() return client.files.list({ limit = 5 }) end)
      assert(page, msg)
      assert_all_accepted(log, "files.list")
      assert.equal("list", page.object)
      assert.is_false(page.has_more)
      assert.equal(1, #page.data)
      local f = page.data[1]
      assert.equal("file-kkhtqklcnm", f.id)
      assert.equal("file", f.object)
      assert.equal(806, f.bytes)
      assert.equal(1741777570, f.created_at)
      assert.equal("requests-2.jsonl", f.filename)
      assert.equal(2, f.line_count)
      assert.equal("file-kkhtqklcnm", page.first_id)
      assert.equal("file-kkhtqklcnm", page.last_id)
    end)

    it("files.each fetches pages the document accepts and yields every File", function()
      local log, ids = recording(function()
        local seen = {}
        for f in client.files.each() do seen[#seen + 1] = f.id end
        return seen
      end)
      assert_all_accepted(log, "files.each")
      assert.same({ "file-kkhtqklcnm" }, ids)
    end)

    it("batches.create sends what the document accepts and returns a Batch from its example", function()
      local log, batch, msg = recording(function()
        return client.batches.create({ input_file_id = "file-jkvytbjtow",
          metadata = { description = "nightly eval job" }, replace = { model = "deepseek-ai/DeepSeek-V3" } })
      end)
      assert(batch, msg)
      assert_all_accepted(log, "batches.create")
      assert.equal("batch_rdyqgrcgjg", batch.id)
      assert.equal("batch", batch.object)
      assert.equal("/v1/chat/completions", batch.endpoint)
      assert.equal("file-jkvytbjtow", batch.input_file_id)
      assert.equal("24h", batch.completion_window)
      assert.equal("in_queue", batch.status)
      assert.equal(1741685413, batch.created_at)
      assert.equal(1741771813, batch.expires_at)
      -- the example's nulls are absent, never cjson.null
      assert.is_nil(batch.output_file_id)
      assert.is_nil(batch.error_file_id)
      assert.is_nil(batch.in_progress_at)
      assert.is_nil(batch.completed_at)
      assert.is_nil(batch.request_counts)
      assert.same({ description = "nightly eval job" }, batch.metadata)
    end)

    it("batches.create with only input_file_id sends the required endpoint and completion_window", function()
      local log, batch, msg = recording(function()
        return client.batches.create({ input_file_id = "file-jkvytbjtow" })
      end)
      assert(batch, msg)
      assert_all_accepted(log, "batches.create with defaults")
    end)
  end)

  describe("Prism refuses what breaks the document", function()
    it("an upload whose purpose is not in the enum: 400, request.body.purpose", function()
      local body, res = core.files.upload({ base_url = url, api_key = KEY, file = input, purpose = "nonsense" })
      assert_refused(400, "request.body.purpose", "allowed values", body, res, "purpose = nonsense")
    end)

    it("an upload without the 'file' part: 400, request.body requires 'file'", function()
      local body, res = core.files.upload({ base_url = url, api_key = KEY, file = input, file_field = "document" })
      assert_refused(400, "request.body", "'file'", body, res, "no file part")
    end)

    it("a list without purpose: 400, request.query requires 'purpose'", function()
      local body, res = core.files.list({ base_url = url, api_key = KEY })
      assert_refused(400, "request.query", "'purpose'", body, res, "no purpose")
    end)

    it("a batch without completion_window: 400, request.body requires it", function()
      local body, res = core.request({ url = url .. "/batches", method = "POST",
        headers = { Authorization = "Bearer " .. KEY, ["Content-Type"] = "application/json" },
        body = '{"input_file_id":"file-jkvytbjtow","endpoint":"/v1/chat/completions"}' })
      assert_refused(400, "request.body", "'completion_window'", body, res, "no completion_window")
    end)

    it("a batch whose replace.model is not in the enum: 400 through core, an error through the client", function()
      local body, res = core.batches.create({ base_url = url, api_key = KEY, input_file_id = "file-jkvytbjtow",
        endpoint = "/v1/chat/completions", replace = { model = "no/such-model" } })
      assert_refused(400, "request.body.replace.model", "allowed values", body, res, "replace.model")

      local client = moonbatch.new({ provider = "siliconflow", base_url = url, api_key = KEY, max_retries = 0 })
      local batch, msg, info = client.batches.create({ input_file_id = "file-jkvytbjtow",
        replace = { model = "no/such-model" } })
      client.close()
      assert.is_nil(batch)
      assert.equal(400, info.status)
      assert.truthy(msg:find("HTTP 400", 1, true), msg)
    end)

    it("a request without the bearer key: 401 (security bearerAuth)", function()
      local body, res = core.files.list({ base_url = url, purpose = "batch" })
      assert_refused(401, "request", "security", body, res, "no Authorization")
      assert.equal("Invalid token", body)   -- the document's 401 example: a bare JSON string
      body, res = core.batches.create({ base_url = url, input_file_id = "file-jkvytbjtow",
        endpoint = "/v1/chat/completions", headers = { Authorization = "Basic c2stdGVzdDo=" } })
      assert_refused(401, "request", "security", body, res, "Basic instead of Bearer")
    end)
  end)
end)

describe("contract: Together's OpenAPI document (seed 004) #contract", function()
  setup(start_mock("spec/contract/together.yaml"))
  teardown(stop_mock)

  it("through moonbatch.core: POST /files/upload with purpose, file_name, file_type and file is accepted", function()
    local body, res = core.files.upload({ base_url = url, api_key = KEY, path = "/files/upload", file = input,
      purpose = "batch-api", fields = { file_name = "x.jsonl", file_type = "jsonl" } })
    assert_accepted(body, res, "core.files.upload (together)")
    assert.equal("file", body.object)
  end)

  it("through the client: files.upload sends what the document accepts and returns a File", function()
    local client = moonbatch.new({ provider = "together", base_url = url, api_key = KEY, max_retries = 0 })
    local log, file, msg = recording(function() return client.files.upload({ file = input }) end)
    client.close()
    assert(file, msg)
    assert_all_accepted(log, "files.upload (together)")
    assert.equal("file", file.object)
    -- the document gives no example for these: Prism makes up values of the schema's types
    assert.is_string(file.id)
    assert.is_number(file.bytes)
    assert.is_number(file.created_at)
    assert.equal("my_file.jsonl", file.filename)
    assert.equal("jsonl", file.raw.FileType)
    assert.is_boolean(file.raw.Processed)
  end)

  it("refuses SiliconFlow's form (no file_name, purpose 'batch'): 400, both named", function()
    local body, res = core.files.upload({ base_url = url, api_key = KEY, path = "/files/upload", file = input })
    assert_refused(400, "request.body", "'file_name'", body, res, "SiliconFlow's form")
    assert_refused(400, "request.body.purpose", "batch-api", body, res, "SiliconFlow's form")
    assert.equal("string", type(body.error and body.error.message))   -- the document's ErrorData
  end)

  it("refuses a file_type outside its enum: 400, request.body.file_type", function()
    local body, res = core.files.upload({ base_url = url, api_key = KEY, path = "/files/upload", file = input,
      purpose = "batch-api", fields = { file_name = "x.jsonl", file_type = "ndjson" } })
    assert_refused(400, "request.body.file_type", "allowed values", body, res, "file_type = ndjson")
  end)

  it("refuses an upload without the bearer key: 401", function()
    local body, res = core.files.upload({ base_url = url, path = "/files/upload", file = input,
      purpose = "batch-api", fields = { file_name = "x.jsonl", file_type = "jsonl" } })
    assert_refused(401, "request", "security", body, res, "no Authorization")
  end)
end)

-- The OpenAI-compatible documents (Groq, DeepInfra), Azure's and Mistral's, one table each: the
-- document, the part of the base URL its paths leave out, the provider, the headers and query
-- moonbatch.core's calls carry, the ids its paths take, and what the document does not describe
-- or Prism cannot mock.
local UUID, UUID2 = "497f6eca-6276-4993-bfeb-53cbbbba6f09", "6b79e6a4-c3aa-4da1-8fb4-9e2520d26bfa"
local SERVICES = {
  { name = "Groq", doc = "spec/contract/groq.yaml", prefix = "/openai/v1", provider = "groq",
    auth = { Authorization = "Bearer " .. KEY } },
  { name = "DeepInfra", doc = "spec/contract/deepinfra.yaml", prefix = "/v1/openai", provider = "deepinfra",
    auth = { Authorization = "Bearer " .. KEY },
    -- its document has no file get, delete or content and no cancel; every 200 is an empty schema
    -- (Prism answers null, which the client reports as a decode error, the request accepted)
    missing = { ["files.get"] = true, ["files.delete"] = true, ["files.download"] = true, ["batches.cancel"] = true },
    null_bodies = true,
    -- GET /batches declares `after` required
    list_opts = { after = "batch_0" } },
  { name = "Azure OpenAI", doc = "spec/contract/azure-openai.yaml", prefix = "", provider = "azure",
    auth = { ["api-key"] = KEY }, query = { ["api-version"] = "2024-10-21" },
    -- GET /files/{id}/content is application/octet-stream, which Prism cannot serialize (500
    -- after the request passed its check): the stand-in covers the download
    unmockable = { ["files.download"] = true } },
  { name = "Mistral", doc = "spec/contract/mistral.yaml", prefix = "/v1", provider = "mistral",
    auth = { Authorization = "Bearer " .. KEY }, file_id = UUID, batch_id = UUID2, batches = "/batch/jobs",
    create_json = { input_files = { UUID }, endpoint = "/v1/chat/completions", model = "mistral-small-latest",
                    timeout_hours = 24 },
    create_opts = { input_file_id = UUID, replace = { model = "mistral-small-latest" } },
    -- the document's own examples for an uploaded or listed file break its schema (a string
    -- `bytes`, ids that are not uuids): Prism answers 500 after the request passed its check
    unmockable = { ["files.upload"] = true, ["files.list"] = true, ["files.get"] = true,
                   ["core.files.upload"] = true, ["core.files.list"] = true, ["core.request files.get"] = true } },
}

-- what Prism said about the request (not about its own made-up reply)
local function request_violations(res, body)
  local out = {}
  for _, v in ipairs(contract.violations(res, body)) do
    if v.location:match("^request") then out[#out + 1] = v end
  end
  return out
end

local function copy(t, extra)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

-- Prism's refusal of a missing or wrong key: 401 (a 500 when its made-up 401 reply breaks the
-- document, as Azure's ErrorResponse does, the request's 401 violation listed)
local function assert_unauthorized(body, res, what)
  local found = contract.violations(res, body)
  if res.status == 500 then
    for _, v in ipairs(found) do
      if v.location == "request" and tostring(v.code):match("^401") then return end
    end
  end
  assert(res.status == 401, ("%s: HTTP %s, not 401 (%s)"):format(what, tostring(res.status), contract.describe(found)))
end

for _, svc in ipairs(SERVICES) do
  describe(("contract: %s's API document (%s) #contract"):format(svc.name, svc.doc), function()
    setup(start_mock(svc.doc))
    teardown(stop_mock)

    local file_id, batch_id = svc.file_id or "file-abc", svc.batch_id or "batch_abc"
    local batches = svc.batches or "/batches"

    local function base() return url .. svc.prefix end

    -- a prepared request of moonbatch.core's convenience calls, with the service's query, sent
    local function send(req)
      req.query = copy(req.query, svc.query)
      return core.request(req)
    end

    -- the request passed Prism's check; the reply is the document's (or, where Prism cannot
    -- make one, its 500)
    local function assert_sent(body, res, what)
      if svc.unmockable and svc.unmockable[what] then
        local found = request_violations(res, body)
        assert(#found == 0, what .. ": Prism found " .. contract.describe(found))
        assert.equal(500, res.status, what)
      else
        assert_accepted(body or (svc.null_bodies and {}), res, what)
      end
    end

    describe("through moonbatch.core", function()
      it("files.upload, files.list and the batch's create are accepted", function()
        local body, res = send(core.files.upload({ base_url = base(), headers = svc.auth, file = input,
          prepare = true }))
        assert_sent(body, res, "core.files.upload")
        body, res = send(core.files.list({ base_url = base(), headers = svc.auth, purpose = "batch", prepare = true }))
        assert_sent(body, res, "core.files.list")
        if svc.create_json then
          body, res = send({ method = "POST", url = base() .. batches, headers = svc.auth, json = svc.create_json })
        else
          body, res = send(core.batches.create({ base_url = base(), headers = svc.auth, input_file_id = file_id,
            endpoint = "/v1/chat/completions", metadata = { job = "nightly" }, prepare = true }))
        end
        assert_sent(body, res, "core.batches.create")
      end)

      it("core.request: every other operation the dialect uses is accepted", function()
        local ops = {
          { "files.get", "GET", "/files/" .. file_id }, { "files.delete", "DELETE", "/files/" .. file_id },
          { "batches.get", "GET", batches .. "/" .. batch_id }, { "batches.list", "GET", batches, svc.list_opts },
          { "batches.cancel", "POST", batches .. "/" .. batch_id .. "/cancel" },
        }
        local checked = 0
        for _, op in ipairs(ops) do
          if not (svc.missing and svc.missing[op[1]]) then
            local body, res = send({ method = op[2], url = base() .. op[3], headers = svc.auth, query = op[4] })
            assert_sent(body, res, "core.request " .. op[1])
            checked = checked + 1
          end
        end
        assert.is_true(checked >= 2)
      end)
    end)

    describe("through the client", function()
      local client

      setup(function()
        client = moonbatch.new({ provider = svc.provider, base_url = base(), api_key = KEY, max_retries = 0 })
      end)

      teardown(function()
        if client then client.close() end
      end)

      local calls = {
        { "files.upload", function() return client.files.upload({ file = input }) end, "file" },
        { "files.list", function() return client.files.list() end, "list" },
        { "files.get", function() return client.files.get(file_id) end, "file" },
        { "files.delete", function() return client.files.delete(file_id) end },
        { "files.download", function() return client.files.download(file_id, input .. ".out") end },
        { "batches.create", function() return client.batches.create(svc.create_opts or { input_file_id = file_id }) end,
          "batch" },
        { "batches.get", function() return client.batches.get(batch_id) end, "batch" },
        { "batches.list", function() return client.batches.list(svc.list_opts) end, "list" },
        { "batches.cancel", function() return client.batches.cancel(batch_id) end, "batch" },
      }
      for _, call in ipairs(calls) do
        local what = call[1]
        if not (svc.missing and svc.missing[what]) then
          it(what .. " sends what the document accepts", function()
            local log, value, msg, info = recording(call[2])
            os.remove(input .. ".out")
            assert.equal(1, #log, what)
            local e = log[1]
            local found = request_violations(e.res, e.body)
            assert(#found == 0, what .. ": Prism found " .. contract.describe(found))
            if svc.unmockable and svc.unmockable[what] then
              assert.equal(500, e.res.status)
            elseif svc.null_bodies and what ~= "batches.create" then
              -- a 200 of JSON null: the request passed, the reply is not an object
              assert.equal(200, e.res.status)
              assert.is_nil(value)
              assert.equal("decode", info.kind, msg)
            else
              assert(value, msg)
              assert_all_accepted(log, what)
              if call[3] then assert.equal(call[3], value.object, what) end
            end
          end)
        end
      end
    end)

    describe("Prism refuses what breaks the document", function()
      it("a request without the key: 401", function()
        local body, res = send({ url = base() .. batches })
        assert_unauthorized(body, res, "no key")
      end)

      if svc.provider == "azure" then
        it("a call without api-version, and a Bearer key instead of api-key", function()
          local body, res = core.request({ url = base() .. "/batches", headers = svc.auth })
          assert.is_true(res.status >= 400, tostring(res.status))
          assert.is_true(contract.has(contract.violations(res, body), "request.query", "api-version"),
            contract.describe(contract.violations(res, body)))
          body, res = send({ url = base() .. "/batches", headers = { Authorization = "Bearer " .. KEY } })
          assert_unauthorized(body, res, "Bearer on Azure")
        end)
      else
        it("a batch whose endpoint is not in the document's enum", function()
          local body, res
          if svc.create_json then
            body, res = send({ method = "POST", url = base() .. batches, headers = svc.auth,
              json = copy(svc.create_json, { endpoint = "/v1/images/generations" }) })
          else
            body, res = send(core.batches.create({ base_url = base(), headers = svc.auth, input_file_id = "f",
              endpoint = "/v1/images/generations", prepare = true, metadata = { a = "b" } }))
          end
          assert.is_true(res.status >= 400 and res.status < 500, tostring(res.status))
          local found = contract.violations(res, body)
          assert.is_true(contract.has(found, "request.body.endpoint", "allowed values")
            or contract.has(found, "body.endpoint", "allowed values"), contract.describe(found))
        end)
      end

      if svc.provider == "deepinfra" then
        it("a create without metadata, which the client always sends", function()
          local body, res = send(core.batches.create({ base_url = base(), headers = svc.auth, input_file_id = "f",
            endpoint = "/v1/chat/completions", prepare = true }))
          assert_refused(422, "request.body", "metadata", body, res, "no metadata")
        end)
      end

      if svc.provider == "mistral" then
        it("a job whose timeout_hours is over 168, and a file id that is not a uuid", function()
          local body, res = send({ method = "POST", url = base() .. batches, headers = svc.auth,
            json = copy(svc.create_json, { timeout_hours = 200 }) })
          assert.is_true(res.status >= 400 and res.status < 500, tostring(res.status))
          local found = contract.violations(res, body)
          assert.is_true(contract.has(found, "request.body.timeout_hours") or contract.has(found, "body.timeout_hours"),
            contract.describe(found))
          body, res = send({ url = base() .. "/files/file-abc", headers = svc.auth })
          found = contract.violations(res, body)
          assert.is_true(contract.has(found, "request.path.file_id", "uuid") or contract.has(found, "path.file_id", "uuid"),
            contract.describe(found))
        end)
      end
    end)
  end)
end
