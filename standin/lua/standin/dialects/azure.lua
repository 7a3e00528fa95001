-- The Azure OpenAI dialect (specs/azure-openai.yaml, GA 2024-10-21): OpenAI's Files and Batch
-- under {endpoint}/openai, the key in an `api-key` header (a Bearer header is not the key), an
-- `api-version` query on every call, errors in Microsoft's {error: {code, message}} shape: a
-- missing or wrong key 401, a missing api-version or unknown path 404 "Resource not found", an
-- unsupported version 400. Uploads answer 201 with a Location header.
local common = require("standin.common")
local openai = require("standin.dialects.openai")

local M = {}

local VERSIONS = { ["2024-10-21"] = true, ["2024-07-01-preview"] = true, ["2025-01-01-preview"] = true }
local PREFIX = "/azure/openai"

openai.variants.azure = { windows = { 24, 24 }, endpoints = { "/v1/chat/completions", "/chat/completions" },
                          max_bytes = 200 * 1000 * 1000, version = "/openai", upload_status = 201 }

local ERROR = common.shape({ "error" })
local DETAIL = common.shape({ "code", "message" })

local function ms_error(status, code, message)
  return common.json_reply(status, setmetatable({ error = setmetatable({ code = code, message = message }, DETAIL) },
    ERROR))
end

function M.auth(headers, key)
  local v = headers["api-key"]
  if v == nil then return "missing" end
  return v == key and "ok" or "wrong"
end

function M.unauthorized()
  return ms_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    .. "provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
end

function M.not_found()
  return ms_error(404, "404", "Resource not found")
end

-- OpenAI's routes, each behind the api-version check
local versioned = {}
function M.route(method, path)
  local route, params = openai.route(method, path)
  if not route then return nil end
  local wrapped = versioned[route]
  if not wrapped then
    wrapped = setmetatable({
      handle = function(req)
        local v = req.query["api-version"]
        if v == nil then return M.not_found() end
        if not VERSIONS[v] then
          return ms_error(400, "BadRequest", ("API version not supported: %s"):format(tostring(v)))
        end
        local reply = route.handle(req)
        if reply.status == 201 and req.entry.method == "POST" and path == "/files" then
          local id = reply.body:match('"id":"([^"]+)"')
          reply.headers = { Location = ("%s/files/%s?api-version=%s"):format(PREFIX, id or "", v) }
        end
        return reply
      end,
    }, { __index = route })
    versioned[route] = wrapped
  end
  return wrapped, params
end

M.prepare = openai.prepare

function M.error_reply(status, path)
  if status == 401 then return M.unauthorized() end
  if status == 404 then return M.not_found(path) end
  if status == 429 then
    return ms_error(429, "429", "Requests to the Batch API have exceeded call rate limit. Please retry after 1 second.")
  end
  return ms_error(status, tostring(status), status >= 500 and "The server had an error." or "Bad request.")
end

function M.serve()
  return common.serve(M, "azure", PREFIX)
end

return M
