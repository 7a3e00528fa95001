--- moonbatch.manifest: a job's record as one table, and the JSON file older moonbatch versions
-- kept it in (replaced atomically at every event). Jobs now live in a store (moonbatch.job.store);
-- a JSON manifest is read once, its whole shape checked, to import an older job.
-- @module moonbatch.manifest
local cjson = require("cjson").new() -- our own instance: a caller's settings change nothing here
local fs = require("moonbatch.fs")
local objects = require("moonbatch.objects")

local manifest = {}

--- The value of the manifest's `format` field; another value is not a manifest of ours.
manifest.FORMAT = "moonbatch-job/1"

-- the order fields are written in, for a person reading the file; others follow, sorted
local TOP_ORDER = { "format", "job_id", "state", "created_at", "provider", "base_url", "endpoint",
                    "completion_window", "metadata", "replace", "limits", "input", "results",
                    "errors", "work", "cancelled", "summary", "shards" }
local SHARD_ORDER = { "index", "name", "offset", "length", "lines", "checksum", "status", "file_id",
                      "batch_id", "batch_status", "counts", "output_file_id", "error_file_id",
                      "output_file", "error_file", "error" }

-- one JSON object, the keys of `order` first
local function object(t, order)
  local parts, done = {}, {}
  for _, k in ipairs(order) do
    if t[k] ~= nil then
      parts[#parts + 1] = cjson.encode(k) .. ":" .. cjson.encode(t[k])
      done[k] = true
    end
  end
  local rest = {}
  for k in pairs(t) do
    if not done[k] then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do parts[#parts + 1] = cjson.encode(k) .. ":" .. cjson.encode(t[k]) end
  return parts
end

--- The manifest `m` as JSON text: one top-level field a line, one shard a line.
function manifest.encode(m)
  local shards = {}
  for i, s in ipairs(m.shards or {}) do shards[i] = "    {" .. table.concat(object(s, SHARD_ORDER), ",") .. "}" end
  local top = {}
  for k, v in pairs(m) do
    if k ~= "shards" then top[k] = v end
  end
  local lines = object(top, TOP_ORDER)
  lines[#lines + 1] = '"shards":[\n' .. table.concat(shards, ",\n") .. "\n  ]"
  -- lua-cjson writes "/" as "\/"; a plain "/" reads the same and is easier on the eye (cjson
  -- writes a backslash as "\\", so every "\/" in its output is an escaped slash)
  local text = "{\n  " .. table.concat(lines, ",\n  ") .. "\n}\n"
  return (text:gsub("\\/", "/"))
end

-- the shape of a job's record: field -> kind ("string", "integer", "number", "boolean",
-- "table"; a leading "?" for optional ones)
local TOP_SHAPE = {
  job_id = "string", state = "string", provider = "string", base_url = "string", endpoint = "string",
  completion_window = "?string", metadata = "?table", replace = "?table", limits = "table",
  input = "table", results = "string", errors = "string", work = "string", cancelled = "?boolean",
  summary = "?table", created_at = "?number",
}
local LIMITS_SHAPE = { lines = "integer", bytes = "?integer" }
local INPUT_SHAPE = { path = "string", bytes = "integer", lines = "integer", checksum = "?string", identity = "?string" }
local SHARD_SHAPE = {
  index = "integer", name = "string", offset = "integer", length = "integer", lines = "integer",
  checksum = "string", status = "string", file_id = "?string", uploaded_at = "?number",
  batch_id = "?string", batch_status = "?string", counts = "?table", output_file_id = "?string",
  error_file_id = "?string", output_file = "?string", error_file = "?string", error = "?string",
  cancel_sent = "?boolean", quota_reason = "?string", quota_since = "?number", resubmits = "?integer",
}
local STATES = { running = true, done = true }
--- A shard's statuses, in the order a shard goes through them.
manifest.STATUSES = { "pending", "uploading", "uploaded", "creating", "running", "ended", "done", "cancelled" }
local STATUS_SET = {}
for _, v in ipairs(manifest.STATUSES) do STATUS_SET[v] = true end

local function kind_of(v)
  if math.type then return math.type(v) == "integer" and "integer" or type(v) end
  if type(v) == "number" and v == math.floor(v) then return "integer" end
  return type(v)
end

-- nil, or why `t` (called `name`) has not the shape `shape`
local function shape_problem(t, shape, name)
  local keys = {}
  for k in pairs(shape) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local want = shape[k]
    local optional = want:sub(1, 1) == "?"
    want = optional and want:sub(2) or want
    local v, field = t[k], name and name .. "." .. k or k
    local got = kind_of(v)
    local fits = got == want or (want == "number" and got == "integer")
    if v == nil and not optional then
      return ("field '%s' is missing (%s expected)"):format(field, want == "integer" and "an integer" or "a " .. want)
    elseif v ~= nil and not fits then
      return ("field '%s' is %s, not %s"):format(field, got, want == "integer" and "an integer" or "a " .. want)
    end
  end
end

--- Check the whole shape of a job's record `m`: true, or nil and the first problem, naming the
-- field ("field 'shards[3].lines' is missing (an integer expected)").
function manifest.check(m)
  if type(m) ~= "table" then return nil, "not a table" end
  local why = shape_problem(m, TOP_SHAPE)
    or shape_problem(m.limits, LIMITS_SHAPE, "limits") or shape_problem(m.input, INPUT_SHAPE, "input")
  if why then return nil, why end
  if not STATES[m.state] then return nil, ("field 'state' is %q, not running or done"):format(m.state) end
  if not m.input.checksum and not m.input.identity then
    return nil, "field 'input.identity' is missing (a string expected)"
  end
  if type(m.shards) ~= "table" or #m.shards == 0 then return nil, "field 'shards' is missing or empty" end
  local total = 0
  for i, s in ipairs(m.shards) do
    local name = ("shards[%d]"):format(i)
    if type(s) ~= "table" then return nil, ("field '%s' is %s, not a table"):format(name, type(s)) end
    why = shape_problem(s, SHARD_SHAPE, name)
    if why then return nil, why end
    if s.index ~= i then return nil, ("field '%s.index' is %d, not %d"):format(name, s.index, i) end
    if not STATUS_SET[s.status] then
      return nil, ("field '%s.status' is %q, not a shard status"):format(name, s.status)
    end
    if (s.status == "running" or s.status == "ended") and not s.batch_id then
      return nil, ("field '%s.batch_id' is missing (a %s shard has a batch)"):format(name, s.status)
    end
    total = total + s.lines
  end
  if total ~= m.input.lines then
    return nil, ("the shards hold %d lines, field 'input.lines' says %d"):format(total, m.input.lines)
  end
  return true
end

local suffix -- this process's temporary-file suffix, made on first use

--- Write `m` to `path` atomically: true, or nil and why not.
function manifest.write(path, m)
  suffix = suffix or fs.random_hex(4)
  return fs.write_atomic(path, path .. ".tmp-" .. suffix, manifest.encode(m))
end

--- Read the manifest at `path`: the table (numbers as integers, no cjson.null), false when there
-- is no file, or nil and a message when the file is not a manifest of ours.
function manifest.read(path)
  local _, unreadable = fs.size(path)
  if unreadable and unreadable:find("not a regular file", 1, true) then return nil, unreadable end -- a FIFO: never opened
  local f, err = io.open(path, "rb")
  if not f then
    local probe = io.open(path, "r") -- absent, or there but unreadable?
    if probe then probe:close() end
    if not probe and tostring(err):find("No such file", 1, true) then return false end
    return nil, fs.cannot_read(path, err)
  end
  local text = f:read("*a")
  f:close()
  local ok, value = pcall(cjson.decode, text)
  if not ok or type(value) ~= "table" or value.format ~= manifest.FORMAT or type(value.shards) ~= "table" then
    return nil, ("%s is not a moonbatch job manifest (%s)"):format(path,
      ok and "no format " .. manifest.FORMAT or "not JSON")
  end
  value = objects.clean(value)
  local ok_shape, why = manifest.check(value)
  if not ok_shape then return nil, ("%s is a damaged job manifest: %s"):format(path, why) end
  return value
end

return manifest
