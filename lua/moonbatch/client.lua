--- moonbatch.client: one client for every provider: options, the retry loop, and the operations.
-- Each operation is one exchange through moonbatch.core, repeated by `call` as the README's
-- "Retries" section says. `moonbatch.new(opts)` makes a client; its operations are the functions
-- below, called as `client.files.upload{...}`, `client.batches.wait(id)`, `client.close()`.
--
-- Every operation returns its value, or `nil, msg, info` when it cannot succeed (`msg` one line,
-- `info.kind` one of "io", "network", "timeout", "api", "http", "decode", "validation"; see
-- moonbatch.errors); misuse (a wrong type, a missing or unknown option) raises, naming the
-- argument, before any byte is sent. Objects are the canonical shapes of moonbatch.objects.
-- @module moonbatch.client
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local objects = require("moonbatch.objects")
local retry = require("moonbatch.retry")
local providers = require("moonbatch.providers")
local scheduler = require("moonbatch.scheduler")
local validate = require("moonbatch.validate")

local client = {}

--- Every provider's name (moonbatch.providers.list: the table names() fills and returns).
client.providers = providers.list

-- numeric options: finite, in range (NaN, infinities, 0 where it means nothing are refused)
local option_types = {
  provider = "string", api_key = "string", base_url = "string", timeout = args.TIMEOUT,
  api_version = "string",
  connect_timeout = args.TIMEOUT, max_retries = args.number({ integer = true, min = 0, max = 100 }),
  deadline = args.SECONDS, headers = "table", on_progress = "function", cainfo = "string",
  max_reply_bytes = args.COUNT, allow_http = "boolean",
  low_speed_limit = args.number({ integer = true, min = 1, max = 2 ^ 31 - 1 }), -- bytes/s
  low_speed_time = args.number({ integer = true, min = 1, max = 1e7 }),          -- whole seconds
  -- seams for tests and schedulers: the clock and sleep the retries use, and their jitter
  clock = "function", sleep = "function", random = "function",
}

-- the same options with a provider given as data (a table)
local option_types_data = {}
for k, v in pairs(option_types) do option_types_data[k] = v end
option_types_data.provider = "table"

--- The provider table of `name` (or of a data table); raises (at the caller's caller) for an
-- unknown one or a bad table.
-- @tparam string|table name a provider's name (see `moonbatch.providers`) or its data
-- @tparam string who the function to name in the error, e.g. "moonbatch.new"
-- @treturn table the provider
function client.provider(name, who)
  return providers.get(name, who)
end

local function nonempty(s)
  if s ~= nil and s ~= "" then return s end
end

local fs = require("moonbatch.fs")
local random_hex = fs.random_hex

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

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
function client.insecure(url, allow_http, base)
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

-- one exchange, through the scheduler inside one of its tasks, else on the client's session
-- (req.session is set by the caller when it builds req, so that the table is not resized here)
local function perform(self, req)
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

-- a wait between attempts or polls: other tasks run meanwhile inside a scheduler (unless the
-- caller gave its own sleep, as tests do)
local function pause(self, seconds)
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

-- the error context of `op`, made only when a call fails
-- (every errors.make of the client goes through it: the key to redact, the provider's request-id
-- headers and path templates)
local function error_context(self, method, path, url)
  return { provider = self.provider.name, method = method, path = path,
           url = url or (self.base_url .. path), secret = self.api_key,
           request_id_headers = self.provider.request_id_headers, own_segments = self.own_segments }
end

local function context(self, op)
  return error_context(self, op.method, op.path)
end

--- Run `op` with retries (the loop every operation goes through).
-- `headers` given to op.run is the call's, the same table on every attempt: never modified.
-- @tparam table self a client
-- @tparam table op `{method, path, run = function(timeout, headers), parse = function(body, res),
-- idempotency_key, needs_key, expects_json}`
-- @return the value `op.parse` made, or `nil, msg, info`
function client.call(self, op)
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
    pause(self, wait)
  end
end

local with_key

-- options moonbatch.core takes from the client on every exchange (the key in the provider's
-- headers, so core adds no bearer of its own)
local function transport(self, timeout, headers, on_progress)
  return {
    base_url = self.base_url, headers = with_key(self, headers), prepare = true,
    timeout = timeout, connect_timeout = self.connect_timeout,
    on_progress = on_progress or self.on_progress, cainfo = self.cainfo,
    max_reply_bytes = self.max_reply_bytes,
    low_speed_limit = self.low_speed_limit, low_speed_time = self.low_speed_time,
  }
end

-- a request core prepared, with the provider's query (Azure's api-version) added
local function with_query(self, req)
  req.query = self.provider.query(req.query, self)
  return req
end

local function with(t, extra)
  for k, v in pairs(extra) do t[k] = v end
  return t
end

-- files ------------------------------------------------------------------------------------

-- the call's headers with the key in the provider's headers (made once per client for the calls
-- that add none)
function with_key(self, headers)
  if headers == self.headers then
    if not self.keyed_headers then
      self.keyed_headers = with_key(self, copy(headers))
    end
    return self.keyed_headers
  end
  local h = copy(headers)
  if self.api_key then
    for k, v in pairs(self.provider.auth_headers(self.api_key)) do h[k] = v end
  end
  return h
end

-- a GET, POST or DELETE on a path below base_url through the generic request
-- (json: a body a provider built whole, as Mistral's batch job)
local function exchange(self, method, path, query, json)
  local url = self.base_url .. path
  query = self.provider.query(query, self)
  return function(timeout, headers)
    return perform(self, {
      method = method, url = url, query = query, headers = with_key(self, headers), json = json,
      timeout = timeout, connect_timeout = self.connect_timeout,
      cainfo = self.cainfo, max_reply_bytes = self.max_reply_bytes, session = self.session,
      low_speed_limit = self.low_speed_limit, low_speed_time = self.low_speed_time,
    })
  end
end

-- `id` as one path segment: every byte but RFC 3986's unreserved ones percent-encoded ("/", "?",
-- "#", "%", non-ASCII...), and the dot segments "." and ".." refused, since a server (or a proxy
-- before it) may resolve them even encoded ("/files/.." is the folder above /files). libcurl is
-- told to send the path as it is (CURLOPT_PATH_AS_IS). Raises naming the argument.
local function escape_id(who, id)
  args.string(who, 1, "id", id)
  if id == "." or id == ".." then
    error(("%s: bad argument #1 'id' ('%s' is not an id: a path segment of dots)"):format(who, id), 3)
  end
  return (id:gsub("[^A-Za-z0-9%-._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local upload_spec = { file = "string", purpose = "string", filename = "string",
                      on_progress = "function", validate = "boolean", endpoint = "string",
                      replace_model = "string" }

--- Files.
-- The provider's files: batch inputs and the results batches write.
-- @section files

--- Upload a batch input file, streamed from disk and checked as it is sent (in the same pass).
-- A line that fails the check stops the upload before its last byte, so the server never gets
-- the file; the result is then as `moonbatch.validate`'s, every problem in `info.problems`.
-- @function files.upload
-- @tparam table opts
-- @tparam string opts.file the path of the file (required)
-- @tparam[opt] string opts.purpose the file's purpose (default: the provider's batch purpose,
-- "batch", or "batch-api" on Together)
-- @tparam[opt] string opts.filename the name the provider gets (default: the file's own)
-- @tparam[opt] function opts.on_progress `function(done_bytes, total_bytes)` during the upload
-- (default: the client's)
-- @tparam[opt=true] boolean opts.validate false to send the file unchecked
-- @tparam[opt] string opts.endpoint the endpoint the lines are checked for (default
-- "/v1/chat/completions")
-- @tparam[opt] string opts.replace_model check the lines as if a batch will replace their model
-- @treturn table File (moonbatch.objects), or `nil, msg, info`: `kind = "io"` when the file
-- cannot be read, `"validation"` when it fails the check (nothing sent)
-- @raise on misuse: `opts` not a table, no `file`, an unknown option or one of the wrong type
local function files_upload(self, opts)
  args.check("files.upload", opts, upload_spec, { "file" })
  local p = self.provider
  local ctx = error_context(self, "POST", p.upload_path)
  local fields, refused = p.upload_fields(opts)
  if refused then
    refused.attempts = 0
    return nil, errors.make(ctx, refused)
  end
  -- a file that cannot be opened fails before any attempt; the check never blocks (a FIFO is
  -- refused as not a regular file, not opened to wait for a writer)
  local size, why = fs.size(opts.file)
  if not size then
    return nil, errors.make(ctx, { kind = "io", attempts = 0, message = why })
  end
  -- a provider whose lines differ from OpenAI's sends a rewritten copy (the user's file stays)
  local source, cleanup = opts.file, nil
  if p.upload_source then
    source, cleanup = p.upload_source(opts.file)
    if not source then
      return nil, errors.make(ctx, { kind = "io", attempts = 0,
        message = ("cannot write the %s copy of '%s': %s"):format(p.name, opts.file, tostring(cleanup)) })
    end
  end
  -- the identity of the file sent, taken once: an attempt finding it changed (or a read finding
  -- it changed while it is sent) fails the call, never sends a mix of two files as one
  local identity, unreadable = core.file_identity(source)
  if not identity then
    if cleanup then cleanup() end
    return nil, errors.make(ctx, { kind = "io", attempts = 0, message = unreadable })
  end
  local validated -- the check's report of the bytes sent, when they passed
  -- the file is checked as it is sent, in the same pass: a bad line found here costs nothing;
  -- found by the provider, it costs an upload and a batch. The line stops the upload before
  -- its end (the server gets no file), and the call fails as moonbatch.validate does.
  local check = opts.validate ~= false and validate.options(p, opts) or nil
  local rejected -- the scan's report, when a bad line stopped the upload
  local file, msg, info = client.call(self, {
    method = "POST", path = p.upload_path,
    run = function(timeout, headers)
      local req = core.files.upload(with(transport(self, timeout, headers, opts.on_progress), {
        path = p.upload_path, file = source, filename = opts.filename or (cleanup and opts.file:match("[^/]*$")),
        purpose = opts.purpose or p.batch_purpose, fields = fields,
      }))
      for _, part in ipairs(req.form) do
        if part.file then part.validate, part.identity = check, identity end
      end
      local body, res, failure = perform(self, with_query(self, req))
      if body == nil and type(res) ~= "table" and failure.kind == "validation" then rejected = failure.report end
      if type(res) == "table" then validated = res.validation end
      return body, res, failure
    end,
    parse = p.file,
  })
  if cleanup then cleanup() end
  -- a provider whose batch names its model (Mistral's job) takes the one model the check found
  if file and p.job_model and validated and validated.models and #validated.models == 1 then
    self.upload_models = self.upload_models or {}
    self.upload_models[file.id] = validated.models[1]
  end
  if rejected then
    local _, m, i = validate.result(rejected, ctx)
    i.attempts = 0
    return nil, m, i
  end
  return file, msg, info
end

local list_spec = { purpose = "string", limit = args.PAGE, after = "string" }

--- One page of files.
-- @function files.list
-- @tparam[opt] table opts
-- @tparam[opt] string opts.purpose only files of this purpose (default: the provider's batch purpose)
-- @tparam[opt=10] integer opts.limit files per page (>= 1)
-- @tparam[opt] string opts.after the id after which the page starts (a previous page's
-- `last_id`); raises on a provider whose file list has no cursor (SiliconFlow)
-- @treturn table Page of File (`{object = "list", data = {...}, has_more, first_id, last_id}`),
-- or `nil, msg, info`
-- @raise on misuse (an unknown option, a limit < 1, `after` where it is not supported)
local function files_list(self, opts)
  local p = self.provider
  local wanted, query
  if opts == nil and self.list_op then
    -- the most common call: its operation (query, request and parser) is made once per client
    return client.call(self, self.list_op)
  elseif opts == nil and self.list_defaults then
    wanted, query = self.list_defaults[1], self.list_defaults[2]
  else
    args.check("files.list", opts, list_spec)
    if opts == nil then opts = {} end
    if opts.after and not p.files_cursor then
      error(("files.list: option 'after' is not supported by %s (its file list has no cursor)")
        :format(p.name), 2)
    end
    if opts.limit and opts.limit < 1 then
      error("files.list: bad option 'limit' (an integer >= 1 expected)", 2)
    end
    wanted = { purpose = opts.purpose or p.batch_purpose, limit = opts.limit or 10, after = opts.after }
    query = p.list_query(wanted)
    if next(opts) == nil then self.list_defaults = { wanted, query } end
  end
  -- the generic request, as core.files.list would make it (the same URL, query keys sorted)
  local op = {
    method = "GET", path = p.files_path, run = exchange(self, "GET", p.files_path, query),
    parse = function(body) return p.files_page(body, wanted) end,
  }
  if opts ~= nil and next(opts) == nil and self.list_defaults then self.list_op = op end
  return client.call(self, op)
end

-- an iterator over every item of pages fetched by list(after); raises when a page fails
local function each(self, list, what, path)
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

local each_spec = { purpose = "string", limit = args.PAGE }

--- Every file, page after page.
-- @function files.each
-- @tparam[opt] table opts
-- @tparam[opt] string opts.purpose only files of this purpose
-- @tparam[opt] integer opts.limit files per page fetched
-- @treturn function an iterator over every File: `for f in client.files.each() do ... end`;
-- it raises the error message when a page cannot be fetched, or when a page says more follow
-- but brings none
local function files_each(self, opts)
  args.check("files.each", opts, each_spec)
  opts = opts or {}
  local p = self.provider
  return each(self, function(after)
    return files_list(self, { purpose = opts.purpose, limit = opts.limit, after = p.files_cursor and after or nil })
  end, "files", p.files_path)
end

--- One file.
-- @function files.get
-- @tparam string id the file's id
-- @treturn table File, or `nil, msg, info`
local function files_get(self, id)
  local p = self.provider
  local path = p.files_path .. "/" .. escape_id("files.get", id)
  return client.call(self, { method = "GET", path = path, run = exchange(self, "GET", path), parse = p.file })
end

--- Delete a file.
-- @function files.delete
-- @tparam string id the file's id
-- @treturn table `{id = id, deleted = true}`, or `nil, msg, info`
local function files_delete(self, id)
  local p = self.provider
  local path = p.files_path .. "/" .. escape_id("files.delete", id)
  return client.call(self, {
    method = "DELETE", path = path, run = exchange(self, "DELETE", path),
    parse = function(body)
      if type(body) == "table" and body.deleted == true then
        return { id = type(body.id) == "string" and body.id or id, deleted = true }
      end
      return nil, { kind = "api", message = "the file was not deleted" }
    end,
  })
end

local download_spec = { on_progress = "function" }

-- a name beside `path` for the bytes in flight
local function temporary_beside(path)
  return ("%s.moonbatch-%s.part"):format(path, random_hex(6))
end

-- pcall lets a coroutine yield through it on 5.2+ and LuaJIT, not on plain Lua 5.1
local pcall_yields = _VERSION ~= "Lua 5.1" or rawget(_G, "jit") ~= nil

-- the download itself: the bytes into `temp`, committed as `path` once whole
local function download_into(self, op, temp, path)
  local p = self.provider
  -- a result file may answer 404 for a while after its batch completed: wait it out, bounded
  local grace_ends = p.content_404_grace and self.clock() + p.content_404_grace
  while true do
    local result, msg, info = client.call(self, op)
    if result then
      local ok, err = fs.commit(temp, path) -- removes temp when it fails
      if ok then return result end
      return nil, errors.make(error_context(self, "GET", op.path, op.path), { kind = "io", message = "cannot move the download into place: " ..
        tostring(err), attempts = info and info.attempts })
    end
    os.remove(temp)
    if not (info.status == 404 and grace_ends and self.clock() + 2 <= grace_ends) then
      return nil, msg, info
    end
    pause(self, 2)
  end
end

--- Download a file (a batch's output or error file) to `path`.
-- The bytes go to a temporary file beside `path`, renamed into place only once the transfer is
-- complete and its length matches the announced one: a failed download leaves nothing at
-- `path` and no temporary file. An id that is a URL (SiliconFlow's result URLs) is fetched
-- without the API key (and plain HTTP only as `allow_http` lets it). A 404 in the first minute
-- after completion (SiliconFlow) is waited out.
-- @function files.download
-- @tparam string id the file's id, or a result URL
-- @tparam string path where the file goes
-- @tparam[opt] table opts
-- @tparam[opt] function opts.on_progress `function(done_bytes, total_bytes)` (default: the client's)
-- @treturn table `{path = path, bytes = n}`, or `nil, msg, info`
local function files_download(self, id, path, opts)
  args.string("files.download", 1, "id", id)
  args.string("files.download", 2, "path", path)
  args.check("files.download", opts, download_spec)
  opts = opts or {}
  local p = self.provider
  -- a URL (any scheme: an id never holds "://") is fetched as it is, if the guard lets it
  local url_given = id:match("^%a[%w+.-]*://") ~= nil
  local refused = url_given and client.insecure(id, self.allow_http)
  if refused then
    return nil, errors.make(error_context(self, "GET", id, id),
      { kind = "validation", attempts = 0, message = refused })
  end
  local op_path = url_given and id or (p.files_path .. "/" .. escape_id("files.download", id) .. "/content")
  local temp = temporary_beside(path)
  local op = {
    method = "GET", path = op_path, expects_json = false, needs_key = not url_given,
    run = function(timeout, headers)
      -- a result URL is fetched as it is: the key goes only to the provider's own API
      local h = url_given and copy(headers) or with_key(self, headers)
      return perform(self, {
        url = url_given and id or (self.base_url .. op_path), headers = h, output = temp,
        query = not url_given and p.query(nil, self) or nil,
        timeout = timeout, connect_timeout = self.connect_timeout,
        cainfo = self.cainfo, on_progress = opts.on_progress or self.on_progress,
        low_speed_limit = self.low_speed_limit, low_speed_time = self.low_speed_time,
      })
    end,
    parse = function(_, res)
      local announced = tonumber(res.headers["content-length"])
      if announced and announced ~= res.output_bytes then
        return nil, { kind = "network", message = ("download ended after %d of %d bytes")
          :format(res.output_bytes, announced) }
      end
      return { path = path, bytes = objects.integer(res.output_bytes) }
    end,
  }
  -- the temporary file goes on every way out: returned errors (download_into), errors raised
  -- through the call (on_progress, Ctrl-C's "interrupted!") caught here, and inside a scheduler
  -- task, the task stopped or ended by an error the scheduler sees (where pcall cannot yield)
  local function drop() os.remove(temp) end
  local cancel = scheduler.defer(drop)
  if cancel and not pcall_yields then
    local result, msg, info = download_into(self, op, temp, path)
    cancel()
    return result, msg, info
  end
  local ok, result, msg, info = pcall(download_into, self, op, temp, path)
  if cancel then cancel() end
  if not ok then
    drop()
    error(result, 0)
  end
  return result, msg, info
end

local many_spec = { concurrency = args.CONCURRENCY, validate = "boolean" }

--- Upload many files at once, on one connection pool (see moonbatch.concurrently).
-- @function files.upload_many
-- @tparam table list `{ {file = ...}, ... }`, each entry the options of `files.upload`
-- @tparam[opt] table opts
-- @tparam[opt=8] integer opts.concurrency uploads at once
-- @tparam[opt] boolean opts.validate the default of each entry's `validate`
-- @treturn table one result per entry, in order: `{file = File}` or `{error = msg, info = info}`
-- @raise on misuse of `list`, of any entry or of `opts`, before anything is sent
local function files_upload_many(self, list, opts)
  if type(list) ~= "table" then
    error(("files.upload_many: bad argument #1 (table expected, got %s)"):format(type(list)), 3)
  end
  args.check("files.upload_many", opts, many_spec)
  opts = opts or {}
  local fns = {}
  for i, one in ipairs(list) do
    if type(one) ~= "table" then
      error(("files.upload_many: bad item %d (table expected, got %s)"):format(i, type(one)), 3)
    end
    local o = copy(one)
    if o.validate == nil then o.validate = opts.validate end
    args.check("files.upload_many", o, upload_spec, { "file" })
    fns[i] = function() return files_upload(self, o) end
  end
  local out = {}
  for i, r in ipairs(scheduler.run(fns, { concurrency = opts.concurrency })) do
    out[i] = r[1] and { file = r[1] } or { error = r[2], info = r[3] }
  end
  return out
end

--- Batches.
-- Batches made from uploaded files, and waiting for them.
-- @section batches


local create_spec = { input_file_id = "string", endpoint = "string",
                      completion_window = "string", metadata = "table", replace = "table",
                      idempotency_key = "string" }

--- Create a batch from an uploaded file.
-- @function batches.create
-- @tparam table opts
-- @tparam string opts.input_file_id the uploaded file's id (required)
-- @tparam[opt="/v1/chat/completions"] string opts.endpoint the endpoint of every request
-- @tparam[opt="24h"] string opts.completion_window how long the provider may take
-- (SiliconFlow: "24h" to "336h")
-- @tparam[opt] table opts.metadata string keys and values kept with the batch (raises on Together)
-- @tparam[opt] table opts.replace `{model = "..."}`: every line's model replaced (SiliconFlow,
-- Together; raises on OpenAI)
-- @tparam[opt] string opts.idempotency_key the request's Idempotency-Key (default: a new one per
-- call, the same on each retry): a caller that may repeat the call after a crash passes its own
-- @treturn table Batch, or `nil, msg, info`
-- @raise on misuse
local function batches_create(self, opts)
  args.check("batches.create", opts, create_spec, { "input_file_id" })
  local p = self.provider
  local key = opts.idempotency_key
  if key then
    opts = copy(opts)
    opts.idempotency_key = nil
  end
  local body = p.create_options(opts, p, self)
  return client.call(self, {
    method = "POST", path = p.batches_path, idempotency_key = key,
    -- a provider whose create is not OpenAI's gives the whole JSON body
    run = body.json and exchange(self, "POST", p.batches_path, nil, body.json) or function(timeout, headers)
      return perform(self, with_query(self, core.batches.create(with(with(transport(self, timeout, headers), body), {
        path = p.batches_path,
      }))))
    end,
    parse = p.batch,
  })
end

--- One batch.
-- @function batches.get
-- @tparam string id the batch's id
-- @treturn table Batch, or `nil, msg, info`
local function batches_get(self, id)
  local p = self.provider
  local path = p.batches_path .. "/" .. escape_id("batches.get", id)
  return client.call(self, { method = "GET", path = path, run = exchange(self, "GET", path), parse = p.batch })
end

--- Ask the provider to cancel a batch.
-- @function batches.cancel
-- @tparam string id the batch's id
-- @treturn table Batch (usually "cancelling"), or `nil, msg, info`
local function batches_cancel(self, id)
  local p = self.provider
  local path = p.batches_path .. "/" .. escape_id("batches.cancel", id) .. "/cancel"
  return client.call(self, { method = "POST", path = path, run = exchange(self, "POST", path), parse = p.batch })
end

local batches_list_spec = { limit = args.PAGE, after = "string" }

--- One page of batches.
-- @function batches.list
-- @tparam[opt] table opts
-- @tparam[opt] integer opts.limit batches per page (where the provider pages them)
-- @tparam[opt] string opts.after the id after which the page starts; raises where the provider
-- has no cursor
-- @treturn table Page of Batch, or `nil, msg, info`
-- @raise on misuse
local function batches_list(self, opts)
  args.check("batches.list", opts, batches_list_spec)
  opts = opts or {}
  local p = self.provider
  if opts.after and not p.batches_cursor then
    error(("batches.list: option 'after' is not supported by %s"):format(p.name), 2)
  end
  local query = p.batches_cursor and { limit = opts.limit, after = opts.after } or nil
  return client.call(self, {
    method = "GET", path = p.batches_path, run = exchange(self, "GET", p.batches_path, query),
    parse = function(body) return p.batches_page(body, p) end,
  })
end

--- Every batch, page after page.
-- @function batches.each
-- @tparam[opt] table opts
-- @tparam[opt] integer opts.limit batches per page fetched
-- @treturn function an iterator over every Batch; it raises the error message when a page
-- cannot be fetched
local function batches_each(self, opts)
  args.check("batches.each", opts, { limit = args.PAGE })
  opts = opts or {}
  local p = self.provider
  return each(self, function(after)
    return batches_list(self, { limit = opts.limit, after = p.batches_cursor and after or nil })
  end, "batches", p.batches_path)
end

local wait_spec = { interval = args.SECONDS, timeout = args.number({ min = 0, max = 1e7 }),
                    on_update = "function", max_interval = args.SECONDS }

-- what on_update cares about: the status and the counts
local function progress_key(b)
  local rc = b.request_counts or {}
  return table.concat({ b.status or "", rc.total or "", rc.completed or "", rc.failed or "",
                        b.progress or "" }, "/")
end

--- Wait until a batch is in a final state (completed, failed, expired or cancelled).
-- Polls at growing intervals (x1.5, capped at `max_interval`); inside moonbatch.concurrently
-- the waits let other tasks run.
-- @function batches.wait
-- @tparam string id the batch's id
-- @tparam[opt] table opts
-- @tparam[opt=2] number opts.interval seconds before the first poll again
-- @tparam[opt=30] number opts.max_interval the longest wait between polls
-- @tparam[opt] number opts.timeout give up after this many seconds (also the client's `deadline`)
-- @tparam[opt] function opts.on_update `function(batch)`, called when the status or the counts change
-- @treturn table Batch in a final state, or `nil, msg, info` (`kind = "timeout"` when the time
-- ran out, the batch still running)
local function batches_wait(self, id, opts)
  escape_id("batches.wait", id)
  args.check("batches.wait", opts, wait_spec)
  opts = opts or {}
  local interval = opts.interval or 2
  local max_interval = math.max(opts.max_interval or 30, interval)
  local started = self.clock()
  local ends = opts.timeout and started + opts.timeout
  if self.deadline and (not ends or started + self.deadline < ends) then ends = started + self.deadline end
  local seen
  while true do
    local batch, msg, info = batches_get(self, id)
    if not batch then return nil, msg, info end
    local key = progress_key(batch)
    if key ~= seen then
      seen = key
      if opts.on_update then opts.on_update(batch) end
    end
    if objects.final[batch.status] then return batch end
    local now = self.clock()
    if ends and now >= ends then
      local p = self.provider
      local path = p.batches_path .. "/" .. escape_id("batches.wait", id)
      return nil, errors.make(error_context(self, "GET", path),
        { kind = "timeout", retryable = true, message = ("batch %s still %s after %gs of waiting")
          :format(id, batch.status, now - started) })
    end
    pause(self, ends and math.min(interval, ends - now) or interval)
    interval = math.min(interval * 1.5, max_interval)
  end
end

--- Client.
-- @section client


local function env(name)
  return nonempty(os.getenv(name))
end

--- The function behind `moonbatch.new`, which documents its options.
-- @tparam[opt] table opts as `moonbatch.new` takes them
-- @treturn table a client: `files`, `batches`, `close`, and its settings (`provider`, `base_url`)
function client.new(opts)
  args.check("moonbatch.new", opts, type(opts) == "table" and type(opts.provider) == "table"
    and option_types_data or option_types)
  opts = opts or {}
  local p = client.provider(opts.provider or providers.default, "moonbatch.new")
  local name = p.name
  local base_url = opts.base_url or env("MOONBATCH_BASE_URL") or p.base_url
  if not base_url then
    error(("moonbatch.new: provider %s needs base_url (%s)"):format(name, p.base_url_hint or "its service's URL"), 2)
  end
  local refused = client.insecure(base_url, opts.allow_http, true)
  if refused then error("moonbatch.new: bad base_url: " .. refused, 2) end
  local self = {
    provider = p,
    api_key = nonempty(opts.api_key) or (p.key_env and env(p.key_env)) or env("MOONBATCH_API_KEY"),
    api_version = opts.api_version,
    base_url = (base_url:gsub("/+$", "")),
    timeout = opts.timeout or 600,
    connect_timeout = opts.connect_timeout or 10,
    max_retries = opts.max_retries or 2,
    deadline = opts.deadline,
    headers = copy(opts.headers),
    on_progress = opts.on_progress,
    cainfo = opts.cainfo,
    max_reply_bytes = opts.max_reply_bytes,
    -- an attempt whose transfer stays under low_speed_limit bytes/s for low_speed_time seconds
    -- ends as a timeout (a stalled or dripping connection); off unless both are given
    low_speed_limit = opts.low_speed_limit,
    low_speed_time = opts.low_speed_time,
    allow_http = opts.allow_http,
    clock = opts.clock or core.now,
    sleep = opts.sleep or core.sleep,
    random = opts.random or math.random,
    session = core.session(),
    -- the fixed segments of the provider's paths, never redacted as if they were a short key
    own_segments = errors.segments({ p.upload_path, p.files_path, p.batches_path }),
  }
  self.files = {
    upload = function(o) return files_upload(self, o) end,
    list = function(o) return files_list(self, o) end,
    each = function(o) return files_each(self, o) end,
    get = function(id) return files_get(self, id) end,
    delete = function(id) return files_delete(self, id) end,
    download = function(id, path, o) return files_download(self, id, path, o) end,
    upload_many = function(list, o) return files_upload_many(self, list, o) end,
  }
  self.batches = {
    create = function(o) return batches_create(self, o) end,
    get = function(id) return batches_get(self, id) end,
    list = function(o) return batches_list(self, o) end,
    each = function(o) return batches_each(self, o) end,
    cancel = function(id) return batches_cancel(self, id) end,
    wait = function(id, o) return batches_wait(self, id, o) end,
  }
  -- client.close(): documented below, with the operations
  function self.close()
    self.session:close()
  end
  return setmetatable(self, {
    __tostring = function() return ("moonbatch client (%s, %s)"):format(name, self.base_url) end,
  })
end

--- Close the client's connection now rather than at garbage collection. A call made on the
-- client after it raises ("the session is closed").
-- @function close

return client
