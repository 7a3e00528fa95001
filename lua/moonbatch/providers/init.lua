--- moonbatch.providers: the registry. The built-in providers by name, the OpenAI-compatible
-- services as data (moonbatch.providers.compatible), and providers a user supplies as data: a
-- table given as moonbatch.new{provider = {...}}, or files named by MOONBATCH_PROVIDERS (a
-- list of paths, ':'-separated, each a .json or a .lua data file holding one provider or a list
-- of them). Every provider is checked field by field when it is defined.
--   providers.get(name_or_table, who)  the provider table, or raises naming the bad field
--   providers.names()                  every known name, built-in first
--   providers.register(t)              add a provider given as data (raises when it is bad)
--   providers.default                  the name moonbatch.new uses without one
-- @module moonbatch.providers
local base = require("moonbatch.providers.base")

local M = { default = "siliconflow" }

-- providers with a module of their own (a dialect with functions)
local modules = { "siliconflow", "siliconflow-global", "together", "openai", "azure", "mistral" }

local order = {} -- every name, in the order names() gives
local known = {} -- name -> provider table, or true for a module not loaded yet
local builtin = {}
for _, name in ipairs(modules) do
  order[#order + 1] = name
  known[name] = true
  builtin[name] = true
end
local env_loaded = false
M.list = order

-- the fields a provider given as data may have, with a check of each value: nil when it is
-- fine, else what was expected
local function integer_at_least(n)
  return function(v)
    if type(v) ~= "number" or v ~= math.floor(v) or v < n then return ("an integer >= %d"):format(n) end
  end
end
local function string_like(pattern, what)
  return function(v)
    if type(v) ~= "string" or not v:match(pattern) then return what end
  end
end
local function boolean(v)
  if type(v) ~= "boolean" then return "a boolean" end
end

local limit_fields = { lines = integer_at_least(1), bytes = integer_at_least(1), custom_id = integer_at_least(1) }

local function table_of(fields)
  return function(v, path, complain)
    if type(v) ~= "table" then return "a table" end
    for k, x in pairs(v) do
      local check = fields[k]
      if not check then complain(("unknown field '%s.%s'"):format(path, tostring(k))) end
      local want = check(x)
      if want then complain(("bad field '%s.%s' (%s expected, got %s)"):format(path, k, want, type(x))) end
    end
  end
end

local function windows(v, path, complain)
  if type(v) ~= "table" or #v ~= 2 then return "a list {min_hours, max_hours}" end
  for i = 1, 2 do
    if integer_at_least(1)(v[i]) then complain(("bad field '%s[%d]' (hours, an integer >= 1 expected)"):format(path, i)) end
  end
  if v[1] > v[2] then complain(("bad field '%s' (min %d is above max %d)"):format(path, v[1], v[2])) end
end

local function header_list(v, path, complain)
  if type(v) ~= "table" or #v == 0 then return "a non-empty list of header names" end
  for i, h in ipairs(v) do
    if type(h) ~= "string" or not h:match("^[%w%-]+$") then
      complain(("bad field '%s[%d]' (a header name expected)"):format(path, i))
    end
  end
end

local data_fields = {
  name = string_like("^%w[%w._-]*$", "a name of letters, digits, '.', '_' or '-'"),
  base = string_like("^%w[%w._-]*$", "a built-in provider's name"),
  base_url = string_like("^[Hh][Tt][Tt][Pp][Ss]?://[^%s]+$", "an http(s) URL"),
  key_env = string_like("^[%a_][%w_]*$", "an environment variable's name"),
  endpoint = string_like("^/[^%s]*$", "a path starting with '/'"),
  completion_window = string_like("^%d+[hd]$", "a window such as '24h'"),
  batch_purpose = string_like("^[^%s]+$", "a purpose"),
  api_version = string_like("^[^%s&=]+$", "a version such as '2024-10-21'"),
  require_method_url = boolean,
  one_model = boolean,
  require_metadata = boolean,
  late_result_polls = integer_at_least(0),
  content_404_grace = integer_at_least(0),
  limits = table_of(limit_fields),
  windows = windows,
  request_id_headers = header_list,
}

local function names_text()
  return table.concat(order, ", ")
end

-- a provider table from data `t`; raises naming the bad field (the message alone: the field, not
-- a line of moonbatch, is what is wrong)
local function from_data(t, who)
  local function complain(text)
    error(("%s: bad provider: %s"):format(who, text), 0)
  end
  if type(t) ~= "table" then complain("a table expected, got " .. type(t)) end
  for k, v in pairs(t) do
    local check = type(k) == "string" and data_fields[k]
    if not check then complain(("unknown field '%s'"):format(tostring(k))) end
    local want = check(v, k, complain)
    if want then complain(("bad field '%s' (%s expected, got %s)"):format(k, want, type(v))) end
  end
  if t.name == nil then complain("missing field 'name'") end
  if builtin[t.name] and who ~= "moonbatch.providers.compatible" then
    complain(("name '%s' is a built-in provider's (give your own a name of its own)"):format(t.name))
  end
  if t.base_url == nil then complain(("missing field 'base_url' (of '%s')"):format(t.name)) end
  local parent_name = t.base or "openai"
  if known[parent_name] == nil then
    complain(("bad field 'base' ('%s' is not a provider; known: %s)"):format(parent_name, names_text()))
  end
  local parent = M.get(parent_name, who)
  local p = {}
  for k, v in pairs(t) do
    if k ~= "base" then p[k] = v end
  end
  -- its limits are its own (none known when it states none), never its base's
  p.limits = {}
  for k, v in pairs(t.limits or {}) do p.limits[k] = v end
  return base.define(p, parent)
end

--- Add the provider `t` (data, as moonbatch.new's provider table) under its name; raises naming
-- the bad field, or when the name is a built-in's.
function M.register(t, who)
  who = who or "moonbatch.providers.register"
  local p = from_data(t, who)
  if known[p.name] == nil then order[#order + 1] = p.name end
  known[p.name] = p
  return p
end

local function load_env()
  if env_loaded then return end
  env_loaded = true
  local listed = os.getenv("MOONBATCH_PROVIDERS")
  if listed and listed ~= "" then
    local ok, err = pcall(M.load, listed)
    if not ok then
      env_loaded = false -- said again on the next use
      error(err, 0)
    end
  end
end

--- Every provider's name, built-in first (then MOONBATCH_PROVIDERS's, then registered ones).
function M.names()
  load_env()
  return order
end

--- The provider named `spec`, or a provider from the data table `spec`; raises (at the caller's
-- caller) for an unknown name or a bad table.
function M.get(spec, who)
  who = who or "moonbatch.providers.get"
  if type(spec) == "table" then return from_data(spec, who) end
  load_env()
  local p = known[spec]
  if p == true then
    p = require("moonbatch.providers." .. spec)
    known[spec] = p
  end
  if not p then
    error(("%s: unknown provider '%s' (known: %s)"):format(who, tostring(spec), names_text()), 3)
  end
  return p
end

--- Each key variable the providers read, once, with the providers that read it, in the order
-- of `names()`.
-- @treturn table a list of `{ variable, { name, ... } }`
function M.key_variables()
  local out, by_var = {}, {}
  for _, name in ipairs(M.names()) do
    local var = M.get(name).key_env
    if var then
      if not by_var[var] then
        by_var[var] = {}
        out[#out + 1] = { var, by_var[var] }
      end
      table.insert(by_var[var], name)
    end
  end
  return out
end

-- a data file: JSON, or Lua returning a table, run with nothing in its environment
local function read_data(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, require("moonbatch.fs").cannot_read(path, err) end
  local text = f:read("*a")
  f:close()
  if path:match("%.[Jj][Ss][Oo][Nn]$") then
    local ok, value = pcall(require("cjson").decode, text)
    if not ok then return nil, ("'%s' is not valid JSON (%s)"):format(path, tostring(value)) end
    return require("moonbatch.objects").clean(value)
  end
  local chunk, why
  if setfenv then
    if text:byte(1) == 27 then return nil, ("'%s' is bytecode, not data"):format(path) end
    chunk, why = loadstring(text, "=" .. path)
    if chunk then setfenv(chunk, {}) end
  else
    chunk, why = load(text, "=" .. path, "t", {})
  end
  if not chunk then return nil, ("'%s' is not a Lua data file (%s)"):format(path, tostring(why)) end
  local ok, value = pcall(chunk)
  if not ok then return nil, ("'%s' failed: %s"):format(path, tostring(value)) end
  return value
end

--- Register the providers in the files of `list` (MOONBATCH_PROVIDERS's form); raises naming the
-- file and the bad field.
function M.load(list, who)
  who = who or "MOONBATCH_PROVIDERS"
  for path in list:gmatch("[^:]+") do
    local value, err = read_data(path)
    if value == nil then error(("%s: %s"):format(who, err or ("'%s' returns nothing"):format(path)), 2) end
    if type(value) ~= "table" then
      error(("%s: '%s' holds a %s, not a provider or a list of them"):format(who, path, type(value)), 2)
    end
    local items = value[1] ~= nil and value or { value }
    for i, t in ipairs(items) do
      local ok, e = pcall(M.register, t, ("%s: %s%s"):format(who, path, #items > 1 and ("[%d]"):format(i) or ""))
      if not ok then error(e, 2) end
    end
  end
end

env_loaded = true -- the built-ins first: MOONBATCH_PROVIDERS is read on first use
for _, t in ipairs(require("moonbatch.providers.compatible")) do
  local p = from_data(t, "moonbatch.providers.compatible")
  order[#order + 1] = p.name
  known[p.name] = p
  builtin[p.name] = true
end

env_loaded = false

return M
