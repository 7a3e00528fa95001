--- moonbatch.cli.man: the man page moonbatch(1), made from the command line's help texts (`make man`
-- writes it to build/man/moonbatch.1). The help records in moonbatch.cli are the one source: the
-- page is `moonbatch --help` and each `moonbatch COMMAND --help`, set in troff.
-- @module moonbatch.cli.man
local man = {}

-- text safe in troff: backslashes, hyphens (so options copy and paste as typed), a leading dot
-- or quote (which would start a request)
local function escape(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  if s:find("^[.']") then s = "\\&" .. s end
  return s
end

-- an option or command term set in bold, its arguments in italics: "--limit N", "run FILE"
local function term(s)
  local words = {}
  for word in s:gmatch("%S+") do
    local plain = escape(word)
    if word:find("^%-") or #words == 0 then
      words[#words + 1] = "\\fB" .. plain .. "\\fR"
    elseif word:find("^[%u_=%[%]|.]+$") and word:find("%u") then
      words[#words + 1] = "\\fI" .. plain .. "\\fR"
    else
      words[#words + 1] = plain
    end
  end
  return table.concat(words, " ")
end

-- a help text in troff: "heading:" lines become headings (`heading(name)` gives the request),
-- "  TERM   text" lines tagged paragraphs (text continued on the lines indented under it),
-- the rest paragraphs
local function render(text, heading)
  local out = {}
  local item -- the tagged paragraph being continued
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^(%a[%w ]*):$")
    local t, what = line:match("^  (%S.-)%s%s+(%S.*)$")
    if name then
      out[#out + 1] = heading(name)
      item = nil
    elseif t and not line:find("^   ") then
      out[#out + 1] = ".TP"
      out[#out + 1] = term(t)
      out[#out + 1] = escape(what)
      item = true
    elseif line:find("^%s*$") then
      out[#out + 1] = ".PP"
      item = nil
    elseif item and line:find("^%s%s+%S") then
      out[#out + 1] = escape((line:gsub("^%s+", "")))
    else
      if item then out[#out + 1] = ".PP" end
      item = nil
      out[#out + 1] = escape((line:gsub("^%s+", "")))
    end
  end
  -- no paragraph break right after a heading or at the end
  local clean = {}
  for i, l in ipairs(out) do
    local prev = clean[#clean]
    if not (l == ".PP" and (prev == nil or prev:find("^%.S[HS]") or prev == ".PP" or i == #out)) then
      clean[#clean + 1] = l
    end
  end
  return table.concat(clean, "\n")
end

local function section(name)
  return ".SH " .. name:upper()
end

local function subsection(name)
  return ".PP\n\\fB" .. escape(name) .. ":\\fR"
end

--- The page in troff (man macros).
-- @tparam table help the command line's help records (`require("moonbatch.cli").help()`)
-- @tparam[opt] string version e.g. "moonbatch 0.1.0", for the page's footer
-- @treturn string
function man.page(help, version)
  local tool = help.tool_help()
  local usage, rest = tool:match("^usage: ([^\n]*)\n\n([^\n]*)\n(.*)$")
  local out = {
    '.\\" moonbatch(1): made by `make man` from the help texts of moonbatch.cli; do not edit',
    ('.TH MOONBATCH 1 "" "%s" "User Commands"'):format(escape(version or "moonbatch")),
    ".SH NAME",
    "moonbatch \\- " .. escape((rest:gsub("%.$", ""):gsub("^%u", string.lower))),
    ".SH SYNOPSIS",
    term(usage),
    ".SH DESCRIPTION",
    escape(rest),
  }
  out[#out + 1] = render(tool:match("^usage: [^\n]*\n\n[^\n]*\n(.*)$"), section)
  out[#out + 1] = ".SH COMMANDS IN DETAIL"
  local names = {}
  for _, name in ipairs(help.order) do
    names[#names + 1] = name
    if name == "job" then
      for _, sub in ipairs({ "job run", "job status", "job cancel", "job retry-failed" }) do
        if help.commands[sub] then names[#names + 1] = sub end
      end
    end
  end
  for _, name in ipairs(names) do
    local c = help.commands[name]
    out[#out + 1] = ".SS " .. term(help.command_usage(name))
    out[#out + 1] = escape((c.summary:gsub("^%l", string.upper))) .. "."
    out[#out + 1] = ".PP"
    out[#out + 1] = render(c.help, subsection)
  end
  out[#out + 1] = ".SH SEE ALSO"
  out[#out + 1] = "The README and the API reference (\\fBmake docs\\fR) of moonbatch."
  return (table.concat(out, "\n"):gsub("\n\n+", "\n")) .. "\n"
end

return man
