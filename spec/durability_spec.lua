-- spec/durability_spec.lua: every durable write is write-to-temporary, fsync of the file, rename,
-- fsync of the folder (issue 13, item 7): downloads (the CLI's download and run outputs), the
-- job manifest and fs.write_atomic all commit through fs.commit (core.durable_rename). The
-- order is read from strace.
local moonbatch = require("moonbatch")
local core = require("moonbatch.core")
local fs = require("moonbatch.fs")
local standin = require("spec.standin_helper")
local shell = require("spec.support.shell")
local cli = require("spec.support.moonbatch_cli")

local KEY = "sk-standin"
local CHILD_CPATH = "build/5.4/?.so" -- the children run lua5.4, whichever Lua runs the spec
local have_strace = shell.succeeded(os.execute("command -v strace >/dev/null 2>&1"))
-- (LeakSanitizer cannot work under ptrace: under make check-asan the traced process runs without it)
local asan = os.getenv("ASAN_OPTIONS")
local TRACE = (asan and ("ASAN_OPTIONS=" .. shell.quote(asan .. ":detect_leaks=0") .. " ") or "") ..
  "strace -f -y -qq -e trace=fsync,fdatasync,rename,renameat,renameat2 -o "

-- the traced calls of a strace -y log, in order: { {call = "fsync", args = "..."}, ... }
local function calls(path)
  local out = {}
  for line in (shell.read_file(path) or ""):gmatch("[^\n]+") do
    local call, a = line:match("^%d*%s*(%w+)%((.*)%)%s*= 0")
    if call then out[#out + 1] = { call = call, args = a } end
  end
  return out
end

-- the index of the first call `name` whose arguments contain `text`, after index `from`
local function find(list, name, text, from)
  for i = (from or 0) + 1, #list do
    local c = list[i]
    if (c.call == name or (name == "rename" and c.call:match("^rename"))) and c.args:find(text, 1, true) then
      return i
    end
  end
end

-- assert: fsync(temp) < rename(temp -> target) < fsync(folder), temp matched by `temp_pattern`
local function assert_commit_order(list, folder, target)
  local rename
  for i, c in ipairs(list) do
    if c.call:match("^rename") and c.args:find('"' .. target .. '"', 1, true) then rename = i end
  end
  assert.truthy(rename, "no rename onto " .. target .. " in " .. #list .. " traced calls")
  local temp = list[rename].args:match('^"([^"]+)"')
  local synced = find(list, "fsync", "<" .. temp .. ">") or find(list, "fdatasync", "<" .. temp .. ">")
  assert.truthy(synced, "the temporary file " .. temp .. " is never fsynced")
  assert.is_true(synced < rename, "the temporary file is fsynced after the rename")
  local dir_synced = find(list, "fsync", "<" .. folder .. ">", rename)
  assert.truthy(dir_synced, "the folder " .. folder .. " is not fsynced after the rename")
end

describe("durable writes", function()
  local s, dir

  setup(function()
    s = standin.start({ key = KEY })
    dir = shell.trim(shell.capture("cd " .. shell.quote(shell.tmpdir()) .. " && pwd -P"))
  end)
  teardown(function()
    if s then s:stop() end
    if dir then os.execute("rm -rf " .. shell.quote(dir)) end
  end)

  it("core.durable_rename: fsync of the file, rename, fsync of the folder", function()
    if not have_strace then return pending("strace is not installed (scripts/install-deps)") end
    local script, trace = dir .. "/commit.lua", dir .. "/commit.trace"
    shell.write_file(dir .. "/one.tmp", "data\n")
    shell.write_file(script, ([[
      package.cpath = %q .. ";" .. package.cpath
      assert(require("moonbatch.core").durable_rename(%q, %q))
    ]]):format(CHILD_CPATH, dir .. "/one.tmp", dir .. "/one"))
    assert.is_true(shell.succeeded(os.execute(TRACE .. shell.quote(trace) .. " lua5.4 " .. shell.quote(script))))
    assert_commit_order(calls(trace), dir, dir .. "/one")
    assert.equal("data\n", shell.read_file(dir .. "/one"))
  end)

  it("the CLI's download: fsync of the .part, rename, fsync of the folder", function()
    if not have_strace then return pending("strace is not installed (scripts/install-deps)") end
    local input = dir .. "/in.jsonl"
    shell.write_file(input, '{"custom_id":"a","method":"POST","url":"/v1/chat/completions",' ..
      '"body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n')
    local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY })
    local file = assert(c.files.upload({ file = input }))
    local target, trace = dir .. "/got.jsonl", dir .. "/download.trace"
    local command = ("%s SILICONFLOW_API_KEY=%s MOONBATCH_BASE_URL=%s MOONBATCH_PROGRESS=never %s%s %s download %s %s >/dev/null 2>&1")
      :format(cli.CLEAN_ENV, KEY, shell.quote(s.urls.siliconflow), TRACE, shell.quote(trace), cli.command(),
        shell.quote(file.id), shell.quote(target))
    assert.is_true(shell.succeeded(os.execute(command)))
    assert_commit_order(calls(trace), dir, target)
    assert.equal(shell.read_file(input), shell.read_file(target))
  end)

  it("the CLI's run: its results file committed the same way", function()
    if not have_strace then return pending("strace is not installed (scripts/install-deps)") end
    local _, status = s:call("POST", "/config", { step_seconds = 0.1 })
    if status ~= 200 then return pending("the stand-in cannot make batches fast (POST /config)") end
    local input = dir .. "/run-in.jsonl"
    shell.write_file(input, '{"custom_id":"a","method":"POST","url":"/v1/chat/completions",' ..
      '"body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n')
    local results, trace = dir .. "/run-out.jsonl", dir .. "/run.trace"
    local command = ("%s SILICONFLOW_API_KEY=%s MOONBATCH_BASE_URL=%s MOONBATCH_PROGRESS=never %s%s %s " ..
      "run %s -o %s --interval 0.1 >/dev/null 2>&1"):format(cli.CLEAN_ENV, KEY, shell.quote(s.urls.siliconflow),
      TRACE, shell.quote(trace), cli.command(), shell.quote(input), shell.quote(results))
    assert.is_true(shell.succeeded(os.execute(command)))
    assert_commit_order(calls(trace), dir, results)
  end)

  it("the job manifest (and every fs.write_atomic): fsync, rename, fsync of the folder", function()
    if not have_strace then return pending("strace is not installed (scripts/install-deps)") end
    local script, trace, path = dir .. "/manifest.lua", dir .. "/manifest.trace", dir .. "/job.manifest.json"
    shell.write_file(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local manifest = require("moonbatch.manifest")
      assert(manifest.write(%q, { format = manifest.FORMAT, job_id = "j", shards = {} }))
      assert(require("moonbatch.fs").write_atomic(%q, %q, "x"))
    ]]):format(CHILD_CPATH, path, dir .. "/plain.txt", dir .. "/plain.txt.part"))
    assert.is_true(shell.succeeded(os.execute(TRACE .. shell.quote(trace) .. " lua5.4 " .. shell.quote(script))))
    local list = calls(trace)
    assert_commit_order(list, dir, path)
    assert_commit_order(list, dir, dir .. "/plain.txt")
  end)

  it("fs.commit: a failed commit removes the temporary file and leaves the target as it was", function()
    local target = dir .. "/kept"
    shell.write_file(target, "old")
    local ok, msg, info = fs.commit(dir .. "/no-such.tmp", target)
    assert.is_nil(ok)
    assert.equal("io", info.kind)
    assert.matches("cannot commit '" .. target .. "'", msg, 1, true)
    assert.equal("old", shell.read_file(target))
    -- a target that is a folder: the rename fails, the temporary file goes
    local folder = dir .. "/a-folder"
    os.execute("mkdir -p " .. shell.quote(folder .. "/inside"))
    shell.write_file(dir .. "/x.tmp", "new")
    assert.is_nil((fs.commit(dir .. "/x.tmp", folder)))
    assert.is_false(shell.exists(dir .. "/x.tmp"))
    assert.is_nil((core.durable_rename(dir .. "/x.tmp", folder)))
  end)
end)
