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
    local p = require("moonbatch.providers." .. name)
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
