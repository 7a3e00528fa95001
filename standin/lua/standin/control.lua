-- The control API under /_standin (no auth): reset, fault queues, the request log, stored files,
-- settings (POST/GET /config), health. /_standin/results/ is not here: see standin.results.
local common = require("standin.common")

local M = {}

local function ok(extra)
  local body = { ok = true }
  for k, v in pairs(extra or {}) do body[k] = v end
  return common.json_reply(200, body)
end

local function failed(status, message)
  return common.json_reply(status, { ok = false, error = message })
end

local function push_faults()
  local spec, err = common.read_json_body()
  if not spec then return failed(400, err) end
  if not common.is_object(spec) then return failed(400, "body must be an object: {method, path, faults}") end
  local queued, push_err = common.push_faults(spec.method, spec.path, spec.faults)
  if not queued then return failed(400, push_err) end
  return ok({ queued = queued })
end

local function configure()
  local changes, err = common.read_json_body()
  if changes == nil then return failed(400, err) end
  local settings, config_err = common.configure(changes)
  if not settings then return failed(400, config_err) end
  return ok({ config = settings })
end

local function log()
  local reply = common.json_reply(200, common.log())
  reply.body = common.redact(reply.body)
  return reply
end

function M.serve()
  local method, action = ngx.req.get_method(), ngx.var.uri:sub(#"/_standin" + 1)
  local reply
  if method == "POST" and action == "/reset" then
    common.reset()
    reply = ok()
  elseif method == "POST" and action == "/faults" then
    reply = push_faults()
  elseif method == "POST" and action == "/config" then
    reply = configure()
  elseif method == "GET" and action == "/config" then
    reply = ok({ config = common.settings() })
  elseif method == "GET" and action == "/log" then
    reply = log()
  elseif method == "GET" and action:match("^/files/") then
    local record = common.file(nil, action:sub(#"/files/" + 1))
    -- nginx sends the bytes itself from the internal location (see nginx.conf.in).
    if record then return ngx.exec("/_standin_stored/" .. record.id) end
    reply = failed(404, "no such file")
  elseif method == "GET" and action == "/health" then
    reply = ok({ instance = common.instance() })
  else
    reply = failed(404, "no such control endpoint")
  end
  common.send(reply)
end

return M
