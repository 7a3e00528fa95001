-- spec/download_path_spec.lua: how files.download moves the bytes (issue 17, item 1), against the
-- stand-in over real sockets: the file is preallocated to the announced length before the body
-- arrives, written in large chunks straight to the descriptor (no 8 KiB stdio buffer), and
-- on_progress runs at most every 50 ms plus a final call with every byte, not once a chunk.
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local fixture = require("spec.support.fixture")
local shell = require("spec.support.shell")

local KEY = "sk-standin"
local SIZE = 32 * 1048576

describe("files.download", function()
  local s, dir, id, into, content

  local function client()
    return moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY })
  end

  fixture.standin({ key = KEY, dir = true, reset = false }, function(new_s, new_dir) s, dir = new_s, new_dir end)
  setup(function()
    local line = ('{"custom_id":"r","body":{"model":"m","messages":[{"role":"user","content":"%s"}]}}\n')
      :format(("x"):rep(1024 - 81))
    assert.equal(1024, #line)
    content = line:rep(SIZE / 1024)
    local path = dir .. "/big.jsonl"
    shell.write_file(path, content)
    local c = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY })
    rawset(require("moonbatch.providers.openai"), "limits", false)
    id = assert(c.files.upload({ file = path, validate = false })).id
    os.remove(path)
    into = dir .. "/downloads"
    assert.is_true(shell.execute("mkdir -p " .. shell.quote(into)))
  end)

  before_each(function()
    shell.execute("rm -f " .. shell.quote(into) .. "/*")
  end)

  -- the size of the one file in `into` (the temporary file while the download runs)
  local function part_size()
    local name = shell.trim(shell.capture("ls -A " .. shell.quote(into)))
    if name == "" or name:find("\n") then return nil end
    local f = io.open(into .. "/" .. name, "rb")
    if not f then return nil end
    local size = f:seek("end")
    f:close()
    return size
  end

  it("calls on_progress at most every 50 ms, then once with every byte", function()
    local calls, first_size = {}, nil
    local t0 = core.now()
    local got = assert(client().files.download(id, into .. "/out.jsonl", {
      on_progress = function(done, total)
        calls[#calls + 1] = { done, total, core.now() }
        if not first_size and done > 0 then first_size = part_size() end
      end,
    }))
    local seconds = core.now() - t0
    assert.equal(SIZE, got.bytes)
    -- a chunk at a time would be hundreds of calls (SIZE / 16 KiB = 2,048 before)
    assert.is_true(#calls <= seconds / 0.05 + 3, ("%d calls in %.3f s"):format(#calls, seconds))
    for i = 2, #calls - 1 do
      assert.is_true(calls[i][3] - calls[i - 1][3] >= 0.049, "two calls within 50 ms")
    end
    local last = calls[#calls]
    assert.same({ SIZE, SIZE }, { last[1], last[2] })
    -- preallocated: the temporary file had its full length while the bytes were coming
    if first_size then assert.equal(SIZE, first_size) end
    assert.equal(content, shell.read_file(into .. "/out.jsonl"))
  end)

  it("cuts a preallocated file to the bytes that came when the reply ends short", function()
    s:fault("GET", "/openai/v1/files/" .. id .. "/content", { { truncate = 1048576, count = 3 } })
    local got, msg, info = client().files.download(id, into .. "/out.jsonl")
    assert.is_nil(got)
    assert.is_string(msg)
    assert.equal("network", info.kind)
    assert.equal("", shell.capture("ls -A " .. shell.quote(into)))
  end)

  it("preallocates the file and writes the body in chunks of hundreds of KiB, not 8 KiB", function()
    if shell.execute("command -v strace >/dev/null 2>&1") ~= true then
      pending("strace is not installed")
      return
    end
    local out = into .. "/out.jsonl"
    local script = dir .. "/download.lua"
    shell.write_file(script, ([[
      package.path, package.cpath = %q, %q
      local moonbatch = require("moonbatch")
      local c = moonbatch.new({ provider = "openai", base_url = %q, api_key = %q })
      assert(c.files.download(%q, %q))
    ]]):format(package.path, package.cpath, s.urls.openai, KEY, id, out))
    local trace = dir .. "/strace.txt"
    local lua = arg and arg[-1] or "lua5.4" -- the interpreter running busted
    -- (LeakSanitizer cannot run under ptrace: off for this one process under check-asan)
    local asan = os.getenv("ASAN_OPTIONS")
    local env = asan and ("ASAN_OPTIONS=" .. shell.quote(asan .. ":detect_leaks=0") .. " ") or ""
    assert.is_true(shell.execute(("%sstrace -f -c -e trace=write,fallocate -o %s %s %s"):format(
      env, shell.quote(trace), shell.quote(lua), shell.quote(script))))
    -- strace -c's columns: % time, seconds, usecs/call, calls, [errors,] syscall
    local writes, fallocates
    for line in shell.read_file(trace):gmatch("[^\n]+") do
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      if words[#words] == "write" then writes = tonumber(words[4]) end
      if words[#words] == "fallocate" then fallocates = tonumber(words[4]) end
    end
    assert.is_number(writes, shell.read_file(trace))
    -- 8 KiB writes would be 4,096; a write per 16 KiB read 2,048
    assert.is_true(writes < SIZE / (128 * 1024), ("%d writes for %d bytes"):format(writes, SIZE))
    assert.equal(SIZE, #shell.read_file(out))
    -- the file's blocks reserved once, for the announced length (Linux: posix_fallocate)
    assert.equal(1, fallocates, shell.read_file(trace))
  end)
end)
