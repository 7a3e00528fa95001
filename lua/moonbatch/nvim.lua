--- moonbatch in Neovim without freezing the editor.
--
-- Operations run as tasks of one `moonbatch.scheduler` loop that a `vim.loop` timer steps: each
-- tick moves the transfers' bytes without blocking (curl's multi interface) and resumes the
-- tasks whose exchange or wait ended. Results reach your callback through `vim.schedule`, so it
-- may call any Neovim API.
--
--    local mb = require("moonbatch.nvim")
--    local client = mb.new({ provider = "siliconflow" })   -- options as moonbatch.new
--    client.files.upload({ file = path }, function(file, err, info)
--      if file then print(file.id) else vim.notify(err, vim.log.levels.ERROR) end
--    end)
--
-- Every `files.*` and `batches.*` operation of the client is there, with a callback as its last
-- argument; `mb.run(fn, callback)` runs a whole sequence of blocking-style moonbatch calls as
-- one task (`callback(ok, ...)`).
-- @module moonbatch.nvim

-- moonbatch.core needs lua-cjson. A Neovim without a Lua 5.1 lua-cjson on its package.cpath
-- (Debian's lua-cjson provides one) still has its own copy built in as vim.json: that one serves.
if not package.loaded.cjson and not package.preload.cjson and vim.json and vim.json.new
   and not pcall(require, "cjson") then
  package.preload.cjson = function() return vim.json end
end

local moonbatch = require("moonbatch")
local scheduler = require("moonbatch.scheduler")

local M = {
  --- Milliseconds between two steps while transfers run (the editor's own work fits between).
  poll_ms = 2,
  --- Milliseconds of stepping at most per tick while bytes keep moving.
  budget_ms = 4,
  --- Tasks running at once; more wait their turn.
  concurrency = 8,
}

local uv = vim.loop
local unpack = table.unpack or unpack
local loop, timer

-- one tick: step the loop (several times while it moves, within the budget), then plan the
-- next tick: soon while transfers run, else when the next wait ends
local function tick()
  local started = uv.hrtime()
  local moved, pause
  repeat
    moved, pause = loop:step()
    -- again at once while a task moved on or a socket is ready, within the budget
  until loop:pending() == 0 or (uv.hrtime() - started) / 1e6 >= M.budget_ms
        or not (moved or loop:wait(0) > 0)
  if loop:pending() == 0 then
    timer:stop()
    return
  end
  local delay = M.poll_ms
  if loop.multi:count() == 0 and not moved then
    delay = math.max(M.poll_ms, math.floor((pause or 1) * 1000))
  end
  timer:start(delay, 0, tick)
end

local function ensure_running()
  if not loop then
    loop = scheduler.new({ concurrency = M.concurrency })
    timer = uv.new_timer()
  end
  if not timer:is_active() then timer:start(0, 0, tick) end
end

--- Run `fn` as a task of the editor's loop: moonbatch calls inside it do not block.
-- @tparam function fn called with no arguments, inside the task
-- @tparam[opt] function callback `callback(true, ...results)` when `fn` returns, or
-- `callback(false, err)` when it raises; run on the main loop (`vim.schedule`)
function M.run(fn, callback)
  ensure_running()
  loop:spawn(fn, function(ok, value)
    if not callback then return end
    vim.schedule(function()
      if ok then callback(true, unpack(value, 1, value.n)) else callback(false, value) end
    end)
  end)
end

-- `op(args...)` as a task, its results for `callback` (which gets them as the blocking call
-- returns them: value, or nil, msg, info); an error raised reaches it as nil, msg
local function as_task(op)
  return function(...)
    local n = select("#", ...)
    local args = { ... }
    local callback = args[n]
    if type(callback) ~= "function" then
      error("moonbatch.nvim: the last argument must be the callback", 2)
    end
    M.run(function() return op(unpack(args, 1, n - 1)) end, function(ok, ...)
      if ok then callback(...) else callback(nil, tostring((...))) end
    end)
  end
end

--- The provider a client uses when `new` is given none: `vim.g.moonbatch_provider`, else
-- `$MOONBATCH_PROVIDER`, else moonbatch's default (`moonbatch.providers.default`). `:checkhealth moonbatch`
-- checks the key of this one.
function M.provider()
  local name = vim.g.moonbatch_provider
  if name == nil or name == "" then name = os.getenv("MOONBATCH_PROVIDER") end
  if name == nil or name == "" then name = require("moonbatch.providers").default end
  return name
end

--- A client whose operations take a callback as their last argument instead of blocking:
-- `client.files.upload(opts, cb)`, `client.batches.wait(id, opts, cb)`, ... Every operation of
-- moonbatch.client's `files` and `batches` is there, with its arguments, and the callback gets
-- what the blocking call returns (value, or `nil, msg, info`; an error raised as `nil, msg`).
-- @tparam[opt] table opts `moonbatch.new`'s options; `provider` defaults to `M.provider()`
-- @treturn table a client `{files = {...}, batches = {...}, close = function, sync = client}`;
-- `sync` is the underlying blocking client, for use inside `M.run`
-- @raise as `moonbatch.new`, and an operation called without a callback last
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("moonbatch.nvim.new: bad argument #1 (table expected, got %s)"):format(type(opts)), 2)
  end
  opts = opts or {}
  if opts.provider == nil then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.provider = M.provider()
    opts = copy
  end
  local sync = moonbatch.new(opts)
  local c = { sync = sync, files = {}, batches = {} }
  for _, group in ipairs({ "files", "batches" }) do
    for name, op in pairs(sync[group]) do
      c[group][name] = as_task(op)
    end
  end
  c.close = sync.close
  return c
end

--- Tasks running or queued (0 when the loop is idle).
-- @treturn integer
function M.pending()
  return loop and loop:pending() or 0
end

return M
