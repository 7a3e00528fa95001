-- spec/job_spec.lua: jobs larger than one batch (moonbatch.job) against the stand-in: sharding
-- within each provider's limits, the merge, the store and what a run after a failure finds
-- there (no second upload or batch, even when the failure fell between the server's work and
-- its reply), a changed input refused, cancel, retry-failed, status; the command line's `job`
-- commands; and core.checksum (SHA-256) on files and byte ranges. The SIGKILL test is in
-- spec/job_kill_spec.lua.
local cjson = require("cjson")
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local manifest = require("moonbatch.manifest")
local subprocess = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local job = require("spec.support.job")
local fixture = require("spec.support.fixture")
local quote, capture, read_file, write_file = shell.quote, shell.capture, shell.read_file, shell.write_file
local exists, tmpdir = shell.exists, shell.tmpdir

local KEY = "sk-standin"

-- one request line; `fail` makes the stand-in put it in the error file
local function request(id, fail, pad)
  return cjson.encode({ custom_id = id, method = "POST", url = "/v1/chat/completions",
    body = { model = "deepseek-ai/DeepSeek-V3", standin_fail = fail or nil,
             messages = { { role = "user", content = "hello " .. id .. (pad or "") } } } }) .. "\n"
end

-- an input of n requests r1..rn; those for which fails(i) is true fail
local function input(path, n, fails, pad)
  local parts = {}
  for i = 1, n do parts[i] = request("r" .. i, fails and fails(i), pad) end
  write_file(path, table.concat(parts))
  return path
end

local function lines_of(path)
  local out = {}
  for l in (read_file(path) or ""):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- custom_id -> times seen in a results or errors file
local function ids_of(path)
  local ids, n = {}, 0
  for _, l in ipairs(lines_of(path)) do
    local id = cjson.decode(l).custom_id
    ids[id] = (ids[id] or 0) + 1
    n = n + 1
  end
  return ids, n
end

local load_store = job.load_store

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- the log's successful uploads per file name and creates per input file
local function uploads_and_creates(log)
  local uploads, creates = {}, {}
  for _, e in ipairs(log) do
    if e.method == "POST" and (e.status == 200 or e.status == 201) then
      local file = type(e.fields) == "table" and type(e.fields.file) == "table" and e.fields.file.filename
      if file then uploads[file] = (uploads[file] or 0) + 1 end
      if e.path:match("/batches$") and type(e.json) == "table" then
        creates[e.json.input_file_id] = (creates[e.json.input_file_id] or 0) + 1
      end
    end
  end
  return uploads, creates
end

describe("moonbatch.core.checksum", function()
  local dir, path

  setup(function()
    dir = tmpdir()
    path = dir .. "/data.bin"
    local parts = {}
    for i = 1, 70000 do parts[i] = string.char(i % 251) end -- 70,000 bytes: several 64-byte blocks and a tail
    write_file(path, table.concat(parts))
  end)

  teardown(function()
    os.execute("rm -rf " .. quote(dir))
  end)

  local function sha256sum(offset, length)
    local cmd = ("tail -c +%d %s | head -c %d | sha256sum"):format(offset + 1, quote(path), length)
    return capture(cmd):match("^(%x+)")
  end

  it("is the SHA-256 of a file, as sha256sum says", function()
    local sum, bytes = core.checksum(path)
    assert.equal(capture("sha256sum " .. quote(path)):match("^(%x+)"), sum)
    assert.equal(70000, bytes)
    write_file(dir .. "/empty", "")
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", (core.checksum(dir .. "/empty")))
    write_file(dir .. "/abc", "abc")
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", (core.checksum(dir .. "/abc")))
  end)

  it("digests a byte range, whatever its length against the 64-byte blocks", function()
    for _, r in ipairs({ { 0, 0 }, { 0, 55 }, { 0, 56 }, { 1, 63 }, { 5, 64 }, { 100, 119 }, { 3, 69990 },
                         { 69999, 1 } }) do
      local sum, bytes = core.checksum(path, r[1], r[2])
      assert.equal(sha256sum(r[1], r[2]), sum, r[1] .. "+" .. r[2])
      assert.equal(r[2], bytes)
    end
    assert.equal(sha256sum(69000, 1000), (core.checksum(path, 69000))) -- to the end
  end)

  it("fails with kind io for a missing file or a range past the end", function()
    local sum, msg, info = core.checksum(dir .. "/nope")
    assert.is_nil(sum)
    assert.matches("No such file", msg, 1, true)
    assert.equal("io", info.kind)
    sum, msg, info = core.checksum(path, 69990, 20)
    assert.is_nil(sum)
    assert.matches("only 10 of the 20 bytes", msg, 1, true)
    assert.equal("io", info.kind)
    assert.is_nil((core.checksum(dir)))
  end)

  it("raises for arguments of the wrong kind", function()
    assert.has_error(function() core.checksum(42) end)
    assert.has_error(function() core.checksum(path, -1) end)
    assert.has_error(function() core.checksum(path, 0, 1.5) end)
    assert.has_error(function() core.checksum(path, "a") end)
  end)
end)

describe("moonbatch.manifest", function()
  it("writes atomically and reads back what it wrote, as integers", function()
    local dir = tmpdir()
    local path = dir .. "/m.json"
    assert.is_false(manifest.read(path))
    local m = { format = manifest.FORMAT, job_id = "abc", state = "running", provider = "openai",
                base_url = "http://127.0.0.1:1/v1", endpoint = "/v1/chat/completions", limits = { lines = 10 },
                input = { path = "/a/b.jsonl", bytes = 12, lines = 2, checksum = "00" },
                results = "/a/r.jsonl", errors = "/a/r.errors.jsonl", work = "/a/r.jsonl.shards",
                shards = { { index = 1, name = "x.jsonl", offset = 0, length = 12, lines = 2, checksum = "00",
                             status = "pending" } } }
    assert.is_true(manifest.write(path, m))
    m.shards[1].status = "uploaded"
    assert.is_true(manifest.write(path, m))
    local back = assert(manifest.read(path))
    assert.same(m, back)
    assert.equal(math.type and "integer" or "number", (math.type or type)(back.shards[1].length))
    assert.matches('"path":"/a/b.jsonl"', read_file(path), 1, true)
    assert.equal("m.json\n", capture("ls -A " .. quote(dir))) -- no temporary file left
    write_file(path, "{}")
    local none, msg = manifest.read(path)
    assert.is_nil(none)
    assert.matches("not a moonbatch job manifest", msg, 1, true)
    os.execute("rm -rf " .. quote(dir))
  end)
end)

-- one stand-in (batches a step every 0.2 s) and one work directory for the job specs
describe("jobs on the stand-in", function()
  local s, dir

  fixture.standin({ key = KEY, dir = true, config = { step_seconds = 0.2 } },
    function(new_s, new_dir) s, dir = new_s, new_dir end)

  describe("moonbatch.job", function()
    local function client(provider, extra)
      local opts = { provider = provider or "siliconflow", base_url = s.urls[provider or "siliconflow"], api_key = KEY }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return moonbatch.new(opts)
    end

    -- job.run with fast polls; collects the events' texts in `events`
    local events
    local function run(c, opts)
      opts.interval = opts.interval or 0.1
      opts.max_interval = opts.max_interval or 0.2
      opts.on_event = opts.on_event or function(e) events[#events + 1] = e end
      return moonbatch.job.run(c, opts)
    end

    before_each(function()
      events = {}
    end)

    it("runs 12,000 requests on SiliconFlow as 3 batches and merges each custom_id once", function()
      local path = input(dir .. "/big.jsonl", 12000, function(i) return i % 1000 == 0 end)
      local results = dir .. "/big-results.jsonl"
      local summary = assert(run(client(), { input = path, results = results }))
      assert.same({ requests = 12000, succeeded = 11988, failed = 12, missing = 0, complete = true,
                    shards = 3, batches = { completed = 3 } },
        { requests = summary.requests, succeeded = summary.succeeded, failed = summary.failed,
          missing = summary.missing, complete = summary.complete, shards = summary.shards,
          batches = summary.batches })
      local ok_ids, n = ids_of(results)
      assert.equal(11988, n)
      assert.equal(11988, count_keys(ok_ids))
      local failed_ids, nf = ids_of(dir .. "/big-results.errors.jsonl")
      assert.equal(12, nf)
      for i = 1000, 12000, 1000 do assert.equal(1, failed_ids["r" .. i]) end
      assert.equal(results .. ".job.db", summary.store)

      -- 3 shards of at most 5,000 lines, each uploaded once and made into one batch
      local m = assert(load_store(summary.store))
      assert.equal("done", m.state)
      assert.same({ 5000, 5000, 2000 }, { m.shards[1].lines, m.shards[2].lines, m.shards[3].lines })
      local uploads, creates = uploads_and_creates(s:log())
      assert.equal(3, count_keys(uploads))
      for _, sh in ipairs(m.shards) do
        assert.equal(1, uploads[sh.name])
        assert.equal(1, creates[sh.file_id])
        assert.equal(core.checksum(path, sh.offset, sh.length), sh.checksum)
        assert.equal("done", sh.status)
      end
      assert.is_false(exists(results .. ".shards/" .. m.shards[1].name))
      assert.equal("big-results.errors.jsonl\nbig-results.jsonl\nbig-results.jsonl.job.db\nbig-results.jsonl.job.db.lock\nbig.jsonl\n",
        capture("ls -A " .. quote(dir) .. " | grep big"))

      -- the same call again: the job is done, nothing is sent
      local before = #s:log()
      local again = assert(run(client(), { input = path, results = results }))
      assert.equal(11988, again.succeeded)
      assert.equal(before, #s:log())
      -- with the merged files gone, it fetches the results again (and only them)
      os.remove(results)
      again = assert(run(client(), { input = path, results = results }))
      assert.equal(11988, again.succeeded)
      assert.equal(11988, #lines_of(results))
      local log = s:log()
      assert.equal(before + 6, #log)
      for i = before + 1, #log do assert.matches("/content$", log[i].path) end
    end)

    for _, provider in ipairs({ "together", "openai" }) do
      it("keeps a small file in one shard on " .. provider .. " (50,000 lines a file), polls through an outage", function()
        local path = input(dir .. "/" .. provider .. ".jsonl", 6000, function(i) return i == 7 end)
        local outage = {}
        for i = 1, 5 do outage[i] = { status = 503, retry_after = "0" } end
        local summary = assert(run(client(provider), { input = path, results = dir .. "/" .. provider .. "-out.jsonl",
          on_event = function(e)
            -- the first poll fails after all its attempts, the next one gets through on its third
            if e.type == "created" then s:fault("GET", "/" .. provider .. "/v1/batches/" .. e.batch_id, outage) end
          end }))
        local unavailable = 0
        for _, e in ipairs(s:log()) do
          if e.status == 503 then unavailable = unavailable + 1 end
        end
        assert.equal(5, unavailable)
        assert.equal(1, summary.shards)
        assert.equal(5999, summary.succeeded)
        assert.equal(1, summary.failed)
        assert.is_true(summary.complete)
      end)
    end

    it("splits at a shard byte limit, cutting only at line ends", function()
      local path = input(dir .. "/bytes.jsonl", 300)
      local size = #read_file(path)
      local limit = math.floor(size / 4)
      local summary = assert(run(client("openai"), { input = path, results = dir .. "/bytes-out.jsonl", max_bytes = limit }))
      local m = assert(load_store(summary.store))
      assert.equal(5, #m.shards) -- 4 full shards cannot hold the lines cut at their ends
      local next_offset, lines = 0, 0
      for _, sh in ipairs(m.shards) do
        assert.is_true(sh.length <= limit)
        assert.equal(next_offset, sh.offset)
        next_offset, lines = sh.offset + sh.length, lines + sh.lines
      end
      assert.equal(size, next_offset)
      assert.equal(300, lines)
      assert.equal(300, summary.succeeded)
      assert.equal(limit, m.limits.bytes)

      local none, msg, info = moonbatch.job.run(client(), { input = path, results = dir .. "/tiny-out.jsonl", max_bytes = 100 })
      assert.is_nil(none)
      assert.matches("line 1 is %d+ bytes, more than a shard may hold %(100%)", msg)
      assert.equal("validation", info.kind)
    end)

    it("validates the whole input once, across shards, and sends nothing when it fails", function()
      local path = dir .. "/dup.jsonl"
      local t = { request("a") }
      for i = 1, 5500 do t[#t + 1] = request("b" .. i) end
      t[#t + 1] = request("a")
      write_file(path, table.concat(t))
      local none, msg, info = moonbatch.job.run(client(), { input = path, results = dir .. "/dup-out.jsonl" })
      assert.is_nil(none)
      assert.matches('custom_id "a" already used on line 1', msg, 1, true)
      assert.equal("validation", info.kind)
      assert.equal(5502, info.problems[1].line)
      assert.equal(0, #s:log())
      assert.is_false(exists(dir .. "/dup-out.jsonl.job.db"))
    end)

    it("resumes after failed steps, finding on the server what reached it before the failure", function()
      local path = input(dir .. "/resume.jsonl", 7000)
      local results = dir .. "/resume-out.jsonl"
      local c = client("siliconflow", { max_retries = 0 })
      -- the first upload is stored but its reply cut short; the first create likewise
      s:fault("POST", "/siliconflow/v1/files", { { truncate = 10 } })
      s:fault("POST", "/siliconflow/v1/batches", { { truncate = 10 } })
      local none, msg, info = run(c, { input = path, results = results, concurrency = 1 })
      assert.is_nil(none)
      assert.matches("^moonbatch: job: shard 1 of 2 %(moonbatch%-%x+%-0001%.jsonl%): siliconflow POST", msg)
      assert.matches("run the job again to resume it", msg, 1, true)
      assert.equal(1, info.shard)
      local m = assert(load_store(results .. ".job.db"))
      assert.equal("uploading", m.shards[1].status)
      assert.is_nil(m.shards[1].file_id)
      assert.matches("siliconflow POST /files", m.shards[1].error, 1, true)
      assert.equal("creating", m.shards[2].status) -- the other shard went on, and its create was cut

      local summary = assert(run(c, { input = path, results = results }))
      assert.equal(7000, summary.succeeded)
      local uploads, creates = uploads_and_creates(s:log())
      m = assert(load_store(results .. ".job.db"))
      for _, sh in ipairs(m.shards) do
        assert.equal(1, uploads[sh.name], sh.name)
        assert.equal(1, creates[sh.file_id], sh.file_id)
      end
      local found = {}
      for _, e in ipairs(events) do if e.text:find("of an earlier run", 1, true) then found[#found + 1] = e.text end end
      assert.equal(2, #found)
    end)

    it("refuses to resume against a changed input, and resumes once it is back", function()
      local path = input(dir .. "/changing.jsonl", 50)
      local original = read_file(path)
      local results = dir .. "/changing-out.jsonl"
      s:fault("POST", "/siliconflow/v1/files", { { status = 400 } })
      assert.is_nil(run(client(), { input = path, results = results }))
      write_file(path, original:gsub("hello r7", "hello r8"))
      local none, msg, info = run(client(), { input = path, results = results })
      assert.is_nil(none)
      assert.matches("changing.jsonl changed since job %x+ started", msg)
      assert.equal("validation", info.kind)
      write_file(path, original)
      none, msg = run(client(), { input = path, results = results, endpoint = "/v1/embeddings" })
      assert.is_nil(none)
      assert.matches("option 'endpoint' differs", msg, 1, true)
      none, msg = run(client(), { input = path, results = results, max_lines = 10 })
      assert.is_nil(none)
      assert.matches("option 'max_lines' differs", msg, 1, true)
      none, msg = run(client("openai"), { input = path, results = results })
      assert.is_nil(none)
      assert.matches("runs on siliconflow", msg, 1, true)
      assert.equal(50, assert(run(client(), { input = path, results = results })).succeeded)
    end)

    it("names results by URL when SiliconFlow does", function()
      s:config({ siliconflow_output_urls = true })
      local path = input(dir .. "/urls.jsonl", 30, function(i) return i == 3 end)
      local summary = assert(run(client(), { input = path, results = dir .. "/urls-out.jsonl" }))
      assert.equal(29, summary.succeeded)
      assert.equal(1, summary.failed)
      local m = assert(load_store(summary.store))
      assert.matches("^http://127%.0%.0%.1:%d+/_standin/results/", m.shards[1].output_file_id)
    end)

    it("shows each shard's status, live with a client", function()
      s:config({ step_seconds = 2 })
      local path = input(dir .. "/status.jsonl", 6000)
      local results = dir .. "/status-out.jsonl"
      local ok, err = pcall(run, client(), { input = path, results = results, on_event = function(e)
        if e.type == "created" and e.shard == 2 then error("stop here", 0) end
      end, concurrency = 1 })
      assert.is_false(ok)
      assert.equal("stop here", err)
      local r = assert(moonbatch.job.status(nil, { results = results }))
      assert.equal(6000, r.requests)
      assert.equal("running", r.state)
      assert.same({ running = 1, creating = 1 }, r.statuses)
      assert.equal("running", r.shards[1].status)
      assert.is_nil(r.shards[1].live)
      r = assert(moonbatch.job.status(client(), { results = results }))
      assert.is_true(r.shards[1].live)
      assert.truthy(r.shards[1].batch_status)
      local none, msg = moonbatch.job.status(nil, { results = dir .. "/nothing.jsonl" })
      assert.is_nil(none)
      assert.matches("no job at", msg, 1, true)
      assert.has_error(function() moonbatch.job.status(nil, {}) end)
    end)

    it("cancels a job: no more batches, the running ones cancelled, what finished collected", function()
      s:config({ step_seconds = 1 })
      local path = input(dir .. "/cancel.jsonl", 12000)
      local results = dir .. "/cancel-out.jsonl"
      -- stop the run once the first batch exists (as a crash would), then cancel the job
      assert.is_false(pcall(run, client(), { input = path, results = results, concurrency = 1,
        on_event = function(e) if e.type == "created" then error("crash", 0) end end }))
      local r = assert(moonbatch.job.cancel(client(), { results = results }))
      assert.same({}, r.failures)
      assert.equal("cancelling", r.shards[1].batch_status)
      assert.equal("cancelled", r.shards[3].status)
      local summary = assert(run(client(), { input = path, results = results }))
      s:config({ step_seconds = 0.2 })
      assert.is_false(summary.complete)
      assert.is_true(summary.cancelled)
      assert.equal(12000, summary.requests)
      assert.equal(12000, summary.succeeded + summary.failed + summary.missing)
      assert.is_true(summary.missing >= 7000)
      local _, creates = uploads_and_creates(s:log())
      assert.equal(1, count_keys(creates))

      -- the requests without a result run again as a new job
      local retried = dir .. "/cancel-retry.jsonl"
      local again = assert(moonbatch.job.retry_failed(client(), { from = results, results = retried, interval = 0.1 }))
      assert.equal(12000 - summary.succeeded, again.requests)
      assert.is_true(again.complete)
      local all = ids_of(results)
      for id in pairs(ids_of(retried)) do
        assert.is_nil(all[id])
        all[id] = 1
      end
      assert.equal(12000, count_keys(all))
    end)

    it("retries the failed requests of a finished job as a new job", function()
      local path = input(dir .. "/retry.jsonl", 40, function(i) return i % 10 == 0 end)
      local results = dir .. "/retry-out.jsonl"
      assert(run(client("together"), { input = path, results = results }))
      local retried = dir .. "/retry-again.jsonl"
      local summary = assert(moonbatch.job.retry_failed(client("together"), { from = results, results = retried,
        interval = 0.1 }))
      assert.equal(4, summary.requests)
      assert.equal(4, summary.failed) -- standin_fail still set: they fail again
      assert.same({ r10 = 1, r20 = 1, r30 = 1, r40 = 1 }, (ids_of(dir .. "/retry-again.errors.jsonl")))
      assert.equal(4, #lines_of(dir .. "/retry-again.input.jsonl"))
      -- nothing left to retry from a job where everything succeeded
      local clean = dir .. "/clean.jsonl"
      input(clean, 5)
      assert(run(client("together"), { input = clean, results = dir .. "/clean-out.jsonl" }))
      local nothing = assert(moonbatch.job.retry_failed(client("together"), { from = dir .. "/clean-out.jsonl",
        results = dir .. "/clean-again.jsonl" }))
      assert.equal(0, nothing.requests)
      -- an unfinished job cannot be retried
      local none, msg = moonbatch.job.retry_failed(client("together"), { from = dir .. "/nothing.jsonl",
        results = dir .. "/x.jsonl" })
      assert.is_nil(none)
      assert.matches("no job at", msg, 1, true)
    end)

    it("raises for misuse before sending anything", function()
      local path = input(dir .. "/misuse.jsonl", 3)
      assert.has_error(function() moonbatch.job.run(client(), { input = path }) end)
      assert.has_error(function() moonbatch.job.run(client(), { input = path, results = "x", frob = 1 }) end)
      assert.has_error(function() moonbatch.job.run(nil, { input = path, results = "x" }) end)
      assert.has_error(function()
        moonbatch.job.run(client("together"), { input = path, results = dir .. "/m.jsonl", metadata = { a = "b" } })
      end, "job.run: option 'metadata' is not supported by together")
      assert.equal(0, #s:log())
    end)
  end)

  describe("moonbatch job (the command line)", function()
    -- moonbatch `words` on `provider`'s dialect of the stand-in, run by the interpreter running the
    -- specs: code, stdout, stderr
    local function moonbatch_cli(provider, words, with_key)
      local env = { MOONBATCH_BASE_URL = s.urls[provider], MOONBATCH_PROVIDER = provider,
                    MOONBATCH_API_KEY = with_key ~= false and KEY or nil }
      local code, o, e = subprocess.run(dir, words, env, arg and arg[-1])
      assert.is_nil((o .. e):find(KEY, 1, true), "the API key was printed")
      return code, o, e
    end

    it("runs a job, shows it, and retries its failed requests", function()
      local path = input(dir .. "/cli.jsonl", 5200, function(i) return i == 5100 end)
      local results = dir .. "/cli-out.jsonl"
      local code, out, err = moonbatch_cli("siliconflow", { "job", "run", path, "-o", results, "--interval", "0.1" })
      assert.equal(0, code, err)
      assert.matches("requests: 5200\nsucceeded: 5199\nfailed: 1\nmissing: 0\nshards: 2 %(2 completed%)\n", out)
      assert.matches("results: " .. results .. " (5199 lines)", out, 1, true)
      assert.matches("in 2 shards of at most 5000 lines", err, 1, true)
      assert.matches("shard 2/2: batch batch_%a+ completed 199/200, 1 failed", err)

      code, out = moonbatch_cli("siliconflow", { "job", "status", results }, false)
      assert.equal(0, code)
      assert.matches("job: %x+ %(done%)", out)
      assert.matches("SHARD  LINES  STATUS  BATCH%s+BATCH STATUS\n1      5000   done    batch_%a+  completed 5000/5000\n", out)
      assert.matches("succeeded: 5199, failed: 1, missing: 0", out, 1, true)

      code, out = moonbatch_cli("siliconflow", { "--json", "job", "status", results }, false)
      assert.equal(0, code)
      local report = cjson.decode(out)
      assert.equal(2, #report.shards)
      assert.equal(5200, report.requests)

      local again = dir .. "/cli-again.jsonl"
      code, out, err = moonbatch_cli("siliconflow", { "--json", "job", "retry-failed", results, "-o", again, "--interval", "0.1" })
      assert.equal(0, code, err)
      local summary = cjson.decode(out)
      assert.equal(1, summary.requests)
      assert.equal(1, summary.failed)

      -- the provider and base URL are the job's: another one is a usage error
      code, out, err = moonbatch_cli("together", { "--provider", "together", "job", "status", results })
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("runs on siliconflow", err, 1, true)
    end)

    it("cancels a job from the command line", function()
      local path = input(dir .. "/cli-cancel.jsonl", 20)
      local fresh = dir .. "/cli-cancel-out.jsonl"
      -- the run stops with the shard uploaded and no batch: cancel it, and no batch will be made
      s:fault("POST", "/openai/v1/batches", { { status = 400 } })
      local code, _, err = moonbatch_cli("openai", { "job", "run", path, "-o", fresh })
      assert.equal(1, code)
      assert.matches("moonbatch: job: shard 1 of 1 ", err, 1, true)
      local out
      code, out = moonbatch_cli("openai", { "job", "cancel", fresh })
      assert.equal(0, code)
      assert.matches("shard 1: no batch %(none will be created%)", out)
      code, out, err = moonbatch_cli("openai", { "job", "run", path, "-o", fresh })
      assert.equal(1, code)
      assert.matches("missing: 20", out, 1, true)
      assert.matches("the job was cancelled", err, 1, true)
    end)

    it("lists the job commands in the help, and refuses bad words", function()
      local code, out = moonbatch_cli("siliconflow", { "--help" })
      assert.equal(0, code)
      assert.matches("\n  job COMMAND ", out, 1, true)
      for _, command in ipairs({ "run", "status", "cancel", "retry-failed" }) do
        code, out = moonbatch_cli("siliconflow", { "job", command, "--help" })
        assert.equal(0, code)
        assert.matches("usage: moonbatch job " .. command, out, 1, true)
        local _, again = moonbatch_cli("siliconflow", { "help", "job", command })
        assert.equal(out, again)
      end
      for _, case in ipairs({
        { { "job" }, "missing COMMAND" },
        { { "job", "frob" }, "unknown job command 'frob'" },
        { { "job", "run", "x.jsonl" }, "missing -o RESULTS" },
        { { "job", "status" }, "missing RESULTS" },
        { { "job", "retry-failed", "a.jsonl" }, "missing -o NEW_RESULTS" },
        { { "job", "run", "x", "-o", "y", "--shard-lines", "0" }, "--shard-lines needs a whole number" },
      }) do
        local c, o, e = moonbatch_cli("siliconflow", case[1])
        assert.equal(2, c, table.concat(case[1], " "))
        assert.equal("", o)
        assert.matches(case[2], e, 1, true)
      end
    end)
  end)
end)
