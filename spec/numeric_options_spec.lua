-- spec/numeric_options_spec.lua: every numeric option and argument refuses NaN, the infinities
-- and values out of its range with a clear error naming it, before any request: in the Lua layer
-- (moonbatch.new, batches.wait, the list limits, upload_many, concurrently, the job options) and
-- in moonbatch.core (C: checked before any cast to long or size_t).
local moonbatch = require("moonbatch")
local core = require("moonbatch.core")
local scheduler = require("moonbatch.scheduler")
local standin = require("spec.standin_helper")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")

local KEY = "sk-numeric-spec"
local NAN, INF = 0 / 0, math.huge

-- the values every option is tried with; `integer` options also get 1.5
local BAD = {
  { "NaN", NAN }, { "inf", INF }, { "-inf", -INF }, { "negative", -1 }, { "huge", 1e300 },
  { "-0.5", -0.5 },
}

-- option rules: zero = whether 0 is accepted; integer = whether a fraction is refused; max =
-- the largest value accepted (one above it, or its double, is refused)
local NEW_OPTIONS = {
  timeout = { zero = false, integer = false, good = 30, max = 2e6 },
  connect_timeout = { zero = false, integer = false, good = 5, max = 2e6 },
  deadline = { zero = false, integer = false, good = 60, max = 1e7 },
  max_retries = { zero = true, integer = true, good = 3, max = 100 },
  max_reply_bytes = { zero = false, integer = true, good = 1048576, max = 2 ^ 53 },
  low_speed_limit = { zero = false, integer = true, good = 100, max = 2 ^ 31 - 1 },
  low_speed_time = { zero = false, integer = true, good = 10, max = 1e7 },
}

-- every case of one option: {label, value, should_pass}
local function cases(rule)
  local list = {}
  for _, b in ipairs(BAD) do list[#list + 1] = { b[1], b[2], false } end
  list[#list + 1] = { "0", 0, rule.zero }
  if rule.integer then list[#list + 1] = { "fractional 1.5", 1.5, false } end
  list[#list + 1] = { "a string", "1", false }
  if rule.good then list[#list + 1] = { "good " .. rule.good, rule.good, true } end
  if rule.max then
    list[#list + 1] = { "its maximum", rule.max, true }
    list[#list + 1] = { "above its maximum", rule.max * 2, false }
  end
  return list
end

-- `fn(value)` raises naming `who` and `name`, or passes, as the case says
local function check(who, name, case, fn)
  local ok, err = pcall(fn, case[2])
  if case[3] then
    assert.is_true(ok, ("%s %s = %s: %s"):format(who, name, case[1], tostring(err)))
  else
    assert.is_false(ok, ("%s %s = %s was accepted"):format(who, name, case[1]))
    err = tostring(err)
    assert.truthy(err:find(who, 1, true), err)
    assert.truthy(err:find("bad option '" .. name .. "'", 1, true), err)
    assert.is_nil(err:find("bad argument #1 to 'format'", 1, true), err)
  end
end

describe("numeric options", function()
  local s, c, input
  setup(function()
    s = standin.start({ key = KEY })
    c = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY, max_retries = 0 })
    input = os.tmpname()
    local f = assert(io.open(input, "w"))
    f:write('{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n')
    f:close()
  end)
  teardown(function()
    if s then s:stop() end
    os.remove(input)
  end)

  describe("moonbatch.new", function()
    for name, rule in pairs(NEW_OPTIONS) do
      for _, case in ipairs(cases(rule)) do
        it(("%s = %s"):format(name, case[1]), function()
          check("moonbatch.new", name, case, function(v)
            moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY, [name] = v })
          end)
        end)
      end
    end

    it("the issue's three: timeout = 0, deadline = NaN, max_reply_bytes = math.huge", function()
      assert.has_error(function() moonbatch.new({ timeout = 0 }) end,
        "moonbatch.new: bad option 'timeout' (a finite number > 0 and <= 2000000 expected, got 0)")
      assert.has_error(function() moonbatch.new({ deadline = NAN }) end,
        "moonbatch.new: bad option 'deadline' (a finite number > 0 and <= 10000000 expected, got NaN)")
      assert.has_error(function() moonbatch.new({ max_reply_bytes = INF }) end,
        "moonbatch.new: bad option 'max_reply_bytes' (an integer from 1 to 9007199254740992 expected, got inf)")
    end)

    it("a client made with the largest values still works (no overflow in the C casts)", function()
      local big = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY,
        timeout = 2e6, connect_timeout = 2e6, deadline = 1e7, max_retries = 100,
        max_reply_bytes = 2 ^ 53, low_speed_limit = 1, low_speed_time = 1e7 })
      local page, msg = big.files.list()
      assert.truthy(page, msg)
    end)
  end)

  describe("client calls", function()
    local function wait(name)
      return function(v) return c.batches.wait("batch_none", { [name] = v }) end
    end
    local calls = {
      { "batches.wait", "interval", { zero = false, good = 0.5, max = 1e7 }, wait("interval") },
      { "batches.wait", "max_interval", { zero = false, good = 5, max = 1e7 }, wait("max_interval") },
      { "batches.wait", "timeout", { zero = true, max = 1e7 }, wait("timeout") },
      { "files.list", "limit", { zero = false, integer = true, good = 5, max = 1e6 },
        function(v) return c.files.list({ limit = v }) end },
      { "files.each", "limit", { zero = false, integer = true, max = 1e6 },
        function(v) return c.files.each({ limit = v }) end },
      { "batches.list", "limit", { zero = false, integer = true, good = 5, max = 1e6 },
        function(v) return c.batches.list({ limit = v }) end },
      { "batches.each", "limit", { zero = false, integer = true, max = 1e6 },
        function(v) return c.batches.each({ limit = v }) end },
      { "files.upload_many", "concurrency", { zero = false, integer = true, good = 2, max = 1024 },
        function(v) return c.files.upload_many({}, { concurrency = v }) end },
      { "moonbatch.concurrently", "concurrency", { zero = false, integer = true, good = 2, max = 1024 },
        function(v) return moonbatch.concurrently({ function() return 1 end }, { concurrency = v }) end },
      { "scheduler.new", "concurrency", { zero = true, integer = true, good = 4 },
        function(v) scheduler.new({ concurrency = v }):close() end },
    }
    for _, call in ipairs(calls) do
      for _, case in ipairs(cases(call[3])) do
        -- a wait that passes its checks polls a batch that does not exist: a failure, not a raise
        it(("%s %s = %s"):format(call[1], call[2], case[1]), function()
          check(call[1], call[2], case, call[4])
        end)
      end
    end

    it("batches.wait with interval = NaN no longer polls for ever", function()
      assert.has_error(function() c.batches.wait("b", { interval = NAN }) end,
        "batches.wait: bad option 'interval' (a finite number > 0 and <= 10000000 expected, got NaN)")
    end)
  end)

  describe("job options", function()
    local job_options = {
      concurrency = { zero = false, integer = true, max = 1024 },
      max_lines = { zero = false, integer = true },
      max_bytes = { zero = false, integer = true },
      interval = { zero = false },
      max_interval = { zero = false },
    }
    for name, rule in pairs(job_options) do
      for _, case in ipairs(cases(rule)) do
        if not case[3] then
          it(("job.run %s = %s"):format(name, case[1]), function()
            local results = os.tmpname()
            check("job.run", name, case, function(v)
              moonbatch.job.run(c, { input = input, results = results, [name] = v })
            end)
            os.remove(results)
          end)
          if name ~= "max_lines" and name ~= "max_bytes" then
            it(("job.retry_failed %s = %s"):format(name, case[1]), function()
              check("job.retry_failed", name, case, function(v)
                moonbatch.job.retry_failed(c, { from = "x.jsonl", results = "y.jsonl", [name] = v })
              end)
            end)
          end
        end
      end
    end
  end)

  describe("the command line's numeric flags", function()
    local dir
    setup(function() dir = shell.trim(shell.capture("mktemp -d")) end)
    teardown(function() os.execute("rm -rf " .. shell.quote(dir)) end)
    local flags = {
      { { "files" }, "limit", true, "1000001" }, { { "batches" }, "limit", true, "1000001" },
      { { "wait", "b" }, "interval", false, "2e7" }, { { "wait", "b" }, "timeout", false, "2e7" },
      { { "job", "run", "in.jsonl", "-o", "out.jsonl" }, "concurrency", true, "1025" },
      { { "job", "run", "in.jsonl", "-o", "out.jsonl" }, "shard-lines", true, "1e300" },
      { { "job", "run", "in.jsonl", "-o", "out.jsonl" }, "shard-bytes", true, "inf" },
      { { "job", "run", "in.jsonl", "-o", "out.jsonl" }, "interval", false, "1e999" },
    }
    for _, f in ipairs(flags) do
      local values = { "nan", "inf", "-inf", "1e999", "0", "-1", "abc", f[4] }
      if f[3] then values[#values + 1] = "1.5" end
      it(("%s --%s"):format(table.concat(f[1], " "), f[2]), function()
        for _, v in ipairs(values) do
          local words = { "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1" }
          for _, w in ipairs(f[1]) do words[#words + 1] = w end
          words[#words + 1] = "--" .. f[2]
          words[#words + 1] = v
          local code, _, err = cli.run(dir, words, { OPENAI_API_KEY = KEY })
          assert.equal(2, code, v .. ": " .. err)
          assert.truthy(err:find("option --" .. f[2] .. " needs", 1, true), v .. ": " .. err)
        end
      end)
    end
  end)

  describe("moonbatch.core (C)", function()
    local C_OPTIONS = {
      timeout = 2147483, connect_timeout = 2147483, low_speed_limit = 2147483647,
      low_speed_time = 2147483646, max_reply_bytes = 2 ^ 53,
    }
    for name, max in pairs(C_OPTIONS) do
      for _, b in ipairs({ { "NaN", NAN }, { "inf", INF }, { "-inf", -INF }, { "negative", -1 },
                           { "huge", 1e300 }, { "above its maximum", max * 2 } }) do
        it(("core.request %s = %s"):format(name, b[1]), function()
          local ok, err = pcall(core.request, { url = s.urls.openai .. "/files", [name] = b[2] })
          assert.is_false(ok)
          assert.truthy(tostring(err):find("moonbatch.core: bad option '" .. name .. "'", 1, true), err)
        end)
        it(("multi:add %s = %s"):format(name, b[1]), function()
          local m = core.multi()
          local ok, err = pcall(m.add, m, { url = s.urls.openai .. "/files", [name] = b[2] })
          m:close()
          assert.is_false(ok)
          assert.truthy(tostring(err):find("moonbatch.core: bad option '" .. name .. "'", 1, true), err)
        end)
      end
      it(("core.request %s at its maximum"):format(name), function()
        local body, res = core.request({ url = s.urls.openai .. "/files",
          headers = { Authorization = "Bearer " .. KEY }, [name] = max })
        assert.truthy(body, res)
      end)
    end

    it("files.list's limit", function()
      for _, v in ipairs({ NAN, INF, -INF, 0, -1, 1.5, 1e300 }) do
        local ok, err = pcall(core.files.list, { base_url = s.urls.openai, api_key = KEY, limit = v })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("bad option 'limit'", 1, true), err)
      end
    end)

    it("core.validate's counts: NaN, -inf, negative and fractions refused; math.huge is no limit", function()
      for _, name in ipairs({ "max_lines", "max_bytes", "max_custom_id" }) do
        for _, v in ipairs({ NAN, -INF, -1, 1.5 }) do
          local ok, err = pcall(core.validate, input, { [name] = v })
          assert.is_false(ok)
          assert.truthy(tostring(err):find("bad option '" .. name .. "'", 1, true), err)
        end
        assert.truthy(core.validate(input, { [name] = INF }))
      end
    end)

    it("m:wait(NaN) and core.sleep(NaN) return at once", function()
      local m = core.multi()
      assert.equal(0, m:wait(NAN))
      m:close()
      local t = core.now()
      core.sleep(NAN)
      assert.is_true(core.now() - t < 0.5)
    end)
  end)
end)
