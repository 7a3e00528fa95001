--- moonbatch.job.plan: a job's plan: the input validated once and split into shards within the
-- provider's limits (one streaming pass), each shard's bytes copied to its own file when it is
-- uploaded, and the checks that a resumed job has the same input and options.
-- @module moonbatch.job.plan
local core = require("moonbatch.core")
local common = require("moonbatch.job.common")
local fs = require("moonbatch.fs")
local manifest = require("moonbatch.manifest")
local validate = require("moonbatch.validate")

local fail, same = common.fail, common.same
local plan = {}

local BLOCK = 1024 * 1024     -- bytes read at a time when copying
local DEFAULT_LINES = 50000   -- a shard's lines when the provider states no limit

--- An absolute path (from $PWD) so that a later run from elsewhere finds the same file.
function plan.absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = os.getenv("PWD")
  if not cwd or cwd:sub(1, 1) ~= "/" then return path end
  return (cwd:gsub("/+$", "")) .. "/" .. path:gsub("^%./", "")
end

-- splitting ------------------------------------------------------------------------------------

-- the shards of `path`: { {offset, length, lines}, ... }, each at most max_lines lines and
-- max_bytes bytes, cut at line ends, in one pass (moonbatch.store's C splitter)
local function split(path, max_lines, max_bytes)
  local cuts, msg, info = common.sqlite().split(path, max_lines, max_bytes)
  if not cuts then
    if info and info.kind == "validation" then fail(path .. ": " .. msg) end
    fail(msg, info)
  end
  local shards = {}
  for i, c in ipairs(cuts) do shards[i] = { offset = c[1], length = c[2], lines = c[3] } end
  return shards
end

--- The identity of the file at `path` (device, inode, size, mtime): a file rewritten has another.
function plan.identity(path)
  local id, msg, info = common.sqlite().identity(path)
  if not id then fail(msg, info) end
  return id
end

-- copy the shard's byte range of the input to its own file, and check it is what was planned
function plan.write_shard_file(ctx, s)
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
  -- the input as planned (the same identity), or the copy's bytes as planned (a slower look)
  if left > 0 or (plan.identity(ctx.input) ~= ctx.m.input.identity and core.checksum(path) ~= s.checksum) then
    os.remove(path)
    fail(("shard %d of %d: the bytes %d-%d of %s are not the ones the job planned: the input changed")
      :format(s.index, #ctx.m.shards, s.offset, s.offset + s.length, ctx.input))
  end
  return path
end

-- planning ------------------------------------------------------------------------------------

-- the provider's rules without the per-file limits: sharding is what keeps each file within them
local function job_rules(p)
  return setmetatable({ limits = { custom_id = p.limits and p.limits.custom_id } }, { __index = p })
end

function plan.new(client, o, paths)
  local p = client.provider
  local identity = plan.identity(o.input) -- before the first read: a change while we plan shows
  local report, msg, info = validate(o.input, { endpoint = o.endpoint,
    replace_model = o.replace and o.replace.model }, job_rules(p))
  if not report then common.raise(msg, info) end
  if report.lines == 0 then fail(o.input .. " has no requests") end
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
  if plan.identity(o.input) ~= identity then
    fail(("%s changed while the job was planned"):format(o.input))
  end
  return {
    format = manifest.FORMAT, job_id = id, state = "running", created_at = os.time(),
    provider = p.name, base_url = client.base_url,
    endpoint = o.endpoint or p.endpoint, completion_window = o.completion_window,
    -- a provider whose batch names its model (job_model: Mistral) gets the file's one model
    metadata = o.metadata,
    replace = o.replace or (p.job_model and #report.models == 1 and { model = report.models[1] } or nil),
    limits = { lines = max_lines, bytes = max_bytes ~= math.huge and max_bytes or nil },
    input = { path = plan.absolute(o.input), bytes = report.bytes, lines = report.lines, identity = identity },
    results = plan.absolute(paths.results), errors = plan.absolute(paths.errors), work = plan.absolute(paths.work),
    shards = shards,
  }
end

-- the job at `path` belongs to this client's provider and service
function plan.check_client(client, m, path)
  if m.provider ~= client.provider.name or m.base_url ~= client.base_url then
    fail(("the job of %s runs on %s at %s, not on %s at %s"):format(path, m.provider, m.base_url,
      client.provider.name, client.base_url))
  end
end

--- Is `path` the input job `m` planned? The same file untouched (its identity), else the same
-- bytes (each shard's checksum; a job of an older version: the whole file's).
function plan.unchanged(m, path)
  local id = common.sqlite().identity(path)
  if not id then return false end
  if m.input.identity and id == m.input.identity then return true end
  if fs.size(path) ~= m.input.bytes then return false end
  if m.input.checksum then return core.checksum(path) == m.input.checksum end
  for _, s in ipairs(m.shards) do
    if core.checksum(path, s.offset, s.length) ~= s.checksum then return false end
  end
  m.input.identity = id -- the same bytes: the file's new identity stands for them from now on
  return true
end

-- a resumed job: the same input, the same options
function plan.check_resume(client, m, o, path)
  plan.check_client(client, m, path)
  if not plan.unchanged(m, o.input) then
    fail(("%s changed since job %s started (%s has %d bytes in %d shards of the checksums it records): " ..
      "resume it with the same input, or start another job with another results path")
      :format(o.input, m.job_id, path, m.input.bytes, #m.shards))
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
  if o.errors and plan.absolute(o.errors) ~= m.errors then
    fail(("job %s writes its errors to %s, not %s"):format(m.job_id, m.errors, o.errors))
  end
end

--- Shards whose downloads went missing go back to fetching them: the shards changed.
function plan.recheck_downloads(m)
  local changed = {}
  for _, s in ipairs(m.shards) do
    for _, kind in ipairs({ "output", "error" }) do
      local name = s[kind .. "_file"]
      if name and not fs.exists(m.work .. "/" .. name) then
        s[kind .. "_file"] = nil
        s.status = "ended"
        changed[#changed + 1] = s
      end
    end
  end
  return changed
end

return plan
