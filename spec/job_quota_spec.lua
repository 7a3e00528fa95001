-- spec/job_quota_spec.lua: quota-aware jobs on the stand-in's OpenAI dialect, with its
-- enqueued-token limit: batches that fail with token_limit_exceeded are created again once
-- earlier ones end, and the job completes, each request once, the reason shown in job status;
-- max_enqueued_tokens, max_enqueued_requests and max_active_batches hold shards back so that
-- no batch fails and never more are active than allowed; the CLI flags reach the job.
local cjson = require("cjson")
local moonbatch = require("moonbatch")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local job = require("spec.support.job")
local fixture = require("spec.support.fixture")
local write_file = shell.write_file

local KEY = "sk-standin"
local LUA = arg and arg[-1] or "lua5.4"
local SHARDS, LINES = 4, 100

local function input(path)
  local parts = {}
  for i = 1, SHARDS * LINES do
    parts[i] = cjson.encode({ custom_id = ("q%04d"):format(i), method = "POST", url = "/v1/chat/completions",
      body = { model = "gpt-4o-mini", messages = { { role = "user", content = ("question %04d"):format(i) } } } }) .. "\n"
  end
  write_file(path, table.concat(parts))
  return path
end

describe("quota-aware jobs", function()
  local s, dir, path, shard_tokens

  fixture.standin({ key = KEY, dir = true, config = function()
    -- room for two shards' batches at a time, not three
    return { step_seconds = 0.3, enqueued_token_limit = math.floor(shard_tokens * 2.5) }
  end }, function(new_s, new_dir)
    s, dir = new_s, new_dir
    path = input(dir .. "/in.jsonl")
    -- a shard's tokens as the stand-in counts them (a quarter of each line's bytes)
    shard_tokens = 0
    local n = 0
    for line in io.lines(path) do
      n = n + 1
      if n <= LINES then shard_tokens = shard_tokens + math.ceil((#line + 1) / 4) end
    end
  end)

  local function client()
    return moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY })
  end

  -- job.run with fast polls; the events, and the most batches active at once
  local function run(results, extra)
    local events, active, most = {}, 0, 0
    local opts = { input = path, results = results, max_lines = LINES, interval = 0.1, max_interval = 0.2,
      on_event = function(e)
        events[#events + 1] = e
        if e.type == "created" then active = active + 1 end
        if e.type == "ended" or e.type == "quota" then active = active - 1 end
        most = math.max(most, active)
      end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    local summary, msg = moonbatch.job.run(client(), opts)
    return summary, msg, events, most
  end

  local function creates()
    local n, failed = job.creates(s), 0
    for _, e in ipairs(s:log()) do
      if e.method == "GET" and e.path:match("/batches/") and type(e.body) == "string"
        and e.body:find("token_limit_exceeded", 1, true) then failed = failed + 1 end
    end
    return n, failed
  end

  local function of_type(events, kind)
    local out = {}
    for _, e in ipairs(events) do if e.type == kind then out[#out + 1] = e end end
    return out
  end

  it("creates again the batches that failed on the enqueued-token limit, and completes", function()
    local results = dir .. "/retried.jsonl"
    local summary, msg, events = run(results, { concurrency = 4 })
    assert.truthy(summary, msg)
    assert.same({ SHARDS * LINES, 0, 0, true }, { summary.succeeded, summary.failed, summary.missing, summary.complete })
    assert.same({ completed = SHARDS }, summary.batches)
    local quota = of_type(events, "quota")
    assert.is_true(#quota >= 1, "no batch failed on the quota: the limit did not bite")
    assert.matches("token_limit_exceeded: Enqueued token limit reached", quota[1].reason, 1, true)
    assert.equal(SHARDS + #quota, (creates()))
    -- each request once
    local seen, n = {}, 0
    for line in io.lines(results) do
      local id = cjson.decode(line).custom_id
      assert.is_nil(seen[id])
      seen[id], n = true, n + 1
    end
    assert.equal(SHARDS * LINES, n)
    -- the reason shows in job status
    local report = assert(moonbatch.job.status(nil, { results = results }))
    local shown = 0
    for _, r in ipairs(report.shards) do
      if r.quota_reason then
        shown = shown + 1
        assert.matches("^token_limit_exceeded: ", r.quota_reason)
        assert.is_true(r.resubmits >= 1)
      end
    end
    assert.is_true(shown >= 1)
    local code, out = cli.run(dir, { "job", "status", results }, { MOONBATCH_BASE_URL = s.urls.openai,
      MOONBATCH_PROVIDER = "openai" }, LUA)
    assert.equal(0, code)
    assert.matches("shard %d: created again %d times? on a quota %(token_limit_exceeded: Enqueued token limit", out)
  end)

  for _, case in ipairs({
    { "max_enqueued_tokens", function() return math.floor(shard_tokens * 2.2) end, 2 },
    { "max_enqueued_requests", function() return 2 * LINES end, 2 },
    { "max_active_batches", function() return 1 end, 1 },
  }) do
    it(("holds shards back with %s, so that no batch fails on the quota"):format(case[1]), function()
      local results = dir .. "/" .. case[1] .. ".jsonl"
      local summary, msg, events, most = run(results, { concurrency = 4, [case[1]] = case[2]() })
      assert.truthy(summary, msg)
      assert.equal(SHARDS * LINES, summary.succeeded)
      assert.is_true(summary.complete)
      assert.same({}, of_type(events, "quota"))
      assert.equal(SHARDS, (creates()))
      assert.is_true(most <= case[3], ("%d batches active at once, more than %d"):format(most, case[3]))
      assert.is_true(most >= 1)
    end)
  end

  it("takes the limits as command-line flags", function()
    local results = dir .. "/cli.jsonl"
    local code, out, err = cli.run(dir, { "job", "run", path, "-o", results, "--shard-lines", tostring(LINES),
      "--interval", "0.1", "--max-active-batches", "1" }, { MOONBATCH_BASE_URL = s.urls.openai,
      MOONBATCH_PROVIDER = "openai", MOONBATCH_API_KEY = KEY }, LUA)
    assert.equal(0, code, err)
    assert.matches("succeeded: " .. SHARDS * LINES, out, 1, true)
    assert.equal(SHARDS, (creates()))
    assert.is_nil(err:find("quota", 1, true))
    local _
    code, _, err = cli.run(dir, { "job", "run", path, "-o", results, "--max-enqueued-tokens", "many" },
      { MOONBATCH_BASE_URL = s.urls.openai, MOONBATCH_PROVIDER = "openai", MOONBATCH_API_KEY = KEY }, LUA)
    assert.equal(2, code)
    assert.matches("--max-enqueued-tokens needs a whole number", err, 1, true)
  end)
end)
