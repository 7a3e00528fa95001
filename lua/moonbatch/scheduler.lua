-- moonbatch.scheduler: operations as coroutines on one curl multi handle. Inside a task, the
-- client's exchanges and retry waits yield here instead of blocking, so many calls run at once
-- with the same retries, progress and errors as one at a time. Event loops (OpenResty, Neovim)
-- can drive the same yields.
local core = require("moonbatch.core")

local scheduler = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

local TOKEN = {}                                 -- marks the yields that are ours
local tasks = setmetatable({}, { __mode = "k" }) -- coroutine -> true while it is a task

--- Is the running code a task of a scheduler (so exchanges should yield)?
function scheduler.current()
  local co = coroutine.running()
  return co ~= nil and tasks[co] == true
end

-- what the scheduler resumed a task with: "done", results... or "raise", err
local function resumed(kind, ...)
  if kind == "raise" then error((...), 0) end
  return ...
end

--- Inside a task: run a core.request options table, yielding until it ends.
function scheduler.request(req)
  return resumed(coroutine.yield(TOKEN, "request", req))
end

--- Inside a task: let the other tasks run for `seconds`.
function scheduler.sleep(seconds)
  resumed(coroutine.yield(TOKEN, "sleep", seconds))
end

--- Run every function of `fns` as a task, at most `opts.concurrency` (default 8) at once, and
-- return their results in order, each packed ({n = k, ...}). A task that raises makes run raise
-- the same error once the other transfers are stopped.
function scheduler.run(fns, opts)
  opts = opts or {}
  if scheduler.current() then error("moonbatch: a scheduler cannot run inside one of its tasks", 2) end
  local concurrency = math.max(1, opts.concurrency or 8)
  local multi = core.multi()
  local results, waiting, timers = {}, {}, {}
  local started, live, failure = 0, 0, nil

  -- resume task i with the given values, then act on what it yields, until it waits or ends
  local function step(co, i, ...)
    local args = pack(...)
    while true do
      local r = pack(coroutine.resume(co, unpack(args, 1, args.n)))
      if not r[1] then
        failure = failure or r[2]
        live = live - 1
        return
      end
      if coroutine.status(co) == "dead" then
        results[i] = pack(unpack(r, 2, r.n))
        live = live - 1
        tasks[co] = nil
        return
      end
      if r[2] ~= TOKEN then
        failure = failure or "moonbatch: a task yielded something the scheduler does not know"
        live = live - 1
        return
      end
      if r[3] == "request" then
        local handle, msg, info = multi:add(r[4])
        if handle then
          waiting[handle] = { co = co, i = i }
          return
        end
        args = pack("done", nil, msg, info)
      else
        timers[#timers + 1] = { at = core.now() + r[4], co = co, i = i }
        return
      end
    end
  end

  local function start_tasks()
    while live < concurrency and started < #fns and not failure do
      started = started + 1
      local co = coroutine.create(fns[started])
      tasks[co] = true
      live = live + 1
      step(co, started)
    end
  end

  start_tasks()
  while live > 0 and not failure do
    local moved = false
    if multi:count() > 0 then multi:perform() end
    for _, e in ipairs(multi:info()) do
      local w = waiting[e.handle]
      waiting[e.handle] = nil
      if e.raised ~= nil then
        step(w.co, w.i, "raise", e.raised)
      else
        step(w.co, w.i, "done", unpack(e, 1, e.n))
      end
      moved = true
    end
    local now, next_at = core.now(), nil
    for k = #timers, 1, -1 do
      local t = timers[k]
      if t.at <= now then
        table.remove(timers, k)
        step(t.co, t.i, "done")
        moved = true
      elseif not next_at or t.at < next_at then
        next_at = t.at
      end
    end
    local before = started
    start_tasks()
    moved = moved or started > before
    if live > 0 and not moved then
      local pause = next_at and math.max(0, math.min(next_at - core.now(), 1)) or 1
      if multi:count() > 0 then multi:wait(pause) else core.sleep(pause) end
    end
  end
  multi:close()
  if failure then error(failure, 0) end
  return results
end

return scheduler
