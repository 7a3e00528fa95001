--- moonbatch.providers.siliconflow: SiliconFlow's dialect.
-- Files replies come in an envelope {code, message, status, data}; batch replies do not. The
-- upload says createdAt, the list created_at. 401/403/404 bodies are bare strings. The file
-- list has no cursor; 50505 means "overloaded, try again" whatever the HTTP status.
-- @module moonbatch.providers.siliconflow
local provider = require("moonbatch.providers.base")

local P = provider.define({
  name = "siliconflow",
  base_url = "https://api.siliconflow.cn/v1",
  require_method_url = false,
  key_env = "SILICONFLOW_API_KEY",
  files_cursor = false, -- GET /files has only purpose and limit: one page
  -- result files may answer 404 for a short while after the batch completed: downloads
  -- try again for this many seconds
  content_404_grace = 60,
  -- a completed batch may name its result files a moment later: polled this many times
  late_result_polls = 5,
  request_id_headers = { "x-request-id", "request-id", "x-siliconcloud-trace-id", "x-trace-id" },
  limits = { lines = 5000, bytes = 1000 * 1000 * 1000 },
  -- SiliconFlow documents no quota error of a batch (its limits are per file): none is retried
  quota_errors = {},
})

local OK = 20000
local OVERLOADED = 50505

-- the envelope's payload, or nil and what the envelope says went wrong
local function unwrap(body)
  if type(body) ~= "table" then
    return nil, { kind = "decode", message = "reply is not a JSON object" }
  end
  if body.data == nil and body.code == nil then
    return body -- not enveloped
  end
  -- read in place: the payload is cleaned once, where it becomes canonical objects
  local code = tonumber(body.code)
  if body.status == false or (code and code ~= OK) then
    return nil, { kind = "api", code = code and ("%d"):format(code),
                  message = type(body.message) == "string" and body.message or "request failed",
                  provider_retryable = code == OVERLOADED }
  end
  if type(body.data) ~= "table" then
    return nil, { kind = "decode", message = "reply has no data object" }
  end
  return body.data
end

function P.list_query(opts)
  return { purpose = opts.purpose, limit = opts.limit }
end

function P.file(body)
  local data, err = unwrap(body)
  if not data then return nil, err end
  return provider.base.file(data)
end

function P.files_page(body)
  local data, err = unwrap(body)
  if not data then return nil, err end
  return provider.base.list_page(data, provider.base.file, "a file list")
end

function P.retryable(body)
  return type(body) == "table" and tonumber(body.code) == OVERLOADED
end

return P
