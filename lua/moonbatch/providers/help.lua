--- moonbatch.providers.help: the registry as the command line's help says it: the --provider
-- list (the default first) and the sentence naming every key variable, wrapped to the help's
-- width. A bad MOONBATCH_PROVIDERS file is named in the list, not raised: --help still works.
-- @module moonbatch.providers.help
local providers = require("moonbatch.providers")

local M = {}

-- `words` joined by spaces in lines of at most `width` characters, the lines after the first
-- starting with `indent`
local function wrap(words, width, indent)
  local lines, line = {}, ""
  for _, w in ipairs(words) do
    if line ~= "" and #line + #w + 1 > width then
      lines[#lines + 1] = line
      line = w
    else
      line = line == "" and w or line .. " " .. w
    end
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n" .. indent)
end

--- The registry's names, the default first, wrapped as the help's column.
-- @treturn string the lines of the `--provider` entry
function M.names()
  local ok, names = pcall(providers.names)
  if not ok then return "(MOONBATCH_PROVIDERS is bad: " .. tostring(names) .. ")" end
  local words = { providers.default, "(default,", "or", "$MOONBATCH_PROVIDER)," }
  for _, n in ipairs(names) do
    if n ~= providers.default then words[#words + 1] = n .. "," end
  end
  words[#words] = words[#words]:sub(1, -2)
  return wrap(words, 70, "                    ")
end

--- The help's sentence on where the key comes from: each provider's key variable, once each.
-- @treturn string the sentence, wrapped, ending in a newline
function M.keys()
  local words = { "The", "API", "key", "comes", "from", "the", "provider's", "variable" }
  local ok, vars = pcall(providers.key_variables)
  if not ok then vars = {} end
  for i, v in ipairs(vars) do
    words[#words + 1] = (i == 1 and "(" or "") .. v[1] .. (i == #vars and ")," or ",")
  end
  for w in ("then MOONBATCH_API_KEY, or from --key-file; never from an argument."):gmatch("%S+") do
    words[#words + 1] = w
  end
  return wrap(words, 92, "") .. "\n"
end

return M
