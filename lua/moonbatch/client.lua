-- moonbatch.client: one client for every provider: options, the retry loop, and the operations.
-- Each operation is one exchange through moonbatch.core, repeated by `call` under CONTRACT §6.
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local retry = require("moonbatch.retry")

local client = {}

client.providers = { "siliconflow", "siliconflow-global", "openai" }
local known_provider = {}
for _, name in ipairs(client.providers) do known_provider[name] = true end

local option_types = {
  provider = "string", api_key = "string", base_url = "string", timeout = "number",
  connect_timeout = "number", max_retries = "integer", deadline = "number", headers = "table",
  on_progress = "function", cainfo = "string", max_reply_bytes = "number",
  -- seams for tests and schedulers: the clock and sleep the retries use, and their jitter
  clock = "function", sleep = "function", random = "function",
}

local function nonempty(s)
  if s ~= nil and s ~= "" then return s end
end

local function random_hex(bytes)
  local f = io.open("/dev/urandom", "rb")
  local raw = f and f:read(bytes)
  if f then f:close() end
  if not raw or #raw < bytes then
    local t = {}
    for i = 1, bytes do t[i] = string.char(math.random(0, 255)) end
    raw = table.concat(t)
  end
  return (raw:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
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
    local value, fields = op.parse(body, res)
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

--- Run `op` ({method, path, run(timeout, headers), parse(body, res)}) with retries.
function client.call(self, op)
  local p = self.provider
  local ctx = { provider = p.name, method = op.method, path = op.path,
                url = self.base_url .. op.path, secret = self.api_key }
  op.provider = p
  if not self.api_key then
    return nil, errors.make(ctx, { kind = "validation", attempts = 0, message =
      ("no API key: set %s or MOONBATCH_API_KEY, or pass api_key"):format(p.key_env) })
  end
  local headers = copy(self.headers)
  if op.method == "POST" then
    -- one key per call, the same on every attempt, so a retried create is the same request
    headers["Idempotency-Key"] = "moonbatch-" .. random_hex(16)
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
      return nil, errors.make(ctx, fields)
    end
    local wait, demanded = retry.wait(attempts - 1, fields.headers, self.random)
    if not wait then
      fields.retry_after = demanded
      fields.message = (fields.message or "") ..
        (" (server asks to wait %gs, more than %gs)"):format(demanded, retry.max_wait)
      return nil, errors.make(ctx, fields)
    end
    if ends and self.clock() + wait > ends then
      fields.message = (fields.message or fields.kind) ..
        (" (deadline of %gs leaves no time to retry)"):format(self.deadline)
      return nil, errors.make(ctx, fields)
    end
    self.sleep(wait)
  end
end

-- options moonbatch.core takes from the client on every exchange
local function transport(self, timeout, headers, on_progress)
  return {
    base_url = self.base_url, api_key = self.api_key, session = self.session,
    timeout = timeout, connect_timeout = self.connect_timeout, headers = headers,
    on_progress = on_progress or self.on_progress, cainfo = self.cainfo,
    max_reply_bytes = self.max_reply_bytes,
  }
end

local function with(t, extra)
  for k, v in pairs(extra) do t[k] = v end
  return t
end

---------------------------------------------------------------------------------- files

local upload_spec = { file = "string", purpose = "string", filename = "string",
                      on_progress = "function" }

local function files_upload(self, opts)
  args.check("files.upload", opts, upload_spec, { "file" })
  local p = self.provider
  return client.call(self, {
    method = "POST", path = p.upload_path,
    run = function(timeout, headers)
      return core.files.upload(with(transport(self, timeout, headers, opts.on_progress), {
        path = p.upload_path, file = opts.file, filename = opts.filename,
        purpose = opts.purpose or p.batch_purpose, fields = p.upload_fields(opts),
      }))
    end,
    parse = p.file,
  })
end

local list_spec = { purpose = "string", limit = "integer", after = "string" }

local function files_list(self, opts)
  args.check("files.list", opts, list_spec)
  opts = opts or {}
  local p = self.provider
  if opts.after and not p.files_cursor then
    error(("files.list: option 'after' is not supported by %s (its file list has no cursor)")
      :format(p.name), 2)
  end
  if opts.limit and opts.limit < 1 then
    error("files.list: bad option 'limit' (an integer >= 1 expected)", 2)
  end
  return client.call(self, {
    method = "GET", path = p.files_path,
    run = function(timeout, headers)
      return core.files.list(with(transport(self, timeout, headers), {
        path = p.files_path, purpose = opts.purpose or p.batch_purpose,
        limit = opts.limit or 10, after = opts.after,
      }))
    end,
    parse = p.files_page,
  })
end

local each_spec = { purpose = "string", limit = "integer" }

local function files_each(self, opts)
  args.check("files.each", opts, each_spec)
  opts = opts or {}
  local page, i, after, done = nil, 0, nil, false
  return function()
    while true do
      if page and i < #page.data then
        i = i + 1
        return page.data[i]
      end
      if done then return nil end
      local msg
      page, msg = files_list(self, { purpose = opts.purpose, limit = opts.limit, after = after })
      if not page then error(msg, 0) end
      i = 0
      if not page.has_more then
        done = true
      elseif #page.data == 0 then
        error(("moonbatch: %s GET %s: the server says more files follow but sent none")
          :format(self.provider.name, self.provider.files_path), 0)
      else
        after = page.last_id
      end
    end
  end
end

-------------------------------------------------------------------------------- batches

local create_spec = { input_file_id = "string", endpoint = "string",
                      completion_window = "string", metadata = "table", replace = "table" }

local function batches_create(self, opts)
  args.check("batches.create", opts, create_spec, { "input_file_id" })
  local p = self.provider
  return client.call(self, {
    method = "POST", path = p.batches_path,
    run = function(timeout, headers)
      return core.batches.create(with(transport(self, timeout, headers), {
        path = p.batches_path, input_file_id = opts.input_file_id,
        endpoint = opts.endpoint or "/v1/chat/completions",
        completion_window = opts.completion_window or "24h",
        metadata = opts.metadata, replace = opts.replace,
      }))
    end,
    parse = p.batch,
  })
end

--------------------------------------------------------------------------------- client

local function env(name)
  return nonempty(os.getenv(name))
end

--- moonbatch.new(opts): see CONTRACT §2.
function client.new(opts)
  args.check("moonbatch.new", opts, option_types)
  opts = opts or {}
  local name = opts.provider or "siliconflow"
  if not known_provider[name] then
    error(("moonbatch.new: unknown provider '%s' (known: %s)")
      :format(name, table.concat(client.providers, ", ")), 2)
  end
  for _, n in ipairs({ "timeout", "connect_timeout", "deadline", "max_retries" }) do
    if opts[n] and opts[n] < 0 then
      error(("moonbatch.new: bad option '%s' (a number >= 0 expected)"):format(n), 2)
    end
  end
  local p = require("moonbatch.providers." .. name)
  local base_url = opts.base_url or env("MOONBATCH_BASE_URL") or p.base_url
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
    clock = opts.clock or core.now,
    sleep = opts.sleep or core.sleep,
    random = opts.random or math.random,
    session = core.session(),
  }
  self.files = {
    upload = function(o) return files_upload(self, o) end,
    list = function(o) return files_list(self, o) end,
    each = function(o) return files_each(self, o) end,
  }
  self.batches = {
    create = function(o) return batches_create(self, o) end,
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
