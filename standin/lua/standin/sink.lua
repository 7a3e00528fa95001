-- The benchmark sink (scripts/bench): provider-shaped answers at the least server cost, so that a
-- benchmark measures the client and not the stand-in. Not logged, no faults, nothing stored.
--
--   POST /_sink/<dialect>/v1/files  reads the multipart upload to its end and drops it; answers
--                                   the dialect's File (bytes = the file part's length)
--   GET  /_sink/<dialect>/v1/files  a fixed page of 10 files, as the dialect lists them
--
-- Dialects: siliconflow (the {code, message, status, data} envelope) and openai. Both take
-- `Authorization: Bearer KEY`, the stand-in's key.
local cjson = require("cjson.safe").new()

local M = {}

local CHUNK = 1048576
local KEEP = 4096 -- bytes of the body's end kept to find the closing boundary

local key = os.getenv("MOONBATCH_STANDIN_KEY") or "sk-standin"
local CREATED = 1767225600 -- 2026-01-01T00:00:00Z: fixed, so every list reply is the same bytes

local function str(s)
  return (cjson.encode(s):gsub("\\/", "/"))
end

-- The page of 10 files each dialect answers, built once.
local pages = {}
do
  local sf, oa = {}, {}
  for i = 1, 10 do
    local sf_id, oa_id = ("file-benchsink%02d"):format(i), ("file-BenchSink%014d"):format(i)
    local bytes, lines = 1048576 * i + 17 * i, 1000 * i
    local created = CREATED - 3600 * i
    sf[i] = ('{"id":"%s","object":"file","bytes":%d,"created_at":%d,"filename":"requests-%02d.jsonl",'
      .. '"purpose":"batch","line_count":%d}'):format(sf_id, bytes, created, i, lines)
    oa[i] = ('{"id":"%s","object":"file","bytes":%d,"created_at":%d,"expires_at":%d,'
      .. '"filename":"requests-%02d.jsonl","purpose":"batch","status":"processed","status_details":null}')
      :format(oa_id, bytes, created, created + 30 * 86400, i)
  end
  pages.siliconflow = '{"code":20000,"message":"Ok","status":true,"data":{"data":['
    .. table.concat(sf, ",") .. '],"object":"file"}}'
  pages.openai = '{"object":"list","data":[' .. table.concat(oa, ",")
    .. '],"first_id":"file-BenchSink00000000000001","last_id":"file-BenchSink00000000000010","has_more":false}'
end

local REASONS = { [200] = "OK", [400] = "Bad Request", [401] = "Unauthorized" }

-- raw: the raw request socket of a chunked upload, where the reply must go by hand
local function reply(status, body, raw)
  if raw then
    raw:send(("HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
      .. "Connection: close\r\n\r\n%s"):format(status, REASONS[status] or "", #body, body))
    return ngx.exit(ngx.OK)
  end
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

local function unauthorized(dialect)
  if dialect == "siliconflow" then return reply(401, '"Invalid token"') end
  return reply(401, '{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error",'
    .. '"param":null,"code":"invalid_api_key"}}')
end

local function bad_request(dialect, message, raw)
  if dialect == "siliconflow" then
    return reply(400, '{"code":20012,"message":' .. str(message) .. ',"data":null}', raw)
  end
  return reply(400, '{"error":{"message":' .. str(message)
    .. ',"type":"invalid_request_error","param":null,"code":null}}', raw)
end

-- A chunked body (streaming clients such as the openai npm SDK send one) is decoded here from the
-- raw connection, rather than spooled by nginx to a temporary file: the reply then goes out on
-- the raw socket too (see reply()), with Connection: close.
local function read_chunked(sock)
  local head, tail, total = nil, "", 0
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local size = tonumber(line:match("^%x+") or "", 16)
    if not size then return nil, "bad chunk size line" end
    if size == 0 then
      repeat -- trailer fields, up to the empty line
        line, err = sock:receive("*l")
        if not line then return nil, err end
      until line == ""
      return head or "", tail, total
    end
    local left = size
    while left > 0 do
      local data, recv_err = sock:receive(left < CHUNK and left or CHUNK)
      if not data then return nil, recv_err end
      left = left - #data
      total = total + #data
      if not head or #head < KEEP then head = (head or "") .. data end
      tail = (#data >= KEEP) and data:sub(-KEEP) or (tail .. data):sub(-KEEP)
    end
    if sock:receive(2) ~= "\r\n" then return nil, "bad chunk end" end
  end
end

-- Reads the whole body, keeping its start (at least the first chunk) and last KEEP bytes;
-- returns head, tail, total bytes and, for a chunked body, the raw socket.
local function read_body()
  local length = tonumber(ngx.var.http_content_length)
  if not length then
    local te = ngx.var.http_transfer_encoding
    if not (te and te:lower():find("chunked", 1, true)) then return "", "", 0 end
    local sock, err = ngx.req.socket(true)
    if not sock then return nil, err end
    local head, tail, total = read_chunked(sock)
    return head, tail, total, sock
  end
  local sock, err = ngx.req.socket()
  if not sock then return nil, err end
  local head, tail, left = nil, "", length
  while left > 0 do
    local data, recv_err = sock:receive(left < CHUNK and left or CHUNK)
    if not data then return nil, recv_err end
    left = left - #data
    head = head or data
    tail = (#data >= KEEP) and data:sub(-KEEP) or (tail .. data):sub(-KEEP)
  end
  return head or "", tail, length
end

-- The file part's name and length: its data runs from the end of its part headers (in head)
-- to the next delimiter, which is in tail unless a part of more than KEEP bytes follows it.
local function file_part(head, tail, total, boundary)
  local at = head:find('filename="', 1, true)
  if not at then return nil end
  local filename = head:match('^filename="([^"]*)"', at)
  local header_end = head:find("\r\n\r\n", at, true)
  if not header_end then return nil end
  local data_start = header_end + 3 -- offset of the first data byte in the body
  local tail_start = total - #tail  -- offset of tail's first byte
  local delimiter = "\r\n--" .. boundary
  local from = math.max(1, data_start - tail_start + 1)
  local close_at = tail:find(delimiter, from, true)
  if not close_at then return nil end
  return filename, tail_start + close_at - 1 - data_start
end

local function upload(dialect)
  local boundary = (ngx.var.content_type or ""):match("boundary=\"?([^\";]+)")
  if not boundary then return bad_request(dialect, "request Content-Type isn't multipart/form-data") end
  local head, tail, total, raw = read_body()
  if not head then return ngx.exit(444) end -- the client went away
  local filename, bytes = file_part(head, tail, total, boundary)
  if not filename then return bad_request(dialect, "file is required", raw) end
  local now = ngx.time()
  local id = ("file-sink%08x%06x"):format(now, math.random(0, 0xffffff))
  if dialect == "siliconflow" then
    return reply(200, ('{"code":20000,"message":"Ok","status":true,"data":{"id":"%s","object":"file",'
      .. '"bytes":%d,"createdAt":%d,"filename":%s,"purpose":"batch"}}'):format(id, bytes, now, str(filename)), raw)
  end
  return reply(200, ('{"id":"%s","object":"file","bytes":%d,"created_at":%d,"expires_at":%d,"filename":%s,'
    .. '"purpose":"batch","status":"processed","status_details":null}')
    :format(id, bytes, now, now + 30 * 86400, str(filename)), raw)
end

function M.serve()
  local dialect, rest = ngx.var.uri:match("^/_sink/([%w%-]+)/v1(/.*)$")
  if not pages[dialect] or rest ~= "/files" then
    return reply(404, '{"error":"the sink has /_sink/siliconflow/v1/files and /_sink/openai/v1/files"}')
  end
  if ngx.var.http_authorization ~= "Bearer " .. key then return unauthorized(dialect) end
  local method = ngx.req.get_method()
  if method == "GET" then return reply(200, pages[dialect]) end
  if method == "POST" then return upload(dialect) end
  return reply(405, '{"error":"method not allowed"}')
end

return M
