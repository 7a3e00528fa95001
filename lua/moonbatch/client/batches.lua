--- moonbatch.client.batches: a client's batch operations (`client.batches.create{...}`, `wait`
-- and the rest): each describes its request (built here, in Lua, from the provider's data) and
-- parses the reply; moonbatch.client.call sends it and retries it.
-- @module moonbatch.client.batches
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local objects = require("moonbatch.objects")
local call = require("moonbatch.client.call")

local M = {}

local copy, escape_id, error_context = call.copy, call.escape_id, call.error_context



local create_spec = { input_file_id = "string", endpoint = "string",
                      completion_window = "string", metadata = "table", replace = "table",
                      idempotency_key = "string" }

-- batches.create: documented in moonbatch.client
local function batches_create(self, opts)
  args.check("batches.create", opts, create_spec, { "input_file_id" })
  local p = self.provider
  local key = opts.idempotency_key
  if key then
    opts = copy(opts)
    opts.idempotency_key = nil
  end
  local body = p.create_options(opts, p, self)
  local run
  if body.json then
    -- a provider whose create is not OpenAI's gives the whole JSON body
    run = call.exchange(self, "POST", p.batches_path, nil, body.json)
  else
    -- OpenAI's body: the provider's extra fields, the documented ones over them
    local json = copy(body.fields)
    json.input_file_id, json.endpoint = body.input_file_id, body.endpoint
    json.completion_window = body.completion_window or "24h"
    json.metadata, json.replace = body.metadata, body.replace
    local url = self.base_url .. p.batches_path
    run = function(timeout, headers)
      local req = call.request(self, { method = "POST", url = url, json = json }, timeout, headers)
      req.on_progress = self.on_progress
      return call.perform(self, req)
    end
  end
  return call.call(self, {
    method = "POST", path = p.batches_path, idempotency_key = key, run = run,
    parse = p.batch,
  })
end

-- batches.get: documented in moonbatch.client
local function batches_get(self, id)
  local p = self.provider
  return call.on_path(self, "GET", p.batches_path .. "/" .. escape_id("batches.get", id), p.batch)
end

-- batches.cancel: documented in moonbatch.client
local function batches_cancel(self, id)
  local p = self.provider
  return call.on_path(self, "POST", p.batches_path .. "/" .. escape_id("batches.cancel", id) .. "/cancel", p.batch)
end

local batches_list_spec = { limit = args.PAGE, after = "string" }

-- batches.list: documented in moonbatch.client
local function batches_list(self, opts)
  args.check("batches.list", opts, batches_list_spec)
  opts = opts or {}
  local p = self.provider
  if opts.after and not p.batches_cursor then
    error(("batches.list: option 'after' is not supported by %s"):format(p.name), 2)
  end
  local query = p.batches_cursor and { limit = opts.limit, after = opts.after } or nil
  return call.call(self, {
    method = "GET", path = p.batches_path, run = call.exchange(self, "GET", p.batches_path, query),
    parse = function(body) return p.batches_page(body, p) end,
  })
end

-- batches.each: documented in moonbatch.client
local function batches_each(self, opts)
  args.check("batches.each", opts, { limit = args.PAGE })
  opts = opts or {}
  local p = self.provider
  return call.each(self, function(after)
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

-- batches.wait: documented in moonbatch.client
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
    call.pause(self, ends and math.min(interval, ends - now) or interval)
    interval = math.min(interval * 1.5, max_interval)
  end
end

M.create, M.get, M.list, M.each, M.cancel, M.wait =
  batches_create, batches_get, batches_list, batches_each, batches_cancel, batches_wait

return M
