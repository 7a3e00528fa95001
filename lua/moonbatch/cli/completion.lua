--- moonbatch.cli.completion: `moonbatch completion bash|zsh|fish`, a script that completes the
-- commands, their options, `--provider`'s names and file arguments. Everything in it comes from
-- the command line's own help records (moonbatch.cli's `cli.help()`) and the library's provider
-- list, so a new command, option or provider is completed without touching this file.
-- @module moonbatch.cli.completion
local completion = {}

-- options whose value is a local file
local FILE_VALUES = { output = true, errors = true, ["key-file"] = true }

-- "--name" and, when it has one, "-x"
local function spellings(name, flag)
  local out = { "--" .. name }
  if flag.short then out[#out + 1] = "-" .. flag.short end
  return out
end

-- each command ("run", "job run", ...) with its option names, and the words that start them
local function model(help)
  local m = { commands = {}, top = {}, job = {}, flags = help.flags }
  for _, name in ipairs(help.order) do m.top[#m.top + 1] = name end
  m.top[#m.top + 1] = "help"
  local names = {}
  for name in pairs(help.commands) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local c = help.commands[name]
    local opts = {}
    if name ~= "validate" then
      for _, n in ipairs(help.common) do opts[#opts + 1] = n end
    else
      opts = { "help", "quiet" }
    end
    for _, n in ipairs(c.flags) do opts[#opts + 1] = n end
    m.commands[#m.commands + 1] = { name = name, summary = c.summary, flags = opts }
    local sub = name:match("^job (.+)$")
    if sub then m.job[#m.job + 1] = { name = sub, summary = c.summary } end
  end
  -- before any command: the common options and --version
  m.before = {}
  for _, n in ipairs(help.common) do m.before[#m.before + 1] = n end
  m.before[#m.before + 1] = "version"
  -- each option's one-line description, as the help texts give it
  m.describe = {}
  local texts = { help.tool_help() }
  for _, name in ipairs(names) do texts[#texts + 1] = help.command_help(name) end
  for _, text in ipairs(texts) do
    for line in text:gmatch("[^\n]+") do
      local flag, what = line:match("^%s+%-%-([%w-]+)%s?%S*%s%s+(%S.*)$")
      if not flag then flag, what = line:match("^%s+%-%a, %-%-([%w-]+)%s?%S*%s%s+(%S.*)$") end
      if flag and not m.describe[flag] then m.describe[flag] = what end
    end
  end
  m.providers = require("moonbatch.client").providers
  -- the help wraps the providers' names over two lines: name them all here
  m.describe.provider = "the provider: " .. table.concat(m.providers, ", ")
  return m
end

local function flag_words(m, names)
  local out = {}
  for _, n in ipairs(names) do
    for _, s in ipairs(spellings(n, m.flags[n])) do out[#out + 1] = s end
  end
  return table.concat(out, " ")
end

-- the spellings of every option that takes a value, split by what the value is
local function value_flags(m)
  local files, providers, other = {}, {}, {}
  local names = {}
  for name in pairs(m.flags) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local flag = m.flags[name]
    if flag.value then
      local into = name == "provider" and providers or FILE_VALUES[name] and files or other
      for _, s in ipairs(spellings(name, flag)) do into[#into + 1] = s end
    end
  end
  return files, providers, other
end

local function command_names(list)
  local out = {}
  for _, c in ipairs(list) do out[#out + 1] = type(c) == "table" and c.name or c end
  return table.concat(out, " ")
end

-- bash ----------------------------------------------------------------------------------------

-- the flags that take a value (files, providers, other, and all of them), and one shell case a
-- command: `case(name, flags)` its line, name "" before the command
local function flag_cases(m, case)
  local files, providers, other = value_flags(m)
  local all = {}
  for _, list in ipairs({ files, providers, other }) do
    for _, s in ipairs(list) do all[#all + 1] = s end
  end
  local cases = { case("", flag_words(m, m.before)) }
  for _, c in ipairs(m.commands) do cases[#cases + 1] = case(c.name, flag_words(m, c.flags)) end
  return files, providers, other, all, cases
end

local function bash(m)
  local files, providers, other, all, cases = flag_cases(m, function(name, flags)
    return ('    "%s") flags="%s" ;;'):format(name, flags)
  end)
  return ([==[
# bash completion for moonbatch: made by `moonbatch completion bash`
# use now: source <(moonbatch completion bash)
_moonbatch() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local cmd="" sub="" i w flags=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    case $w in
      %s) ((i++)) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=$w; elif [[ $cmd == job && -z $sub ]]; then sub=$w; fi ;;
    esac
  done
  case $prev in
    %s) COMPREPLY=($(compgen -W "%s" -- "$cur")); return ;;
    %s) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    %s) COMPREPLY=(); return ;;
  esac
  case "$cmd${sub:+ $sub}" in
%s
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  elif [[ -z $cmd || $cmd == help ]]; then
    COMPREPLY=($(compgen -W "%s" -- "$cur"))
  elif [[ $cmd == job && -z $sub ]]; then
    COMPREPLY=($(compgen -W "%s" -- "$cur"))
  elif [[ $cmd == completion ]]; then
    COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F _moonbatch moonbatch
]==]):format(table.concat(all, "|"), table.concat(providers, "|"), table.concat(m.providers, " "),
    table.concat(files, "|"), table.concat(other, "|"), table.concat(cases, "\n"),
    command_names(m.top), command_names(m.job))
end

-- zsh -----------------------------------------------------------------------------------------

local function zsh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function zsh(m)
  local files, providers, other, all, cases = flag_cases(m, function(name, flags)
    return ("    %s) flags=(%s) ;;"):format(name == "" and "''" or zsh_quote(name), flags)
  end)
  local described = {}
  for _, c in ipairs(m.top) do
    local summary = "get help on a command"
    for _, cc in ipairs(m.commands) do if cc.name == c then summary = cc.summary end end
    described[#described + 1] = zsh_quote(c .. ":" .. summary)
  end
  local job = {}
  for _, c in ipairs(m.job) do job[#job + 1] = zsh_quote(c.name .. ":" .. c.summary) end
  return ([==[
#compdef moonbatch
# zsh completion for moonbatch: made by `moonbatch completion zsh`
# use now: source <(moonbatch completion zsh); or save it as _moonbatch in a directory of $fpath
_moonbatch() {
  local cmd="" sub="" w prev=${words[CURRENT-1]} cur=${words[CURRENT]}
  local -a flags commands jobs
  integer i
  for (( i = 2; i < CURRENT; i++ )); do
    w=${words[i]}
    case $w in
      %s) (( i++ )) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=$w; elif [[ $cmd == job && -z $sub ]]; then sub=$w; fi ;;
    esac
  done
  case $prev in
    %s) compadd -- %s; return ;;
    %s) _files; return ;;
    %s) return 1 ;;
  esac
  case "$cmd${sub:+ $sub}" in
%s
  esac
  commands=(%s)
  jobs=(%s)
  if [[ $cur == -* ]]; then
    compadd -- $flags
  elif [[ -z $cmd || $cmd == help ]]; then
    _describe 'command' commands
  elif [[ $cmd == job && -z $sub ]]; then
    _describe 'job command' jobs
  elif [[ $cmd == completion ]]; then
    compadd -- bash zsh fish
  else
    _files
  fi
}
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
  _moonbatch "$@"
else
  compdef _moonbatch moonbatch
fi
]==]):format(table.concat(all, "|"), table.concat(providers, "|"), table.concat(m.providers, " "),
    table.concat(files, "|"), table.concat(other, "|"), table.concat(cases, "\n"),
    table.concat(described, " "), table.concat(job, " "))
end

-- fish ----------------------------------------------------------------------------------------

local function fish_quote(s)
  return "'" .. s:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'"
end

local function fish(m)
  local out = {
    "# fish completion for moonbatch: made by `moonbatch completion fish`",
    "# use now: moonbatch completion fish | source; or save it as ~/.config/fish/completions/moonbatch.fish",
    "complete -c moonbatch -f",
  }
  local function add(line) out[#out + 1] = line end
  local tops = {}
  for _, c in ipairs(m.top) do tops[#tops + 1] = c end
  local top_list = table.concat(tops, " ")
  local job_list = command_names(m.job)
  for _, c in ipairs(m.commands) do
    if not c.name:find(" ", 1, true) then
      add(("complete -c moonbatch -n '__fish_use_subcommand' -a %s -d %s"):format(c.name, fish_quote(c.summary)))
    end
  end
  add("complete -c moonbatch -n '__fish_use_subcommand' -a help -d 'get help on a command'")
  add(("complete -c moonbatch -n '__fish_seen_subcommand_from help' -a %s"):format(fish_quote(top_list)))
  for _, c in ipairs(m.job) do
    add(("complete -c moonbatch -n '__fish_seen_subcommand_from job; and not __fish_seen_subcommand_from %s' -a %s -d %s")
      :format(job_list, c.name, fish_quote(c.summary)))
  end
  add("complete -c moonbatch -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
  -- an option once per command that takes it (a job command: after `job NAME`)
  local function option(name, condition)
    local flag = m.flags[name]
    local words = { "complete -c moonbatch" }
    if condition then words[#words + 1] = "-n " .. fish_quote(condition) end
    words[#words + 1] = "-l " .. name
    if flag.short then words[#words + 1] = "-s " .. flag.short end
    if name == "provider" then
      words[#words + 1] = "-x -a " .. fish_quote(table.concat(m.providers, " "))
    elseif FILE_VALUES[name] then
      words[#words + 1] = "-r -F"
    elseif flag.value then
      words[#words + 1] = "-x"
    end
    if m.describe[name] then words[#words + 1] = "-d " .. fish_quote(m.describe[name]) end
    add(table.concat(words, " "))
  end
  for _, name in ipairs(m.before) do option(name, name == "version" and "__fish_use_subcommand" or nil) end
  for _, c in ipairs(m.commands) do
    local first, second = c.name:match("^(%S+) (%S+)$")
    -- `run` is both a command and a job command: each keeps its own options
    local condition = first and ("__fish_seen_subcommand_from %s; and __fish_seen_subcommand_from %s")
      :format(first, second) or ("__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from job")
      :format(c.name)
    for _, name in ipairs(c.flags) do
      local common = false
      for _, n in ipairs(m.before) do if n == name then common = true end end
      if not common then option(name, condition) end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local shells = { bash = bash, zsh = zsh, fish = fish }

--- The completion script for `shell`, or nil for a shell it does not know.
-- @tparam string shell "bash", "zsh" or "fish"
-- @tparam table help the command line's help records (`require("moonbatch.cli").help()`)
-- @treturn ?string the script
function completion.script(shell, help)
  local make = shells[shell]
  return make and make(model(help)) or nil
end

return completion
