-- spec/upload_integrity_spec.lua: files.upload sends one file as it was when the call began, or
-- fails. A file that shrinks, grows or is rewritten while it is sent, or is replaced or changed
-- between two attempts, fails the call at once with kind "io", not retried, and the server
-- stores nothing: never a mix of two files reported as a success (issue 13, item 8). Against the
-- stand-in over real sockets; the file is changed from on_progress (mid-transfer, for certain)
-- or from the client's sleep seam (between attempts).
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local fixture = require("spec.support.fixture")

local KEY = "sk-standin"
local LINES, WIDTH = 4000, 4000 -- 16 MB (under SiliconFlow's 5,000-line cap): far more than libcurl reads before its first progress

describe("files.upload of a file that changes", function()
  local s, dir, waits

  local function client(opts)
    waits = {}
    return fixture.client({ base_url = s.urls.siliconflow, api_key = KEY, max_retries = 2, timeout = 20 }, opts,
      waits)
  end

  -- a batch file of `lines` valid lines of WIDTH bytes (the first `first` of them marked)
  local function content_of(lines, mark)
    local out = {}
    for i = 1, lines do
      local head = ('{"custom_id":"%s-%d","body":{"model":"m","messages":[{"role":"user","content":"')
        :format(mark or "r", i)
      out[i] = head .. ("x"):rep(WIDTH - #head - 6) .. '"}]}}'
    end
    return table.concat(out, "\n") .. "\n"
  end

  local function write(path, text, mode)
    local f = assert(io.open(path, mode or "wb"))
    assert(f:write(text))
    assert(f:close())
  end

  local function uploads() return fixture.requests(s, "/siliconflow/v1/files", "POST") end

  local function stored()
    local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY })
    return #assert(c.files.list()).data
  end

  -- the call failed at once, as an "io" error of the file, after `attempts` attempts
  local function assert_io(path, attempts, pattern, file, msg, info, seconds)
    assert.is_nil(file, "a changed file was reported as uploaded")
    assert.is_string(msg)
    assert.equal("io", info.kind, msg)
    assert.equal(attempts, info.attempts, msg)
    assert.is_false(info.retryable)
    assert.matches(pattern, msg, nil, true)
    assert.truthy(msg:find(path, 1, true), msg)
    assert.is_nil(msg:find(KEY, 1, true))
    assert.is_true(seconds < 10, ("took %.1fs: waited for bytes that never came"):format(seconds))
    assert.equal(0, stored(), "the server kept a file")
  end

  local timed = fixture.timed

  fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)

  -- on_progress changes the file once, at its first call (on_progress runs at most every 50 ms
  -- but reports the first numbers at once): the file is open, its last bytes not read yet
  local function changing(path, change)
    local done_once = false
    return function(done, total)
      if not done_once and done < total then
        done_once = true
        change(path)
      end
    end
  end

  local CHANGES = {
    { "shrinks to half", function(path) write(path, content_of(LINES / 2)) end },
    { "is emptied", function(path) write(path, "") end },
    { "grows", function(path) write(path, content_of(100, "more"), "ab") end },
    { "is rewritten in place at the same size", function(path)
      local until_ = core.now() + 0.02 -- past the clock's tick: a new modification time
      while core.now() < until_ do end
      local f = assert(io.open(path, "r+b"))
      assert(f:write(content_of(10, "other")))
      assert(f:close())
    end },
  }

  for _, validate in ipairs({ false, true }) do
    for _, case in ipairs(CHANGES) do
      it(("fails at once when the file %s during the upload (validate = %s)"):format(case[1], tostring(validate)), function()
        local path = dir .. "/changing.jsonl"
        local content = content_of(LINES)
        write(path, content)
        local file, msg, info, seconds = timed(function()
          return client().files.upload({ file = path, validate = validate,
                                         on_progress = changing(path, case[2]) })
        end)
        assert_io(path, 1, "changed while it was sent", file, msg, info, seconds)
        assert.same({}, waits, "retried")
        local log = uploads()
        assert.equal(1, #log)
        assert.is_true(log[1].body_bytes < #content, "the whole body went")
      end)
    end
  end

  local BETWEEN = {
    { "replaced by another file", function(path)
      write(path .. ".new", content_of(LINES, "other"))
      assert(os.rename(path .. ".new", path))
    end },
    { "grown", function(path) write(path, content_of(10, "more"), "ab") end },
    { "truncated", function(path) write(path, content_of(10)) end },
  }

  for _, validate in ipairs({ false, true }) do
    for _, case in ipairs(BETWEEN) do
      it(("fails on the next attempt when the file is %s between attempts (validate = %s)"):format(case[1], tostring(validate)), function()
        local path = dir .. "/swapped.jsonl"
        write(path, content_of(LINES))
        s:fault("POST", "/siliconflow/v1/files", { { reset_after = 1000000 } })
        local c = client()
        c.sleep = function(seconds)
          waits[#waits + 1] = seconds
          case[2](path)
        end
        local file, msg, info, seconds = timed(function()
          return c.files.upload({ file = path, validate = validate })
        end)
        assert_io(path, 2, "changed since the upload started", file, msg, info, seconds)
        assert.same({ 0.5 }, waits)
        assert.equal(1, #uploads(), "the second attempt sent something")
      end)
    end
  end

  it("an unchanged file is still retried and uploaded whole", function()
    local path = dir .. "/steady.jsonl"
    local content = content_of(LINES)
    write(path, content)
    s:fault("POST", "/siliconflow/v1/files", { { reset_after = 1000000 } })
    local file = assert(client().files.upload({ file = path, validate = false }))
    assert.equal(#content, file.bytes)
    assert.equal(content, s:file_content(file.id))
    assert.same({ 0.5 }, waits)
  end)

  it("a file that is gone when the call starts fails before any attempt", function()
    local file, msg, info = client().files.upload({ file = dir .. "/missing.jsonl", validate = false })
    assert.is_nil(file)
    assert.equal("io", info.kind)
    assert.equal(0, info.attempts)
    assert.matches("cannot read", msg, nil, true)
  end)
end)
