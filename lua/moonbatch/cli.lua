--- moonbatch.cli: the `moonbatch` command line. main(argv) parses the words, drives
-- the client and returns the exit status: 0 done, 1 failed (the reason on standard error),
-- 2 a usage error, 130 interrupted. Results go to standard output (JSON with --json, short
-- `key: value` lines otherwise); steps and progress go to standard error.
-- @module moonbatch.cli
local errors = require("moonbatch.errors")
local fs = require("moonbatch.fs")
local progress = require("moonbatch.progress")

local cli = {}

local failure = require("moonbatch.cli.failure")
local output = require("moonbatch.cli.output")
local help = require("moonbatch.cli.help")
local providers = require("moonbatch.providers")

local EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = failure.EXIT_OK, failure.EXIT_FAILED, failure.EXIT_USAGE,
  failure.EXIT_INTERRUPTED
local Failure, fail, usage_error = failure.Failure, failure.fail, failure.usage_error


-- shell helpers ------------------------------------------------------------------------------------

local quote, succeeded = fs.quote, fs.succeeded
local capture, trim = fs.capture, fs.trim
local count_lines, basename, dirname = fs.count_lines, fs.basename, fs.dirname

--- RESULTS with ".errors" before its extension: out.jsonl -> out.errors.jsonl, out -> out.errors.
function cli.errors_path(results)
  return require("moonbatch.job").tagged(results, "errors")
end

-- the `.part` files the client may leave beside `target` (a download cut short by Ctrl-C)
local function part_files(target)
  local out = capture(("for f in %s.moonbatch-*.part; do [ -e \"$f\" ] && printf '%%s\\n' \"$f\"; done 2>/dev/null")
    :format(quote(target)))
  local found = {}
  for line in (out or ""):gmatch("[^\n]+") do found[line] = true end
  return found
end

cli.json = output.json
local table_lines, batch_counts, plural, models_text = output.table_lines, output.batch_counts, output.plural,
  output.models_text
local error_text, short_time, status_parts = output.error_text, output.short_time, output.status_parts
local FILE_FIELDS, BATCH_FIELDS = output.FILE_FIELDS, output.BATCH_FIELDS

local parse = require("moonbatch.cli.parse")
local FLAGS, COMMON = parse.FLAGS, parse.COMMON
local commands, order = help.commands, help.order
local BATCH_OPTIONS_HELP = help.BATCH_OPTIONS_HELP
local tool_help, command_help, command_usage = help.tool_help, help.command_help, help.command_usage

--- Parse argv into { command, args = {...}, opts = {...} }; raises a usage Failure.
-- @tparam table argv the words after the command's name
-- @treturn table `{command =, args = {...}, opts = {...}}`
cli.parse = parse.parse

-- context ------------------------------------------------------------------------------------

local function is_terminal()
  local mode = os.getenv("MOONBATCH_PROGRESS")
  if mode == "always" then return true end
  if mode == "never" then return false end
  if os.getenv("TERM") == "dumb" then return false end -- no cursor movement there
  return succeeded(os.execute("test -t 2"))
end

local function terminal_width()
  local columns = tonumber(os.getenv("COLUMNS") or "")
  if columns and columns > 0 then return columns end
  local out = capture("stty size 0<&2 2>/dev/null")
  local cols = out and tonumber(out:match("^%s*%d+%s+(%d+)"))
  return cols and cols > 0 and cols or 80
end

--- The first line of the key file, trimmed; warns when others may read it.
local function read_key_file(path, say)
  local f, err = io.open(path, "r")
  if not f then fail("moonbatch: cannot read the key file: " .. tostring(err)) end
  local line = f:read("*l")
  f:close()
  line = line and trim(line)
  if not line or line == "" then fail(("moonbatch: the key file %s is empty"):format(path)) end
  local mode = capture("stat -L -c %a -- " .. quote(path) .. " 2>/dev/null")
  mode = mode and trim(mode)
  if mode and mode:match("^%d%d%d%d?$") then
    local group, other = tonumber(mode:sub(-2, -2)), tonumber(mode:sub(-1))
    if group % 8 >= 4 or other % 8 >= 4 then
      say(("moonbatch: warning: the key file %s can be read by other users (chmod 600 %s)")
        :format(path, path))
    end
  end
  return line
end

local function provider_name(opts)
  local name = opts.provider or os.getenv("MOONBATCH_PROVIDER")
  if name == nil or name == "" then name = providers.default end
  local ok, err = pcall(providers.names)
  if not ok then usage_error(tostring(err)) end
  local known = err
  for _, n in ipairs(known) do
    if n == name then return name end
  end
  usage_error(("unknown provider '%s' (known: %s)"):format(name, table.concat(known, ", ")))
end

local Context = setmetatable({}, { __index = output.methods })
Context.__index = Context

local function new_context(parsed)
  local opts = parsed.opts
  local tty = is_terminal()
  local ctx = setmetatable({
    command = parsed.command, args = parsed.args, opts = opts, json = opts.json or false,
    provider = provider_name(opts), secrets = {}, temp_targets = {},
  }, Context)
  ctx:check_base_url(opts["base-url"], "--base-url")
  ctx.reporter = progress.new({
    stream = io.stderr, tty = tty, width = tty and terminal_width() or 80, quiet = opts.quiet,
    clock = function() return ctx.core and ctx.core.now() or os.clock() end,
    redact = function(text) return ctx:redact(text) end,
  })
  return ctx
end

--- A usage error when `url` (given by `source`, a flag or a variable) cannot be a base URL.
function Context.check_base_url(_, url, source)
  local problem = url and require("moonbatch.cli.url").problem(url)
  if problem then usage_error(("bad %s: %s"):format(source, problem)) end
end

--- The library: loaded only for commands that need it, so --help works without the C module.
function Context:library()
  if not self.moonbatch then
    self.moonbatch = require("moonbatch")
    self.core = require("moonbatch.core")
  end
  return self.moonbatch
end

--- The client, its key from --key-file or the environment; fails when there is no key.
-- settings (the job commands): base_url, the job's own; tasks = true, the library's sleep, so that
-- the waits of many tasks overlap; optional = true, nil rather than a failure without a key.
function Context:client(settings)
  if self.client_ then return self.client_ end
  settings = settings or {}
  local moonbatch = self:library()
  local key
  if self.opts["key-file"] then
    key = read_key_file(self.opts["key-file"], function(text) self:warn(text) end)
  end
  local core, reporter = self.core, self.reporter
  -- the URL the library will use, and where it came from, for a usage error that names it
  local base_url, source = settings.base_url or self.opts["base-url"], "--base-url"
  local from_env = os.getenv("MOONBATCH_BASE_URL")
  if settings.base_url then
    source = "base URL" -- the job's own, from its manifest
  elseif not base_url and from_env and from_env ~= "" then
    base_url, source = from_env, "MOONBATCH_BASE_URL"
  end
  self:check_base_url(base_url, source)
  local made, client = pcall(moonbatch.new, {
    provider = self.provider, base_url = base_url, api_key = key,
    allow_http = self.opts["allow-http"] or nil,
    -- the waits between polls and retries sleep in slices, so the status line's clock moves
    sleep = not settings.tasks and function(seconds)
      local ends = core.now() + seconds
      while true do
        local left = ends - core.now()
        if left <= 0 then break end
        core.sleep(math.min(left, 0.25))
        reporter:tick()
      end
    end or nil,
  })
  if not made and not tostring(client):find("bad base_url: ", 1, true) then error(client, 0) end
  if not made then
    -- what the library refuses in the URL (plain HTTP to another host) is the user's to fix
    local text = tostring(client):gsub("^[^:\n]+:%d+: ", ""):gsub("^moonbatch%.new: bad base_url: ", "")
      :gsub("allow_http = true", "--allow-http")
    usage_error(("bad %s: %s"):format(source, text))
  end
  if not client.api_key then
    if settings.optional then return nil end
    fail(("moonbatch: no API key: set %s or MOONBATCH_API_KEY, or use --key-file PATH")
      :format(client.provider.key_env))
  end
  self.secrets[#self.secrets + 1] = client.api_key
  self.client_ = client
  return client
end

--- The value of a call that returns value or nil, msg, info; a failure ends the command.
function Context.check(_, value, msg, info)
  if value == nil then
    fail(msg or "moonbatch: failed", EXIT_FAILED, { info = info })
  end
  return value
end

-- steps ------------------------------------------------------------------------------------
-- does a failure's info list the problems of an input file?
local function has_problems(info)
  return info and info.kind == "validation" and info.problems
end

-- a failed call on the input `file`: its problems listed as `validate` lists them, else the message
local function file_failure(ctx, file, msg, info)
  if has_problems(info) then
    ctx:warn_problems(file, info)
    fail(nil, EXIT_FAILED, { info = info, shown = true })
  end
  fail(msg, EXIT_FAILED, { info = info })
end

--- moonbatch.validate(file) under the command's provider, --endpoint and --model.
function Context:validate_file(file)
  return self:library().validate(file, {
    provider = self.provider, endpoint = self.opts.endpoint, replace_model = self.opts.model,
  })
end

--- Validate `file`: the report, or the problems on standard error and a failure.
function Context:validate_step(file, quiet_ok)
  local report, msg, info = self:validate_file(file)
  if not report then file_failure(self, file, msg, info) end
  if not quiet_ok then
    local models = models_text(report.models)
    local several = models and models:find(", ", 1, true)
    self:say(("validated %s: %s, %s%s"):format(file, plural(report.lines or 0, "request"),
      progress.bytes(report.bytes or 0), models and ((several and ", models " or ", model ") .. models) or ""))
  end
  return report
end

--- Upload `file` with a bar: the File.
function Context:upload_step(file)
  local client = self:client()
  local size, why = fs.size(file) -- never blocks: a FIFO is refused, not opened
  if not size then fail("moonbatch: " .. tostring(why)) end
  self.reporter:plain(("uploading %s (%s)"):format(file, progress.bytes(size)))
  local bar = self.reporter:transfer("uploading " .. basename(file), size)
  local uploaded, msg, info = client.files.upload({
    file = file, purpose = self.opts.purpose, filename = self.opts.filename,
    validate = false, on_progress = bar:callback(),
  })
  bar:finish(uploaded ~= nil)
  local f = self:check(uploaded, msg, info)
  self:say(("uploaded %s as %s"):format(file, f.id))
  return f
end

--- Download `id` to `path` with a bar; the {path, bytes} result. Removes what a cut leaves.
-- `shown` names the target in messages (default: path)
function Context:download_step(id, path, what, shown)
  local client = self:client()
  local before = part_files(path)
  self.temp_targets[#self.temp_targets + 1] = { path = path, before = before }
  self.reporter:plain(("downloading %s to %s"):format(what or id, shown or path))
  local bar = self.reporter:transfer("downloading " .. (shown and id or basename(path)), nil)
  self.downloading = { id = id, path = path }
  local result, msg, info = client.files.download(id, path, { on_progress = bar:callback() })
  bar:finish(result ~= nil)
  table.remove(self.temp_targets)
  result = self:check(result, msg, info)
  self.downloading = nil
  self:say(("wrote %s (%s)"):format(shown or path, progress.bytes(result.bytes or 0)))
  return result
end

--- Wait for batch `id` with a status line; the final Batch.
function Context:wait_step(id)
  local client = self:client()
  local status = self.reporter:status("batch " .. id)
  local interval = self.opts.interval
  local batch, msg, info = client.batches.wait(id, {
    interval = interval, max_interval = interval, timeout = self.opts.timeout,
    on_update = function(b)
      local text, fraction = status_parts(b)
      status:update(text, fraction, ("batch %s: %s"):format(id, text))
    end,
  })
  status:finish()
  return self:check(batch, msg, info)
end

-- the exit status once batch `b` has ended: 0 when it completed, else 1 and why on standard error
local function batch_exit(ctx, b)
  if b.status == "completed" then return EXIT_OK end
  local why = {}
  for _, e in ipairs(b.errors or {}) do why[#why + 1] = error_text(e) end
  ctx:warn(("moonbatch: batch %s %s%s"):format(b.id, b.status,
    #why > 0 and (": " .. table.concat(why, "; ")) or ""))
  return EXIT_FAILED
end

-- the commands ------------------------------------------------------------------------------------

function commands.validate.run(ctx)
  local file = ctx.args[1]
  local report, msg, info = ctx:validate_file(file)
  if not report then
    if not has_problems(info) then fail(msg, EXIT_FAILED, { info = info }) end
    if ctx.json then
      local r = info.report or {}
      ctx:print_json({ ok = false, file = file, lines = r.lines, bytes = r.bytes, models = r.models,
                       problems = info.problems })
    end
    ctx:warn_problems(file, info)
    return EXIT_FAILED
  end
  if ctx.json then
    ctx:print_json({ ok = true, file = file, lines = report.lines, bytes = report.bytes, models = report.models })
  else
    ctx:out(("file: %s"):format(file))
    ctx:out(("ok: %s"):format("true"))
    ctx:out(("lines: %d"):format(report.lines or 0))
    ctx:out(("bytes: %d (%s)"):format(report.bytes or 0, progress.bytes(report.bytes or 0)))
    local models = models_text(report.models)
    if models then ctx:out("models: " .. models) end
  end
  return EXIT_OK
end

function commands.upload.run(ctx)
  local file = ctx.args[1]
  ctx:client() -- no key: say so before reading a large file
  if not ctx.opts["no-validate"] then ctx:validate_step(file) end
  ctx:print_object(ctx:upload_step(file), FILE_FIELDS)
  return EXIT_OK
end

local function collect(iterator_maker)
  local items = {}
  local ok, err = pcall(function()
    for item in iterator_maker() do items[#items + 1] = item end
  end)
  if not ok then
    if type(err) == "string" and err:find("interrupted!", 1, true) then error(err, 0) end
    fail(tostring(err))
  end
  return { object = "list", data = items, has_more = false, first_id = items[1] and items[1].id,
           last_id = items[#items] and items[#items].id }
end

-- list `kind` ("files" or "batches"): one page, or every page with --all; printed as JSON or as
-- a table of `header`, row(item) a row
local function list_command(ctx, kind, opts, header, row)
  local api = ctx:client()[kind]
  local page
  if ctx.opts.all then
    page = collect(function() return api.each(opts) end)
  else
    page = ctx:check(api.list(opts))
  end
  page = ctx:redacted(page)
  if ctx.json then
    ctx:print_json(page)
    return EXIT_OK
  end
  if #page.data == 0 then
    ctx:out("no " .. kind)
    return EXIT_OK
  end
  local rows = {}
  for i, item in ipairs(page.data) do rows[i] = row(item) end
  for _, line in ipairs(table_lines(header, rows)) do ctx:out(line) end
  if page.has_more then ctx:say(("(more %s: --all lists every page)"):format(kind)) end
  return EXIT_OK
end

function commands.files.run(ctx)
  return list_command(ctx, "files", { purpose = ctx.opts.purpose, limit = ctx.opts.limit },
    { "ID", "SIZE", "CREATED (UTC)", "LINES", "PURPOSE", "FILENAME" }, function(f)
      return { f.id or "?", f.bytes and progress.bytes(f.bytes) or "-", short_time(f.created_at),
               f.line_count and tostring(f.line_count) or "-", f.purpose or "-", f.filename or "" }
    end)
end

function commands.batches.run(ctx)
  return list_command(ctx, "batches", { limit = ctx.opts.limit },
    { "ID", "STATUS", "DONE", "CREATED (UTC)", "INPUT" }, function(b)
      return { b.id or "?", b.status or "?", batch_counts(b) or "-", short_time(b.created_at),
               b.input_file_id or "-" }
    end)
end

local function metadata(ctx)
  local list = ctx.opts.metadata
  if not list then return nil end
  local m = {}
  for _, entry in ipairs(list) do
    local k, v = entry:match("^([^=]+)=(.*)$")
    if not k then usage_error(("--metadata needs KEY=VALUE, not '%s'"):format(entry), ctx.command) end
    m[k] = v
  end
  return m
end

-- the batch options the flags give, for the batch of `file_id` (none for a job: each shard's own)
local function create_options(ctx, file_id)
  return {
    input_file_id = file_id, endpoint = ctx.opts.endpoint,
    completion_window = ctx.opts["completion-window"], metadata = metadata(ctx),
    replace = ctx.opts.model and { model = ctx.opts.model } or nil,
  }
end

-- a client call that may raise for options the provider does not take: a failure, not a crash
-- f(...)'s value, msg, info; a raised misuse becomes a usage failure
local unraised, guarded = failure.unraised, failure.guarded


function commands.create.run(ctx)
  local client = ctx:client()
  local opts = create_options(ctx, ctx.args[1])
  ctx:print_object(guarded(ctx, client.batches.create, opts), BATCH_FIELDS)
  return EXIT_OK
end

-- a command that prints the Batch that client.batches[method](BATCH_ID) returns
local function batch_command(method)
  return function(ctx)
    ctx:print_object(ctx:check(ctx:client().batches[method](ctx.args[1])), BATCH_FIELDS)
    return EXIT_OK
  end
end

commands.status.run = batch_command("get")

function commands.wait.run(ctx)
  local batch = ctx:wait_step(ctx.args[1])
  ctx:print_object(batch, BATCH_FIELDS)
  return batch_exit(ctx, batch)
end

commands.cancel.run = batch_command("cancel")

function commands.download.run(ctx)
  local id, path = ctx.args[1], ctx.args[2]
  if path == "-" then return require("moonbatch.cli.stdout").download(ctx, id) end
  local result = ctx:download_step(id, path)
  if ctx.json then
    ctx:print_json({ id = id, path = result.path, bytes = result.bytes })
  else
    ctx:out("id: " .. id)
    ctx:out("path: " .. result.path)
    ctx:out(("bytes: %d (%s)"):format(result.bytes or 0, progress.bytes(result.bytes or 0)))
  end
  return EXIT_OK
end

function commands.delete.run(ctx)
  local result = ctx:check(ctx:client().files.delete(ctx.args[1]))
  if ctx.json then
    ctx:print_json(result)
  else
    ctx:out("id: " .. result.id)
    ctx:out("deleted: true")
  end
  return EXIT_OK
end

-- a directory we may create files in
local function writable_dir(path)
  return succeeded(os.execute(("test -d %s && test -w %s"):format(quote(path), quote(path))))
end

local function same_file(a, b)
  return a == b or succeeded(os.execute(("test %s -ef %s"):format(quote(a), quote(b))))
end

-- the paths -o and --errors name (by default: the results with .errors before the extension),
-- once checked: both can be written, and are neither the input `file` nor each other
local function output_paths(ctx, file)
  local results = ctx.opts.output
  local errors_path = ctx.opts.errors or cli.errors_path(results)
  for _, p in ipairs({ results, errors_path }) do
    if not writable_dir(dirname(p)) then
      fail(("moonbatch: cannot write %s: %s is not a writable directory"):format(p, dirname(p)))
    end
    if file and same_file(p, file) then fail(("moonbatch: %s is the input file: choose another -o or --errors"):format(p)) end
  end
  if same_file(results, errors_path) then
    fail("moonbatch: the results and the errors would go to the same file " .. results)
  end
  return results, errors_path
end

function commands.run.run(ctx)
  local file = ctx.args[1]
  local client = ctx:client()
  local results, errors_path = output_paths(ctx, file)
  local opts = create_options(ctx, "?")
  local report
  if not ctx.opts["no-validate"] then report = ctx:validate_step(file) end

  local uploaded = ctx:upload_step(file)
  ctx.input_file = uploaded
  opts.input_file_id = uploaded.id
  local batch = guarded(ctx, client.batches.create, opts)
  ctx.batch_id = batch.id
  ctx:say(("created batch %s (%s)"):format(batch.id, batch.status or "?"))

  batch = ctx:wait_step(batch.id)
  ctx.batch_final = true
  -- a result file id may show up a moment after the batch says completed (the provider's polls)
  local tries = 0
  while batch.status == "completed" and not batch.output_file_id and not batch.error_file_id
      and tries < client.provider.late_result_polls do
    tries = tries + 1
    client.sleep(ctx.opts.interval or 2)
    batch = ctx:check(client.batches.get(batch.id))
  end

  local written = {}
  if batch.output_file_id then
    ctx:download_step(batch.output_file_id, results, "results")
    written.results = results
  elseif batch.status == "completed" then
    -- written as downloads are: beside it first, then renamed
    local ok, err = fs.write_atomic(results, results .. ".moonbatch-empty.part", "")
    if not ok then fail(("moonbatch: cannot write %s: %s"):format(results, tostring(err))) end
    ctx:say(("wrote %s (empty: no request succeeded)"):format(results))
    written.results = results
  end
  if batch.error_file_id then
    ctx:download_step(batch.error_file_id, errors_path, "errors")
    written.errors = errors_path
  end

  local rc = batch.request_counts or {}
  local result_lines = written.results and count_lines(written.results) or 0
  local error_lines = written.errors and count_lines(written.errors) or 0
  local summary = {
    batch = batch, input_file = uploaded,
    requests = rc.total or (report and report.lines) or (result_lines + error_lines),
    completed = rc.completed or result_lines,
    failed = rc.failed or error_lines,
    results = written.results, errors = written.errors,
  }
  if ctx.json then
    ctx:print_json(summary)
  else
    ctx:out("batch: " .. batch.id)
    ctx:out("status: " .. tostring(batch.status))
    ctx:out("requests: " .. summary.requests)
    ctx:out("completed: " .. summary.completed)
    ctx:out("failed: " .. summary.failed)
    if written.results then ctx:out(("results: %s (%s)"):format(written.results, plural(result_lines, "line"))) end
    if written.errors then ctx:out(("errors: %s (%s)"):format(written.errors, plural(error_lines, "line"))) end
  end
  return batch_exit(ctx, batch)
end

-- jobs: the `moonbatch job` commands, in their own module
require("moonbatch.cli.job")(commands, {
  EXIT_OK = EXIT_OK, EXIT_FAILED = EXIT_FAILED, BATCH_OPTIONS_HELP = BATCH_OPTIONS_HELP, fail = fail,
  usage_error = usage_error, unraised = unraised, guarded = guarded, file_failure = file_failure,
  output_paths = output_paths, create_options = create_options, plural = plural, table_lines = table_lines,
  batch_counts = batch_counts,
})

-- main ------------------------------------------------------------------------------------

local function check_arity(parsed)
  local c = commands[parsed.command]
  if #parsed.args < #c.args then
    usage_error(("missing %s"):format(c.args[#parsed.args + 1]), parsed.command)
  end
  if #parsed.args > #c.args then
    usage_error(("unexpected argument '%s'"):format(parsed.args[#c.args + 1]), parsed.command)
  end
  for _, name in ipairs(c.required or {}) do
    if parsed.opts[name] == nil then
      local flag = FLAGS[name]
      usage_error(("missing %s %s"):format(flag.short and ("-" .. flag.short) or ("--" .. name), c.required_value or flag.value),
        parsed.command)
    end
  end
end

-- remove what an interrupted download left beside its target
local function clean_up(ctx)
  if ctx.stdout_temp then os.remove(ctx.stdout_temp) end
  for _, t in ipairs(ctx.temp_targets or {}) do
    for path in pairs(part_files(t.path)) do
      if not t.before[path] then os.remove(path) end
    end
  end
  ctx.temp_targets = {}
end

local function dispatch(argv, state)
  local parsed = cli.parse(argv)
  if parsed.command == "help" then
    local topic = parsed.args[1]
    if topic == "job" and parsed.args[2] then topic = "job " .. parsed.args[2] end
    if topic and not commands[topic] then usage_error(("unknown command '%s'"):format(topic)) end
    io.stdout:write(topic and command_help(topic) or tool_help())
    return EXIT_OK
  end
  if parsed.opts.help then
    io.stdout:write(parsed.command and command_help(parsed.command) or tool_help())
    return EXIT_OK
  end
  if parsed.opts.version then
    local ok, moonbatch = pcall(require, "moonbatch")
    if not ok then fail("moonbatch: cannot load the library: " .. tostring(moonbatch)) end
    local version = tostring(moonbatch._VERSION)
    io.stdout:write((version:find("^moonbatch ") and version or "moonbatch " .. version) .. "\n")
    return EXIT_OK
  end
  if not parsed.command then
    io.stderr:write(tool_help())
    return EXIT_USAGE
  end
  check_arity(parsed)
  local ctx = new_context(parsed)
  state.ctx = ctx
  return commands[parsed.command].run(ctx)
end

function commands.completion.run(ctx)
  local script = require("moonbatch.cli.completion").script(ctx.args[1], cli.help())
  if not script then
    usage_error(("no completion for '%s' (bash, zsh or fish)"):format(ctx.args[1]), "completion")
  end
  io.stdout:write(script)
  return EXIT_OK
end

--- The help records, one source for `--help`, the man page (moonbatch.cli.man) and the
-- completion scripts: commands (by name: args, summary, flags, help), their order, every flag
-- (value, short), the common flags, and the tool's and each command's help text.
function cli.help()
  return { commands = commands, order = order, flags = FLAGS, common = COMMON,
           tool_help = tool_help, command_help = command_help, command_usage = command_usage }
end

--- Run the command line `argv` (a list of words, as Lua's `arg`); returns the exit status.
function cli.main(argv)
  local words = {}
  for i = 1, #(argv or {}) do words[i] = tostring(argv[i]) end
  local state = {}
  local ok, result = xpcall(function() return dispatch(words, state) end, function(err)
    if getmetatable(err) == Failure or (type(err) == "string" and err:find("interrupted!", 1, true)) then
      return err
    end
    return { bug = tostring(err), trace = debug.traceback(tostring(err), 2) }
  end)
  if ok then
    io.stdout:flush()
    return result
  end
  local ctx = state.ctx
  if ctx then
    ctx.reporter:close_line()
    clean_up(ctx)
  end
  local function say(text)
    io.stderr:write(errors.printable(ctx and ctx:redact(text) or text, true) .. "\n")
  end
  local code
  if getmetatable(result) == Failure then
    if result.msg then say(result.msg) end
    code = result.code
  elseif type(result) == "string" then
    say("moonbatch: interrupted")
    code = EXIT_INTERRUPTED
  else
    say("moonbatch: " .. result.bug:gsub("^moonbatch: ", ""))
    if os.getenv("MOONBATCH_DEBUG") then say(result.trace) end
    code = EXIT_FAILED
  end
  -- what `run` leaves to do by hand
  local manifest = ctx and ctx.job_manifest and io.open(ctx.job_manifest, "rb")
  if manifest then manifest:close() end
  if manifest and code == EXIT_INTERRUPTED then
    say(("moonbatch: the job is recorded in %s: run the same command again to resume it"):format(ctx.job_manifest))
  elseif ctx and ctx.batch_id and not ctx.batch_final then
    say(("moonbatch: batch %s keeps running: `moonbatch wait %s` follows it, `moonbatch cancel %s` stops it")
      :format(ctx.batch_id, ctx.batch_id, ctx.batch_id))
  elseif ctx and ctx.command == "run" and ctx.downloading then
    say(("moonbatch: to fetch it again: moonbatch download %s %s")
      :format(ctx.downloading.id, quote(ctx.downloading.path)))
  end
  return code
end

return cli
