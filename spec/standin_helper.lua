-- The specs' stand-in: moonbatch.standin (the public module, which starts bin/moonbatch-standin
-- and drives its control API) plus the curl helpers the specs share.
--
--   local standin = require("spec.standin_helper")
--   local s = standin.start{ key = "sk-standin" }   -- raises when it does not start; the options
--                                                    -- and methods are moonbatch.standin's
--   s.urls.siliconflow, s:url("openai"), s.control, s.port, s.key, s.pid
--   s:reset(); s:fault("POST", "/siliconflow/v1/files", { { status = 503, retry_after = "0" } })
--   s:faults{ dialect = "siliconflow", method = "POST", path = "/files", faults = { ... } }
--   s:config{ step_seconds = 0.2 }; s:log(); s:file_content(id); s:call(method, path, json); s:stop()
--   standin.alive(pid)         -- whether a process still runs (a zombie does not)
--   standin.curl(url, opts)    -- one request with the curl command: see below
--   standin.curl_with(key)     -- standin.curl sending `key` unless opts.key says otherwise
--   standin.keys_of(t)         -- a decoded reply's keys, sorted
local public = require("moonbatch.standin")
local shell = require("spec.support.shell")
local quote, capture, read_file = shell.quote, shell.capture, shell.read_file

local M = {}

M.alive = shell.alive

-- moonbatch.standin.start, raising (with the script's stderr) when the stand-in does not come up.
function M.start(opts)
  local s, err = public.start(opts)
  if not s then error(err, 2) end
  return s
end

M.available = public.available

local CURL = "curl -s -S --noproxy '*' "

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

return M
