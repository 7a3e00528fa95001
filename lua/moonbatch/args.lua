--- moonbatch.args: misuse raises before any byte is sent, naming the argument.
-- @module moonbatch.args
local args = {}

--- Check the options table `opts` of `who` against `spec` ({name = "string" | "number" |
-- "table" | "function" | "boolean" | "integer"}); `required` lists names that must be present.
-- Raises at the caller's caller (level 3) for a wrong type, an unknown name or a missing one.
function args.check(who, opts, spec, required)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(("%s: bad argument #1 (table expected, got %s)"):format(who, type(opts)), 3)
  end
  for name, value in pairs(opts) do
    local want = spec[name]
    if want == nil then
      error(("%s: unknown option '%s'"):format(who, tostring(name)), 3)
    end
    local got = type(value)
    local ok = got == want
    if want == "integer" then
      ok = got == "number" and value == math.floor(value)
    end
    if not ok then
      error(("%s: bad option '%s' (%s expected, got %s)"):format(who, name, want, got), 3)
    end
  end
  for _, name in ipairs(required or {}) do
    if opts[name] == nil then
      error(("%s: missing option '%s' (%s)"):format(who, name, spec[name]), 3)
    end
  end
  return opts
end

--- Check a positional string argument.
function args.string(who, n, name, value)
  if type(value) ~= "string" or value == "" then
    error(("%s: bad argument #%d '%s' (non-empty string expected, got %s)")
      :format(who, n, name, type(value)), 3)
  end
  return value
end

return args
