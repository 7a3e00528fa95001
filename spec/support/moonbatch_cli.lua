-- spec/support/moonbatch_cli.lua: the moonbatch command line run as a subprocess, as a user runs
-- it: bin/moonbatch of this checkout, with none of the keys or moonbatch settings of whoever
-- runs the specs.
local shell = require("spec.support.shell")

local cli = {}

--- The start of a command line that clears what the command must not inherit.
cli.CLEAN_ENV = "env -u SILICONFLOW_API_KEY -u TOGETHER_API_KEY -u OPENAI_API_KEY -u MOONBATCH_API_KEY " ..
  "-u MOONBATCH_BASE_URL -u MOONBATCH_PROVIDER -u MOONBATCH_PROGRESS -u LUA_PATH -u LUA_CPATH " ..
  "-u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 -u COLUMNS"

--- The command that runs bin/moonbatch under `lua` (default lua5.4).
function cli.command(lua)
  return (lua or "lua5.4") .. " bin/moonbatch"
end

--- Run moonbatch with the words of `args`, the variables of `env` ({name = value}) set after
-- MOONBATCH_PROGRESS=never, under `lua`; its output goes through files in `dir`. Returns the
-- exit status, the standard output and the standard error.
function cli.run(dir, args, env, lua)
  local vars = { "MOONBATCH_PROGRESS=never" }
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. shell.quote(v) end
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local command = ("%s %s %s %s >%s 2>%s; echo $?"):format(cli.CLEAN_ENV, table.concat(vars, " "),
    cli.command(lua), shell.words(args), shell.quote(out), shell.quote(err))
  local code = tonumber((shell.capture(command):match("(%d+)%s*$")))
  return code, shell.read_file(out) or "", shell.read_file(err) or ""
end

return cli
