-- spec/providers_spec.lua: table-driven fixtures: each provider's raw replies (success and every
-- error shape) and the canonical object or error each must become.
local cjson = require("cjson")

local fixtures = {
  siliconflow = {
    file = {
      { "the upload envelope (createdAt)",
        [[{"code":20000,"message":"Ok","status":true,"data":{"id":"file-jkvytbjtow","object":"file",
          "bytes":8509,"createdAt":1741685396,"filename":"requests.jsonl","purpose":"batch"}}]],
        { id = "file-jkvytbjtow", object = "file", bytes = 8509, created_at = 1741685396,
          filename = "requests.jsonl", purpose = "batch" } },
      { "an envelope saying failure", '{"code":20012,"message":"bad purpose","status":false,"data":null}',
        nil, { kind = "api", code = "20012", message = "bad purpose" } },
      { "the overload code in an envelope", '{"code":50505,"message":"overloaded","status":false}',
        nil, { kind = "api", code = "50505", provider_retryable = true } },
      { "an envelope without data", '{"code":20000,"message":"Ok","status":true}',
        nil, { kind = "decode" } },
      { "a JSON string", '"Invalid token"', nil, { kind = "decode" } },
    },
    files_page = {
      { "the list envelope (created_at, line_count)",
        [[{"code":20000,"message":"Ok","status":true,"data":{"data":[{"id":"file-kkhtqklcnm","object":"file",
          "bytes":806,"created_at":1741777570,"filename":"requests-2.jsonl","purpose":"batch","line_count":2}],
          "object":"file"}}]],
        { object = "list", has_more = false, first_id = "file-kkhtqklcnm", last_id = "file-kkhtqklcnm",
          data = { { id = "file-kkhtqklcnm", object = "file", bytes = 806, created_at = 1741777570,
                     filename = "requests-2.jsonl", purpose = "batch", line_count = 2 } } } },
      { "an empty list", '{"code":20000,"message":"Ok","status":true,"data":{"data":[],"object":"file"}}',
        { object = "list", has_more = false, data = {} } },
    },
    batch = {
      { "the create reply with nulls",
        [[{"id":"batch_rdyqgrcgjg","object":"batch","endpoint":"/v1/chat/completions","errors":null,
          "input_file_id":"file-jkvytbjtow","completion_window":"24h","status":"in_queue","output_file_id":null,
          "error_file_id":null,"created_at":1741685413,"in_progress_at":null,"expires_at":1741771813,
          "finalizing_at":null,"completed_at":null,"failed_at":null,"expired_at":null,"cancelling_at":null,
          "cancelled_at":null,"request_counts":null,"metadata":{"description":"nightly eval job"}}]],
        { id = "batch_rdyqgrcgjg", object = "batch", endpoint = "/v1/chat/completions",
          input_file_id = "file-jkvytbjtow", completion_window = "24h", status = "in_queue",
          created_at = 1741685413, expires_at = 1741771813, metadata = { description = "nightly eval job" } } },
      { "a get reply with [] and {}",
        [[{"id":"batch_x","object":"batch","status":"in_progress","errors":[],"request_counts":{},
          "created_at":1,"in_progress_at":2}]],
        { id = "batch_x", object = "batch", status = "in_progress", errors = {}, created_at = 1, in_progress_at = 2 } },
    },
  },
  together = {
    file = {
      { "a FileResponse (FileType, Processed)",
        [[{"id":"file-7f2a","object":"file","created_at":1718000000,"filename":"b.jsonl","bytes":321,
          "purpose":"batch-api","FileType":"jsonl","Processed":true}]],
        { id = "file-7f2a", object = "file", created_at = 1718000000, filename = "b.jsonl", bytes = 321,
          purpose = "batch-api", file_type = "jsonl", processed = true } },
    },
    files_page = {
      { "{data} with every purpose (kept as is when no purpose is asked)",
        [[{"data":[{"id":"f1","object":"file","created_at":1,"filename":"a","bytes":1,"purpose":"batch-api",
          "FileType":"jsonl","Processed":true}]}]],
        { object = "list", has_more = false, first_id = "f1", last_id = "f1",
          data = { { id = "f1", object = "file", created_at = 1, filename = "a", bytes = 1, purpose = "batch-api",
                     file_type = "jsonl", processed = true } } } },
    },
    batch = {
      { "create's 201 {job, warning}, ISO times, upper-case status",
        [[{"job":{"id":"7b1c-uuid","user_id":"u","input_file_id":"file-7f2a","file_size_bytes":321,
          "status":"VALIDATING","job_deadline":"2024-01-16T15:30:00Z","created_at":"2024-01-15T15:30:00Z",
          "endpoint":"/v1/chat/completions","progress":0,"model_id":"m"},"warning":"model is busy"}]],
        { id = "7b1c-uuid", object = "batch", input_file_id = "file-7f2a", status = "validating",
          created_at = 1705332600, endpoint = "/v1/chat/completions", progress = 0, model = "m",
          warning = "model is busy" } },
      { "a job being cancelled (CANCELING)", '{"id":"j","status":"CANCELING","progress":42.5}',
        { id = "j", object = "batch", status = "cancelling", progress = 42.5 } },
      { "a completed job with an error string",
        '{"id":"j","status":"COMPLETED","completed_at":"2024-01-15T16:00:00Z","output_file_id":"file-o","error":"2 lines failed"}',
        { id = "j", object = "batch", status = "completed", completed_at = 1705334400, output_file_id = "file-o",
          errors = { { message = "2 lines failed" } } } },
    },
    batches_page = {
      { "a bare array", '[{"id":"a","status":"IN_PROGRESS"},{"id":"b","status":"EXPIRED"}]',
        { object = "list", has_more = false, first_id = "a", last_id = "b",
          data = { { id = "a", object = "batch", status = "in_progress" },
                   { id = "b", object = "batch", status = "expired" } } } },
    },
  },
  openai = {
    file = {
      { "a file object",
        '{"id":"file-abc","object":"file","bytes":120,"created_at":1700000000,"filename":"b.jsonl","purpose":"batch","status":"processed"}',
        { id = "file-abc", object = "file", bytes = 120, created_at = 1700000000, filename = "b.jsonl",
          purpose = "batch", status = "processed" } },
      { "no id", '{"object":"file"}', nil, { kind = "decode" } },
    },
    files_page = {
      { "a cursor page",
        [[{"object":"list","data":[{"id":"file-1","object":"file","bytes":1,"created_at":1,"filename":"a",
          "purpose":"batch"},{"id":"file-2","object":"file","bytes":2,"created_at":2,"filename":"b","purpose":"batch"}],
          "first_id":"file-1","last_id":"file-2","has_more":true}]],
        { object = "list", has_more = true, first_id = "file-1", last_id = "file-2",
          data = { { id = "file-1", object = "file", bytes = 1, created_at = 1, filename = "a", purpose = "batch" },
                   { id = "file-2", object = "file", bytes = 2, created_at = 2, filename = "b", purpose = "batch" } } } },
    },
    batch = {
      { "a completed batch with counts and OpenAI's error list",
        [[{"id":"batch_1","object":"batch","endpoint":"/v1/chat/completions","status":"completed",
          "input_file_id":"file-1","completion_window":"24h","output_file_id":"file-2","error_file_id":null,
          "created_at":10,"completed_at":20,"request_counts":{"total":2,"completed":2,"failed":0},
          "errors":{"object":"list","data":[{"code":"x","message":"m","line":3,"param":null}]}}]],
        { id = "batch_1", object = "batch", endpoint = "/v1/chat/completions", status = "completed",
          input_file_id = "file-1", completion_window = "24h", output_file_id = "file-2", created_at = 10,
          completed_at = 20, request_counts = { total = 2, completed = 2, failed = 0 },
          errors = { { code = "x", message = "m", line = 3 } } } },
      { "a batch with its model and usage (canonical, not only under raw)",
        [[{"id":"batch_2","object":"batch","status":"completed","model":"gpt-4o-mini","created_at":10,
          "usage":{"input_tokens":30,"output_tokens":12,"total_tokens":42,"input_tokens_details":{"cached_tokens":0}}}]],
        { id = "batch_2", object = "batch", status = "completed", model = "gpt-4o-mini", created_at = 10,
          usage = { input_tokens = 30, output_tokens = 12, total_tokens = 42 } } },
      { "usage in chat names, without a total",
        '{"id":"b","status":"completed","usage":{"prompt_tokens":3,"completion_tokens":4}}',
        { id = "b", object = "batch", status = "completed",
          usage = { input_tokens = 3, output_tokens = 4, total_tokens = 7 } } },
    },
  },
  groq = {
    file = {
      { "a file object with expires_at",
        '{"id":"file_01","object":"file","bytes":5,"created_at":1,"expires_at":86401,"filename":"b.jsonl","purpose":"batch"}',
        { id = "file_01", object = "file", bytes = 5, created_at = 1, expires_at = 86401, filename = "b.jsonl",
          purpose = "batch" } },
    },
    batch = {
      { "a batch in OpenAI's shape",
        '{"id":"batch_01","object":"batch","endpoint":"/v1/chat/completions","status":"validating","created_at":1}',
        { id = "batch_01", object = "batch", endpoint = "/v1/chat/completions", status = "validating", created_at = 1 } },
    },
  },
  mistral = {
    batch = {
      { "a running job (statuses, counts, input_files, output_file)",
        [[{"id":"j1","object":"batch","input_files":["f1"],"endpoint":"/v1/chat/completions","model":"mistral-small",
          "errors":[{"message":"2 lines failed","count":2}],"status":"RUNNING","created_at":10,"started_at":11,
          "total_requests":5,"completed_requests":3,"succeeded_requests":2,"failed_requests":1,"output_file":null,
          "timeout_hours":48}]],
        { id = "j1", object = "batch", input_file_id = "f1", endpoint = "/v1/chat/completions", model = "mistral-small",
          errors = { { message = "2 lines failed" } }, status = "in_progress", created_at = 10, in_progress_at = 11,
          request_counts = { total = 5, completed = 2, failed = 1 }, completion_window = "48h" } },
      { "each status made canonical", '{"id":"j","status":"TIMEOUT_EXCEEDED","input_files":[]}',
        { id = "j", object = "batch", status = "expired" } },
      { "a cancellation", '{"id":"j","status":"CANCELLATION_REQUESTED","output_file":"o","error_file":"e"}',
        { id = "j", object = "batch", status = "cancelling", output_file_id = "o", error_file_id = "e" } },
    },
    batches_page = {
      { "a page {data, object, total}", '{"data":[{"id":"a","status":"SUCCESS"}],"object":"list","total":1}',
        { object = "list", has_more = false, first_id = "a", last_id = "a",
          data = { { id = "a", object = "batch", status = "completed" } } } },
    },
  },
  azure = {
    file = {
      { "a processed file (status and expires_at)",
        [[{"id":"file-a","object":"file","bytes":9,"created_at":5,"expires_at":86405,"filename":"in.jsonl",
          "purpose":"batch","status":"processed"}]],
        { id = "file-a", object = "file", bytes = 9, created_at = 5, expires_at = 86405, filename = "in.jsonl",
          purpose = "batch", status = "processed" } },
    },
    files_page = {
      { "a one-page list", '{"object":"list","data":[{"id":"file-a","object":"file","purpose":"batch","filename":"x"}]}',
        { object = "list", has_more = false, first_id = "file-a", last_id = "file-a",
          data = { { id = "file-a", object = "file", purpose = "batch", filename = "x" } } } },
    },
    batch = {
      { "a failed batch whose errors.data is one object (this API version)",
        [[{"id":"batch_a","object":"batch","status":"failed","created_at":5,
          "errors":{"object":"list","data":{"code":"invalid_json_line","message":"bad line","line":2}}}]],
        { id = "batch_a", object = "batch", status = "failed", created_at = 5,
          errors = { { code = "invalid_json_line", message = "bad line", line = 2 } } } },
    },
  },
}

-- the canonical fields of an object (raw left out), for comparison
local function without_raw(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do
    if k ~= "raw" then out[k] = without_raw(v) end
  end
  return out
end

for name, kinds in pairs(fixtures) do
  describe("provider " .. name, function()
    local p = require("moonbatch.providers").get(name)
    for kind, cases in pairs(kinds) do
      for _, c in ipairs(cases) do
        it(("%s: %s"):format(kind, c[1]), function()
          local value, err = p[kind](cjson.decode(c[2]))
          if c[3] then
            assert.same(c[3], without_raw(value))
            for _, object in ipairs(value.data or { value }) do assert.is_table(object.raw) end
          else
            assert.is_nil(value)
            for k, v in pairs(c[4]) do assert.same(v, err[k]) end
          end
        end)
      end
    end
  end)
end

describe("provider together, before sending", function()
  local together = require("moonbatch.providers.together")

  it("takes file_type from the extension", function()
    assert.same({ file_name = "x.JSONL", file_type = "jsonl" }, together.upload_fields({ file = "/d/x.JSONL" }))
    assert.same({ file_name = "t.csv", file_type = "csv" }, together.upload_fields({ file = "/d/a.bin", filename = "t.csv" }))
    assert.same({ file_name = "p.parquet", file_type = "parquet" }, together.upload_fields({ file = "p.parquet" }))
  end)

  it("refuses any other extension", function()
    local fields, err = together.upload_fields({ file = "/d/requests.txt" })
    assert.is_nil(fields)
    assert.equal("validation", err.kind)
    assert.truthy(err.message:find("requests.txt", 1, true))
  end)

  it("sends replace.model as model_id and refuses metadata", function()
    assert.same({ input_file_id = "f", endpoint = "/v1/chat/completions", fields = { model_id = "m" } },
      together.create_options({ input_file_id = "f", replace = { model = "m" } }))
    assert.has_error(function() together.create_options({ input_file_id = "f", metadata = {} }) end,
      "batches.create: option 'metadata' is not supported by together")
  end)
end)

describe("provider mistral, before sending", function()
  local mistral = require("moonbatch.providers").get("mistral")

  it("rewrites each OpenAI-format line to {custom_id, body} in a copy, the rest as it is", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write('{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","max_tokens":5}}\r\n',
            "not json\n", "\n", '{"custom_id":"b","body":{"model":"m"}}')
    f:close()
    local copy, remove = assert(mistral.upload_source(path))
    local lines = {}
    for l in io.lines(copy) do lines[#lines + 1] = l end
    assert.same({ custom_id = "a", body = { model = "m", max_tokens = 5 } }, cjson.decode((lines[1]:gsub("\r$", ""))))
    assert.equal("\r", lines[1]:sub(-1))
    assert.equal("not json", lines[2])
    assert.equal("", lines[3])
    assert.same({ custom_id = "b", body = { model = "m" } }, cjson.decode(lines[4]))
    remove()
    assert.is_nil(io.open(copy))
    os.remove(path)
    assert.is_nil(mistral.upload_source(path .. "-missing"))
  end)

  it("creates a job of input_files, the model (replace.model) and timeout_hours", function()
    assert.same({ json = { input_files = { "f" }, endpoint = "/v1/chat/completions", model = "m", timeout_hours = 72 } },
      mistral.create_options({ input_file_id = "f", replace = { model = "m" }, completion_window = "3d" }, mistral))
    assert.same({ json = { input_files = { "f" }, endpoint = "/v1/embeddings", model = "seen" } },
      mistral.create_options({ input_file_id = "f", endpoint = "/v1/embeddings" }, mistral,
        { upload_models = { f = "seen" } }))
  end)
end)
