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
  -- the operations, each bound to this client (called as client.files.upload{...})
  self.files, self.batches = {}, {}
  for _, op_name in ipairs({ "upload", "list", "each", "get", "delete", "download", "upload_many" }) do
    local op = files[op_name]
    self.files[op_name] = function(...) return op(self, ...) end
  end
  for _, op_name in ipairs({ "create", "get", "list", "each", "cancel", "wait" }) do
    local op = batches[op_name]
    self.batches[op_name] = function(...) return op(self, ...) end
  end
  -- client.close(): documented below, with the operations
  function self.close()
    self.session:close()
  end
  return setmetatable(self, {
    __tostring = function() return ("moonbatch client (%s, %s)"):format(name, self.base_url) end,
  })
end

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

--- Every file, page after page.
-- @function files.each
-- @tparam[opt] table opts
-- @tparam[opt] string opts.purpose only files of this purpose
-- @tparam[opt] integer opts.limit files per page fetched
-- @treturn function an iterator over every File: `for f in client.files.each() do ... end`;
-- it raises the error message when a page cannot be fetched, or when a page says more follow
-- but brings none

--- One file.
-- @function files.get
-- @tparam string id the file's id
-- @treturn table File, or `nil, msg, info`

--- Delete a file.
-- @function files.delete
-- @tparam string id the file's id
-- @treturn table `{id = id, deleted = true}`, or `nil, msg, info`

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

--- Upload many files at once, on one connection pool (see moonbatch.concurrently).
-- @function files.upload_many
-- @tparam table list `{ {file = ...}, ... }`, each entry the options of `files.upload`
-- @tparam[opt] table opts
-- @tparam[opt=8] integer opts.concurrency uploads at once
-- @tparam[opt] boolean opts.validate the default of each entry's `validate`
-- @treturn table one result per entry, in order: `{file = File}` or `{error = msg, info = info}`
-- @raise on misuse of `list`, of any entry or of `opts`, before anything is sent

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

--- One batch.
-- @function batches.get
-- @tparam string id the batch's id
-- @treturn table Batch, or `nil, msg, info`

--- Ask the provider to cancel a batch.
-- @function batches.cancel
-- @tparam string id the batch's id
-- @treturn table Batch (usually "cancelling"), or `nil, msg, info`

--- One page of batches.
-- @function batches.list
-- @tparam[opt] table opts
-- @tparam[opt] integer opts.limit batches per page (where the provider pages them)
-- @tparam[opt] string opts.after the id after which the page starts; raises where the provider
-- has no cursor
-- @treturn table Page of Batch, or `nil, msg, info`
-- @raise on misuse

--- Every batch, page after page.
-- @function batches.each
-- @tparam[opt] table opts
-- @tparam[opt] integer opts.limit batches per page fetched
-- @treturn function an iterator over every Batch; it raises the error message when a page
-- cannot be fetched

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

--- Client.
-- @section client

--- Close the client's connection now rather than at garbage collection. A call made on the
-- client after it raises ("the session is closed").
-- @function close

return client

