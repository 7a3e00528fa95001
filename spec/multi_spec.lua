-- spec/multi_spec.lua: moonbatch.core.multi, many transfers on one connection pool.
local core = require("moonbatch.core")
local fixture = require("spec.support.fixture")

local KEY = "sk-standin"

describe("moonbatch.core.multi", function()
  local s, input

  -- run the multi until every transfer ended; the collected entries in order of ending
  local function drain(m)
    local ended = {}
    while m:count() > 0 do
      m:perform()
      for _, e in ipairs(m:info()) do ended[#ended + 1] = e end
      if m:count() > 0 then m:wait(1) end
    end
    return ended
  end

  local function upload_request(extra)
    local req = { url = s.urls.siliconflow .. "/files", method = "POST",
                  headers = { Authorization = "Bearer " .. KEY },
                  form = { { name = "purpose", value = "batch" }, { name = "file", file = input, filename = "a.jsonl" } } }
    for k, v in pairs(extra or {}) do req[k] = v end
    return req
  end

  fixture.standin({ key = KEY, input = ('{"custom_id":"x","body":{}}\n'):rep(2000) },
    function(new_s, _, new_input) s, input = new_s, new_input end)

  it("runs transfers at once and reports each with the results of a single request", function()
    s:fault("POST", "/siliconflow/v1/files", { { delay = 0.3, count = 4 } })
    local m = core.multi()
    local handles = {}
    for i = 1, 4 do handles[m:add(upload_request())] = i end
    assert.equal(4, m:count())
    local ended = drain(m)
    assert.equal(4, #ended)
    for _, e in ipairs(ended) do
      assert.truthy(handles[e.handle])
      assert.equal(2, e.n)
      assert.equal(200, e[2].status)
      assert.equal(2000 * 28, e[1].data.bytes)
    end
    local connections = {}
    for _, entry in ipairs(s:log()) do connections[entry.connection] = true end
    local distinct = 0
    for _ in pairs(connections) do distinct = distinct + 1 end
    assert.is_true(distinct >= 2, "the delayed uploads did not overlap")
    m:close()
  end)

  it("reuses the pool's connections for transfers one after another", function()
    local m = core.multi()
    for _ = 1, 5 do
      m:add({ url = s.urls.siliconflow .. "/files?purpose=batch", headers = { Authorization = "Bearer " .. KEY } })
      drain(m)
    end
    local log = s:log()
    for _, e in ipairs(log) do assert.equal(log[1].connection, e.connection) end
    m:close()
  end)

  it("refuses an unreadable file at add, sending nothing", function()
    local m = core.multi()
    local h, msg, info = m:add({ url = s.urls.siliconflow .. "/files", form = { { name = "file", file = "/no/such" } } })
    assert.is_nil(h)
    assert.truthy(msg:find("/no/such", 1, true))
    assert.equal("io", info.kind)
    assert.equal(0, m:count())
    m:close()
    assert.equal(0, #s:log())
  end)

  it("reports transfer failures as nil, msg, info", function()
    local m = core.multi()
    m:add({ url = "http://127.0.0.1:1/v1/files" })
    s:fault("GET", "/siliconflow/v1/files", { { hang = 3 } })
    m:add({ url = s.urls.siliconflow .. "/files", timeout = 0.3, headers = { Authorization = "Bearer " .. KEY } })
    local kinds = {}
    for _, e in ipairs(drain(m)) do
      assert.equal(3, e.n)
      assert.is_nil(e[1])
      kinds[e[3].kind] = true
    end
    assert.same({ network = true, timeout = true }, kinds)
    m:close()
  end)

  it("calls on_progress and hands its error back for the transfer alone", function()
    local m = core.multi()
    local calls = 0
    local good = m:add(upload_request({ on_progress = function() calls = calls + 1 end }))
    local bad = m:add(upload_request({ on_progress = function() error("stop this one") end }))
    local by = {}
    for _, e in ipairs(drain(m)) do by[e.handle] = e end
    assert.is_true(calls > 0)
    assert.equal(200, by[good][2].status)
    assert.truthy(tostring(by[bad].raised):find("stop this one", 1, true))
    m:close()
  end)

  it("removes a transfer in flight, and closes with transfers running", function()
    s:fault("GET", "/siliconflow/v1/files", { { delay = 2, count = 2 } })
    local m = core.multi()
    local req = { url = s.urls.siliconflow .. "/files", headers = { Authorization = "Bearer " .. KEY } }
    local h1 = m:add(req)
    m:add(req)
    m:perform()
    m:remove(h1)
    m:remove(h1)
    assert.equal(1, m:count())
    m:close()
    m:close()
    assert.has_error(function() m:perform() end, "moonbatch.core: the multi is closed")
  end)

  it("raises on misuse", function()
    local m = core.multi()
    assert.has_error(function() m:add("http://x") end)
    assert.has_error(function() m:add({ url = "http://x", bogus = 1 }) end, "moonbatch.core: unknown option 'bogus'")
    assert.equal(0, m:count())
    m:close()
  end)
end)
