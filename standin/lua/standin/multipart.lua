-- Streaming multipart/form-data parser: text fields into memory, file parts straight to disk.
--
-- It reads from a cosocket-like source (ngx.req.socket(), or common's look-alike for chunked
-- bodies) with receive(n) and receiveuntil(delimiter), so a 1 GiB upload only ever has one
-- chunk in memory. Everything a client sends is bounded: header lines, header count, text fields.
local M = {}

local CHUNK = 65536
local MAX_HEADER_LINE = 8192
local MAX_PART_HEADERS = 32
local MAX_FIELD = 1048576

-- The boundary of a multipart/form-data content type, or nil when it is not one.
function M.boundary(content_type)
  if type(content_type) ~= "string" then return nil end
  local media = content_type:match("^%s*([^;%s]+)")
  if not media or media:lower() ~= "multipart/form-data" then return nil end
  local at = content_type:lower():find(";%s*boundary%s*=")
  if not at then return nil end
  local value = content_type:sub(at):match("=%s*(.*)$")
  local boundary = value:match('^"([^"]+)"') or value:match("^([^;%s]+)")
  if boundary and #boundary <= 200 then return boundary end
end

-- Parameters of a Content-Disposition value: name, filename, ... (quoted or bare values).
local function disposition_params(value)
  local params = {}
  local pos = (value:find(";", 1, true) or #value + 1)
  while pos <= #value do
    local name, start = value:match("^;%s*([^=;%s]+)%s*=%s*()", pos)
    if not name then break end
    local text
    if value:sub(start, start) == '"' then
      local chars, i = {}, start + 1
      while i <= #value do
        local c = value:sub(i, i)
        if c == '"' then break end
        if c == "\\" and i < #value then
          i = i + 1
          c = value:sub(i, i)
        end
        chars[#chars + 1] = c
        i = i + 1
      end
      text, pos = table.concat(chars), i + 1
    else
      text = value:match("^[^;]*", start)
      pos = start + #text
      text = text:match("^(.-)%s*$")
    end
    params[name:lower()] = text
    pos = value:find(";", pos, true) or #value + 1
  end
  return params
end

-- What `iterate` (a receiveuntil iterator) yields up to its delimiter, read `chunk` bytes at a
-- time; nil and `ended` when the body ends first, nil and `too_long` past `limit` bytes.
local function read_until(iterate, chunk, limit, ended, too_long)
  local parts, size = {}, 0
  while true do
    local data, err = iterate(chunk)
    if not data then
      if err then return nil, ended end
      return table.concat(parts)
    end
    size = size + #data
    if size > limit then return nil, too_long end
    parts[#parts + 1] = data
  end
end

-- One CRLF-terminated line, at most MAX_HEADER_LINE bytes.
local function read_line(src)
  return read_until(src:receiveuntil("\r\n"), MAX_HEADER_LINE, MAX_HEADER_LINE,
    "multipart body ended inside part headers", "multipart part header line too long")
end

local function read_part_headers(src)
  local headers = {}
  for _ = 1, MAX_PART_HEADERS + 1 do
    local line, err = read_line(src)
    if not line then return nil, err end
    if line == "" then return headers end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if not name then return nil, "malformed multipart part header" end
    headers[name:lower()] = value
  end
  return nil, "too many multipart part headers"
end

local function count_newlines(s)
  local n, pos = 0, 1
  while true do
    local at = s:find("\n", pos, true)
    if not at then return n end
    n, pos = n + 1, at + 1
  end
end

local function read_text_part(iterate)
  return read_until(iterate, CHUNK, MAX_FIELD, "multipart body ended inside a part",
    "multipart text field larger than 1 MiB")
end

-- Streams a file part to path, counting bytes and lines (a last line without "\n" counts).
local function read_file_part(iterate, path)
  local f, open_err = io.open(path, "wb")
  if not f then return nil, "cannot store the upload: " .. tostring(open_err) end
  local bytes, lines, last = 0, 0, nil
  while true do
    local data, err = iterate(CHUNK)
    if not data then
      f:close()
      if err then return nil, "multipart body ended inside a part" end
      break
    end
    if #data > 0 then
      local ok, write_err = f:write(data)
      if not ok then
        f:close()
        return nil, "cannot store the upload: " .. tostring(write_err)
      end
      bytes = bytes + #data
      lines = lines + count_newlines(data)
      last = data:byte(-1)
    end
  end
  if bytes > 0 and last ~= 10 then lines = lines + 1 end
  return { bytes = bytes, lines = lines, path = path }
end

-- Parses the body from src. spool() returns a fresh path for each file part (the caller owns
-- and removes those files). Returns form = { fields = { name -> text | file } } where a file is
-- { filename, content_type, bytes, lines, path }; the first part of a name wins. On malformed
-- input returns nil, message, and the form as far as it got; the rest of the body is left unread.
function M.parse(src, boundary, spool)
  local fields = {}
  local form = { fields = fields }
  -- The first boundary usually opens the body, with no CRLF before it.
  local skip = src:receiveuntil("--" .. boundary)
  while true do
    local data, err = skip(CHUNK)
    if not data then
      if err then return nil, "multipart body has no boundary", form end
      break
    end
  end
  local delimiter = "\r\n--" .. boundary
  while true do
    local after = src:receive(2)
    if not after then return nil, "multipart body ended without a closing boundary", form end
    if after == "--" then return form end
    if after ~= "\r\n" then return nil, "malformed multipart boundary line", form end
    local headers, header_err = read_part_headers(src)
    if not headers then return nil, header_err, form end
    local params = disposition_params(headers["content-disposition"] or "")
    local name = params.name
    if not name then return nil, "multipart part without a form-data name", form end
    local iterate = src:receiveuntil(delimiter)
    local value, err
    if params.filename then
      value, err = read_file_part(iterate, spool())
      if value then
        value.filename, value.content_type = params.filename, headers["content-type"]
      end
    else
      value, err = read_text_part(iterate)
    end
    if value == nil then return nil, err, form end
    if fields[name] == nil then fields[name] = value end
  end
end

return M
