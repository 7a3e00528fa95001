-- The Together AI dialect: files and batches as api.together.ai answers them, errors included.
--
-- Shapes follow seed 004 and the reference's Together section (togethercomputer/openapi): the
-- documented multipart upload at /files/upload, FileResponse with PascalCase FileType and
-- Processed, {"data": [...]} file lists, batch creation answering 201 {job, warning}, bare
-- BatchJob objects (UPPER-CASE statuses, ISO-8601 times, progress 0..100) and a bare array as
-- the batch list. Files endpoints fail with ErrorData {"error": {message, type, param, code}},
-- batch endpoints with BatchErrorResponse {"error": "<string>"}.
local common = require("standin.common")
local handlers = require("standin.handlers")
local lifecycle = require("standin.lifecycle")

local M = {}

local ERROR = common.shape({ "error" })
local FILE = common.shape({ "id", "object", "created_at", "filename", "bytes", "purpose", "FileType", "Processed" })
local FILE_LIST = common.shape({ "data" })
local DELETED = common.shape({ "id", "deleted" })
local JOB = common.shape({
  "id", "user_id", "input_file_id", "file_size_bytes", "status", "job_deadline", "created_at", "endpoint",
  "progress", "model_id", "output_file_id", "error_file_id", "error", "completed_at",
})
local CREATED = common.shape({ "job", "warning" })

local PURPOSES = { ["fine-tune"] = true, eval = true, ["batch-api"] = true }
local FILE_TYPES = { csv = true, jsonl = true, parquet = true }
local USER_ID = "standin-user"
local INVALID_KEY = "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys."

-- ErrorData, the files endpoints' error: OpenAI's.
local file_error = common.error_reply

-- BatchErrorResponse, the batch endpoints' error.
local function batch_error_reply(status, message)
  return common.json_reply(status, setmetatable({ error = message }, ERROR))
end

local function is_batch_path(path)
  return path ~= nil and (path == "/batches" or path:sub(1, 9) == "/batches/")
end

---------------------------------------------------------------------------------------------
-- Files.

local function file_object(record)
  return setmetatable({
    id = record.id, object = "file", created_at = record.created_at, filename = record.filename,
    bytes = record.bytes, purpose = record.purpose, FileType = record.file_type, Processed = true,
  }, FILE)
end

local function no_such_file(id)
  return file_error(404, "File not found: " .. id, "invalid_request_error", "id", "not_found")
end

local function upload(req)
  if req.body.error then return file_error(400, req.body.error) end
  local fields = req.body.form.fields
  for _, name in ipairs({ "purpose", "file_name" }) do
    if fields[name] == nil then return file_error(400, name .. " is required", nil, name) end
    if type(fields[name]) ~= "string" then return file_error(400, name .. " must be a text field", nil, name) end
  end
  if not PURPOSES[fields.purpose] then
    return file_error(400, "purpose must be one of fine-tune, eval, batch-api", nil, "purpose")
  end
  if fields.file_name == "" then return file_error(400, "file_name must not be empty", nil, "file_name") end
  local file_type = fields.file_type
  if file_type ~= nil and (type(file_type) ~= "string" or not FILE_TYPES[file_type]) then
    return file_error(400, "file_type must be one of csv, jsonl, parquet", nil, "file_type")
  end
  if fields.file == nil then return file_error(400, "file is required", nil, "file") end
  if type(fields.file) ~= "table" then return file_error(400, "file must be a file upload", nil, "file") end
  local record = common.store_file(req.instance, common.new_uuid("file-"), fields.file, {
    purpose = fields.purpose, file_type = file_type or "jsonl", filename = fields.file_name,
  })
  return common.json_reply(200, file_object(record))
end

local function list_files(req)
  local data = common.array()
  for i, record in ipairs(common.files(req.instance)) do data[i] = file_object(record) end
  return common.json_reply(200, setmetatable({ data = data }, FILE_LIST))
end

local function deleted(record)
  return setmetatable({ id = record.id, deleted = true }, DELETED)
end

---------------------------------------------------------------------------------------------
-- Batches.

local STATUS = {
  queued = "VALIDATING", in_progress = "IN_PROGRESS", completed = "COMPLETED", failed = "FAILED",
  expired = "EXPIRED", cancelling = "CANCELING", cancelled = "CANCELLED",
}

local function render(b)
  local v = lifecycle.view(b)
  local ended = lifecycle.FINAL[v.status] and v.times[v.status]
  return setmetatable({
    id = b.id, user_id = USER_ID, input_file_id = b.input.id, file_size_bytes = b.input.bytes,
    status = STATUS[v.status], job_deadline = common.iso_time(b.deadline),
    created_at = common.iso_time(b.created), endpoint = b.endpoint,
    progress = v.total > 0 and v.done * 100 / v.total or 0, model_id = b.default_model,
    output_file_id = v.output_file and v.output_file.id, error_file_id = v.error_file and v.error_file.id,
    error = v.problems and v.problems[1].message or nil,
    completed_at = ended and common.iso_time(ended) or nil,
  }, JOB)
end

local function batch_request_error(instance, b)
  if not common.is_object(b) then return "request body must be a JSON object" end
  for _, name in ipairs({ "endpoint", "input_file_id" }) do
    if common.absent(b[name]) then return name .. " is required" end
    if type(b[name]) ~= "string" then return name .. " must be a string" end
  end
  for _, name in ipairs({ "completion_window", "model_id" }) do
    if not common.absent(b[name]) and type(b[name]) ~= "string" then return name .. " must be a string" end
  end
  if not common.absent(b.priority) and (type(b.priority) ~= "number" or b.priority % 1 ~= 0) then
    return "priority must be an integer"
  end
  local input = common.file(instance, b.input_file_id)
  if not input then return "input file not found: " .. b.input_file_id end
  if input.purpose ~= "batch-api" then return "input file purpose must be batch-api" end
end

local function create_batch(req)
  if req.body.error then return batch_error_reply(400, req.body.error) end
  local b = req.body.value
  local problem = batch_request_error(req.instance, b)
  if problem then return batch_error_reply(400, problem) end
  local expire = b.priority == -1
  local model_id = not common.absent(b.model_id) and b.model_id or nil
  local batch = lifecycle.create(req.instance, {
    id = common.new_uuid(), input = common.file(req.instance, b.input_file_id), endpoint = b.endpoint,
    has_finalizing = false, expire = expire, default_model = model_id,
    new_file_id = function() return common.new_uuid("file-") end,
    file_fields = function(kind, batch)
      return { purpose = "batch-generated", file_type = "jsonl", filename = batch.id .. "_" .. kind .. ".jsonl" }
    end,
  })
  batch.deadline = batch.created + 86400
  if expire then batch.deadline = batch.plan[#batch.plan][2] end
  local warning = ""
  if not common.absent(b.completion_window) and b.completion_window ~= "24h" then
    warning = "completion_window is fixed at 24h; " .. b.completion_window .. " was ignored"
  end
  return common.json_reply(201, setmetatable({ job = render(batch), warning = warning }, CREATED))
end

local function no_such_batch(id)
  return batch_error_reply(404, "batch not found: " .. id)
end

local function list_batches(req)
  local data = common.array()
  for i, b in ipairs(common.batches(req.instance)) do data[i] = render(b) end
  return common.json_reply(200, data)
end

local function cannot_cancel(b, v)
  return batch_error_reply(400, ("batch %s cannot be cancelled: it is %s"):format(b.id, STATUS[v.status]))
end

-- The API: the dialect's own handlers, and the shared ones (standin.handlers) by name. Downloads
-- are text/plain.
M.route = handlers.router({
  file = file_object, no_file = no_such_file, deleted = deleted, text_content = true,
  batch = render, no_batch = no_such_batch, cannot_cancel = cannot_cancel,
}, {
  ["/files/upload"] = { POST = handlers.multipart(upload) },
  ["/files"] = { GET = list_files },
  ["/files/{id}/content"] = { GET = "file_content" },
  ["/files/{id}"] = { GET = "get_file", DELETE = "delete_file" },
  ["/batches"] = { POST = handlers.json(create_batch), GET = list_batches },
  ["/batches/{id}"] = { GET = "get_batch" },
  ["/batches/{id}/cancel"] = { POST = "cancel_batch" },
})

---------------------------------------------------------------------------------------------
-- What common.serve() asks of a dialect.

M.prepare = lifecycle.advance

function M.not_found(path, method)
  local message = ("Unknown request URL: %s /v1%s"):format(method or "GET", path or "")
  if is_batch_path(path) then return batch_error_reply(404, message) end
  return file_error(404, message, "invalid_request_error", nil, "not_found")
end

function M.unauthorized(path)
  if is_batch_path(path) then return batch_error_reply(401, INVALID_KEY) end
  return file_error(401, INVALID_KEY, "invalid_request_error", nil, "invalid_api_key")
end

-- Together's body for a status, for status faults that do not bring their own: message and type.
local FAULT_BODIES = {
  [400] = { "bad request", "invalid_request_error" },
  [403] = { "forbidden", "invalid_request_error" },
  [404] = { "not found", "invalid_request_error" },
  [429] = { "rate limited", "rate_limit" },
  [500] = { "internal server error", "server_error" },
  [502] = { "bad gateway", "server_error" },
  [503] = { "service unavailable", "server_error" },
  [504] = { "gateway timeout", "server_error" },
}

function M.error_reply(status, path)
  if status == 401 then return M.unauthorized(path) end
  local b = FAULT_BODIES[status] or { "request failed with status " .. status,
                                      status < 500 and "invalid_request_error" or "server_error" }
  if is_batch_path(path) then return batch_error_reply(status, b[1]) end
  return file_error(status, b[1], b[2])
end

function M.serve(instance, prefix)
  return common.serve(M, instance, prefix)
end

return M
