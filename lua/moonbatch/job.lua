--- moonbatch.job: a job of any size as one call. The input is validated once, split into shards
-- within the provider's line and byte limits (one streaming pass), each shard uploaded and run as
-- its own batch (a bounded number of transfers at once, every wait overlapping), every result
-- downloaded, and all of it merged into one results file and one errors file, each custom_id
-- once. Each step is recorded in a manifest (moonbatch.manifest) before the network step that
-- depends on it, so running the same job again after a crash, at any point, continues where it
-- stopped: no shard is uploaded twice once its file id is recorded, no batch created twice once
-- its id is recorded, and no result is lost or merged twice.
--
-- A shard's status moves pending -> uploading -> uploaded -> creating -> running -> ended ->
-- done, or to cancelled when the job is cancelled before its batch exists. "uploading" and
-- "creating" are intents: the step may have reached the server before a crash, so a later run
-- looks for its result there (a file of the shard's name, a batch of the shard's file) first.
-- @module moonbatch.job
local core = require("moonbatch.core")
local cjson = require("cjson").new()
local args = require("moonbatch.args")
local fs = require("moonbatch.fs")
local manifest = require("moonbatch.manifest")
local objects = require("moonbatch.objects")
local progress = require("moonbatch.progress")
local scheduler = require("moonbatch.scheduler")
local validate = require("moonbatch.validate")

local job = {}

local BLOCK = 1024 * 1024     -- bytes read at a time when splitting and copying
local LOOKUP_PAGE = 100       -- files or batches per page when looking for an earlier step's result
local LOOKUP_PAGES = 20       -- pages looked through at most
local RECHECK_AFTER = 1       -- seconds before looking a second time (a request may still be landing)
local GATE_POLL = 0.05        -- seconds between two looks at a full transfer gate
local POLL_FAILURES = 10      -- polls in a row that may fail (after the client's retries) while waiting
local DEFAULT_LINES = 50000   -- a shard's lines when the provider states no limit

-- the error of a job step: caught by the public functions and returned as nil, msg, info
local JobError = {}

local function fail(msg, info)
  info = info or {}
  info.kind = info.kind or "validation"
  info.message = info.message or msg
  error(setmetatable({ msg = "moonbatch: job: " .. msg, info = info }, JobError), 0)
end

-- run f(...) (which returns one value); a JobError becomes nil, msg, info, any other error
-- (Ctrl-C, a bug) goes on
local function guarded(f, ...)
  local ok, result = pcall(f, ...)
  if ok then return result end
  if getmetatable(result) == JobError then return nil, result.msg, result.info end
  error(result, 0)
end

-- paths ------------------------------------------------------------------------------------

-- an absolute path (from $PWD) so that a later run from elsewhere finds the same file
local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = os.getenv("PWD")
  if not cwd or cwd:sub(1, 1) ~= "/" then return path end
  return (cwd:gsub("/+$", "")) .. "/" .. path:gsub("^%./", "")
end

--- `path` with `.tag` before its extension: tagged("out.jsonl", "errors") is "out.errors.jsonl",
-- tagged("out", "errors") is "out.errors".
-- @tparam string path
-- @tparam string tag
-- @treturn string
function job.tagged(path, tag)
  local dir, name = path:match("^(.-)([^/]*)$")
  local stem, ext = name:match("^(.+)(%.[^.]+)$")
  if stem then return dir .. stem .. "." .. tag .. ext end
  return path .. "." .. tag
end

--- Where the manifest of the job whose results go to `results` is: `<results>.manifest.json`.
-- @tparam string results
-- @treturn string
function job.manifest_path(results)
  return results .. ".manifest.json"
end

-- splitting ------------------------------------------------------------------------------------

-- the shards of `path`: { {offset, length, lines}, ... }, each at most max_lines lines and
-- max_bytes bytes, cut at line ends, in one streaming pass
local function split(path, max_lines, max_bytes)
  local f, err = io.open(path, "rb")
  if not f then fail(("cannot read %s: %s"):format(path, tostring(err)), { kind = "io" }) end
  local shards = {}
  local start, size, lines = 0, 0, 0 -- the shard being filled
  local line_bytes, line_number = 0, 0 -- the line being read
  local too_long
  local function line_ends(n)
    line_number = line_number + 1
    if n > max_bytes then
      too_long = too_long or ("line %d is %d bytes, more than a shard may hold (%d)")
        :format(line_number, n, max_bytes)
    end
    if lines > 0 and (lines + 1 > max_lines or size + n > max_bytes) then
      shards[#shards + 1] = { offset = start, length = size, lines = lines }
      start, size, lines = start + size, 0, 0
    end
    size, lines = size + n, lines + 1
  end
  while true do
    local block = f:read(BLOCK)
    if not block then break end
    local at = 1
    while true do
      local newline = block:find("\n", at, true)
      if not newline then
        line_bytes = line_bytes + #block - at + 1
        break
      end
      line_ends(line_bytes + newline - at + 1)
      line_bytes, at = 0, newline + 1
    end
  end
  f:close()
  if line_bytes > 0 then line_ends(line_bytes) end -- a last line without its newline
  if lines > 0 then shards[#shards + 1] = { offset = start, length = size, lines = lines } end
  if too_long then fail(path .. ": " .. too_long) end
  return shards
end

-- copy the shard's byte range of the input to its own file, and check it is what was planned
local function write_shard_file(ctx, s)
  local path = ctx.work .. "/" .. s.name
  local input, err = io.open(ctx.input, "rb")
  if not input then fail(("cannot read %s: %s"):format(ctx.input, tostring(err)), { kind = "io" }) end
  local out, oerr = io.open(path, "wb")
  if not out then
    input:close()
    fail(("cannot write %s: %s"):format(path, tostring(oerr)), { kind = "io" })
  end
  input:seek("set", s.offset)
  local left = s.length
  while left > 0 do
    local piece = input:read(math.min(left, BLOCK))
    if not piece then break end
    out:write(piece)
    left = left - #piece
  end
  input:close()
  local closed, cerr = out:close()
  if not closed then fail(("cannot write %s: %s"):format(path, tostring(cerr)), { kind = "io" }) end
  if left > 0 or core.checksum(path) ~= s.checksum then
    os.remove(path)
    fail(("shard %d of %d: the bytes %d-%d of %s are not the ones the job planned: the input changed")
      :format(s.index, #ctx.m.shards, s.offset, s.offset + s.length, ctx.input))
  end
  return path
end

-- state ------------------------------------------------------------------------------------

local function save(ctx)
  local ok, err = manifest.write(ctx.manifest_path, ctx.m)
  if not ok then
    fail(("cannot write the manifest %s: %s"):format(ctx.manifest_path, tostring(err)), { kind = "io" })
  end
end

local function event(ctx, kind, s, text, extra)
  if not ctx.on_event then return end
  local e = { type = kind, text = text, job_id = ctx.m.job_id, shards = #ctx.m.shards }
  if s then
    e.shard = s.index
    e.text = ("shard %d/%d: %s"):format(s.index, #ctx.m.shards, text)
  end
  for k, v in pairs(extra or {}) do e[k] = v end
  ctx.on_event(e)
end

-- has the job been cancelled (by job.cancel, maybe from another process)?
local function cancelled(ctx)
  if not ctx.m.cancelled and fs.exists(ctx.manifest_path .. ".cancel") then
    ctx.m.cancelled = true
    save(ctx)
    event(ctx, "cancelling", nil, "the job was cancelled: no new batch will be created")
  end
  return ctx.m.cancelled == true
end

-- at most `limit` calls of gate(f) run f at once (inside scheduler tasks); the others wait
local function new_gate(limit)
  local busy = 0
  return function(f)
    while busy >= limit do scheduler.sleep(GATE_POLL) end
    busy = busy + 1
    local a, b, c = f()
    busy = busy - 1
    return a, b, c
  end
end

-- do two values (tables compared deeply) hold the same?
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function counts_of(b)
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
local function find_batch(client, s)
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
local function look_back(find, ...)
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
  save(ctx)
  event(ctx, "cancelled", s, "cancelled before its batch was created")
  return true
end

local function upload_step(ctx, s)
  if s.file_id or s.status == "cancelled" then return true end
  if cancelled(ctx) then return cancel_shard(ctx, s) end
  local client = ctx.client
  return ctx.gate(function()
    if s.status == "uploading" then
      local f, msg, info = look_back(find_file, client, s.name)
      if f == nil then return nil, msg, info end
      if f then
        s.file_id, s.uploaded_at = f.id, f.created_at
        event(ctx, "uploaded", s, ("found its upload of an earlier run, %s"):format(f.id), { file_id = f.id })
      end
    end
    local path
    if not s.file_id then
      path = write_shard_file(ctx, s)
      s.status = "uploading"
      save(ctx)
      local f, msg, info = client.files.upload({ file = path, filename = s.name, validate = false })
      if not f then return nil, msg, info end
      s.file_id, s.uploaded_at = f.id, f.created_at
      event(ctx, "uploaded", s, ("uploaded %s (%d requests, %s) as %s"):format(s.name, s.lines,
        progress.bytes(s.length), f.id), { file_id = f.id })
    end
    s.status = "uploaded"
    save(ctx)
    if path then os.remove(path) end -- the server has it now, and its id is recorded
    return true
  end)
end

local function create_step(ctx, s)
  if s.batch_id or s.status == "cancelled" then return true end
  local client, m = ctx.client, ctx.m
  return ctx.gate(function()
    if s.status == "creating" then
      local b, msg, info = look_back(find_batch, client, s)
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
      save(ctx)
      local b, msg, info = client.batches.create({
        input_file_id = s.file_id, endpoint = m.endpoint, completion_window = m.completion_window,
        metadata = m.metadata, replace = m.replace,
        -- the same shard always sends the same key: a create repeated after a crash is the same request
        idempotency_key = ("moonbatch-job-%s-%d-%s"):format(m.job_id, s.index, s.checksum),
      })
      if not b then return nil, msg, info end
      s.batch_id, s.batch_status = b.id, b.status
      event(ctx, "created", s, ("created batch %s (%s)"):format(b.id, b.status), { batch_id = b.id })
    end
    s.status = "running"
    save(ctx)
    return true
  end)
end

local function wait_step(ctx, s)
  if s.status ~= "running" then return true end
  local client = ctx.client
  local interval = ctx.interval
  while true do
    if cancelled(ctx) and not s.cancel_sent then
      local b, _, info = client.batches.cancel(s.batch_id)
      -- a 4xx says the batch cannot be cancelled (it ended): the next poll says how
      if b or (info and info.status and info.status < 500) then
        s.cancel_sent = true
        save(ctx)
      end
    end
    local b, msg, info = client.batches.get(s.batch_id)
    -- a wait may last hours: an outage the client's retries did not outlast is waited out too
    local failures = 0
    while not b and info.retryable and failures < POLL_FAILURES do
      failures = failures + 1
      scheduler.sleep(ctx.max_interval)
      b, msg, info = client.batches.get(s.batch_id)
    end
    if not b then return nil, msg, info end
    local tries = 0
    -- a result file id may show up a moment after the batch says completed (the provider's polls)
    while b.status == "completed" and not b.output_file_id and not b.error_file_id
        and tries < client.provider.late_result_polls do
      tries = tries + 1
      scheduler.sleep(interval)
      b, msg, info = client.batches.get(s.batch_id)
      if not b then return nil, msg, info end
    end
    local counts = counts_of(b)
    local changed = b.status ~= s.batch_status or not same(counts, s.counts)
    s.batch_status, s.counts = b.status, counts
    if objects.final[b.status] then
      s.output_file_id, s.error_file_id = b.output_file_id, b.error_file_id
      s.status = "ended"
      save(ctx)
      event(ctx, "ended", s, ("batch %s %s%s"):format(b.id, b.status, counts_text(counts)), { batch = b })
      return true
    end
    if changed then
      save(ctx)
      event(ctx, "progress", s, ("batch %s %s%s"):format(b.id, b.status, counts_text(counts)), { batch = b })
    end
    scheduler.sleep(interval)
    interval = math.min(interval * 1.5, ctx.max_interval)
  end
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
        save(ctx)
        return true
      end)
      if not ok then return nil, msg, info end
    end
  end
  s.status = "done"
  save(ctx)
  event(ctx, "downloaded", s, "results downloaded")
  return true
end

-- one shard, from wherever it stands to its results on disk: true, or nil, msg, info
local function shard_task(ctx, s)
  local ok, msg, info = upload_step(ctx, s)
  if ok then ok, msg, info = create_step(ctx, s) end
  if ok then ok, msg, info = wait_step(ctx, s) end
  if ok then ok, msg, info = download_step(ctx, s) end
  if ok then
    if s.error then
      s.error = nil
      save(ctx)
    end
    return true
  end
  s.error = msg
  save(ctx)
  return nil, msg, info
end

-- merging ------------------------------------------------------------------------------------

local function custom_id(line)
  local ok, value = pcall(cjson.decode, line)
  if ok and type(value) == "table" and type(value.custom_id) == "string" then return value.custom_id end
end

-- append the lines of `path` to `out`, each custom_id once (`seen`); lines kept
local function copy_unique(path, out, seen)
  local f, err = io.open(path, "rb")
  if not f then fail(("cannot read %s: %s"):format(path, tostring(err)), { kind = "io" }) end
  local kept = 0
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if line:find("%S") then
      local id = custom_id(line)
      if not id or not seen[id] then
        if id then seen[id] = true end
        out:write(line, "\n")
        kept = kept + 1
      end
    end
  end
  f:close()
  return kept
end

-- write `name` of every shard through copy_unique into `target` (a temporary file, renamed)
local function merge_into(ctx, target, name, seen)
  local temp = target .. ".moonbatch-merge.part"
  local out, err = io.open(temp, "wb")
  if not out then fail(("cannot write %s: %s"):format(target, tostring(err)), { kind = "io" }) end
  local kept = 0
  for _, s in ipairs(ctx.m.shards) do
    if s[name] then kept = kept + copy_unique(ctx.work .. "/" .. s[name], out, seen) end
  end
  local ok, werr = out:close()
  if ok then ok, werr = fs.commit(temp, target) else os.remove(temp) end
  if not ok then fail(("cannot write %s: %s"):format(target, tostring(werr)), { kind = "io" }) end
  return kept
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

-- once the job is merged: remove its own files from the work directory (downloads, shard files,
-- cut-off downloads), then the directory if nothing else is in it, and the manifest's temporary
-- files that killed runs left
local function clean_work(ctx)
  remove_prefixed(ctx.work, "moonbatch-" .. ctx.m.job_id .. "-")
  os.remove(ctx.work)
  local dir, name = ctx.manifest_path:match("^(.*)/([^/]*)$")
  remove_prefixed(dir or ".", (name or ctx.manifest_path) .. ".tmp-")
  os.remove(ctx.manifest_path .. ".cancel")
end

local function merge(ctx)
  local m = ctx.m
  local seen = {}
  local succeeded = merge_into(ctx, m.results, "output_file", seen)
  local failed = merge_into(ctx, m.errors, "error_file", seen)
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
    complete = complete, cancelled = m.cancelled,
  }
  m.state = "done"
  save(ctx)
  clean_work(ctx)
  event(ctx, "merged", nil, ("merged %d results into %s and %d errors into %s%s"):format(succeeded,
    m.results, failed, m.errors, m.summary.missing > 0 and (" (%d requests have neither)"):format(m.summary.missing) or ""))
end

-- planning ------------------------------------------------------------------------------------

-- the provider's rules without the per-file limits: sharding is what keeps each file within them
local function job_rules(p)
  return setmetatable({ limits = { custom_id = p.limits and p.limits.custom_id } }, { __index = p })
end

local function plan(client, o, paths)
  local p = client.provider
  local report, msg, info = validate(o.input, { endpoint = o.endpoint,
    replace_model = o.replace and o.replace.model }, job_rules(p))
  if not report then error(setmetatable({ msg = msg, info = info }, JobError), 0) end
  if report.lines == 0 then fail(o.input .. " has no requests") end
  local checksum, cmsg, cinfo = core.checksum(o.input)
  if not checksum then fail(cmsg, cinfo) end
  local limits = p.limits or {}
  local max_lines = o.max_lines or limits.lines or DEFAULT_LINES
  local max_bytes = o.max_bytes or limits.bytes or math.huge
  local shards = split(o.input, max_lines, max_bytes)
  local id = fs.random_hex(6)
  for i, s in ipairs(shards) do
    s.index = i
    s.name = ("moonbatch-%s-%04d.jsonl"):format(id, i)
    s.checksum = core.checksum(o.input, s.offset, s.length)
    s.status = "pending"
  end
  return {
    format = manifest.FORMAT, job_id = id, state = "running", created_at = os.time(),
    provider = p.name, base_url = client.base_url,
    endpoint = o.endpoint or p.endpoint, completion_window = o.completion_window,
    -- a provider whose batch names its model (job_model: Mistral) gets the file's one model
    metadata = o.metadata, replace = o.replace or (p.job_model and #report.models == 1 and { model = report.models[1] } or nil),
    limits = { lines = max_lines, bytes = max_bytes ~= math.huge and max_bytes or nil },
    input = { path = absolute(o.input), bytes = report.bytes, lines = report.lines, checksum = checksum },
    results = absolute(paths.results), errors = absolute(paths.errors), work = absolute(paths.work),
    shards = shards,
  }
end

-- the manifest at `path`, or a failure saying why not
local function load(path)
  local m, err = manifest.read(path)
  if m == false then fail(("no job manifest at %s"):format(path), { kind = "io" }) end
  if not m then fail(err, { kind = "io" }) end
  return m
end

-- the job at `path` belongs to this client's provider and service
local function check_client(client, m, path)
  if m.provider ~= client.provider.name or m.base_url ~= client.base_url then
    fail(("the job of %s runs on %s at %s, not on %s at %s"):format(path, m.provider, m.base_url,
      client.provider.name, client.base_url))
  end
end

-- a resumed job: the same input, the same options
local function check_resume(client, m, o, path)
  check_client(client, m, path)
  local size = fs.size(o.input)
  local checksum = size == m.input.bytes and core.checksum(o.input)
  if checksum ~= m.input.checksum then
    fail(("%s changed since job %s started (%s has %d bytes, sha256 %s): resume it with the " ..
      "same input, or start another job with another results path")
      :format(o.input, m.job_id, path, m.input.bytes, m.input.checksum))
  end
  local given = {
    endpoint = o.endpoint, completion_window = o.completion_window, metadata = o.metadata,
    replace = o.replace, max_lines = o.max_lines, max_bytes = o.max_bytes,
  }
  local recorded = {
    endpoint = m.endpoint, completion_window = m.completion_window, metadata = m.metadata,
    replace = m.replace, max_lines = m.limits.lines, max_bytes = m.limits.bytes,
  }
  for name, value in pairs(given) do
    if not same(value, recorded[name]) then
      fail(("option '%s' differs from the one job %s was started with (%s)"):format(name, m.job_id, path))
    end
  end
  if o.errors and absolute(o.errors) ~= m.errors then
    fail(("job %s writes its errors to %s, not %s"):format(m.job_id, m.errors, o.errors))
  end
end

-- shards whose downloads went missing go back to fetching them
local function recheck_downloads(m)
  for _, s in ipairs(m.shards) do
    for _, kind in ipairs({ "output", "error" }) do
      local name = s[kind .. "_file"]
      if name and not fs.exists(m.work .. "/" .. name) then
        s[kind .. "_file"] = nil
        s.status = "ended"
      end
    end
  end
end

-- running ------------------------------------------------------------------------------------

local run_spec = {
  input = "string", results = "string", errors = "string", manifest = "string",
  endpoint = "string", completion_window = "string", metadata = "table", replace = "table",
  concurrency = args.CONCURRENCY, max_lines = args.COUNT, max_bytes = args.COUNT,
  interval = args.SECONDS, max_interval = args.SECONDS, on_event = "function",
}

local function summary_of(ctx)
  local out = {}
  for k, v in pairs(ctx.m.summary) do out[k] = v end
  out.job_id, out.manifest = ctx.m.job_id, ctx.manifest_path
  return out
end

local function run(client, o)
  local manifest_path = o.manifest or job.manifest_path(o.results)
  local ctx = {
    client = client, manifest_path = manifest_path, on_event = o.on_event, input = o.input,
    interval = o.interval or 2, gate = new_gate(o.concurrency or 4),
  }
  ctx.max_interval = math.max(o.max_interval or 30, ctx.interval)
  local m, err = manifest.read(manifest_path)
  if m == nil then fail(err, { kind = "io" }) end
  if m then
    ctx.m = m
    check_resume(client, m, o, manifest_path)
    if m.state == "done" and fs.exists(m.results) and fs.exists(m.errors) then
      ctx.work = m.work
      clean_work(ctx) -- in case the run that merged was killed before it cleaned up
      event(ctx, "done", nil, ("job %s is done (%s)"):format(m.job_id, manifest_path))
      return summary_of(ctx)
    end
    recheck_downloads(m) -- merged files removed since: fetch the results again
    local done = 0
    for _, s in ipairs(m.shards) do
      if s.status == "done" or s.status == "cancelled" then done = done + 1 end
    end
    event(ctx, "resumed", nil, ("resuming job %s from %s: %d of %d shards done"):format(m.job_id,
      manifest_path, done, #m.shards))
  else
    -- a fresh job: refuse options the provider cannot take before anything is sent
    local ok, why = pcall(client.provider.create_options, { input_file_id = "-", endpoint = o.endpoint,
      completion_window = o.completion_window, metadata = o.metadata, replace = o.replace }, client.provider)
    if not ok then
      error("job.run:" .. tostring(why):gsub("^.-batches%.create:", ""), 0)
    end
    m = plan(client, o, { results = o.results, errors = o.errors or job.tagged(o.results, "errors"),
                          work = o.results .. ".shards" })
    ctx.m = m
    save(ctx)
    event(ctx, "planned", nil, ("job %s: %d requests (%s) in %d shard%s of at most %d lines; manifest %s")
      :format(m.job_id, m.input.lines, progress.bytes(m.input.bytes), #m.shards, #m.shards == 1 and "" or "s",
        m.limits.lines, manifest_path))
  end
  ctx.work = m.work
  m.state = "running"
  if not fs.succeeded(os.execute("mkdir -p " .. fs.quote(ctx.work))) then
    fail(("cannot make the work directory %s"):format(ctx.work), { kind = "io" })
  end

  local tasks = {}
  for _, s in ipairs(m.shards) do
    tasks[#tasks + 1] = function() return shard_task(ctx, s) end
  end
  local results = scheduler.run(tasks, { concurrency = #tasks })
  local failures = {}
  for i, r in ipairs(results) do
    if not r[1] then failures[#failures + 1] = { shard = i, msg = r[2], info = r[3] } end
  end
  if #failures > 0 then
    save(ctx)
    local first = failures[1]
    local info = first.info or {}
    info.shard, info.failures = first.shard, failures
    local text = tostring(first.msg):gsub("^moonbatch: ", "")
    fail(("shard %d of %d (%s): %s%s; run the job again to resume it")
      :format(first.shard, #m.shards, m.shards[first.shard].name, text,
        #failures > 1 and (" (and %d more shards failed)"):format(#failures - 1) or ""), info)
  end
  merge(ctx)
  return summary_of(ctx)
end

--- Run a job of any size. Running it again with the same results path resumes the job its
-- manifest records (the input must be the same).
-- @tparam table client a client (`moonbatch.new`)
-- @tparam table opts
-- @tparam string opts.input the input file (required)
-- @tparam string opts.results where the merged results go (required)
-- @tparam[opt] string opts.errors where failed requests go (default: `results` with .errors
-- before its extension)
-- @tparam[opt] string opts.manifest the job's record (default `<results>.manifest.json`)
-- @tparam[opt] string opts.endpoint as `batches.create`'s
-- @tparam[opt] string opts.completion_window as `batches.create`'s
-- @tparam[opt] table opts.metadata as `batches.create`'s
-- @tparam[opt] table opts.replace as `batches.create`'s
-- @tparam[opt=4] integer opts.concurrency uploads, creates and downloads at once
-- @tparam[opt] integer opts.max_lines a shard's most lines (default: the provider's limit)
-- @tparam[opt] integer opts.max_bytes a shard's most bytes (default: the provider's limit)
-- @tparam[opt] number opts.interval as `batches.wait`'s
-- @tparam[opt] number opts.max_interval as `batches.wait`'s
-- @tparam[opt] function opts.on_event `function(e)`: `e.type`, `e.text`, `e.shard`, ...
-- @treturn table the summary `{requests, succeeded, failed, missing, complete, results, errors,
-- shards, batches, job_id, manifest}`, or `nil, msg, info`
function job.run(client, opts)
  args.check("job.run", opts, run_spec, { "input", "results" })
  if type(client) ~= "table" or not client.files then
    error("job.run: bad argument #1 'client' (a moonbatch client expected)", 2)
  end
  return guarded(run, client, opts)
end

-- status ------------------------------------------------------------------------------------

local where_spec = { results = "string", manifest = "string" }

local function where(who, opts)
  args.check(who, opts, where_spec)
  if not opts or not (opts.results or opts.manifest) then
    error(who .. ": missing option 'results' (or 'manifest')", 3)
  end
  return opts.manifest or job.manifest_path(opts.results)
end

local function report_of(m, path)
  local r = {
    job_id = m.job_id, state = m.state, provider = m.provider, base_url = m.base_url,
    input = m.input.path, requests = m.input.lines, results = m.results, errors = m.errors,
    manifest = path, cancelled = m.cancelled, summary = m.summary, shards = {}, statuses = {},
  }
  for i, s in ipairs(m.shards) do
    r.shards[i] = {
      index = s.index, name = s.name, lines = s.lines, bytes = s.length, status = s.status,
      file_id = s.file_id, batch_id = s.batch_id, batch_status = s.batch_status, counts = s.counts,
      output_file_id = s.output_file_id, error_file_id = s.error_file_id, error = s.error,
    }
    r.statuses[s.status] = (r.statuses[s.status] or 0) + 1
  end
  return r
end

local function status(client, path)
  local m = load(path)
  local r = report_of(m, path)
  if client then
    check_client(client, m, path)
    local tasks = {}
    for _, row in ipairs(r.shards) do
      if row.status == "running" then
        tasks[#tasks + 1] = function()
          local b = client.batches.get(row.batch_id)
          if b then row.batch_status, row.counts, row.live = b.status, counts_of(b), true end
        end
      end
    end
    if #tasks > 0 then scheduler.run(tasks, { concurrency = 8 }) end
  end
  return r
end

--- The state of a job from its manifest. With a client, batches still running are asked for
-- their status now.
-- @tparam ?table client a client, or nil to read the manifest only
-- @tparam table opts `{results = path}` or `{manifest = path}`
-- @treturn table `{job_id, state, requests, shards = { {index, lines, status, batch_id,
-- batch_status, counts, ...}, ... }, statuses = {[status] = count}, summary, ...}`, or
-- `nil, msg, info`
function job.status(client, opts)
  return guarded(status, client, where("job.status", opts))
end

-- cancel ------------------------------------------------------------------------------------

local function cancel(client, path)
  local m = load(path)
  check_client(client, m, path)
  -- first the mark, so that a run going on now creates no batch after we looked
  local f, err = io.open(path .. ".cancel", "wb")
  if not f then fail(("cannot write %s.cancel: %s"):format(path, tostring(err)), { kind = "io" }) end
  f:close()
  local failures = {}
  local tasks = {}
  for _, s in ipairs(m.shards) do
    tasks[#tasks + 1] = function()
      if not s.batch_id and s.status == "creating" then
        local b = look_back(find_batch, client, s)
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
  local ok, werr = manifest.write(path, m)
  if not ok then fail(("cannot write the manifest %s: %s"):format(path, tostring(werr)), { kind = "io" }) end
  local r = report_of(m, path)
  r.failures = failures
  return r
end

--- Cancel a job: marks it cancelled (a run going on creates no more batches; a later run only
-- collects what finished) and cancels every batch still running.
-- @tparam table client a client
-- @tparam table opts `{results = path}` or `{manifest = path}`
-- @treturn table the status report (as `job.status`'s; `failures` lists the cancels that
-- failed), or `nil, msg, info`
function job.cancel(client, opts)
  return guarded(cancel, client, where("job.cancel", opts))
end

-- retries ------------------------------------------------------------------------------------

local function ids_in(path, set)
  local f = io.open(path, "rb")
  if not f then fail(("cannot read %s"):format(path), { kind = "io" }) end
  for line in f:lines() do
    local id = custom_id(line)
    if id then set[id] = true end
  end
  f:close()
  return set
end

local function retry_failed(client, o)
  local path = o.from_manifest or job.manifest_path(o.from)
  local old = load(path)
  check_client(client, old, path)
  if old.state ~= "done" then
    fail(("job %s is not finished (%s): run it to the end first"):format(old.job_id, path))
  end
  if core.checksum(old.input.path) ~= old.input.checksum then
    fail(("%s changed since job %s ran: its requests cannot be found again"):format(old.input.path, old.job_id))
  end
  -- requests to run again: those in the errors file and those with no result at all
  local succeeded = ids_in(old.results, {})
  local input = o.input or job.tagged(o.results, "input")
  local temp = input .. ".moonbatch-retry.part"
  local src, serr = io.open(old.input.path, "rb")
  if not src then fail(("cannot read %s: %s"):format(old.input.path, tostring(serr)), { kind = "io" }) end
  local out, err = io.open(temp, "wb")
  if not out then
    src:close()
    fail(("cannot write %s: %s"):format(input, tostring(err)), { kind = "io" })
  end
  local count = 0
  for line in src:lines() do
    local id = custom_id(line)
    if id and not succeeded[id] then
      out:write(line, "\n")
      count = count + 1
    end
  end
  src:close()
  out:close()
  if count == 0 then
    os.remove(temp)
    return { requests = 0, succeeded = 0, failed = 0, missing = 0, complete = true, shards = 0 }
  end
  local ok, rerr = fs.commit(temp, input)
  if not ok then fail(("cannot write %s: %s"):format(input, tostring(rerr)), { kind = "io" }) end
  return run(client, {
    input = input, results = o.results, errors = o.errors, manifest = o.manifest,
    endpoint = old.endpoint, completion_window = old.completion_window, metadata = old.metadata,
    replace = old.replace, max_lines = old.limits.lines, max_bytes = old.limits.bytes,
    concurrency = o.concurrency, interval = o.interval, max_interval = o.max_interval,
    on_event = o.on_event,
  })
end

local retry_spec = {
  from = "string", from_manifest = "string", results = "string", errors = "string",
  manifest = "string", input = "string", concurrency = args.CONCURRENCY, interval = args.SECONDS,
  max_interval = args.SECONDS, on_event = "function",
}

--- Run again the requests of a finished job that failed or got no result, as a new job with the
-- old one's options. Running it again resumes the new job.
-- @tparam table client a client
-- @tparam table opts
-- @tparam string opts.from the old job's results path (or `from_manifest`, its manifest)
-- @tparam string opts.results where the new job's results go (required)
-- @tparam[opt] string opts.input where the lines to retry go, copied unchanged from the old
-- job's input (default: `results` with .input before its extension)
-- @param[opt] opts.errors and `manifest`, `concurrency`, `interval`, `on_event`: as `job.run`'s
-- @treturn table the new job's summary (`requests = 0` when there was nothing to retry), or
-- `nil, msg, info`
function job.retry_failed(client, opts)
  args.check("job.retry_failed", opts, retry_spec, { "results" })
  if not opts.from and not opts.from_manifest then
    error("job.retry_failed: missing option 'from' (or 'from_manifest')", 2)
  end
  return guarded(retry_failed, client, opts)
end

return job
