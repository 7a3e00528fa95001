-- spec/standin_spec.lua: the stand-in itself (bin/moonbatch-standin), driven with the curl command line.
local cjson = require("cjson")
local standin = require("spec.standin_helper")

local KEY = "sk-standin-spec-7f3a"

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function capture(command)
  local p = assert(io.popen(command, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local function sh(command)
  local a, _, code = os.execute(command)
  if type(a) == "number" then return a == 0 end
  return a == true and code == 0
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

local function write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

local function tmpdir()
  return (capture("mktemp -d"):gsub("%s+$", ""))
end

local function keys_of(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local unpack = table.unpack or unpack

local function sorted(list)
  local out = { unpack(list) }
  table.sort(out)
  return out
end

-- Polls check() for up to seconds; returns whether it came true.
local function eventually(seconds, check)
  for _ = 1, seconds * 20 do
    if check() then return true end
    sh("sleep 0.05")
  end
  return check()
end

local function pids_of_nginx(dir)
  local master = tonumber(read_file(dir .. "/nginx.pid") or "")
  local pids = { master }
  for pid in capture("pgrep -P " .. master):gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

-- One curl run: { status, headers (lower-case names, the last response's), body, rc, time }.
-- opts: method, key (false: no Authorization), headers, form (-F values), data, max_time.
local function curl(url, opts)
  opts = opts or {}
  local head, out = os.tmpname(), os.tmpname()
  local words = { "curl -s --noproxy '*' -D", quote(head), "-o", quote(out),
                  "-w", quote("%{http_code} %{time_total}") }
  if opts.method then words[#words + 1] = "-X " .. opts.method end
  if opts.key ~= false then
    words[#words + 1] = "-H " .. quote("Authorization: Bearer " .. (opts.key or KEY))
  end
  for _, h in ipairs(opts.headers or {}) do words[#words + 1] = "-H " .. quote(h) end
  for _, f in ipairs(opts.form or {}) do words[#words + 1] = "-F " .. quote(f) end
  local data_file
  if opts.data then
    data_file = os.tmpname()
    write_file(data_file, opts.data)
    words[#words + 1] = "--data-binary @" .. quote(data_file)
  end
  if opts.max_time then words[#words + 1] = "--max-time " .. opts.max_time end
  words[#words + 1] = quote(url)
  local result = capture(table.concat(words, " ") .. "; echo \" $?\"")
  local status, time, rc = result:match("(%d+) ([%d.]+) (%d+)%s*$")
  local headers = {}
  for line in (read_file(head) or ""):gmatch("[^\r\n]+") do
    if line:match("^HTTP/") then
      headers = {}
    else
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then headers[name:lower()] = value end
    end
  end
  local r = { status = tonumber(status), time = tonumber(time), rc = tonumber(rc), headers = headers,
              body = read_file(out) or "" }
  os.remove(head)
  os.remove(out)
  if data_file then os.remove(data_file) end
  return r
end

describe("moonbatch-standin", function()
  local s, dir, sf, input, content

  local function upload(path, opts)
    opts = opts or {}
    opts.form = opts.form or { "purpose=batch", "file=@" .. path }
    return curl((opts.base or sf) .. "/files", opts)
  end

  local function upload_ok(path)
    local r = upload(path)
    assert.equal(200, r.status, r.body)
    return cjson.decode(r.body).data
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
    input = os.tmpname()
    os.remove(input)   -- os.tmpname may create the file; the upload wants a .jsonl name
    input = input .. ".jsonl"
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
                  ["siliconflow-global"] = base .. "/siliconflow-global/v1" }, s.urls)
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
      assert.equal(200, r.status, r.body)
      local data = cjson.decode(r.body).data
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
        local form = {}
        for i, f in ipairs(case[2]) do form[i] = f:gsub("INPUT", input) end
        assert_bad_request(upload(input, { form = form }), case[3])
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
      assert.equal(200, r.status, r.body)
      local data = cjson.decode(r.body).data
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

  describe("auth", function()
    local endpoints = {
      { "GET", "/files?purpose=batch" },
      { "POST", "/files" },
      { "POST", "/batches" },
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

    for _, status in ipairs({ 502, 504 }) do
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
      assert.equal(3, #lines)
      assert.matches("^siliconflow http://127%.0%.0%.1:%d+/siliconflow/v1$", lines[1])
      assert.matches("^siliconflow%-global http://127%.0%.0%.1:%d+/siliconflow%-global/v1$", lines[2])
      assert.matches("^control http://127%.0%.0%.1:%d+/_standin$", lines[3])
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
