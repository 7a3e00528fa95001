-- moonbatch.providers.siliconflow: SiliconFlow's dialect (seeds 000-003, provider-apis.md §1).
-- Files replies come in an envelope {code, message, status, data}; batch replies do not. The
-- upload says createdAt, the list created_at. 401/403/404 bodies are bare strings.
local objects = require("moonbatch.objects")

local P = {
  name = "siliconflow",
  base_url = "https://api.siliconflow.cn/v1",
  key_env = "SILICONFLOW_API_KEY",
  batch_purpose = "batch",
  upload_path = "/files",
  files_path = "/files",
  batches_path = "/batches",
  files_cursor = false, -- GET /files has only purpose and limit: one page
  limits = { lines = 5000, bytes = 1000 * 1000 * 1000 },
}

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
  body = objects.clean(body)
  local code = tonumber(body.code)
  if body.status == false or (code and code ~= OK) then
    return nil, { kind = "api", code = code and tostring(code),
                  message = type(body.message) == "string" and body.message or "request failed",
                  provider_retryable = code == OVERLOADED }
  end
  if type(body.data) ~= "table" then
    return nil, { kind = "decode", message = "reply has no data object" }
  end
  return body.data
end

--- Extra multipart fields of an upload beside purpose and file: none.
function P.upload_fields()
  return nil
end

function P.file(body)
  local data, err = unwrap(body)
  if not data then return nil, err end
  if type(data.id) ~= "string" then
    return nil, { kind = "decode", message = "reply has no file id" }
  end
  return objects.file(data)
end

function P.files_page(body)
  local data, err = unwrap(body)
  if not data then return nil, err end
  local list = data.data
  if type(list) ~= "table" then
    return nil, { kind = "decode", message = "reply has no file list" }
  end
  local files = {}
  for i, item in ipairs(list) do
    files[i] = objects.file(item)
  end
  return objects.page(files, false)
end

function P.batch(body)
  if type(body) ~= "table" or type(body.id) ~= "string" then
    return nil, { kind = "decode", message = "reply is not a batch object" }
  end
  return objects.batch(body, body.status)
end

--- Is a failed reply the provider's overload signal (code 50505), whatever its HTTP status?
function P.retryable(body)
  return type(body) == "table" and tonumber(body.code) == OVERLOADED
end

return P
