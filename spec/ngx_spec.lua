-- spec/ngx_spec.lua: moonbatch.ngx inside nginx with Debian's Lua module, on one worker, set up
-- as the README's "In OpenResty" says: its commands as written, run in a copy of the checkout
-- with no environment but PATH and a fresh HOME (`--tree` added to the luarocks lines, the key
-- line pointed at the stand-in), on examples/openresty/nginx.conf itself (its port swapped, one
-- location added). While a 256 MiB upload runs through moonbatch in one request, 200 /ping
-- requests to the same worker each answer within 50 ms; the same upload called directly (no
-- thread pool) stalls them, which shows the measurement can fail. Runs once (Lua 5.4 run, #slow).
local core = require("moonbatch.core")
local standin = require("spec.standin_helper")
local shell = require("spec.support.shell")
local rock = require("spec.support.rock")
local batch_file = require("spec.support.inputs").batch_file
local cjson = require("cjson")

local KEY = "sk-standin"
local MiB = 1024 * 1024

-- The README's commands for OpenResty: the first sh block after its heading, comments dropped.
local function readme_commands()
  local readme = assert(shell.read_file("README.md"))
  local section = assert(readme:match("\n### In OpenResty[^\n]*\n(.-)\n#"), "README.md has no In OpenResty section")
  local block = assert(section:match("```sh\n(.-)```"), "README.md's In OpenResty section has no sh block")
  local lines = {}
  for line in block:gmatch("[^\n]+") do
    line = line:gsub("%s+#.*$", "")
    if line ~= "" then lines[#lines + 1] = line end
  end
  return lines
end

-- examples/openresty/nginx.conf of the copy `src`, made to run on `port` as the caller
local function config(src, port)
  local path = src .. "/examples/openresty/nginx.conf"
  local conf = assert(shell.read_file(path))
  local function swap(old, new)
    local at = conf:find(old, 1, true)
    assert(at, "examples/openresty/nginx.conf no longer has: " .. old)
    conf = conf:sub(1, at - 1) .. new .. conf:sub(at + #old)
  end
  assert(not conf:find("\n%s*lua_package_c?path%s"), "examples/openresty/nginx.conf sets its own module paths")
  swap("listen 127.0.0.1:8080;", ("listen 127.0.0.1:%d;"):format(port))
  -- one process, running as the caller (a root master would hand the worker to nobody)
  swap("daemon off;", "daemon off;\nmaster_process off;")
  -- the counter-example: the same upload on the worker itself
  swap("        location = /ping {", [[
        location = /upload-blocking {
            content_by_lua_block {
                local file, err = require("moonbatch").new({ provider = "siliconflow" })
                  .files.upload({ file = ngx.var.arg_path })
                ngx.say(file and file.id or err)
            }
        }

        location = /ping {]])
  shell.write_file(path, conf)
end

describe("#slow moonbatch.ngx in nginx", function()
  local s, dir, big, port, base, nginx_pid

  local function ping_session()
    local session = core.session()
    return function()
      local t0 = core.now()
      local body, res = session:request({ url = base .. "/ping", timeout = 10 })
      return body, res, (core.now() - t0) * 1000
    end
  end

  setup(function()
    s = standin.start({ key = KEY })
    dir = shell.tmpdir()
    big = dir .. "/big.jsonl"
    batch_file(big, 256)
    local src, tree = dir .. "/src", dir .. "/tree"
    rock.copy_checkout(src)
    local home = rock.fresh_home(dir, { "5.1" })
    local build, serve = {}, {}
    for _, line in ipairs(readme_commands()) do
      line = line:gsub("luarocks %-%-lua%-version=5%.1 ", "luarocks --lua-version=5.1 --tree " .. shell.quote(tree) .. " ")
      line = line:gsub("^SILICONFLOW_API_KEY=sk%-%.%.%. nginx ", ("SILICONFLOW_API_KEY=%s MOONBATCH_BASE_URL=%s exec nginx ")
        :format(KEY, shell.quote(s.urls.siliconflow)))
      if line:match("^luarocks .* make$") or line:match("^mkdir ") then
        build[#build + 1] = line
      elseif line:match("^eval ") or line:match(" exec nginx ") then
        serve[#serve + 1] = line
      else
        error("README.md's In OpenResty commands: what is this line? " .. line)
      end
    end
    assert.equal(2, #build, "README.md's In OpenResty commands: the luarocks make and mkdir lines")
    assert.equal(2, #serve, "README.md's In OpenResty commands: the eval and nginx lines")
    local ok, out = rock.run_clean(home, src, table.concat(build, " && "))
    assert(ok, out)
    for _ = 1, 5 do
      port = math.random(20000, 60000)
      config(src, port)
      base = ("http://127.0.0.1:%d"):format(port)
      nginx_pid = tonumber(shell.capture(("cd %s && env -i PATH=%s HOME=%s sh -c %s </dev/null >%s/nginx.out 2>&1 & echo $!")
        :format(shell.quote(src), shell.quote(rock.PATH .. ":/usr/sbin"), shell.quote(home),
          shell.quote(table.concat(serve, " && ")), shell.quote(dir))))
      local up = false
      for _ = 1, 100 do
        local body = core.request({ url = base .. "/ping", timeout = 1 })
        if body == "pong\n" then up = true break end
        core.sleep(0.05)
      end
      if up then break end
      os.execute("kill " .. nginx_pid .. " 2>/dev/null")
      nginx_pid = nil
    end
    assert(nginx_pid, "nginx did not start: " .. (shell.read_file(dir .. "/nginx.out") or "")
      .. (shell.read_file(src .. "/run/logs/error.log") or ""))
  end)

  teardown(function()
    if nginx_pid then os.execute(("kill %d; while kill -0 %d 2>/dev/null; do sleep 0.05; done"):format(nginx_pid, nginx_pid)) end
    if dir then shell.execute("rm -rf " .. shell.quote(dir)) end
    if s then s:stop() end
  end)

  before_each(function() s:reset() end)

  -- keep `m`'s transfers moving for `seconds`
  local function drive(m, seconds)
    local ends = core.now() + seconds
    while core.now() < ends do
      m:perform()
      m:wait(0.01)
    end
  end

  local function json(body) return type(body) == "table" and body or cjson.decode(body) end

  -- start `path` (a location of the nginx under test) as a transfer of `m`; ping 200 times while
  -- it runs; returns the ping times (ms), whether the upload was still running after the last
  -- ping, and the upload's reply
  local function pings_during(path)
    local m = core.multi()
    assert(m:add({ url = base .. path, method = "POST", timeout = 300 }))
    local ping = ping_session()
    drive(m, 0.05) -- the upload starts
    local times, upload = {}, nil
    for i = 1, 200 do
      local body, res, ms = ping()
      assert.equal("pong\n", body)
      assert.equal(200, res.status)
      times[i] = ms
      m:perform()
      for _, e in ipairs(m:info()) do upload = e end
      core.sleep(0.002)
    end
    local running_after = upload == nil
    while not upload do
      m:wait(1)
      m:perform()
      for _, e in ipairs(m:info()) do upload = e end
    end
    m:close()
    return times, running_after, upload
  end

  it("answers 200 pings within 50 ms each while a 256 MiB upload runs on the thread pool", function()
    -- the provider takes 1 s before it reads the upload, so the pings surely fall inside it
    s:fault("POST", "/siliconflow/v1/files", { { delay = 1 } })
    local t0 = core.now()
    local times, running_after, upload = pings_during("/upload?path=" .. big)
    local elapsed = core.now() - t0
    local reply = json(upload[1])
    assert.equal(200, upload[2].status, upload[1])
    assert.equal(256 * MiB, reply.bytes)
    assert.equal("big.jsonl", reply.filename)
    assert.equal(256 * MiB, s:log()[1].fields.file.bytes)
    assert.is_true(running_after, "the upload ended before the 200th ping: the pings proved nothing")
    local worst = math.max((table.unpack or unpack)(times))
    table.sort(times)
    print(("\n    nginx: 256 MiB upload in %.2f s; 200 pings meanwhile, median %.2f ms, worst %.2f ms")
      :format(elapsed, times[100], worst))
    assert.is_true(worst < 50, ("a ping took %.1f ms"):format(worst))
  end)

  it("answers errors as the plain client does: nil, msg, info", function()
    local body, res = core.request({ url = base .. "/upload?path=" .. dir .. "/missing.jsonl", method = "POST", timeout = 30 })
    assert.equal(502, res.status)
    local reply = json(body)
    assert.equal("io", reply.kind)
    assert.matches("missing%.jsonl", reply.error)
    body, res = core.request({ url = base .. "/batches/batch_none", timeout = 30 })
    assert.equal(502, res.status)
    assert.matches("HTTP 404", json(body).error)
  end)

  it("(the counter-example) stalls the pings when the same upload runs on the worker itself", function()
    local small = dir .. "/small.jsonl"
    batch_file(small, 4)
    s:fault("POST", "/siliconflow/v1/files", { { delay = 1 } })
    local m = core.multi()
    assert(m:add({ url = base .. "/upload-blocking?path=" .. small, method = "POST", timeout = 60 }))
    drive(m, 0.2) -- the worker is now inside the blocking call
    local _, res, ms = ping_session()()
    assert.equal(200, res.status)
    print(("\n    nginx, blocking call on the worker: a ping took %.0f ms"):format(ms))
    assert.is_true(ms > 500, ("a ping took only %.1f ms: the measurement cannot tell"):format(ms))
    while m:count() > 0 do m:perform(); m:info(); if m:count() > 0 then m:wait(1) end end
    m:close()
  end)
end)
