-- spec/support/fixture.lua: the scaffolding many specs share: one stand-in (and a scratch folder)
-- for a describe block, and a client on it whose sleeps are recorded instead of slept.
--
--   local s, dir
--   fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)
--   local function client(opts)
--     waits = {}
--     return fixture.client({ base_url = s.urls.siliconflow, api_key = KEY }, opts, waits)
--   end
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")
local shell = require("spec.support.shell")
local busted = require("busted")

local M = {}

--- Registers, in the describe block it is called from, a setup that starts a stand-in with
-- `opts` (plus, when opts.dir, a temporary folder, and when opts.input, a temporary file of that
-- text ending in opts.suffix), a teardown that stops it and removes both, and (unless
-- opts.reset is false) a before_each that resets it, then configures it with opts.config (a
-- table, or a function returning one) when given. on_start(s, dir, input) receives them once started.
function M.standin(opts, on_start)
  opts = opts or {}
  local start, s, dir, input = {}, nil, nil, nil
  for k, v in pairs(opts) do
    if k ~= "dir" and k ~= "input" and k ~= "suffix" and k ~= "config" and k ~= "reset" then start[k] = v end
  end
  busted.setup(function()
    s = standin.start(start)
    if opts.dir then dir = shell.tmpdir() end
    if opts.input then input = M.temp_file(opts.input, opts.suffix) end
    if on_start then on_start(s, dir, input) end
  end)
  busted.teardown(function()
    if input then os.remove(input) end
    if s then s:stop() end
    if dir then shell.execute("rm -rf " .. shell.quote(dir)) end
  end)
  if opts.reset ~= false then
    busted.before_each(function()
      s:reset()
      local config = opts.config
      if type(config) == "function" then config = config() end
      if config then s:config(config) end
    end)
  end
end

--- moonbatch.new with `defaults`, then `opts` over them; its sleeps are appended to `waits`
-- (not slept) and its jitter is none, unless `defaults` or `opts` say otherwise.
function M.client(defaults, opts, waits)
  local o = { random = function() return 0 end,
              sleep = function(seconds) waits[#waits + 1] = seconds end }
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return moonbatch.new(o)
end

--- Runs fn; returns its first three results and the seconds it took.
function M.timed(fn)
  local t0 = core.now()
  local a, b, c = fn()
  return a, b, c, core.now() - t0
end

--- The entries of stand-in `s`'s log for `path` (and `method`, when given), in order.
function M.requests(s, path, method)
  local out = {}
  for _, e in ipairs(s:log()) do
    if e.path == path and (method == nil or e.method == method) then out[#out + 1] = e end
  end
  return out
end

--- Writes `text` to a fresh temporary path ending in `suffix`; returns the path.
function M.temp_file(text, suffix)
  local path = shell.tmpname(suffix)
  shell.write_file(path, text)
  return path
end

return M
