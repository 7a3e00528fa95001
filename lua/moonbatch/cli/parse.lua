--- moonbatch.cli.parse: the command line's words to a command, its arguments and its flags: every
-- flag once (its value's name, short form, numeric range), the refusal of a key given as a flag,
-- and a usage Failure (exit 2) for anything else.
-- @module moonbatch.cli.parse
local failure = require("moonbatch.cli.failure")
local help = require("moonbatch.cli.help")

local EXIT_USAGE = failure.EXIT_USAGE
local fail, usage_error = failure.fail, failure.usage_error

local parse = {}

--- The flags every command takes.
parse.COMMON = { "provider", "base-url", "allow-http", "key-file", "json", "quiet", "help" }

--- Every flag: `value` names the argument it takes (none for a switch), `short` its one-letter
-- form, `integer`/`number` and `max` its range, `many` that it may be repeated.
parse.FLAGS = {
  provider = { value = "NAME" },
  ["base-url"] = { value = "URL" },
  ["allow-http"] = {},
  ["key-file"] = { value = "PATH" },
  json = {},
  quiet = { short = "q" },
  help = { short = "h" },
  version = {},
  endpoint = { value = "PATH" },
  ["completion-window"] = { value = "WINDOW" },
  model = { value = "MODEL" },
  purpose = { value = "PURPOSE" },
  filename = { value = "NAME" },
  metadata = { value = "KEY=VALUE", many = true },
  limit = { value = "N", integer = true, max = 1e6 },
  all = {},
  interval = { value = "SECONDS", number = true },
  timeout = { value = "SECONDS", number = true },
  ["no-validate"] = {},
  output = { short = "o", value = "PATH" },
  errors = { value = "PATH" },
  concurrency = { value = "N", integer = true, max = 1024 },
  ["shard-lines"] = { value = "N", integer = true },
  ["shard-bytes"] = { value = "N", integer = true },
  ["max-active-batches"] = { value = "N", integer = true },
  ["max-enqueued-requests"] = { value = "N", integer = true },
  ["max-enqueued-tokens"] = { value = "N", integer = true },
  ["input-price"] = { value = "PRICE", number = true },
  ["output-price"] = { value = "PRICE", number = true },
}
local COMMON, FLAGS = parse.COMMON, parse.FLAGS
local SHORT = {}
for name, flag in pairs(FLAGS) do
  if flag.short then SHORT[flag.short] = name end
end

local commands = help.commands


-- parsing ------------------------------------------------------------------------------------

local REFUSED_KEY_FLAGS = { ["api-key"] = true, key = true, apikey = true, ["api_key"] = true,
                            token = true }

--- Parse argv into { command, args = {...}, opts = {...} }; raises a usage Failure.
-- @tparam table argv the words after the command's name
-- @treturn table `{command =, args = {...}, opts = {...}}`
function parse.parse(argv)
  local parsed = { args = {}, opts = {} }
  local only_args = false
  local i = 1
  local function allowed(name)
    local c = commands[parsed.command]
    if not c then
      -- before the command: the common options
      for _, n in ipairs(COMMON) do if n == name then return true end end
      return name == "version"
    end
    -- validate sends nothing: it takes no key, base URL or other network option
    if parsed.command ~= "validate" then
      for _, n in ipairs(COMMON) do if n == name then return true end end
    end
    for _, n in ipairs(c.flags) do if n == name then return true end end
    return false
  end
  while i <= #argv do
    local word = argv[i]
    local name, value
    if only_args or word == "-" or word:sub(1, 1) ~= "-" then
      if not parsed.command then
        if not commands[word] and word ~= "help" then
          usage_error(("unknown command '%s'"):format(word))
        end
        parsed.command = word
      elseif parsed.command == "job" then
        if not commands["job " .. word] then usage_error(("unknown job command '%s'"):format(word), "job") end
        parsed.command = "job " .. word
      else
        parsed.args[#parsed.args + 1] = word
      end
    elseif word == "--" then
      only_args = true
    else
      if word:sub(1, 2) == "--" then
        name, value = word:sub(3):match("^([^=]*)=(.*)$")
        if not name then name = word:sub(3) end
      else
        name = SHORT[word:sub(2, 2)]
        if not name or (#word > 2 and not FLAGS[name].value) then
          usage_error(("unknown option '%s'"):format(word), parsed.command)
        end
        if #word > 2 then value = word:sub(3) end
      end
      if REFUSED_KEY_FLAGS[name] then
        -- the value is not repeated: it may be the key itself
        fail(("moonbatch: --%s is refused: a key on the command line shows in the process list " ..
              "and the shell's history; set the provider's key variable (moonbatch --help lists them) " ..
              "or MOONBATCH_API_KEY, or use --key-file PATH"):format(name), EXIT_USAGE)
      end
      local flag = FLAGS[name]
      if not flag or not allowed(name) then
        usage_error(("unknown option '--%s'"):format(name), parsed.command)
      end
      if flag.value then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then
            usage_error(("option --%s needs a value (%s)"):format(name, flag.value), parsed.command)
          end
        end
        if flag.integer then
          local n = tonumber(value)
          if not n or n ~= math.floor(n) or n < 1 or n > (flag.max or 2 ^ 53) then
            usage_error(("option --%s needs a whole number from 1 to %d, not '%s'")
              :format(name, flag.max or 2 ^ 53, value), parsed.command)
          end
          value = math.floor(n)
        elseif flag.number then
          local n = tonumber(value)
          if not n or n <= 0 or n ~= n or n > 1e7 then
            usage_error(("option --%s needs a number of seconds > 0 and at most 10000000, not '%s'")
              :format(name, value), parsed.command)
          end
          value = n
        end
        if flag.many then
          parsed.opts[name] = parsed.opts[name] or {}
          table.insert(parsed.opts[name], value)
        else
          parsed.opts[name] = value
        end
      elseif value ~= nil then
        usage_error(("option --%s takes no value"):format(name), parsed.command)
      else
        parsed.opts[name] = true
      end
    end
    i = i + 1
  end
  return parsed
end

return parse
