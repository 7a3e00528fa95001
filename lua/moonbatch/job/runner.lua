--- moonbatch.job.runner: a job's shards driven to their results by a few tasks, whatever the
-- number of shards: `concurrency` workers do the transfers (upload and create, then download,
-- the shards in order, downloads first), and one poller looks at the running batches, each when
-- its own interval is up. So the tasks and timers stay few at shard 2,000 as at shard 2, and a
-- scheduler step costs the same; the quota (moonbatch.job.quota) decides when a batch may be
-- created.
-- @module moonbatch.job.runner
local core = require("moonbatch.core")
local scheduler = require("moonbatch.scheduler")
local steps = require("moonbatch.job.steps")

local runner = {}

local IDLE = 0.05 -- seconds a worker with nothing to do waits before looking again
local MAX_NAP = 0.25 -- seconds the poller sleeps at most (a batch created meanwhile waits no longer)

local finished = { done = true, cancelled = true }

--- Run every shard of ctx.m to "done" (or "cancelled"): the list of the shards that failed,
-- { {shard = index, msg =, info =}, ... } (empty when none did).
function runner.run(ctx)
  local m = ctx.m
  local work, open, failures = {}, 0, {}
  for _, s in ipairs(m.shards) do
    if not finished[s.status] then
      open = open + 1
      if s.status ~= "running" then work[#work + 1] = s end
    end
  end

  local function failed(s, msg, info)
    failures[#failures + 1] = { shard = s.index, msg = msg, info = info }
    open = open - 1
  end

  -- the next shard a worker may take: one to download first, else the first whose batch the
  -- quota lets be created now
  local function take()
    for i, s in ipairs(work) do
      if s.status == "ended" then return table.remove(work, i) end
    end
    for i, s in ipairs(work) do
      if s.batch_id or s.status == "creating" or ctx.quota:allows(s) then
        s.reserved = true -- counted as active by the quota until its transfer is over
        return table.remove(work, i)
      end
    end
  end

  local function worker()
    while open > 0 do
      local s = take()
      if s then
        local ok, msg, info = steps.transfer(ctx, s)
        s.reserved = nil
        if not ok then
          failed(s, msg, info)
        elseif finished[s.status] then
          open = open - 1
        elseif s.status == "running" then
          s.poll_at = core.now() -- looked at as soon as the poller wakes
        elseif s.status == "uploaded" then
          table.insert(work, s) -- held back by the quota: it waits its turn again
        end
      else
        scheduler.sleep(IDLE)
      end
    end
  end

  local function poller()
    while open > 0 do
      local due, next_at = {}, math.huge
      local now = core.now()
      for _, s in ipairs(m.shards) do
        if s.status == "running" and not s.error_now then
          local at = s.poll_at or 0
          if at <= now then due[#due + 1] = s elseif at < next_at then next_at = at end
        end
      end
      if #due > 0 then
        local looks = {}
        for i, s in ipairs(due) do
          looks[i] = function()
            local ended, msg, info = steps.look(ctx, s)
            if ended == nil then
              s.error_now = true
              failed(s, msg, info)
            elseif ended then
              table.insert(work, 1, s) -- its results to download
            elseif s.status == "uploaded" then
              work[#work + 1] = s -- its batch failed on a quota: created again later
            end
          end
        end
        scheduler.run(looks, { concurrency = ctx.concurrency })
      else
        scheduler.sleep(math.max(IDLE, math.min(next_at - now, MAX_NAP)))
      end
    end
  end

  local tasks = { poller }
  for i = 1, math.max(1, ctx.concurrency) do tasks[i + 1] = worker end
  scheduler.run(tasks, { concurrency = #tasks })
  table.sort(failures, function(a, b) return a.shard < b.shard end)
  return failures
end

return runner
