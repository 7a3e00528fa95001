--- moonbatch.cli.estimate: the `moonbatch estimate FILE` command (moonbatch.estimate): its
-- description for moonbatch.cli's table of commands, and its run(ctx).
-- @module moonbatch.cli.estimate
local progress = require("moonbatch.progress")

local command = {
  args = { "FILE" },
  summary = "requests, tokens, shards and cost of a batch input, before sending it",
  flags = { "provider", "json", "shard-lines", "shard-bytes", "input-price", "output-price" },
  help = [[
Reads FILE once and says what running it will take on the provider: its requests and bytes,
its input tokens (estimated: a quarter of the text's ASCII bytes, a token a character of other
scripts, 4 a message and 3 a request; measured against GPT-4o's tokenizer: 5 to 8 % over on
English and mixed samples), its output tokens at most (each line's max_tokens; lines without
one are counted as unbounded), the shards and batches a `job run` makes, and the cost when
prices are given. Sends nothing.

options:
  --provider NAME           whose limits (default: siliconflow)
  --shard-lines N           at most N lines a shard (default: the provider's limit)
  --shard-bytes N           at most N bytes a shard (default: the provider's limit)
  --input-price P           the batch price of a million input tokens
  --output-price P          the batch price of a million output tokens
  --json                    the estimate as JSON
]],
}

local function thousands(n)
  local s = tostring(math.floor(n))
  repeat
    local k
    s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

function command.run(ctx)
  local file = ctx.args[1]
  local prices
  if ctx.opts["input-price"] or ctx.opts["output-price"] then
    prices = { input = ctx.opts["input-price"], output = ctx.opts["output-price"] }
  end
  local r = ctx:check(ctx:library().estimate(file, { provider = ctx.provider, max_lines = ctx.opts["shard-lines"],
    max_bytes = ctx.opts["shard-bytes"], prices = prices }))
  if ctx.json then
    ctx:print_json(r)
    return 0
  end
  ctx:out(("file: %s"):format(file))
  ctx:out(("requests: %s"):format(thousands(r.requests)))
  ctx:out(("bytes: %s (%s)"):format(thousands(r.bytes), progress.bytes(r.bytes)))
  ctx:out(("input tokens: about %s"):format(thousands(r.input_tokens)))
  ctx:out(("output tokens: at most %s%s"):format(thousands(r.output_tokens),
    r.unbounded > 0 and (" (and %s lines without max_tokens: no bound)"):format(thousands(r.unbounded)) or ""))
  ctx:out(("shards: %d on %s (%d batch%s)"):format(r.shards, r.provider, r.batches, r.batches == 1 and "" or "es"))
  if r.cost then
    local c = r.cost
    if c.input then ctx:out(("cost of the input: about %.6g"):format(c.input)) end
    if c.output then ctx:out(("cost of the output: at most %.6g"):format(c.output)) end
    if c.total then ctx:out(("cost: at most %.6g"):format(c.total)) end
  end
  return 0
end

return command
