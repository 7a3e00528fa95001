--- moonbatch.client: one client for every provider: options, the retry loop, and the operations.
-- Each operation is one exchange through moonbatch.core, repeated by `call` under CONTRACT §6.
-- @module moonbatch.client
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local objects = require("moonbatch.objects")
local retry = require("moonbatch.retry")
local scheduler = require("moonbatch.scheduler")
local validate = require("moonbatch.validate")

local client = {}

client.providers = { "siliconflow", "siliconflow-global", "together", "openai" }
local known_provider = {}
for _, name in ipairs(client.providers) do known_provider[name] = true end

local option_types = {
  provider = "string", api_key = "string", base_url = "string", timeout = "number",
  connect_timeout = "number", max_retries = "integer", deadline = "number", headers = "table",
  on_progress = "function", cainfo = "string", max_reply_bytes = "number", allow_http = "boolean",
  low_speed_limit = "number", low_speed_time = "number",
  -- seams for tests and schedulers: the clock and sleep the retries use, and their jitter
  clock = "function", sleep = "function", random = "function",
}

--- The provider table of `name`; raises (at the caller's caller) for an unknown one.
function client.provider(name, who)
  if not known_provider[name] then
    error(("%s: unknown provider '%s' (known: %s)")
      :format(who, tostring(name), table.concat(client.providers, ", ")), 3)
  end
  return require("moonbatch.providers." .. name)
end

local function nonempty(s)
  if s ~= nil and s ~= "" then return s end
end

local random_hex = require("moonbatch.fs").random_hex

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

--- Plain HTTP only to this machine, unless allowed: the key and the data would cross the network
-- in clear. Returns nil or the reason a URL is refused.
function client.insecure(url, allow_http)
  local scheme, host = url:match("^(%a[%w+.-]*)://%[([^%]]*)%]")
  if not scheme then scheme, host = url:match("^(%a[%w+.-]*)://([^/:?#]*)") end
  scheme = scheme and scheme:lower()
  if scheme == "https" then return nil end
  if scheme ~= "http" then return ("'%s' is not an http(s) URL"):format(url) end
  if allow_http or host == "localhost" or host == "::1" or (host or ""):match("^127%.") then
    return nil
  end
  return ("plain HTTP to %s would send the API key and data in clear (use https, or allow_http = true)")
    :format(host)
end

local debug_log = os.getenv("MOONBATCH_LOG") == "debug"

-- MOONBATCH_LOG=debug: one line per exchange on stderr, the key redacted
local function log_exchange(self, req, body, res, info)
  local headers = {}
  for k, v in pairs(req.headers or {}) do
    if k:lower() == "authorization" then v = v:gsub("%s.*$", " [redacted]") end
    headers[#headers + 1] = k .. ": " .. v
  end
  table.sort(headers)
  local outcome = body ~= nil and ("HTTP %d"):format(res.status) or ("failed: %s (%s)"):format(res, info.kind)
  local line = ("moonbatch: debug: %s %s [%s] -> %s\n"):format(req.method or "GET", req.url,
    table.concat(headers, "; "), outcome)
  io.stderr:write((errors.redact(line, self.api_key)))
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
  if body == nil then
    -- the transfer failed: res is the message, info says how
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
local function context(self, op)
  return { provider = self.provider.name, method = op.method, path = op.path,
           url = self.base_url .. op.path, secret = self.api_key }
end

--- Run `op` ({method, path, run(timeout, headers), parse(body, res)}) with retries.
-- `headers` given to op.run is the call's, the same table on every attempt: never modified.
function client.call(self, op)
  local p = self.provider
  op.provider = p
  if not self.api_key and op.needs_key ~= false then
    return nil, errors.make(context(self, op), { kind = "validation", attempts = 0, message =
      ("no API key: set %s or MOONBATCH_API_KEY, or pass api_key"):format(p.key_env) })
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

-- options moonbatch.core takes from the client on every exchange
local function transport(self, timeout, headers, on_progress)
  return {
    base_url = self.base_url, api_key = self.api_key, prepare = true,
    timeout = timeout, connect_timeout = self.connect_timeout, headers = headers,
    on_progress = on_progress or self.on_progress, cainfo = self.cainfo,
    max_reply_bytes = self.max_reply_bytes,
    low_speed_limit = self.low_speed_limit, low_speed_time = self.low_speed_time,
  }
end

local function with(t, extra)
  for k, v in pairs(extra) do t[k] = v end
  return t
end

-- files ------------------------------------------------------------------------------------

-- the call's headers with the bearer key (made once per client for the calls that add none)
local function with_key(self, headers)
  if headers == self.headers then
    if not self.keyed_headers then
      self.keyed_headers = with_key(self, copy(headers))
    end
    return self.keyed_headers
  end
  local h = copy(headers)
  if self.api_key then h.Authorization = "Bearer " .. self.api_key end
  return h
end

-- a GET, POST or DELETE on a path below base_url through the generic request
local function exchange(self, method, path, query)
  local url = self.base_url .. path
  return function(timeout, headers)
    return perform(self, {
      method = method, url = url, query = query, headers = with_key(self, headers),
      timeout = timeout, connect_timeout = self.connect_timeout,
      cainfo = self.cainfo, max_reply_bytes = self.max_reply_bytes, session = self.session,
      low_speed_limit = self.low_speed_limit, low_speed_time = self.low_speed_time,
    })
  end
end

local function escape_id(who, id)
  args.string(who, 1, "id", id)
  return (id:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local upload_spec = { file = "string", purpose = "string", filename = "string",
                      on_progress = "function", validate = "boolean", endpoint = "string",
                      replace_model = "string" }

local function files_upload(self, opts)
  args.check("files.upload", opts, upload_spec, { "file" })
  local p = self.provider
  local ctx = { provider = p.name, method = "POST", path = p.upload_path,
                url = self.base_url .. p.upload_path, secret = self.api_key }
  local fields, refused = p.upload_fields(opts)
  if refused then
    refused.attempts = 0
    return nil, errors.make(ctx, refused)
  end
  -- a file that cannot be opened fails before any attempt
  local f, why = io.open(opts.file, "rb")
  if not f then
    if why:sub(1, #opts.file + 2) == opts.file .. ": " then why = why:sub(#opts.file + 3) end
    return nil, errors.make(ctx, { kind = "io", attempts = 0,
                                   message = ("cannot read '%s': %s"):format(opts.file, why) })
  end
  f:close()
  -- the file's identity, taken once: an attempt finding it changed (or a read finding it changed
  -- while it is sent) fails the call, never sends a mix of two files as one
  local identity, unreadable = core.file_identity(opts.file)
  if not identity then
    return nil, errors.make(ctx, { kind = "io", attempts = 0, message = unreadable })
  end
  -- the file is checked as it is sent, in the same pass: a bad line found here costs nothing;
  -- found by the provider, it costs an upload and a batch. The line stops the upload before
  -- its end (the server gets no file), and the call fails as moonbatch.validate does.
  local check = opts.validate ~= false and validate.options(p, opts) or nil
  local rejected -- the scan's report, when a bad line stopped the upload
  local file, msg, info = client.call(self, {
    method = "POST", path = p.upload_path,
    run = function(timeout, headers)
      local req = core.files.upload(with(transport(self, timeout, headers, opts.on_progress), {
        path = p.upload_path, file = opts.file, filename = opts.filename,
        purpose = opts.purpose or p.batch_purpose, fields = fields,
      }))
      for _, part in ipairs(req.form) do
        if part.file then part.validate, part.identity = check, identity end
      end
      local body, res, failure = perform(self, req)
      if body == nil and failure.kind == "validation" then rejected = failure.report end
      return body, res, failure
    end,
    parse = p.file,
  })
  if rejected then
    local _, m, i = validate.result(rejected, ctx)
    i.attempts = 0
    return nil, m, i
  end
  return file, msg, info
end

local list_spec = { purpose = "string", limit = "integer", after = "string" }

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

local each_spec = { purpose = "string", limit = "integer" }

local function files_each(self, opts)
  args.check("files.each", opts, each_spec)
  opts = opts or {}
  local p = self.provider
  return each(self, function(after)
    return files_list(self, { purpose = opts.purpose, limit = opts.limit, after = p.files_cursor and after or nil })
  end, "files", p.files_path)
end

local function files_get(self, id)
  local p = self.provider
  local path = p.files_path .. "/" .. escape_id("files.get", id)
  return client.call(self, { method = "GET", path = path, run = exchange(self, "GET", path), parse = p.file })
end

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

local function files_download(self, id, path, opts)
  args.string("files.download", 1, "id", id)
  args.string("files.download", 2, "path", path)
  args.check("files.download", opts, download_spec)
  opts = opts or {}
  local p = self.provider
  local url_given = id:match("^https?://") ~= nil
  local refused = url_given and client.insecure(id, self.allow_http)
  if refused then
    return nil, errors.make({ provider = p.name, method = "GET", path = id, url = id, secret = self.api_key },
      { kind = "validation", attempts = 0, message = refused })
  end
  local op_path = url_given and id or (p.files_path .. "/" .. escape_id("files.download", id) .. "/content")
  local temp = temporary_beside(path)
  local op = {
    method = "GET", path = op_path, expects_json = false, needs_key = not url_given,
    run = function(timeout, headers)
      local h = copy(headers)
      -- a result URL is fetched as it is: the key goes only to the provider's own API
      if self.api_key and not url_given then h.Authorization = "Bearer " .. self.api_key end
      return perform(self, {
        url = url_given and id or (self.base_url .. op_path), headers = h, output = temp,
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
      return { path = path, bytes = res.output_bytes }
    end,
  }
  -- a result file may answer 404 for a while after its batch completed: wait it out, bounded
  local grace_ends = p.content_404_grace and self.clock() + p.content_404_grace
  while true do
    local result, msg, info = client.call(self, op)
    if result then
      local ok, err = os.rename(temp, path)
      if ok then return result end
      os.remove(temp)
      return nil, errors.make({ provider = p.name, method = "GET", path = op_path, url = op_path,
        secret = self.api_key }, { kind = "io", message = "cannot move the download into place: " ..
        tostring(err), attempts = info and info.attempts })
    end
    os.remove(temp)
    if not (info.status == 404 and grace_ends and self.clock() + 2 <= grace_ends) then
      return nil, msg, info
    end
    pause(self, 2)
  end
end

local many_spec = { concurrency = "integer", validate = "boolean" }

-- upload every file of `list` ({ {file = ...}, ... }, each as files.upload takes), at most
-- `concurrency` at once on one connection pool; results in order: {file = File} or
-- {error = msg, info = info}
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

-- batches ------------------------------------------------------------------------------------

local create_spec = { input_file_id = "string", endpoint = "string",
                      completion_window = "string", metadata = "table", replace = "table",
                      idempotency_key = "string" }

local function batches_create(self, opts)
  args.check("batches.create", opts, create_spec, { "input_file_id" })
  local p = self.provider
  local key = opts.idempotency_key
  if key then
    opts = copy(opts)
    opts.idempotency_key = nil
  end
  local body = p.create_options(opts)
  return client.call(self, {
    method = "POST", path = p.batches_path, idempotency_key = key,
    run = function(timeout, headers)
      return perform(self, core.batches.create(with(with(transport(self, timeout, headers), body), {
        path = p.batches_path,
      })))
    end,
    parse = p.batch,
  })
end

local function batches_get(self, id)
  local p = self.provider
  local path = p.batches_path .. "/" .. escape_id("batches.get", id)
  return client.call(self, { method = "GET", path = path, run = exchange(self, "GET", path), parse = p.batch })
end

local function batches_cancel(self, id)
  local p = self.provider
  local path = p.batches_path .. "/" .. escape_id("batches.cancel", id) .. "/cancel"
  return client.call(self, { method = "POST", path = path, run = exchange(self, "POST", path), parse = p.batch })
end

local batches_list_spec = { limit = "integer", after = "string" }

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

local function batches_each(self, opts)
  args.check("batches.each", opts, { limit = "integer" })
  opts = opts or {}
  local p = self.provider
  return each(self, function(after)
    return batches_list(self, { limit = opts.limit, after = p.batches_cursor and after or nil })
  end, "batches", p.batches_path)
end

local wait_spec = { interval = "number", timeout = "number", on_update = "function", max_interval = "number" }

-- what on_update cares about: the status and the counts
local function progress_key(b)
  local rc = b.request_counts or {}
  return table.concat({ b.status or "", rc.total or "", rc.completed or "", rc.failed or "",
                        b.progress or "" }, "/")
end

local function batches_wait(self, id, opts)
  args.string("batches.wait", 1, "id", id)
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
      local path = p.batches_path .. "/" .. id
      return nil, errors.make({ provider = p.name, method = "GET", path = path,
        url = self.base_url .. path, secret = self.api_key },
        { kind = "timeout", retryable = true, message = ("batch %s still %s after %gs of waiting")
          :format(id, batch.status, now - started) })
    end
    pause(self, ends and math.min(interval, ends - now) or interval)
    interval = math.min(interval * 1.5, max_interval)
  end
end

-- client ------------------------------------------------------------------------------------

local function env(name)
  return nonempty(os.getenv(name))
end

--- moonbatch.new(opts): see CONTRACT §2.
function client.new(opts)
  args.check("moonbatch.new", opts, option_types)
  opts = opts or {}
  local name = opts.provider or "siliconflow"
  local p = client.provider(name, "moonbatch.new")
  for _, n in ipairs({ "timeout", "connect_timeout", "deadline", "max_retries", "low_speed_limit",
                       "low_speed_time" }) do
    if opts[n] and opts[n] < 0 then
      error(("moonbatch.new: bad option '%s' (a number >= 0 expected)"):format(n), 2)
    end
  end
  local base_url = opts.base_url or env("MOONBATCH_BASE_URL") or p.base_url
  local refused = client.insecure(base_url, opts.allow_http)
  if refused then error("moonbatch.new: bad base_url: " .. refused, 2) end
  local self = {
    provider = p,
    api_key = nonempty(opts.api_key) or env(p.key_env) or env("MOONBATCH_API_KEY"),
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
  --- Close the client's connection now rather than at garbage collection.
  function self.close()
    self.session:close()
  end
  return setmetatable(self, {
    __tostring = function() return ("moonbatch client (%s, %s)"):format(name, self.base_url) end,
  })
end

return client
