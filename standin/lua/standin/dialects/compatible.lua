-- The OpenAI-compatible services: OpenAI's dialect (standin.dialects.openai) under each one's own
-- path, with its own windows, endpoints and upload size where they differ (more-providers.md and
-- each service's document). One store per service.
local common = require("standin.common")
local openai = require("standin.dialects.openai")

local M = {}

local MB = 1000 * 1000
local CHAT = { "/v1/chat/completions" }

-- name -> the base path it is served under and what differs from OpenAI
M.services = {
  groq = { prefix = "/groq/openai/v1", version = "/openai/v1", windows = { 24, 168 }, endpoints = CHAT,
           max_bytes = 100 * MB },
  deepinfra = { prefix = "/deepinfra/v1/openai", version = "/v1/openai", windows = { 24, 24 },
                endpoints = { "/v1/chat/completions", "/v1/completions", "/v1/embeddings" } },
  dashscope = { prefix = "/dashscope/compatible-mode/v1", version = "/compatible-mode/v1", windows = { 24, 336 },
                endpoints = { "/v1/chat/completions", "/v1/embeddings" }, max_bytes = 100 * MB },
  ["dashscope-intl"] = { prefix = "/dashscope-intl/compatible-mode/v1", version = "/compatible-mode/v1",
                         windows = { 24, 336 }, endpoints = { "/v1/chat/completions", "/v1/embeddings" },
                         max_bytes = 100 * MB },
  moonshot = { prefix = "/moonshot/v1", version = "/v1", windows = { 12, 168 }, endpoints = CHAT, max_bytes = 100 * MB },
  zhipu = { prefix = "/zhipu/api/paas/v4", version = "/api/paas/v4", windows = { 24, 24 },
            endpoints = { "/v4/chat/completions" }, max_bytes = 100 * MB },
}
-- the order bin/moonbatch-standin prints them in
M.order = { "groq", "deepinfra", "dashscope", "dashscope-intl", "moonshot", "zhipu" }

for name, v in pairs(M.services) do openai.variants[name] = v end

--- Serves the request of the service its path names (nginx.conf.in's one location for all).
function M.serve()
  local name = ngx.var.uri:match("^/([%w-]+)/")
  local v = M.services[name]
  return common.serve(openai, name, v.prefix)
end

return M
