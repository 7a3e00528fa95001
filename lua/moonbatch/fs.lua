--- moonbatch.fs: the small file and shell helpers the Lua layer shares (the CLI, jobs and their
-- manifests, moonbatch.standin): quoting for sh, running a command, a file's existence and size
-- (never blocking on a FIFO), its bytes, random names, and replacing a file atomically and durably
-- (written beside it, fsynced, renamed over it, the folder fsynced).
-- @module moonbatch.fs
local fs = {}

--- `s` quoted for sh: 'it'\''s'.
function fs.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Did os.execute's results say the command succeeded? (Lua 5.1 and LuaJIT without 5.2 compat
-- return a number, later ones true or nil, the exit kind and the code.)
function fs.succeeded(a, _, code)
  if type(a) == "number" then return a == 0 end
  return a == true and (code == nil or code == 0)
end

-- moonbatch.core, loaded on first use (the shell helpers need no C)
local function core() return require("moonbatch.core") end

--- Whether `path` is a regular file that can be opened for reading (checked without blocking: a
-- FIFO is not one).
function fs.exists(path)
  return core().regular_file(path) ~= nil
end

--- The size of the regular file at `path` in bytes, or nil, "cannot read 'PATH': REASON" and
-- info (kind "io"). Never blocks: a FIFO, a directory or a device is refused as not a regular
-- file before anything reads it.
function fs.size(path)
  return core().regular_file(path)
end

--- "cannot read 'PATH': REASON", the message of a file that cannot be read, made here for the Lua
-- layer as moonbatch.core makes it for the C side (util_read_message).
-- @tparam string path
-- @param why the reason (io.open's error, or any value)
-- @treturn string
function fs.cannot_read(path, why)
  return ("cannot read '%s': %s"):format(path, tostring(why))
end

--- `bytes` random bytes as hex (from /dev/urandom, else math.random): names no other process
-- picks.
function fs.random_hex(bytes)
  local f = io.open("/dev/urandom", "rb")
  local raw = f and f:read(bytes)
  if f then f:close() end
  local out = {}
  for i = 1, bytes do
    out[i] = ("%02x"):format(raw and #raw == bytes and raw:byte(i) or math.random(0, 255))
  end
  return table.concat(out)
end

--- Commit the finished file `temp` as `path`, durably: `temp` is fsynced, renamed over `path`
-- (atomic within one file system), then the folder is fsynced, so that after a crash or a power
-- loss `path` holds its old content or the whole new one, never an empty file under the new name.
-- Every durable write goes through here. true, or nil, msg, info (kind "io"), `temp` removed.
function fs.commit(temp, path)
  local ok, msg, info = core().durable_rename(temp, path)
  if not ok then
    os.remove(temp)
    return nil, msg, info
  end
  return true
end

--- Write `text` to `path` atomically: to `temp` (a path beside it) first, then renamed over it,
-- so `path` holds the old content or the new, never part of it (fs.commit: durably). true, or
-- nil and why not (nothing left at `temp`).
function fs.write_atomic(path, temp, text)
  local f, err = io.open(temp, "wb")
  if not f then return nil, err end
  local written, werr = f:write(text)
  local flushed, ferr = f:flush()
  local closed, cerr = f:close()
  if not written or not flushed or not closed then
    os.remove(temp)
    return nil, werr or ferr or cerr
  end
  return fs.commit(temp, path)
end

-- everything `f` (an open file or pipe, or nil) holds, `f` closed; nil when `f` is nil
local function read_all(f)
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

--- A command's standard output (sh, through io.popen), or nil when it cannot be started.
function fs.capture(command)
  return read_all(io.popen(command, "r"))
end

--- `s` without leading and trailing white space.
function fs.trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

--- The bytes of the file at `path`, or nil when it cannot be read.
function fs.read(path)
  return read_all((io.open(path, "rb")))
end

--- The pid of this Lua process: /proc/self is whoever opens it (here, we ourselves); without
-- /proc, the parent of the shell that popen starts.
function fs.own_pid()
  local f = io.open("/proc/self/stat", "r")
  if f then
    local pid = f:read("*n")
    f:close()
    if pid then return pid end
  end
  return tonumber(fs.trim(fs.capture("echo $PPID")))
end

--- The lines of the file at `path` (a last line without its newline counts), or nil when it
-- cannot be read.
function fs.count_lines(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n, last = 0, nil
  while true do
    local block = f:read(65536)
    if not block then break end
    local _, k = block:gsub("\n", "")
    n, last = n + k, block
  end
  f:close()
  if last and last:sub(-1) ~= "\n" then n = n + 1 end
  return n
end

--- The last segment of `path` ("a/b.jsonl" -> "b.jsonl").
function fs.basename(path)
  return path:match("([^/]*)/*$")
end

--- The folder of `path` ("a/b" -> "a", "b" -> ".", "/b" -> "/").
function fs.dirname(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir == nil then return "." end
  return dir == "" and "/" or dir
end

return fs
