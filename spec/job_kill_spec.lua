-- spec/job_kill_spec.lua: a job of 23,000 requests on the SiliconFlow dialect (5 shards) run by
-- `moonbatch job run`, killed with SIGKILL again and again (at seeded random moments, some of
-- them just after it reaches a given step: planning, uploading, creating, waiting, downloading)
-- and resumed each time, ends with exactly 23,000 result lines, each custom_id once; and the
-- stand-in's log shows no upload of a shard and no batch created from a file once the job's
-- store had recorded their ids.
local cjson = require("cjson")
local core = require("moonbatch.core")
local job_store = require("moonbatch.job.store")
local shell = require("spec.support.shell")
local fixture = require("spec.support.fixture")
local job = require("spec.support.job")
local standin = require("spec.standin_helper")
local quote = shell.quote
local capture = shell.capture
local read_file = shell.read_file
local trim = shell.trim

local KEY = "sk-standin"
local REQUESTS = 23000
local KILLS = 16
local LUA = arg and arg[-1] or "lua5.4" -- the interpreter running the specs runs the command too

-- a shard status's place in a job
local ORDER = { pending = 1, uploading = 2, uploaded = 3, creating = 4, running = 5, ended = 6, done = 7,
                cancelled = 7 }
local STEPS = { "uploading", "uploaded", "creating", "running", "ended" }

describe("a large job killed again and again", function()
  local s, dir

  fixture.standin({ key = KEY, dir = true, reset = false }, function(new_s, new_dir) s, dir = new_s, new_dir end)

  it("ends with every result once, and no upload or batch made twice after its id was recorded", function()
    s:reset()
    s:config({ step_seconds = 3 }) -- a batch runs for about 10 s: many kills fall while it waits, even on a loaded machine
    local input, results = dir .. "/requests.jsonl", dir .. "/results.jsonl"
    job.input(input, REQUESTS, "request-", "Say something about the number ")
    -- the key reaches the command through its environment, never through an argument list
    local env_file = job.env_file(dir, s, KEY)
    local command = ("%s bin/moonbatch job run %s -o %s --interval 0.1 --concurrency 2"):format(LUA, quote(input), quote(results))
    local output = dir .. "/output.txt"
    local store_path = results .. ".job.db"

    -- the job the store records now, or nil before it exists
    local function read_store()
      local ok, st = pcall(job_store.open, store_path)
      if not ok then return nil end
      local loaded, m = pcall(st.load, st)
      st:close()
      return loaded and m or nil
    end

    local function start()
      return tonumber(trim(capture(("{ . %s; exec %s; } </dev/null >>%s 2>&1 & echo $!")
        :format(quote(env_file), command, quote(output)))))
    end

    local function gone(pid)
      return not standin.alive(pid)
    end

    -- the earliest status of any shard, or 0 before the store exists
    local function least()
      local m = read_store()
      if not m then return 0, m end
      local low = math.huge
      for _, sh in ipairs(m.shards) do low = math.min(low, ORDER[sh.status]) end
      return low, m
    end

    -- every shard at `step` or past it (or the process gone), within 20 s
    local function wait_for(step, pid)
      local ends = core.now() + 20
      while core.now() < ends and not gone(pid) do
        local m = read_store()
        if m then
          for _, sh in ipairs(m.shards) do
            if ORDER[sh.status] >= ORDER[step] then return end
          end
        end
        core.sleep(0.005)
      end
    end

    local recorded_files, recorded_batches = {}, {} -- as the store said when the last run died
    local checked, violations, hits = 0, {}, {}
    -- the log since the last look: nothing uploaded or created that was already recorded
    local function check_log()
      local log = s:log()
      for i = checked + 1, #log do
        local e = log[i]
        local file = e.method == "POST" and type(e.fields) == "table" and type(e.fields.file) == "table"
          and e.fields.file.filename
        if file and recorded_files[file] then
          violations[#violations + 1] = "upload of " .. file .. " after its file id was recorded"
        end
        if e.method == "POST" and e.path:match("/batches$") and type(e.json) == "table"
          and recorded_batches[e.json.input_file_id] then
          violations[#violations + 1] = "batch created from " .. e.json.input_file_id .. " after its batch id was recorded"
        end
      end
      checked = #log
    end

    math.randomseed(23000)
    local waiting_kills = 0
    for k = 1, KILLS do
      local low = least()
      local pid = start()
      if k % 2 == 1 then
        core.sleep(0.02 + math.random() * 1.2) -- anywhere
      else
        -- just after the job reaches the next step still ahead of it (the nearest one: waiting
        -- for a later one would let the batches run to their end unkilled); while the batches
        -- run, a few kills fall at random moments of the waiting before the one that waits for
        -- their end (mid-download)
        if low == ORDER.running and waiting_kills < 4 then
          waiting_kills = waiting_kills + 1
          core.sleep(0.3 + math.random() * 0.7)
        else
          for _, step in ipairs(STEPS) do
            if ORDER[step] > low then
              wait_for(step, pid)
              break
            end
          end
        end
        core.sleep(math.random() * 0.03)
      end
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      local ends = core.now() + 10
      while not gone(pid) and core.now() < ends do core.sleep(0.01) end
      assert.is_true(gone(pid), "the killed process is still there")
      check_log()
      local at, m = least()
      hits[#hits + 1] = at
      for _, sh in ipairs(m and m.shards or {}) do
        if sh.file_id then recorded_files[sh.name] = true end
        if sh.batch_id then recorded_batches[sh.file_id] = true end
      end
    end

    -- then once to the end
    local finished = capture(("( . %s; exec %s ) </dev/null 2>&1; echo \"exit $?\""):format(quote(env_file), command))
    check_log()
    local killed_before_the_end = 0
    for _, at in ipairs(hits) do
      if at < ORDER.done then killed_before_the_end = killed_before_the_end + 1 end
    end
    assert.truthy(finished:match("exit 0\n$"), finished)
    assert.matches("requests: 23000\nsucceeded: 23000\nfailed: 0\nmissing: 0\nshards: 5 (5 completed)", finished, 1, true)
    assert.same({}, violations)

    local seen, lines = {}, 0
    for line in io.lines(results) do
      lines = lines + 1
      local id = cjson.decode(line).custom_id
      assert.is_nil(seen[id], id .. " twice")
      seen[id] = true
    end
    assert.equal(REQUESTS, lines)
    for i = 1, REQUESTS do assert.is_true(seen["request-" .. i]) end
    assert.equal("", read_file(dir .. "/results.errors.jsonl"))
    local m = assert(read_store())
    assert.equal(5, #m.shards)
    assert.same({ 5000, 5000, 5000, 5000, 3000 }, { m.shards[1].lines, m.shards[2].lines, m.shards[3].lines,
                                                    m.shards[4].lines, m.shards[5].lines })
    -- the kills fell while the job was under way, not only after it was done
    print(("\n    kills: statuses at each kill %s"):format(table.concat(hits, ",")))
    assert.is_true(killed_before_the_end >= 5, ("only %d of %d kills before the end (statuses: %s)")
      :format(killed_before_the_end, KILLS, table.concat(hits, ",")))
    assert.is_nil((read_file(output) or ""):find(KEY, 1, true))
  end)
end)
