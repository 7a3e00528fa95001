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

local function send_headers(reply)
  ngx.status = reply.status
  ngx.header["Content-Type"] = reply.content_type
  for name, value in pairs(reply.headers or {}) do ngx.header[name] = value end
  ngx.header["Content-Length"] = #reply.body
end

function M.send(reply)
  send_headers(reply)
  ngx.print(reply.body)
end

-- Announces the whole body, sends only its first n bytes, then drops the connection.
local function send_truncated(reply, n)
  send_headers(reply)
  ngx.send_headers()
  ngx.print(reply.body:sub(1, n))
  ngx.flush(true)
  return ngx.exit(444)
end

-- nginx's own look, as a proxy in front of the provider would answer.
local HTML_REASONS = {
  [500] = "Internal Server Error", [502] = "Bad Gateway",
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
  }
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
  reset_state()
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

-- A fresh id: prefix and n characters drawn from alphabet (default: lowercase letters).
function M.new_id(prefix, n, alphabet)
  alphabet = alphabet or "abcdefghijklmnopqrstuvwxyz"
  while true do
    local chars = {}
    for i = 1, n do
      local at = math.random(#alphabet)
      chars[i] = alphabet:sub(at, at)
    end
    local id = prefix .. table.concat(chars)
    if not state.ids[id] then
      state.ids[id] = true
      return id
    end
  end
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
  state.files[id] = record
  state.file_list[#state.file_list + 1] = record
  return record
end

-- The stored file with this id, if it belongs to instance (nil instance: any).
function M.file(instance, id)
  local record = state.files[id]
  if record and (instance == nil or record.instance == instance) then return record end
end

-- instance's files, newest first.
function M.files(instance)
  local out = {}
  for i = #state.file_list, 1, -1 do
    local record = state.file_list[i]
    if record.instance == instance then out[#out + 1] = record end
  end
  return out
end

-- Keeps a batch: record = { id =, object = <the dialect's batch object>, ... }.
function M.store_batch(instance, record)
  record.instance = instance
  state.batches[record.id] = record
  state.batch_list[#state.batch_list + 1] = record
  return record
end

---------------------------------------------------------------------------------------------
-- Faults.

-- The kinds of fault (one per fault, or none with only a delay), and the keys each may carry.
local FAULT_KINDS = { "status", "html", "reset_after", "hang", "truncate" }
local STATUS_OPTIONS = {
  retry_after = true, retry_after_ms = true, body = true, content_type = true, headers = true,
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
  if kind == "html" and not HTML_REASONS[f.html] then return "html must be one of 500, 502, 503, 504" end
  if (kind == "reset_after" or kind == "truncate") and not is_count(f[kind], 0) then
    return kind .. " must be a byte count"
  end
  if kind == "hang" and not is_seconds(f.hang) then return "hang must be seconds (0 to 3600)" end
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
local function fault_reply(dialect, f)
  if f.html then return html_reply(f.html) end
  local reply
  if f.body ~= nil then
    -- verbatim: sent as given, even if it quotes the key (client specs test their own redaction)
    reply = { status = f.status, content_type = "application/json; charset=utf-8", verbatim = true,
              body = type(f.body) == "string" and f.body or encode(f.body) }
  else
    reply = dialect.error_reply(f.status)
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
    local f = path and io.open(path, "rb")
    return counted(spooled_source(function()
      if data then
        local chunk = data
        data = nil
        return chunk
      end
      local chunk = f and f:read(CHUNK)
      if not chunk and f then
        f:close()
        f = nil
      end
      return chunk
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
  "method", "path", "query", "status", "fault", "connection", "connection_requests", "auth",
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

local function new_entry()
  local headers = ngx.req.get_headers(200)
  local logged = {}
  for name, value in pairs(headers) do
    if LOGGED_HEADERS[name] or name:sub(1, 2) == "x-" then logged[name] = value end
  end
  return setmetatable({
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    query = ngx.req.get_uri_args(200),
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    auth = auth_state(headers["authorization"]),
    headers = logged,
    body_bytes = 0,
  }, LOG_ENTRY)
end

-- What to do with the request: { reply = r } or { reply = r, truncate = n } or { abort = true }.
local function decide(dialect, instance, prefix, entry, uploads)
  local fault = pop_fault(entry.method, entry.path)
  entry.fault = fault
  if fault and fault.delay then ngx.sleep(fault.delay) end
  if fault and fault.reset_after then
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
  local route = dialect.route(entry.method, entry.path:sub(#prefix + 1))
  if fault and (fault.status or fault.html) then
    -- Read the body anyway, so the log shows what each failed attempt carried.
    if route and route.body then read_body(route.body, entry, uploads) end
    return { reply = fault_reply(dialect, fault) }
  end
  local reply
  if not route then
    reply = dialect.not_found()
  elseif entry.auth ~= "ok" then
    reply = dialect.unauthorized()   -- nginx discards the unread body
  else
    local body = route.body and read_body(route.body, entry, uploads)
    reply = route.handle({ instance = instance, entry = entry, query = entry.query, body = body })
  end
  return { reply = reply, truncate = fault and fault.truncate }
end

-- Serves one provider request: dialect supplies route(method, path), not_found(),
-- unauthorized() and error_reply(status); instance names its store ("siliconflow", ...);
-- prefix is the base path ("/siliconflow/v1").
function M.serve(dialect, instance, prefix)
  local entry = new_entry()
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
  -- Replies echo what clients sent (file names, metadata, ids); the key stays out even so.
  if not reply.verbatim then reply.body = M.redact(reply.body) end
  entry.status = reply.status
  if action.truncate then return send_truncated(reply, action.truncate) end
  M.send(reply)
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
