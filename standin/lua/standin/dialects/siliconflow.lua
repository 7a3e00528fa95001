-- The SiliconFlow dialect: files, batches and their results as SiliconFlow answers them, errors included.
--
-- Wire shapes follow the seeds (shared/seeds/000-003) and the reference's SiliconFlow section:
-- the file endpoints wrap their data in an envelope, the upload says createdAt while the list
-- says created_at, batches are plain objects (listed OpenAI-style, each with file_name), 400 is
-- {code = 20012, message, data = null}, 401 a bare JSON string, 404 Go's text.
-- Results: GET /files/{id}/content, or the result-file URLs of siliconflow_output_urls.
local common = require("standin.common")
local handlers = require("standin.handlers")
local lifecycle = require("standin.lifecycle")

local M = {}

local ERROR = common.shape({ "code", "message", "data" })
local ENVELOPE = common.shape({ "code", "message", "status", "data" })
local UPLOADED = common.shape({ "id", "object", "bytes", "createdAt", "filename", "purpose" })
local LISTED = common.shape({ "id", "object", "bytes", "created_at", "filename", "purpose", "line_count" })
local FILE_LIST = common.shape({ "data", "object" })
local BATCH = common.shape({
  "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
  "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
  "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts",
  "metadata",
})
local LISTED_BATCH = common.shape({
  "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
  "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
  "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts",
  "metadata", "file_name",
})
local BATCH_LIST = common.shape({ "object", "data", "first_id", "last_id", "has_more" })
local COUNTS = common.shape({ "total", "completed", "failed" })

local ENDPOINT = "/v1/chat/completions"
local MIN_WINDOW_HOURS, MAX_WINDOW_HOURS = 24, 336

local function error_object(code, message)
  return setmetatable({ code = code, message = message, data = common.null }, ERROR)
end

local function bad_request(message)
  return common.json_reply(400, error_object(20012, message))
end

local function ok_envelope(data)
  local envelope = { code = 20000, message = "Ok", status = true, data = data }
  return common.json_reply(200, setmetatable(envelope, ENVELOPE))
end

---------------------------------------------------------------------------------------------
-- Endpoints.

local function upload(req)
  if req.body.error then return bad_request(req.body.error) end
  local fields = req.body.form.fields
  if fields.purpose == nil then return bad_request("purpose is required") end
  if fields.purpose ~= "batch" then return bad_request("purpose must be batch") end
  if fields.file == nil then return bad_request("file is required") end
  if type(fields.file) ~= "table" then return bad_request("file must be a file upload") end
  local id = common.new_id("file-", 10)
  local record = common.store_file(req.instance, id, fields.file, { purpose = "batch" })
  return ok_envelope(setmetatable({
    id = record.id, object = "file", bytes = record.bytes, createdAt = record.created_at,
    filename = record.filename, purpose = record.purpose,
  }, UPLOADED))
end

local function list_files(req)
  local purpose, limit = req.query.purpose, req.query.limit
  if purpose == nil then return bad_request("purpose is required") end
  if purpose ~= "batch" then return bad_request("purpose must be batch") end
  if limit == nil then
    limit = 10
  else
    limit = type(limit) == "string" and limit:match("^%d+$") and tonumber(limit)
    if not limit or limit < 1 then return bad_request("limit must be an integer >= 1") end
  end
  local items = common.array()
  for _, record in ipairs(common.files(req.instance)) do
    if #items >= limit then break end
    if record.purpose == purpose then
      items[#items + 1] = setmetatable({
        id = record.id, object = "file", bytes = record.bytes, created_at = record.created_at,
        filename = record.filename, purpose = record.purpose, line_count = record.lines,
      }, LISTED)
    end
  end
  return ok_envelope(setmetatable({ data = items, object = "file" }, FILE_LIST))
end

-- Returns the batch request's problem, or nil when it is acceptable.
local function batch_error(instance, b)
  if not common.is_object(b) then return "request body must be a JSON object" end
  for _, name in ipairs({ "input_file_id", "endpoint", "completion_window" }) do
    if common.absent(b[name]) then return name .. " is required" end
    if type(b[name]) ~= "string" then return name .. " must be a string" end
  end
  if b.endpoint ~= ENDPOINT then return "endpoint must be " .. ENDPOINT end
  local hours = tonumber(b.completion_window:match("^(%d+)h$"))
  if not hours or hours < MIN_WINDOW_HOURS or hours > MAX_WINDOW_HOURS then
    return "completion_window must be between 24h and 336h"
  end
  if not common.absent(b.metadata) and not common.is_object(b.metadata) then return "metadata must be an object" end
  if not common.absent(b.replace) then
    if not common.is_object(b.replace) then return "replace must be an object" end
    local model = b.replace.model
    if type(model) ~= "string" or model == "" then return "replace.model must be a string" end
  end
  if not common.file(instance, b.input_file_id) then
    return "input_file_id " .. b.input_file_id .. " not found"
  end
end

local STATUS = {
  queued = "in_queue", in_progress = "in_progress", finalizing = "finalizing", completed = "completed",
  failed = "failed", expired = "expired", cancelling = "cancelling", cancelled = "cancelled",
}
local TIMES = {
  in_progress = "in_progress_at", finalizing = "finalizing_at", completed = "completed_at",
  failed = "failed_at", expired = "expired_at", cancelling = "cancelling_at", cancelled = "cancelled_at",
}

-- A result file's name in the batch object: its id, or its URL when the batch was created
-- with siliconflow_output_urls.
local function result_name(record)
  if record then return record.url or record.id end
end

-- The batch object as SiliconFlow shows it now (before in_progress, as the create reply).
local function render(b, shape)
  local v = lifecycle.view(b)
  local batch = setmetatable({
    id = b.id, object = "batch", endpoint = b.endpoint, input_file_id = b.input.id,
    completion_window = b.completion_window, status = STATUS[v.status],
    output_file_id = result_name(v.output_file), error_file_id = result_name(v.error_file),
    created_at = math.floor(b.created), expires_at = b.expires_at, metadata = b.metadata,
  }, shape or BATCH)
  for state, key in pairs(TIMES) do
    if v.times[state] then batch[key] = math.floor(v.times[state]) end
  end
  if v.status ~= "queued" and v.status ~= "failed" then
    batch.request_counts = setmetatable({ total = v.total, completed = v.completed, failed = v.failed },
      COUNTS)
  end
  if v.problems then
    local errors = common.array()
    for i, p in ipairs(v.problems) do errors[i] = p.message end
    batch.errors = errors
  end
  if shape == LISTED_BATCH then batch.file_name = b.input.filename end
  return batch
end

local function create_batch(req)
  if req.body.error then return bad_request(req.body.error) end
  local b = req.body.value
  local problem = batch_error(req.instance, b)
  if problem then return bad_request(problem) end
  local hours = tonumber(b.completion_window:match("^(%d+)h$"))
  local metadata = not common.absent(b.metadata) and b.metadata or nil
  local expire = metadata ~= nil and (metadata.standin_expire == "true" or metadata.standin_expire == true)
  local instance = req.instance
  local batch = lifecycle.create(instance, {
    id = common.new_id("batch_", 10), input = common.file(instance, b.input_file_id),
    endpoint = b.endpoint, completion_window = b.completion_window, metadata = metadata,
    has_finalizing = true, expire = expire,
    model_override = not common.absent(b.replace) and b.replace.model or nil,
    new_file_id = function() return common.new_id("file-", 10) end,
    file_fields = function(kind, batch)
      return { purpose = "batch_output", filename = batch.id .. "_" .. kind .. ".jsonl" }
    end,
  })
  -- Absent keys encode as null: errors, output/error file ids, every other *_at, request_counts.
  local now = math.floor(batch.created)
  batch.expires_at = now + hours * 3600
  if expire then batch.expires_at = math.floor(batch.plan[#batch.plan][2]) end
  return common.json_reply(200, render(batch))
end

local function list_batches(req)
  local limit, after = req.query.limit, req.query.after
  if limit ~= nil then
    limit = common.query_integer(limit)
    if not limit then return bad_request("limit must be an integer >= 1") end
  end
  local after_seq
  if after ~= nil then
    local cursor = type(after) == "string" and common.batch(req.instance, after)
    if not cursor then return bad_request("after must be the id of a batch") end
    after_seq = cursor.seq
  end
  local page, more = common.page(common.batches(req.instance), after_seq, limit or math.huge, true)
  local data = common.array()
  for i, b in ipairs(page) do data[i] = render(b, LISTED_BATCH) end
  return common.json_reply(200, setmetatable({
    object = "list", data = data, first_id = page[1] and page[1].id, last_id = page[#page] and page[#page].id,
    has_more = more,
  }, BATCH_LIST))
end

local function cannot_cancel(b, v)
  return bad_request(("batch %s cannot be cancelled: it is %s"):format(b.id, STATUS[v.status]))
end

-- An unknown file or batch is an unknown path to Go's router.
local function not_found() return M.not_found() end

-- The API: the dialect's own handlers, and the shared ones (standin.handlers) by name. The
-- bytes of a file: SiliconFlow documents no download, so /content is what clients probe.
local route = handlers.router({
  no_file = not_found, batch = render, no_batch = not_found, cannot_cancel = cannot_cancel,
}, {
  ["/files"] = { POST = handlers.multipart(upload), GET = list_files },
  ["/files/{id}/content"] = { GET = "file_content" },
  ["/batches"] = { POST = handlers.json(create_batch), GET = list_batches },
  ["/batches/{id}"] = { GET = "get_batch" },
  ["/batches/{id}/cancel"] = { POST = "cancel_batch" },
})

---------------------------------------------------------------------------------------------
-- What common.serve() asks of a dialect.

M.route = route

-- Batches move on by themselves; their result files appear when they end.
M.prepare = lifecycle.advance

-- Go's router answers unknown paths and methods this way.
function M.not_found()
  return common.text_reply(404, "404 page not found", nil, { ["X-Content-Type-Options"] = "nosniff" })
end

function M.unauthorized()
  return common.json_reply(401, "Invalid token")
end

-- SiliconFlow's body for a status, for status faults that do not bring their own.
local FAULT_BODIES = {
  [400] = function() return bad_request("Bad request") end,
  [401] = M.unauthorized,
  [403] = function() return common.json_reply(403, "Forbidden") end,
  [404] = M.not_found,
  [429] = function()
    return common.json_reply(429, error_object(42900, "Request was rejected due to rate limiting."))
  end,
  [503] = function()
    return common.json_reply(503, error_object(50505, "Model service overloaded. Please try again later."))
  end,
  [504] = function() return common.json_reply(504, "Gateway Timeout") end,
}

function M.error_reply(status)
  local body = FAULT_BODIES[status]
  if body then return body() end
  local message = status < 400 and "Ok" or status < 500 and "Request failed" or "Internal server error"
  return common.json_reply(status, error_object(status * 100, message))
end

-- Entry point from nginx.conf: instance names the store ("siliconflow", "siliconflow-global").
function M.serve(instance, prefix)
  return common.serve(M, instance, prefix)
end

return M
