-- bench/job.lua: the data of the `job` benchmark case (bench/job.sh): a batch input of N
-- chat requests (about 170 bytes a line, each with its max_tokens), written once.
--
--   gen PATH N
local mode, path, n = arg[1], arg[2], tonumber(arg[3])
if mode ~= "gen" or not path or not n then
  io.stderr:write("usage: lua bench/job.lua gen PATH N\n")
  os.exit(2)
end
local f = assert(io.open(path .. ".part", "wb"))
local block = {}
for i = 1, n do
  block[#block + 1] = ('{"custom_id":"request-%d","body":{"model":"deepseek-ai/DeepSeek-V3","messages":' ..
    '[{"role":"user","content":"Say something about the number %d"}],"max_tokens":64}}\n'):format(i, i)
  if #block == 10000 or i == n then
    assert(f:write(table.concat(block)))
    block = {}
  end
end
assert(f:close())
assert(os.rename(path .. ".part", path))
