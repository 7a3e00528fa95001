--- moonbatch.args: misuse raises before any byte is sent, naming the argument.
-- @module moonbatch.args
local args = {}

--- A number rule for `args.check`'s spec, in place of "number": args.number{ above = 0 }
-- (more than), `min`, `max` (inclusive), `integer = true`. NaN and the infinities never pass.
function args.number(rule)
  rule.is_number_rule = true
  return rule
end

-- the rules the options share
args.SECONDS = args.number({ above = 0, max = 1e7 })      -- a duration (115 days at most)
args.TIMEOUT = args.number({ above = 0, max = 2e6 })      -- libcurl's, in milliseconds in a long
args.CONCURRENCY = args.number({ integer = true, min = 1, max = 1024 })
args.PAGE = args.number({ integer = true, min = 1, max = 1e6 }) -- a list's page size
args.COUNT = args.number({ integer = true, min = 1, max = 2 ^ 53 })

local function number_text(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if v == math.floor(v) and math.abs(v) <= 2 ^ 53 then return ("%d"):format(v) end
  return ("%.14g"):format(v)
end

-- "an integer from 1 to 1024", "a number > 0 and <= 10000000"
local function rule_text(rule)
  local parts = {}
  if rule.above then parts[#parts + 1] = "> " .. number_text(rule.above) end
  if rule.min and rule.max and rule.integer then
    return ("an integer from %s to %s"):format(number_text(rule.min), number_text(rule.max))
  end
  if rule.min then parts[#parts + 1] = ">= " .. number_text(rule.min) end
  if rule.max then parts[#parts + 1] = "<= " .. number_text(rule.max) end
  return (rule.integer and "an integer " or "a finite number ") .. table.concat(parts, " and ")
end

--- Does the number `v` pass `rule`? (false for NaN and the infinities)
function args.number_ok(v, rule)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then return false end
  if rule.integer and v ~= math.floor(v) then return false end
  if rule.above and v <= rule.above then return false end
  if rule.min and v < rule.min then return false end
  if rule.max and v > rule.max then return false end
  return true
end

--- Raise (at `level`, default the caller's caller) unless `value` (option `name` of `who`)
-- passes `rule`; a nil `value` passes.
function args.check_number(who, name, value, rule, level)
  if value == nil then return value end
  if type(value) ~= "number" then
    error(("%s: bad option '%s' (number expected, got %s)"):format(who, name, type(value)), level or 3)
  end
  if not args.number_ok(value, rule) then
    error(("%s: bad option '%s' (%s expected, got %s)"):format(who, name, rule_text(rule),
      number_text(value)), level or 3)
  end
  return value
end

--- Check the options table `opts` of `who` against `spec` ({name = "string" | "number" |
-- "table" | "function" | "boolean" | "integer" | args.number{...}}); `required` lists names that
-- must be present. "number" and "integer" refuse NaN and the infinities too.
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
    if type(want) == "table" then
      args.check_number(who, name, value, want, 4)
    elseif (want == "number" or want == "integer") and got == "number"
      and not args.number_ok(value, { integer = want == "integer" }) then
      error(("%s: bad option '%s' (a finite %s expected, got %s)"):format(who, name, want,
        number_text(value)), 3)
    elseif got ~= (want == "integer" and "number" or want) then
      error(("%s: bad option '%s' (%s expected, got %s)"):format(who, name, want, got), 3)
    end
  end
  for _, name in ipairs(required or {}) do
    if opts[name] == nil then
      local want = spec[name]
      error(("%s: missing option '%s' (%s)"):format(who, name,
        type(want) == "table" and rule_text(want) or want), 3)
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
