--- moonbatch.client.call: the one way an operation reaches the network: the retry loop (`call`),
-- one attempt and its outcome, the exchange through moonbatch.core (or the scheduler), the
-- request every operation builds (the provider's key headers and query added), and the error
-- context of a failed call. The operations (moonbatch.client.files, moonbatch.client.batches)
-- only describe their requests and parse their replies.
-- @module moonbatch.client.call
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local objects = require("moonbatch.objects")
local retry = require("moonbatch.retry")
local scheduler = require("moonbatch.scheduler")
local fs = require("moonbatch.fs")

local M = {}

local random_hex = fs.random_hex

--- A shallow copy of `t` (or an empty table).
function M.copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end
local copy = M.copy

-- Is `host` (as libcurl normalises it: IPv4 literals in dotted decimal, IPv6 in brackets) this
-- machine? Only 127.0.0.0/8, localhost and [::1]: a name that merely starts or ends like them
-- (127.evil.example, localhost.evil.example) is resolved by DNS and may be anywhere.
local function loopback(host)
  host = host:lower()
  if host == "localhost" or host == "[::1]" then return true end
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return a == "127" and tonumber(b) <= 255 and tonumber(c) <= 255 and tonumber(d) <= 255
end

--- Plain HTTP only to this machine, unless allowed: the key and the data would cross the network
-- in clear. The decision is taken on the URL as libcurl itself parses it (core.parse_url), so the
-- host checked is the host the transfer connects to. `base` says the URL is a base URL (paths
-- are appended to it): then a user name or password, a query and a fragment are refused too.
-- @tparam string url a base URL or a result URL
-- @tparam ?boolean allow_http true to accept plain HTTP to any host
-- @tparam ?boolean base true when `url` is a base URL
-- @treturn ?string nil, or the reason `url` is refused
function M.insecure(url, allow_http, base)
  local u, why = core.parse_url(url)
  -- quoted without what may be a user name and password
  url = url:gsub("^([^/]*//)[^/?#]*@", "%1[userinfo]@")
  if not u then return ("'%s' is not a URL libcurl can use (%s)"):format(url, tostring(why)) end
  local scheme = u.scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return ("'%s' is not an http(s) URL"):format(url) end
  if u.user or u.password or u.options then
    -- not quoted: the part before '@' may be a password
    return ("a URL with a user name or password (user:password@...) is refused (this one " ..
      "connects to %s): pass credentials as api_key or headers"):format(u.host)
  end
  if scheme == "http" and not allow_http and (u.zoneid or not loopback(u.host)) then
    return ("plain HTTP to %s would send the API key and data in clear (use https, or allow_http = true)")
      :format(u.host)
  end
  if base and (u.query or u.fragment) then
    return ("'%s' has a query or fragment: a base URL gets paths appended to it"):format(url)
  end
  return nil
end

local debug_log = os.getenv("MOONBATCH_LOG") == "debug"

-- MOONBATCH_LOG=debug: one line per exchange on stderr, printable, the key redacted (the
-- credentials' headers whole, the key wherever else it is, in any encoding)
local CREDENTIAL_HEADER = { "auth", "key", "token", "secret", "cookie", "password" }
local function log_exchange(self, req, body, res, info)
  local key = self.api_key
  local headers = {}
  for k, v in pairs(req.headers or {}) do
    local name = k:lower()
    if name == "authorization" or name == "proxy-authorization" then
      local scheme = v:match("^(%S+)%s")
      v = scheme and (scheme .. " [redacted]") or "[redacted]"
    else
      for _, word in ipairs(CREDENTIAL_HEADER) do
        if name:find(word, 1, true) then v = "[redacted]" end
      end
      v = errors.redact(v, key)
    end
    headers[#headers + 1] = k .. ": " .. v
  end
  table.sort(headers)
  local outcome = body ~= nil and ("HTTP %d"):format(res.status)
    or ("failed: %s (%s)"):format(errors.redact(tostring(res), key), tostring(info and info.kind))
  local line = ("moonbatch: debug: %s %s [%s] -> %s"):format(req.method or "GET",
    errors.redact_url(req.url, nil, key), table.concat(headers, "; "), outcome)
  io.stderr:write(errors.printable(line), "\n")
end

--- One exchange, through the scheduler inside one of its tasks, else on the client's session
-- (req.session is set when the request is built, so that the table is not resized here).
-- @tparam table self a client
-- @tparam table req core.request's options
-- @return `body, res` or `nil, msg, info` as core.request
function M.perform(self, req)
  local body, res, info
  if scheduler.current() then
    req.session = nil
    body, res, info = scheduler.request(req)
  else
    req.session = self.session
    body, res, info = core.request(req)
  end
  if debug_log then log_exchange(self, req, body, res, info) end
  return body, res, info
end

--- A wait between attempts or polls: other tasks run meanwhile inside a scheduler (unless the
-- caller gave its own sleep, as tests do).
-- @tparam table self a client
-- @tparam number seconds
function M.pause(self, seconds)
  if scheduler.current() and self.sleep == core.sleep then
    scheduler.sleep(seconds)
  else
    self.sleep(seconds)
  end
end

-- one attempt: the operation's value, or nil and the fields of an error
local function attempt(op, timeout, headers)
  local body, res, info = op.run(timeout, headers)
  if body == nil and type(res) ~= "table" then
    -- the transfer failed: res is the message, info says how (a reply of JSON null has res)
    return nil, { kind = info.kind, message = res, curl_code = info.curl_code,
                  status = info.status }
  end
  local status = res.status
  if status >= 200 and status < 300 then
    if res.json_error then
      return nil, { kind = "decode", status = status, body = body, headers = res.headers,
                    message = "reply is not valid JSON (" .. tostring(res.json_error) .. ")" }
    end
    if not res.json and op.expects_json ~= false then
      return nil, { kind = "decode", status = status, body = body, headers = res.headers,
                    message = "reply is not JSON" .. (body == "" and " (empty body)" or "") }
    end
    local value, fields = objects.parse_decoded(op.parse, body, res)
    if value ~= nil then return value end
    fields.status, fields.body, fields.headers = status, body, res.headers
    return nil, fields
  end
  local said = errors.parse_body(body, res)
  return nil, {
    kind = said.recognized and "api" or "http", status = status, message = said.message,
    code = said.code, type = said.type, param = said.param, body = body, headers = res.headers,
    provider_retryable = op.provider.retryable(body, res),
  }
end

--- The error context of a failed call on `self` (every errors.make of the client goes through
-- it: the key to redact, the provider's request-id headers and path templates).
-- @tparam table self a client
-- @tparam string method
-- @tparam string path
-- @tparam[opt] string url (default base_url .. path)
-- @treturn table
function M.error_context(self, method, path, url)
  return { provider = self.provider.name, method = method, path = path,
           url = url or (self.base_url .. path), secret = self.api_key,
           request_id_headers = self.provider.request_id_headers, own_segments = self.own_segments }
end

local function context(self, op)
  return M.error_context(self, op.method, op.path)
end

--- Run `op` with retries (the loop every operation goes through).
-- `headers` given to op.run is the call's, the same table on every attempt: never modified.
-- @tparam table self a client
-- @tparam table op `{method, path, run = function(timeout, headers), parse = function(body, res),
-- idempotency_key, needs_key, expects_json}`
-- @return the value `op.parse` made, or `nil, msg, info`
function M.call(self, op)
  local p = self.provider
  op.provider = p
  if not self.api_key and op.needs_key ~= false then
    return nil, errors.make(context(self, op), { kind = "validation", attempts = 0, message =
      ("no API key: set %sMOONBATCH_API_KEY, or pass api_key"):format(p.key_env and p.key_env .. " or " or "") })
  end
  local headers = self.headers
  if op.method == "POST" then
    -- one key per call, the same on every attempt, so a retried create is the same request; a
    -- caller that may repeat the call after a crash passes its own (op.idempotency_key)
    headers = copy(self.headers)
    headers["Idempotency-Key"] = op.idempotency_key or ("moonbatch-" .. random_hex(16))
  end
  local started = self.clock()
  local ends = self.deadline and started + self.deadline
  local attempts = 0
  while true do
    attempts = attempts + 1
    local timeout = self.timeout
    if ends then
      timeout = math.min(timeout, ends - self.clock())
    end
    local value, fields
    if timeout <= 0 then
      fields = { kind = "timeout", message = ("deadline of %gs reached"):format(self.deadline) }
    else
      value, fields = attempt(op, timeout, headers)
      if value ~= nil then return value end
    end
    fields.attempts = attempts
    fields.retryable = retry.retryable(fields, fields.headers)
    fields.retry_after = retry.server_wait(fields.headers)
    if not fields.retryable or attempts > self.max_retries or timeout <= 0 then
      return nil, errors.make(context(self, op), fields)
    end
    local wait, demanded = retry.wait(attempts - 1, fields.headers, self.random)
    if not wait then
      fields.retry_after = demanded
      fields.message = (fields.message or "") ..
        (" (server asks to wait %gs, more than %gs)"):format(demanded, retry.max_wait)
      return nil, errors.make(context(self, op), fields)
    end
    if ends and self.clock() + wait > ends then
      fields.message = (fields.message or fields.kind) ..
        (" (deadline of %gs leaves no time to retry)"):format(self.deadline)
      return nil, errors.make(context(self, op), fields)
    end
    M.pause(self, wait)
  end
end


--- The call's headers with the key in the provider's headers (the one place the key header is
-- made: the provider's `auth_headers`; made once per client for the calls that add none).
-- @tparam table self a client
-- @tparam table headers the call's headers (never modified)
-- @treturn table
function M.with_key(self, headers)
  if headers == self.headers then
    if not self.keyed_headers then
      self.keyed_headers = M.with_key(self, copy(headers))
    end
    return self.keyed_headers
  end
  local h = copy(headers)
  if self.api_key then
    for k, v in pairs(self.provider.auth_headers(self.api_key)) do h[k] = v end
  end
  return h
end

--- The generic request of one attempt (core.request's options): `fields` (method, url, and
-- json, form or output) with the client's transfer options, the key headers and the provider's
-- query (Azure's api-version) added.
-- @tparam table self a client
-- @tparam table fields the request's own fields
-- @tparam number timeout this attempt's
-- @tparam table headers the call's
-- @treturn table the request
function M.request(self, fields, timeout, headers)
  fields.headers = fields.headers or M.with_key(self, headers)
  fields.timeout, fields.connect_timeout = timeout, self.connect_timeout
  fields.cainfo, fields.max_reply_bytes = self.cainfo, self.max_reply_bytes
  fields.low_speed_limit, fields.low_speed_time = self.low_speed_limit, self.low_speed_time
  if fields.query == nil then fields.query = self.provider.query(nil, self) end
  fields.session = self.session
  return fields
end

--- An operation's `run` for a GET, POST or DELETE on a path below base_url (json: a body the
-- provider built whole).
-- @tparam table self a client
-- @tparam string method
-- @tparam string path
-- @tparam[opt] table query
-- @tparam[opt] table json
-- @treturn function run(timeout, headers)
function M.exchange(self, method, path, query, json)
  local url = self.base_url .. path
  query = self.provider.query(query, self)
  return function(timeout, headers)
    return M.perform(self, M.request(self, {
      method = method, url = url, query = query, json = json,
    }, timeout, headers))
  end
end

--- `id` as one path segment: every byte but RFC 3986's unreserved ones percent-encoded ("/", "?",
-- "#", "%", non-ASCII...), and the dot segments "." and ".." refused, since a server (or a proxy
-- before it) may resolve them even encoded ("/files/.." is the folder above /files). libcurl is
-- told to send the path as it is (CURLOPT_PATH_AS_IS). Raises naming the argument.
function M.escape_id(who, id)
  args.string(who, 1, "id", id)
  if id == "." or id == ".." then
    error(("%s: bad argument #1 'id' ('%s' is not an id: a path segment of dots)"):format(who, id), 3)
  end
  return (id:gsub("[^A-Za-z0-9%-._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- One call of `method` on `path` below base_url, its reply made by `parse` (files.get,
-- batches.get, batches.cancel, ...).
-- @tparam table self a client
-- @tparam string method
-- @tparam string path
-- @tparam function parse
-- @return the value, or `nil, msg, info`
function M.on_path(self, method, path, parse)
  return M.call(self, { method = method, path = path, run = M.exchange(self, method, path), parse = parse })
end

--- An iterator over every item of the pages `list(after)` fetches (files.each, batches.each);
-- it raises when a page fails.
-- @tparam table self a client
-- @tparam function list function(after) fetching one page
-- @tparam string what "files" or "batches"
-- @tparam string path the list's path (for the error)
-- @treturn function the iterator
function M.each(self, list, what, path)
  local page, i, after, done = nil, 0, nil, false
  return function()
    while true do
      if page and i < #page.data then
        i = i + 1
        return page.data[i]
      end
      if done then return nil end
      local msg
      page, msg = list(after)
      if not page then error(msg, 0) end
      i = 0
      if not page.has_more then
        done = true
      elseif #page.data == 0 then
        error(("moonbatch: %s GET %s: the server says more %s follow but sent none")
          :format(self.provider.name, path, what), 0)
      else
        after = page.last_id
      end
    end
  end
end

return M
