--- moonbatch.job.steps: a shard's way from its plan to its results on disk: upload, create its
-- batch, wait for it, download its result files. Each step is recorded in the store before the
-- network step that depends on it ("uploading" and "creating" are intents: the step may have
-- reached the server before a crash, so a later run looks for its result there first).
-- @module moonbatch.job.steps
local common = require("moonbatch.job.common")
local fs = require("moonbatch.fs")
local core = require("moonbatch.core")
local objects = require("moonbatch.objects")
local plan = require("moonbatch.job.plan")
local progress = require("moonbatch.progress")
local scheduler = require("moonbatch.scheduler")

local event, same = common.event, common.same
local steps = {}

local LOOKUP_PAGE = 100       -- files or batches per page when looking for an earlier step's result
local LOOKUP_PAGES = 20       -- pages looked through at most
local RECHECK_AFTER = 1       -- seconds before looking a second time (a request may still be landing)
local POLL_FAILURES = 10      -- polls in a row that may fail (after the client's retries) while waiting

-- state ------------------------------------------------------------------------------------

-- has the job been cancelled (by job.cancel, maybe from another process)?
local function cancelled(ctx)
  if not ctx.m.cancelled and fs.exists(ctx.store_path .. ".cancel") then
    ctx.m.cancelled = true
    ctx.store:save_job(ctx.m)
    event(ctx, "cancelling", nil, "the job was cancelled: no new batch will be created")
  end
  return ctx.m.cancelled == true
end

function steps.counts_of(b)
  if b.request_counts then return b.request_counts end
  if type(b.progress) == "number" then return { progress = b.progress } end
end

local function counts_text(c)
  if not c then return "" end
  if c.total then
    return (" %d/%d%s"):format(c.completed or 0, c.total, (c.failed or 0) > 0 and (", %d failed"):format(c.failed) or "")
  end
  if c.progress then return (" %g%%"):format(c.progress) end
  return ""
end

-- looking back ------------------------------------------------------------------------------------

-- the first item of the pages list(after) gives (at most LOOKUP_PAGES of them) that match(item)
-- says is the one: match returns the item, false when no item further on can be it, or nil to
-- go on. false when there is none, or nil, msg, info
local function find_in_pages(list, match)
  local after
  for _ = 1, LOOKUP_PAGES do
    local page, msg, info = list(after)
    if not page then return nil, msg, info end
    for _, item in ipairs(page.data) do
      local found = match(item)
      if found ~= nil then return found end
    end
    if not page.has_more or #page.data == 0 then return false end
    after = page.last_id
  end
  return false
end

-- the file named `name` on the server, false when there is none, or nil, msg, info
local function find_file(client, name)
  return find_in_pages(function(after) return client.files.list({ limit = LOOKUP_PAGE, after = after }) end,
    function(f) if f.filename == name then return f end end)
end

-- the batch made from `s.file_id`, false when there is none, or nil, msg, info. Batches come
-- newest first: one made before the shard's file was uploaded cannot be its batch.
function steps.find_batch(client, s)
  local p = client.provider
  return find_in_pages(function(after)
    return client.batches.list({ limit = p.batches_cursor and LOOKUP_PAGE or nil, after = after })
  end, function(b)
    if b.input_file_id == s.file_id then return b end
    if p.batches_cursor and s.uploaded_at and b.created_at and b.created_at < s.uploaded_at - 600 then
      return false
    end
  end)
end

-- look for what an earlier run's step left on the server, twice: a request cut off by a crash
-- may still be landing when we first look
function steps.look_back(find, ...)
  local found, msg, info = find(...)
  if found == false then
    scheduler.sleep(RECHECK_AFTER)
    found, msg, info = find(...)
  end
  return found, msg, info
end

-- steps ------------------------------------------------------------------------------------

local function cancel_shard(ctx, s)
  s.status = "cancelled"
  ctx.store:save_shard(s)
  event(ctx, "cancelled", s, "cancelled before its batch was created")
  return true
end

local function upload_step(ctx, s)
  if s.file_id or s.status == "cancelled" then return true end
  if cancelled(ctx) then return cancel_shard(ctx, s) end
  local client = ctx.client
  return ctx.gate(function()
    if s.status == "uploading" then
      local f, msg, info = steps.look_back(find_file, client, s.name)
      if f == nil then return nil, msg, info end
      if f then
        s.file_id, s.uploaded_at = f.id, f.created_at
        event(ctx, "uploaded", s, ("found its upload of an earlier run, %s"):format(f.id), { file_id = f.id })
      end
    end
    local path
    if not s.file_id then
      path = plan.write_shard_file(ctx, s)
      s.status = "uploading"
      ctx.store:save_shard(s)
      local f, msg, info = client.files.upload({ file = path, filename = s.name, validate = false })
      if not f then return nil, msg, info end
      s.file_id, s.uploaded_at = f.id, f.created_at
      event(ctx, "uploaded", s, ("uploaded %s (%d requests, %s) as %s"):format(s.name, s.lines,
        progress.bytes(s.length), f.id), { file_id = f.id })
    end
    s.status = "uploaded"
    ctx.store:save_shard(s)
    if path then os.remove(path) end -- the server has it now, and its id is recorded
    return true
  end)
end

local function create_step(ctx, s)
  if s.batch_id or s.status == "cancelled" then return true end
  local client, m = ctx.client, ctx.m
  return ctx.gate(function()
    if s.status == "creating" then
      local b, msg, info = steps.look_back(steps.find_batch, client, s)
      if b == nil then return nil, msg, info end
      if b then
        s.batch_id, s.batch_status = b.id, b.status
        event(ctx, "created", s, ("found its batch of an earlier run, %s (%s)"):format(b.id, b.status),
          { batch_id = b.id })
      end
    end
    if not s.batch_id then
      if cancelled(ctx) then return cancel_shard(ctx, s) end
      s.status = "creating"
      ctx.store:save_shard(s)
      local b, msg, info = client.batches.create({
        input_file_id = s.file_id, endpoint = m.endpoint, completion_window = m.completion_window,
        metadata = m.metadata, replace = m.replace,
        -- the same shard always sends the same key: a create repeated after a crash is the same request
        -- (a shard created again after a quota failure sends its count of resubmits too)
        idempotency_key = ("moonbatch-job-%s-%d-%s%s"):format(m.job_id, s.index, s.checksum,
          (s.resubmits or 0) > 0 and "-" .. s.resubmits or ""),
      })
      if not b then return nil, msg, info end
      s.batch_id, s.batch_status = b.id, b.status
      event(ctx, "created", s, ("created batch %s (%s)"):format(b.id, b.status), { batch_id = b.id })
    end
    s.status = "running"
    ctx.store:save_shard(s)
    return true
  end)
end

-- the batch of `s` is looked at again in `seconds`
local function later(s, seconds)
  s.poll_at = core.now() + seconds
end

--- One look at the batch of running shard `s`: true when it ended (its status "ended", its
-- result file ids recorded), false when it goes on (s.poll_at says when to look again), or
-- nil, msg, info.
function steps.poll(ctx, s)
  local client = ctx.client
  if cancelled(ctx) and not s.cancel_sent then
    local b, _, info = client.batches.cancel(s.batch_id)
    -- a 4xx says the batch cannot be cancelled (it ended): the next poll says how
    if b or (info and info.status and info.status < 500) then
      s.cancel_sent = true
      ctx.store:save_shard(s)
    end
  end
  s.poll_interval = s.poll_interval or ctx.interval
  local b, msg, info = client.batches.get(s.batch_id)
  if not b then
    -- a wait may last hours: an outage the client's retries did not outlast is waited out too
    s.poll_failures = (s.poll_failures or 0) + 1
    if info.retryable and s.poll_failures <= POLL_FAILURES then
      later(s, ctx.max_interval)
      return false
    end
    return nil, msg, info
  end
  s.poll_failures = 0
  -- a result file id may show up a moment after the batch says completed (the provider's polls)
  if b.status == "completed" and not b.output_file_id and not b.error_file_id then
    s.id_tries = (s.id_tries or 0) + 1
    if s.id_tries <= client.provider.late_result_polls then
      later(s, ctx.interval)
      return false
    end
  end
  local counts = steps.counts_of(b)
  local changed = b.status ~= s.batch_status or not same(counts, s.counts)
  s.batch_status, s.counts = b.status, counts
  if objects.final[b.status] then
    if ctx.quota:retry(s, b) then return false end -- failed on a quota: created again later
    ctx.quota:batch_ended()
    s.output_file_id, s.error_file_id = b.output_file_id, b.error_file_id
    s.status = "ended"
    ctx.store:save_shard(s)
    event(ctx, "ended", s, ("batch %s %s%s"):format(b.id, b.status, counts_text(counts)), { batch = b })
    return true
  end
  if changed then
    ctx.store:save_shard(s)
    event(ctx, "progress", s, ("batch %s %s%s"):format(b.id, b.status, counts_text(counts)), { batch = b })
  end
  later(s, s.poll_interval)
  s.poll_interval = math.min(s.poll_interval * 1.5, ctx.max_interval)
  return false
end

local function download_step(ctx, s)
  if s.status ~= "ended" then return true end
  for _, kind in ipairs({ "output", "error" }) do
    local id = s[kind .. "_file_id"]
    if id and not s[kind .. "_file"] then
      local ok, msg, info = ctx.gate(function()
        local name = s.name:gsub("%.jsonl$", "") .. "." .. kind .. ".jsonl"
        local got, msg, info = ctx.client.files.download(id, ctx.work .. "/" .. name)
        if not got then return nil, msg, info end
        s[kind .. "_file"] = name
        ctx.store:save_shard(s)
        return true
      end)
      if not ok then return nil, msg, info end
    end
  end
  s.status = "done"
  ctx.store:save_shard(s)
  event(ctx, "downloaded", s, "results downloaded")
  return true
end

-- record the outcome of a shard's step: true, or nil, msg, info (the message kept as its error)
local function outcome(ctx, s, ok, msg, info)
  if ok then
    if s.error then
      s.error = nil
      ctx.store:save_shard(s)
    end
    return true
  end
  s.error = tostring(msg)
  ctx.store:save_shard(s)
  return nil, msg, info
end

--- The transfers a shard needs now: upload and create its batch (up to "running"), or download
-- its results (from "ended" to "done"). true, or nil, msg, info.
function steps.transfer(ctx, s)
  local ok, msg, info
  if s.status == "ended" then
    ok, msg, info = download_step(ctx, s)
  else
    ok, msg, info = upload_step(ctx, s)
    if ok then ok, msg, info = create_step(ctx, s) end
  end
  return outcome(ctx, s, ok, msg, info)
end

--- One look at a running shard's batch, its failure recorded: as steps.poll.
function steps.look(ctx, s)
  local ended, msg, info = steps.poll(ctx, s)
  if ended == nil then return outcome(ctx, s, nil, msg, info) end
  if ended and s.error then outcome(ctx, s, true) end
  return ended
end

return steps
