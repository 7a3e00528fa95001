--- moonbatch.errors: one error convention: `nil, msg, info` with a one-line msg.
-- @module moonbatch.errors
local cjson = require("cjson")

local errors = {}

local BODY_START = 512 -- bytes of the raw body kept in info.body
local MESSAGE_LINE = 300 -- characters of the detail in msg
local MESSAGE_LIMIT = 8192 -- bytes of the provider's message kept in info.message

-- Redaction. The key must never appear in anything built from outside text (a provider's
-- message, body, headers, URLs), in any encoding a reply can carry it in, nor any piece of it.
-- The rule (README, Security):
-- * a key of SHORT_KEY (8) characters or more: every run of PIECE (8) or more consecutive
--   characters of it is redacted wherever it appears, and so is a prefix of 4 or more characters
--   at the very end of a text (the key cut by someone), in any letter case; it is recognised raw,
--   JSON-escaped (`\/`, `\uXXXX` of any character, escaped twice), percent-encoded (either
--   case, `%25XX` twice, `%uXXXX`), as HTML character references, `\xNN`, `\u{XX}`,
--   `\U0000XXXX`, and as base64 (standard or URL alphabet, any alignment: "Bearer KEY" encoded
--   for Basic auth) or hex;
-- * a shorter key ("k", "o" on local servers) would match inside ordinary words: it is redacted
--   only where it stands as a whole token (no letter or digit either side), in any encoding.
-- The library's own words (kind, method, provider, the path's fixed segments) are never redacted.
local SHORT_KEY, PIECE, TAIL = 8, 8, 4
errors.SHORT_KEY = SHORT_KEY
local REDACTED = "[redacted]"

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local NAMED_ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", sol = "/",
                         plus = "+", colon = ":", period = ".", lowbar = "_", hyphen = "-" }
local JSON_NAMED = { n = "\n", r = "\r", t = "\t", b = "\b", f = "\f" }

-- the escape starting at s[i], if any: its decoded bytes and the position of its last byte
local function escape_at(s, i)
  local c = s:sub(i, i)
  if c == "\\" then
    local e = s:find("[^\\]", i + 1) -- past a run of backslashes: a string escaped again
    if not e then return nil end
    local nx = s:sub(e, e)
    local braced, after = s:match("^u{(%x%x?%x?%x?%x?%x?)}()", e)
    if braced then
      local cp = tonumber(braced, 16)
      if cp < 0x10000 and (cp < 0xD800 or cp > 0xDFFF) then return utf8_char(cp), after - 1 end
    end
    local long = s:match("^U0000(%x%x%x%x)", e)
    if long then
      local cp = tonumber(long, 16)
      if cp < 0xD800 or cp > 0xDFFF then return utf8_char(cp), e + 8 end
    end
    if nx == "u" and s:find("^%x%x%x%x", e + 1) then
      local cp = tonumber(s:sub(e + 1, e + 4), 16)
      if cp < 0xD800 or cp > 0xDFFF then return utf8_char(cp), e + 4 end
    elseif nx == "x" and s:find("^%x%x", e + 1) then
      return string.char(tonumber(s:sub(e + 1, e + 2), 16)), e + 2
    elseif JSON_NAMED[nx] then
      return JSON_NAMED[nx], e
    elseif nx:find("^%p") then
      return nx, e
    end
  elseif c == "%" then
    local hex = s:match("^%%25(%x%x)", i)
    if hex then return string.char(tonumber(hex, 16)), i + 4 end
    hex = s:match("^%%(%x%x)", i)
    if hex then return string.char(tonumber(hex, 16)), i + 2 end
    hex = s:match("^%%[uU](%x%x%x%x)", i)
    if hex then return utf8_char(tonumber(hex, 16)), i + 5 end
  elseif c == "&" then
    local num, last = s:match("^&#(%d+);?()", i)
    if num and #num <= 7 then
      local cp = tonumber(num)
      if cp < 0x10000 then return utf8_char(cp), last - 1 end
    end
    num, last = s:match("^&#[xX](%x+);?()", i)
    if num and #num <= 6 then
      local cp = tonumber(num, 16)
      if cp < 0x10000 then return utf8_char(cp), last - 1 end
    end
    local name
    name, last = s:match("^&(%a+);()", i)
    if name and NAMED_ENTITIES[name] then return NAMED_ENTITIES[name], last - 1 end
  end
end

-- decode every escape of `s` once: the decoded text, and for each of its bytes the first and
-- last position in the original text (through from0/to0, the spans of an earlier pass)
local function decode_once(s, from0, to0)
  local out, from, to, n = {}, {}, {}, 0
  local i, len, changed = 1, #s, false
  while i <= len do
    local text, last = nil, i
    local b = s:byte(i)
    if b == 92 or b == 37 or b == 38 then text, last = escape_at(s, i) end -- \ % &
    if text then
      changed = true
    elseif b == 92 then -- a run of backslashes that escapes nothing we decode: as it is, whole
      last = (s:find("[^\\]", i + 1) or len + 1) - 1
      for k = i, last do
        n = n + 1
        out[n], from[n], to[n] = "\\", from0[k], to0[k]
      end
      text = ""
    else
      text, last = s:sub(i, i), i
    end
    for k = 1, #text do
      n = n + 1
      out[n], from[n], to[n] = text:sub(k, k), from0[i], to0[last]
    end
    i = last + 1
  end
  return table.concat(out), from, to, changed
end

-- `s` with its escapes decoded (up to three layers), and each decoded byte's span in `s`
local function decoded(s)
  local from, to = {}, {}
  for i = 1, #s do from[i], to[i] = i, i end
  if not s:find("[\\%%&]") then return s, from, to end
  for _ = 1, 3 do
    local changed
    s, from, to, changed = decode_once(s, from, to)
    if not changed or not s:find("[\\%%&]") then break end
  end
  return s, from, to
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- base64 of `s` (whole 3-byte groups only: no padding)
local function base64(s)
  local out = {}
  for i = 1, #s - 2, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + b * 256 + c
    for shift = 3, 0, -1 do
      local v = math.floor(n / 64 ^ shift) % 64
      out[#out + 1] = B64:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

-- the texts a key can appear as once decoded: itself, its base64 at each alignment (standard
-- and URL alphabets), its hex
local targets_cache = {} -- per key: one or two keys in a process
local function targets(secret)
  local cached = targets_cache[secret]
  if cached then return cached end
  local list = { secret }
  if secret:find(" ", 1, true) then list[#list + 1] = (secret:gsub(" ", "+")) end
  if #secret >= SHORT_KEY then
    for skip = 0, 2 do
      local b = base64(secret:sub(skip + 1))
      if #b >= PIECE then
        list[#list + 1] = b
        local url = b:gsub("[+/]", { ["+"] = "-", ["/"] = "_" })
        if url ~= b then list[#list + 1] = url end
      end
    end
    list[#list + 1] = (secret:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
    list[#list + 1] = (secret:gsub(".", function(c) return ("%02X"):format(c:byte()) end))
  end
  if #secret >= SHORT_KEY then
    local seen, lowered = {}, {}
    for _, t in ipairs(list) do -- matched whatever the case
      t = t:lower()
      if not seen[t] then seen[t], lowered[#lowered + 1] = true, t end
    end
    list = lowered
  end
  local pieces = {}
  for _, t in ipairs(list) do
    for i = 1, #t - PIECE + 1 do
      local p = t:sub(i, i + PIECE - 1)
      pieces[p] = pieces[p] or {}
      table.insert(pieces[p], t)
    end
  end
  cached = { list = list, pieces = pieces }
  targets_cache[secret] = cached
  return cached
end

-- add to `spans` the spans {a, b} (positions in the original text, through from/to) where the
-- text `d` carries the key or a piece of it
local function scan(d, from, to, secret, t, spans)
  if #secret < SHORT_KEY then
    -- whole tokens only, as written
    for _, target in ipairs(t.list) do
      local i = 1
      while true do
        local a, b = d:find(target, i, true)
        if not a then break end
        if not d:sub(a - 1, a - 1):find("^%w") and not d:sub(b + 1, b + 1):find("^%w") then
          spans[#spans + 1] = { from[a], to[b] }
        end
        i = a + 1
      end
    end
    return
  end
  d = d:lower() -- a server may change the key's case
  local n = #d
  for i = 1, n - PIECE + 1 do
    local found = t.pieces[d:sub(i, i + PIECE - 1)]
    if found then
      local j = i + PIECE - 1
      for _, target in ipairs(found) do
        while j < n and target:find(d:sub(i, j + 1), 1, true) do j = j + 1 end
      end
      spans[#spans + 1] = { from[i], to[j] }
    end
  end
  -- a text ending in the key's first characters: the key cut by someone
  local start = t.list[1]
  for k = math.min(n, #start) - 1, TAIL, -1 do
    if d:sub(n - k + 1) == start:sub(1, k) then
      spans[#spans + 1] = { from[n - k + 1], to[n] }
      break
    end
  end
end

-- the spans {a, b} of `s` that carry the key or a piece of it: in `s` as it is, and once its
-- escapes are decoded
local function key_spans(s, secret)
  local spans = {}
  local t = targets(secret)
  local d, from, to = decoded(s)
  scan(d, from, to, secret, t, spans)
  if d ~= s then
    local same = {}
    for i = 1, #s do same[i] = i end
    scan(s, same, same, secret, t, spans)
  end
  return spans
end

--- `s` without the key `secret`: every occurrence, encoding and piece of it, as the rule above
-- says, is replaced by "[redacted]". Anything but a non-empty string `s` is returned as it is.
function errors.redact(s, secret)
  if type(s) ~= "string" or type(secret) ~= "string" or secret == "" or s == "" then return s end
  local spans = key_spans(s, secret)
  if #spans == 0 then return s end
  table.sort(spans, function(x, y) return x[1] < y[1] end)
  local out, i = {}, 1
  for _, span in ipairs(spans) do
    if span[2] >= i then
      if span[1] >= i then
        out[#out + 1] = s:sub(i, span[1] - 1)
        out[#out + 1] = REDACTED
      end
      i = span[2] + 1
    end
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

-- the first `limit` bytes of `s` once redacted: redacted first (a window a little larger than
-- `limit`, so that a key at the cut is seen whole), then cut, then redacted again (a cut
-- "[redacted]" is harmless; a key's start at the cut is not)
local function redact_cut(s, secret, limit)
  if type(s) ~= "string" then return s end
  if secret and #s > limit then
    s = s:sub(1, limit + 24 * #secret + 16)
  end
  s = errors.redact(s, secret)
  if #s > limit then s = errors.redact(s:sub(1, limit), secret) end
  return s
end
errors.redact_cut = redact_cut

-- the fixed segments of the library's own paths ("/files/{id}/content", "/batches/{id}/cancel"):
-- never redacted, whatever the key; a provider's path templates add theirs (errors.segments)
local OWN_SEGMENTS = { [""] = true, v1 = true, files = true, upload = true, batches = true,
                       content = true, cancel = true }

--- The set of fixed segments of some path templates, with the library's own: what errors.make
-- (ctx.own_segments) never redacts in a path.
-- @tparam table paths a list of paths such as "/batch/jobs" (nil entries are skipped)
-- @treturn table a set {segment = true}
function errors.segments(paths)
  local set = {}
  for k in pairs(OWN_SEGMENTS) do set[k] = true end
  for _, path in pairs(paths) do
    for segment in tostring(path):gmatch("[^/?]+") do set[segment] = true end
  end
  return set
end

-- a path or URL: a long key anywhere; a short one only as a whole segment or query value that is
-- not one of the path templates' own (`own`, default the library's)
local function redact_path(s, secret, own)
  if type(s) ~= "string" or type(secret) ~= "string" or secret == "" then return s end
  if #secret >= SHORT_KEY then return errors.redact(s, secret) end
  own = own or OWN_SEGMENTS
  return (s:gsub("([^/?&=#;]*)", function(segment)
    if own[segment] then return segment end
    return errors.redact(segment, secret)
  end))
end

local function redact_url(url, path, secret, own)
  if type(url) ~= "string" or type(secret) ~= "string" or secret == "" then return url end
  if type(path) == "string" and #path < #url and url:sub(-#path) == path then
    -- the base URL is the caller's own setting; only the path's ids may come from outside
    local base = url:sub(1, #url - #path)
    if #secret >= SHORT_KEY then base = errors.redact(base, secret) end
    return base .. redact_path(path, secret, own)
  end
  return redact_path(url, secret, own)
end

--- errors.redact_url(url, path, secret): a URL (or path) without the key: a long key anywhere,
-- a short one as a whole token of a segment or query value, never the library's own segments.
-- `path`, when given, is the URL's end the library built, the rest the caller's own base URL.
errors.redact_url = redact_url

-- Printable text. Anything from the network may carry terminal control sequences (a window
-- title, a cleared screen, the clipboard through OSC 52, an 8-bit CSI) or bidi overrides that
-- reorder what the user reads. errors.printable shows each as a visible escape:
-- C0 controls and DEL as \xNN (newline and tab kept when `keep_lines`), C1 controls
-- (U+0080-U+009F), bidi controls (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069) and
-- line separators (U+2028, U+2029) as \u{XXXX}, and bytes that are not UTF-8 as \xNN.

-- the code point of the UTF-8 sequence at s[i] and its length, or nil when it is not UTF-8
local function utf8_at(s, i)
  local c = s:byte(i)
  local n, cp, min
  if c < 0x80 then return c, 1
  elseif c >= 0xC2 and c <= 0xDF then n, cp, min = 2, c - 0xC0, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, cp, min = 3, c - 0xE0, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, cp, min = 4, c - 0xF0, 0x10000
  else return nil end
  for k = 1, n - 1 do
    local cc = s:byte(i + k)
    if not cc or cc < 0x80 or cc > 0xBF then return nil end
    cp = cp * 64 + (cc - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return cp, n
end

-- code points above 0x7F a terminal acts on or that reorder text
local function invisible(cp)
  return (cp >= 0x80 and cp <= 0x9F) or cp == 0x061C or cp == 0x200E or cp == 0x200F
    or (cp >= 0x2028 and cp <= 0x202E) or (cp >= 0x2066 and cp <= 0x2069)
end

local function escape_text(s, keep_lines, json)
  local out, i, start, n = {}, 1, 1, #s
  local function put(text, len)
    out[#out + 1] = s:sub(start, i - 1)
    out[#out + 1] = text
    i = i + len
    start = i
  end
  while i <= n do
    local c = s:byte(i)
    if c == 0x7F and json then
      put("\\u007f", 1)
    elseif c < 0x20 or c == 0x7F then
      if json or (keep_lines and (c == 10 or c == 9)) then i = i + 1
      else put(("\\x%02x"):format(c), 1) end
    elseif c < 0x80 then
      i = i + 1
    else
      local cp, len = utf8_at(s, i)
      if not cp then
        put(json and ("\\u%04x"):format(c) or ("\\x%02x"):format(c), 1)
      elseif invisible(cp) then
        put(json and ("\\u%04x"):format(cp) or ("\\u{%04x}"):format(cp), len)
      else
        i = i + len
      end
    end
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

--- `s` safe to write to a terminal: every control character and bidi override as a visible
-- escape (see above). `keep_lines`: newlines and tabs stay (several lines of one's own text).
function errors.printable(s, keep_lines)
  s = tostring(s)
  if not s:find("[%c\128-\255]") then return s end
  return escape_text(s, keep_lines, false)
end

--- JSON text (as lua-cjson or the CLI's encoder writes it, C0 controls already escaped) with
-- DEL, C1 controls, bidi overrides and bytes that are not UTF-8 as \u escapes: still valid JSON,
-- now safe on a terminal.
function errors.printable_json(s)
  if not s:find("[\127-\255]") then return s end
  return escape_text(s, false, true)
end

-- a cut at byte `n` or before, never inside a UTF-8 sequence
local function cut(s, n)
  if #s <= n then return s end
  while n > 0 and s:byte(n + 1) >= 0x80 and s:byte(n + 1) <= 0xBF do n = n - 1 end
  return s:sub(1, n)
end

-- the one-line, printable detail of msg: redacted before it is cut
local function one_line(s, secret)
  s = redact_cut(tostring(s), secret, MESSAGE_LIMIT)
  s = s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  s = errors.printable(s)
  if #s > MESSAGE_LINE then s = cut(s, MESSAGE_LINE - 3) .. "..." end
  return errors.redact(s, secret)
end

local function text(v)
  if v == nil or v == cjson.null then return nil end
  if type(v) == "table" then return nil end
  if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2^53 then
    return ("%d"):format(v) -- lua-cjson decodes 50505 as 50505.0
  end
  return tostring(v)
end

--- What a provider's error reply says, whatever its shape:
-- {"error": {"message", "type", "param", "code"}} (OpenAI, Together files),
-- {"error": "string"} (Together batches), {"code", "message", "data"} (SiliconFlow),
-- a JSON string ("Invalid token"), an HTML page from a proxy, plain text, or nothing.
-- Returns a table {message, code, type, param, recognized}; `recognized` is true when the body
-- is one of the provider error shapes (JSON), false for HTML, plain text or an empty body.
-- @param body the reply's body, decoded or raw
-- @tparam table res the reply (`status`, `headers`, `json`)
-- @treturn table `{message, code, type, param, recognized}`
function errors.parse_body(body, res)
  local json = res and res.json
  if type(body) == "table" then
    local e = body.error
    if type(e) == "table" then
      return { message = text(e.message), code = text(e.code), type = text(e.type),
               param = text(e.param), recognized = true }
    elseif type(e) == "string" then
      return { message = e, recognized = true }
    elseif body.message ~= nil or body.code ~= nil then
      local message = text(body.message)
      local data = text(body.data)
      if data and data ~= message and data ~= "" then
        message = message and (message .. " (" .. data .. ")") or data
      end
      return { message = message, code = text(body.code), recognized = true }
    end
    return { recognized = false }
  elseif type(body) == "string" then
    if json then
      return { message = body, recognized = true }
    end
    local title = body:match("<[Tt][Ii][Tt][Ll][Ee]>(.-)</") or body:match("<[Hh]1>(.-)</")
    if title then
      return { message = title, recognized = false }
    end
    local first = body:match("^%s*([^\r\n]+)")
    return { message = first, recognized = false }
  end
  return { recognized = false }
end

-- the start of the body, redacted (a decoded table re-encoded as JSON: its values are redacted
-- as they read once escaped, `\/` and `\uXXXX` included), then cut
local function body_start(body, secret)
  if type(body) ~= "string" then
    if body == nil then return nil end
    local ok, encoded = pcall(cjson.encode, body)
    if not ok then return nil end
    body = encoded
  end
  return redact_cut(body, secret, BODY_START)
end

-- the reply headers naming the request when the provider names none
local request_id_headers = { "x-request-id", "request-id" }

--- Build `msg, info` for a failed call.
-- ctx: {provider, method, path, url, secret, request_id_headers (the provider's; the first
-- found names info.request_id)}; fields: kind, status, message, code, type, param,
-- retryable, retry_after, attempts, body, headers.
-- Only what came from outside is redacted (message, code, type, param, body, request_id, the
-- ids in path and url): kind, method and provider are the library's own and kept as they are;
-- a short key is not looked for in the messages of local failures (kinds validation and io).
-- msg is one printable line (errors.printable), redacted before it is cut.
-- @tparam table ctx
-- @tparam table fields
-- @treturn string msg, one line: "moonbatch: PROVIDER METHOD PATH: what happened"
-- @treturn table info: `kind`, `status`, `code`, `type`, `param`, `message`, `request_id`,
-- `retryable`, `retry_after`, `attempts`, `body` (its first 512 bytes), `method`, `url`
function errors.make(ctx, fields)
  local secret = ctx.secret
  if type(secret) ~= "string" or secret == "" then secret = nil end
  -- a local failure (a file's lines, a refused setting) is the library's own text: a short key
  -- would only hit its words ("line 1"); a long one is still taken out
  if secret and #secret < SHORT_KEY and (fields.kind == "validation" or fields.kind == "io") then
    secret = nil
  end
  local function outside(v)
    if type(v) ~= "string" then return v end
    return redact_cut(v, secret, MESSAGE_LIMIT)
  end
  local info = {
    kind = fields.kind,
    status = fields.status,
    code = outside(fields.code),
    type = outside(fields.type),
    param = outside(fields.param),
    message = outside(fields.message),
    retryable = fields.retryable or false,
    retry_after = fields.retry_after,
    attempts = fields.attempts,
    body = body_start(fields.body, secret),
    method = ctx.method,
    url = redact_url(ctx.url, ctx.path, secret, ctx.own_segments),
    path = redact_path(ctx.path, secret, ctx.own_segments),
    curl_code = fields.curl_code,
  }
  if fields.headers then
    for _, name in ipairs(ctx.request_id_headers or request_id_headers) do
      if fields.headers[name] then
        info.request_id = outside(fields.headers[name])
        break
      end
    end
  end
  local detail
  if info.status and info.status >= 300 and (info.kind == "http" or info.kind == "api") then
    detail = "HTTP " .. info.status
    if info.message and info.message ~= "" then detail = detail .. ": " .. info.message end
  else
    detail = info.message or info.kind
  end
  local msg = ("moonbatch: %s %s %s: %s"):format(ctx.provider, ctx.method,
    errors.printable(info.path), one_line(detail, secret))
  return msg, info
end

return errors
