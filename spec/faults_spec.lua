-- spec/faults_spec.lua: the fault suite. Every way a provider, a proxy or the network fails,
-- made by the stand-in over real sockets on loopback (or by a closed port, or a name that cannot
-- resolve), and the exact outcome the client gives for it: the value, or nil, msg and info with
-- its kind, status, attempt count and retry fields, and time bounds where time is the point.
--
-- Sleep is injected where waiting would only slow the suite: the waits are recorded, not spent.
local cjson = require("cjson")
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")
local fixture = require("spec.support.fixture")
local shell = require("spec.support.shell")

local KEY = "sk-standin"

-- The fields of info that every case states, expected or nil.
local INFO_FIELDS = { "kind", "status", "attempts", "retryable", "retry_after", "code", "type",
                      "param", "message", "curl_code" }

-- expected: a string (equal) or { match = pattern }
local function check(expected, got, what)
  if type(expected) == "table" then
    assert.is_string(got, what)
    assert.matches(expected.match, got, nil, false, what)
  else
    assert.equal(expected, got, what)
  end
end

-- Asserts a failed call: nil, msg, info, with msg and every field of INFO_FIELDS as expected
-- (a field left out of expected must be nil; one named in `unchecked` is not looked at).
local function assert_fails(expected, value, msg, info, unchecked)
  assert.is_nil(value, "expected the call to fail")
  check(expected.msg, msg, "msg")
  assert.is_nil(msg:find("\n", 1, true), "msg is one line")
  for _, k in ipairs(INFO_FIELDS) do
    local want = expected[k]
    if k == "retryable" and want == nil then want = false end
    if not (unchecked and unchecked[k]) then check(want, info[k], "info." .. k) end
  end
  assert.is_nil(msg:find(KEY, 1, true))
end

-- A file dir/name of `lines` valid batch lines, about `size` bytes each; returns its path and bytes.
local function batch_file(dir, name, lines, size)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  for i = 1, lines do
    local head = ('{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m",'
      .. '"messages":[{"role":"user","content":"'):format(i)
    local tail = '"}]}}\n'
    f:write(head, ("x"):rep(math.max(1, size - #head - #tail)), tail)
  end
  f:close()
  return path, shell.read_file(path)
end

-- Bytes as base64, for the stand-in's body_base64 (a body that JSON cannot carry).
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local quad = {}
    for k = 1, 4 do
      local v = math.floor(n / 64 ^ (4 - k)) % 64
      quad[k] = B64:sub(v + 1, v + 1)
    end
    if not b then quad[3] = "=" end
    if not c then quad[4] = "=" end
    out[#out + 1] = table.concat(quad)
  end
  return table.concat(out)
end

-- kB of VmHWM (peak) or VmRSS of this process; 0 under valgrind, whose memory it would be.
local under_valgrind = (os.getenv("LD_PRELOAD") or ""):find("vgpreload", 1, true) ~= nil
local function memory_kb(field)
  if under_valgrind then return 0 end
  local status = shell.read_file("/proc/self/status") or ""
  return tonumber(status:match(field .. ":%s*(%d+) kB"))
end

describe("faults", function()
  local s, dir, waits

  -- A client of `provider` on the stand-in: max_retries 2, no jitter, sleeps recorded in waits.
  local function client(provider, opts)
    waits = {}
    return fixture.client({ provider = provider, base_url = s.urls[provider], api_key = KEY, max_retries = 2,
                            timeout = 20 }, opts, waits)
  end

  -- Runs fn; returns its first three results and the seconds it took.
  local timed = fixture.timed

  -- The log entries of requests to path.
  local function requests(path) return fixture.requests(s, path) end

  fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)

  describe("connection refused", function()
    it("is retried max_retries times, then nil with kind 'network', fast", function()
      -- a port that listened a moment ago: a second stand-in, stopped
      local gone = standin.start({ key = KEY })
      local url = gone.urls.openai
      gone:stop()
      local c = client("openai", { base_url = url })
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({
        msg = { match = "^moonbatch: openai GET /files: Failed to connect to 127%.0%.0%.1 port "
          .. gone.port .. " " },
        kind = "network", attempts = 3, retryable = true, curl_code = 7,
        message = { match = "^Failed to connect" },
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
      assert.equal(url .. "/files", info.url)
      assert.is_true(seconds < 5, tostring(seconds))
    end)
  end)

  describe("a name that does not resolve", function()
    it("needs allow_http for plain HTTP off this machine", function()
      assert.has_error(function()
        moonbatch.new({ provider = "openai", base_url = "http://moonbatch-faults.invalid/v1" })
      end, "moonbatch.new: bad base_url: plain HTTP to moonbatch-faults.invalid would send the API key "
        .. "and data in clear (use https, or allow_http = true)")
    end)

    it("is a connection failure: retried, then nil with kind 'network', fast", function()
      local c = client("openai", { base_url = "http://moonbatch-faults.invalid/v1", allow_http = true,
                                   connect_timeout = 3 })
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({
        msg = "moonbatch: openai GET /files: Could not resolve host: moonbatch-faults.invalid",
        kind = "network", attempts = 3, retryable = true, curl_code = 6,
        message = "Could not resolve host: moonbatch-faults.invalid",
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
      assert.is_true(seconds < 10, tostring(seconds))
    end)
  end)

  describe("a reset in the middle of an upload", function()
    local path, content

    setup(function()
      path, content = batch_file(dir, "upload.jsonl", 2000, 1000)   -- 2 MB
    end)

    teardown(function()
      os.remove(path)
    end)

    it("is retried: the file is streamed again from byte 0 and the server keeps it whole", function()
      s:fault("POST", "/openai/v1/files", { { reset_after = 1000000 } })
      local progress = {}
      local file = client("openai").files.upload({ file = path,
        on_progress = function(done, total) progress[#progress + 1] = { done, total } end })
      assert.is_table(file, "upload failed")
      assert.equal(#content, file.bytes)
      local log = requests("/openai/v1/files")
      assert.equal(2, #log)
      assert.equal(1000000, log[1].body_bytes)     -- the first attempt was cut there
      assert.equal(cjson.null, log[1].status)   -- and got no reply
      assert.equal(#content, log[2].fields.file.bytes)
      assert.equal(log[1].headers["idempotency-key"], log[2].headers["idempotency-key"])
      assert.equal(content, s:file_content(file.id))
      assert.same({ 0.5 }, waits)
      -- the second attempt counted its bytes from 0 again, up to the whole body
      local went_back = false
      for i = 2, #progress do
        if progress[i][1] < progress[i - 1][1] then went_back = true end
      end
      assert.is_true(went_back, "progress never restarted")
      local last = progress[#progress]
      assert.equal(last[2], last[1])
      assert.is_true(last[1] > #content)
    end)

    -- where the reset finds curl (sending, or waiting for the reply) decides its words
    local RESET_SAYS = { [52] = "^Empty reply from server$", [55] = "^Send failure: .+$",
                         [56] = "^Recv failure: Connection reset by peer$" }

    it("on every attempt: nil with kind 'network' after 3 attempts, and nothing stored", function()
      s:fault("POST", "/openai/v1/files", { { reset_after = 1000000, count = 3 } })
      local file, msg, info = client("openai").files.upload({ file = path })
      local says = RESET_SAYS[info and info.curl_code]
      assert.is_string(says, "curl code " .. tostring(info and info.curl_code))
      assert_fails({ msg = { match = "^moonbatch: openai POST /files: " .. says:sub(2) }, kind = "network",
                     attempts = 3, retryable = true, curl_code = info.curl_code, message = { match = says } },
                   file, msg, info, { status = true })   -- status: see the next case
      assert.same({ 0.5, 1 }, waits)
      assert.equal(3, #requests("/openai/v1/files"))
      local page = assert(client("openai").files.list())
      assert.equal(0, #page.data)
    end)

    -- after the server's "100 Continue" (an interim response) there is still no reply
    it("reports no status: the server never replied", function()
      s:fault("POST", "/openai/v1/files", { { reset_after = 1000000 } })
      local file, _, info = client("openai", { max_retries = 0 }).files.upload({ file = path })
      assert.is_nil(file)
      assert.equal("network", info.kind)
      assert.is_nil(info.status)
    end)
  end)

  describe("a reset in the middle of a download", function()
    local id, content, target, into

    before_each(function()
      local path
      path, content = batch_file(dir, "download.jsonl", 1000, 1000)   -- 1 MB
      id = assert(client("openai").files.upload({ file = path })).id
      os.remove(path)
      into = dir .. "/downloads"   -- where nothing else is
      assert.is_true(shell.execute("mkdir -p " .. shell.quote(into)))
      target = into .. "/results.jsonl"
    end)

    it("on every attempt: nil with kind 'network', nothing at the target path, no temporary file", function()
      local content_path = "/openai/v1/files/" .. id .. "/content"
      s:fault("GET", content_path, { { reset_after = 300000, count = 3 } })
      local got, msg, info = client("openai").files.download(id, target)
      assert_fails({
        msg = "moonbatch: openai GET /files/" .. id .. "/content: Recv failure: Connection reset by peer",
        kind = "network", status = 200, attempts = 3, retryable = true, curl_code = 56,
        message = "Recv failure: Connection reset by peer",
      }, got, msg, info)
      assert.equal(3, #requests(content_path))
      assert.equal("", shell.capture("ls -A " .. shell.quote(into)))
    end)

    it("on every attempt: a file already at the target path is left as it was", function()
      local content_path = "/openai/v1/files/" .. id .. "/content"
      shell.write_file(target, "the results of an earlier run\n")
      s:fault("GET", content_path, { { reset_after = 300000, count = 3 } })
      local got, _, info = client("openai").files.download(id, target)
      assert.is_nil(got)
      assert.equal("network", info.kind)
      assert.equal(3, info.attempts)
      assert.equal("the results of an earlier run\n", shell.read_file(target))
      assert.equal("results.jsonl\n", shell.capture("ls -A " .. shell.quote(into)))
      os.remove(target)
    end)

    it("once: retried, and the target holds the whole file", function()
      local content_path = "/openai/v1/files/" .. id .. "/content"
      s:fault("GET", content_path, { { reset_after = 300000 } })
      local got = client("openai").files.download(id, target)
      assert.same({ path = target, bytes = #content }, got)
      assert.equal(content, shell.read_file(target))
      assert.same({ 0.5 }, waits)
      assert.equal("results.jsonl\n", shell.capture("ls -A " .. shell.quote(into)))
      os.remove(target)
    end)
  end)

  describe("a server that accepts and never answers", function()
    local path = "/openai/v1/files"

    it("times each attempt out: nil with kind 'timeout' after max_retries + 1 attempts", function()
      s:fault("GET", path, { { hang = 30, count = 3 } })
      local c = client("openai", { timeout = 0.5 })
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({
        msg = { match = "^moonbatch: openai GET /files: Operation timed out after %d+ milliseconds with 0 bytes received$" },
        kind = "timeout", attempts = 3, retryable = true, curl_code = 28,
        message = { match = "^Operation timed out" },
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
      assert.equal(3, #requests(path))
      assert.is_true(seconds >= 1.4 and seconds < 8, tostring(seconds))
      assert.equal("list", c.files.list().object)   -- and the client carries on
    end)

    it("ends the call at the deadline, however long the attempt's timeout", function()
      s:fault("GET", path, { { hang = 30, count = 3 } })
      -- the real clock and sleep
      local c = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY,
                                timeout = 20, deadline = 1, random = function() return 0 end })
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({
        msg = { match = "^moonbatch: openai GET /files: Operation timed out after %d+ milliseconds with 0 "
          .. "bytes received %(deadline of 1s leaves no time to retry%)$" },
        kind = "timeout", attempts = 1, retryable = true, curl_code = 28,
        message = { match = "%(deadline of 1s leaves no time to retry%)$" },
      }, page, msg, info)
      assert.equal(1, #requests(path))
      assert.is_true(seconds >= 0.9 and seconds < 4, tostring(seconds))
    end)

    it("counts the waits between attempts against the deadline", function()
      s:fault("GET", path, { { hang = 30, count = 5 } })
      -- time is the real time of the attempts plus the waits, which are not spent
      local slept = 0
      local clock = function() return core.now() + slept end
      local c = client("openai", { timeout = 0.3, deadline = 3.3, max_retries = 10, clock = clock,
        sleep = function(seconds)
          waits[#waits + 1] = seconds
          slept = slept + seconds
        end })
      waits = {}
      local t0 = clock()
      local page, msg, info = c.files.list()
      local spent = clock() - t0
      -- attempts of 0.3 s, waits of 0.5 and 1 s: after the third attempt (2.4 s) a wait of 2 s
      -- would pass the deadline
      assert_fails({
        msg = { match = "%(deadline of 3%.3s leaves no time to retry%)$" },
        kind = "timeout", attempts = 3, retryable = true, curl_code = 28,
        message = { match = "^Operation timed out" },
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
      assert.is_true(spent <= 3.3, tostring(spent))
    end)
  end)

  describe("a slow drip", function()
    local path = "/openai/v1/files"

    it("is ended by the attempt's timeout: kind 'timeout', every attempt", function()
      -- the list reply (75 bytes) a byte every half second: 37 s if waited out
      s:fault("GET", path, { { drip = { bytes = 1, every = 0.5 }, count = 3 } })
      local c = client("openai", { timeout = 1 })
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({
        msg = { match = "^moonbatch: openai GET /files: Operation timed out after %d+ milliseconds with %d+ out "
          .. "of 75 bytes received$" },
        kind = "timeout", status = 200, attempts = 3, retryable = true, curl_code = 28,
        message = { match = "^Operation timed out" },
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
      assert.is_true(seconds >= 2.9 and seconds < 10, tostring(seconds))
      assert.equal("list", c.files.list().object)   -- and the client carries on
    end)

    it("is ended by the low-speed limit in moonbatch.core", function()
      s:fault("GET", path, { { drip = { bytes = 1, every = 0.5 } } })
      local body, msg, info, seconds = timed(function()
        return core.request({ url = s.urls.openai .. "/files", headers = { Authorization = "Bearer " .. KEY },
                              timeout = 30, low_speed_limit = 100, low_speed_time = 1 })
      end)
      assert.is_nil(body)
      assert.matches("^Operation too slow%. Less than 100 bytes/sec transferred the last 1 seconds$", msg)
      assert.equal("timeout", info.kind)
      assert.equal(28, info.curl_code)
      assert.is_true(seconds >= 0.9 and seconds < 6, tostring(seconds))
    end)

    it("is ended by the client's low-speed limit long before its timeout", function()
      s:fault("GET", path, { { drip = { bytes = 1, every = 0.5 }, count = 3 } })
      local c = client("openai", { timeout = 30, low_speed_limit = 100, low_speed_time = 1 })
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({
        msg = "moonbatch: openai GET /files: Operation too slow. Less than 100 bytes/sec transferred the "
          .. "last 1 seconds",
        kind = "timeout", status = 200, attempts = 3, retryable = true, curl_code = 28,
        message = "Operation too slow. Less than 100 bytes/sec transferred the last 1 seconds",
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
      assert.is_true(seconds >= 2.7 and seconds < 15, tostring(seconds))
    end)
  end)

  describe("a 200 with truncated JSON", function()
    local path = "/openai/v1/files"

    it("cut short of its Content-Length on every attempt: kind 'network', retried", function()
      s:fault("GET", path, { { truncate = 10, count = 3 } })
      local page, msg, info = client("openai").files.list()
      assert_fails({
        msg = "moonbatch: openai GET /files: transfer closed with 65 bytes remaining to read",
        kind = "network", status = 200, attempts = 3, retryable = true, curl_code = 18,
        message = "transfer closed with 65 bytes remaining to read",
      }, page, msg, info)
      assert.same({ 0.5, 1 }, waits)
    end)

    it("cut short once: the retry returns the Page", function()
      s:fault("GET", path, { { truncate = 10 } })
      local page = client("openai").files.list()
      assert.is_table(page)
      assert.equal("list", page.object)
      assert.same({ 0.5 }, waits)
      assert.equal(2, #requests(path))
    end)

    it("whole as sent (Content-Length matches): kind 'decode', not retried", function()
      s:fault("GET", path, { { status = 200, body = '{"object":"list","data":[{"id":"file-a"' } })
      local page, msg, info = client("openai").files.list()
      -- the decoder's own words for the error vary; the place it names does not
      assert_fails({
        msg = { match = "^moonbatch: openai GET /files: reply is not valid JSON %(.-[^%d]40%)$" },
        kind = "decode", status = 200, attempts = 1,
        message = { match = "^reply is not valid JSON %(" },
      }, page, msg, info)
      assert.equal('{"object":"list","data":[{"id":"file-a"', info.body)
      assert.same({}, waits)
    end)
  end)

  describe("a 200 with invalid JSON", function()
    it("is kind 'decode', not retried", function()
      s:fault("GET", "/openai/v1/files", { { status = 200, body = '{"object":"list",,"data":[]}' } })
      local page, msg, info = client("openai").files.list()
      assert_fails({
        msg = { match = "^moonbatch: openai GET /files: reply is not valid JSON %(.-[^%d]18%)$" },
        kind = "decode", status = 200, attempts = 1,
        message = { match = "^reply is not valid JSON %(" },
      }, page, msg, info)
      assert.equal(1, #requests("/openai/v1/files"))
    end)

    it("is kind 'decode' when it is not JSON at all, or empty", function()
      s:fault("GET", "/openai/v1/files", { { status = 200, body = "", content_type = "text/plain" },
                                           { status = 200, body = "OK", content_type = "text/plain" } })
      local page, msg, info = client("openai").files.list()
      assert_fails({ msg = "moonbatch: openai GET /files: reply is not JSON (empty body)", kind = "decode",
                     status = 200, attempts = 1, message = "reply is not JSON (empty body)" }, page, msg, info)
      page, msg, info = client("openai").files.list()
      assert_fails({ msg = "moonbatch: openai GET /files: reply is not JSON", kind = "decode",
                     status = 200, attempts = 1, message = "reply is not JSON" }, page, msg, info)
    end)
  end)

  describe("a 200 with invalid UTF-8", function()
    -- a file list whose filename holds bytes no UTF-8 text has (a lone continuation byte, 0xFF)
    local body = '{"object":"list","data":[{"id":"file-a","object":"file","bytes":1,"created_at":1,'
      .. '"filename":"a\128\255.jsonl","purpose":"batch"}],"has_more":false}'

    it("reaches the client as sent", function()
      s:fault("GET", "/openai/v1/files", { { status = 200, body_base64 = base64(body) } })
      local r = standin.curl(s.urls.openai .. "/files", { key = KEY })
      assert.equal(200, r.status)
      assert.equal(body, r.body)
    end)

    it("is kind 'decode', not retried, naming the first bad byte", function()
      s:fault("GET", "/openai/v1/files", { { status = 200, body_base64 = base64(body) } })
      local page, msg, info = client("openai").files.list()
      local at = body:find("\128", 1, true)
      assert_fails({
        msg = "moonbatch: openai GET /files: reply is not valid JSON (invalid UTF-8 at byte " .. at .. ")",
        kind = "decode", status = 200, attempts = 1,
        message = "reply is not valid JSON (invalid UTF-8 at byte " .. at .. ")",
      }, page, msg, info)
    end)

    -- a file list whose one filename is `name`, and the byte where name starts in it
    local function list_with(name)
      local head = '{"object":"list","data":[{"id":"file-a","object":"file","bytes":1,"created_at":1,'
        .. '"filename":"'
      return head .. name .. '","purpose":"batch"}],"has_more":false}', #head + 1
    end

    it("takes every well-formed sequence, and refuses the malformed ones where they start", function()
      local good = { "caf\195\169", "\228\184\173\230\150\135", "\240\159\152\128",
                     "\239\191\191", "\244\143\191\191" }
      local bad = {
        { "a\192\128", 1 },            -- an overlong "\0"
        { "\224\159\191", 0 },        -- an overlong U+07FF
        { "\237\160\128", 0 },        -- a surrogate, U+D800
        { "\244\144\128\128", 0 },    -- past U+10FFFF
        { "\245\128\128\128", 0 },    -- a byte no sequence starts with
        { "ab\228\184", 2 },           -- a sequence cut by the closing quote
        { "\226\130x", 0 },            -- a sequence cut by an ASCII byte
      }
      local c = client("openai")
      for _, name in ipairs(good) do
        s:fault("GET", "/openai/v1/files", { { status = 200, body_base64 = base64((list_with(name))) } })
        local page = c.files.list()
        assert.is_table(page, name)
        assert.equal(name, page.data[1].filename)
      end
      for _, case in ipairs(bad) do
        local reply, at = list_with(case[1])
        s:fault("GET", "/openai/v1/files", { { status = 200, body_base64 = base64(reply) } })
        local page, _, info = c.files.list()
        assert.is_nil(page, case[1])
        assert.equal("decode", info.kind)
        assert.equal("reply is not valid JSON (invalid UTF-8 at byte " .. (at + case[2]) .. ")", info.message)
      end
    end)
  end)

  describe("HTML pages from a proxy", function()
    for _, case in ipairs({ { 502, "502 Bad Gateway" }, { 504, "504 Gateway Time-out" } }) do
      local status, title = case[1], case[2]

      it(("%d on every attempt: kind 'http', retried"):format(status), function()
        s:fault("GET", "/openai/v1/files", { { html = status, count = 3 } })
        local page, msg, info = client("openai").files.list()
        assert_fails({ msg = "moonbatch: openai GET /files: HTTP " .. status .. ": " .. title, kind = "http",
                       status = status, attempts = 3, retryable = true, message = title }, page, msg, info)
        assert.matches("^<html>", info.body)
        assert.same({ 0.5, 1 }, waits)
      end)

      it(("%d once: the retry returns the Page"):format(status), function()
        s:fault("GET", "/openai/v1/files", { { html = status } })
        local page = client("openai").files.list()
        assert.is_table(page)
        assert.equal("list", page.object)
        assert.same({ 0.5 }, waits)
      end)
    end
  end)

  describe("413", function()
    local path

    setup(function()
      path = batch_file(dir, "small.jsonl", 10, 200)
    end)

    teardown(function()
      os.remove(path)
    end)

    it("as a proxy's HTML page on an upload: kind 'http', not retried", function()
      s:fault("POST", "/openai/v1/files", { { html = 413 } })
      local file, msg, info = client("openai").files.upload({ file = path })
      assert_fails({ msg = "moonbatch: openai POST /files: HTTP 413: 413 Request Entity Too Large",
                     kind = "http", status = 413, attempts = 1, message = "413 Request Entity Too Large" },
                   file, msg, info)
      assert.same({}, waits)
    end)

    it("in the provider's error shape: kind 'api', not retried", function()
      s:fault("POST", "/openai/v1/files", { { status = 413 } })
      local file, msg, info = client("openai").files.upload({ file = path })
      assert_fails({ msg = "moonbatch: openai POST /files: HTTP 413: Request failed (HTTP 413).", kind = "api",
                     status = 413, attempts = 1, type = "invalid_request_error",
                     message = "Request failed (HTTP 413)." }, file, msg, info)
      assert.equal(1, #requests("/openai/v1/files"))
    end)
  end)

  describe("a 100 MB reply to a list call", function()
    local BIG = 100 * 1000 * 1000

    it("stops at max_reply_bytes: kind 'decode', not retried, memory to match", function()
      s:fault("GET", "/openai/v1/files", { { big = BIG } })
      local peak = memory_kb("VmHWM")
      local page, msg, info = client("openai", { max_reply_bytes = 1048576 }).files.list()
      assert_fails({ msg = "moonbatch: openai GET /files: reply larger than 1048576 bytes (max_reply_bytes)",
                     kind = "decode", status = 200, attempts = 1, curl_code = 23,
                     message = "reply larger than 1048576 bytes (max_reply_bytes)" }, page, msg, info)
      assert.is_true(memory_kb("VmHWM") - peak < 16 * 1024, tostring(memory_kb("VmHWM") - peak))
    end)

    it("stops at max_reply_bytes (64 MiB by default): kind 'decode', not retried, never held whole", function()
      s:fault("GET", "/openai/v1/files", { { big = BIG } })
      local peak, rss = memory_kb("VmHWM"), memory_kb("VmRSS")
      local c = client("openai")
      local page, msg, info, seconds = timed(c.files.list)
      assert_fails({ msg = "moonbatch: openai GET /files: reply larger than 67108864 bytes (max_reply_bytes)",
                     kind = "decode", status = 200, attempts = 1, curl_code = 23,
                     message = "reply larger than 67108864 bytes (max_reply_bytes)" }, page, msg, info)
      -- the peak grew by at most the 64 MiB buffer (and some), not by 100 MB
      assert.is_true(memory_kb("VmHWM") - peak < 80 * 1024, tostring(memory_kb("VmHWM") - peak))
      assert.is_true(memory_kb("VmRSS") - rss < 16 * 1024, "the buffer was not given back")
      assert.is_true(seconds < 20, tostring(seconds))
      assert.equal("list", c.files.list().object)   -- and the client carries on
    end)
  end)

  describe("Retry-After", function()
    local path = "/openai/v1/files"

    it("in seconds: waited, then the Page", function()
      s:fault("GET", path, { { status = 503, retry_after = "2" } })
      local page = client("openai").files.list()
      assert.equal("list", page.object)
      assert.same({ 2 }, waits)
    end)

    it("in milliseconds (retry-after-ms), before Retry-After: waited, then the Page", function()
      s:fault("GET", path, { { status = 429, retry_after_ms = "150", retry_after = "9" } })
      local page = client("openai").files.list()
      assert.equal("list", page.object)
      assert.same({ 0.15 }, waits)
    end)

    it("as an HTTP date: waited until then, then the Page", function()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 5)
      s:fault("GET", path, { { status = 503, headers = { ["Retry-After"] = date } } })
      local page = client("openai").files.list()
      assert.equal("list", page.object)
      assert.equal(1, #waits)
      assert.is_true(waits[1] >= 3 and waits[1] <= 5, tostring(waits[1]))
    end)

    it("of exactly the cap (120 s): waited", function()
      s:fault("GET", path, { { status = 429, retry_after = "120" } })
      assert.is_table(client("openai").files.list())
      assert.same({ 120 }, waits)
    end)

    local over = {
      { "in seconds", { retry_after = "600" }, 600 },
      { "in milliseconds", { retry_after_ms = "121000" }, 121 },
    }
    for _, case in ipairs(over) do
      it("longer than the cap, " .. case[1] .. ": nil at once, retryable, retry_after set", function()
        local fault = { status = 429 }
        for k, v in pairs(case[2]) do fault[k] = v end
        s:fault("GET", path, { fault })
        local page, msg, info = client("openai").files.list()
        local said = "Rate limit reached for requests. Please try again later."
        local tail = (" (server asks to wait %gs, more than 120s)"):format(case[3])
        assert_fails({ msg = "moonbatch: openai GET /files: HTTP 429: " .. said .. tail, kind = "api",
                       status = 429, attempts = 1, retryable = true, retry_after = case[3], type = "requests",
                       code = "rate_limit_exceeded", message = said .. tail }, page, msg, info)
        assert.same({}, waits)
        assert.equal(1, #requests(path))
      end)
    end

    it("longer than the cap, as an HTTP date: nil at once, retryable, retry_after set", function()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 3600)
      s:fault("GET", path, { { status = 503, headers = { ["Retry-After"] = date } } })
      local page, msg, info = client("openai").files.list()
      assert.is_nil(page)
      assert.equal("api", info.kind)
      assert.equal(1, info.attempts)
      assert.is_true(info.retryable)
      assert.is_true(info.retry_after >= 3590 and info.retry_after <= 3600, tostring(info.retry_after))
      assert.matches("%(server asks to wait %d+s, more than 120s%)$", msg)
      assert.same({}, waits)
    end)
  end)

  describe("x-should-retry", function()
    local path = "/openai/v1/files"

    it("true makes a 400 retried: the Page", function()
      s:fault("GET", path, { { status = 400, headers = { ["x-should-retry"] = "true" } } })
      local page = client("openai").files.list()
      assert.equal("list", page.object)
      assert.same({ 0.5 }, waits)
      assert.equal(2, #requests(path))
    end)

    it("false makes a 503 final: nil, kind 'api', one attempt", function()
      s:fault("GET", path, { { status = 503, headers = { ["x-should-retry"] = "false" } } })
      local page, msg, info = client("openai").files.list()
      local said = "The engine is currently overloaded, please try again later."
      assert_fails({ msg = "moonbatch: openai GET /files: HTTP 503: " .. said, kind = "api", status = 503,
                     attempts = 1, type = "server_error", message = said }, page, msg, info)
      assert.same({}, waits)
    end)
  end)

  describe("each provider's error bodies", function()
    it("SiliconFlow: a bare JSON string \"Invalid token\" (401)", function()
      local page, msg, info = client("siliconflow", { api_key = "sk-wrong" }).files.list()
      assert_fails({ msg = "moonbatch: siliconflow GET /files: HTTP 401: Invalid token", kind = "api",
                     status = 401, attempts = 1, message = "Invalid token" }, page, msg, info)
    end)

    it("SiliconFlow: the text 404 page not found", function()
      local batch, msg, info = client("siliconflow").batches.get("batch_nope")
      assert_fails({ msg = "moonbatch: siliconflow GET /batches/batch_nope: HTTP 404: 404 page not found",
                     kind = "http", status = 404, attempts = 1, message = "404 page not found" }, batch, msg, info)
    end)

    it("SiliconFlow: {code, message, data} (400)", function()
      local batch, msg, info = client("siliconflow").batches.create({ input_file_id = "file-nope" })
      assert_fails({ msg = "moonbatch: siliconflow POST /batches: HTTP 400: input_file_id file-nope not found",
                     kind = "api", status = 400, attempts = 1, code = "20012",
                     message = "input_file_id file-nope not found" }, batch, msg, info)
    end)

    it("SiliconFlow: {code 50505, message, data} (503) is retried", function()
      s:fault("GET", "/siliconflow/v1/files", { { status = 503, count = 3 } })
      local page, msg, info = client("siliconflow").files.list()
      local said = "Model service overloaded. Please try again later."
      assert_fails({ msg = "moonbatch: siliconflow GET /files: HTTP 503: " .. said, kind = "api", status = 503,
                     attempts = 3, retryable = true, code = "50505", message = said }, page, msg, info)
    end)

    it("SiliconFlow: a 200 envelope saying failure", function()
      s:fault("GET", "/siliconflow/v1/files", { { status = 200, content_type = "application/json",
        body = '{"code":20015,"message":"quota exceeded","status":false,"data":null}' } })
      local page, msg, info = client("siliconflow").files.list()
      assert_fails({ msg = "moonbatch: siliconflow GET /files: quota exceeded", kind = "api", status = 200,
                     attempts = 1, code = "20015", message = "quota exceeded" }, page, msg, info)
    end)

    it("Together: {\"error\": \"string\"} on batches (404)", function()
      local batch, msg, info = client("together").batches.get("nope")
      assert_fails({ msg = "moonbatch: together GET /batches/nope: HTTP 404: batch not found: nope", kind = "api",
                     status = 404, attempts = 1, message = "batch not found: nope" }, batch, msg, info)
    end)

    it("Together: {\"error\": {...}} on files (404)", function()
      local file, msg, info = client("together").files.get("nope")
      assert_fails({ msg = "moonbatch: together GET /files/nope: HTTP 404: File not found: nope", kind = "api",
                     status = 404, attempts = 1, code = "not_found", type = "invalid_request_error", param = "id",
                     message = "File not found: nope" }, file, msg, info)
    end)

    it("Together: a wrong key in the shape of each endpoint family (401)", function()
      local said = "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys."
      local c = client("together", { api_key = "sk-wrong" })
      local page, msg, info = c.files.list()
      assert_fails({ msg = "moonbatch: together GET /files: HTTP 401: " .. said, kind = "api", status = 401,
                     attempts = 1, code = "invalid_api_key", type = "invalid_request_error", message = said },
                   page, msg, info)
      local batch
      batch, msg, info = c.batches.get("nope")
      assert_fails({ msg = "moonbatch: together GET /batches/nope: HTTP 401: " .. said, kind = "api",
                     status = 401, attempts = 1, message = said }, batch, msg, info)
    end)

    it("OpenAI: {\"error\": {...}} (404)", function()
      local file, msg, info = client("openai").files.get("file-nope")
      assert_fails({ msg = "moonbatch: openai GET /files/file-nope: HTTP 404: No such File object: file-nope",
                     kind = "api", status = 404, attempts = 1, type = "invalid_request_error", param = "id",
                     message = "No such File object: file-nope" }, file, msg, info)
    end)

    it("OpenAI: {\"error\": {...}} with a code (401)", function()
      local said = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
      local page, msg, info = client("openai", { api_key = "sk-wrong" }).files.list()
      assert_fails({ msg = "moonbatch: openai GET /files: HTTP 401: " .. said, kind = "api", status = 401,
                     attempts = 1, code = "invalid_api_key", type = "invalid_request_error", message = said },
                   page, msg, info)
    end)
  end)
end)
