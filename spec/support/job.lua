-- spec/support/job.lua: the scaffolding of the specs that run `moonbatch job run` through the
-- CLI: an input of N chat requests, the env file that hands the command its key, the batches
-- created as the stand-in's log counts them, and the job a store records.
local cjson = require("cjson")
local job_store = require("moonbatch.job.store")
local shell = require("spec.support.shell")

local M = {}

--- Writes to `path` n chat requests for the siliconflow model, custom_id id_prefix .. i and
-- content content_prefix .. i (i = 1..n); returns path.
function M.input(path, n, id_prefix, content_prefix)
  local parts = {}
  for i = 1, n do
    parts[i] = cjson.encode({ custom_id = id_prefix .. i, body = { model = "deepseek-ai/DeepSeek-V3",
      messages = { { role = "user", content = content_prefix .. i } } } }) .. "\n"
  end
  shell.write_file(path, table.concat(parts))
  return path
end

--- Writes dir/env.sh (mode 600), which exports `key` and stand-in `s`'s siliconflow URL for a
-- `moonbatch` command sourcing it: the key reaches it through its environment, never through an
-- argument list. Returns the file's path.
function M.env_file(dir, s, key)
  local path = dir .. "/env.sh"
  shell.write_file(path, ("export MOONBATCH_API_KEY=%s MOONBATCH_BASE_URL=%s MOONBATCH_PROVIDER=siliconflow " ..
    "MOONBATCH_PROGRESS=never\nunset LUA_PATH LUA_CPATH LUA_INIT\n"):format(key, s.urls.siliconflow))
  shell.execute("chmod 600 " .. shell.quote(path))
  return path
end

--- How many batches stand-in `s`'s log shows created (POST .../batches) since its last reset.
function M.creates(s)
  local n = 0
  for _, e in ipairs(s:log()) do
    if e.method == "POST" and e.path:match("/batches$") then n = n + 1 end
  end
  return n
end

--- The job its store at `path` records (as moonbatch.manifest describes a job).
function M.load_store(path)
  local st = job_store.open(path)
  local m = st:load()
  st:close()
  return m
end

return M
