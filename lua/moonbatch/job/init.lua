--- moonbatch.job: a job of any size as one call. The input is validated once, split into shards
-- within the provider's line and byte limits (one streaming pass), each shard uploaded and run as
-- its own batch (a bounded number of transfers at once, every wait overlapping), every result
-- downloaded, and all of it merged into one results file and one errors file, each custom_id
-- once. Each step is recorded in the job's store (moonbatch.job.store, SQLite) before the
-- network step that depends on it, so running the same job again after a crash, at any point,
-- continues where it stopped: no shard is uploaded twice once its file id is recorded, no batch
-- created twice once its id is recorded, and no result is lost or merged twice. One run of a job
-- goes on at a time (an OS lock on the store); a second one is refused, naming the first.
--
-- A shard's status moves pending -> uploading -> uploaded -> creating -> running -> ended ->
-- done, or to cancelled when the job is cancelled before its batch exists. "uploading" and
-- "creating" are intents: the step may have reached the server before a crash, so a later run
-- looks for its result there (a file of the shard's name, a batch of the shard's file) first.
-- @module moonbatch.job
local args = require("moonbatch.args")
local common = require("moonbatch.job.common")
local fs = require("moonbatch.fs")
local manifest = require("moonbatch.manifest")
local merge = require("moonbatch.job.merge")
local objects = require("moonbatch.objects")
local plan = require("moonbatch.job.plan")
local progress = require("moonbatch.progress")
local quota = require("moonbatch.job.quota")
local runner = require("moonbatch.job.runner")
local scheduler = require("moonbatch.scheduler")
local steps = require("moonbatch.job.steps")
local store = require("moonbatch.job.store")

local fail, event = common.fail, common.event
local job = {}

-- paths ------------------------------------------------------------------------------------

--- `path` with `.tag` before its extension: tagged("out.jsonl", "errors") is "out.errors.jsonl",
-- tagged("out", "errors") is "out.errors".
function job.tagged(path, tag)
  local dir, name = path:match("^(.-)([^/]*)$")
  local stem, ext = name:match("^(.+)(%.[^.]+)$")
  if stem then return dir .. stem .. "." .. tag .. ext end
  return path .. "." .. tag
end

--- Where the job whose results go to `results` is recorded: `<results>.job.db` (SQLite).
function job.store_path(results)
  return results .. ".job.db"
end

--- Where older moonbatch versions kept the job of `results`: `<results>.manifest.json` (read
-- once, to import the job into its store).
function job.manifest_path(results)
  return results .. ".manifest.json"
end

-- the store and legacy manifest paths of options { results, manifest, store }
local function paths_of(o)
  local manifest_path = o.manifest or job.manifest_path(o.results)
  local store_path = o.store or (o.manifest and o.manifest:gsub("%.json$", "") .. ".db") or job.store_path(o.results)
  return store_path, manifest_path
end

-- the legacy manifest at `path`: the job, false when there is none, or a failure naming the file
-- and the field that is wrong
local function read_manifest(path)
  local m, err = manifest.read(path)
  if m == nil then fail(err, { kind = "io" }) end
  return m
end

-- the job recorded at store_path (imported from the manifest at manifest_path once, when only
-- that exists): the store (open) and the job, or false when there is neither. `create`: the
-- store may be made (we hold the lock)
local function open_job(store_path, manifest_path, create)
  if fs.exists(store_path) then
    local st = store.open(store_path)
    local ok, m = pcall(st.load, st)
    if not ok then
      st:close()
      error(m, 0)
    end
    return st, m
  end
  local m = read_manifest(manifest_path)
  if not m then return false end
  if not create then return nil, m end -- read as is: importing is a run's work
  local st = store.open(store_path, true)
  st:create(m)
  -- imported: the old file is kept beside, renamed, so that nothing reads it as the live record
  os.rename(manifest_path, manifest_path .. ".imported")
  return st, m
end

-- running ------------------------------------------------------------------------------------

-- f(client, o, ctx), then the store closed and the lock released, on every way out
local function with_store(f, client, o)
  local ctx = {}
  return common.guarded(function()
    if ctx.store then ctx.store:close() end
    if ctx.unlock then ctx.unlock() end
  end, f, client, o, ctx)
end


local run_spec = {
  input = "string", results = "string", errors = "string", manifest = "string", store = "string",
  endpoint = "string", completion_window = "string", metadata = "table", replace = "table",
  concurrency = args.CONCURRENCY, max_lines = args.COUNT, max_bytes = args.COUNT,
  interval = args.SECONDS, max_interval = args.SECONDS, on_event = "function",
  max_active_batches = args.COUNT, max_enqueued_requests = args.COUNT, max_enqueued_tokens = args.COUNT,
}

local function summary_of(ctx)
  local out = {}
  for k, v in pairs(ctx.m.summary) do out[k] = v end
  out.job_id, out.manifest, out.store = ctx.m.job_id, ctx.store_path, ctx.store_path
  return out
end

-- the job of `o`: `ctx` (closed by the caller on every way out) gets its store and lock
local function run(client, o, ctx)
  local store_path, manifest_path = paths_of(o)
  ctx.client, ctx.store_path, ctx.on_event, ctx.input = client, store_path, o.on_event, o.input
  -- the runner's workers are the bound on transfers at once: the gate lets each of them through
  ctx.interval, ctx.concurrency, ctx.gate = o.interval or 2, o.concurrency or 4, function(f) return f() end
  ctx.max_interval = math.max(o.max_interval or 30, ctx.interval)
  ctx.quota = quota.new(ctx, o)
  -- first the lock: a second run of the job stops here, before it reads or touches anything
  ctx.unlock = store.lock(store_path, "moonbatch job run " .. o.input)
  local st, m = open_job(store_path, manifest_path, true)
  if st then
    ctx.store, ctx.m = st, m
    plan.check_resume(client, m, o, store_path)
    if m.state == "done" and fs.exists(m.results) and fs.exists(m.errors) then
      ctx.work = m.work
      merge.clean_work(ctx) -- in case the run that merged was killed before it cleaned up
      event(ctx, "done", nil, ("job %s is done (%s)"):format(m.job_id, store_path))
      return summary_of(ctx)
    end
    local missing = plan.recheck_downloads(m) -- merged files removed since: fetch the results again
    for _, s in ipairs(missing) do st:save_shard(s) end
    local done = 0
    for _, s in ipairs(m.shards) do
      if s.status == "done" or s.status == "cancelled" then done = done + 1 end
    end
    event(ctx, "resumed", nil, ("resuming job %s from %s: %d of %d shards done"):format(m.job_id,
      store_path, done, #m.shards))
  else
    -- a fresh job: refuse options the provider cannot take before anything is sent
    local ok, why = pcall(client.provider.create_options, { input_file_id = "-", endpoint = o.endpoint,
      completion_window = o.completion_window, metadata = o.metadata, replace = o.replace }, client.provider)
    if not ok then
      error("job.run:" .. tostring(why):gsub("^.-batches%.create:", ""), 0)
    end
    m = plan.new(client, o, { results = o.results, errors = o.errors or job.tagged(o.results, "errors"),
                              work = o.results .. ".shards" })
    ctx.m = m
    ctx.store = store.open(store_path, true)
    ctx.store:create(m)
    event(ctx, "planned", nil, ("job %s: %d requests (%s) in %d shard%s of at most %d lines; store %s")
      :format(m.job_id, m.input.lines, progress.bytes(m.input.bytes), #m.shards, #m.shards == 1 and "" or "s",
        m.limits.lines, store_path))
  end
  ctx.work = m.work
  m.state = "running"
  ctx.store:save_job(m) -- (and the input's identity, when a resume found the same bytes under another)
  if not fs.succeeded(os.execute("mkdir -p " .. fs.quote(ctx.work))) then
    fail(("cannot make the work directory %s"):format(ctx.work), { kind = "io" })
  end

  local failures = runner.run(ctx)
  if #failures > 0 then
    local first = failures[1]
    local info = first.info or {}
    info.shard, info.failures = first.shard, failures
    local text = tostring(first.msg):gsub("^moonbatch: ", "")
    fail(("shard %d of %d (%s): %s%s; run the job again to resume it")
      :format(first.shard, #m.shards, m.shards[first.shard].name, text,
        #failures > 1 and (" (and %d more shards failed)"):format(#failures - 1) or ""), info)
  end
  merge.run(ctx)
  return summary_of(ctx)
end

--- Run a job of any size. Running it again with the same results path resumes the job its
-- store records (the input must be the same). While a run goes on, another run of the same job
-- fails at once (`info.kind = "busy"`, `info.pid` the other process).
-- @tparam table client a client (`moonbatch.new`)
-- @tparam table opts
-- @tparam string opts.input the input file (required)
-- @tparam string opts.results where the merged results go (required)
-- @tparam[opt] string opts.errors where failed requests go (default: `results` with .errors
-- before its extension)
-- @tparam[opt] string opts.store the job's record, a SQLite file (default `<results>.job.db`)
-- @tparam[opt] string opts.manifest an older version's JSON manifest to import (default
-- `<results>.manifest.json`)
-- @tparam[opt] string opts.endpoint as `batches.create`'s
-- @tparam[opt] string opts.completion_window as `batches.create`'s
-- @tparam[opt] table opts.metadata as `batches.create`'s
-- @tparam[opt] table opts.replace as `batches.create`'s
-- @tparam[opt=4] integer opts.concurrency uploads, creates and downloads at once
-- @tparam[opt] integer opts.max_lines a shard's most lines (default: the provider's limit)
-- @tparam[opt] integer opts.max_bytes a shard's most bytes (default: the provider's limit)
-- @tparam[opt] number opts.interval as `batches.wait`'s
-- @tparam[opt] number opts.max_interval as `batches.wait`'s
-- @tparam[opt] integer opts.max_active_batches batches created and not ended at most: later
-- shards wait
-- @tparam[opt] integer opts.max_enqueued_requests requests in those batches at most
-- @tparam[opt] integer opts.max_enqueued_tokens input tokens (estimated) in those batches at
-- most; a batch that fails for a quota reason (the provider's `quota_errors`) is created again
-- later, its reason in `job.status`'s `quota_reason`
-- @tparam[opt] function opts.on_event `function(e)`: `e.type`, `e.text`, `e.shard`, ...
-- @treturn table the summary `{requests, succeeded, failed, missing, complete, results, errors,
-- shards, batches, usage, job_id, store}`, or `nil, msg, info`
function job.run(client, opts)
  args.check("job.run", opts, run_spec, { "input", "results" })
  if type(client) ~= "table" or not client.files then
    error("job.run: bad argument #1 'client' (a moonbatch client expected)", 2)
  end
  return with_store(run, client, opts)
end


-- status ------------------------------------------------------------------------------------

local where_spec = { results = "string", manifest = "string", store = "string" }

local function where(who, opts)
  args.check(who, opts, where_spec)
  if not opts or not (opts.results or opts.manifest or opts.store) then
    error(who .. ": missing option 'results' (or 'store')", 3)
  end
  local o = { results = opts.results, manifest = opts.manifest, store = opts.store }
  if not o.results and not o.manifest and o.store then o.manifest = o.store:gsub("%.db$", "") .. ".json" end
  if not o.results then o.results = (o.manifest or ""):gsub("%.manifest%.json$", "") end
  return o
end

-- job.<name>: `f` run with the store of the job that `opts` names (`who` names the entry in
-- its errors, which point at the entry's caller)
local function entry(f, who)
  return function(client, opts)
    return with_store(f, client, where(who, opts))
  end
end

local function report_of(m, path)
  local r = {
    job_id = m.job_id, state = m.state, provider = m.provider, base_url = m.base_url,
    input = m.input.path, requests = m.input.lines, results = m.results, errors = m.errors,
    manifest = path, store = path, cancelled = m.cancelled, summary = m.summary, shards = {}, statuses = {},
    usage = m.summary and m.summary.usage,
  }
  for i, s in ipairs(m.shards) do
    r.shards[i] = {
      index = s.index, name = s.name, lines = s.lines, bytes = s.length, status = s.status,
      file_id = s.file_id, batch_id = s.batch_id, batch_status = s.batch_status, counts = s.counts,
      output_file_id = s.output_file_id, error_file_id = s.error_file_id, error = s.error,
      quota_reason = s.quota_reason, resubmits = s.resubmits,
    }
    r.statuses[s.status] = (r.statuses[s.status] or 0) + 1
  end
  return r
end

-- the job of `o`, read only (a run may hold its lock: the store's readers never wait for it)
local function read_job(o, ctx)
  local store_path, manifest_path = paths_of(o)
  local st, m = open_job(store_path, manifest_path, false)
  if st == false then fail(("no job at %s"):format(store_path), { kind = "io" }) end
  ctx.store = st or nil
  return m, st and store_path or manifest_path
end

local function status(client, o, ctx)
  local m, path = read_job(o, ctx)
  local r = report_of(m, path)
  if client then
    plan.check_client(client, m, path)
    local tasks = {}
    for _, row in ipairs(r.shards) do
      if row.status == "running" then
        tasks[#tasks + 1] = function()
          local b = client.batches.get(row.batch_id)
          if b then row.batch_status, row.counts, row.live = b.status, steps.counts_of(b), true end
        end
      end
    end
    if #tasks > 0 then scheduler.run(tasks, { concurrency = 8 }) end
  end
  return r
end

--- The state of a job from its store; it works while a run of the job goes on. With a client,
-- batches still running are asked for their status now.
-- @tparam ?table client a client, or nil to read the store only
-- @tparam table opts `{results = path}` or `{store = path}`
-- @treturn table `{job_id, state, requests, shards = { {index, lines, status, batch_id,
-- batch_status, counts, quota_reason, ...}, ... }, statuses = {[status] = count}, summary, usage
-- (tokens billed, once merged), ...}`, or `nil, msg, info`
-- @function status
job.status = entry(status, "job.status")

-- cancel ------------------------------------------------------------------------------------

local function cancel(client, o, ctx)
  local store_path, manifest_path = paths_of(o)
  -- with the lock, the shards' records are ours to update; while a run holds it, the mark alone
  -- tells that run, which records what follows itself
  local locked = pcall(function() ctx.unlock = store.lock(store_path, "moonbatch job cancel") end)
  local st, m = open_job(store_path, manifest_path, locked)
  if st == false then fail(("no job at %s"):format(store_path), { kind = "io" }) end
  ctx.store = st or nil
  plan.check_client(client, m, store_path)
  -- first the mark, so that a run going on now creates no batch after we looked
  local f, err = io.open(store_path .. ".cancel", "wb")
  if not f then fail(("cannot write %s.cancel: %s"):format(store_path, tostring(err)), { kind = "io" }) end
  f:close()
  local failures = {}
  local tasks = {}
  for _, s in ipairs(m.shards) do
    tasks[#tasks + 1] = function()
      if not s.batch_id and s.status == "creating" then
        local b = steps.look_back(steps.find_batch, client, s)
        if b then s.batch_id, s.batch_status, s.status = b.id, b.status, "running" end
      end
      if s.batch_id and s.status == "running" then
        local b, msg = client.batches.cancel(s.batch_id)
        if b then
          s.batch_status, s.cancel_sent = b.status, true
        elseif not objects.final[s.batch_status] then
          failures[#failures + 1] = msg
        end
      elseif not s.batch_id then
        s.status = "cancelled"
      end
    end
  end
  scheduler.run(tasks, { concurrency = 8 })
  m.cancelled = true
  if locked and st then
    st:transaction(function()
      st:save_job(m)
      for _, s in ipairs(m.shards) do st:save_shard(s) end
    end)
  end
  local r = report_of(m, store_path)
  r.failures = failures
  return r
end

--- Cancel a job: marks it cancelled (a run going on creates no more batches; a later run only
-- collects what finished) and cancels every batch still running.
-- @tparam table client a client
-- @tparam table opts `{results = path}` or `{store = path}`
-- @treturn table the status report (as `job.status`'s; `failures` lists the cancels that
-- failed), or `nil, msg, info`
-- @function cancel
job.cancel = entry(cancel, "job.cancel")

-- retries ------------------------------------------------------------------------------------

local function retry_failed(client, o, ctx)
  local from = { results = o.from, manifest = o.from_manifest, store = o.from_store }
  if not from.results then from.results = "" end
  local store_path, manifest_path = paths_of(from)
  ctx.unlock = store.lock(store_path, "moonbatch job retry-failed")
  local st, old = open_job(store_path, manifest_path, true)
  if st == false then fail(("no job at %s"):format(store_path), { kind = "io" }) end
  ctx.store = st
  plan.check_client(client, old, store_path)
  if old.state ~= "done" then
    fail(("job %s is not finished (%s): run it to the end first"):format(old.job_id, store_path))
  end
  if not plan.unchanged(old, old.input.path) then
    fail(("%s changed since job %s ran: its requests cannot be found again"):format(old.input.path, old.job_id))
  end
  -- the requests that succeeded: the store's index of them (a job imported from a manifest gets
  -- it from its results file first)
  if st:request_count() == 0 and fs.exists(old.results) then
    st:transaction(function()
      local reader = assert(common.sqlite().reader(old.results))
      while true do
        local line, id = reader:next()
        if not line then break end
        if id then st:add_request(id, 0, "succeeded") end
      end
      reader:close()
    end)
  end
  local input = o.input or job.tagged(o.results, "input")
  local temp = input .. ".moonbatch-retry.part"
  local src, serr = common.sqlite().reader(old.input.path)
  if not src then fail(serr, { kind = "io" }) end
  local out, err = io.open(temp, "wb")
  if not out then
    src:close()
    fail(("cannot write %s: %s"):format(input, tostring(err)), { kind = "io" })
  end
  local count = 0
  while true do
    local line, id = src:next()
    if not line then break end
    if id and st:outcome(id) ~= "succeeded" then
      out:write(line, "\n")
      count = count + 1
    end
  end
  src:close()
  out:close()
  st:close()
  ctx.store = nil
  ctx.unlock()
  ctx.unlock = nil
  if count == 0 then
    os.remove(temp)
    return { requests = 0, succeeded = 0, failed = 0, missing = 0, complete = true, shards = 0 }
  end
  local ok, rerr = fs.commit(temp, input)
  if not ok then
    os.remove(temp)
    fail(("cannot write %s: %s"):format(input, tostring(rerr)), { kind = "io" })
  end
  return run(client, {
    input = input, results = o.results, errors = o.errors, manifest = o.manifest, store = o.store,
    endpoint = old.endpoint, completion_window = old.completion_window, metadata = old.metadata,
    replace = old.replace, max_lines = old.limits.lines, max_bytes = old.limits.bytes,
    concurrency = o.concurrency, interval = o.interval, max_interval = o.max_interval,
    on_event = o.on_event, max_active_batches = o.max_active_batches,
    max_enqueued_requests = o.max_enqueued_requests, max_enqueued_tokens = o.max_enqueued_tokens,
  }, ctx)
end

local retry_spec = {
  from = "string", from_manifest = "string", from_store = "string", results = "string", errors = "string",
  manifest = "string", store = "string", input = "string", concurrency = args.CONCURRENCY,
  interval = args.SECONDS, max_interval = args.SECONDS, on_event = "function",
  max_active_batches = args.COUNT, max_enqueued_requests = args.COUNT, max_enqueued_tokens = args.COUNT,
}

--- Run again the requests of a finished job that failed or got no result, as a new job with the
-- old one's options. Running it again resumes the new job.
-- @tparam table client a client
-- @tparam table opts
-- @tparam string opts.from the old job's results path (or `from_store`, its store)
-- @tparam string opts.results where the new job's results go (required)
-- @tparam[opt] string opts.input where the lines to retry go, copied unchanged from the old
-- job's input (default: `results` with .input before its extension)
-- @param[opt] opts.errors and `store`, `concurrency`, `interval`, `on_event`: as `job.run`'s
-- @treturn table the new job's summary (`requests = 0` when there was nothing to retry), or
-- `nil, msg, info`
function job.retry_failed(client, opts)
  args.check("job.retry_failed", opts, retry_spec, { "results" })
  if not opts.from and not opts.from_manifest and not opts.from_store then
    error("job.retry_failed: missing option 'from' (or 'from_store')", 2)
  end
  return with_store(retry_failed, client, opts)
end

return job
