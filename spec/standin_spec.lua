-- spec/standin_spec.lua: the stand-in itself (bin/moonbatch-standin), driven with the curl command line.
local cjson = require("cjson")
local shell = require("spec.support.shell")
local standin = require("spec.standin_helper")
local quote, capture, sh, read_file = shell.quote, shell.capture, shell.execute, shell.read_file
local write_file, tmpdir, tmpname = shell.write_file, shell.tmpdir, shell.tmpname
local keys_of = standin.keys_of

local KEY = "sk-standin-spec-7f3a"

local unpack = table.unpack or unpack

local function sorted(list)
  local out = { unpack(list) }
  table.sort(out)
  return out
end

local eventually = shell.eventually

local function pids_of_nginx(dir)
  local master = tonumber(read_file(dir .. "/nginx.pid") or "")
  local pids = { master }
  for pid in capture("pgrep -P " .. master):gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

-- One curl run (see standin.curl), with the spec's key unless opts.key says otherwise (false: none).
local curl = standin.curl_with(KEY)

-- The decoded body of a reply that must be a 200.
local function ok_json(r)
  assert.equal(200, r.status, r.body)
  return cjson.decode(r.body)
end

describe("moonbatch-standin", function()
  local s, dir, sf, input, content

  local function upload(path, opts)
    opts = opts or {}
    opts.form = opts.form or { "purpose=batch", "file=@" .. path }
    return curl((opts.base or sf) .. "/files", opts)
  end

  local function upload_ok(path)
    return ok_json(upload(path)).data
  end

  -- a case's form fields, "INPUT" in them replaced by the input file's path
  local function form_of(fields)
    local form = {}
    for i, f in ipairs(fields) do form[i] = f:gsub("INPUT", input) end
    return form
  end

  -- the batch that create_batch(body) makes of file_id (the endpoint and window every dialect
  -- takes, then `changes`), decoded from its 200 reply
  local function batch_of(create_batch, file_id, changes)
    local body = { input_file_id = file_id, endpoint = "/v1/chat/completions", completion_window = "24h" }
    for k, v in pairs(changes or {}) do body[k] = v end
    return ok_json(create_batch(body))
  end

  local function list(query, base)
    return curl((base or sf) .. "/files" .. (query or "?purpose=batch"))
  end

  local function create(body)
    return curl(sf .. "/batches", { data = type(body) == "string" and body or cjson.encode(body),
                                    headers = { "Content-Type: application/json" } })
  end

  local function assert_bad_request(r, message)
    assert.equal(400, r.status, r.body)
    assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
    local body = cjson.decode(r.body)
    assert.same({ "code", "data", "message" }, keys_of(body))
    assert.equal(20012, body.code)
    assert.equal(cjson.null, body.data)
    if message then assert.equal(message, body.message) end
  end

  setup(function()
    dir = tmpdir()
    s = standin.start({ key = KEY, dir = dir })
    sf = s.urls.siliconflow
    input = tmpname(".jsonl")   -- the upload wants a .jsonl name
    content = '{"custom_id":"a","body":{"messages":[]}}\n{"custom_id":"b","body":{"messages":[]}}\n'
    write_file(input, content)
  end)

  teardown(function()
    if s then s:stop() end
    os.remove(input)
    sh("rm -rf " .. quote(dir))
  end)

  before_each(function()
    s:reset()
  end)

  it("prints a base URL per dialect and the control URL", function()
    local base = "http://127.0.0.1:" .. s.port
    assert.same({ siliconflow = base .. "/siliconflow/v1",
                  ["siliconflow-global"] = base .. "/siliconflow-global/v1",
                  together = base .. "/together/v1", openai = base .. "/openai/v1",
                  azure = base .. "/azure/openai", groq = base .. "/groq/openai/v1",
                  deepinfra = base .. "/deepinfra/v1/openai", dashscope = base .. "/dashscope/compatible-mode/v1",
                  ["dashscope-intl"] = base .. "/dashscope-intl/compatible-mode/v1", moonshot = base .. "/moonshot/v1",
                  zhipu = base .. "/zhipu/api/paas/v4", mistral = base .. "/mistral/v1" }, s.urls)
    assert.equal(base .. "/_standin", s.control)
  end)

  describe("POST /files", function()
    it("stores the upload and answers with the seed's envelope", function()
      local r = upload(input)
      assert.equal(200, r.status)
      assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
      local body = cjson.decode(r.body)
      assert.same({ "code", "data", "message", "status" }, keys_of(body))
      assert.equal(20000, body.code)
      assert.equal("Ok", body.message)
      assert.is_true(body.status)
      local data = body.data
      assert.same({ "bytes", "createdAt", "filename", "id", "object", "purpose" }, keys_of(data))
      assert.matches("^file%-%l%l%l%l%l%l%l%l%l%l$", data.id)
      assert.equal("file", data.object)
      assert.equal(#content, data.bytes)
      assert.is_true(math.abs(data.createdAt - os.time()) < 60)
      assert.equal(input:match("[^/]+$"), data.filename)
      assert.equal("batch", data.purpose)
      assert.equal(content, s:file_content(data.id))
      assert.equal(content, read_file(dir .. "/files/" .. data.id))

      local e = s:log()[1]
      assert.equal("POST", e.method)
      assert.equal("/siliconflow/v1/files", e.path)
      assert.equal(200, e.status)
      assert.equal("ok", e.auth)
      assert.equal(cjson.null, e.fault)
      assert.equal("batch", e.fields.purpose)
      assert.same({ filename = data.filename, content_type = "application/octet-stream",
                    bytes = #content, lines = 2 }, e.fields.file)
      assert.equal(tonumber(e.headers["content-length"]), e.body_bytes)
    end)

    local line_cases = {
      { "an empty file", "", 0 },
      { "one line without newline", "a", 1 },
      { "one line", "a\n", 1 },
      { "a last line without newline", "a\nb", 2 },
      { "an empty line inside", "a\n\nb\n", 3 },
      { "only newlines", "\n\n", 2 },
    }
    for _, case in ipairs(line_cases) do
      it("counts lines of " .. case[1], function()
        local path = os.tmpname()
        write_file(path, case[2])
        local data = upload_ok(path)
        os.remove(path)
        assert.equal(#case[2], data.bytes)
        assert.equal(case[3], s:log()[1].fields.file.lines)
        assert.equal(case[3], cjson.decode(list().body).data.data[1].line_count)
        assert.equal(case[2], s:file_content(data.id))
      end)
    end

    it("accepts a chunked body", function()
      local r = upload(input, { headers = { "Transfer-Encoding: chunked" } })
      local data = ok_json(r).data
      assert.equal(#content, data.bytes)
      assert.equal(content, s:file_content(data.id))
      assert.equal(2, s:log()[1].fields.file.lines)
    end)

    it("keeps text fields beside the file in the log", function()
      upload(input, { form = { "purpose=batch", "extra=1", "file=@" .. input .. ";filename=named.jsonl" } })
      local fields = s:log()[1].fields
      assert.equal("1", fields.extra)
      assert.equal("named.jsonl", fields.file.filename)
    end)

    local error_cases = {
      { "purpose is missing", { "file=@INPUT" }, "purpose is required" },
      { "purpose is not batch", { "purpose=fine-tune", "file=@INPUT" }, "purpose must be batch" },
      { "file is missing", { "purpose=batch" }, "file is required" },
      { "file is a text field", { "purpose=batch", "file=hello" }, "file must be a file upload" },
    }
    for _, case in ipairs(error_cases) do
      it("answers 400 when " .. case[1], function()
        assert_bad_request(upload(input, { form = form_of(case[2]) }), case[3])
        assert.same({}, cjson.decode(list().body).data.data)
      end)
    end

    it("answers 400 to a body that is not multipart", function()
      local json = { data = '{"purpose":"batch"}', headers = { "Content-Type: application/json" } }
      assert_bad_request(curl(sf .. "/files", json), "request Content-Type isn't multipart/form-data")
      local no_boundary = { data = "x", headers = { "Content-Type: multipart/form-data" } }
      assert_bad_request(curl(sf .. "/files", no_boundary))
    end)

    it("survives garbage multipart bodies and keeps serving", function()
      local bodies = {
        "garbage without any boundary",
        "--XX\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch",      -- no closing boundary
        "--XX\r\n" .. ("A"):rep(100000),                                  -- endless header line
        "--XX\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XX--\r\n",  -- part without a name
        "--XX\r\n" .. ("X-A: b\r\n"):rep(100) .. "\r\nx\r\n--XX--\r\n",                   -- too many headers
        "--XX--\r\n",                                                                     -- no parts at all
        "--XXjunk",
      }
      for _, body in ipairs(bodies) do
        local headers = { "Content-Type: multipart/form-data; boundary=XX" }
        local r = curl(sf .. "/files", { data = body, headers = headers })
        assert_bad_request(r)
      end
      assert.equal(200, upload(input).status)
      assert.equal(1, #cjson.decode(list().body).data.data)
      -- no half-written uploads left behind
      assert.equal("", capture("ls -A " .. quote(dir .. "/files") .. " | grep '^\\.' || true"))
    end)

    it("streams a 200 MiB upload to disk with a small worker", function()
      local big = os.tmpname()
      local lines = {}
      for i = 1, 1000 do lines[i] = '{"custom_id":"' .. i .. '"}\n' end
      write_file(big, table.concat(lines))
      local size = 200 * 1024 * 1024
      assert.is_true(sh(("truncate -s %d %s && printf '\\n' >> %s"):format(size - 1, quote(big), quote(big))))
      local r = upload(big)
      local data = ok_json(r).data
      assert.equal(size, data.bytes)
      assert.equal(1001, s:log()[1].fields.file.lines)
      assert.is_true(sh("cmp -s " .. quote(big) .. " " .. quote(dir .. "/files/" .. data.id)))
      local fetched = os.tmpname()
      assert.is_true(sh(("curl -s --noproxy '*' -o %s %s && cmp -s %s %s")
        :format(quote(fetched), quote(s.control .. "/files/" .. data.id), quote(big), quote(fetched))))
      os.remove(fetched)
      os.remove(big)
      local worker = pids_of_nginx(dir)[2]
      local hwm = tonumber(read_file("/proc/" .. worker .. "/status"):match("VmHWM:%s*(%d+) kB"))
      assert.is_true(hwm < 64 * 1024, "nginx worker peak RSS " .. hwm .. " KiB")
    end)
  end)

  describe("GET /files", function()
    it("lists newest first, at most limit, with created_at and line_count", function()
      local ids = {}
      for i = 1, 3 do ids[i] = upload_ok(input).id end
      local r = list("?purpose=batch&limit=2")
      assert.equal(200, r.status)
      local body = cjson.decode(r.body)
      assert.equal(20000, body.code)
      assert.equal("Ok", body.message)
      assert.is_true(body.status)
      assert.equal("file", body.data.object)
      assert.equal(2, #body.data.data)
      assert.equal(ids[3], body.data.data[1].id)
      assert.equal(ids[2], body.data.data[2].id)
      local item = body.data.data[1]
      assert.same({ "bytes", "created_at", "filename", "id", "line_count", "object", "purpose" },
        keys_of(item))
      assert.equal("file", item.object)
      assert.equal(#content, item.bytes)
      assert.equal(2, item.line_count)
      assert.equal("batch", item.purpose)
      assert.is_true(math.abs(item.created_at - os.time()) < 60)
      assert.equal(3, #cjson.decode(list().body).data.data)
    end)

    it("returns at most 10 by default, and an empty array when there is nothing", function()
      assert.truthy(list().body:find('"data":[]', 1, true))
      for _ = 1, 11 do upload_ok(input) end
      assert.equal(10, #cjson.decode(list().body).data.data)
      assert.equal(11, #cjson.decode(list("?purpose=batch&limit=50").body).data.data)
    end)

    local cases = {
      { "", "purpose is required" },
      { "?limit=2", "purpose is required" },
      { "?purpose=fine-tune", "purpose must be batch" },
      { "?purpose=batch&limit=0", "limit must be an integer >= 1" },
      { "?purpose=batch&limit=-1", "limit must be an integer >= 1" },
      { "?purpose=batch&limit=abc", "limit must be an integer >= 1" },
      { "?purpose=batch&limit=1.5", "limit must be an integer >= 1" },
      { "?purpose=batch&limit=", "limit must be an integer >= 1" },
    }
    for _, case in ipairs(cases) do
      it("answers 400 to '" .. case[1] .. "'", function()
        assert_bad_request(list(case[1]), case[2])
      end)
    end

    it("keeps siliconflow and siliconflow-global apart", function()
      local global = s.urls["siliconflow-global"]
      local r = upload(input, { base = global })
      assert.equal(200, r.status)
      assert.same({}, cjson.decode(list().body).data.data)
      assert.equal(1, #cjson.decode(list(nil, global).body).data.data)
      assert.equal("/siliconflow-global/v1/files", s:log()[1].path)
    end)
  end)

  describe("POST /batches", function()
    local BATCH_KEYS = {
      "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
      "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
      "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts",
      "metadata",
    }
    local file_id

    before_each(function()
      file_id = upload_ok(input).id
    end)

    it("creates an in_queue batch shaped like the seed's example, keys in its order", function()
      local r = create({ input_file_id = file_id, endpoint = "/v1/chat/completions",
                         completion_window = "24h", metadata = { description = "nightly eval job" },
                         replace = { model = "deepseek-ai/DeepSeek-V3" } })
      assert.equal(200, r.status, r.body)
      assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
      local b = cjson.decode(r.body)
      assert.same(sorted(BATCH_KEYS), keys_of(b))
      local last = 0
      for _, k in ipairs(BATCH_KEYS) do
        local at = r.body:find('"' .. k .. '":', 1, true)
        assert.is_true(at > last, k .. " out of order")
        last = at
      end
      assert.matches("^batch_%l%l%l%l%l%l%l%l%l%l$", b.id)
      assert.equal("batch", b.object)
      assert.equal("/v1/chat/completions", b.endpoint)
      assert.equal(file_id, b.input_file_id)
      assert.equal("24h", b.completion_window)
      assert.equal("in_queue", b.status)
      assert.is_true(math.abs(b.created_at - os.time()) < 60)
      assert.equal(b.created_at + 86400, b.expires_at)
      for _, k in ipairs({ "errors", "output_file_id", "error_file_id", "in_progress_at", "finalizing_at",
                           "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
                           "request_counts" }) do
        assert.equal(cjson.null, b[k], k)
      end
      assert.same({ description = "nightly eval job" }, b.metadata)
      assert.same({ model = "deepseek-ai/DeepSeek-V3" }, s:log()[2].json.replace)
    end)

    it("sets expires_at from the window and metadata null when absent", function()
      local b = cjson.decode(create({ input_file_id = file_id, endpoint = "/v1/chat/completions",
                                      completion_window = "336h" }).body)
      assert.equal(b.created_at + 336 * 3600, b.expires_at)
      assert.equal(cjson.null, b.metadata)
    end)

    local function body_with(changes)
      local b = { input_file_id = "FILE", endpoint = "/v1/chat/completions", completion_window = "24h" }
      for k, v in pairs(changes) do b[k] = v end
      return b
    end
    local window = "completion_window must be between 24h and 336h"
    local cases = {
      { "input_file_id is missing", { input_file_id = cjson.null }, "input_file_id is required" },
      { "endpoint is missing", { endpoint = cjson.null }, "endpoint is required" },
      { "completion_window is missing", { completion_window = cjson.null }, "completion_window is required" },
      { "input_file_id is a number", { input_file_id = 5 }, "input_file_id must be a string" },
      { "endpoint is not chat completions", { endpoint = "/v1/embeddings" },
        "endpoint must be /v1/chat/completions" },
      { "the window is 23h", { completion_window = "23h" }, window },
      { "the window is 337h", { completion_window = "337h" }, window },
      { "the window has no unit", { completion_window = "24" }, window },
      { "the window is in days", { completion_window = "1d" }, window },
      { "the window is a number", { completion_window = 24 }, "completion_window must be a string" },
      { "the file does not exist", { input_file_id = "file-nosuchfile" },
        "input_file_id file-nosuchfile not found" },
      { "metadata is a string", { metadata = "x" }, "metadata must be an object" },
      { "metadata is an array", { metadata = { "x" } }, "metadata must be an object" },
      { "replace is a string", { replace = "m" }, "replace must be an object" },
      { "replace has no model", { replace = { other = 1 } }, "replace.model must be a string" },
    }
    for _, case in ipairs(cases) do
      it("answers 400 when " .. case[1], function()
        local b = body_with(case[2])
        if b.input_file_id == "FILE" then b.input_file_id = file_id end
        assert_bad_request(create(b), case[3])
      end)
    end

    it("answers 400 to invalid JSON and to a body that is not an object", function()
      assert_bad_request(create("{not json"), "invalid JSON in request body")
      assert_bad_request(create(""), "invalid JSON in request body")
      assert_bad_request(create('{"a":NaN}'), "invalid JSON in request body")
      assert_bad_request(create(("["):rep(10000)), "invalid JSON in request body")
      assert_bad_request(create("[1,2]"), "request body must be a JSON object")
      assert_bad_request(create('"x"'), "request body must be a JSON object")
    end)
  end)

  -- Checks that the keys of the JSON object text appear in this order.
  local function assert_key_order(text, keys)
    local last = 0
    for _, k in ipairs(keys) do
      local at = text:find('"' .. k .. '":', last + 1, true)
      assert.is_truthy(at, k .. " missing")
      assert.is_true(at > last, k .. " out of order")
      last = at
    end
  end

  -- The decoded body of a 200 reply that is an object of exactly `keys`, in that order.
  local function ok_object(r, keys)
    assert.equal(200, r.status, r.body)
    assert_key_order(r.body, keys)
    local object = cjson.decode(r.body)
    assert.same(sorted(keys), keys_of(object))
    return object
  end

  local function post_json(url, body, opts)
    opts = opts or {}
    opts.data = type(body) == "string" and body or cjson.encode(body)
    opts.headers = { "Content-Type: application/json" }
    return curl(url, opts)
  end

  describe("SiliconFlow batches after creation", function()
    local file_id

    local function new_batch(changes)
      return batch_of(create, file_id, changes)
    end

    local function assert_go_404(r)
      assert.equal(404, r.status, r.body)
      assert.equal("404 page not found", r.body)
      assert.truthy(r.headers["content-type"]:find("^text/plain"))
    end

    before_each(function()
      file_id = upload_ok(input).id
    end)

    it("GET /batches/{id} answers the batch, unknown ids Go's 404", function()
      local b = new_batch({ metadata = { a = "b" } })
      local r = curl(sf .. "/batches/" .. b.id)
      local got = ok_json(r)
      assert.equal(b.id, got.id)
      assert.equal("in_queue", got.status)
      assert.same({ a = "b" }, got.metadata)
      assert.equal(cjson.null, got.request_counts)
      assert_go_404(curl(sf .. "/batches/batch_nosuchbatch"))
      assert_go_404(curl(s.urls["siliconflow-global"] .. "/batches/" .. b.id))
    end)

    it("GET /batches lists newest first, OpenAI-shaped, each with file_name, with limit and after", function()
      local ids = {}
      for i = 1, 3 do ids[i] = new_batch().id end
      local r = curl(sf .. "/batches")
      assert.equal(200, r.status, r.body)
      assert_key_order(r.body, { "object", "data", "first_id", "last_id", "has_more" })
      local page = cjson.decode(r.body)
      assert.equal("list", page.object)
      assert.equal(3, #page.data)
      assert.same({ ids[3], ids[2], ids[1] }, { page.data[1].id, page.data[2].id, page.data[3].id })
      assert.equal(ids[3], page.first_id)
      assert.equal(ids[1], page.last_id)
      assert.is_false(page.has_more)
      assert.equal(input:match("[^/]+$"), page.data[1].file_name)
      assert.equal("batch", page.data[1].object)
      local first = cjson.decode(curl(sf .. "/batches?limit=2").body)
      assert.same({ ids[3], ids[2] }, { first.data[1].id, first.data[2].id })
      assert.is_true(first.has_more)
      local second = cjson.decode(curl(sf .. "/batches?limit=2&after=" .. first.last_id).body)
      assert.equal(1, #second.data)
      assert.equal(ids[1], second.data[1].id)
      assert.is_false(second.has_more)
      local empty = cjson.decode(curl(s.urls["siliconflow-global"] .. "/batches").body)
      assert.same({}, empty.data)
      assert.equal(cjson.null, empty.first_id)
      assert.truthy(curl(s.urls["siliconflow-global"] .. "/batches").body:find('"data":[]', 1, true))
    end)

    for _, query in ipairs({ "?limit=0", "?limit=x", "?after=batch_nosuchbatch" }) do
      it("GET /batches answers 400 to " .. query, function()
        assert_bad_request(curl(sf .. "/batches" .. query))
      end)
    end

    it("POST /batches/{id}/cancel makes the batch cancelling; unknown ids get Go's 404", function()
      local b = new_batch()
      local r = curl(sf .. "/batches/" .. b.id .. "/cancel", { method = "POST" })
      local got = ok_json(r)
      assert.equal("cancelling", got.status)
      assert.is_true(math.abs(got.cancelling_at - os.time()) < 60)
      assert.equal("cancelling", cjson.decode(curl(sf .. "/batches/" .. b.id .. "/cancel", { method = "POST" }).body).status)
      assert_go_404(curl(sf .. "/batches/batch_nosuchbatch/cancel", { method = "POST" }))
    end)

    it("GET /files/{id}/content serves the bytes as stored, unknown ids get Go's 404", function()
      local r = curl(sf .. "/files/" .. file_id .. "/content")
      assert.equal(200, r.status)
      assert.equal(content, r.body)
      assert.equal(tostring(#content), r.headers["content-length"])
      assert.equal("application/octet-stream", r.headers["content-type"])
      local log = s:log()
      assert.equal("/siliconflow/v1/files/" .. file_id .. "/content", log[#log].path)
      assert_go_404(curl(sf .. "/files/file-nosuchfile/content"))
      assert_go_404(curl(s.urls["siliconflow-global"] .. "/files/" .. file_id .. "/content"))
    end)
  end)

  describe("together", function()
    local tg

    local FILE_KEYS = { "id", "object", "created_at", "filename", "bytes", "purpose", "FileType", "Processed" }
    local JOB_KEYS = {
      "id", "user_id", "input_file_id", "file_size_bytes", "status", "job_deadline", "created_at", "endpoint",
      "progress", "model_id", "output_file_id", "error_file_id", "error", "completed_at",
    }
    local UUID = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x"
    local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"

    local function tg_upload(form, opts)
      opts = opts or {}
      opts.form = form or { "purpose=batch-api", "file_name=requests.jsonl", "file=@" .. input }
      return curl(tg .. "/files/upload", opts)
    end

    local function tg_upload_ok(form)
      return ok_json(tg_upload(form))
    end

    local function tg_create(body, opts)
      return post_json(tg .. "/batches", body, opts)
    end

    -- ErrorData: {"error": {message, type, param, code}}.
    local function assert_error_data(r, status, param)
      assert.equal(status, r.status, r.body)
      assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
      local body = cjson.decode(r.body)
      assert.same({ "error" }, keys_of(body))
      assert.equal("string", type(body.error.message))
      assert.equal("string", type(body.error.type))
      if param then assert.equal(param, body.error.param) end
      return body.error
    end

    -- BatchErrorResponse: {"error": "<string>"}.
    local function assert_batch_error(r, status)
      assert.equal(status, r.status, r.body)
      local body = cjson.decode(r.body)
      assert.same({ "error" }, keys_of(body))
      assert.equal("string", type(body.error))
      return body.error
    end

    setup(function()
      tg = s.urls.together
    end)

    it("POST /files/upload stores the file and answers a FileResponse", function()
      local r = tg_upload()
      local f = ok_object(r, FILE_KEYS)
      assert.matches("^file%-" .. UUID .. "$", f.id)
      assert.equal("file", f.object)
      assert.equal("requests.jsonl", f.filename)
      assert.equal(#content, f.bytes)
      assert.equal("batch-api", f.purpose)
      assert.equal("jsonl", f.FileType)
      assert.is_true(f.Processed)
      assert.matches('"created_at":%d+,', r.body)
      assert.is_true(math.abs(f.created_at - os.time()) < 60)
      assert.equal(content, s:file_content(f.id))
      local e = s:log()[1]
      assert.equal("/together/v1/files/upload", e.path)
      assert.equal("requests.jsonl", e.fields.file_name)
      local csv = tg_upload_ok({ "purpose=eval", "file_name=x.csv", "file_type=csv", "file=@" .. input })
      assert.equal("csv", csv.FileType)
      assert.equal("eval", csv.purpose)
    end)

    local upload_errors = {
      { "purpose is missing", { "file_name=a.jsonl", "file=@INPUT" }, "purpose" },
      { "purpose is batch", { "purpose=batch", "file_name=a.jsonl", "file=@INPUT" }, "purpose" },
      { "file_name is missing", { "purpose=batch-api", "file=@INPUT" }, "file_name" },
      { "file_type is unknown", { "purpose=batch-api", "file_name=a", "file_type=xml", "file=@INPUT" }, "file_type" },
      { "file is missing", { "purpose=batch-api", "file_name=a.jsonl" }, "file" },
      { "file is a text field", { "purpose=batch-api", "file_name=a.jsonl", "file=x" }, "file" },
    }
    for _, case in ipairs(upload_errors) do
      it("POST /files/upload answers 400 ErrorData when " .. case[1], function()
        local err = assert_error_data(tg_upload(form_of(case[2])), 400, case[3])
        assert.equal("invalid_request_error", err.type)
        assert.truthy(err.message:find(case[3], 1, true), err.message)
        assert.same({ data = {} }, cjson.decode(curl(tg .. "/files").body))
      end)
    end

    it("POST /files/upload answers 400 ErrorData to a body that is not multipart", function()
      assert_error_data(post_json(tg .. "/files/upload", { purpose = "batch-api" }), 400)
    end)

    it("GET /files lists every file, newest first, without pagination", function()
      local a = tg_upload_ok()
      local b = tg_upload_ok({ "purpose=fine-tune", "file_name=ft.jsonl", "file=@" .. input })
      local r = curl(tg .. "/files?limit=1")
      assert.equal(200, r.status)
      local body = cjson.decode(r.body)
      assert.same({ "data" }, keys_of(body))
      assert.same({ b.id, a.id }, { body.data[1].id, body.data[2].id })
      assert.same(b, body.data[1])
      assert.truthy(curl(s.urls.openai .. "/files").body:find('"data":[]', 1, true))
    end)

    it("GET /files/{id}, its content, and DELETE", function()
      local f = tg_upload_ok()
      local r = curl(tg .. "/files/" .. f.id)
      assert.equal(200, r.status)
      assert.same(f, cjson.decode(r.body))
      local c = curl(tg .. "/files/" .. f.id .. "/content")
      assert.equal(200, c.status)
      assert.equal(content, c.body)
      assert.equal("text/plain", c.headers["content-type"])
      assert.equal(tostring(#content), c.headers["content-length"])
      local d = curl(tg .. "/files/" .. f.id, { method = "DELETE" })
      assert.equal(200, d.status)
      assert_key_order(d.body, { "id", "deleted" })
      assert.same({ id = f.id, deleted = true }, cjson.decode(d.body))
      assert.is_nil(s:file_content(f.id))
      for _, req in ipairs({ { "GET", "" }, { "GET", "/content" }, { "DELETE", "" } }) do
        local err = assert_error_data(curl(tg .. "/files/" .. f.id .. req[2], { method = req[1] }), 404)
        assert.truthy(err.message:find(f.id, 1, true))
      end
      assert.same({ data = {} }, cjson.decode(curl(tg .. "/files").body))
    end)

    it("POST /batches answers 201 {job, warning} with a VALIDATING BatchJob", function()
      local f = tg_upload_ok()
      local r = tg_create({ endpoint = "/v1/chat/completions", input_file_id = f.id, completion_window = "24h",
                            model_id = "meta-llama/Llama-3-8b" })
      assert.equal(201, r.status, r.body)
      assert_key_order(r.body, { "job", "warning" })
      assert_key_order(r.body, JOB_KEYS)
      local body = cjson.decode(r.body)
      assert.same({ "job", "warning" }, keys_of(body))
      assert.equal("string", type(body.warning))
      local job = body.job
      assert.same(sorted(JOB_KEYS), keys_of(job))
      assert.matches("^" .. UUID .. "$", job.id)
      assert.equal("string", type(job.user_id))
      assert.equal(f.id, job.input_file_id)
      assert.equal(#content, job.file_size_bytes)
      assert.equal("VALIDATING", job.status)
      assert.matches(ISO, job.created_at)
      assert.matches(ISO, job.job_deadline)
      assert.equal(os.date("!%Y-%m-%d", os.time() + 86400), job.job_deadline:sub(1, 10))
      assert.equal("/v1/chat/completions", job.endpoint)
      assert.equal(0, job.progress)
      assert.equal("meta-llama/Llama-3-8b", job.model_id)
      for _, k in ipairs({ "output_file_id", "error_file_id", "error", "completed_at" }) do
        assert.equal(cjson.null, job[k], k)
      end
      local g = curl(tg .. "/batches/" .. job.id)
      assert.equal(200, g.status)
      assert.same(job, cjson.decode(g.body))
    end)

    it("GET /batches answers a bare array, newest first", function()
      local f = tg_upload_ok()
      assert.equal("[]", curl(tg .. "/batches").body)
      local a = cjson.decode(tg_create({ endpoint = "/v1/chat/completions", input_file_id = f.id }).body).job
      local b = cjson.decode(tg_create({ endpoint = "/v1/chat/completions", input_file_id = f.id }).body).job
      local r = curl(tg .. "/batches")
      assert.equal(200, r.status)
      assert.truthy(r.body:find("^%["))
      local jobs = cjson.decode(r.body)
      assert.same({ b.id, a.id }, { jobs[1].id, jobs[2].id })
    end)

    local batch_errors = {
      { "endpoint is missing", { endpoint = cjson.null } },
      { "input_file_id is missing", { input_file_id = cjson.null } },
      { "the file does not exist", { input_file_id = "file-00000000-0000-4000-8000-000000000000" } },
      { "priority is not an integer", { priority = 1.5 } },
      { "model_id is a number", { model_id = 5 } },
    }
    for _, case in ipairs(batch_errors) do
      it("POST /batches answers 400 {error: string} when " .. case[1], function()
        local f = tg_upload_ok()
        local body = { endpoint = "/v1/chat/completions", input_file_id = f.id }
        for k, v in pairs(case[2]) do body[k] = v end
        assert_batch_error(tg_create(body), 400)
      end)
    end

    it("POST /batches answers 400 {error: string} to bad JSON and a file of another purpose", function()
      assert_batch_error(tg_create("{nope"), 400)
      local ft = tg_upload_ok({ "purpose=fine-tune", "file_name=ft.jsonl", "file=@" .. input })
      local msg = assert_batch_error(tg_create({ endpoint = "/v1/chat/completions", input_file_id = ft.id }), 400)
      assert.truthy(msg:find("batch-api", 1, true))
    end)

    it("answers unknown batches with 404 {error: string}", function()
      assert_batch_error(curl(tg .. "/batches/00000000-0000-4000-8000-000000000000"), 404)
      assert_batch_error(curl(tg .. "/batches/00000000-0000-4000-8000-000000000000/cancel", { method = "POST" }), 404)
    end)

    it("answers a bad key with 401 in the shape of the endpoint", function()
      for _, key in ipairs({ false, "sk-wrong" }) do
        local err = assert_error_data(curl(tg .. "/files", { key = key }), 401)
        assert.equal("invalid_api_key", err.code)
        assert_error_data(tg_upload(nil, { key = key }), 401)
        assert_batch_error(curl(tg .. "/batches", { key = key }), 401)
        assert_batch_error(tg_create({}, { key = key }), 401)
        assert_batch_error(curl(tg .. "/batches/x/cancel", { method = "POST", key = key }), 401)
      end
    end)

    it("fault statuses default to Together's bodies, per endpoint family", function()
      s:fault("GET", "/together/v1/files", { { status = 429, retry_after = "1" } })
      s:fault("GET", "/together/v1/batches", { { status = 429 }, { status = 500 } })
      local r = curl(tg .. "/files")
      local err = assert_error_data(r, 429)
      assert.equal("1", r.headers["retry-after"])
      assert.same({ message = "rate limited", type = "rate_limit" }, { message = err.message, type = err.type })
      assert.equal("rate limited", assert_batch_error(curl(tg .. "/batches"), 429))
      assert_batch_error(curl(tg .. "/batches"), 500)
      assert.equal(200, curl(tg .. "/batches").status)
    end)

    it("answers unknown paths with 404", function()
      assert_error_data(curl(tg .. "/files/a/b/c"), 404)
      assert_error_data(curl(tg .. "/files", { method = "POST" }), 404)
      assert_batch_error(curl(tg .. "/batches/x/y"), 404)
    end)
  end)

  describe("openai", function()
    local oa

    local FILE_KEYS = { "id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
                        "status_details" }
    local BATCH_KEYS = {
      "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
      "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
      "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts",
      "metadata",
    }

    local function oa_upload(form, opts)
      opts = opts or {}
      opts.form = form or { "purpose=batch", "file=@" .. input }
      return curl(oa .. "/files", opts)
    end

    local function oa_upload_ok(form)
      return ok_json(oa_upload(form))
    end

    local function oa_create(body, opts)
      return post_json(oa .. "/batches", body, opts)
    end

    local function oa_batch(file_id, changes)
      return batch_of(oa_create, file_id, changes)
    end

    -- {"error": {message, type, param, code}}, all four present.
    local function assert_error(r, status, param, code)
      assert.equal(status, r.status, r.body)
      assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
      local body = cjson.decode(r.body)
      assert.same({ "error" }, keys_of(body))
      assert.same({ "code", "message", "param", "type" }, keys_of(body.error))
      assert_key_order(r.body, { "message", "type", "param", "code" })
      if param ~= nil then assert.equal(param, body.error.param) end
      if code ~= nil then assert.equal(code, body.error.code) end
      return body.error
    end

    setup(function()
      oa = s.urls.openai
    end)

    it("POST /files answers a File object", function()
      local r = oa_upload()
      local f = ok_object(r, FILE_KEYS)
      assert.matches("^file%-%w+$", f.id)
      assert.equal("file", f.object)
      assert.equal(#content, f.bytes)
      assert.equal(input:match("[^/]+$"), f.filename)
      assert.equal("batch", f.purpose)
      assert.equal("processed", f.status)
      assert.equal(f.created_at + 30 * 86400, f.expires_at)
      assert.equal(content, s:file_content(f.id))
      local other = oa_upload_ok({ "purpose=user_data", "file=@" .. input .. ";filename=notes.txt" })
      assert.equal("user_data", other.purpose)
      assert.equal(cjson.null, other.expires_at)
    end)

    local upload_errors = {
      { "purpose is missing", { "file=@INPUT" }, "purpose" },
      { "purpose is unknown", { "purpose=batch-api", "file=@INPUT" }, "purpose" },
      { "file is missing", { "purpose=batch" }, "file" },
      { "a batch file is not .jsonl", { "purpose=batch", "file=@INPUT;filename=requests.csv" }, "file" },
    }
    for _, case in ipairs(upload_errors) do
      it("POST /files answers 400 invalid_request_error when " .. case[1], function()
        local err = assert_error(oa_upload(form_of(case[2])), 400, case[3])
        assert.equal("invalid_request_error", err.type)
      end)
    end

    it("POST /files answers 400 to a body that is not multipart", function()
      local err = assert_error(post_json(oa .. "/files", { purpose = "batch" }), 400)
      assert.truthy(err.message:find("multipart/form-data", 1, true))
    end)

    it("GET /files pages with a cursor, newest first by default", function()
      local ids = {}
      for i = 1, 5 do ids[i] = oa_upload_ok().id end
      local all = cjson.decode(curl(oa .. "/files").body)
      assert.equal("list", all.object)
      assert.same({ ids[5], ids[4], ids[3], ids[2], ids[1] },
        { all.data[1].id, all.data[2].id, all.data[3].id, all.data[4].id, all.data[5].id })
      assert.equal(ids[5], all.first_id)
      assert.equal(ids[1], all.last_id)
      assert.is_false(all.has_more)
      local seen, after, pages = {}, nil, 0
      repeat
        local r = curl(oa .. "/files?limit=2" .. (after and "&after=" .. after or ""))
        assert.equal(200, r.status, r.body)
        assert_key_order(r.body, { "object", "data", "first_id", "last_id", "has_more" })
        local page = cjson.decode(r.body)
        for _, f in ipairs(page.data) do seen[#seen + 1] = f.id end
        after, pages = page.last_id, pages + 1
      until not page.has_more
      assert.equal(3, pages)
      assert.same({ ids[5], ids[4], ids[3], ids[2], ids[1] }, seen)
      local asc = cjson.decode(curl(oa .. "/files?order=asc&limit=2&after=" .. ids[2]).body)
      assert.same({ ids[3], ids[4] }, { asc.data[1].id, asc.data[2].id })
      assert.is_true(asc.has_more)
    end)

    it("GET /files filters by purpose, and a deleted cursor keeps its place", function()
      local a = oa_upload_ok()
      local b = oa_upload_ok({ "purpose=user_data", "file=@" .. input })
      local c = oa_upload_ok()
      local batch_only = cjson.decode(curl(oa .. "/files?purpose=batch").body)
      assert.same({ c.id, a.id }, { batch_only.data[1].id, batch_only.data[2].id })
      local none = cjson.decode(curl(oa .. "/files?purpose=vision").body)
      assert.same({}, none.data)
      assert.equal(cjson.null, none.first_id)
      assert.equal(cjson.null, none.last_id)
      assert.equal(200, curl(oa .. "/files/" .. b.id, { method = "DELETE" }).status)
      local rest = cjson.decode(curl(oa .. "/files?after=" .. b.id).body)
      assert.same({ a.id }, { rest.data[1].id })
    end)

    for _, query in ipairs({ "?limit=0", "?limit=10001", "?limit=x", "?order=up", "?after=file-nosuchfile" }) do
      it("GET /files answers 400 to " .. query, function()
        assert_error(curl(oa .. "/files" .. query), 400)
      end)
    end

    it("GET /files/{id}, its content and DELETE; unknown ids get 404", function()
      local f = oa_upload_ok()
      assert.same(f, cjson.decode(curl(oa .. "/files/" .. f.id).body))
      local c = curl(oa .. "/files/" .. f.id .. "/content")
      assert.equal(200, c.status)
      assert.equal(content, c.body)
      assert.equal(tostring(#content), c.headers["content-length"])
      local d = curl(oa .. "/files/" .. f.id, { method = "DELETE" })
      assert.equal(200, d.status)
      assert_key_order(d.body, { "id", "object", "deleted" })
      assert.same({ id = f.id, object = "file", deleted = true }, cjson.decode(d.body))
      for _, req in ipairs({ { "GET", "" }, { "GET", "/content" }, { "DELETE", "" } }) do
        local err = assert_error(curl(oa .. "/files/" .. f.id .. req[2], { method = req[1] }), 404)
        assert.equal("No such File object: " .. f.id, err.message)
        assert.equal("invalid_request_error", err.type)
      end
    end)

    it("POST /batches answers a validating Batch object", function()
      local f = oa_upload_ok()
      local r = oa_create({ input_file_id = f.id, endpoint = "/v1/chat/completions", completion_window = "24h",
                            metadata = { run = "nightly" },
                            output_expires_after = { anchor = "created_at", seconds = 3600 } })
      local b = ok_object(r, BATCH_KEYS)
      assert.matches("^batch_%x+$", b.id)
      assert.equal("batch", b.object)
      assert.equal("validating", b.status)
      assert.equal(f.id, b.input_file_id)
      assert.equal("24h", b.completion_window)
      assert.equal(b.created_at + 86400, b.expires_at)
      assert.same({ total = 0, completed = 0, failed = 0 }, b.request_counts)
      assert.same({ run = "nightly" }, b.metadata)
      for _, k in ipairs({ "errors", "output_file_id", "error_file_id", "in_progress_at", "finalizing_at",
                           "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at" }) do
        assert.equal(cjson.null, b[k], k)
      end
      assert.same(b, cjson.decode(curl(oa .. "/batches/" .. b.id).body))
    end)

    local batch_errors = {
      { "input_file_id is missing", { input_file_id = cjson.null }, "input_file_id" },
      { "endpoint is missing", { endpoint = cjson.null }, "endpoint" },
      { "completion_window is missing", { completion_window = cjson.null }, "completion_window" },
      { "the endpoint is unknown", { endpoint = "/v1/nope" }, "endpoint" },
      { "the window is 48h", { completion_window = "48h" }, "completion_window" },
      { "metadata has a number", { metadata = { a = 1 } }, "metadata" },
      { "metadata is a string", { metadata = "x" }, "metadata" },
      { "output_expires_after is too short", { output_expires_after = { anchor = "created_at", seconds = 60 } },
        "output_expires_after" },
      { "the file does not exist", { input_file_id = "file-nosuchfile" }, "input_file_id" },
    }
    for _, case in ipairs(batch_errors) do
      it("POST /batches answers 400 when " .. case[1], function()
        local f = oa_upload_ok()
        local body = { input_file_id = f.id, endpoint = "/v1/chat/completions", completion_window = "24h" }
        for k, v in pairs(case[2]) do body[k] = v end
        local err = assert_error(oa_create(body), 400, case[3])
        assert.equal("invalid_request_error", err.type)
      end)
    end

    it("POST /batches answers 400 to bad JSON, too much metadata and a file of another purpose", function()
      assert_error(oa_create("{nope"), 400)
      local f = oa_upload_ok()
      local metadata = {}
      for i = 1, 17 do metadata["k" .. i] = "v" end
      assert_error(oa_create({ input_file_id = f.id, endpoint = "/v1/chat/completions", completion_window = "24h",
                               metadata = metadata }), 400, "metadata")
      local other = oa_upload_ok({ "purpose=user_data", "file=@" .. input })
      assert_error(oa_create({ input_file_id = other.id, endpoint = "/v1/chat/completions",
                               completion_window = "24h" }), 400, "input_file_id")
    end)

    it("GET /batches pages with limit and after, 20 by default", function()
      local f = oa_upload_ok()
      local ids = {}
      for i = 1, 21 do ids[i] = oa_batch(f.id).id end
      local first = cjson.decode(curl(oa .. "/batches").body)
      assert.equal("list", first.object)
      assert.equal(20, #first.data)
      assert.equal(ids[21], first.first_id)
      assert.equal(ids[2], first.last_id)
      assert.is_true(first.has_more)
      local second = cjson.decode(curl(oa .. "/batches?after=" .. first.last_id).body)
      assert.same({ ids[1] }, { second.data[1].id })
      assert.is_false(second.has_more)
      assert.equal(3, #cjson.decode(curl(oa .. "/batches?limit=3").body).data)
      assert.equal(21, #cjson.decode(curl(oa .. "/batches?limit=100").body).data)
      for _, query in ipairs({ "?limit=101", "?limit=0", "?after=batch_nosuch" }) do
        assert_error(curl(oa .. "/batches" .. query), 400, nil)
      end
    end)

    it("answers unknown batches with 404", function()
      local err = assert_error(curl(oa .. "/batches/batch_nosuch"), 404)
      assert.equal("invalid_request_error", err.type)
      assert_error(curl(oa .. "/batches/batch_nosuch/cancel", { method = "POST" }), 404)
    end)

    it("POST /batches/{id}/cancel makes the batch cancelling", function()
      local b = oa_batch(oa_upload_ok().id)
      local r = curl(oa .. "/batches/" .. b.id .. "/cancel", { method = "POST" })
      local got = ok_json(r)
      assert.equal("cancelling", got.status)
      assert.equal("number", type(got.cancelling_at))
    end)

    it("answers a bad key with 401 invalid_api_key", function()
      for _, key in ipairs({ false, "sk-wrong" }) do
        for _, req in ipairs({ { "GET", "/files" }, { "GET", "/batches" }, { "POST", "/batches" },
                               { "GET", "/files/x/content" }, { "DELETE", "/files/x" } }) do
          local err = assert_error(curl(oa .. req[2], { method = req[1], key = key }), 401, nil, "invalid_api_key")
          assert.equal("invalid_request_error", err.type)
        end
        assert_error(oa_upload(nil, { key = key }), 401, nil, "invalid_api_key")
      end
    end)

    it("answers unknown paths with OpenAI's Invalid URL", function()
      local err = assert_error(curl(oa .. "/nope"), 404)
      assert.equal("Invalid URL (GET /v1/nope)", err.message)
      assert.equal("Invalid URL (PUT /v1/files)", assert_error(curl(oa .. "/files", { method = "PUT" }), 404).message)
    end)

    it("fault statuses default to OpenAI's bodies", function()
      s:fault("GET", "/openai/v1/files", { { status = 429 }, { status = 500 }, { status = 401 } })
      assert.equal("rate_limit_exceeded", assert_error(curl(oa .. "/files"), 429).code)
      assert.equal("server_error", assert_error(curl(oa .. "/files"), 500).type)
      assert.equal("invalid_api_key", assert_error(curl(oa .. "/files"), 401).code)
      assert.equal(200, curl(oa .. "/files").status)
    end)
  end)

  describe("auth", function()
    local endpoints = {
      { "GET", "/files?purpose=batch" },
      { "POST", "/files" },
      { "POST", "/batches" },
      { "GET", "/batches" },
      { "GET", "/batches/batch_x" },
      { "POST", "/batches/batch_x/cancel" },
      { "GET", "/files/file-x/content" },
    }
    for _, base_name in ipairs({ "siliconflow", "siliconflow-global" }) do
      for _, ep in ipairs(endpoints) do
        for _, case in ipairs({ { "missing", false }, { "wrong", "sk-wrong" } }) do
          local name = ("answers 401 on %s %s %s with the key %s"):format(base_name, ep[1], ep[2], case[1])
          it(name, function()
            local uploading = ep[2] == "/files" and ep[1] == "POST"
            local form = uploading and { "purpose=batch", "file=@" .. input } or nil
            local r = curl(s.urls[base_name] .. ep[2], { method = ep[1], key = case[2], form = form })
            assert.equal(401, r.status)
            assert.equal('"Invalid token"', r.body)
            assert.truthy(r.headers["content-type"]:find("application/json", 1, true))
            assert.equal(case[1], s:log()[1].auth)
            assert.same({}, cjson.decode(list().body).data.data)
          end)
        end
      end
    end

    it("takes the bearer scheme in any case", function()
      local function status_with(authorization)
        local headers = { "Authorization: " .. authorization }
        return curl(sf .. "/files?purpose=batch", { key = false, headers = headers }).status
      end
      assert.equal(200, status_with("bearer " .. KEY))
      assert.equal(200, status_with("BEARER " .. KEY))
      assert.equal(401, status_with(KEY))
    end)
  end)

  describe("unknown paths", function()
    local cases = {
      { "GET", "/siliconflow/v1/nope" },
      { "PUT", "/siliconflow/v1/files" },
      { "DELETE", "/siliconflow-global/v1/batches" },
      { "GET", "/elsewhere" },
    }
    for _, case in ipairs(cases) do
      it("answer " .. case[1] .. " " .. case[2] .. " with Go's 404", function()
        local r = curl("http://127.0.0.1:" .. s.port .. case[2], { method = case[1] })
        assert.equal(404, r.status)
        assert.equal("404 page not found", r.body)
        assert.truthy(r.headers["content-type"]:find("^text/plain"))
      end)
    end
  end)

  describe("the log", function()
    it("shows requests on one keep-alive connection with the same connection", function()
      local url = quote(sf .. "/files?purpose=batch")
      assert.is_true(sh("curl -s --noproxy '*' -H " .. quote("Authorization: Bearer " .. KEY)
        .. " -o /dev/null -o /dev/null -o /dev/null " .. url .. " " .. url .. " " .. url))
      local log = s:log()
      assert.equal(3, #log)
      for i, e in ipairs(log) do
        assert.equal(log[1].connection, e.connection)
        assert.equal(log[1].connection_requests + i - 1, e.connection_requests)
      end
    end)

    it("records method, path, query, headers and JSON, and never the authorization", function()
      create({ a = { 1, 2 }, b = "x" })
      curl(sf .. "/files?purpose=batch&limit=3&q=a%20b", { headers = { "Idempotency-Key: k-1",
        "X-Custom: yes", "User-Agent: spec/1", "Accept: application/json", "X-Api-Key: " .. KEY } })
      local log = s:log()
      assert.equal(2, #log)
      assert.same({ a = { 1, 2 }, b = "x" }, log[1].json)
      local e = log[2]
      assert.equal("GET", e.method)
      assert.equal("/siliconflow/v1/files", e.path)
      assert.same({ purpose = "batch", limit = "3", q = "a b" }, e.query)
      assert.equal(200, e.status)
      assert.equal("k-1", e.headers["idempotency-key"])
      assert.equal("yes", e.headers["x-custom"])
      assert.equal("spec/1", e.headers["user-agent"])
      assert.equal("application/json", e.headers.accept)
      assert.is_nil(e.headers.authorization)
      assert.equal("[redacted]", e.headers["x-api-key"])
      assert.equal(0, e.body_bytes)
      assert.equal(cjson.null, e.fields)
      assert.equal(cjson.null, e.json)
    end)

    it("never contains the key, nor do replies or the error log", function()
      local replies = {
        upload(input).body, list().body, create({ input_file_id = "x" }).body,
        curl(sf .. "/files?purpose=batch&k=" .. KEY, { headers = { "X-Key: " .. KEY } }).body,
        create({ input_file_id = KEY, endpoint = "/v1/chat/completions", completion_window = "24h" }).body,
        curl(sf .. "/files", { key = "wrong" }).body,
      }
      for _, body in ipairs(replies) do assert.is_nil(body:find(KEY, 1, true), body) end
      local raw = s:call("GET", "/log")
      assert.is_nil(raw:find(KEY, 1, true))
      assert.is_nil(raw:find("Bearer", 1, true))
      assert.is_nil((read_file(dir .. "/error.log") or ""):find(KEY, 1, true))
      assert.is_nil(read_file(dir .. "/nginx.conf"):find(KEY, 1, true))
    end)

    it("does not log control requests", function()
      s:log()
      s:call("GET", "/health")
      assert.same({}, s:log())
    end)
  end)

  describe("faults", function()
    local files = "/siliconflow/v1/files"

    local reply_cases = {
      { "503 with Retry-After", { status = 503, retry_after = "2" }, 503, { ["retry-after"] = "2" },
        { code = 50505, message = "Model service overloaded. Please try again later.", data = cjson.null } },
      { "429 with retry-after-ms", { status = 429, retry_after_ms = "150" }, 429,
        { ["retry-after-ms"] = "150" },
        { code = 42900, message = "Request was rejected due to rate limiting.", data = cjson.null } },
      { "429 with Retry-After", { status = 429, retry_after = "3" }, 429, { ["retry-after"] = "3" } },
      { "403 with SiliconFlow's body", { status = 403 }, 403, {}, "Forbidden" },
      { "any status, body, content type and headers",
        { status = 401, body = '"Invalid token"', content_type = "application/json",
          headers = { ["x-should-retry"] = "true", ["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT" } },
        401, { ["x-should-retry"] = "true", ["retry-after"] = "Wed, 21 Oct 2015 07:28:00 GMT" },
        "Invalid token" },
      { "a JSON body given as an object", { status = 400, body = { code = 1, message = "m" } }, 400, {},
        { code = 1, message = "m" } },
    }
    for _, case in ipairs(reply_cases) do
      it("replies " .. case[1], function()
        s:fault("GET", files, { case[2] })
        local r = list()
        assert.equal(case[3], r.status)
        for name, value in pairs(case[4]) do assert.equal(value, r.headers[name]) end
        if case[5] then assert.same(case[5], cjson.decode(r.body)) end
        assert.same(case[2], s:log()[1].fault)
        assert.equal(case[3], s:log()[1].status)
        assert.equal(200, list().status)
      end)
    end

    for _, status in ipairs({ 413, 502, 504 }) do
      it("replies an nginx HTML " .. status, function()
        s:fault("GET", files, { { html = status } })
        local r = list()
        assert.equal(status, r.status)
        assert.equal("text/html", r.headers["content-type"])
        assert.truthy(r.body:find("<title>" .. status .. " ", 1, true))
        assert.truthy(r.body:find("^<html>"))
      end)
    end

    it("are taken in order, count times each, only by their method and path", function()
      s:fault("GET", files, { { status = 503, count = 2 }, { status = 429 } })
      s:fault("POST", "/siliconflow-global/v1/files", { { status = 500 } })
      local statuses = {}
      for i = 1, 4 do statuses[i] = list().status end
      assert.same({ 503, 503, 429, 200 }, statuses)
      assert.equal(200, upload(input).status)
      assert.equal(500, upload(input, { base = s.urls["siliconflow-global"] }).status)
    end)

    it("still read the body for the log, and store nothing", function()
      s:fault("POST", files, { { status = 503 } })
      assert.equal(503, upload(input).status)
      local e = s:log()[1]
      assert.equal(#content, e.fields.file.bytes)
      assert.same({}, cjson.decode(list().body).data.data)
      assert.equal("", capture("ls -A " .. quote(dir .. "/files")))
    end)

    it("reset_after cuts the connection without a reply", function()
      local big = os.tmpname()
      assert.is_true(sh("head -c 2000000 /dev/zero > " .. quote(big)))
      s:fault("POST", files, { { reset_after = 0 }, { reset_after = 1000 } })
      s:fault("GET", files, { { reset_after = 0 } })
      local rcs = { upload(big).rc, upload(big).rc, list().rc }
      os.remove(big)
      for _, rc in ipairs(rcs) do
        assert.truthy(rc == 52 or rc == 55 or rc == 56, "curl exit " .. rc)
      end
      local log = s:log()
      assert.equal(3, #log)
      assert.equal(cjson.null, log[1].status)
      assert.equal(0, log[1].body_bytes)
      assert.equal(1000, log[2].body_bytes)
      assert.same({ reset_after = 1000 }, log[2].fault)
      assert.equal(200, upload(input).status)
    end)

    it("hang reads the body and never replies", function()
      s:fault("POST", files, { { hang = 2 } })
      local r = upload(input, { max_time = 1 })
      assert.equal(28, r.rc)
      local e = s:log()[1]
      assert.equal(cjson.null, e.status)
      assert.equal(tonumber(e.headers["content-length"]), e.body_bytes)
    end)

    it("truncate announces the whole body and sends only the start", function()
      s:fault("GET", files, { { truncate = 10 } })
      local r = list()
      assert.equal(18, r.rc)
      assert.equal('{"code":20', r.body)
      assert.equal(200, s:log()[1].status)
    end)

    it("drip sends the whole reply a few bytes at a time, and keeps the connection", function()
      local normal = list().body
      s:fault("GET", files, { { drip = { bytes = 10, every = 0.1 } } })
      local r = list()
      assert.equal(200, r.status)
      assert.equal(tostring(#normal), r.headers["content-length"])
      assert.equal(normal, r.body)
      local pauses = math.ceil(#normal / 10) - 1
      assert.is_true(r.time >= pauses * 0.1 * 0.9, tostring(r.time))
      assert.same({ drip = { bytes = 10, every = 0.1 } }, s:log()[2].fault)
      assert.equal(200, s:log()[2].status)
    end)

    it("drip paces a download from disk too, and a client may give up on it", function()
      local id = upload_ok(input).id
      local path = "/siliconflow/v1/files/" .. id .. "/content"
      s:fault("GET", path, { { drip = { bytes = 7, every = 0.05 } }, { drip = { bytes = 1, every = 1 } } })
      local r = curl(sf .. "/files/" .. id .. "/content")
      assert.equal(200, r.status)
      assert.equal(content, r.body)
      assert.is_true(r.time >= (math.ceil(#content / 7) - 1) * 0.05 * 0.9, tostring(r.time))
      r = curl(sf .. "/files/" .. id .. "/content", { max_time = 1.5 })
      assert.equal(28, r.rc)
      assert.equal(content:sub(1, #r.body), r.body)
      assert.is_true(#r.body >= 1 and #r.body <= 3, tostring(#r.body))
      assert.equal(200, list().status)
    end)

    it("big answers a JSON list of exactly that many bytes", function()
      s:fault("GET", files, { { big = 100000 }, { big = 176 } })
      local r = list()
      assert.equal(200, r.status)
      assert.equal("100000", r.headers["content-length"])
      assert.equal(100000, #r.body)
      local page = cjson.decode(r.body)
      assert.equal("list", page.object)
      assert.is_false(page.has_more)
      assert.equal(math.floor((100000 - 176) / 133) + 1, #page.data)   -- items of 132 bytes and a comma
      assert.same({ id = "file-big", object = "file", bytes = 1024, created_at = 1700000000, filename = "big.jsonl",
                    purpose = "batch", status = "processed" }, page.data[#page.data])
      r = list()
      assert.equal(176, #r.body)
      assert.equal(1, #cjson.decode(r.body).data)
      assert.equal(200, s:log()[1].status)
    end)

    it("big makes 300 MB in chunks, with a small worker", function()
      s:fault("GET", files, { { big = 300000000 } })
      local out = capture(("curl -s --noproxy '*' -H %s -o /dev/null -w '%%{http_code} %%{size_download}' %s")
        :format(quote("Authorization: Bearer " .. KEY), quote(sf .. "/files?purpose=batch")))
      assert.equal("200 300000000", out)
      local worker = pids_of_nginx(dir)[2]
      local hwm = tonumber(read_file("/proc/" .. worker .. "/status"):match("VmHWM:%s*(%d+) kB"))
      assert.is_true(hwm < 64 * 1024, "nginx worker peak RSS " .. hwm .. " KiB")
    end)

    it("body_base64 sends bytes JSON cannot carry", function()
      local bytes = '{"a":"\0\255\128"}'
      s:fault("GET", files, { { status = 200, body_base64 = "eyJhIjoiAP+AIn0=" } })
      local r = list()
      assert.equal(200, r.status)
      assert.equal("application/json; charset=utf-8", r.headers["content-type"])
      assert.equal(bytes, r.body)
    end)

    it("delay waits, then answers normally", function()
      s:fault("GET", files, { { delay = 1 } })
      local r = list()
      assert.equal(200, r.status)
      assert.is_true(r.time >= 0.9, tostring(r.time))
    end)

    local bad_specs = {
      { "an unknown key", { method = "GET", path = files, faults = { { stauts = 503 } } } },
      { "two kinds", { method = "GET", path = files, faults = { { status = 503, hang = 1 } } } },
      { "a status out of range", { method = "GET", path = files, faults = { { status = 99 } } } },
      { "an html status with no nginx page", { method = "GET", path = files, faults = { { html = 418 } } } },
      { "a negative count", { method = "GET", path = files, faults = { { status = 503, count = 0 } } } },
      { "no faults", { method = "GET", path = files, faults = {} } },
      { "a lower-case method", { method = "get", path = files, faults = { { status = 503 } } } },
      { "a path with a query", { method = "GET", path = files .. "?a=1", faults = { { status = 503 } } } },
      { "a header with a line break", { method = "GET", path = files,
        faults = { { status = 503, headers = { X = "a\r\nb" } } } } },
      { "a drip of 0 bytes", { method = "GET", path = files, faults = { { drip = { bytes = 0, every = 1 } } } } },
      { "a drip without its pace", { method = "GET", path = files, faults = { { drip = { bytes = 1 } } } } },
      { "a drip with an unknown key", { method = "GET", path = files,
        faults = { { drip = { bytes = 1, every = 1, jitter = 1 } } } } },
      { "a big reply too small for a list", { method = "GET", path = files, faults = { { big = 175 } } } },
      { "a body that is not base64", { method = "GET", path = files,
        faults = { { status = 200, body_base64 = "@@@" } } } },
      { "body and body_base64", { method = "GET", path = files,
        faults = { { status = 200, body = "x", body_base64 = "eA==" } } } },
      { "body_base64 without a status", { method = "GET", path = files, faults = { { body_base64 = "eA==" } } } },
    }
    for _, case in ipairs(bad_specs) do
      it("are refused with 400 for " .. case[1], function()
        local body, status = s:call("POST", "/faults", case[2])
        assert.equal(400, status)
        assert.is_false(cjson.decode(body).ok)
        assert.equal(200, list().status)
      end)
    end
  end)

  it("reset clears the log, faults, files and batches", function()
    local id = upload_ok(input).id
    create({ input_file_id = id, endpoint = "/v1/chat/completions", completion_window = "24h" })
    s:fault("GET", "/siliconflow/v1/files", { { status = 503 } })
    s:reset()
    assert.same({}, s:log())
    assert.is_nil(s:file_content(id))
    assert.is_nil(read_file(dir .. "/files/" .. id))
    local r = list()
    assert.equal(200, r.status)
    assert.same({}, cjson.decode(r.body).data.data)
    local again = create({ input_file_id = id, endpoint = "/v1/chat/completions", completion_window = "24h" })
    assert.equal("input_file_id " .. id .. " not found", cjson.decode(again.body).message)
  end)

  it("stays up through oversized headers and queries", function()
    local head = os.tmpname()
    write_file(head, "X-Big: " .. ("a"):rep(200000) .. "\n")
    local r = curl(sf .. "/files?purpose=batch", { headers = { "@" .. head } })
    os.remove(head)
    assert.truthy(r.status == 400 or r.status == 431 or r.status == 494, tostring(r.status))
    local args = {}
    for i = 1, 500 do args[i] = "a" .. i .. "=" .. i end
    assert.equal(200, list("?purpose=batch&" .. table.concat(args, "&")).status)
    assert.equal(200, list().status)
  end)

  describe("the process", function()
    local function start_under(tmp, opts)
      opts.env = { TMPDIR = tmp }
      local other = standin.start(opts)
      local dirs = capture("ls -A " .. quote(tmp))
      local run_dir = tmp .. "/" .. assert(dirs:match("^(moonbatch%-standin%.%w+)\n$"), dirs)
      return other, pids_of_nginx(run_dir)
    end

    local function gone(pids, tmp)
      for _, pid in ipairs(pids) do
        if standin.alive(pid) then return false end
      end
      return capture("ls -A " .. quote(tmp)) == ""
    end

    it("shuts down when the --watch-pid process ends, leaving nothing behind", function()
      local tmp = tmpdir()
      local sleeper = tonumber(capture("sleep 60 >/dev/null 2>&1 & echo $!"))
      local other, pids
      finally(function()
        sh("kill " .. sleeper .. " 2>/dev/null")
        if other then other:stop() end
        sh("rm -rf " .. quote(tmp))
      end)
      other, pids = start_under(tmp, { watch_pid = sleeper })
      assert.equal(200, curl(other.urls.siliconflow .. "/files?purpose=batch", { key = "sk-standin" }).status)
      assert.is_true(sh("kill " .. sleeper))
      assert.is_true(eventually(5, function() return not standin.alive(other.pid) end))
      assert.is_true(eventually(5, function() return gone(pids, tmp) end))
      assert.equal(0, curl(other.control .. "/health").status)
    end)

    it("on SIGTERM stops nginx, removes its temporary directory and exits 0", function()
      local tmp = tmpdir()
      local out, rc_file, pid_file = tmp .. ".out", tmp .. ".rc", tmp .. ".pid"
      finally(function()
        local pid = read_file(pid_file)
        if pid and standin.alive(tonumber(pid)) then sh("kill " .. pid) end
        for _, path in ipairs({ out, rc_file, pid_file }) do os.remove(path) end
        sh("rm -rf " .. quote(tmp))
      end)
      local command = ("TMPDIR=%s bin/moonbatch-standin --key k >%s 2>/dev/null & "
        .. "echo $! >%s; wait $!; echo $? >%s")
        :format(quote(tmp), quote(out), quote(pid_file), quote(rc_file))
      assert.is_true(sh("(" .. command .. ") </dev/null >/dev/null 2>&1 &"))
      assert.is_true(eventually(10, function() return (read_file(out) or ""):find("\ncontrol ") ~= nil end))
      local lines = {}
      for line in read_file(out):gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(13, #lines) -- 12 dialects and control
      assert.matches("^siliconflow http://127%.0%.0%.1:%d+/siliconflow/v1$", lines[1])
      assert.matches("^siliconflow%-global http://127%.0%.0%.1:%d+/siliconflow%-global/v1$", lines[2])
      assert.matches("^together http://127%.0%.0%.1:%d+/together/v1$", lines[3])
      assert.matches("^openai http://127%.0%.0%.1:%d+/openai/v1$", lines[4])
      assert.matches("^azure http://127%.0%.0%.1:%d+/azure/openai$", lines[5])
      assert.matches("^zhipu http://127%.0%.0%.1:%d+/zhipu/api/paas/v4$", lines[11])
      assert.matches("^mistral http://127%.0%.0%.1:%d+/mistral/v1$", lines[12])
      assert.matches("^control http://127%.0%.0%.1:%d+/_standin$", lines[13])
      local run_dir = tmp .. "/" .. capture("ls -A " .. quote(tmp)):gsub("%s+$", "")
      local pids = pids_of_nginx(run_dir)
      assert.is_true(sh("kill -TERM " .. read_file(pid_file)))
      assert.is_true(eventually(5, function() return (read_file(rc_file) or ""):find("%d") ~= nil end))
      assert.equal("0", (read_file(rc_file):gsub("%s+$", "")))
      assert.is_true(gone(pids, tmp))
    end)

    it("keeps a --dir it was given", function()
      local keep = tmpdir()
      local other = standin.start({ dir = keep })
      finally(function()
        other:stop()
        sh("rm -rf " .. quote(keep))
      end)
      local r = upload(input, { base = other.urls.siliconflow, key = "sk-standin" })
      local id = cjson.decode(r.body).data.id
      other:stop()
      assert.equal(content, read_file(keep .. "/files/" .. id))
      assert.is_nil(read_file(keep .. "/nginx.pid"))
    end)

    it("fails with nginx's reason when the port is taken", function()
      local ok, err = pcall(standin.start, { port = s.port })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("already in use", 1, true), tostring(err))
      assert.equal(200, list().status)
    end)
  end)
end)
