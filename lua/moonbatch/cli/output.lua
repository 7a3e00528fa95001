--- moonbatch.cli.output: what the command line prints: JSON (keys sorted, `raw` left out), objects as
-- `key: value` lines, tables of cells, and the one path to the terminal: every line on standard
-- output or standard error loses the keys the command holds (Output:redact) and is made printable
-- (moonbatch.errors.printable). moonbatch.cli.context's Context takes these methods.
-- @module moonbatch.cli.output
local errors = require("moonbatch.errors")
local progress = require("moonbatch.progress")

local output = {}

local PROBLEMS_SHOWN = 20

-- JSON output ---------------------------------------------------------------------------------

-- keys whose empty table is a list
local LIST_KEYS = { data = true, errors = true, problems = true, failures = true }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                    ["\b"] = "\\b", ["\f"] = "\\f" }
    return named[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return n > 0
end

--- JSON text for a canonical object: keys sorted, `raw` left out, absent fields absent.
function output.json(value, key)
  local t = type(value)
  if t == "string" then
    return json_string(value)
  elseif t == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    if value == math.floor(value) and math.abs(value) < 2^53 then return ("%d"):format(value) end
    return ("%.17g"):format(value)
  elseif t == "boolean" then
    return tostring(value)
  elseif t == "table" then
    if next(value) == nil then return LIST_KEYS[key] and "[]" or "{}" end
    local parts = {}
    if is_list(value) then
      for i = 1, #value do parts[i] = output.json(value[i], key) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k, v in pairs(value) do
      if k ~= "raw" and type(v) ~= "function" and type(v) ~= "userdata" then keys[#keys + 1] = tostring(k) end
    end
    table.sort(keys)
    for i, k in ipairs(keys) do
      local v = value[k]
      if v == nil then v = value[tonumber(k)] end
      parts[i] = json_string(k) .. ":" .. output.json(v, k)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

-- human output ------------------------------------------------------------------------------------

function output.time_text(t)
  if type(t) ~= "number" then return tostring(t) end
  return os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(t))
end

function output.counts_text(rc)
  return ("%d total, %d completed, %d failed"):format(rc.total or 0, rc.completed or 0, rc.failed or 0)
end

function output.error_text(e)
  local parts = {}
  if e.code then parts[#parts + 1] = "[" .. tostring(e.code) .. "]" end
  parts[#parts + 1] = e.message or "(no message)"
  if e.line then parts[#parts + 1] = "(line " .. tostring(e.line) .. ")" end
  if e.param then parts[#parts + 1] = "(param " .. tostring(e.param) .. ")" end
  return table.concat(parts, " ")
end

function output.percent_text(p)
  return ("%g%%"):format(math.floor(p * 10 + 0.5) / 10)
end

output.FILE_FIELDS = { "id", "filename", "bytes", "purpose", "created_at", "line_count", "status",
                      "file_type", "processed" }
output.BATCH_FIELDS = { "id", "status", "endpoint", "input_file_id", "output_file_id", "error_file_id",
                       "completion_window", "model", "progress", "request_counts", "created_at",
                       "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                       "cancelling_at", "cancelled_at", "expires_at", "metadata", "errors", "warning" }

function output.field_lines(obj, fields)
  local lines = {}
  local function add(k, v) lines[#lines + 1] = k .. ": " .. errors.printable(v) end
  for _, name in ipairs(fields) do
    local v = obj[name]
    if v == nil then -- luacheck: ignore 542 (absent: nothing to say)
    elseif name == "bytes" then
      add(name, ("%d (%s)"):format(v, progress.bytes(v)))
    elseif name:match("_at$") then
      add(name, output.time_text(v))
    elseif name == "request_counts" then
      add("requests", output.counts_text(v))
    elseif name == "progress" and type(v) == "number" then
      add(name, output.percent_text(v))
    elseif name == "metadata" and type(v) == "table" then
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      for _, k in ipairs(keys) do add("metadata." .. k, tostring(v[k])) end
    elseif name == "errors" and type(v) == "table" then
      for _, e in ipairs(v) do add("error", output.error_text(e)) end
    elseif type(v) ~= "table" then
      add(name, tostring(v))
    end
  end
  return lines
end

-- columns of `rows` (lists of strings) padded to their widest cell, the last column unpadded
function output.table_lines(header, rows)
  local all = { header }
  for _, row in ipairs(rows) do
    local printable = {}
    for i, cell in ipairs(row) do printable[i] = errors.printable(cell) end
    all[#all + 1] = printable
  end
  local widths = {}
  for _, row in ipairs(all) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, #cell) end
  end
  local lines = {}
  for _, row in ipairs(all) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and cell .. (" "):rep(widths[i] - #cell) or cell
    end
    lines[#lines + 1] = table.concat(cells, "  ")
  end
  return lines
end

function output.short_time(t)
  return type(t) == "number" and os.date("!%Y-%m-%d %H:%M", math.floor(t)) or "-"
end

function output.batch_counts(b)
  local rc = b.request_counts
  if rc and rc.total and rc.total > 0 then
    local s = ("%d/%d"):format(rc.completed or 0, rc.total)
    if (rc.failed or 0) > 0 then s = s .. (", %d failed"):format(rc.failed) end
    return s
  elseif type(b.progress) == "number" then
    return output.percent_text(b.progress)
  end
end


-- the input file's problems and the steps' lines ------------------------------------------------

-- "  line 3: custom_id "a" already used on line 1", up to PROBLEMS_SHOWN of them
function output.problem_lines(info)
  local lines = {}
  local problems = info and info.problems or {}
  for i = 1, math.min(#problems, PROBLEMS_SHOWN) do
    local p = problems[i]
    local text = tostring(p.message or p.rule or "invalid")
    if p.line and not text:match("^[Ll]ine %d") then text = ("line %s: %s"):format(p.line, text) end
    lines[#lines + 1] = "  " .. text
  end
  if #problems > PROBLEMS_SHOWN then
    lines[#lines + 1] = ("  ... and %d more"):format(#problems - PROBLEMS_SHOWN)
  end
  return lines
end

function output.models_text(models)
  if type(models) ~= "table" then return nil end
  local parts = {}
  if #models > 0 then
    for _, m in ipairs(models) do
      if type(m) == "table" then
        local name = m.model or m.name or m[1]
        local n = m.count or m.lines or m[2]
        parts[#parts + 1] = n and ("%s (%s)"):format(tostring(name), tostring(n)) or tostring(name)
      else
        parts[#parts + 1] = tostring(m)
      end
    end
  else
    local names = {}
    for name in pairs(models) do names[#names + 1] = tostring(name) end
    table.sort(names)
    for _, name in ipairs(names) do
      local n = models[name]
      parts[#parts + 1] = type(n) == "number" and ("%s (%d)"):format(name, n) or name
    end
  end
  if #parts == 0 then return nil end
  return table.concat(parts, ", ")
end

function output.plural(n, one, many)
  return ("%d %s"):format(n, n == 1 and one or (many or one .. "s"))
end


function output.status_parts(b)
  local counts = output.batch_counts(b)
  local text = b.status or "?"
  if counts then text = text .. " " .. counts end
  local fraction
  local rc = b.request_counts
  if b.status == "completed" then
    fraction = 1
  elseif rc and rc.total and rc.total > 0 then
    fraction = ((rc.completed or 0) + (rc.failed or 0)) / rc.total
  elseif type(b.progress) == "number" then
    fraction = b.progress / 100
  end
  return text, fraction
end


-- the printing methods of a Context (moonbatch.cli.context) -------------------------------------

local Output = {}
output.methods = Output

--- A step's line on standard error (nothing with --quiet).
function Output:say(text)
  self.reporter:line(text)
end

-- standard error even with --quiet: warnings and failures
function Output:warn(text)
  self.reporter:close_line()
  io.stderr:write(errors.printable(self:redact(text), true) .. "\n")
end

-- the keys the command holds out of `s`, in any encoding (moonbatch.errors.redact). Every line
-- printed loses the long ones; a short key ("k", "1") would hit the command's own words, so it
-- goes only from the network's values (`values`: Context:redacted), as whole tokens.
function Output:redact(s, values)
  s = tostring(s)
  for _, secret in ipairs(self.secrets) do
    if values or #secret >= errors.SHORT_KEY then s = errors.redact(s, secret) end
  end
  return s
end

-- a copy of an object from the network with every string value redacted (field names kept)
function Output:redacted(value)
  if type(value) == "string" then return self:redact(value, true) end
  if type(value) ~= "table" or #self.secrets == 0 then return value end
  local out = {}
  for k, v in pairs(value) do
    if k ~= "raw" then out[k] = self:redacted(v) end
  end
  return out
end

-- standard output: the result
function Output:out(text)
  self.reporter:close_line() -- stdout may be the same terminal as a bar on stderr
  io.stdout:write(errors.printable(self:redact(text), true), "\n")
end

-- JSON stays valid JSON: DEL, C1 controls and bidi overrides as \u escapes
function Output:print_json(value)
  self.reporter:close_line()
  io.stdout:write(errors.printable_json(output.json(self:redacted(value))), "\n")
end

function Output:print_object(obj, fields)
  if self.json then return self:print_json(obj) end
  for _, line in ipairs(output.field_lines(self:redacted(obj), fields)) do self:out(line) end
end


--- The problems of `file` on standard error: their count, then up to PROBLEMS_SHOWN of them.
function Output:warn_problems(file, info)
  self:warn(("moonbatch: %s: %s"):format(file, output.plural(#info.problems, "problem")))
  for _, line in ipairs(output.problem_lines(info)) do self:warn(line) end
end


return output
