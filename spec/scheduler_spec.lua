-- spec/scheduler_spec.lua: concurrent operations (moonbatch.concurrently, files.upload_many)
-- behave like one-at-a-time calls: same results, retries, progress and errors.
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")

local KEY = "sk-standin"

describe("concurrent operations", function()
  local s, dir, files

  local function client(opts)
    local o = { base_url = s.urls.siliconflow, api_key = KEY }
    for k, v in pairs(opts or {}) do o[k] = v end
    return moonbatch.new(o)
  end

  setup(function()
    s = standin.start({ key = KEY })
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    files = {}
    for i = 1, 6 do
      files[i] = ("%s/part-%d.jsonl"):format(dir, i)
      local f = assert(io.open(files[i], "wb"))
      for n = 1, i * 10 do
        f:write(('{"custom_id":"%d-%d","body":{"model":"m","messages":[{"role":"user","content":"x"}]}}\n'):format(i, n))
      end
      f:close()
    end
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
    if s then s:stop() end
  end)

  before_each(function() s:reset() end)

  it("uploads many files at once, results in order", function()
    s:fault("POST", "/siliconflow/v1/files", { { delay = 0.3, count = 6 } })
    local list = {}
    for i, f in ipairs(files) do list[i] = { file = f } end
    local results = client().files.upload_many(list, { concurrency = 6 })
    assert.equal(6, #results)
    for i, r in ipairs(results) do
      assert.equal("file", r.file.object)
      assert.equal(("part-%d.jsonl"):format(i), r.file.filename)
      local f = io.open(files[i], "rb")
      assert.equal(f:seek("end"), r.file.bytes)
      f:close()
    end
    local connections, n = {}, 0
    for _, e in ipairs(s:log()) do
      if not connections[e.connection] then n = n + 1 end
      connections[e.connection] = true
    end
    assert.is_true(n >= 2, "the uploads did not overlap")
  end)

  it("retries inside a task as a single call does, with one idempotency key per upload", function()
    s:fault("POST", "/siliconflow/v1/files",
      { { status = 503, retry_after_ms = "100" }, { status = 429, retry_after_ms = "50" } })
    local results = client().files.upload_many({ { file = files[1] }, { file = files[2] }, { file = files[3] } },
      { concurrency = 3 })
    for _, r in ipairs(results) do assert.equal("file", r.file.object) end
    local log = s:log()
    assert.equal(5, #log)
    local per_key = {}
    for _, e in ipairs(log) do
      local k = e.headers["idempotency-key"]
      per_key[k] = (per_key[k] or 0) + 1
    end
    local keys, attempts = 0, 0
    for _, count in pairs(per_key) do keys = keys + 1; attempts = attempts + count end
    assert.equal(3, keys)
    assert.equal(5, attempts)
  end)

  it("returns each failure in its place, the others unharmed", function()
    s:fault("POST", "/siliconflow/v1/files", { { status = 400, body = '{"code":20012,"message":"no","data":null}',
      content_type = "application/json" } })
    local results = client().files.upload_many({ { file = files[1] }, { file = "/no/such.jsonl" } }, { concurrency = 1 })
    assert.is_nil(results[1].file)
    assert.equal("api", results[1].info.kind)
    assert.matches("^moonbatch: siliconflow POST /files: HTTP 400: no", results[1].error)
    assert.equal("io", results[2].info.kind)
  end)

  it("times out an attempt that never answers, with every attempt counted", function()
    s:fault("GET", "/siliconflow/v1/files", { { hang = 5, count = 2 } })
    local c = client({ timeout = 0.3, max_retries = 1 })
    local r = moonbatch.concurrently({ function() return c.files.list() end })
    assert.is_nil(r[1][1])
    assert.equal("timeout", r[1][3].kind)
    assert.equal(2, r[1][3].attempts)
  end)

  it("reports progress per upload", function()
    local seen = {}
    local list = {}
    for i = 1, 3 do
      list[i] = { file = files[i], on_progress = function(done, total) seen[i] = { done, total } end }
    end
    client().files.upload_many(list)
    for i = 1, 3 do assert.is_true(seen[i][1] > 0 and seen[i][1] == seen[i][2]) end
  end)

  it("runs any mix of operations, waits included, and returns each one's results", function()
    s:config({ step_seconds = 0.2 })
    local c = client()
    local file = assert(c.files.upload({ file = files[1] }))
    local fns = {}
    for i = 1, 3 do
      fns[i] = function()
        local b = assert(c.batches.create({ input_file_id = file.id }))
        return c.batches.wait(b.id, { interval = 0.1 })
      end
    end
    fns[4] = function() return c.files.list() end
    local results = moonbatch.concurrently(fns, { concurrency = 4 })
    for i = 1, 3 do assert.equal("completed", results[i][1].status) end
    assert.equal("list", results[4][1].object)
  end)

  it("raises the error a task raised", function()
    assert.has_error(function()
      moonbatch.concurrently({ function() error("task broke") end })
    end, "task broke")
  end)

  it("nests: inside a task, concurrently runs child tasks on the same loop and waits for them", function()
    s:fault("POST", "/siliconflow/v1/files", { { delay = 0.3, count = 4 } })
    local c = client()
    local t0 = require("moonbatch.core").now()
    local r = moonbatch.concurrently({ function()
      local list = {}
      for i = 1, 4 do list[i] = { file = files[i] } end
      return c.files.upload_many(list, { concurrency = 4 })
    end }, { concurrency = 1 })
    local elapsed = require("moonbatch.core").now() - t0
    for i = 1, 4 do assert.equal(("part-%d.jsonl"):format(i), r[1][1][i].file.filename) end
    assert.is_true(elapsed < 1.1, ("four 0.3 s uploads took %.2fs: they did not overlap"):format(elapsed))
    -- a child's error reaches the parent as a raise
    local ok, err = moonbatch.concurrently({ function()
      return pcall(moonbatch.concurrently, { function() error("child broke") end, function() return 1 end })
    end })[1][1], nil
    assert.is_false(ok)
    assert.is_nil(err)
  end)

  it("checks its arguments", function()
    local c = client()
    assert.has_error(function() c.files.upload_many("x") end)
    assert.has_error(function() c.files.upload_many({ { nofile = 1 } }) end)
    assert.has_error(function() c.files.upload_many({}, { concurrency = "8" }) end)
  end)
end)
