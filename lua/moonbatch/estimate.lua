--- moonbatch.estimate: what a batch input will take before anything is sent: requests, bytes,
-- input tokens (estimated in one C pass over the file, moonbatch.store.estimate: a quarter of
-- the ASCII bytes of its text, one token a character of other scripts, 4 a message and 3 a
-- request), output tokens bounded by each line's max_tokens, the shards and batches a job makes
-- on the provider, and the cost when prices are given (never built in: prices change).
-- @module moonbatch.estimate
local args = require("moonbatch.args")
local client = require("moonbatch.client")

local DEFAULT_LINES = 50000 -- a shard's lines when the provider states no limit (as moonbatch.job)

local spec = {
  provider = "string", max_lines = "integer", max_bytes = "integer", prices = "table",
}
local price_spec = { input = "number", output = "number", currency = "string" }

--- The input tokens of `t` (a moonbatch.store.estimate table), by the rule above.
local function input_tokens(t)
  return math.ceil(t.ascii / 4) + t.other + 4 * t.messages + 3 * t.lines
end

--- moonbatch.estimate(path, opts): opts.provider (a provider's name, default the registry's),
-- max_lines and max_bytes (a shard's limits, default the provider's), prices = { input =,
-- output = } (per million tokens, the provider's batch prices; `currency` a label). Returns {
-- requests, bytes, input_tokens, output_tokens (the sum of max_tokens), unbounded (lines
-- without max_tokens: their output has no bound), shards, batches, cost = { input, output,
-- total, currency } (when prices are given; output and total are upper bounds, nil when a
-- line is unbounded) }, or nil, msg, info.
return function(path, opts)
  args.string("moonbatch.estimate", 1, "path", path)
  opts = args.check("moonbatch.estimate", opts, spec)
  if opts.prices then
    local p = args.check("moonbatch.estimate", opts.prices, price_spec)
    for _, k in ipairs({ "input", "output" }) do
      if p[k] ~= nil and not (p[k] >= 0 and p[k] < math.huge) then
        error(("moonbatch.estimate: bad option 'prices.%s' (a price of 0 or more expected)"):format(k), 2)
      end
    end
  end
  for _, k in ipairs({ "max_lines", "max_bytes" }) do
    if opts[k] ~= nil and opts[k] < 1 then error(("moonbatch.estimate: bad option '%s' (1 or more expected)"):format(k), 2) end
  end
  local p = client.provider(opts.provider or require("moonbatch.providers").default, "moonbatch.estimate")
  local ok, store = pcall(require, "moonbatch.store")
  if not ok then return nil, "moonbatch: estimate needs moonbatch.store: " .. tostring(store), { kind = "io" } end
  local t, msg, info = store.estimate(path)
  if not t then return nil, "moonbatch: " .. msg, info end
  local limits = p.limits or {}
  local max_lines = opts.max_lines or limits.lines or DEFAULT_LINES
  local max_bytes = opts.max_bytes or limits.bytes or 2 ^ 53
  local cuts, smsg, sinfo = store.split(path, max_lines, max_bytes)
  if not cuts then return nil, "moonbatch: " .. path .. ": " .. smsg, sinfo end
  local r = {
    requests = t.lines, bytes = t.bytes, input_tokens = input_tokens(t), output_tokens = t.max_tokens,
    unbounded = t.unbounded, shards = #cuts, batches = #cuts, provider = p.name,
  }
  if opts.prices then
    local prices = opts.prices
    local cost = { currency = prices.currency }
    if prices.input then cost.input = r.input_tokens / 1e6 * prices.input end
    if prices.output and r.unbounded == 0 then cost.output = r.output_tokens / 1e6 * prices.output end
    if cost.input and (cost.output or not prices.output) and (prices.output == nil or r.unbounded == 0) then
      cost.total = cost.input + (cost.output or 0)
    end
    r.cost = cost
  end
  return r
end
