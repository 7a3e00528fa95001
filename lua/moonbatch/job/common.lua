--- moonbatch.job.common: what the parts of the job layer share: the job step's error (raised
-- inside a job, returned as nil, msg, info by the public functions), events, deep equality.
-- @module moonbatch.job.common
local common = {}

-- the error of a job step: caught by the public functions and returned as nil, msg, info
common.JobError = {}

--- Raise the job error `msg` (info.kind "validation" unless given).
function common.fail(msg, info)
  info = info or {}
  info.kind = info.kind or "validation"
  info.message = info.message or msg
  error(setmetatable({ msg = "moonbatch: job: " .. msg, info = info }, common.JobError), 0)
end

--- Raise an error that already carries moonbatch's prefix (as validate returns it).
function common.raise(msg, info)
  error(setmetatable({ msg = msg, info = info }, common.JobError), 0)
end

--- Run f(...) (which returns one value); a job error becomes nil, msg, info, any other error
-- (Ctrl-C, a bug) goes on. `finally` (when given) runs on every way out.
function common.guarded(finally, f, ...)
  local ok, result = pcall(f, ...)
  if finally then finally() end
  if ok then return result end
  if getmetatable(result) == common.JobError then return nil, result.msg, result.info end
  error(result, 0)
end

--- Tell ctx.on_event of `kind` (about shard `s` when given).
function common.event(ctx, kind, s, text, extra)
  if not ctx.on_event then return end
  local e = { type = kind, text = text, job_id = ctx.m.job_id, shards = #ctx.m.shards }
  if s then
    e.shard = s.index
    e.text = ("shard %d/%d: %s"):format(s.index, #ctx.m.shards, text)
  end
  for k, v in pairs(extra or {}) do e[k] = v end
  ctx.on_event(e)
end

--- moonbatch.store (SQLite), loaded on first use: require("moonbatch") and moonbatch.job load
-- nothing of it until a job runs, so the library works where SQLite is missing (jobs do not).
function common.sqlite()
  local ok, store = pcall(require, "moonbatch.store")
  if not ok then
    common.fail("jobs need moonbatch.store (the job store on SQLite), which cannot be loaded: " .. tostring(store),
      { kind = "io" })
  end
  return store
end

--- Do two values (tables compared deeply) hold the same?
function common.same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not common.same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

return common
