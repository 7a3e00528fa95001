-- spec/support/shell.lua: the small shell and file helpers the specs and their server helpers
-- share (quoting, running commands, reading and writing files), for Lua 5.1 to 5.4; what
-- moonbatch.fs already does (reading a file, trimming) is its.
local fs = require("moonbatch.fs")

local shell = {}

--- A string quoted for sh.
function shell.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The words of `list`, each quoted for sh, as one command line.
function shell.words(list)
  local out = {}
  for i, w in ipairs(list) do out[i] = shell.quote(w) end
  return table.concat(out, " ")
end

--- Did os.execute's results say the command succeeded (5.1 returns a number, 5.2+ three values)?
function shell.succeeded(a, _, code)
  if type(a) == "number" then return a == 0 end
  return a == true and code == 0
end

--- Run a command; true when it succeeded.
function shell.execute(command)
  return shell.succeeded(os.execute(command))
end

--- A command's standard output.
function shell.capture(command)
  local p = assert(io.popen(command, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

--- A file's bytes, or nil when it cannot be read.
shell.read_file = fs.read

function shell.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Whether `path` can be opened for reading.
function shell.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- A fresh temporary directory (mktemp -d).
function shell.tmpdir()
  return (shell.capture("mktemp -d"):gsub("%s+$", ""))
end

--- A fresh temporary path, nothing there yet, ending in `suffix`.
function shell.tmpname(suffix)
  local p = os.tmpname()
  os.remove(p)
  return p .. (suffix or "")
end

shell.trim = fs.trim

--- Whether process `pid` still runs (a zombie counts as gone: whoever adopted it may reap it late).
function shell.alive(pid)
  local stat = shell.read_file("/proc/" .. pid .. "/stat")
  if stat then return stat:match("%) (%a)") ~= "Z" end
  return shell.execute("kill -0 " .. pid .. " 2>/dev/null")
end

--- Polls check() every 50 ms for up to `seconds`; returns whether it came true.
function shell.eventually(seconds, check)
  for _ = 1, seconds * 20 do
    if check() then return true end
    shell.execute("sleep 0.05")
  end
  return check()
end

--- The repository's root, from where this file lives (spec/support/).
function shell.root()
  local source = debug.getinfo(1, "S").source
  local dir = source:sub(1, 1) == "@" and source:sub(2):match("^(.*)/[^/]*$") or "spec/support"
  return dir .. "/../.."
end

--- The pid of this Lua process (busted's).
shell.own_pid = require("moonbatch.fs").own_pid

return shell
