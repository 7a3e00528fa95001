--- moonbatch.cli.failure: how a command of moonbatch.cli ends: the exit statuses, the Failure it
-- raises (its exit status and the message for standard error), usage errors, and a library call's
-- raised misuse turned into a usage failure.
-- @module moonbatch.cli.failure
local failure = {}

failure.EXIT_OK, failure.EXIT_FAILED, failure.EXIT_USAGE, failure.EXIT_INTERRUPTED = 0, 1, 2, 130
local EXIT_FAILED, EXIT_USAGE = failure.EXIT_FAILED, failure.EXIT_USAGE

-- a failure that ends the command: `code` is the exit status, `msg` goes to standard error
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.msg or "moonbatch: failed" end
failure.Failure = Failure

--- End the command: `msg` on standard error (none when nil), exit status `code` (default 1);
-- `extra`'s fields go into the Failure (info, shown).
function failure.fail(msg, code, extra)
  local f = setmetatable({ msg = msg, code = code or EXIT_FAILED }, Failure)
  for k, v in pairs(extra or {}) do f[k] = v end
  error(f, 0)
end
local fail = failure.fail

--- End the command with a usage error (exit 2) that points at `command`'s help.
function failure.usage_error(msg, command)
  local see = command and ("moonbatch " .. command .. " --help") or "moonbatch --help"
  fail(("moonbatch%s: %s (see %s)"):format(command and (" " .. command) or "", msg, see), EXIT_USAGE)
end

--- Is `err` raised on purpose (a Failure, or Ctrl-C's "interrupted!"), to pass on as it is?
function failure.passes(err)
  return getmetatable(err) == Failure or (type(err) == "string" and err:find("interrupted!", 1, true) ~= nil)
end

--- The value of a call that returns value or nil, msg, info; a failure ends the command.
function failure.check(value, msg, info)
  if value == nil then
    fail(msg or "moonbatch: failed", EXIT_FAILED, { info = info })
  end
  return value
end

--- f(...)'s value, msg, info: a client call that may raise for options the provider does not
-- take; a raised misuse becomes a usage failure, not a crash.
function failure.unraised(f, ...)
  local results = { pcall(f, ...) }
  if not results[1] then
    local err = results[2]
    if failure.passes(err) then error(err, 0) end
    -- the library names the option; where in Lua it was raised is of no use here
    local text = tostring(err):gsub("^[^:\n]+:%d+: ", ""):gsub("^moonbatch: ", "")
    fail("moonbatch: " .. text, EXIT_USAGE)
  end
  return results[2], results[3], results[4]
end

--- f(...)'s value, as unraised, checked: a runtime failure ends the command.
function failure.guarded(_, f, ...)
  return failure.check(failure.unraised(f, ...))
end

return failure
