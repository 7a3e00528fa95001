--- moonbatch.client.files: a client's file operations (`client.files.upload{...}` and the rest):
-- each describes its request (built here, in Lua, from the provider's data) and parses the
-- reply; moonbatch.client.call sends it and retries it.
-- @module moonbatch.client.files
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local objects = require("moonbatch.objects")
local scheduler = require("moonbatch.scheduler")
local validate = require("moonbatch.validate")
local fs = require("moonbatch.fs")
local call = require("moonbatch.client.call")

local M = {}

local copy, escape_id, error_context = call.copy, call.escape_id, call.error_context
local random_hex = fs.random_hex

-- the multipart form of an upload: the purpose, the provider's extra fields (sorted by name, so
-- that the request is the same on every run), then the file part, checked as it is sent
local function upload_form(purpose, fields, file)
  local form = { { name = "purpose", value = purpose } }
  local names = {}
  for k in pairs(fields or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do form[#form + 1] = { name = k, value = fields[k] } end
  form[#form + 1] = file
  return form
end

local upload_spec = { file = "string", purpose = "string", filename = "string",
                      on_progress = "function", validate = "boolean", endpoint = "string",
                      replace_model = "string" }

-- files.upload: documented in moonbatch.client
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
  -- refused as not a regular file, not opened to wait for a writer). It also takes the identity
  -- of the file sent, once: an attempt finding it changed (or a read finding it changed while
  -- it is sent) fails the call, never sends a mix of two files as one.
  local identity, unreadable = core.file_identity(opts.file)
  if not identity then
    return nil, errors.make(ctx, { kind = "io", attempts = 0, message = unreadable })
  end
  -- a provider whose lines differ from OpenAI's sends a rewritten copy (the user's file stays)
  local source, cleanup = opts.file, nil
  if p.upload_source then
    source, cleanup = p.upload_source(opts.file)
    if not source then
      return nil, errors.make(ctx, { kind = "io", attempts = 0,
        message = ("cannot write the %s copy of '%s': %s"):format(p.name, opts.file, tostring(cleanup)) })
    end
    identity, unreadable = core.file_identity(source)
    if not identity then
      cleanup()
      return nil, errors.make(ctx, { kind = "io", attempts = 0, message = unreadable })
    end
  end
  local validated -- the check's report of the bytes sent, when they passed
  -- the file is checked as it is sent, in the same pass: a bad line found here costs nothing;
  -- found by the provider, it costs an upload and a batch. The line stops the upload before
  -- its end (the server gets no file), and the call fails as moonbatch.validate does.
  local rejected -- the scan's report, when a bad line stopped the upload
  local url = self.base_url .. p.upload_path
  local form = upload_form(opts.purpose or p.batch_purpose, fields, {
    name = "file", file = source, identity = identity,
    filename = opts.filename or (cleanup and opts.file:match("[^/]*$")) or source:match("[^/]*$"),
    validate = opts.validate ~= false and validate.options(p, opts) or nil,
  })
  local file, msg, info = call.call(self, {
    method = "POST", path = p.upload_path,
    run = function(timeout, headers)
      local req = call.request(self, { method = "POST", url = url, form = form }, timeout, headers)
      req.on_progress = opts.on_progress or self.on_progress
      local body, res, failure = call.perform(self, req)
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

-- files.list: documented in moonbatch.client
local function files_list(self, opts)
  local p = self.provider
  local wanted, query
  if opts == nil and self.list_op then
    -- the most common call: its operation (query, request and parser) is made once per client
    return call.call(self, self.list_op)
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
    method = "GET", path = p.files_path, run = call.exchange(self, "GET", p.files_path, query),
    parse = function(body) return p.files_page(body, wanted) end,
  }
  if opts ~= nil and next(opts) == nil and self.list_defaults then self.list_op = op end
  return call.call(self, op)
end


local each_spec = { purpose = "string", limit = args.PAGE }

-- files.each: documented in moonbatch.client
local function files_each(self, opts)
  args.check("files.each", opts, each_spec)
  opts = opts or {}
  local p = self.provider
  return call.each(self, function(after)
    return files_list(self, { purpose = opts.purpose, limit = opts.limit, after = p.files_cursor and after or nil })
  end, "files", p.files_path)
end

-- files.get: documented in moonbatch.client
local function files_get(self, id)
  local p = self.provider
  return call.on_path(self, "GET", p.files_path .. "/" .. escape_id("files.get", id), p.file)
end

-- files.delete: documented in moonbatch.client
local function files_delete(self, id)
  local p = self.provider
  return call.on_path(self, "DELETE", p.files_path .. "/" .. escape_id("files.delete", id), function(body)
    if type(body) == "table" and body.deleted == true then
      return { id = type(body.id) == "string" and body.id or id, deleted = true }
    end
    return nil, { kind = "api", message = "the file was not deleted" }
  end)
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
    local result, msg, info = call.call(self, op)
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
    call.pause(self, 2)
  end
end

-- files.download: documented in moonbatch.client
local function files_download(self, id, path, opts)
  args.string("files.download", 1, "id", id)
  args.string("files.download", 2, "path", path)
  args.check("files.download", opts, download_spec)
  opts = opts or {}
  local p = self.provider
  -- a URL (any scheme: an id never holds "://") is fetched as it is, if the guard lets it
  local url_given = id:match("^%a[%w+.-]*://") ~= nil
  local refused = url_given and call.insecure(id, self.allow_http)
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
      local h = url_given and copy(headers) or call.with_key(self, headers)
      return call.perform(self, {
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

-- files.upload_many: documented in moonbatch.client
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

M.upload, M.list, M.each, M.get = files_upload, files_list, files_each, files_get
M.delete, M.download, M.upload_many = files_delete, files_download, files_upload_many

return M
