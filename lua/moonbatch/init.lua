--- moonbatch: a client for LLM batch-inference APIs (SiliconFlow, Together AI, OpenAI-compatible).
-- require("moonbatch") returns this plain table and touches nothing global.
-- @module moonbatch
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

--- Run functions as concurrent tasks: their moonbatch calls share one connection pool and
-- overlap; returns each function's results, packed ({n = k, ...}), in order.
-- opts: { concurrency = 8 }.
function moonbatch.concurrently(fns, opts)
  return require("moonbatch.scheduler").run(fns, opts)
end

--- Jobs larger than one batch, split into shards, resumable after a crash: job.run, job.status,
-- job.cancel, job.retry_failed (see moonbatch.job).
moonbatch.job = require("moonbatch.job")

--- What a batch input will take (requests, tokens, shards, cost) before anything is sent: see
-- moonbatch.estimate.
function moonbatch.estimate(path, opts)
  return require("moonbatch.estimate")(path, opts)
end

--- Check a batch input file before upload: see moonbatch.validate.
function moonbatch.validate(path, opts)
  return require("moonbatch.validate")(path, opts)
end

return moonbatch
