-- spec/job_lock_spec.lua: one run of a job at a time. Two `moonbatch job run` of the same
-- output started at once, or 0.4 s apart, make each batch once (the stand-in's log counts the
-- creates): the second refuses at once, naming the first one's pid, exits 1 and deletes nothing
-- of the first one's work; `job status` works while the run holds the lock; a run killed with
-- SIGKILL leaves no stale lock; in one process, a second job.run of the same job is refused too.
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local fixture = require("spec.support.fixture")
local job = require("spec.support.job")
local standin = require("spec.standin_helper")
local quote, capture, read_file, trim = shell.quote, shell.capture, shell.read_file, shell.trim

local KEY = "sk-standin"
local LUA = arg and arg[-1] or "lua5.4"

local function input(path, n)
  return job.input(path, n, "r", "hello ")
end

local function lines_of(path)
  local n = 0
  for _ in io.lines(path) do n = n + 1 end
  return n
end

describe("one run of a job at a time", function()
  local s, dir, env_file

  fixture.standin({ key = KEY, dir = true, config = { step_seconds = 0.2 } }, function(new_s, new_dir)
    s, dir = new_s, new_dir
    env_file = job.env_file(dir, s, KEY)
  end)

  -- start `moonbatch job run IN -o OUT` in the background: its pid; its output goes to `log`,
  -- its exit status to `log`.code
  local function start(path, results, log, extra)
    return tonumber(trim(capture(("{ . %s; %s bin/moonbatch job run %s -o %s --interval 0.1 --shard-lines 100 %s; " ..
      "echo $? > %s.code; } </dev/null >%s 2>&1 & echo $!")
      :format(quote(env_file), LUA, quote(path), quote(results), extra or "", quote(log), quote(log)))))
  end

  -- `start` on a fresh input of 300 requests, dir/NAME.jsonl, into dir/NAME-out.jsonl, its output
  -- going to dir/LOG: the input's, the results' and the output's paths
  local function start_new(name, log)
    local path, results = input(dir .. "/" .. name .. ".jsonl", 300), dir .. "/" .. name .. "-out.jsonl"
    start(path, results, dir .. "/" .. log)
    return path, results, dir .. "/" .. log
  end

  -- wait for the background command whose output goes to `log`: its exit status
  local function finish(log)
    local ends = core.now() + 60
    while core.now() < ends do
      local code = read_file(log .. ".code")
      if code and code:match("%d") then return tonumber(code:match("%d+")) end
      core.sleep(0.05)
    end
    error("the command did not end: " .. tostring(read_file(log)))
  end

  local function creates() return job.creates(s) end

  -- the shell's pid is the job's: `{ ...; }` runs the command in a subshell whose child it is;
  -- the message names the process that holds the lock, which is that child
  local function holder_of(text)
    return tonumber(text:match("running in another process %(pid (%d+)"))
  end

  for _, gap in ipairs({ 0, 0.4 }) do
    it(("lets one of two runs started %g s apart go on, and the other refuses, naming it"):format(gap), function()
      local tag = ("gap%g"):format(gap):gsub("%.", "_")
      local path = input(dir .. "/" .. tag .. ".jsonl", 300)
      local results = dir .. "/" .. tag .. "-out.jsonl"
      local a_log, b_log = dir .. "/" .. tag .. "-a.log", dir .. "/" .. tag .. "-b.log"
      start(path, results, a_log)
      if gap > 0 then core.sleep(gap) end
      start(path, results, b_log)
      local a, b = finish(a_log), finish(b_log)
      local a_out, b_out = read_file(a_log), read_file(b_log)
      -- one finished the job, the other refused
      local winner, loser = a_out, b_out
      if a ~= 0 then winner, loser = b_out, a_out end
      assert.same({ 0, 1 }, { math.min(a, b), math.max(a, b) }, a_out .. "\n---\n" .. b_out)
      assert.matches("succeeded: 300\nfailed: 0\nmissing: 0\nshards: 3 %(3 completed%)", winner)
      assert.matches("moonbatch: job: the job of .- is running in another process %(pid %d+, moonbatch job run ", loser)
      assert.truthy(holder_of(loser))
      assert.equal(3, creates()) -- each batch once
      assert.equal(300, lines_of(results))
      assert.is_nil((a_out .. b_out):find(KEY, 1, true))
    end)
  end

  it("shows the job's status while a run holds the lock, and names the holder's pid", function()
    s:config({ step_seconds = 1 })
    local path, results, log = start_new("status", "status-a.log")
    -- wait until the job is recorded, then ask while it runs
    local ends = core.now() + 20
    local code, out, err
    repeat
      core.sleep(0.1)
      code, out, err = cli.run(dir, { "job", "status", results }, {
        MOONBATCH_BASE_URL = s.urls.siliconflow, MOONBATCH_PROVIDER = "siliconflow" }, LUA)
    until code == 0 and out:find("running", 1, true) or core.now() > ends
    assert.equal(0, code, err)
    assert.matches("job: %x+ %(running%)", out)
    -- the lock file names the run's process, which is alive
    local pid = tonumber((read_file(results .. ".job.db.lock") or ""):match("^(%d+) "))
    assert.truthy(pid)
    assert.is_true(standin.alive(pid))
    -- the library refuses a second run with kind "busy" and that pid
    local c = moonbatch.new({ provider = "siliconflow", base_url = s.urls.siliconflow, api_key = KEY })
    local none, msg, info = moonbatch.job.run(c, { input = path, results = results })
    assert.is_nil(none)
    assert.matches("running in another process (pid " .. pid, msg, 1, true)
    assert.equal("busy", info.kind)
    assert.equal(pid, info.pid)
    assert.equal(0, finish(log))
    assert.equal(3, creates())
  end)

  it("leaves no stale lock when a run is killed", function()
    s:config({ step_seconds = 1 })
    local path, results, log = start_new("killed", "killed.log")
    local pid
    local ends = core.now() + 20
    repeat
      core.sleep(0.05)
      pid = tonumber((read_file(results .. ".job.db.lock") or ""):match("^(%d+) "))
    until pid or core.now() > ends
    assert.truthy(pid)
    core.sleep(0.3)
    os.execute("kill -KILL " .. pid)
    finish(log)
    s:config({ step_seconds = 0.2 })
    local again = dir .. "/killed-again.log"
    start(path, results, again)
    assert.equal(0, finish(again), read_file(again))
    assert.equal(300, lines_of(results))
  end)

  it("refuses a second run of the same job in the same process", function()
    local path = input(dir .. "/same.jsonl", 30)
    local results = dir .. "/same-out.jsonl"
    local c = moonbatch.new({ provider = "siliconflow", base_url = s.urls.siliconflow, api_key = KEY })
    local inner
    local summary = assert(moonbatch.job.run(c, { input = path, results = results, interval = 0.1,
      on_event = function(e)
        if e.type == "planned" then inner = { moonbatch.job.run(c, { input = path, results = results }) } end
      end }))
    assert.equal(30, summary.succeeded)
    assert.is_nil(inner[1])
    assert.matches("running in this process already", inner[2], 1, true)
    assert.equal("busy", inner[3].kind)
    -- released once the run ended
    assert.equal(30, assert(moonbatch.job.run(c, { input = path, results = results })).succeeded)
  end)
end)
