-- spec/job_store_spec.lua: the job's store (moonbatch.job.store on moonbatch.store, SQLite): an
-- event costs the same at shard 2,000 as at shard 2; each merged request is a row (custom_id,
-- shard, outcome, usage) and the billed usage is summed into the summary; the JSON manifest of
-- an older version's unfinished job is imported once and the job finishes; a damaged manifest
-- (right format, a field missing or of the wrong kind) or a damaged store is a clear error
-- naming the file and the field, exit 1 from the command line, and the results are kept.
local cjson = require("cjson")
local moonbatch = require("moonbatch")
local manifest = require("moonbatch.manifest")
local job_store = require("moonbatch.job.store")
local sqlite = require("moonbatch.store")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local job = require("spec.support.job")
local fixture = require("spec.support.fixture")
local quote, read_file, write_file, exists, tmpdir = shell.quote, shell.read_file, shell.write_file, shell.exists,
  shell.tmpdir

local KEY = "sk-standin"
local LUA = arg and arg[-1] or "lua5.4"

local function input(path, n)
  local parts = {}
  for i = 1, n do
    parts[i] = cjson.encode({ custom_id = "r" .. i, body = { model = "deepseek-ai/DeepSeek-V3",
      standin_fail = i % 10 == 0 or nil, messages = { { role = "user", content = "hello " .. i } } } }) .. "\n"
  end
  write_file(path, table.concat(parts))
  return path
end

local load_store = job.load_store

-- a job's record with `n` shards (as moonbatch.job plans one)
local function record(n)
  local m = { format = manifest.FORMAT, job_id = "0123456789ab", state = "running", provider = "openai",
              base_url = "http://127.0.0.1:1/v1", endpoint = "/v1/chat/completions", limits = { lines = 10 },
              input = { path = "/x/in.jsonl", bytes = 10 * n, lines = 10 * n, checksum = "00" },
              results = "/x/r.jsonl", errors = "/x/r.errors.jsonl", work = "/x/r.jsonl.shards", shards = {} }
  for i = 1, n do
    m.shards[i] = { index = i, name = ("moonbatch-0123456789ab-%04d.jsonl"):format(i), offset = 10 * (i - 1),
                    length = 10, lines = 10, checksum = "00", status = "pending" }
  end
  return m
end

describe("the job store", function()
  local dir

  setup(function() dir = tmpdir() end)
  teardown(function() if dir then os.execute("rm -rf " .. quote(dir)) end end)

  it("records an event in the same time at shard 2,000 as at shard 2", function()
    local function cost(n)
      local path = ("%s/cost-%d.db"):format(dir, n)
      local st = job_store.open(path, true)
      local m = record(n)
      st:create(m)
      local s = m.shards[n]
      local start = os.clock() -- this process's CPU: the fsyncs' waits are not the event's cost
      for i = 1, 200 do
        s.status = i % 2 == 0 and "uploading" or "uploaded"
        s.file_id = "file-" .. i
        st:save_shard(s)
      end
      local spent = os.clock() - start
      st:close()
      local back = load_store(path)
      assert.equal("file-200", back.shards[n].file_id)
      assert.equal("uploading", back.shards[n].status)
      return spent
    end
    local small, large = cost(2), cost(2000)
    print(("\n    200 events: %.1f ms of CPU at shard 2 of 2, %.1f ms at shard 2000 of 2000"):format(small * 1000,
      large * 1000))
    assert.is_true(large < math.max(small * 2, small + 0.05), ("%.4f s against %.4f s"):format(large, small))
  end)

  it("merges result files each custom_id once through the store's index, without decoding them", function()
    local st = job_store.open(dir .. "/merge.db", true)
    st:create(record(2))
    local a, b, out = dir .. "/a.jsonl", dir .. "/b.jsonl", dir .. "/merged.jsonl"
    -- escapes name the same id as plain text; a nested custom_id is not the line's; CRLF, blank
    -- lines and a last line without its newline
    write_file(a, table.concat({
      '{"custom_id":"x/1","response":{"body":{"custom_id":"y","usage":{"prompt_tokens":3,"completion_tokens":2}}}}\r\n',
      "\n   \n",
      '{"custom_id":"x\\/1","response":{"body":{"usage":{"prompt_tokens":100,"completion_tokens":100}}}}\n',
      '{"id":"no custom_id here"}\n',
      '{"response":{"body":{"custom_id":"y"}},"custom_id":"y"}\n',
      '{"custom_id":"\\u00e9\\ud83d\\ude00","response":{}}',
    }))
    write_file(b, '{"custom_id":"y","again":true}\n{"custom_id":"z" , "usage":{"prompt_tokens" : 7}}\n')
    write_file(out, "")
    st:transaction(function()
      assert.same({ 4, 3, 2 }, { st:merge_file(a, out, 1, "succeeded") })
      assert.same({ 1, 7, 0 }, { st:merge_file(b, out, 2, "failed") })
    end)
    assert.equal(table.concat({
      '{"custom_id":"x/1","response":{"body":{"custom_id":"y","usage":{"prompt_tokens":3,"completion_tokens":2}}}}\n',
      '{"id":"no custom_id here"}\n',
      '{"response":{"body":{"custom_id":"y"}},"custom_id":"y"}\n',
      '{"custom_id":"\\u00e9\\ud83d\\ude00","response":{}}\n',
      '{"custom_id":"z" , "usage":{"prompt_tokens" : 7}}\n',
    }), read_file(out))
    assert.equal("succeeded", st:outcome("x/1"))
    assert.equal("succeeded", st:outcome("\195\169\240\159\152\128")) -- é and the emoji, decoded
    assert.equal("failed", st:outcome("z"))
    assert.equal(4, st:request_count())
    st:close()
  end)

  it("refuses a file that is not a job store, naming it", function()
    local path = dir .. "/not-a-store.db"
    write_file(path, ("not sqlite at all\n"):rep(100))
    local ok, err = pcall(job_store.open, path)
    assert.is_false(ok)
    assert.matches(path, err.msg, 1, true)
    assert.equal("io", err.info.kind)
  end)

  it("checks a loaded record's whole shape", function()
    local path = dir .. "/shape.db"
    local st = job_store.open(path, true)
    local m = record(3)
    st:create(m)
    st:exec("UPDATE shards SET status = 'frobbed' WHERE idx = 2")
    local ok, err = pcall(st.load, st)
    st:close()
    assert.is_false(ok)
    assert.matches(path .. " is damaged: field 'shards[2].status' is \"frobbed\"", err.msg, 1, true)
  end)
end)

describe("jobs and their stores on the stand-in", function()
  local s, dir

  fixture.standin({ key = KEY, dir = true, config = { step_seconds = 0.2 } },
    function(new_s, new_dir) s, dir = new_s, new_dir end)

  local function client()
    return moonbatch.new({ provider = "siliconflow", base_url = s.urls.siliconflow, api_key = KEY })
  end

  local function run(opts)
    opts.interval, opts.max_interval = 0.1, 0.2
    return moonbatch.job.run(client(), opts)
  end

  local function moonbatch_cli(words)
    local code, o, e = cli.run(dir, words, { MOONBATCH_BASE_URL = s.urls.siliconflow,
      MOONBATCH_PROVIDER = "siliconflow", MOONBATCH_API_KEY = KEY }, LUA)
    assert.is_nil((o .. e):find(KEY, 1, true))
    return code, o, e
  end

  it("records each merged request with its shard, outcome and usage, and sums the usage billed", function()
    local path = input(dir .. "/usage.jsonl", 250)
    local results = dir .. "/usage-out.jsonl"
    local summary = assert(run({ input = path, results = results, max_lines = 100 }))
    assert.equal(225, summary.succeeded)
    assert.equal(25, summary.failed)
    -- the store's rows, read with SQL
    local db = assert(sqlite.open(results .. ".job.db"))
    local q = assert(db:prepare("SELECT outcome, count(*), sum(prompt_tokens), sum(completion_tokens), " ..
      "min(shard), max(shard) FROM requests GROUP BY outcome ORDER BY outcome"))
    local rows = {}
    while q:step() do rows[#rows + 1] = { q:row() } end
    q:finalize()
    q = assert(db:prepare("SELECT shard, outcome FROM requests WHERE custom_id = ?"))
    q:bind("r151")
    assert.is_true(q:step())
    assert.same({ 2, "succeeded" }, { q:row() })
    q:bind("r250")
    assert.is_true(q:step())
    assert.same({ 3, "failed" }, { q:row() })
    q:finalize()
    db:close()
    assert.equal("failed", rows[1][1])
    assert.equal(25, rows[1][2])
    assert.equal("succeeded", rows[2][1])
    assert.same({ 225, 1, 3 }, { rows[2][2], rows[2][5], rows[2][6] })
    -- the usage the results carry, summed by decoding them here
    local prompt, completion = 0, 0
    for line in io.lines(results) do
      local u = cjson.decode(line).response.body.usage
      prompt, completion = prompt + u.prompt_tokens, completion + u.completion_tokens
    end
    assert.is_true(prompt > 0)
    assert.same({ prompt, completion }, { rows[2][3], rows[2][4] })
    assert.same({ input_tokens = prompt, output_tokens = completion }, summary.usage)
    -- job status shows it, and --json prints the store's record
    local code, out = moonbatch_cli({ "job", "status", results })
    assert.equal(0, code)
    assert.matches(("billed: %d input tokens, %d output tokens"):format(prompt, completion), out, 1, true)
    code, out = moonbatch_cli({ "--json", "job", "status", results })
    assert.equal(0, code)
    local report = cjson.decode(out)
    assert.equal(results .. ".job.db", report.store)
    assert.equal(3, #report.shards)
    assert.equal(prompt, report.usage.input_tokens)
  end)

  -- an unfinished job of an older version: its manifest, and no store
  local function legacy_job(name)
    local path = input(dir .. "/" .. name .. ".jsonl", 250)
    local results = dir .. "/" .. name .. "-out.jsonl"
    s:fault("POST", "/siliconflow/v1/files", { { status = 400 } })
    assert.is_nil(run({ input = path, results = results, max_lines = 100, concurrency = 1 }))
    local m = load_store(results .. ".job.db")
    os.remove(results .. ".job.db")
    os.remove(results .. ".job.db.lock")
    m.format = manifest.FORMAT
    assert.is_true(manifest.write(results .. ".manifest.json", m))
    return path, results, m
  end

  it("imports an older version's manifest once, and finishes its job", function()
    local path, results, m = legacy_job("legacy")
    local code, out = moonbatch_cli({ "job", "status", results })
    assert.equal(0, code)
    assert.matches("job: " .. m.job_id .. " (running)", out, 1, true)
    assert.is_false(exists(results .. ".job.db")) -- status reads; it imports nothing
    local summary = assert(run({ input = path, results = results, max_lines = 100 }))
    assert.equal(m.job_id, summary.job_id)
    assert.equal(225, summary.succeeded)
    assert.is_false(exists(results .. ".manifest.json"))
    assert.is_true(exists(results .. ".manifest.json.imported"))
    assert.equal("done", load_store(results .. ".job.db").state)
  end)

  -- each damage: how to do it to a manifest's table, and the field the error must name
  local damages = {
    { function(m) m.shards[2].lines = nil end, "field 'shards[2].lines' is missing (an integer expected)" },
    { function(m) m.input.bytes = "many" end, "field 'input.bytes' is string, not an integer" },
    { function(m) m.job_id = nil end, "field 'job_id' is missing (a string expected)" },
    { function(m) m.limits = nil end, "field 'limits' is missing (a table expected)" },
    { function(m) m.state = "sleeping" end, "field 'state' is \"sleeping\", not running or done" },
    { function(m) m.shards[1].status = "lost" end, "field 'shards[1].status' is \"lost\", not a shard status" },
    { function(m) m.shards[3].index = 7 end, "field 'shards[3].index' is 7, not 3" },
    { function(m) m.shards = {} end, "field 'shards' is missing or empty" },
    { function(m) m.shards[2] = "x" end, "field 'shards[2]' is string, not a table" },
    { function(m) m.shards[1].offset = 1.5 end, "field 'shards[1].offset' is number, not an integer" },
    { function(m) m.shards[1].status, m.shards[1].batch_id = "running", nil end,
      "field 'shards[1].batch_id' is missing (a running shard has a batch)" },
    { function(m) m.input.lines = 7 end, "the shards hold 250 lines, field 'input.lines' says 7" },
  }

  it("refuses a damaged manifest, naming the file and the field, and keeps the results", function()
    local path, results, m = legacy_job("damaged")
    local mpath = results .. ".manifest.json"
    local clean = read_file(mpath)
    write_file(results, "an earlier results file\n")
    for i, d in ipairs(damages) do
      local copy = cjson.decode(clean)
      d[1](copy)
      write_file(mpath, cjson.encode(copy))
      local none, msg, info = run({ input = path, results = results, max_lines = 100 })
      assert.is_nil(none, i)
      assert.matches(mpath .. " is a damaged job manifest: " .. d[2], msg, 1, true)
      assert.equal("io", info.kind)
      local code, out, err = moonbatch_cli({ "job", "run", path, "-o", results, "--shard-lines", "100" })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.matches(mpath .. " is a damaged job manifest: " .. d[2], err, 1, true)
      code, out, err = moonbatch_cli({ "job", "status", results })
      assert.equal(1, code, out)
      assert.matches(d[2], err, 1, true)
      -- nothing imported, nothing lost
      assert.is_false(exists(results .. ".job.db"))
      assert.equal("an earlier results file\n", read_file(results))
      assert.is_true(exists(mpath))
    end
    -- not JSON, or not ours
    for _, text in ipairs({ "{", '{"format":"other"}' }) do
      write_file(mpath, text)
      local code, _, err = moonbatch_cli({ "job", "status", results })
      assert.equal(1, code)
      assert.matches(mpath .. " is not a moonbatch job manifest", err, 1, true)
    end
    -- once repaired, the job goes on
    write_file(mpath, clean)
    assert.equal(225, assert(run({ input = path, results = results, max_lines = 100 })).succeeded)
    assert.is_true(m.job_id ~= nil)
  end)

  it("refuses a damaged store from the command line with exit 1", function()
    local path = input(dir .. "/bad-store.jsonl", 10)
    local results = dir .. "/bad-store-out.jsonl"
    write_file(results .. ".job.db", ("garbage "):rep(1000))
    local code, _, err = moonbatch_cli({ "job", "run", path, "-o", results })
    assert.equal(1, code)
    assert.matches(results .. ".job.db", err, 1, true)
    assert.matches("not a moonbatch job store", err, 1, true)
    code, _, err = moonbatch_cli({ "job", "status", results })
    assert.equal(1, code)
    assert.matches("not a moonbatch job store", err, 1, true)
  end)
end)
