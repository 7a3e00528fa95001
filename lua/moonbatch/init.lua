-- moonbatch: a client for LLM batch-inference APIs (SiliconFlow, Together AI, OpenAI-compatible).
-- require("moonbatch") returns this plain table and touches nothing global.
local client = require("moonbatch.client")
local core = require("moonbatch.core")

local moonbatch = {
  _VERSION = "moonbatch " .. core.version,
  version = core.version,
  providers = client.providers,
}

--- Create a client; see CONTRACT §2 for the options.
function moonbatch.new(opts)
  return client.new(opts)
end

--- Check a batch input file before upload: see moonbatch.validate.
function moonbatch.validate(path, opts)
  return require("moonbatch.validate")(path, opts)
end

return moonbatch
