--- moonbatch.providers.azure: Azure OpenAI's Batch API (specs/azure-openai.yaml, GA 2024-10-21).
-- OpenAI's flow and objects on the resource's URL (https://RESOURCE.openai.azure.com/openai),
-- with the key in an `api-key` header and `api-version` in the query of every call (the
-- client's option api_version, else the GA version). A line's model is a deployment's name.
-- GET /files takes only purpose (one page); in this version Batch.errors.data is one object.
-- @module moonbatch.providers.azure
local provider = require("moonbatch.providers.base")

local P = provider.define({
  name = "azure",
  base_url = false, -- the resource's: moonbatch.new{base_url = ...} or MOONBATCH_BASE_URL
  base_url_hint = "https://RESOURCE.openai.azure.com/openai",
  key_env = "AZURE_OPENAI_API_KEY",
  api_version = "2024-10-21",
  files_cursor = false,
  windows = { 24, 24 },
  request_id_headers = { "apim-request-id", "x-request-id", "x-ms-request-id" },
  -- 200 MB and 100,000 requests a file (more-providers.md)
  limits = { lines = 100000, bytes = 200 * 1000 * 1000 },
}, require("moonbatch.providers.openai"))

function P.auth_headers(key)
  return { ["api-key"] = key }
end

-- every call carries api-version (a copy: the caller's query is never modified)
function P.query(q, client)
  local out = { ["api-version"] = client and client.api_version or P.api_version }
  for k, v in pairs(q or {}) do out[k] = v end
  return out
end

function P.list_query(opts)
  return { purpose = opts.purpose }
end

function P.batch(body)
  local b, err = provider.base.batch(body)
  if not b then return nil, err end
  local e = b.raw.errors
  if b.errors and #b.errors == 0 and type(e) == "table" and type(e.data) == "table" and e.data[1] == nil
      and next(e.data) ~= nil then
    local d = e.data
    b.errors = { { code = d.code, message = d.message, line = d.line, param = d.param } }
  end
  return b
end

return P
