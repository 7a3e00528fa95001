--- moonbatch.manifest: the durable record of a large job (moonbatch.job): one JSON file, replaced
-- atomically and durably (written to a temporary file beside it, fsynced, renamed over it, the
-- folder fsynced: fs.commit), so a process killed or a machine losing power at any moment leaves
-- the previous record or the next one, never half of one.
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

local suffix -- this process's temporary-file suffix, made on first use

--- Write `m` to `path` atomically: true, or nil and why not.
function manifest.write(path, m)
  suffix = suffix or fs.random_hex(4)
  return fs.write_atomic(path, path .. ".tmp-" .. suffix, manifest.encode(m))
end

--- Read the manifest at `path`: the table (numbers as integers, no cjson.null), false when there
-- is no file, or nil and a message when the file is not a manifest of ours.
function manifest.read(path)
  local _, why = fs.size(path)
  if why and why:find("not a regular file", 1, true) then return nil, why end -- a FIFO: never opened
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
  return objects.clean(value)
end

return manifest
