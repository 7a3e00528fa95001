-- Starts Prism (Stoplight's OpenAPI mock server, tools/prism) on an OpenAPI document for the
-- contract specs, and reads what it says about each request.
--
--   local contract = require("spec.contract_helper")
--   local mock = contract.start("spec/contract/siliconflow.yaml")  -- also: { watch_pid = PID }
--   mock.url, mock.port, mock.pid (the process group), mock:log(), mock:stop()
--   contract.violations(res, body)  -- what Prism found wrong with the request of one exchange
--   contract.describe(list)         -- the violations on one line, for assertion messages
--   contract.has(list, "request.body.purpose", "allowed values")  -- one at that place, so worded
--   contract.install()              -- scripts/install-prism (start() calls it)
--
-- Prism is started as `prism mock --errors -h 127.0.0.1 -p 0 DOC`: a free port chosen by the
-- kernel, read back from the line "Prism is listening on ...". It routes on the document's paths
-- (servers are ignored unless a request names one with ?__server=), so a client's base_url is
-- just mock.url. What Prism does with a request that breaks the document, with or without
-- --errors: it answers the document's own 4xx response (400 here; a 422 problem+json when the
-- document has none; 401 when the bearer token is missing or not a Bearer one) and lists every violation in the
-- sl-violations header. --errors adds the check of its own reply: a reply that breaks the
-- document (a seed's `example: null` on a non-nullable field, say) becomes a 500 problem+json
-- whose `validation` lists the violations, instead of passing silently.
--
-- Prism runs in a process group of its own beside a small shell watching this process (Prism has
-- no --watch-pid of its own): when busted goes away, even killed, the watcher ends the group.
-- stop() ends the group too. start() runs scripts/install-prism first, which installs Prism when
-- it is missing (or the lock changed) and otherwise returns at once.
-- Needs lua-cjson, node, and the curl, setsid, sh and coreutils commands.
local cjson = require("cjson")
local shell = require("spec.support.shell")
local quote, capture, read_file, trim = shell.quote, shell.capture, shell.read_file, shell.trim
local execute, own_pid = shell.execute, shell.own_pid

local M = {}

local Mock = {}
Mock.__index = Mock

-- The start time of process `pid` (field 22 of /proc/PID/stat, clock ticks since boot), which
-- tells it from a later process given the same pid; nil without /proc.
local function start_time(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  local rest = stat and stat:match("^.*%) (.*)$")
  if not rest then return nil end
  local fields = {}
  for word in rest:gmatch("%S+") do fields[#fields + 1] = word end
  return fields[20]   -- rest starts at field 3 (state)
end

local root = shell.root

local function prism_bin()
  return root() .. "/tools/prism/node_modules/.bin/prism"
end

local function executable(path)
  return execute("test -x " .. quote(path))
end

local alive = shell.alive
M.alive = alive

-- Whether any process of group `pgid` still runs (zombies, left for init to reap, do not count).
local function group_alive(pgid)
  local out = capture("ps -e -o pgid= -o stat= 2>/dev/null")
  for group, stat in out:gmatch("(%d+)%s+(%S+)") do
    if tonumber(group) == pgid and stat:sub(1, 1) ~= "Z" then return true end
  end
  return false
end
M.group_alive = group_alive

--- Runs scripts/install-prism: it installs Prism when it is missing or the lock changed, and
-- otherwise returns at once. Raises when that fails.
function M.install()
  local out = capture(quote(root() .. "/scripts/install-prism") .. " 2>&1; echo \"rc=$?\"")
  local rc = out:match("rc=(%d+)%s*$")
  if rc ~= "0" or not executable(prism_bin()) then
    error("contract_helper: scripts/install-prism failed:\n" .. out, 2)
  end
end

local CURL = "curl -s --noproxy '*' "

-- any HTTP answer at all (Prism says 404 to GET /__health: no such path in the document)
local function answers(url)
  local code = capture(CURL .. "-o /dev/null -w '%{http_code}' --max-time 2 " ..
                       quote(url .. "/__health") .. " 2>/dev/null")
  return code:match("^[1-5]%d%d$") ~= nil
end

--- Starts Prism on `document` (a path); returns a Mock once it answers, or raises with its log.
-- opts.watch_pid: the process whose end stops Prism (default: this one); opts.timeout: seconds
-- to wait for it to listen (default 60).
function M.start(document, opts)
  opts = opts or {}
  M.install()
  assert(read_file(document), "contract_helper: cannot read " .. tostring(document))
  local tmp = trim(capture("mktemp -d"))
  local log, pidfile = tmp .. "/prism.log", tmp .. "/pid"
  local watch = opts.watch_pid or own_pid()
  local since = start_time(watch)
  -- The inner shell leads a new session and process group (setsid) and writes its pid, the
  -- group's id; Prism runs in that group, and the shell waits while both Prism and the watched
  -- process live, then ends the whole group (itself included). The watched process counts as
  -- gone once it is a zombie (init may reap an orphan late) or its pid has a new start time.
  local watched = since
    and ("{ s=$(cat /proc/%d/stat 2>/dev/null) && set -- ${s##*') '} && [ \"$1\" != Z ] && [ \"${20}\" = %s ]; }")
      :format(watch, since)
    or ("kill -0 %d 2>/dev/null"):format(watch)
  local inner = table.concat({
    "echo $$ >" .. quote(pidfile) .. ";",
    quote(prism_bin()), "mock --errors -h 127.0.0.1 -p 0", quote(document),
    ">" .. quote(log), "2>&1 </dev/null & p=$!;",
    "while " .. watched .. " && kill -0 $p 2>/dev/null; do sleep 0.5; done;",
    "kill -TERM 0",
  }, " ")
  -- In the background, so that neither popen nor Lua's exit waits for it.
  execute(("setsid sh -c %s </dev/null >/dev/null 2>&1 &"):format(quote(inner)))
  local mock = setmetatable({ document = document, tmp = tmp, log_path = log }, Mock)
  local deadline = os.time() + (opts.timeout or 60)
  while os.time() <= deadline do
    mock.pid = mock.pid or tonumber(trim(read_file(pidfile) or ""))
    local text = read_file(log) or ""
    local url = text:match("Prism is listening on (http://127%.0%.0%.1:%d+)")
    if url and answers(url) then
      mock.url = url
      mock.port = tonumber(url:match(":(%d+)$"))
      return mock
    end
    if mock.pid and not alive(mock.pid) then break end
    execute("sleep 0.1")
  end
  local text = read_file(log) or ""
  mock.pid = mock.pid or tonumber(trim(read_file(pidfile) or ""))
  mock:stop()
  error(("contract_helper: Prism did not start on %s:\n%s"):format(document, text), 2)
end

--- Prism's log so far (one block of lines per request: what it received, found and answered).
function Mock:log()
  return read_file(self.log_path) or ""
end

--- Ends Prism's process group and waits until it is gone. Safe to call twice.
function Mock:stop()
  if self.stopped then return end
  self.stopped = true
  -- (a group id below 2 would make `kill -SIG -ID` signal far more than Prism)
  local pgid = math.floor(tonumber(self.pid) or 0)
  if pgid > 1 then
    execute("kill -TERM -" .. pgid .. " 2>/dev/null")
    for _ = 1, 100 do
      if not group_alive(pgid) then break end
      execute("sleep 0.05")
    end
    if group_alive(pgid) then execute("kill -KILL -" .. pgid .. " 2>/dev/null") end
  end
  os.remove(self.log_path)
  os.remove(self.tmp .. "/pid")
  os.remove(self.tmp)
end

local function add(list, seen, v)
  if type(v) ~= "table" then return end
  local location = type(v.location) == "table" and table.concat(v.location, ".") or tostring(v.location)
  local item = { location = location, code = v.code, message = v.message, severity = v.severity }
  local key = location .. "\0" .. tostring(item.code) .. "\0" .. tostring(item.message)
  if not seen[key] then
    seen[key] = true
    list[#list + 1] = item
  end
end

--- The violations Prism reported for one exchange: from the sl-violations header of `res` (as
-- moonbatch.core returns it: lower-cased header names) and, when `body` is Prism's problem+json,
-- its `validation` list. Each is { location = "request.body.purpose", code =, message =,
-- severity = }; an empty list means Prism found nothing wrong.
function M.violations(res, body)
  local list, seen = {}, {}
  local header = res and res.headers and res.headers["sl-violations"]
  if type(header) == "table" then header = table.concat(header, ",") end
  if type(header) == "string" and header ~= "" then
    local ok, decoded = pcall(cjson.decode, header)
    if not ok or type(decoded) ~= "table" then
      add(list, seen, { location = { "sl-violations" }, code = "unreadable", message = header })
    else
      for _, v in ipairs(decoded) do add(list, seen, v) end
    end
  end
  if type(body) == "table" and type(body.validation) == "table" then
    for _, v in ipairs(body.validation) do add(list, seen, v) end
  end
  return list
end

--- The violations on one line, for an assertion's message.
function M.describe(list)
  if not list or #list == 0 then return "no violations" end
  local parts = {}
  for i, v in ipairs(list) do
    parts[i] = ("%s [%s] %s"):format(v.location, tostring(v.code), tostring(v.message))
  end
  return table.concat(parts, "; ")
end

--- Whether one of `list` is at `location` (exact) and, if given, its message mentions `word`.
function M.has(list, location, word)
  for _, v in ipairs(list or {}) do
    if v.location == location and (not word or tostring(v.message):find(word, 1, true)) then
      return true
    end
  end
  return false
end

return M
