--- moonbatch.client: one client for every provider: its options and the operations.
-- `moonbatch.new(opts)` makes a client; its operations are `client.files.upload{...}`,
-- `client.batches.wait(id)`, `client.close()` (moonbatch.client.files, moonbatch.client.batches),
-- each one exchange through moonbatch.core, built in Lua from the provider's data and repeated
-- by the retry loop of moonbatch.client.call as the README's "Retries" section says.
--
-- Every operation returns its value, or `nil, msg, info` when it cannot succeed (`msg` one line,
-- `info.kind` one of "io", "network", "timeout", "api", "http", "decode", "validation"; see
-- moonbatch.errors); misuse (a wrong type, a missing or unknown option) raises, naming the
-- argument, before any byte is sent. Objects are the canonical shapes of moonbatch.objects.
-- @module moonbatch.client
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local providers = require("moonbatch.providers")
local call = require("moonbatch.client.call")
local files = require("moonbatch.client.files")
local batches = require("moonbatch.client.batches")

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

local copy = call.copy

--- Plain HTTP only to this machine, unless allowed (see moonbatch.client.call.insecure).
-- @function insecure
-- @tparam string url a base URL or a result URL
-- @tparam ?boolean allow_http true to accept plain HTTP to any host
-- @tparam ?boolean base true when `url` is a base URL
-- @treturn ?string nil, or the reason `url` is refused
client.insecure = call.insecure

--- Run `op` with retries (see moonbatch.client.call.call).
-- @function call
-- @tparam table self a client
-- @tparam table op the operation
-- @return the value `op.parse` made, or `nil, msg, info`
client.call = call.call

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
    upload = function(o) return files.upload(self, o) end,
    list = function(o) return files.list(self, o) end,
    each = function(o) return files.each(self, o) end,
    get = function(id) return files.get(self, id) end,
    delete = function(id) return files.delete(self, id) end,
    download = function(id, path, o) return files.download(self, id, path, o) end,
    upload_many = function(list, o) return files.upload_many(self, list, o) end,
  }
  self.batches = {
    create = function(o) return batches.create(self, o) end,
    get = function(id) return batches.get(self, id) end,
    list = function(o) return batches.list(self, o) end,
    each = function(o) return batches.each(self, o) end,
    cancel = function(id) return batches.cancel(self, id) end,
    wait = function(id, o) return batches.wait(self, id, o) end,
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

