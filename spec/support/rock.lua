-- spec/support/rock.lua: what the specs of the rock share: a copy of the checkout to build in,
-- a fresh HOME that luarocks knows Debian's lua-cjson in, and commands run with no environment
-- but PATH and that HOME, as a new user's shell has.
local shell = require("spec.support.shell")
local quote = shell.quote

local rock = {}

rock.PATH = "/usr/local/bin:/usr/bin:/bin" -- no sbin: the stand-in finds /usr/sbin/nginx itself

--- Copies the checkout as it is (tracked and new files; not build/, .git or ignored files)
-- into `dest`, so a build neither writes into the checkout nor races another run there.
function rock.copy_checkout(dest)
  assert(shell.execute(("mkdir -p %s && git ls-files -z -c -o --exclude-standard "
    .. "| tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C %s -xf -"):format(quote(dest), quote(dest))))
end

--- Runs `command` (sh) in `dir` with only PATH and HOME set; returns whether it succeeded and
-- what it printed (stdout and stderr).
function rock.run_clean(home, dir, command)
  local log = shell.tmpname(".log")
  local ok = shell.execute(("cd %s && env -i PATH=%s HOME=%s sh -c %s >%s 2>&1")
    :format(quote(dir), quote(rock.PATH), quote(home), quote(command), quote(log)))
  local out = shell.read_file(log) or ""
  os.remove(log)
  return ok, out
end

--- A fresh HOME under `tmp` where luarocks counts Debian's lua-cjson (a system package, not a
-- rock) as installed for each Lua version of `versions`: the README's step, as written there.
function rock.fresh_home(tmp, versions)
  local home = tmp .. "/home"
  assert(shell.execute("mkdir -p " .. quote(home .. "/.luarocks")))
  for _, v in ipairs(versions) do
    local ok, out = rock.run_clean(home, tmp, ("luarocks --lua-version=%s config rocks_provided.lua-cjson 2.1.0-1"):format(v))
    assert(ok, out)
  end
  return home
end

return rock
