-- moonbatch.providers.openai: OpenAI's Files and Batch API, and any service that copies it
-- (provider-apis.md §3): plain objects, cursor pages ({data, has_more, first_id, last_id}).
local objects = require("moonbatch.objects")

local P = {
  name = "openai",
  base_url = "https://api.openai.com/v1",
  key_env = "OPENAI_API_KEY",
  batch_purpose = "batch",
  upload_path = "/files",
  files_path = "/files",
  batches_path = "/batches",
  files_cursor = true, -- GET /files?after=<last id> while has_more
  limits = { lines = 50000, bytes = 200 * 1000 * 1000 },
}

function P.upload_fields()
  return nil
end

function P.file(body)
  if type(body) ~= "table" or type(body.id) ~= "string" then
    return nil, { kind = "decode", message = "reply is not a file object" }
  end
  return objects.file(body)
end

function P.files_page(body)
  if type(body) ~= "table" or type(body.data) ~= "table" then
    return nil, { kind = "decode", message = "reply has no file list" }
  end
  local files = {}
  for i, item in ipairs(body.data) do
    files[i] = objects.file(item)
  end
  return objects.page(files, body.has_more == true)
end

function P.batch(body)
  if type(body) ~= "table" or type(body.id) ~= "string" then
    return nil, { kind = "decode", message = "reply is not a batch object" }
  end
  return objects.batch(body, body.status)
end

function P.retryable()
  return false
end

return P
