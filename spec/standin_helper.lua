-- Starts bin/moonbatch-standin for specs and drives its control API (faults, log, reset, stored
-- files, settings).
--
--   local standin = require("spec.standin_helper")
--   local s = standin.start{ key = "sk-standin" }   -- also: port, dir, watch_pid, env = { NAME = value }
--   s.urls.siliconflow, s.urls["siliconflow-global"], s.urls.together, s.urls.openai
--   s.control, s.port, s.key, s.pid
--   s:reset(); s:fault("POST", "/siliconflow/v1/files", { { status = 503, retry_after = "0" } })
--   s:config{ step_seconds = 0.2 }  -- batch settings (see standin/README.md); returns them all
--   s:log(); s:file_content(id); s:stop()
--   s:call(method, path, json) -- any control call: returns the raw body and the HTTP status
--   standin.alive(pid)         -- whether a process still runs (a zombie does not)
--   standin.curl(url, opts)    -- one request with the curl command: see below
--   standin.curl_with(key)     -- standin.curl sending `key` unless opts.key says otherwise
--   standin.keys_of(t)         -- a decoded reply's keys, sorted
--
-- The stand-in watches this process (--watch-pid), so an aborted run leaves no nginx behind.
-- Needs only lua-cjson and the curl and coreutils commands.
local cjson = require("cjson")
local shell = require("spec.support.shell")
local quote, capture, read_file, trim = shell.quote, shell.capture, shell.read_file, shell.trim
local execute, own_pid = shell.execute, shell.own_pid

local M = {}

local Standin = {}
Standin.__index = Standin

local function script_path()
  return shell.root() .. "/bin/moonbatch-standin"
end

local alive = shell.alive
M.alive = alive

local CURL = "curl -s -S --noproxy '*' "

-- Starts a stand-in; raises an error with its stderr when it does not come up.
function M.start(opts)
  opts = opts or {}
  local key = opts.key or "sk-standin"
  local tmp = trim(capture("mktemp -d"))
  local fifo, errors = tmp .. "/stdout", tmp .. "/stderr"
  assert(execute("mkfifo " .. quote(fifo)), "cannot make a fifo in " .. tmp)
  local words = { quote(script_path()), "--key", quote(key),
                  "--watch-pid", tostring(opts.watch_pid or own_pid()) }
  if opts.port then words[#words + 1] = "--port " .. quote(opts.port) end
  if opts.dir then words[#words + 1] = "--dir " .. quote(opts.dir) end
  local env = { "env" }
  for name, value in pairs(opts.env or {}) do env[#env + 1] = name .. "=" .. quote(value) end
  -- In the background through sh, not as a popen child: closing a popen handle (or Lua's exit
  -- doing it) waits for the child, and the child waits for us. The group's own redirections let
  -- go of popen's pipe before opening the fifo blocks (until we open its other end below).
  local command = ("{ exec %s %s >%s 2>%s; } </dev/null >/dev/null 2>&1 & echo $!")
    :format(table.concat(env, " "), table.concat(words, " "), quote(fifo), quote(errors))
  local pid = tonumber(trim(capture(command)))
  local s = setmetatable({ key = key, pid = pid, urls = {}, tmp = tmp }, Standin)
  local out = assert(io.open(fifo, "r"))   -- blocks until the stand-in opens its stdout
  for line in out:lines() do
    local name, url = line:match("^(%S+) (%S+)$")
    if name == "control" then
      s.control = url
      break
    elseif name then
      s.urls[name] = url
    end
  end
  out:close()
  if not s.control then
    local stderr = read_file(errors) or ""
    s:stop()
    error("moonbatch-standin did not start:\n" .. stderr, 2)
  end
  s.port = tonumber(s.control:match(":(%d+)/"))
  return s
end

-- One control call; returns the body and the HTTP status.
function Standin:call(method, path, json)
  local args = { CURL, "-X", method, "-w", quote("\n%{http_code}") }
  local body_file
  if json then
    body_file = os.tmpname()
    local f = assert(io.open(body_file, "wb"))
    f:write(cjson.encode(json))
    f:close()
    args[#args + 1] = "-H 'Content-Type: application/json' --data-binary @" .. quote(body_file)
  end
  args[#args + 1] = quote(self.control .. path)
  local out = capture(table.concat(args, " "))
  if body_file then os.remove(body_file) end
  local body, status = out:match("^(.*)\n(%d+)$")
  if not body then error("stand-in " .. method .. " " .. path .. ": no answer", 2) end
  return body, tonumber(status)
end

local function expect_ok(self, method, path, json)
  local body, status = self:call(method, path, json)
  if status ~= 200 then
    error("stand-in " .. method .. " " .. path .. ": HTTP " .. status .. ": " .. body, 3)
  end
  return body
end

function Standin:reset()
  expect_ok(self, "POST", "/reset")
end

-- Queues faults for requests to (method, path); each matching request takes one.
function Standin:fault(method, path, faults)
  expect_ok(self, "POST", "/faults", { method = method, path = path, faults = faults })
end

-- Changes batch settings (step_seconds, siliconflow_output_urls, content_404_seconds) for
-- batches created afterwards; reset restores the defaults. Returns the settings now in force.
function Standin:config(settings)
  return cjson.decode(expect_ok(self, "POST", "/config", settings)).config
end

function Standin:log()
  return cjson.decode(expect_ok(self, "GET", "/log"))
end

-- The stored file's bytes, or nil when there is no such file.
function Standin:file_content(id)
  local body, status = self:call("GET", "/files/" .. id)
  if status == 404 then return nil end
  if status ~= 200 then error("stand-in GET /files/" .. id .. ": HTTP " .. status, 2) end
  return body
end

-- One request with the curl command line: returns { status, headers (lower-case names, the
-- last response's), body, rc (curl's exit code), time }. opts: method, key (sends
-- "Authorization: Bearer <key>"), headers, form (-F values), data (the body), max_time.
function M.curl(url, opts)
  opts = opts or {}
  local head, out = os.tmpname(), os.tmpname()
  local words = { CURL, "-D", quote(head), "-o", quote(out), "-w", quote("%{http_code} %{time_total}") }
  if opts.method then words[#words + 1] = "-X " .. opts.method end
  if opts.key then words[#words + 1] = "-H " .. quote("Authorization: Bearer " .. opts.key) end
  for _, h in ipairs(opts.headers or {}) do words[#words + 1] = "-H " .. quote(h) end
  for _, f in ipairs(opts.form or {}) do words[#words + 1] = "-F " .. quote(f) end
  local data_file
  if opts.data then
    data_file = os.tmpname()
    local f = assert(io.open(data_file, "wb"))
    f:write(opts.data)
    f:close()
    words[#words + 1] = "--data-binary @" .. quote(data_file)
  end
  if opts.max_time then words[#words + 1] = "--max-time " .. opts.max_time end
  words[#words + 1] = quote(url)
  local result = capture(table.concat(words, " ") .. " 2>/dev/null; echo \" $?\"")
  local status, time, rc = result:match("(%d+) ([%d.]+) (%d+)%s*$")
  local headers = {}
  for line in (read_file(head) or ""):gmatch("[^\r\n]+") do
    if line:match("^HTTP/") then
      headers = {}
    else
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then headers[name:lower()] = value end
    end
  end
  local r = { status = tonumber(status), time = tonumber(time), rc = tonumber(rc), headers = headers,
              body = read_file(out) or "" }
  os.remove(head)
  os.remove(out)
  if data_file then os.remove(data_file) end
  return r
end

-- standin.curl with `key` unless opts.key names another (false: no key at all).
function M.curl_with(key)
  return function(url, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    if o.key == nil then o.key = key end
    o.key = o.key or nil
    return M.curl(url, o)
  end
end

-- The keys of t (a decoded JSON object), sorted: the fields a reply has.
function M.keys_of(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function answers(self)
  return self.control
    and execute(CURL .. "-o /dev/null --max-time 1 " .. quote(self.control .. "/health") .. " 2>/dev/null")
end

-- Stops the stand-in and waits until it is gone and its port closed. Safe to call twice.
function Standin:stop()
  if self.stopped then return end
  self.stopped = true
  if self.pid then execute("kill -TERM " .. self.pid .. " 2>/dev/null") end
  for _ = 1, 200 do
    if not (self.pid and alive(self.pid)) and not answers(self) then break end
    execute("sleep 0.05")
  end
  os.remove(self.tmp .. "/stdout")
  os.remove(self.tmp .. "/stderr")
  os.remove(self.tmp)
end

return M
