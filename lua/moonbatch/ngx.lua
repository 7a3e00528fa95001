--- moonbatch in OpenResty without blocking the nginx worker.
--
-- Each operation runs on an nginx thread pool (`ngx.run_worker_thread`): the request's Lua
-- coroutine yields while moonbatch's blocking libcurl call runs on a pool thread, in a Lua VM of
-- that thread, so the worker keeps serving every other request meanwhile. The results are the
-- same canonical objects and `nil, msg, info` errors as the plain client's; a bad argument
-- raises, as it does there.
--
--    -- nginx.conf (main context):  thread_pool moonbatch threads=4;  env SILICONFLOW_API_KEY;
--    local mb = require("moonbatch.ngx")
--    local client = mb.new({ provider = "siliconflow" })   -- options as moonbatch.new
--    local file, err, info = client.files.upload({ file = "/data/requests.jsonl" })
--
-- Options and arguments cross to the pool thread as data: functions (on_progress, clock, sleep)
-- cannot, and the iterators `files.each`/`batches.each` are not offered (use `list` with
-- `after`). Each pool thread keeps one client per set of options, so its connection is reused.
-- @module moonbatch.ngx
local M = {
  --- The thread pool operations run on (nginx's `thread_pool NAME threads=N;`).
  pool = "moonbatch",
}

local OPERATIONS = {
  files = { "upload", "list", "get", "delete", "download", "upload_many" },
  batches = { "create", "get", "list", "cancel", "wait" },
}

local unpack = table.unpack or unpack

-- refuse what cannot cross to a pool thread, naming where it is
local function check_data(who, what, v, depth)
  local t = type(v)
  if t == "function" or t == "thread" or t == "userdata" then
    error(("%s: %s is a %s, which cannot cross to the thread pool"):format(who, what, t), 4)
  end
  if t == "table" then
    if depth > 16 then error(("%s: %s is nested too deep"):format(who, what), 4) end
    for k, x in pairs(v) do check_data(who, what .. "." .. tostring(k), x, depth + 1) end
  end
end

-- a stable text for a table of options (keys sorted), to find a thread's cached client
local function key_of(v)
  if type(v) ~= "table" then return type(v) .. ":" .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[i] = k .. "=" .. key_of(x)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- A client whose operations run on the thread pool. Call them from a context that can yield
-- (`content_by_lua*`, `access_by_lua*`, `rewrite_by_lua*`). Each operation takes the
-- arguments, and returns the results, of the plain client's (moonbatch.client): `files.upload`,
-- `files.list`, `files.get`, `files.delete`, `files.download`, `files.upload_many`,
-- `batches.create`, `batches.get`, `batches.list`, `batches.cancel`, `batches.wait`; an
-- argument that is not data (a function, a userdata) raises.
-- @tparam[opt] table opts `moonbatch.new`'s options, as data (no functions), and:
-- @tparam[opt] string opts.pool the thread pool to run on (default `M.pool`)
-- @treturn table a client `{files = {...}, batches = {...}, pool = name}`
-- @raise for options that `moonbatch.new` refuses, or that are not data
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("moonbatch.ngx.new: options must be a table", 2) end
  local pool = opts.pool or M.pool
  local copy = {}
  for k, v in pairs(opts) do
    if k ~= "pool" then
      check_data("moonbatch.ngx.new", "option '" .. tostring(k) .. "'", v, 0)
      copy[k] = v
    end
  end
  -- build one here too: bad options raise now, in the caller, as moonbatch.new's do
  require("moonbatch").new(copy).close()
  local c = { files = {}, batches = {}, pool = pool }
  for group, names in pairs(OPERATIONS) do
    for _, name in ipairs(names) do
      local who = ("moonbatch.ngx: %s.%s"):format(group, name)
      c[group][name] = function(...)
        for i = 1, select("#", ...) do check_data(who, "argument #" .. i, (select(i, ...)), 0) end
        local r = { n = 0 }
        local function keep(...) r = { n = select("#", ...), ... } end
        keep(ngx.run_worker_thread(pool, "moonbatch.ngx", "in_thread", copy, group, name, ...))
        if not r[1] then error(("%s: %s"):format(who, tostring(r[2])), 2) end
        return unpack(r, 2, r.n)
      end
    end
  end
  return c
end

local clients = {} -- in a pool thread's Lua VM: options' key -> client

--- Runs in a pool thread (not for direct use): the operation on this thread's client.
function M.in_thread(opts, group, name, ...)
  local key = key_of(opts)
  local c = clients[key]
  if not c then
    c = require("moonbatch").new(opts)
    clients[key] = c
  end
  return c[group][name](...)
end

return M
