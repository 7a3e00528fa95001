--- moonbatch.job.merge: every shard's result and error files merged into the job's results file
-- and errors file in one streaming pass, each custom_id once: the ids are found by
-- moonbatch.store's C scanner (no line is decoded) and de-duplicated through the store's index
-- of requests (not a table in memory), so memory stays the same whatever the job's size. The
-- merged requests, their outcome and billed usage are committed with the job's summary.
-- @module moonbatch.job.merge
local common = require("moonbatch.job.common")
local fs = require("moonbatch.fs")

local fail, event = common.fail, common.event
local merge = {}

-- the `name` files of every shard merged into a temporary file beside `target`, each custom_id
-- once: its path and the lines kept. `usage` sums the billed tokens of the lines kept
local function merge_into(ctx, target, name, outcome, usage)
  local temp = target .. ".moonbatch-merge.part"
  local out, err = io.open(temp, "wb") -- made empty; each shard's lines are appended
  if not out then fail(("cannot write %s: %s"):format(target, tostring(err)), { kind = "io" }) end
  out:close()
  local ok, kept = pcall(function()
    local n = 0
    for _, s in ipairs(ctx.m.shards) do
      if s[name] then
        local k, prompt, completion = ctx.store:merge_file(ctx.work .. "/" .. s[name], temp, s.index, outcome)
        n = n + k
        usage.input_tokens = usage.input_tokens + prompt
        usage.output_tokens = usage.output_tokens + completion
      end
    end
    return n
  end)
  if not ok then
    os.remove(temp)
    error(kept, 0)
  end
  return temp, kept
end

-- remove the files in `dir` whose names start with `prefix`
local function remove_prefixed(dir, prefix)
  local listing = io.popen("ls -A " .. fs.quote(dir) .. " 2>/dev/null")
  if not listing then return end
  for name in listing:lines() do
    if name:sub(1, #prefix) == prefix then os.remove(dir .. "/" .. name) end
  end
  listing:close()
end

--- Once the job is merged: remove its own files from the work directory (downloads, shard
-- files, cut-off downloads), then the directory if nothing else is in it, and the cancel mark.
function merge.clean_work(ctx)
  remove_prefixed(ctx.work, "moonbatch-" .. ctx.m.job_id .. "-")
  os.remove(ctx.work)
  os.remove(ctx.store_path .. ".cancel")
end

--- Merge the job of ctx (every shard done or cancelled), record its summary, clean up.
function merge.run(ctx)
  local m = ctx.m
  local usage = { input_tokens = 0, output_tokens = 0 }
  local succeeded, failed, results_temp, errors_temp
  -- one transaction: a merge cut off by a crash leaves no request recorded, and starts over
  ctx.store:transaction(function()
    ctx.store:clear_requests()
    results_temp, succeeded = merge_into(ctx, m.results, "output_file", "succeeded", usage)
    local ok, a, b = pcall(merge_into, ctx, m.errors, "error_file", "failed", usage)
    if not ok then
      os.remove(results_temp)
      error(a, 0)
    end
    errors_temp, failed = a, b
    for _, pair in ipairs({ { results_temp, m.results }, { errors_temp, m.errors } }) do
      local done, err = fs.commit(pair[1], pair[2])
      if not done then
        os.remove(pair[1])
        fail(("cannot write %s: %s"):format(pair[2], tostring(err)), { kind = "io" })
      end
    end
    local batches, complete = {}, true
    for _, s in ipairs(m.shards) do
      local status = s.status == "cancelled" and "not_created" or s.batch_status
      batches[status] = (batches[status] or 0) + 1
      if status ~= "completed" then complete = false end
    end
    m.summary = {
      requests = m.input.lines, succeeded = succeeded, failed = failed,
      missing = math.max(0, m.input.lines - succeeded - failed),
      results = m.results, errors = m.errors, shards = #m.shards, batches = batches,
      complete = complete, cancelled = m.cancelled, usage = usage,
    }
    m.state = "done"
    ctx.store:save_job(m)
  end)
  merge.clean_work(ctx)
  event(ctx, "merged", nil, ("merged %d results into %s and %d errors into %s%s"):format(succeeded,
    m.results, failed, m.errors, m.summary.missing > 0 and (" (%d requests have neither)"):format(m.summary.missing) or ""))
end

return merge
