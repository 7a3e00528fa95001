--- moonbatch.scheduler: operations as coroutines on one curl multi handle. Inside a task, the
-- client's exchanges and retry waits yield here instead of blocking, so many calls run at once
-- with the same retries, progress and errors as one at a time. Event loops (OpenResty, Neovim)
-- can drive the same yields.
-- @module moonbatch.scheduler
local argcheck = require("moonbatch.args")
local core = require("moonbatch.core")

local scheduler = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

-- tasks at once: a whole number (0 counts as 1: an empty list's); NaN and infinities refused
local CONCURRENCY = argcheck.number({ integer = true, min = 0, max = 2 ^ 31 })

local TOKEN = {}                                 -- marks the yields that are ours
local tasks = setmetatable({}, { __mode = "k" }) -- coroutine -> true while it is a task

--- Is the running code a task of a scheduler (so exchanges should yield)?
-- @treturn boolean
function scheduler.current()
  local co = coroutine.running()
  return co ~= nil and tasks[co] == true
end

-- what the scheduler resumed a task with: "done", results... or "raise", err
local function resumed(kind, ...)
  if kind == "raise" then error((...), 0) end
  return ...
end

local deferred = setmetatable({}, { __mode = "k" }) -- coroutine -> {fn = true} not yet cancelled

--- Inside a task: `fn` runs when the task ends (by returning or raising) or is stopped (the
-- loop closed, scheduler.run ending on another task's error), unless the returned `cancel()`
-- was called first: the clean-up of an operation a stopped task never finishes (a download's
-- temporary file). Outside a task: nil, nothing registered.
function scheduler.defer(fn)
  local co = coroutine.running()
  if not (co and tasks[co]) then return nil end
  local set = deferred[co] or {}
  deferred[co] = set
  set[fn] = true
  return function() set[fn] = nil end
end

-- run the clean-ups still registered by the task of coroutine `co` (each once; one that raises
-- does not stop the others)
local function run_deferred(co)
  local set = deferred[co]
  deferred[co] = nil
  for fn in pairs(set or {}) do pcall(fn) end
end

--- Inside a task: run a core.request options table, yielding until it ends.
-- @tparam table req the options of `core.request`
-- @return what `core.request` returns: `body, res`, or `nil, msg, info`
function scheduler.request(req)
  return resumed(coroutine.yield(TOKEN, "request", req))
end

--- Inside a task: let the other tasks run for `seconds`.
-- @tparam number seconds
function scheduler.sleep(seconds)
  resumed(coroutine.yield(TOKEN, "sleep", seconds))
end

--- A loop of tasks on one curl multi handle, driven step by step: `moonbatch.concurrently`
-- drives it until its tasks end; an event loop (Neovim's, moonbatch.nvim) calls `step` from a
-- timer instead, so nothing ever blocks.
-- opts: { concurrency = 8 } (tasks running at once; more wait their turn).
-- @tparam[opt] table opts
-- @tparam[opt=8] integer opts.concurrency tasks running at once; more wait their turn
-- @return a loop, with the methods `spawn`, `pending`, `step`, `wait`, `close`
function scheduler.new(opts)
  opts = opts or {}
  argcheck.check_number("scheduler.new", "concurrency", opts.concurrency, CONCURRENCY)
  local loop = {
    multi = core.multi(),
    concurrency = math.max(1, opts.concurrency or 8),
    queue = {},   -- tasks not started yet: {fn, on_done}
    waiting = {}, -- transfer handle -> task
    timers = {},  -- {at, task}
    live = 0,     -- tasks started and not ended
    running = {}, -- those tasks (task -> true), for close
  }
  return setmetatable(loop, { __index = scheduler.loop })
end

scheduler.loop = {}
local loop_m = scheduler.loop

--- Queue `fn` as a task. When it ends, `on_done(true, {n = k, ...})` receives its results, or
-- `on_done(false, err)` the error it raised.
-- @tparam function fn called with no arguments, as a task
-- @tparam[opt] function on_done `function(ok, results_or_err)`
function loop_m:spawn(fn, on_done)
  self.queue[#self.queue + 1] = { fn = fn, on_done = on_done or function() end }
end

--- Tasks started and not ended, plus those still queued.
-- @treturn integer
function loop_m:pending()
  return self.live + #self.queue
end

-- end a task, telling its owner
local function finish(self, task, ok, value)
  self.live = self.live - 1
  self.running[task] = nil
  tasks[task.co] = nil
  run_deferred(task.co)
  task.on_done(ok, value)
end

local join

-- resume a task with the given values, then act on what it yields, until it waits or ends
local function resume(self, task, ...)
  local args = pack(...)
  while true do
    local r = pack(coroutine.resume(task.co, unpack(args, 1, args.n)))
    if not r[1] then return finish(self, task, false, r[2]) end
    if coroutine.status(task.co) == "dead" then
      return finish(self, task, true, pack(unpack(r, 2, r.n)))
    end
    if r[2] ~= TOKEN then
      return finish(self, task, false, "moonbatch: a task yielded something the scheduler does not know")
    end
    if r[3] == "request" then
      local handle, msg, info = self.multi:add(r[4])
      if handle then
        self.waiting[handle] = task
        return
      end
      args = pack("done", nil, msg, info)
    elseif r[3] == "join" then
      return join(self, task, r[4], r[5])
    else
      self.timers[#self.timers + 1] = { at = core.now() + r[4], task = task }
      return
    end
  end
end

local function start(self, task)
  task.co = coroutine.create(task.fn)
  tasks[task.co] = true
  self.running[task] = true
  self.live = self.live + 1
  resume(self, task)
end

-- scheduler.run inside a task: run `fns` as child tasks (their own concurrency, outside the
-- loop's queue so a full loop cannot starve them), then resume the parent with their results,
-- or with the first error once the running children have ended
join = function(self, parent, fns, opts)
  local limit = math.max(1, (opts and opts.concurrency) or 8)
  local results, failure, started, running, over = {}, nil, 0, 0, false
  local start_next
  local function child_done(i, ok, value)
    running = running - 1
    if ok then results[i] = value else failure = failure or value end
    if started < #fns and not failure then
      start_next()
    elseif running == 0 and not over then
      over = true
      if failure then resume(self, parent, "raise", failure) else resume(self, parent, "done", results) end
    end
  end
  start_next = function()
    started = started + 1
    running = running + 1
    local i = started
    start(self, { fn = fns[i], on_done = function(ok, value) child_done(i, ok, value) end })
  end
  if #fns == 0 then return resume(self, parent, "done", results) end
  while running < limit and started < #fns and not failure do start_next() end
end

--- One round without blocking: move the transfers' bytes, resume the tasks whose transfer or
-- wait ended, start queued tasks. Returns whether anything moved on, and the seconds until the
-- next wait ends (nil when none; transfers need a step again soon either way).
-- @treturn boolean whether anything moved on
-- @treturn ?number seconds until the next wait ends
function loop_m:step()
  local moved = false
  local multi = self.multi
  if multi:count() > 0 then multi:perform() end
  for _, e in ipairs(multi:info()) do
    local task = self.waiting[e.handle]
    self.waiting[e.handle] = nil
    if e.raised ~= nil then
      resume(self, task, "raise", e.raised)
    else
      resume(self, task, "done", unpack(e, 1, e.n))
    end
    moved = true
  end
  local now, next_at = core.now(), nil
  local timers = self.timers
  for k = #timers, 1, -1 do
    local t = timers[k]
    if t.at <= now then
      table.remove(timers, k)
      resume(self, t.task, "done")
      moved = true
    elseif not next_at or t.at < next_at then
      next_at = t.at
    end
  end
  while self.live < self.concurrency and #self.queue > 0 do
    moved = true
    start(self, table.remove(self.queue, 1))
  end
  return moved, next_at and math.max(0, next_at - core.now()) or nil
end

--- Block until a transfer has news or `seconds` (at most 1) pass; returns how many of the
-- transfers' sockets are ready (wait(0) only looks).
-- @tparam[opt=1] number seconds at most 1
-- @treturn integer sockets ready
function loop_m:wait(seconds)
  seconds = math.max(0, math.min(seconds or 1, 1))
  if self.multi:count() > 0 then return self.multi:wait(seconds) end
  if seconds > 0 then core.sleep(seconds) end
  return 0
end

--- Stop every transfer and forget every task.
function loop_m:close()
  self.multi:close()
  local stopped = self.running
  self.queue, self.waiting, self.timers, self.live, self.running = {}, {}, {}, 0, {}
  for task in pairs(stopped) do
    tasks[task.co] = nil
    run_deferred(task.co)
  end
end

--- Run every function of `fns` as a task, at most `opts.concurrency` (default 8) at once, and
-- return their results in order, each packed ({n = k, ...}). A task that raises makes run raise
-- the same error once the other transfers are stopped. Inside a task, the functions run as
-- child tasks of the same loop and the task waits for them.
-- @tparam table fns a list of functions
-- @tparam[opt] table opts
-- @tparam[opt=8] integer opts.concurrency tasks at once
-- @treturn table each function's results, packed, in order
-- @raise the error a task raised
function scheduler.run(fns, opts)
  -- inside a task (an event loop's, or a nested concurrently): children of the same loop
  argcheck.check_number("moonbatch.concurrently", "concurrency", opts and opts.concurrency, CONCURRENCY)
  if scheduler.current() then return resumed(coroutine.yield(TOKEN, "join", fns, opts)) end
  local loop = scheduler.new(opts)
  local results, failure = {}, nil
  for i, fn in ipairs(fns) do
    loop:spawn(fn, function(ok, value)
      if ok then results[i] = value else failure = failure or value end
    end)
  end
  while loop:pending() > 0 and not failure do
    local moved, pause = loop:step()
    if not moved and loop:pending() > 0 and not failure then loop:wait(pause) end
  end
  loop:close()
  if failure then error(failure, 0) end
  return results
end

return scheduler
