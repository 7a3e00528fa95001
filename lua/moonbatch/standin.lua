--- moonbatch.standin: start and stop the local stand-in of the providers' APIs from a test suite.
--
-- The stand-in is `moonbatch-standin` (nginx with its Lua module on a loopback port, speaking
-- the SiliconFlow, Together AI and OpenAI dialects); this module runs the copy installed with
-- the rock (or the checkout's), reads the base URL of each dialect and drives its control API
-- (faults, batch settings, the request log). In busted:
--
--     local standin = require("moonbatch.standin")
--     local sd
--     setup(function() sd = assert(standin.start{ key = "sk-test" }) end)
--     teardown(function() sd:stop() end)
--     before_each(function() sd:reset() end)
--     it("retries a 503", function()
--       sd:faults{ dialect = "siliconflow", method = "POST", path = "/files",
--                  faults = { { status = 503, retry_after = "0" } } }
--       local client = require("moonbatch").new{ provider = "siliconflow",
--         base_url = sd:url("siliconflow"), api_key = "sk-test" }
--       ...
--     end)
--
-- The stand-in watches the process that started it, so it also stops when that process
-- exits without calling `stop`. Needs lua-cjson and the `curl`, `mkfifo` and `mktemp` commands.
-- @module moonbatch.standin
local cjson = require("cjson")
local fs = require("moonbatch.fs")

local M = {}

-- the methods of a started stand-in (documented below, as the Standin type)
local Standin = {}
Standin.__index = Standin

local CURL = "curl -s -S --noproxy '*' "

local quote, exists, trim, read_file = fs.quote, fs.exists, fs.trim, fs.read

local function execute(command)
  return fs.succeeded(os.execute(command))
end

local function capture(command)
  return fs.capture(command) or ""
end

-- A live process; a zombie (exited, not yet reaped) counts as gone.
local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then return stat:match("%) (%a)") ~= "Z" end
  return execute("kill -0 " .. pid .. " 2>/dev/null")
end

local own_pid = fs.own_pid

-- The installed rock's version folder that owns this module, from the tree's manifest
-- (`modules["moonbatch.standin"]` names the deployed "moonbatch/VERSION" first).
local function rock_dir_from_manifest(rocks)
  local chunk = loadfile(rocks .. "/manifest")
  if not chunk then return nil end
  local env = {}
  if setfenv then setfenv(chunk, env) else chunk = loadfile(rocks .. "/manifest", "t", env) end
  if not chunk or not pcall(chunk) then return nil end
  local owners = type(env.modules) == "table" and env.modules["moonbatch.standin"]
  local owner = type(owners) == "table" and owners[1]
  return type(owner) == "string" and rocks .. "/" .. owner or nil
end

--- The `moonbatch-standin` script this module runs: the checkout's `bin/moonbatch-standin`
-- when this file is a checkout's `lua/moonbatch/standin.lua`; the rock's own copy when it is
-- installed in a luarocks tree (`<tree>/lib/luarocks/rocks-5.x/moonbatch/VERSION/bin/`, beside
-- the `standin/` files luarocks copied there); else the first `moonbatch-standin` on PATH.
-- @treturn[1] string the script's path
-- @treturn[2] nil
-- @treturn[2] string why none was found
function M.script()
  local source = debug.getinfo(1, "S").source
  local file = source:sub(1, 1) == "@" and source:sub(2) or nil
  if file then
    local dir = file:match("^(.*)/[^/]*$") or "."
    local root = dir .. "/../.."
    if exists(root .. "/bin/moonbatch-standin") and exists(root .. "/standin/nginx.conf.in") then
      return root .. "/bin/moonbatch-standin"
    end
    local tree, lua_version = file:match("^(.*)/share/lua/([^/]+)/moonbatch/standin%.lua$")
    if tree then
      local rocks = tree .. "/lib/luarocks/rocks-" .. lua_version
      local rock = rock_dir_from_manifest(rocks)
      if rock and exists(rock .. "/bin/moonbatch-standin") then return rock .. "/bin/moonbatch-standin" end
      -- no manifest to read: the newest version folder that has the script
      local found = capture("ls -d " .. quote(rocks) .. "/moonbatch/*/bin/moonbatch-standin 2>/dev/null | sort -V | tail -n 1")
      if trim(found) ~= "" then return trim(found) end
    end
  end
  local on_path = trim(capture("command -v moonbatch-standin 2>/dev/null"))
  if on_path ~= "" then return on_path end
  return nil, "cannot find moonbatch-standin (install the moonbatch rock, or run from a checkout)"
end

--- Whether the stand-in can run here: an nginx with its Lua module (Debian's
-- libnginx-mod-http-lua, or OpenResty) and the stand-in's files.
-- @tparam[opt] table opts `nginx`: the nginx (or openresty) binary to check instead of the
--   first one found
-- @treturn[1] true
-- @treturn[1] string the nginx it would run
-- @treturn[2] nil
-- @treturn[2] string what is missing, naming the package to install
function M.available(opts)
  opts = opts or {}
  if opts.nginx ~= nil and type(opts.nginx) ~= "string" then
    error("moonbatch.standin.available: opts.nginx must be a string", 2)
  end
  local script, err = M.script()
  if not script then return nil, err end
  local words = { quote(script), "--check" }
  if opts.nginx then words[#words + 1] = "--nginx " .. quote(opts.nginx) end
  local out = capture(table.concat(words, " ") .. " 2>&1; echo \" $?\"")
  local text, rc = out:match("^(.-)%s*(%d+)%s*$")
  text = trim((text or out):gsub("^moonbatch%-standin: ", ""))
  if rc == "0" then return true, text end
  return nil, text
end

local function check_options(opts)
  local function bad(name, what) error("moonbatch.standin.start: opts." .. name .. " must be " .. what, 4) end
  if type(opts) ~= "table" then error("moonbatch.standin.start: opts must be a table", 3) end
  if opts.key ~= nil and (type(opts.key) ~= "string" or not opts.key:match("^[%w%p]+$")) then
    bad("key", "a non-empty string without spaces")
  end
  if opts.port ~= nil and (type(opts.port) ~= "number" or opts.port ~= math.floor(opts.port)
      or opts.port < 1 or opts.port > 65535) then
    bad("port", "a port number (1 to 65535)")
  end
  for _, name in ipairs({ "dir", "nginx" }) do
    if opts[name] ~= nil and type(opts[name]) ~= "string" then bad(name, "a string") end
  end
  if opts.watch_pid ~= nil and type(opts.watch_pid) ~= "number" then bad("watch_pid", "a process id") end
  if opts.env ~= nil and type(opts.env) ~= "table" then bad("env", "a table of variable names to values") end
  for name in pairs(opts.env or {}) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then bad("env", "keyed by variable names") end
  end
end

--- Start a stand-in and wait until it answers.
-- @tparam[opt] table opts
--   `key` (the API key the dialects accept, default `"sk-standin"`; handed over in a file,
--   never on a command line),
--   `port` (default: a free one),
--   `dir` (keep its configuration, logs and uploads there, and leave them; default: a
--   temporary directory, removed by `stop`),
--   `nginx` (the nginx or openresty binary; default: the first one found with the Lua module),
--   `watch_pid` (stop when that process exits; default: this Lua process),
--   `env` (`{ NAME = value }` added to its environment)
-- @treturn[1] Standin the running stand-in
-- @treturn[2] nil
-- @treturn[2] string why it did not start (for a missing nginx: the package to install)
-- @treturn[2] table `{ kind = "standin", stderr = what the script said }`
-- @raise when an option has the wrong type
function M.start(opts)
  opts = opts or {}
  check_options(opts)
  local script, err = M.script()
  if not script then return nil, err, { kind = "standin" } end
  local key = opts.key or "sk-standin"
  local tmp = trim(capture("mktemp -d 2>/dev/null"))
  if tmp == "" then return nil, "cannot make a temporary directory", { kind = "standin" } end
  local fifo, errors, key_file = tmp .. "/stdout", tmp .. "/stderr", tmp .. "/key"
  local function fail(msg, stderr)
    for _, path in ipairs({ fifo, errors, key_file }) do os.remove(path) end
    os.remove(tmp)
    return nil, msg, { kind = "standin", stderr = stderr }
  end
  -- mktemp -d made tmp 0700, so the key file is ours alone
  local f = io.open(key_file, "wb")
  if not f then return fail("cannot write to " .. tmp) end
  f:write(key, "\n")
  f:close()
  if not execute("mkfifo " .. quote(fifo)) then return fail("cannot make a fifo in " .. tmp) end
  local words = { quote(script), "--key-file", quote(key_file), "--watch-pid", tostring(opts.watch_pid or own_pid()) }
  if opts.port then words[#words + 1] = "--port " .. ("%d"):format(opts.port) end
  if opts.dir then words[#words + 1] = "--dir " .. quote(opts.dir) end
  if opts.nginx then words[#words + 1] = "--nginx " .. quote(opts.nginx) end
  local env = { "env" }
  for name, value in pairs(opts.env or {}) do env[#env + 1] = name .. "=" .. quote(value) end
  -- In the background through sh, not as a popen child: closing a popen handle (or Lua's exit
  -- doing it) waits for the child, and the child waits for us. The group's own redirections let
  -- go of popen's pipe before opening the fifo blocks (until we open its other end below).
  local command = ("{ exec %s %s >%s 2>%s; } </dev/null >/dev/null 2>&1 & echo $!")
    :format(table.concat(env, " "), table.concat(words, " "), quote(fifo), quote(errors))
  local pid = tonumber(trim(capture(command)))
  if not pid then return fail("cannot start " .. script) end
  local s = setmetatable({ key = key, pid = pid, urls = {}, tmp = tmp }, Standin)
  local out = io.open(fifo, "r") -- blocks until the stand-in opens its stdout
  if out then
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
  end
  os.remove(key_file)
  if not s.control then
    local stderr = trim(read_file(errors) or "")
    s:stop()
    local reason = stderr:match("^moonbatch%-standin: ([^\n]*)$") or ("\n" .. stderr)
    return fail("moonbatch-standin did not start: " .. reason, stderr)
  end
  s.port = tonumber(s.control:match(":(%d+)/"))
  return s
end

--- A started stand-in (what `start` returns).
-- @type Standin
-- @field urls the base URL of each dialect: `urls.siliconflow`, `urls["siliconflow-global"]`,
--   `urls.together`, `urls.openai`
-- @field control the control API's base URL (`http://127.0.0.1:PORT/_standin`)
-- @field port the port it listens on (127.0.0.1)
-- @field key the API key every dialect accepts
-- @field pid the process id of `moonbatch-standin`

--- The base URL of a dialect.
-- @string dialect `"siliconflow"`, `"siliconflow-global"`, `"together"` or `"openai"`
-- @treturn string e.g. `http://127.0.0.1:PORT/openai/v1`
-- @raise for a dialect the stand-in does not speak
function Standin:url(dialect)
  local url = self.urls[dialect]
  if not url then error("moonbatch.standin: no dialect " .. tostring(dialect), 2) end
  return url
end

--- One control call (see the control API in standin/README.md).
-- @string method `"GET"` or `"POST"`
-- @string path below the control URL, e.g. `"/log"`
-- @tparam[opt] table json the request body, sent as JSON
-- @treturn string the reply's body
-- @treturn number its HTTP status
-- @raise when the stand-in does not answer
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

--- Forget every file, batch, fault, log entry and setting.
function Standin:reset()
  expect_ok(self, "POST", "/reset")
end

--- Queue faults for the requests to one method and path; each matching request takes the
-- next one (a fault with `count = N` serves N requests).
-- @tparam table spec `method` (`"POST"`), `path` (the whole path, `"/siliconflow/v1/files"`,
--   or with `dialect = "siliconflow"` the path below its base, `"/files"`), `faults` (a list,
--   e.g. `{ { status = 503, retry_after = "0" }, { reset_after = 1000 } }`; the kinds are in
--   standin/README.md)
-- @raise when the stand-in refuses the faults (its message says why)
function Standin:faults(spec)
  if type(spec) ~= "table" then error("moonbatch.standin: faults: spec must be a table", 2) end
  if type(spec.method) ~= "string" then error("moonbatch.standin: faults: spec.method must be a string", 2) end
  if type(spec.path) ~= "string" or spec.path:sub(1, 1) ~= "/" then
    error("moonbatch.standin: faults: spec.path must be a path starting with /", 2)
  end
  if type(spec.faults) ~= "table" then error("moonbatch.standin: faults: spec.faults must be a list", 2) end
  local path = spec.path
  if spec.dialect ~= nil then
    local base = self.urls[spec.dialect]
    if not base then error("moonbatch.standin: faults: no dialect " .. tostring(spec.dialect), 2) end
    path = base:match("^https?://[^/]+(/.*)$") .. path
  end
  expect_ok(self, "POST", "/faults", { method = spec.method, path = path, faults = spec.faults })
end

--- `faults` in positional form: `sd:fault("POST", "/siliconflow/v1/files", { { status = 503 } })`.
-- @string method
-- @string path the whole path
-- @tparam table faults the list
function Standin:fault(method, path, faults)
  expect_ok(self, "POST", "/faults", { method = method, path = path, faults = faults })
end

--- Change batch settings (`step_seconds`, `siliconflow_output_urls`, `content_404_seconds`)
-- for the batches created afterwards; `reset` restores the defaults.
-- @tparam[opt] table settings
-- @treturn table the settings now in force
function Standin:config(settings)
  local body
  if settings == nil then body = expect_ok(self, "GET", "/config") else body = expect_ok(self, "POST", "/config", settings) end
  return cjson.decode(body).config
end

--- Every provider request the stand-in received, oldest first (the key is never recorded).
-- @treturn table a list of `{ method, path, query, headers, fields, ... }`
function Standin:log()
  return cjson.decode(expect_ok(self, "GET", "/log"))
end

--- A stored file's bytes (an upload or a result file).
-- @string id the file's id
-- @treturn string|nil the bytes, nil when there is no such file
function Standin:file_content(id)
  local body, status = self:call("GET", "/files/" .. id)
  if status == 404 then return nil end
  if status ~= 200 then error("stand-in GET /files/" .. id .. ": HTTP " .. status, 2) end
  return body
end

local function answers(self)
  return self.control
    and execute(CURL .. "-o /dev/null --max-time 1 " .. quote(self.control .. "/health") .. " 2>/dev/null")
end

--- Stop the stand-in and wait until it is gone and its port closed (at most 10 s). Safe to
-- call more than once.
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
  os.remove(self.tmp .. "/key")
  os.remove(self.tmp)
end

return M
