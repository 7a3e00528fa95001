--- moonbatch.job.quota: when a job may create its next batch. Options `max_active_batches`,
-- `max_enqueued_requests` and `max_enqueued_tokens` hold shards back while the batches created
-- and not yet ended would go past them (a shard's tokens are estimated as a quarter of its
-- bytes); a batch that fails for a quota reason (the provider's `quota_errors` codes, e.g.
-- OpenAI's token_limit_exceeded) is not a failure of the job: its shard keeps its uploaded file,
-- records the reason, and is created again once an earlier batch has ended.
-- @module moonbatch.job.quota
local common = require("moonbatch.job.common")

local event = common.event
local quota = {}

local Quota = {}
Quota.__index = Quota

local ACTIVE = { creating = true, running = true }

--- The estimated input tokens of shard `s` (a quarter of its bytes, as providers count roughly).
function quota.tokens(s)
  return math.ceil(s.length / 4)
end

--- The quota of the job of ctx, with the limits of `o` (each nil: none).
function quota.new(ctx, o)
  local codes = {}
  for _, code in ipairs(ctx.client.provider.quota_errors or {}) do codes[code] = true end
  return setmetatable({
    ctx = ctx, codes = codes, ended = 0,
    max_active = o.max_active_batches, max_requests = o.max_enqueued_requests, max_tokens = o.max_enqueued_tokens,
  }, Quota)
end

-- the batches created (or being created) and not ended: how many, their requests, their
-- estimated tokens
function Quota:active()
  local n, requests, tokens = 0, 0, 0
  for _, s in ipairs(self.ctx.m.shards) do
    if ACTIVE[s.status] or s.reserved then
      n, requests, tokens = n + 1, requests + s.lines, tokens + quota.tokens(s)
    end
  end
  return n, requests, tokens
end

--- May shard `s` (without a batch) have its batch created now? One batch may always run, so a
-- shard larger than a limit still runs, alone; a shard whose batch failed on a quota waits for
-- an earlier batch to end first.
function Quota:allows(s)
  local n, requests, tokens = self:active()
  if n == 0 then return true end
  if s.quota_mark and self.ended <= s.quota_mark then return false end
  if self.max_active and n + 1 > self.max_active then return false end
  if self.max_requests and requests + s.lines > self.max_requests then return false end
  if self.max_tokens and tokens + quota.tokens(s) > self.max_tokens then return false end
  return true
end

--- A batch of shard `s` ended (`b`, its last look): count it.
function Quota:batch_ended()
  self.ended = self.ended + 1
end

--- Did the batch `b` of shard `s` fail on a quota? Then the shard goes back to "uploaded" (its
-- file kept), the reason recorded, to be created again later: true. Else false.
function Quota:retry(s, b)
  if b.status ~= "failed" then return false end
  for _, e in ipairs(b.errors or {}) do
    if e.code and self.codes[e.code] then
      local ctx = self.ctx
      s.quota_reason = ("%s: %s"):format(e.code, tostring(e.message or ""))
      s.quota_since = os.time()
      s.resubmits = (s.resubmits or 0) + 1
      s.quota_mark = self.ended
      s.batch_id, s.batch_status, s.counts, s.cancel_sent = nil, nil, nil, nil
      s.status = "uploaded"
      ctx.store:save_shard(s)
      event(ctx, "quota", s, ("batch %s failed on a quota (%s): it is created again once an earlier batch ends")
        :format(b.id, s.quota_reason), { batch = b, reason = s.quota_reason })
      return true
    end
  end
  return false
end

return quota
