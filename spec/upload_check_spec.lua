-- spec/upload_check_spec.lua: files.upload checks the file as it sends it (one pass over the
-- file: core's form part option `validate`), against the stand-in over real sockets. A bad line
-- stops the upload before its body is complete, so the server stores nothing, and the call
-- fails as moonbatch.validate does, every problem listed.
local core = require("moonbatch.core")
local fixture = require("spec.support.fixture")

local KEY = "sk-standin"
local LINES, HALF, WIDTH = 2000, 1000, 1000 -- 2 MB: far more than the 256 KiB checked before the request

local function tmpname(suffix)
  local p = os.tmpname()
  os.remove(p)
  return p .. (suffix or "")
end

-- a batch file of LINES lines of WIDTH bytes; bad[n] replaces line n
local function batch_file(bad)
  local lines = {}
  for i = 1, LINES do
    local line = bad and bad[i]
    if not line then
      local head = ('{"custom_id":"r-%d","body":{"model":"m","messages":[{"role":"user","content":"'):format(i)
      line = head .. ("x"):rep(WIDTH - #head - 6) .. '"}]}}'
    end
    lines[i] = line
  end
  local content = table.concat(lines, "\n") .. "\n"
  local path = tmpname(".jsonl")
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path, content
end

describe("files.upload checks the file as it sends it", function()
  local s, waits

  local function client(opts)
    waits = {}
    return fixture.client({ base_url = s.urls.siliconflow, api_key = KEY }, opts, waits)
  end

  -- the uploads the stand-in received, and the files it keeps
  local function uploads() return fixture.requests(s, "/siliconflow/v1/files", "POST") end
  local function stored()
    return #assert(client().files.list()).data
  end

  fixture.standin({ key = KEY }, function(new_s) s = new_s end)

  it("stops at a bad line near the end: the validation error, and the server keeps nothing", function()
    local path, content = batch_file({ [LINES] = '{"custom_id":"r-last"}' })
    local file, msg, info = client().files.upload({ file = path })
    assert.is_nil(file)
    assert.equal("validation", info.kind)
    assert.equal(0, info.attempts)
    assert.equal(("moonbatch: siliconflow POST /files: line %d: body is missing"):format(LINES), msg)
    assert.same({ { line = LINES, rule = "body", message = ("line %d: body is missing"):format(LINES) } },
                info.problems)
    assert.same({ lines = LINES, bytes = #content, models = { "m" } }, info.report)
    -- the request went out, its body cut short before the bad line
    local sent = uploads()
    assert.equal(1, #sent)
    assert.not_equal(200, sent[1].status)
    assert.is_true(sent[1].body_bytes < #content - WIDTH, "the bad line was sent")
    assert.equal(0, stored())
    os.remove(path)
  end)

  it("lists every problem, those after the point where it stopped too", function()
    local path = batch_file({ [HALF] = '{"custom_id":"r-1","body":{"model":"m","messages":[1]}}',
                              [LINES] = "not json" })
    local file, msg, info = client().files.upload({ file = path })
    assert.is_nil(file)
    assert.equal("validation", info.kind)
    local seen = {}
    for _, p in ipairs(info.problems) do seen[#seen + 1] = p.rule .. "@" .. p.line end
    assert.same({ "custom_id_unique@" .. HALF, "json@" .. LINES }, seen)
    assert.matches("^moonbatch: siliconflow POST /files: line 1000: custom_id \"r%-1\" already used on line 1; "
      .. "line 2000: invalid JSON", msg)
    assert.equal(0, stored())
    os.remove(path)
  end)

  it("sends nothing when the problem is in the first bytes", function()
    local path = batch_file({ [2] = '{"custom_id":"r-2","body":{"messages":[]}}' })
    local file, _, info = client().files.upload({ file = path })
    assert.is_nil(file)
    assert.equal("validation", info.kind)
    assert.equal(2, #info.problems) -- messages empty, model missing
    assert.equal(0, #s:log())
    os.remove(path)
  end)

  it("uploads the same file whole when told not to check it", function()
    local path, content = batch_file({ [LINES] = '{"custom_id":"r-last"}' })
    local file = assert(client().files.upload({ file = path, validate = false }))
    assert.equal(content, s:file_content(file.id))
    os.remove(path)
  end)

  it("uploads a good file whole, checked on the way (core: res.validation)", function()
    local path, content = batch_file()
    local body, res = core.request({
      url = s.urls.siliconflow .. "/files", method = "POST", headers = { Authorization = "Bearer " .. KEY },
      form = { { name = "purpose", value = "batch" },
               { name = "file", file = path, validate = { max_lines = 5000 } } },
    })
    assert.equal(200, res.status, tostring(body))
    assert.is_true(res.validation.ok)
    assert.equal(LINES, res.validation.lines)
    assert.equal(#content, res.validation.bytes)
    assert.equal(content, s:file_content(body.data.id))
    assert.equal(path:match("[^/]*$"), uploads()[1].fields.file.filename)
    os.remove(path)
  end)

  it("sends nothing for a file over the byte limit (core: kind 'validation', the report)", function()
    local path = batch_file()
    local body, msg, info = core.request({
      url = s.urls.siliconflow .. "/files", method = "POST", headers = { Authorization = "Bearer " .. KEY },
      form = { { name = "file", file = path, validate = { max_bytes = 100000 } } },
    })
    assert.is_nil(body)
    assert.equal("the file does not pass validation", msg)
    assert.equal("validation", info.kind)
    assert.is_false(info.report.ok)
    assert.equal("max_bytes", info.report.problems[1].rule)
    assert.equal(LINES, info.report.lines) -- scanned to its end all the same
    assert.equal(0, #s:log())
    os.remove(path)
  end)

  it("starts the check again from the first byte when a reset makes it send the file again", function()
    -- were the scan not restarted, the second pass would find every custom_id used already
    local path, content = batch_file()
    s:fault("POST", "/siliconflow/v1/files", { { reset_after = 1000000 } })
    local file = assert(client().files.upload({ file = path }))
    assert.equal(2, #uploads())
    assert.same({ 0.5 }, waits)
    assert.equal(content, s:file_content(file.id))
    os.remove(path)
  end)

  it("checks each file of upload_many on its own: a bad one fails alone", function()
    local good, content = batch_file()
    local bad = batch_file({ [LINES] = "{}" })
    local results = client().files.upload_many({ { file = bad }, { file = good } }, { concurrency = 2 })
    assert.is_nil(results[1].file)
    assert.equal("validation", results[1].info.kind)
    assert.matches("^moonbatch: siliconflow POST /files: line 2000: custom_id is missing", results[1].error)
    assert.equal(content, s:file_content(results[2].file.id))
    assert.equal(1, stored())
    os.remove(good)
    os.remove(bad)
  end)
end)
