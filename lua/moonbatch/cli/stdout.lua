--- moonbatch.cli.stdout: `moonbatch download ID -`, the file's bytes on standard output. They go to
-- a temporary file first, as every download does, and are copied out only once the download is
-- complete and its length checked: a failed download writes nothing to standard output. Steps
-- and progress stay on standard error, so `moonbatch download ID - | jq ...` sees only the file.
-- @module moonbatch.cli.stdout
local stdout = {}

local CHUNK = 64 * 1024

--- Copy the file at `path` to `out` in chunks; true, or nil and the reason.
-- @tparam string path
-- @tparam file out an open file (io.stdout)
function stdout.copy(path, out)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  while true do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    local ok, werr = out:write(chunk)
    if not ok then
      f:close()
      return nil, werr
    end
  end
  f:close()
  local ok, ferr = out:flush()
  if not ok then return nil, ferr end
  return true
end

--- Run the download of `id` for the command's context `ctx` to standard output; the exit status.
-- @param ctx the command's context (moonbatch.cli)
-- @tparam string id the file's id, or a result URL
-- @treturn integer 0
function stdout.download(ctx, id)
  local temp = os.tmpname()
  ctx.stdout_temp = temp -- removed by the command line's clean-up if the download is cut short
  ctx:download_step(id, temp, nil, "standard output")
  local ok, err = stdout.copy(temp, io.stdout)
  os.remove(temp)
  ctx.stdout_temp = nil
  ctx:check(ok, "moonbatch: cannot write to standard output: " .. tostring(err))
  return 0
end

return stdout
