--- moonbatch.cli.env: every environment variable the command line and the library read, as
-- `moonbatch --help` (and so the man page) lists them. `spec/cli_more_spec.lua` checks that each
-- variable the code reads (os.getenv) is here.
-- @module moonbatch.cli.env
local providers = require("moonbatch.providers")

local env = {}

-- each provider's key variable (from the registry), with the providers that read it
local function key_variables()
  local out = {}
  for i, v in ipairs(providers.key_variables()) do
    local names = v[2]
    local list = #names == 1 and names[1]
      or table.concat(names, ", ", 1, #names - 1) .. " and " .. names[#names]
    out[i] = { v[1], "the API key for " .. list }
  end
  return out
end

--- The variables, in the order shown: `{ name, what it does }`.
env.variables = key_variables()
for _, v in ipairs({
  { "MOONBATCH_API_KEY", "the API key when the provider's variable is not set" },
  { "MOONBATCH_PROVIDER", "the provider when --provider is not given" },
  { "MOONBATCH_PROVIDERS", "files of providers given as data (JSON or Lua tables), separated by ':', added to the built-in ones" },
  { "MOONBATCH_BASE_URL", "the base URL when --base-url is not given" },
  { "MOONBATCH_PROGRESS", "always: bars and redrawn lines even off a terminal; never: plain lines" },
  { "MOONBATCH_LOG", "debug: one line per HTTP exchange on standard error (the key redacted)" },
  { "MOONBATCH_DEBUG", "set: a Lua traceback after an internal error" },
  { "COLUMNS", "the terminal's width for progress lines (default: the terminal's own)" },
  { "TERM", "dumb: plain progress lines, no redrawing" },
  { "PWD", "the working directory a job's manifest records its input against" },
}) do env.variables[#env.variables + 1] = v end

--- The `environment:` section of the tool's help.
-- @treturn string lines ending in a newline
function env.help()
  local lines = { "environment:" }
  for _, v in ipairs(env.variables) do
    -- the text wrapped at 79 columns, under itself
    local line = ("  %-20s"):format(v[1])
    for word in v[2]:gmatch("%S+") do
      if #line + 1 + #word > 79 and line:find("%S") and #line > 23 then
        lines[#lines + 1] = line
        line = (" "):rep(22)
      end
      line = line .. " " .. word
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n") .. "\n"
end

return env
