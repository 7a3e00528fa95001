-- spec/support/inputs.lua: batch input files the specs share.
local inputs = {}

--- Write a valid SiliconFlow batch file of `mib` MiB to `path`: 64 KiB lines (its 5,000-line
-- limit allows 312 MiB).
function inputs.batch_file(path, mib)
  local f = assert(io.open(path, "wb"))
  local pad = ("x"):rep(64 * 1024 - 120)
  for i = 1, mib * 16 do
    local line = ('{"custom_id":"r-%06d","body":{"model":"m","messages":[{"role":"user","content":"%s"}]}}'):format(i, pad)
    f:write(line, (" "):rep(64 * 1024 - #line - 1), "\n")
  end
  f:close()
end

return inputs
