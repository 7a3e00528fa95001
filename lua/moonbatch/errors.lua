--- moonbatch.errors: one error convention: `nil, msg, info` with a one-line msg (CONTRACT §5).
-- @module moonbatch.errors
local cjson = require("cjson")

local errors = {}

local BODY_START = 512 -- bytes of the raw body kept in info.body

--- Remove every occurrence of `secret` from a string (the API key must never leak).
function errors.redact(s, secret)
  if type(s) ~= "string" or not secret or secret == "" then return s end
  local i = 1
  local out = {}
  while true do
    local a, b = s:find(secret, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = "[redacted]"
    i = b + 1
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

local function one_line(s)
  s = tostring(s):gsub("[\r\n]+", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #s > 300 then s = s:sub(1, 297) .. "..." end
  return s
end

local function text(v)
  if v == nil or v == cjson.null then return nil end
  if type(v) == "table" then return nil end
  if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2^53 then
    return ("%d"):format(v) -- lua-cjson decodes 50505 as 50505.0
  end
  return tostring(v)
end

--- What a provider's error reply says, whatever its shape:
-- {"error": {"message", "type", "param", "code"}} (OpenAI, Together files),
-- {"error": "string"} (Together batches), {"code", "message", "data"} (SiliconFlow),
-- a JSON string ("Invalid token"), an HTML page from a proxy, plain text, or nothing.
-- Returns a table {message, code, type, param, recognized}; `recognized` is true when the body
-- is one of the provider error shapes (JSON), false for HTML, plain text or an empty body.
function errors.parse_body(body, res)
  local json = res and res.json
  if type(body) == "table" then
    local e = body.error
    if type(e) == "table" then
      return { message = text(e.message), code = text(e.code), type = text(e.type),
               param = text(e.param), recognized = true }
    elseif type(e) == "string" then
      return { message = e, recognized = true }
    elseif body.message ~= nil or body.code ~= nil then
      local message = text(body.message)
      local data = text(body.data)
      if data and data ~= message and data ~= "" then
        message = message and (message .. " (" .. data .. ")") or data
      end
      return { message = message, code = text(body.code), recognized = true }
    end
    return { recognized = false }
  elseif type(body) == "string" then
    if json then
      return { message = body, recognized = true }
    end
    local title = body:match("<[Tt][Ii][Tt][Ll][Ee]>(.-)</") or body:match("<[Hh]1>(.-)</")
    if title then
      return { message = title, recognized = false }
    end
    local first = body:match("^%s*([^\r\n]+)")
    return { message = first, recognized = false }
  end
  return { recognized = false }
end

local function body_start(body)
  if type(body) == "string" then return body:sub(1, BODY_START) end
  if body == nil then return nil end
  local ok, encoded = pcall(cjson.encode, body)
  return ok and encoded:sub(1, BODY_START) or nil
end

-- the reply headers naming the request when the provider names none
local request_id_headers = { "x-request-id", "request-id" }

--- Build `msg, info` for a failed call.
-- ctx: {provider, method, path, url, secret, request_id_headers (the provider's; the first
-- found names info.request_id)}; fields: kind, status, message, code, type, param,
-- retryable, retry_after, attempts, body, headers.
function errors.make(ctx, fields)
  local info = {
    kind = fields.kind,
    status = fields.status,
    code = fields.code,
    type = fields.type,
    param = fields.param,
    message = fields.message,
    retryable = fields.retryable or false,
    retry_after = fields.retry_after,
    attempts = fields.attempts,
    body = body_start(fields.body),
    method = ctx.method,
    url = ctx.url,
    path = ctx.path,
    curl_code = fields.curl_code,
  }
  if fields.headers then
    for _, name in ipairs(ctx.request_id_headers or request_id_headers) do
      if fields.headers[name] then
        info.request_id = fields.headers[name]
        break
      end
    end
  end
  local detail
  if info.status and info.status >= 300 and (info.kind == "http" or info.kind == "api") then
    detail = "HTTP " .. info.status
    if info.message and info.message ~= "" then detail = detail .. ": " .. info.message end
  else
    detail = info.message or info.kind
  end
  local msg = ("moonbatch: %s %s %s: %s"):format(ctx.provider, ctx.method, ctx.path, one_line(detail))
  for k, v in pairs(info) do
    info[k] = errors.redact(v, ctx.secret)
  end
  return errors.redact(msg, ctx.secret), info
end

return errors
