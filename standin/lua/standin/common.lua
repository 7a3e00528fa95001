-- Shared mechanics of the stand-in: state, JSON, auth, ids, log, faults, bodies, the request pipeline.
--
-- nginx runs one worker (see nginx.conf.in), so plain module-level tables are the server's
-- state: they survive across requests, and coroutines only switch at I/O, so no locking.
local cjson = require("cjson.safe").new()
local multipart = require("standin.multipart")

-- A request saying NaN or Infinity would make the log unencodable; treat it as invalid JSON.
cjson.decode_invalid_numbers(false)
cjson.decode_max_depth(64)

local M = {}

M.null = cjson.null

local CHUNK = 65536

local MAX_JSON_BODY = 16 * 1048576   -- JSON bodies are read into memory; uploads never are

local config = {}   -- dir, key, instance: from the environment bin/moonbatch-standin sets
local state         -- see reset_state()
local upload_seq = 0

-- What POST /_standin/config may change (and reset restores). Batches read it when created.
local SETTINGS_DEFAULT = {
  step_seconds = 1,                  -- time between two states of a batch
  siliconflow_output_urls = false,   -- SiliconFlow batches name their results by URL, not file id
  content_404_seconds = 0,           -- results answer 404 this long after their batch ends
  enqueued_token_limit = 0,          -- tokens of the batches not ended yet (0: no limit); over it,
                                     -- a new batch fails as token_limit_exceeded
}

---------------------------------------------------------------------------------------------
-- JSON. cjson cannot keep key order or tell an empty array from an empty object, so objects
-- get their key order from a "shape" metatable and arrays can be marked; cjson does scalars.

local ARRAY = { __json_array = true }

-- A metatable listing an object's keys in order; keys whose value is nil encode as null.
function M.shape(keys)
  return { __json_keys = keys }
end

function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

local function is_sequence(t)
  local n, count = #t, 0
  if n == 0 then return false end
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
    count = count + 1
  end
  return count == n
end

local function encode_number(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n % 1 == 0 and math.abs(n) < 2 ^ 53 then return string.format("%d", n) end
  local short = string.format("%.14g", n)
  return tonumber(short) == n and short or string.format("%.17g", n)
end

local function encode(v)
  local tv = type(v)
  -- cjson writes "/" as "\/"; every "/" it emits has that backslash, so dropping it is safe.
  if tv == "string" then return (cjson.encode(v):gsub("\\/", "/")) end
  if tv == "number" then return encode_number(v) end
  if tv == "boolean" then return tostring(v) end
  if tv ~= "table" then return "null" end   -- nil and cjson.null
  local out, mt = {}, getmetatable(v)
  if mt and mt.__json_keys then
    for i, k in ipairs(mt.__json_keys) do out[i] = encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  end
  if (mt and mt.__json_array) or is_sequence(v) then
    for i = 1, #v do out[i] = encode(v[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local pairs_list = {}
  for k, x in pairs(v) do pairs_list[#pairs_list + 1] = { tostring(k), x } end
  table.sort(pairs_list, function(a, b) return a[1] < b[1] end)
  for i, p in ipairs(pairs_list) do out[i] = encode(p[1]) .. ":" .. encode(p[2]) end
  return "{" .. table.concat(out, ",") .. "}"
end
M.encode = encode

-- Returns the decoded value, or nil when text is not JSON.
function M.decode(text)
  return cjson.decode(text)
end

-- A JSON object decoded by cjson (an empty one cannot be told from an empty array).
function M.is_object(v)
  return type(v) == "table" and not is_sequence(v)
end

-- A field a request body left out or set to null.
function M.absent(v)
  return v == nil or v == M.null
end

---------------------------------------------------------------------------------------------
-- Replies: { status, body, content_type, headers }, sent by serve() or control.

function M.json_reply(status, value, headers)
  return { status = status, body = encode(value), content_type = "application/json; charset=utf-8",
           headers = headers }
end

function M.text_reply(status, text, content_type, headers)
  return { status = status, body = text, content_type = content_type or "text/plain; charset=utf-8",
           headers = headers }
end

local ERROR = M.shape({ "error" })
local ERROR_DETAIL = M.shape({ "message", "type", "param", "code" })

-- OpenAI's error reply, {"error": {message, type (default invalid_request_error), param, code}}:
-- OpenAI answers every failure so, Together its files endpoints.
function M.error_reply(status, message, type_, param, code)
  return M.json_reply(status, setmetatable({
    error = setmetatable({ message = message, type = type_ or "invalid_request_error", param = param,
                           code = code }, ERROR_DETAIL),
  }, ERROR))
end

-- A stored file as the reply body: nginx sends it from disk (see serve()), so it never passes
-- through Lua memory. text: served as text/plain (else application/octet-stream).
function M.file_reply(record, text)
  return { status = 200, file = record,
           content_type = text and "text/plain" or "application/octet-stream" }
end

local function send_headers(reply, length)
  ngx.status = reply.status
  ngx.header["Content-Type"] = reply.content_type
  for name, value in pairs(reply.headers or {}) do ngx.header[name] = value end
  ngx.header["Content-Length"] = length or #reply.body
end

function M.send(reply)
  send_headers(reply)
  ngx.print(reply.body)
end

-- Sets SO_LINGER to zero on the request's socket, so closing it sends a TCP RST. There is no
-- Lua API for that: the descriptor is read from nginx's structs (r->connection->fd, layouts
-- unchanged since nginx 1.0) and checked against the peer's port before it is touched.
-- Returns false when the check fails; the connection then just closes.
local ffi_ready
local function arm_reset()
  local ffi = require("ffi")
  if not ffi_ready then
    ffi.cdef([[
      struct standin_linger { int l_onoff; int l_linger; };
      struct standin_sockaddr { unsigned short family; unsigned short port; unsigned char rest[124]; };
      int setsockopt(int fd, int level, int name, const void *value, unsigned int length);
      int getpeername(int fd, void *address, unsigned int *length);
    ]])
    ffi_ready = true
  end
  local r = require("resty.core.base").get_request()
  if not r then return false end
  local connection = ffi.cast("void **", ffi.cast("char *", r) + 8)[0]
  local fd = ffi.cast("int *", ffi.cast("char *", connection) + 24)[0]
  local peer = ffi.new("struct standin_sockaddr")
  local length = ffi.new("unsigned int[1]", ffi.sizeof(peer))
  if ffi.C.getpeername(fd, peer, length) ~= 0 then return false end
  local port = bit.bor(bit.rshift(peer.port, 8), bit.lshift(bit.band(peer.port, 0xff), 8))
  if port ~= tonumber(ngx.var.remote_port) then return false end
  local linger = ffi.new("struct standin_linger", 1, 0)
  return ffi.C.setsockopt(fd, 1 --[[SOL_SOCKET]], 13 --[[SO_LINGER]], linger, ffi.sizeof(linger)) == 0
end

-- An iterator over the rest of the open file f (or none: nil), `size` bytes at a time, that
-- closes f once it is read.
local function file_pieces(f, size)
  return function()
    local piece = f and f:read(size)
    if not piece and f then
      f:close()
      f = nil
    end
    return piece
  end
end

-- The reply's body as an iterator of pieces of `size` bytes (a file body is read from disk as
-- it goes, never whole), and the body's length.
local function body_pieces(reply, size)
  if not reply.file then
    local body, at = reply.body, 1
    return function()
      if at > #body then return nil end
      at = at + size
      return body:sub(at - size, at - 1)
    end, #body
  end
  local file = io.open(reply.file.path, "rb")
  if not file then return function() return nil end, 0 end
  local length = file:seek("end")
  file:seek("set", 0)
  return file_pieces(file, size), length
end

-- Sends the headers, announcing the whole body, then the body as shape says:
--   { bytes = N }               its first N bytes, then the connection is closed (FIN): truncate
--   { bytes = N, reset = true } the same, then the connection is reset (RST): reset_after
--   { step = N, every = S }     all of it, N bytes at a time, S seconds apart: drip
-- A client that goes away ends a drip; a drip that got through keeps the connection.
local function send_shaped(reply, shape)
  local size = shape.step or CHUNK
  local pieces, length = body_pieces(reply, size)
  send_headers(reply, length)
  ngx.send_headers()
  local left = shape.bytes or length
  while left > 0 do
    local piece = pieces()
    if not piece then break end
    if shape.every and left < length then ngx.sleep(shape.every) end
    piece = piece:sub(1, left)
    ngx.print(piece)
    left = left - #piece
    if shape.every and not ngx.flush(true) then return ngx.exit(444) end
  end
  if not shape.bytes then return ngx.exit(ngx.HTTP_OK) end
  ngx.flush(true)
  if shape.reset then
    ngx.sleep(0.02)   -- let the bytes reach the client before the reset discards what is unsent
    arm_reset()
  end
  return ngx.exit(444)
end

-- The fault {"big": BYTES}: a 200 whose body is a JSON list in OpenAI's shape, exactly BYTES
-- long (one file object repeated, then spaces), made and sent a chunk at a time.
local BIG_HEAD, BIG_TAIL = '{"object":"list","data":[', '],"has_more":false}'
local BIG_ITEM = '{"id":"file-big","object":"file","bytes":1024,"created_at":1700000000,'
  .. '"filename":"big.jsonl","purpose":"batch","status":"processed"}'
local BIG_MIN = #BIG_HEAD + #BIG_ITEM + #BIG_TAIL
local BIG_MAX = 2 ^ 40

local function send_big(bytes)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = string.format("%d", bytes)
  local each = #BIG_ITEM + 1                                -- every item after the first has a comma
  local items = math.floor((bytes - BIG_MIN) / each)
  local per_chunk = math.floor(CHUNK / each)
  local chunk = ("," .. BIG_ITEM):rep(per_chunk)
  ngx.print(BIG_HEAD .. BIG_ITEM)
  while items > 0 do
    local n = math.min(items, per_chunk)
    ngx.print(n == per_chunk and chunk or chunk:sub(1, n * each))
    items = items - n
    if not ngx.flush(true) then return ngx.exit(444) end   -- the client stopped reading
  end
  ngx.print((" "):rep((bytes - BIG_MIN) % each) .. BIG_TAIL)
  return ngx.exit(ngx.HTTP_OK)
end

-- nginx's own look, as a proxy in front of the provider would answer.
local HTML_REASONS = {
  [413] = "Request Entity Too Large", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Temporarily Unavailable", [504] = "Gateway Time-out",
}

local function html_reply(status)
  local title = status .. " " .. HTML_REASONS[status]
  return M.text_reply(status, "<html>\r\n<head><title>" .. title .. "</title></head>\r\n<body>\r\n"
    .. "<center><h1>" .. title .. "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    "text/html")
end

---------------------------------------------------------------------------------------------
-- State.

local function reset_state()
  state = {
    log = M.array(),
    faults = {},          -- "METHOD /path" -> array of { fault =, left = }
    ids = {},             -- every id handed out, so none repeats
    files = {},           -- id -> file record
    file_list = {},       -- file records in upload order
    batches = {},         -- id -> batch record
    batch_list = {},      -- batch records in creation order
    deleted = {},         -- id -> seq of a deleted file, so a cursor naming it still works
    results = {},         -- token -> file id: SiliconFlow's result-file URLs
    temp_paths = {},      -- working files (batch staging) to remove on reset
    seq = 0,              -- orders files and batches (created_at has only whole seconds)
    settings = {},
  }
  for k, v in pairs(SETTINGS_DEFAULT) do state.settings[k] = v end
end

-- Called by init_by_lua (in the master, before the worker forks).
function M.init()
  config.dir = assert(os.getenv("MOONBATCH_STANDIN_DIR"), "MOONBATCH_STANDIN_DIR is not set")
  config.key = assert(os.getenv("MOONBATCH_STANDIN_KEY"), "MOONBATCH_STANDIN_KEY is not set")
  config.instance = os.getenv("MOONBATCH_STANDIN_INSTANCE") or ""
  reset_state()
end

function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  -- A worker outlives a master that was killed, and would keep the port; so it checks each
  -- second that its parent is still the master, and exits once the master is gone.
  local ffi = require("ffi")
  ffi.cdef("int getppid(void);")
  local master = ffi.C.getppid()
  ngx.timer.every(1, function()
    if ffi.C.getppid() ~= master then os.exit(1) end
  end)
end

function M.instance()
  return config.instance
end

function M.reset()
  for _, file in ipairs(state.file_list) do os.remove(file.path) end
  for path in pairs(state.temp_paths) do os.remove(path) end
  reset_state()
end

function M.settings()
  return state.settings
end

-- Validates and applies a POST /_standin/config body. Returns the settings, or nil, error.
function M.configure(changes)
  if not M.is_object(changes) then return nil, "body must be an object" end
  for k, v in pairs(changes) do
    if SETTINGS_DEFAULT[k] == nil then return nil, "unknown setting " .. tostring(k) end
    if type(v) ~= type(SETTINGS_DEFAULT[k]) then
      return nil, k .. " must be a " .. type(SETTINGS_DEFAULT[k])
    end
  end
  if changes.step_seconds ~= nil and not (changes.step_seconds > 0 and changes.step_seconds <= 3600) then
    return nil, "step_seconds must be more than 0 and at most 3600"
  end
  if changes.content_404_seconds ~= nil
    and not (changes.content_404_seconds >= 0 and changes.content_404_seconds <= 3600) then
    return nil, "content_404_seconds must be 0 to 3600"
  end
  if changes.enqueued_token_limit ~= nil and not (changes.enqueued_token_limit >= 0) then -- luacheck: ignore 581 (NaN-safe)
    return nil, "enqueued_token_limit must be 0 or more"
  end
  for k, v in pairs(changes) do state.settings[k] = v end
  return state.settings
end

-- A path under DIR/files for a working file; reset removes it if it is still there.
function M.temp_path(name)
  local path = config.dir .. "/files/." .. name
  state.temp_paths[path] = true
  return path
end

function M.forget_temp(path)
  os.remove(path)
  state.temp_paths[path] = nil
end

function M.next_seq()
  state.seq = state.seq + 1
  return state.seq
end

function M.log()
  return state.log
end

-- The key must never leave the server, even if a client put it somewhere odd (an x- header,
-- the query, a field): it is cut from the log and from every reply the server makes up.
function M.redact(text)
  local function cut(s, form)
    local pattern = form:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
    return (s:gsub(pattern, "[redacted]"))
  end
  text = cut(text, config.key)
  local escaped = encode(config.key):sub(2, -2)
  if escaped ~= config.key then text = cut(text, escaped) end
  return text
end

-- n characters drawn at random from alphabet, as a list.
local function random_chars(n, alphabet)
  local chars = {}
  for i = 1, n do
    local at = math.random(#alphabet)
    chars[i] = alphabet:sub(at, at)
  end
  return chars
end

-- The first id make() returns that was never handed out before.
local function unused_id(make)
  while true do
    local id = make()
    if not state.ids[id] then
      state.ids[id] = true
      return id
    end
  end
end

-- A fresh id: prefix and n characters drawn from alphabet (default: lowercase letters).
function M.new_id(prefix, n, alphabet)
  alphabet = alphabet or "abcdefghijklmnopqrstuvwxyz"
  return unused_id(function() return prefix .. table.concat(random_chars(n, alphabet)) end)
end

-- A fresh version-4 UUID, after prefix.
function M.new_uuid(prefix)
  local hex = "0123456789abcdef"
  return unused_id(function()
    local chars = random_chars(32, hex)
    chars[13] = "4"
    local variant = 8 + math.random(4)   -- 8, 9, a or b
    chars[17] = hex:sub(variant, variant)
    local h = table.concat(chars)
    return (prefix or "") .. ("%s-%s-%s-%s-%s"):format(h:sub(1, 8), h:sub(9, 12), h:sub(13, 16),
      h:sub(17, 20), h:sub(21, 32))
  end)
end

-- ISO-8601 in UTC, whole seconds: 2024-01-15T15:30:00Z.
function M.iso_time(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- The path a file with this id has (or gets) under DIR/files.
function M.file_path(id)
  return config.dir .. "/files/" .. id
end

-- Stores an uploaded part (from multipart.parse) under DIR/files/<id>. fields are the
-- dialect's own extras (purpose, ...). Returns the record: id, instance, path, bytes, lines,
-- filename, created_at and the extras.
function M.store_file(instance, id, part, fields)
  local path = config.dir .. "/files/" .. id
  local ok, err = os.rename(part.path, path)
  if not ok then error("cannot store upload " .. id .. ": " .. tostring(err)) end
  part.path = path
  local record = { id = id, instance = instance, path = path, bytes = part.bytes, lines = part.lines,
                   filename = part.filename, created_at = ngx.time() }
  for k, v in pairs(fields or {}) do record[k] = v end
  return M.add_file(record)
end

-- Keeps the record of a file already at record.path (id, instance, path, bytes, lines,
-- filename, created_at and a dialect's extras).
function M.add_file(record)
  record.seq = M.next_seq()
  state.files[record.id] = record
  state.file_list[#state.file_list + 1] = record
  return record
end

-- Forgets a file and removes its bytes; a cursor naming it keeps its place.
function M.delete_file(record)
  state.files[record.id] = nil
  for i, r in ipairs(state.file_list) do
    if r == record then
      table.remove(state.file_list, i)
      break
    end
  end
  state.deleted[record.id] = { instance = record.instance, seq = record.seq }
  os.remove(record.path)
end

-- The seq of a file that was deleted from instance, for cursors.
function M.deleted_seq(instance, id)
  local d = state.deleted[id]
  if d and d.instance == instance then return d.seq end
end

-- Hands out a token for a result-file URL (/_standin/results/<token>) that serves file_id.
function M.result_token(file_id)
  local token = M.new_id("", 32, "abcdefghijklmnopqrstuvwxyz0123456789")
  state.results[token] = file_id
  return token
end

function M.result_file(token)
  local id = state.results[token]
  return id and state.files[id]
end

-- The stored file with this id, if it belongs to instance (nil instance: any).
function M.file(instance, id)
  local record = state.files[id]
  if record and (instance == nil or record.instance == instance) then return record end
end

-- The records of `list` (kept oldest first) that belong to instance, newest first.
local function newest_first(list, instance)
  local out = {}
  for i = #list, 1, -1 do
    local record = list[i]
    if record.instance == instance then out[#out + 1] = record end
  end
  return out
end

-- instance's files, newest first.
function M.files(instance)
  return newest_first(state.file_list, instance)
end

-- Keeps a batch record ({ id =, ... }: see standin.lifecycle).
function M.store_batch(instance, record)
  record.instance = instance
  record.seq = M.next_seq()
  state.batches[record.id] = record
  state.batch_list[#state.batch_list + 1] = record
  return record
end

-- The batch with this id, if it belongs to instance.
function M.batch(instance, id)
  local record = state.batches[id]
  if record and record.instance == instance then return record end
end

-- instance's batches, newest first.
function M.batches(instance)
  return newest_first(state.batch_list, instance)
end

-- One page of records (ordered as given) after the one whose seq is after_seq (nil: from
-- the start): returns the page and whether more follow.
function M.page(records, after_seq, limit, descending)
  local page, more = M.array(), false
  for _, record in ipairs(records) do
    local past = after_seq == nil
      or (descending and record.seq < after_seq) or (not descending and record.seq > after_seq)
    if past then
      if #page >= limit then
        more = true
        break
      end
      page[#page + 1] = record
    end
  end
  return page, more
end

-- A positive integer from a query value, or nil. Rejects "", "1.5", "-1", "abc" and tables.
function M.query_integer(value)
  local n = type(value) == "string" and value:match("^%d+$") and tonumber(value)
  if n and n >= 1 then return n end
end

---------------------------------------------------------------------------------------------
-- Faults.

-- The kinds of fault (one per fault, or none with only a delay), and the keys each may carry.
local FAULT_KINDS = { "status", "html", "reset_after", "hang", "truncate", "drip", "big" }
local STATUS_OPTIONS = {
  retry_after = true, retry_after_ms = true, body = true, body_base64 = true, content_type = true,
  headers = true,
}
local COMMON_OPTIONS = { delay = true, count = true }

local function is_count(v, min)
  return type(v) == "number" and v % 1 == 0 and v >= min
end

local function is_seconds(v)
  return type(v) == "number" and v >= 0 and v <= 3600
end

local function is_header_value(v)
  return (type(v) == "string" or type(v) == "number") and not tostring(v):find("[\r\n]")
end

local function status_options_error(f)
  if not is_count(f.status, 200) or f.status > 599 then return "status must be an HTTP status 200-599" end
  for _, k in ipairs({ "retry_after", "retry_after_ms", "content_type" }) do
    if f[k] ~= nil and not is_header_value(f[k]) then return k .. " must be a string" end
  end
  if f.body ~= nil and type(f.body) ~= "string" and type(f.body) ~= "table" then
    return "body must be a string or JSON"
  end
  if f.body_base64 ~= nil then
    if f.body ~= nil then return "body and body_base64 exclude each other" end
    if type(f.body_base64) ~= "string" or not ngx.decode_base64(f.body_base64) then
      return "body_base64 must be base64"
    end
  end
  if f.headers ~= nil then
    if not M.is_object(f.headers) then return "headers must be an object" end
    for name, value in pairs(f.headers) do
      if not tostring(name):match("^[%w!#$%%&'*+.^_`|~-]+$") or not is_header_value(value) then
        return "bad header " .. tostring(name)
      end
    end
  end
end

-- Returns nil when f is a valid fault object, else what is wrong with it.
local function fault_error(f)
  if not M.is_object(f) then return "a fault must be an object" end
  local kind
  for _, name in ipairs(FAULT_KINDS) do
    if f[name] ~= nil then
      if kind then return ("a fault has one kind; got %s and %s"):format(kind, name) end
      kind = name
    end
  end
  for k in pairs(f) do
    if not (COMMON_OPTIONS[k] or k == kind or (STATUS_OPTIONS[k] and kind == "status")) then
      return STATUS_OPTIONS[k] and k .. " only goes with status" or "unknown fault key " .. tostring(k)
    end
  end
  if not kind and f.delay == nil then
    return "a fault needs delay or one of " .. table.concat(FAULT_KINDS, ", ")
  end
  if f.delay ~= nil and not is_seconds(f.delay) then return "delay must be seconds (0 to 3600)" end
  if f.count ~= nil and not is_count(f.count, 1) then return "count must be an integer >= 1" end
  if kind == "status" then return status_options_error(f) end
  if kind == "html" and not HTML_REASONS[f.html] then return "html must be one of 413, 500, 502, 503, 504" end
  if (kind == "reset_after" or kind == "truncate") and not is_count(f[kind], 0) then
    return kind .. " must be a byte count"
  end
  if kind == "hang" and not is_seconds(f.hang) then return "hang must be seconds (0 to 3600)" end
  if kind == "drip" then
    local d = f.drip
    if not (M.is_object(d) and is_count(d.bytes, 1) and is_seconds(d.every)) then
      return 'drip must be {"bytes": N >= 1, "every": seconds (0 to 3600)}'
    end
    for k in pairs(d) do
      if k ~= "bytes" and k ~= "every" then return "unknown drip key " .. tostring(k) end
    end
  end
  if kind == "big" and not (is_count(f.big, BIG_MIN) and f.big <= BIG_MAX) then
    return ("big must be a byte count from %d to 2^40"):format(BIG_MIN)
  end
end

-- Appends faults to the queue of (method, path). Returns the queue's length, or nil, error.
function M.push_faults(method, path, faults)
  if type(method) ~= "string" or not method:match("^%u+$") then
    return nil, "method must be an upper-case HTTP method"
  end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("?", 1, true) then
    return nil, "path must be a path without query, starting with /"
  end
  if type(faults) ~= "table" or not is_sequence(faults) then
    return nil, "faults must be a non-empty array"
  end
  for i, f in ipairs(faults) do
    local err = fault_error(f)
    if err then return nil, "faults[" .. i .. "]: " .. err end
  end
  local key = method .. " " .. path
  local queue = state.faults[key] or {}
  for _, f in ipairs(faults) do queue[#queue + 1] = { fault = f, left = f.count or 1 } end
  state.faults[key] = queue
  return #queue
end

local function pop_fault(method, path)
  local queue = state.faults[method .. " " .. path]
  local head = queue and queue[1]
  if not head then return nil end
  head.left = head.left - 1
  if head.left == 0 then table.remove(queue, 1) end
  return head.fault
end

-- The reply a status fault asks for; the dialect supplies the body when the fault has none.
local function fault_reply(dialect, f, path)
  if f.html then return html_reply(f.html) end
  local reply
  if f.body_base64 ~= nil then
    -- raw bytes (invalid UTF-8, say), verbatim
    reply = { status = f.status, content_type = "application/json; charset=utf-8", verbatim = true,
              body = ngx.decode_base64(f.body_base64) }
  elseif f.body ~= nil then
    -- verbatim: sent as given, even if it quotes the key (client specs test their own redaction)
    reply = { status = f.status, content_type = "application/json; charset=utf-8", verbatim = true,
              body = type(f.body) == "string" and f.body or encode(f.body) }
  else
    reply = dialect.error_reply(f.status, path)
  end
  reply.content_type = f.content_type or reply.content_type
  local headers = {}
  for name, value in pairs(reply.headers or {}) do headers[name] = value end
  if f.retry_after ~= nil then headers["Retry-After"] = tostring(f.retry_after) end
  if f.retry_after_ms ~= nil then headers["retry-after-ms"] = tostring(f.retry_after_ms) end
  for name, value in pairs(f.headers or {}) do headers[name] = tostring(value) end
  reply.headers = headers
  return reply
end

---------------------------------------------------------------------------------------------
-- Request bodies. A body source looks like an nginx cosocket: receive(n) and receiveuntil(p),
-- and counts the bytes taken from it in .bytes.

-- The same interface over a body nginx has already read: ngx.req.socket() refuses chunked
-- bodies, so those are read with ngx.req.read_body() (spooled to a temp file in DIR when large).
local function spooled_source(next_chunk)
  local buf = ""
  local src = {}
  local function fill()
    local chunk = next_chunk()
    if not chunk then return false end
    buf = buf .. chunk
    return true
  end
  local function take(n)
    local data = buf:sub(1, n)
    buf = buf:sub(n + 1)
    return data
  end
  function src.receive(_, n)
    while #buf < n do
      if not fill() then return nil, "closed", take(#buf) end
    end
    return take(n)
  end
  function src.receiveuntil(_, pattern)
    local done = false
    return function(size)
      if done then return nil end
      while true do
        local at = buf:find(pattern, 1, true)
        if at and at <= size + 1 then
          done = true
          local data = take(at - 1)
          take(#pattern)
          return data
        end
        -- Bytes that cannot be the start of a delimiter can go out now.
        if at or #buf - #pattern + 1 >= size then return take(size) end
        if not fill() then return nil, "closed", take(#buf) end
      end
    end
  end
  return src
end

local function counted(src)
  local c = { bytes = 0 }
  function c.receive(_, n)
    local data, err, partial = src:receive(n)
    c.bytes = c.bytes + #(data or partial or "")
    return data, err, partial
  end
  function c.receiveuntil(_, pattern)
    local iterate = src:receiveuntil(pattern)
    return function(size)
      local data, err, partial = iterate(size)
      if data then
        c.bytes = c.bytes + #data
      elseif err then
        c.bytes = c.bytes + #(partial or "")
      else
        c.bytes = c.bytes + #pattern   -- the delimiter itself was consumed
      end
      return data, err, partial
    end
  end
  return c
end

local function body_source()
  local te = ngx.var.http_transfer_encoding
  if te and te:lower():find("chunked", 1, true) then
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    local path = not data and ngx.req.get_body_file()
    local from_file = file_pieces(path and io.open(path, "rb"), CHUNK)
    return counted(spooled_source(function()
      if data then
        local chunk = data
        data = nil
        return chunk
      end
      return from_file()
    end))
  end
  local sock = ngx.req.socket()   -- nil when there is no body ("no body")
  return counted(sock or spooled_source(function() return nil end))
end

-- Reads and drops what is left of the body, so the connection stays usable.
local function drain(src)
  while src:receive(CHUNK) do end
end

-- The whole body as a string, or nil when it is longer than limit (read and dropped then).
local function read_text(src, limit)
  local parts, size = {}, 0
  while true do
    local data, _, partial = src:receive(CHUNK)
    local piece = data or partial or ""
    size = size + #piece
    if size <= limit then parts[#parts + 1] = piece end
    if not data then break end
  end
  if size <= limit then return table.concat(parts) end
end

local FILE_INFO = M.shape({ "filename", "content_type", "bytes", "lines" })

-- What the log shows of a form: text fields as they are, file parts as metadata.
local function logged_fields(form)
  local out = {}
  for name, value in pairs(form.fields) do
    out[name] = type(value) == "table" and setmetatable({
      filename = value.filename, content_type = value.content_type, bytes = value.bytes, lines = value.lines,
    }, FILE_INFO) or value
  end
  return out
end

-- Reads the body the way a route declares (kind "json" or "multipart"). Returns
-- { value = <decoded JSON> } or { form = <multipart.parse's form> } or { error = <message> }.
-- Every file part goes to a temporary file listed in uploads; serve() removes those a handler
-- did not keep with store_file().
local function read_body(kind, entry, uploads)
  if kind == "json" then
    local src = body_source()
    local text = read_text(src, MAX_JSON_BODY)
    entry.body_bytes = src.bytes
    if not text then return { error = "request body too large" } end
    local value = M.decode(text)
    if value == nil then return { error = "invalid JSON in request body" } end
    entry.json = value
    return { value = value }
  end
  local src = body_source()
  local boundary = multipart.boundary(ngx.var.content_type)
  if not boundary then
    drain(src)
    entry.body_bytes = src.bytes
    return { error = "request Content-Type isn't multipart/form-data" }
  end
  local form, err, partial = multipart.parse(src, boundary, function()
    upload_seq = upload_seq + 1
    local path = config.dir .. "/files/.upload-" .. upload_seq
    uploads[#uploads + 1] = path
    return path
  end)
  drain(src)
  entry.body_bytes = src.bytes
  entry.fields = logged_fields(form or partial)
  if not form then return { error = err } end
  return { form = form }
end

---------------------------------------------------------------------------------------------
-- The request log and the pipeline every provider request goes through.

local LOG_ENTRY = M.shape({
  "method", "path", "request_uri", "query", "status", "fault", "connection", "connection_requests", "auth",
  "headers", "fields", "json", "body_bytes",
})

-- Request headers worth seeing in the log; also every x-* header. Never authorization.
local LOGGED_HEADERS = {
  ["idempotency-key"] = true, ["content-type"] = true, ["content-length"] = true,
  ["user-agent"] = true, expect = true, accept = true, ["accept-encoding"] = true,
  ["transfer-encoding"] = true, connection = true,
}

local function auth_state(value)
  if value == nil then return "missing" end
  if type(value) == "string" then
    local scheme, token = value:match("^%s*(%S+)%s+(%S+)%s*$")
    if scheme and scheme:lower() == "bearer" and token == config.key then return "ok" end
  end
  return "wrong"
end

-- dialect.auth(headers, key), when a dialect has it, says "ok", "missing" or "wrong" (Azure's
-- api-key header); else the Authorization: Bearer header decides
local function new_entry(dialect)
  local headers = ngx.req.get_headers(200)
  local logged = {}
  for name, value in pairs(headers) do
    if LOGGED_HEADERS[name] or name:sub(1, 2) == "x-" then logged[name] = value end
  end
  return setmetatable({
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    request_uri = ngx.var.request_uri, -- as sent: $uri is decoded and its dot segments resolved
    query = ngx.req.get_uri_args(200),
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    auth = dialect.auth and dialect.auth(headers, config.key) or auth_state(headers["authorization"]),
    headers = logged,
    body_bytes = 0,
  }, LOG_ENTRY)
end

-- What to do with the request: { reply = r, shape = nil | <see send_shaped> } or { abort = true }.
local function decide(dialect, instance, prefix, entry, uploads)
  local fault = pop_fault(entry.method, entry.path)
  entry.fault = fault
  if fault and fault.delay then ngx.sleep(fault.delay) end
  local path = entry.path:sub(#prefix + 1)
  local route, params = dialect.route(entry.method, path)
  -- On a download, reset_after counts the bytes of the reply instead of the request's.
  local download = route and route.download
  if fault and fault.reset_after and not download then
    local src = body_source()
    local left = fault.reset_after
    while left > 0 do
      local data, _, partial = src:receive(math.min(left, CHUNK))
      left = left - #(data or partial or "")
      if not data then break end
    end
    entry.body_bytes = src.bytes
    return { abort = true }
  end
  if fault and fault.hang then
    local src = body_source()
    drain(src)
    entry.body_bytes = src.bytes
    ngx.sleep(fault.hang)
    return { abort = true }
  end
  if fault and (fault.status or fault.html or fault.big) then
    -- Read the body anyway, so the log shows what each failed attempt carried.
    if route and route.body then read_body(route.body, entry, uploads) end
    if fault.big then return { reply = { status = 200, big = fault.big } } end
    return { reply = fault_reply(dialect, fault, path) }
  end
  if dialect.prepare then dialect.prepare(instance) end
  local reply
  if not route then
    reply = dialect.not_found(path, entry.method, instance)
  elseif entry.auth ~= "ok" and not route.public then
    reply = dialect.unauthorized(path, entry.auth)   -- nginx discards the unread body
  else
    local body = route.body and read_body(route.body, entry, uploads)
    reply = route.handle({ instance = instance, entry = entry, query = entry.query, body = body,
                           params = params or {} })
  end
  local shape
  if fault and fault.truncate then
    shape = { bytes = fault.truncate }
  elseif fault and fault.reset_after then
    shape = { bytes = fault.reset_after, reset = true }
  elseif fault and fault.drip then
    shape = { step = fault.drip.bytes, every = fault.drip.every }
  end
  return { reply = reply, shape = shape }
end

-- Serves one provider request. dialect supplies route(method, path) -> route, params (see
-- M.router), not_found(path, method), unauthorized(path, auth) and error_reply(status, path),
-- paths relative to prefix, and may supply prepare(instance), called before a route is
-- handled. instance names its store ("siliconflow", ...); prefix is the base path
-- ("/siliconflow/v1").
function M.serve(dialect, instance, prefix)
  ngx.update_time()
  local entry = new_entry(dialect)
  state.log[#state.log + 1] = entry   -- logged first, so even an aborted request shows up
  local uploads = {}
  local ok, action = xpcall(decide, debug.traceback, dialect, instance, prefix, entry, uploads)
  for _, path in ipairs(uploads) do os.remove(path) end   -- kept uploads were renamed away
  if not ok then
    ngx.log(ngx.ERR, "stand-in: ", action)
    action = { reply = M.json_reply(500, { error = "stand-in internal error" }) }
  end
  if action.abort then return ngx.exit(444) end
  local reply = action.reply
  entry.status = reply.status
  -- Replies echo what clients sent (file names, metadata, ids); the key stays out even so.
  if reply.body and not reply.verbatim then reply.body = M.redact(reply.body) end
  if reply.big then return send_big(reply.big) end
  if action.shape then return send_shaped(reply, action.shape) end
  if reply.file then
    -- nginx sends the bytes itself, with Content-Length and ranges (see nginx.conf.in).
    local location = reply.content_type == "text/plain" and "/_standin_stored_text/" or "/_standin_stored/"
    return ngx.exec(location .. reply.file.id)
  end
  M.send(reply)
end

-- A router over "METHOD /path/{name}/..." keys: returns route(method, path) -> route, params.
function M.router(routes)
  local compiled = {}
  for key, route in pairs(routes) do
    local method, template = key:match("^(%u+) (.*)$")
    local names = {}
    local pattern = template:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("{(%w+)}", function(name)
      names[#names + 1] = name
      return "([^/]+)"
    end)
    compiled[#compiled + 1] = { method = method, pattern = "^" .. pattern .. "$", names = names, route = route }
  end
  return function(method, path)
    for _, c in ipairs(compiled) do
      if c.method == method then
        local captures = { path:match(c.pattern) }
        if captures[1] then
          local params = {}
          for i, name in ipairs(c.names) do params[name] = captures[i] end
          return c.route, params
        end
      end
    end
  end
end

-- For the control API: its JSON body, or nil, error.
function M.read_json_body()
  local src = body_source()
  local text = read_text(src, MAX_JSON_BODY)
  if not text then return nil, "request body too large" end
  local value = M.decode(text)
  if value == nil then return nil, "invalid JSON in request body" end
  return value
end

return M
