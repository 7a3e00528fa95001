-- spec/hosts/nvim_plugin.lua: run by `nvim --headless --clean` from spec/nvim_plugin_spec.lua with
-- a clone of moonbatch on the runtimepath and nothing on package.path/cpath. Loads moonbatch.nvim,
-- opens :help on moonbatch's tags, runs :checkhealth moonbatch (and the same check through the
-- vim.health.* functions of Neovim 0.10+, faked), uploads a file and creates a batch through
-- moonbatch.nvim against the stand-in, then writes what it saw as JSON to MOONBATCH_PLUGIN_OUT
-- and quits. MOONBATCH_PLUGIN_NO_CJSON=1 first hides the system lua-cjson;
-- MOONBATCH_PLUGIN_G_PROVIDER sets vim.g.moonbatch_provider.
local out_path = os.getenv("MOONBATCH_PLUGIN_OUT")
local result = { help = {} }

local function finish()
  local f = assert(io.open(out_path, "w"))
  f:write(vim.fn.json_encode(result))
  f:close()
  vim.cmd("qall!")
end

local function buffer_lines()
  return vim.api.nvim_buf_get_lines(0, 0, -1, false)
end

if os.getenv("MOONBATCH_PLUGIN_G_PROVIDER") then
  vim.api.nvim_set_var("moonbatch_provider", os.getenv("MOONBATCH_PLUGIN_G_PROVIDER"))
end

if os.getenv("MOONBATCH_PLUGIN_NO_CJSON") == "1" then
  package.cpath = "" -- no lua-cjson (nor anything else) for Lua 5.1 outside the runtimepath
end

-- where moonbatch comes from: the runtimepath, and never package.path/cpath
result.rtp_core = vim.api.nvim_get_runtime_file("lua/moonbatch/core.so", true)
result.rtp_init = vim.api.nvim_get_runtime_file("lua/moonbatch/init.lua", true)
result.cpath_core = package.searchpath("moonbatch.core", package.cpath) or false
result.path_init = package.searchpath("moonbatch", package.path) or false

local ok, mb = pcall(require, "moonbatch.nvim")
result.loaded = ok
if not ok then result.load_error = tostring(mb) end

for _, tag in ipairs({ "moonbatch", "moonbatch-setup", "moonbatch.nvim", "moonbatch-checkhealth",
                       "moonbatch.nvim.new()", "moonbatch-errors", "moonbatch-standin" }) do
  local found, err = pcall(vim.cmd, "help " .. tag)
  result.help[tag] = {
    ok = found, error = not found and tostring(err) or nil,
    buftype = vim.bo.buftype, file = vim.fn.expand("%:t"), line = vim.api.nvim_get_current_line(),
  }
  if found then vim.cmd("helpclose") end
end

-- every |link| of the help file leads somewhere
result.broken_links = {}
local doc = vim.api.nvim_get_runtime_file("doc/moonbatch.txt", false)[1]
if doc and result.help.moonbatch.ok then
  local seen = {}
  for link in table.concat(vim.fn.readfile(doc), "\n"):gmatch("|([^|%s]+)|") do
    if not seen[link] then
      seen[link] = true
      if pcall(vim.cmd, "help " .. link) then vim.cmd("helpclose") else table.insert(result.broken_links, link) end
    end
  end
  result.links = vim.tbl_count(seen)
end

vim.cmd("checkhealth moonbatch")
result.health = buffer_lines()

if not ok then return finish() end

-- the same checks through the vim.health.* functions of Neovim 0.10+ (0.7 has none: a recorder)
local calls = {}
local real = vim.health
local function record(kind) return function(msg) calls[#calls + 1] = kind .. ": " .. msg end end
rawset(vim, "health", { start = record("start"), ok = record("ok"), info = record("info"),
               warn = record("warn"), error = record("error") })
local checked, check_err = pcall(require("moonbatch.health").check)
rawset(vim, "health", real)
result.modern = calls
result.modern_error = not checked and tostring(check_err) or nil

local timeout = vim.loop.new_timer()
timeout:start(30000, 0, vim.schedule_wrap(function()
  result.op_error = "timed out"
  finish()
end))

local made, client = pcall(mb.new, { base_url = os.getenv("MOONBATCH_PLUGIN_URL") })
if not made then
  timeout:stop()
  result.new_error = tostring(client)
  return finish()
end
result.provider = client.sync.provider.name
client.files.upload({ file = os.getenv("MOONBATCH_PLUGIN_FILE") }, function(file, msg, info)
  result.in_main_loop = pcall(vim.api.nvim_get_current_buf)
  if not file then
    result.op_error, result.op_kind = msg, info and info.kind
    return finish()
  end
  result.file = { id = file.id, object = file.object, bytes = file.bytes }
  client.batches.create({ input_file_id = file.id }, function(batch, msg2)
    result.batch = batch and { id = batch.id, input_file_id = batch.input_file_id, status = batch.status }
    result.op_error = msg2
    timeout:stop()
    finish()
  end)
end)
