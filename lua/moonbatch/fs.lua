--- moonbatch.fs: the small file and shell helpers the Lua layer shares (the CLI, jobs and their
-- manifests): quoting for sh, a file's existence and size, random names, and replacing a file
-- atomically (written beside it, then renamed over it).
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

--- Whether `path` can be opened for reading.
function fs.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The size of the file at `path` in bytes, or nil when it cannot be read.
function fs.size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
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

--- Rename the finished file `temp` over `path` (atomic within one file system): true, or nil
-- and why not, `temp` removed.
function fs.replace(temp, path)
  local ok, err = os.rename(temp, path)
  if not ok then
    os.remove(temp)
    return nil, err
  end
  return true
end

--- Rename the finished file `temp` over `target`: true, or nil and why not.
-- A stub on this branch: helper "sec-c" replaces it at merge with the durable version (fsync the
-- file, rename, fsync the folder).
function fs.commit(temp, target) return os.rename(temp, target) end

--- Write `text` to `path` atomically: to `temp` (a path beside it) first, then renamed over it,
-- so `path` holds the old content or the new, never part of it. true, or nil and why not
-- (nothing left at `temp`).
function fs.write_atomic(path, temp, text)
  local f, err = io.open(temp, "wb")
  if not f then return nil, err end
  local written, werr = f:write(text)
  local closed, cerr = f:close()
  if not written or not closed then
    os.remove(temp)
    return nil, werr or cerr
  end
  return fs.replace(temp, path)
end

return fs
