--- moonbatch.objects: the canonical File, Batch and Page shapes (OpenAI's), built from any dialect.
-- @module moonbatch.objects
local cjson = require("cjson")

local objects = {}

local null = cjson.null
local tointeger = math.tointeger or function(n)
  if n == math.floor(n) then return n end
end

local math_type = math.type

-- does `t` hold, at any depth, a cjson.null or an integral float?
local function dirty(t)
  for _, v in pairs(t) do
    if v == null then return true end
    local vt = type(v)
    if vt == "table" then
      if dirty(v) then return true end
    elseif vt == "number" and math_type and math_type(v) == "float" and v == math.floor(v)
        and v > -2^53 and v < 2^53 then
      return true
    end
  end
  return false
end

-- a deep copy of `value` with cjson.null removed and integral floats made integers
local function copy_clean(value)
  local t = type(value)
  if value == null then
    return nil
  elseif t == "number" then
    if value == math.floor(value) and value > -2^53 and value < 2^53 then
      return tointeger(value) or value
    end
    return value
  elseif t ~= "table" then
    return value
  end
  local copy = {}
  for k, v in pairs(value) do
    copy[k] = copy_clean(v)
  end
  return copy
end

-- true while objects.parse_decoded runs: the values are moonbatch.core's, clean already
local decoded = false

--- A decoded reply with cjson.null removed and integral floats made integers (lua-cjson 2.1
-- decodes every number as a float): the value itself when it has neither, else a deep copy.
-- @param value a decoded reply
-- @return the cleaned value
function objects.clean(value)
  if decoded or (type(value) == "table" and not dirty(value)) then return value end
  return copy_clean(value)
end

--- parse(body, res) for a reply that moonbatch.core decoded: its tables hold no cjson.null and
-- its integral numbers are integers already, so objects.clean (called by objects.file and
-- objects.batch on every item) need not look through them. parse must not yield.
function objects.parse_decoded(parse, body, res)
  decoded = true
  local ok, value, fields = pcall(parse, body, res)
  decoded = false
  if not ok then error(value, 0) end
  return value, fields
end

--- Unix seconds from an integer, a numeric string or an ISO-8601 UTC string; nil otherwise.
-- @param v
-- @treturn ?integer
function objects.unix_time(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then return nil end
  if v:match("^%d+$") then return tonumber(v) end
  -- fractions of a second are dropped: canonical times are whole Unix seconds
  local y, mo, d, h, mi, s, zone = v:match(
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)%.?%d*(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from the civil date (proleptic Gregorian), so no local time zone is involved
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mo + (mo > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  local t = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
  local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
  if sign then
    local offset = tonumber(zh) * 3600 + tonumber(zm) * 60
    t = sign == "+" and t - offset or t + offset
  elseif zone ~= "Z" and zone ~= "" then
    return nil
  end
  return t
end

--- Canonical File from a provider's decoded file object.
-- @tparam table raw
-- @treturn table File: `{id, object = "file", bytes, created_at, filename, purpose,
-- line_count, status, raw}` (`raw` the provider's own object)
function objects.file(raw)
  if not decoded then raw = objects.clean(raw) end
  local created = raw.created_at or raw.createdAt
  return {
    id = raw.id,
    object = "file",
    bytes = raw.bytes,
    created_at = type(created) == "number" and created or objects.unix_time(created),
    filename = raw.filename,
    purpose = raw.purpose,
    line_count = raw.line_count,
    status = raw.status,
    expires_at = objects.unix_time(raw.expires_at),
    raw = raw,
  }
end

local batch_times = {
  "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
  "expired_at", "cancelling_at", "cancelled_at",
}

--- The canonical statuses; a provider maps its own onto these before calling objects.batch.
objects.statuses = {
  validating = true, in_queue = true, in_progress = true, finalizing = true, completed = true,
  failed = true, expired = true, cancelling = true, cancelled = true,
}
objects.final = { completed = true, failed = true, expired = true, cancelled = true }

-- errors come as a list of strings (SiliconFlow), OpenAI's {data = {...}} list, or nothing
local function batch_errors(errors)
  if type(errors) ~= "table" then return nil end
  local list = errors.data or errors
  local out = {}
  for _, e in ipairs(list) do
    if type(e) == "table" then
      out[#out + 1] = { code = e.code, message = e.message, line = e.line, param = e.param }
    else
      out[#out + 1] = { message = tostring(e) }
    end
  end
  return out
end

local function request_counts(rc)
  if type(rc) ~= "table" or rc.total == nil then return nil end
  return { total = rc.total, completed = rc.completed or 0, failed = rc.failed or 0 }
end

-- token totals where the provider reports them: {input_tokens, output_tokens, total_tokens}
-- (OpenAI's names; prompt_tokens/completion_tokens are read as the same)
local function usage(u)
  if type(u) ~= "table" then return nil end
  local input = u.input_tokens or u.prompt_tokens
  local output = u.output_tokens or u.completion_tokens
  local total = u.total_tokens
  if total == nil and type(input) == "number" and type(output) == "number" then total = input + output end
  if input == nil and output == nil and total == nil then return nil end
  return { input_tokens = input, output_tokens = output, total_tokens = total }
end

--- An integer from a whole number (math.tointeger where there is one), else the value as it is.
function objects.integer(n)
  if type(n) ~= "number" or n ~= math.floor(n) or n <= -2^53 or n >= 2^53 then return n end
  return tointeger(n) or n
end

--- Canonical Batch from a provider's decoded batch object, its status already canonical.
-- @tparam table raw
-- @tparam[opt] string status the canonical status (default `raw.status`)
-- @treturn table Batch: `{id, object = "batch", endpoint, input_file_id, completion_window,
-- status, output_file_id, error_file_id, request_counts = {total, completed, failed}, metadata,
-- errors = { {code, message, line, param}, ... }, created_at, in_progress_at, expires_at,
-- finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, raw}`
-- (times in Unix seconds)
function objects.batch(raw, status)
  raw = objects.clean(raw)
  local b = {
    id = raw.id,
    object = "batch",
    endpoint = raw.endpoint,
    input_file_id = raw.input_file_id,
    completion_window = raw.completion_window,
    status = status or raw.status,
    output_file_id = raw.output_file_id,
    error_file_id = raw.error_file_id,
    request_counts = request_counts(raw.request_counts),
    metadata = raw.metadata,
    model = raw.model,
    usage = usage(raw.usage),
    errors = batch_errors(raw.errors),
    raw = raw,
  }
  for _, name in ipairs(batch_times) do
    b[name] = objects.unix_time(raw[name])
  end
  return b
end

--- Canonical Page of already canonical items.
-- @tparam table data the items
-- @tparam boolean has_more
-- @treturn table Page: `{object = "list", data, has_more, first_id, last_id}`
function objects.page(data, has_more)
  return {
    object = "list",
    data = data,
    has_more = has_more and true or false,
    first_id = data[1] and data[1].id,
    last_id = data[#data] and data[#data].id,
  }
end

return objects
