-- The OpenAI dialect: Files and Batch as api.openai.com answers them, errors included.
--
-- Shapes follow the reference's OpenAI section (openai-openapi, openai-python): plain File and
-- Batch objects, cursor lists {object = "list", data, first_id, last_id, has_more}, every error
-- {"error": {message, type, param, code}}. Output files get purpose batch_output.
local common = require("standin.common")
local handlers = require("standin.handlers")
local lifecycle = require("standin.lifecycle")

local M = {}

-- What an OpenAI-compatible service (standin.dialects.compatible, azure) changes, by instance:
-- windows = {min, max} hours a batch's completion_window may ask (default: 24h only),
-- endpoints = the ones a batch takes, max_bytes = an upload's largest size, version = the path
-- prefix its "Invalid URL" errors name, upload_status = the status of a good upload.
M.variants = {}

local function variant(instance)
  return M.variants[instance] or {}
end

local FILE = common.shape({
  "id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status", "status_details",
})
local DELETED = common.shape({ "id", "object", "deleted" })
local LIST = common.shape({ "object", "data", "first_id", "last_id", "has_more" })
local BATCH = common.shape({
  "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
  "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
  "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts",
  "metadata",
})
local COUNTS = common.shape({ "total", "completed", "failed" })
local BATCH_ERRORS = common.shape({ "object", "data" })
local BATCH_ERROR = common.shape({ "code", "message", "param", "line" })

local PURPOSES = { assistants = true, batch = true, ["fine-tune"] = true, vision = true, user_data = true,
                   evals = true }
local ENDPOINTS = {
  "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
  "/v1/images/generations", "/v1/images/edits", "/v1/videos",
}
local FILE_EXPIRY = 30 * 86400   -- batch files expire after 30 days by default

local error_reply = common.error_reply

local function bad_request(message, param, code)
  return error_reply(400, message, "invalid_request_error", param, code)
end

local function missing(name)
  return bad_request(("Missing required parameter: '%s'."):format(name), name)
end

local function quoted_list(names)
  local out = {}
  for i, name in ipairs(names) do out[i] = "'" .. name .. "'" end
  return table.concat(out, ", ")
end

---------------------------------------------------------------------------------------------
-- Files.

local function file_object(record)
  return setmetatable({
    id = record.id, object = "file", bytes = record.bytes, created_at = record.created_at,
    expires_at = record.expires_at, filename = record.filename, purpose = record.purpose,
    status = "processed", status_details = common.null,
  }, FILE)
end

local function no_such_file(id)
  return error_reply(404, "No such File object: " .. id, "invalid_request_error", "id")
end

local function upload(req)
  local body = req.body
  if body.error then
    if body.error == "request Content-Type isn't multipart/form-data" then
      return bad_request(("Invalid Content-Type header (%s), expected multipart/form-data.")
        :format(ngx.var.content_type or "none"))
    end
    return bad_request(body.error)
  end
  local fields = body.form.fields
  if fields.purpose == nil then return missing("purpose") end
  if type(fields.purpose) ~= "string" or not PURPOSES[fields.purpose] then
    return bad_request(("Invalid value for 'purpose': '%s'. Supported values are: 'assistants', 'batch', "
      .. "'fine-tune', 'vision', 'user_data' and 'evals'."):format(tostring(fields.purpose)), "purpose")
  end
  if fields.file == nil then return missing("file") end
  if type(fields.file) ~= "table" then return bad_request("'file' must be a file upload.", "file") end
  if fields.purpose == "batch" and not fields.file.filename:match("%.jsonl$") then
    return bad_request("Invalid file format for Batch API. Must be .jsonl", "file")
  end
  local v = variant(req.instance)
  if v.max_bytes and fields.file.bytes and fields.file.bytes > v.max_bytes then
    return error_reply(413, ("File too large: %d bytes, at most %d."):format(fields.file.bytes, v.max_bytes),
      "invalid_request_error", "file", "file_too_large")
  end
  local id = common.new_id("file-", 22, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
  local now = ngx.time()
  local record = common.store_file(req.instance, id, fields.file, {
    purpose = fields.purpose, expires_at = fields.purpose == "batch" and now + FILE_EXPIRY or nil,
  })
  return common.json_reply(variant(req.instance).upload_status or 200, file_object(record))
end

-- The cursor's place: the seq of the record named by after (a deleted file keeps its place).
local function cursor(instance, after, find, what)
  if after == nil then return nil end
  if type(after) == "string" then
    local record = find(instance, after)
    if record then return record.seq end
    local seq = what == "File" and common.deleted_seq(instance, after)
    if seq then return seq end
  end
  return nil, bad_request(("No such %s object: %s"):format(what, tostring(after)), "after")
end

local function list_reply(page, more, render)
  local data = common.array()
  for i, record in ipairs(page) do data[i] = render(record) end
  return common.json_reply(200, setmetatable({
    object = "list", data = data, first_id = page[1] and page[1].id,
    last_id = page[#page] and page[#page].id, has_more = more,
  }, LIST))
end

-- The page size a list asks for (or `default`), or nil and the error reply.
local function page_limit(q, default, max)
  if q.limit == nil then return default end
  local limit = common.query_integer(q.limit)
  if not limit or limit > max then
    return nil, bad_request(("Invalid 'limit': integer must be between 1 and %d."):format(max), "limit")
  end
  return limit
end

local function list_files(req)
  local q = req.query
  local limit, limit_err = page_limit(q, 10000, 10000)
  if not limit then return limit_err end
  local order = q.order == nil and "desc" or q.order
  if order ~= "asc" and order ~= "desc" then
    return bad_request(("Invalid value for 'order': '%s'. Supported values are: 'asc' and 'desc'.")
      :format(tostring(order)), "order")
  end
  if q.purpose ~= nil and type(q.purpose) ~= "string" then return bad_request("Invalid 'purpose'.", "purpose") end
  local after_seq, err = cursor(req.instance, q.after, common.file, "File")
  if err then return err end
  local records = {}
  for _, record in ipairs(common.files(req.instance)) do   -- newest first
    if q.purpose == nil or record.purpose == q.purpose then
      if order == "desc" then
        records[#records + 1] = record
      else
        table.insert(records, 1, record)
      end
    end
  end
  local page, more = common.page(records, after_seq, limit, order == "desc")
  return list_reply(page, more, file_object)
end

local function deleted(record)
  return setmetatable({ id = record.id, object = "file", deleted = true }, DELETED)
end

---------------------------------------------------------------------------------------------
-- Batches.

local TIMES = {
  in_progress = "in_progress_at", finalizing = "finalizing_at", completed = "completed_at",
  failed = "failed_at", expired = "expired_at", cancelling = "cancelling_at", cancelled = "cancelled_at",
}

local function render(b)
  local v = lifecycle.view(b)
  local batch = setmetatable({
    id = b.id, object = "batch", endpoint = b.endpoint, input_file_id = b.input.id,
    completion_window = b.completion_window or "24h", status = v.status == "queued" and "validating" or v.status,
    output_file_id = v.output_file and v.output_file.id, error_file_id = v.error_file and v.error_file.id,
    created_at = math.floor(b.created), expires_at = b.expires_at, metadata = b.metadata,
  }, BATCH)
  for state, key in pairs(TIMES) do
    if v.times[state] then batch[key] = math.floor(v.times[state]) end
  end
  local started = v.status ~= "queued" and v.status ~= "failed"
  batch.request_counts = setmetatable({
    total = started and v.total or 0, completed = v.completed, failed = v.failed,
  }, COUNTS)
  if v.problems then
    local data = common.array()
    for i, p in ipairs(v.problems) do
      data[i] = setmetatable({ code = p.code or "invalid_request", message = p.message, param = common.null,
                               line = p.line }, BATCH_ERROR)
    end
    batch.errors = setmetatable({ object = "list", data = data }, BATCH_ERRORS)
  end
  return batch
end

local function no_such_batch(id)
  return error_reply(404, "No such Batch object: " .. id, "invalid_request_error", "batch_id")
end

-- Returns an error reply for a bad create request, or nil.
local function batch_error(instance, b)
  if not common.is_object(b) then return bad_request("The request body must be a JSON object.") end
  for _, name in ipairs({ "input_file_id", "endpoint", "completion_window" }) do
    if common.absent(b[name]) then return missing(name) end
    if type(b[name]) ~= "string" then
      return bad_request(("Invalid type for '%s': expected a string."):format(name), name)
    end
  end
  local known = false
  local service = variant(instance)
  local endpoints = service.endpoints or ENDPOINTS
  for _, e in ipairs(endpoints) do known = known or e == b.endpoint end
  if not known then
    return bad_request(("Invalid value: '%s'. Supported values are: %s."):format(b.endpoint, quoted_list(endpoints)),
      "endpoint")
  end
  local n, unit = b.completion_window:match("^(%d+)([hd])$")
  local hours = n and tonumber(n) * (unit == "d" and 24 or 1)
  local low, high = (service.windows or { 24, 24 })[1], (service.windows or { 24, 24 })[2]
  if not hours or hours < low or hours > high then
    local allowed = low == high and ("'%dh'"):format(low) or ("'%dh' to '%dh'"):format(low, high)
    return bad_request(("Invalid value: '%s'. Supported values are: %s."):format(b.completion_window, allowed),
      "completion_window")
  end
  if not common.absent(b.metadata) then
    local m = b.metadata
    if not common.is_object(m) and not (type(m) == "table" and #m == 0) then
      return bad_request("Invalid type for 'metadata': expected an object.", "metadata")
    end
    local pairs_count = 0
    for k, v in pairs(m) do
      pairs_count = pairs_count + 1
      if type(v) ~= "string" then
        return bad_request(("Invalid type for 'metadata.%s': expected a string."):format(k), "metadata")
      end
      if #k > 64 or #v > 512 then
        return bad_request("Invalid 'metadata': keys are at most 64 and values at most 512 characters.", "metadata")
      end
    end
    if pairs_count > 16 then
      return bad_request("Invalid 'metadata': at most 16 key-value pairs.", "metadata")
    end
  end
  if not common.absent(b.output_expires_after) then
    local o = b.output_expires_after
    if not common.is_object(o) or o.anchor ~= "created_at" or type(o.seconds) ~= "number"
      or o.seconds % 1 ~= 0 or o.seconds < 3600 or o.seconds > 2592000 then
      return bad_request("Invalid 'output_expires_after': expected {anchor: 'created_at', seconds: 3600 to 2592000}.",
        "output_expires_after")
    end
  end
  local input = common.file(instance, b.input_file_id)
  if not input then
    return bad_request("No such File object: " .. b.input_file_id, "input_file_id")
  end
  if input.purpose ~= "batch" then
    return bad_request(("The input file %s must have purpose 'batch'."):format(input.id), "input_file_id")
  end
end

local function create_batch(req)
  if req.body.error then
    return bad_request("We could not parse the JSON body of your request. (HINT: This likely means you aren't "
      .. "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
      .. "valid JSON.)")
  end
  local b = req.body.value
  local problem = batch_error(req.instance, b)
  if problem then return problem end
  local metadata = not common.absent(b.metadata) and b.metadata or nil
  local expire = metadata ~= nil and metadata.standin_expire == "true"
  local output_expiry = not common.absent(b.output_expires_after) and b.output_expires_after.seconds or FILE_EXPIRY
  local batch = lifecycle.create(req.instance, {
    id = common.new_id("batch_", 32, "0123456789abcdef"), input = common.file(req.instance, b.input_file_id),
    endpoint = b.endpoint, metadata = metadata, has_finalizing = true, expire = expire,
    new_file_id = function()
      return common.new_id("file-", 22, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    end,
    file_fields = function(kind, batch)
      return { purpose = "batch_output", filename = batch.id .. "_" .. kind .. ".jsonl",
               expires_at = math.floor(batch.final_at) + output_expiry }
    end,
  })
  batch.completion_window = b.completion_window
  batch.expires_at = math.floor(batch.created) + 86400
  if expire then batch.expires_at = math.floor(batch.plan[#batch.plan][2]) end
  return common.json_reply(200, render(batch))
end

local function list_batches(req)
  local q = req.query
  local limit, limit_err = page_limit(q, 20, 100)
  if not limit then return limit_err end
  local after_seq, err = cursor(req.instance, q.after, common.batch, "Batch")
  if err then return err end
  local page, more = common.page(common.batches(req.instance), after_seq, limit, true)
  return list_reply(page, more, render)
end

local function cannot_cancel(_, v)
  return bad_request(("Cannot cancel a batch with status '%s'."):format(v.status))
end

-- The API: the dialect's own handlers, and the shared ones (standin.handlers) by name.
M.route = handlers.router({
  file = file_object, no_file = no_such_file, deleted = deleted,
  batch = render, no_batch = no_such_batch, cannot_cancel = cannot_cancel,
}, {
  ["/files"] = { POST = handlers.multipart(upload), GET = list_files },
  ["/files/{id}"] = { GET = "get_file", DELETE = "delete_file" },
  ["/files/{id}/content"] = { GET = "file_content" },
  ["/batches"] = { POST = handlers.json(create_batch), GET = list_batches },
  ["/batches/{id}"] = { GET = "get_batch" },
  ["/batches/{id}/cancel"] = { POST = "cancel_batch" },
})

---------------------------------------------------------------------------------------------
-- What common.serve() asks of a dialect.

M.prepare = lifecycle.advance

function M.not_found(path, method, instance)
  return error_reply(404, ("Invalid URL (%s %s%s)"):format(method or "GET", variant(instance).version or "/v1",
    path or ""))
end

function M.unauthorized(_, auth)
  if auth == "missing" then
    return error_reply(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
      .. "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", nil,
      "invalid_api_key")
  end
  return error_reply(401, "Incorrect API key provided. You can find your API key at "
    .. "https://platform.openai.com/account/api-keys.", "invalid_request_error", nil, "invalid_api_key")
end

-- OpenAI's body for a status, for status faults that do not bring their own.
local FAULT_BODIES = {
  [400] = { "Bad request.", "invalid_request_error" },
  [403] = { "You are not allowed to sample from this model", "invalid_request_error" },
  [404] = { "Not found.", "invalid_request_error" },
  [409] = { "The request conflicted with another request.", "invalid_request_error" },
  [429] = { "Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded" },
  [500] = { "The server had an error while processing your request. Sorry about that!", "server_error" },
  [503] = { "The engine is currently overloaded, please try again later.", "server_error" },
}

function M.error_reply(status, path)
  if status == 401 then return M.unauthorized(path, "wrong") end
  local b = FAULT_BODIES[status]
  if b then return error_reply(status, b[1], b[2], nil, b[3]) end
  if status < 500 then return error_reply(status, "Request failed (HTTP " .. status .. ").") end
  return error_reply(status, "Server error (HTTP " .. status .. ").", "server_error")
end

function M.serve(instance, prefix)
  return common.serve(M, instance, prefix)
end

return M
