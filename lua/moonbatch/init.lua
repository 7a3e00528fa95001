--- moonbatch: a client for LLM batch-inference APIs (SiliconFlow, Together AI, OpenAI-compatible).
-- require("moonbatch") returns this plain table and touches nothing global.
-- @module moonbatch
local args = require("moonbatch.args")
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
  if type(fns) ~= "table" then
    error(("moonbatch.concurrently: bad argument #1 'fns' (table expected, got %s)"):format(type(fns)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("moonbatch.concurrently: bad argument #2 'opts' (table expected, got %s)"):format(type(opts)), 2)
  end
  args.check_number("moonbatch.concurrently", "concurrency", opts and opts.concurrency, args.CONCURRENCY)
  return require("moonbatch.scheduler").run(fns, opts)
end

--- Jobs larger than one batch, split into shards, resumable after a crash: job.run, job.status,
-- job.cancel, job.retry_failed (see moonbatch.job).
moonbatch.job = require("moonbatch.job")

--- Check a batch input file before upload: see moonbatch.validate.
function moonbatch.validate(path, opts)
  return require("moonbatch.validate")(path, opts)
end

return moonbatch
