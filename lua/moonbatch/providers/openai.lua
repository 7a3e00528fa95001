--- moonbatch.providers.openai: OpenAI's Files and Batch API, and any service that copies it:
-- plain objects, cursor pages ({data, has_more, first_id, last_id}).
-- OpenAI's dialect is the default every provider starts from (moonbatch.providers.base).
-- @module moonbatch.providers.openai
local provider = require("moonbatch.providers.base")

local P = provider.define({
  name = "openai",
  base_url = "https://api.openai.com/v1",
  key_env = "OPENAI_API_KEY",
  limits = { lines = 50000, bytes = 200 * 1000 * 1000 },
  -- the error codes of a batch that failed on a quota, not on its requests: a job creates it
  -- again once earlier batches end (openai/openai-python#2084: the enqueued-token limit)
  quota_errors = { "token_limit_exceeded" },
})

-- replace.model is SiliconFlow's: OpenAI takes each line's model and would refuse the field
function P.create_options(opts, p)
  p = p or P
  if opts.replace ~= nil then
    error(("batches.create: option 'replace' is not supported by %s"):format(p.name), 4)
  end
  return provider.base.create_options(opts, p)
end

return P
