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

--- Create a client for one provider. Its operations (`client.files.upload`, `client.batches.wait`,
-- `client.close`, ...) are documented in moonbatch.client. Nothing is sent and no key is needed
-- until an operation is called.
-- @tparam[opt] table opts
-- @tparam[opt="siliconflow"] string|table opts.provider a name from `moonbatch.providers`
-- (the registry, moonbatch.providers), or a table of data describing another OpenAI-compatible
-- service
-- @tparam[opt] string opts.api_version sent as `api-version` on every call where the provider
-- takes one (Azure; default the provider's)
-- @tparam[opt] string opts.api_key the API key (default: the provider's variable, e.g.
-- `SILICONFLOW_API_KEY`, then `MOONBATCH_API_KEY`)
-- @tparam[opt] string opts.base_url the API's base URL (default: `MOONBATCH_BASE_URL`, then the
-- provider's, e.g. "https://api.siliconflow.cn/v1")
-- @tparam[opt=600] number opts.timeout seconds for one attempt
-- @tparam[opt=10] number opts.connect_timeout seconds to connect
-- @tparam[opt=2] integer opts.max_retries attempts after the first
-- @tparam[opt] number opts.deadline seconds for a whole call: every attempt and wait (default: none)
-- @tparam[opt] table opts.headers extra request headers, `{name = value}`
-- @tparam[opt] function opts.on_progress `function(done_bytes, total_bytes)` during uploads and
-- downloads
-- @tparam[opt] string opts.cainfo a CA bundle file for TLS verification (default: the system's CAs)
-- @tparam[opt] number opts.max_reply_bytes a longer reply fails with `kind = "decode"` (default 64 MiB)
-- @tparam[opt] number opts.low_speed_limit with `low_speed_time`: an attempt that moves fewer
-- bytes a second than this for `low_speed_time` seconds ends with `kind = "timeout"` (and is
-- retried)
-- @tparam[opt] number opts.low_speed_time seconds, see `low_speed_limit`
-- @tparam[opt=false] boolean opts.allow_http true to allow plain `http://` to a host other than
-- this machine (127.0.0.0/8, localhost, ::1)
-- @tparam[opt] function opts.clock the retry loop's clock, seconds (default `core.now`)
-- @tparam[opt] function opts.sleep the retry loop's sleep, `function(seconds)` (default `core.sleep`)
-- @tparam[opt] function opts.random the retries' jitter, as `math.random` (the default)
-- @treturn table a client (moonbatch.client)
-- @raise on an unknown option, one of the wrong type, a negative number, an unknown provider,
-- or a base URL that is not http(s) or is plain HTTP to another host without `allow_http`
-- @usage local client = moonbatch.new({ provider = "together", timeout = 120 })
-- local file = assert(client.files.upload({ file = "requests.jsonl" }))
function moonbatch.new(opts)
  return client.new(opts)
end

--- Run functions as concurrent tasks: their moonbatch calls share one connection pool and
-- overlap (their exchanges, and their waits between retries or polls, yield to the others).
-- Called inside a task, it runs its functions as child tasks of the same loop.
-- @tparam table fns a list of functions, each called with no arguments
-- @tparam[opt] table opts
-- @tparam[opt=8] integer opts.concurrency tasks running at once
-- @treturn table each function's results, packed (`{n = k, ...}`), in order
-- @raise the error a task raised, once the other transfers are stopped
-- @usage local done = moonbatch.concurrently({
--   function() return client.batches.wait("batch_a") end,
--   function() return client.batches.wait("batch_b") end,
-- })                                    -- done[i] = { n = 3, batch_or_nil, msg, info }
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
-- job.cancel, job.retry_failed (documented in moonbatch.job).
moonbatch.job = require("moonbatch.job")

--- What a batch input will take (requests, tokens, shards, cost) before anything is sent: see
-- moonbatch.estimate.
function moonbatch.estimate(path, opts)
  return require("moonbatch.estimate")(path, opts)
end

--- Check a batch input file before upload, in one streaming pass (the file is never held in
-- memory): every line a JSON object in valid UTF-8, `custom_id` a unique string, `method` and
-- `url` where present (required for OpenAI), a `body` with `messages` and a `model`, one model
-- per file, the provider's line and size limits. Sends nothing.
-- @tparam string path the file
-- @tparam[opt] table opts
-- @tparam[opt="siliconflow"] string opts.provider whose rules
-- @tparam[opt="/v1/chat/completions"] string opts.endpoint the batch's endpoint
-- @tparam[opt] string opts.replace_model the model a batch will set on every line (then the
-- lines need none of their own)
-- @treturn table `{lines = n, bytes = n, models = {...}}`, or `nil, msg, info` with
-- `kind = "validation"` and every problem, each naming its line, in `info.problems`
-- (`kind = "io"` when the file cannot be read)
function moonbatch.validate(path, opts)
  return require("moonbatch.validate")(path, opts)
end

--- The version, "X.Y.Z"; `moonbatch._VERSION` is "moonbatch X.Y.Z" (what `moonbatch --version`
-- prints; LDoc lists no name that starts with an underscore).
-- @field version

--- The names of the providers `moonbatch.new` knows, built-in first (moonbatch.providers.names()).
-- @field providers

return moonbatch
