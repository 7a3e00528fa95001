-- spec/upload_thread_spec.lua: a validated upload checks its file on a second thread, ahead of the
-- send, when the process may run on two CPUs, and inline on one (issue 17, item 3); the result
-- is the same either way. Against the stand-in over real sockets; the threads are counted in
-- /proc/self/task (Linux) from on_progress, while the upload runs.
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")
local shell = require("spec.support.shell")

local KEY = "sk-standin"

local function threads()
  local n = 0
  local p = io.popen("ls /proc/" .. shell.own_pid() .. "/task 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

describe("a validated upload", function()
  local s, dir, path, content

  setup(function()
    s = standin.start({ key = KEY })
    dir = shell.trim(shell.capture("mktemp -d"))
    local lines = {}
    for i = 1, 4000 do
      local head = ('{"custom_id":"r-%d","body":{"model":"m","messages":[{"role":"user","content":"'):format(i)
      lines[i] = head .. ("x"):rep(16000 - #head - 6) .. '"}]}}'
    end
    -- 64 MB: the thread's scan lasts long enough to be seen from on_progress's first call
    content = table.concat(lines, "\n") .. "\n"
    path = dir .. "/batch.jsonl"
    shell.write_file(path, content)
  end)

  teardown(function()
    if s then s:stop() end
    if dir then shell.execute("rm -rf " .. shell.quote(dir)) end
  end)

  local function client()
    return moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY })
  end

  local linux = io.open("/proc/self/task") ~= nil
  local cpus = tonumber(shell.trim(shell.capture("nproc 2>/dev/null")) or "") or 1

  it("is checked on a second thread while it is sent (two CPUs)", function()
    if not linux or cpus < 2 then
      pending("needs Linux's /proc and two CPUs")
      return
    end
    local before, during = threads(), 0
    local file = assert(client().files.upload({ file = path, on_progress = function(done, total)
      if done < total then during = math.max(during, threads()) end
    end }))
    assert.equal(#content, file.bytes)
    assert.is_true(during > before, ("%d threads before, %d during"):format(before, during))
    assert.equal(before, threads(), "the thread outlived the upload")
  end)

  it("a bad line found by the thread still stops the upload before its end", function()
    local bad = dir .. "/bad.jsonl"
    shell.write_file(bad, content:sub(1, 40000000) .. "{broken\n" .. content:sub(40000001))
    s:reset() -- no file stored, an empty log
    local file, msg, info = client().files.upload({ file = bad })
    assert.is_nil(file)
    assert.equal("validation", info.kind, msg)
    local uploads = 0
    for _, e in ipairs(s:log()) do
      if e.method == "POST" and e.path == "/siliconflow/v1/files" and e.body_bytes then
        uploads = uploads + 1
        assert.is_true(e.body_bytes < #content, "the whole body went")
      end
    end
    assert.is_true(uploads >= 1)
    assert.equal(0, #assert(client().files.list()).data, "the server kept the bad file")
  end)

  it("is checked inline on one CPU (taskset), with the same result", function()
    if not linux or shell.execute("command -v taskset >/dev/null 2>&1") ~= true then
      pending("needs Linux and taskset")
      return
    end
    local script = dir .. "/one_cpu.lua"
    shell.write_file(script, ([[
      package.path, package.cpath = %q, %q
      local moonbatch = require("moonbatch")
      local n, tasks = 0, "/proc/" .. io.open("/proc/self/stat"):read("*n") .. "/task"
      local c = moonbatch.new({ base_url = %q, api_key = %q })
      local file = assert(c.files.upload({ file = %q, on_progress = function(done, total)
        if done < total then
          local k = 0
          for _ in io.popen("ls " .. tasks):lines() do k = k + 1 end
          n = math.max(n, k)
        end
      end }))
      io.write(file.bytes, " ", n, "\n")
    ]]):format(package.path, package.cpath, s.urls.siliconflow, KEY, path))
    local lua = arg and arg[-1] or "lua5.4" -- the interpreter running busted
    local out = shell.trim(shell.capture(("taskset -c 0 %s %s"):format(shell.quote(lua), shell.quote(script))))
    local bytes, most = out:match("^(%d+) (%d+)$")
    assert.equal(tostring(#content), bytes, out)
    assert.equal("1", most, "a second thread on one CPU")
  end)
end)
