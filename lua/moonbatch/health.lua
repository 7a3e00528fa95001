--- `:checkhealth moonbatch`: whether moonbatch can work in this Neovim.
-- Checks that moonbatch.core (the C module) loads, and from which file; the libcurl it runs on
-- and that libcurl's TLS backend; that an API key is set for the configured provider (the key is
-- never shown); and whether the stand-in (`moonbatch.standin`, for tests) can start. Works with
-- Neovim 0.7 to 0.9 (`require("health").report_*`) and 0.10 and later (`vim.health.*`).
-- @module moonbatch.health

-- luacheck: read globals vim
local M = {}

-- the report functions of this Neovim: vim.health.start/ok/... (0.10+), else the report_* ones
local function reporter()
  local h = vim.health
  if type(h) == "table" and h.start then
    return { start = h.start, ok = h.ok, info = h.info, warn = h.warn, error = h.error }
  end
  if type(h) ~= "table" or not h.report_start then h = require("health") end
  return { start = h.report_start, ok = h.report_ok, info = h.report_info, warn = h.report_warn,
           error = h.report_error }
end

local function searchpath(name, path)
  if package.searchpath then return package.searchpath(name, path) end
end

-- the file `require(name)` loads: Neovim's runtimepath loader comes before package.path/cpath
local function where(name, ext, path)
  local rel = "lua/" .. name:gsub("%.", "/") .. ext
  local found = vim.api.nvim_get_runtime_file(rel, false)[1]
  return found or searchpath(name, path)
end

-- the clone this file belongs to (for the advice to run make nvim there), or nil
local function clone_dir()
  local source = debug.getinfo(1, "S").source
  local dir = source:match("^@(.*)/lua/moonbatch/health%.lua$")
  return dir
end

local function newest_source(dir)
  local newest, newest_name = 0, nil
  local handle = vim.loop.fs_scandir(dir .. "/csrc")
  while handle do
    local name = vim.loop.fs_scandir_next(handle)
    if not name then break end
    if name:match("%.[ch]$") then
      local st = vim.loop.fs_stat(dir .. "/csrc/" .. name)
      if st and st.mtime.sec > newest then newest, newest_name = st.mtime.sec, name end
    end
  end
  return newest, newest_name
end

local function check_core(r)
  local ok, nvim = pcall(require, "moonbatch.nvim")
  local core_ok, core = pcall(require, "moonbatch.core")
  local dir = clone_dir()
  if not core_ok then
    r.error("moonbatch.core cannot be loaded: " .. tostring(core),
            { dir and ("run `make nvim` in " .. dir .. " (lazy.nvim: build = \"make nvim\", then :Lazy build moonbatch)")
                   or "install the rock for Lua 5.1: luarocks --lua-version=5.1 install moonbatch" })
    return nil
  end
  local file = where("moonbatch.core", ".so", package.cpath) or "a loader of package.loaders"
  local version = core.version or ok and require("moonbatch").version
  r.ok(("moonbatch.core %s loaded from %s"):format(tostring(version), file))
  if dir and file == dir .. "/lua/moonbatch/core.so" then
    local st = vim.loop.fs_stat(file)
    local newest, name = newest_source(dir)
    if st and name and newest > st.mtime.sec then
      r.warn(("%s is older than csrc/%s: it may not match the Lua code"):format(file, name),
             { "run `make nvim` in " .. dir })
    end
  end
  if package.loaded.cjson == vim.json then
    r.ok("lua-cjson: Neovim's built-in vim.json (no lua-cjson for Lua 5.1 on package.cpath)")
  else
    r.ok("lua-cjson " .. tostring(package.loaded.cjson and package.loaded.cjson._VERSION or "")
         .. " from " .. tostring(where("cjson", ".so", package.cpath)))
  end
  if not ok then
    r.error("moonbatch.nvim cannot be loaded: " .. tostring(nvim))
    return core
  end
  r.ok("moonbatch.nvim loaded (Lua layer from " .. tostring(where("moonbatch.nvim", ".lua", package.path)) .. ")")
  return core, nvim
end

local function check_curl(r, core)
  if type(core.curl) ~= "function" then
    r.warn("this moonbatch.core predates core.curl(): " .. tostring(core.curl_version),
           { "rebuild it (make nvim)" })
    return
  end
  local c = core.curl()
  local on = {}
  for name, yes in pairs(c.features or {}) do
    if yes then on[#on + 1] = name end
  end
  table.sort(on)
  r.ok(("libcurl %s (%s), features: %s"):format(c.version, tostring(c.host), table.concat(on, " ")))
  if c.ssl then
    r.ok("TLS backend: " .. c.ssl)
  else
    r.error("libcurl has no TLS backend: every https:// call will fail",
            { "install a libcurl built with TLS (Debian: libcurl4 / libcurl4-openssl-dev) and rebuild" })
  end
end

local function provider_source()
  if vim.g.moonbatch_provider ~= nil and vim.g.moonbatch_provider ~= "" then return "vim.g.moonbatch_provider" end
  local env = os.getenv("MOONBATCH_PROVIDER")
  if env ~= nil and env ~= "" then return "$MOONBATCH_PROVIDER" end
  return "the default"
end

local function set(name)
  local v = os.getenv(name)
  return v ~= nil and v ~= ""
end

local function check_key(r, nvim)
  local name = nvim.provider()
  local known = require("moonbatch").providers
  if not vim.tbl_contains(known, name) then
    r.error(("provider '%s' (from %s) is unknown (known: %s)")
            :format(tostring(name), provider_source(), table.concat(known, ", ")))
    return
  end
  local p = require("moonbatch.providers." .. name)
  local var = set(p.key_env) and p.key_env or set("MOONBATCH_API_KEY") and "MOONBATCH_API_KEY"
  if not var then
    r.warn(("no API key for provider %s (from %s): neither %s nor MOONBATCH_API_KEY is set")
           :format(name, provider_source(), p.key_env),
           { ("export %s before starting Neovim, or pass api_key to moonbatch.nvim.new"):format(p.key_env) })
    return
  end
  -- the key itself is never shown; only whether it looks pasted with a stray space or newline
  if os.getenv(var):find("%s") then
    r.warn(("%s (provider %s) contains white space: the provider will refuse it"):format(var, name))
  else
    r.ok(("API key for provider %s (from %s): %s is set"):format(name, provider_source(), var))
  end
end

local function check_standin(r)
  local ok, standin = pcall(require, "moonbatch.standin")
  if not ok or type(standin) ~= "table" or type(standin.available) ~= "function" then
    local why = "its module has no available()"
    if not ok then
      why = tostring(standin)
      why = why:find("module 'moonbatch.standin' not found", 1, true) and "no module moonbatch.standin"
            or why:match("^[^\n]*")
    end
    r.warn("the stand-in is not installed: " .. why,
           { "only tests need it: a moonbatch that has moonbatch.standin (the rock, or a newer clone)" })
    return
  end
  local yes, info = standin.available()
  if yes then
    r.ok("stand-in available: nginx " .. tostring(info))
  else
    r.warn("stand-in not available: " .. tostring(info), { "only tests need it" })
  end
end

--- Run the checks (`:checkhealth moonbatch` calls this).
function M.check()
  local r = reporter()
  r.start("moonbatch: the C module")
  local core, nvim = check_core(r)
  if not core then return end
  r.start("moonbatch: libcurl")
  check_curl(r, core)
  if nvim then
    r.start("moonbatch: API key")
    check_key(r, nvim)
  end
  r.start("moonbatch: the stand-in (for tests)")
  check_standin(r)
end

return M
