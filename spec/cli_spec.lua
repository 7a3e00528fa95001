-- spec/cli_spec.lua: the moonbatch command line, run as a subprocess (always under lua5.4, from
-- this checkout) against the stand-in: output and exit status of every command, --json, --help,
-- usage errors, the API key's handling, `run` end to end per provider, Ctrl-C, and the progress
-- bar and status line on a real pseudo-terminal (tmux).
local cjson = require("cjson")
local subprocess = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local quote, capture, read_file, write_file = shell.quote, shell.capture, shell.read_file, shell.write_file
local succeeded, exists, words = shell.succeeded, shell.exists, shell.words
local fixture = require("spec.support.fixture")
local standin = require("spec.standin_helper")

local KEY = "sk-standin"
local MOONBATCH = subprocess.command() -- always lua5.4: the command line's own interpreter
local CLEAN_ENV = subprocess.CLEAN_ENV

local function lines_of(path)
  local n = 0
  for _ in (read_file(path) or ""):gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

local function line(custom_id, extra)
  return ('{"custom_id":"%s","method":"POST","url":"/v1/chat/completions","body":{"model":"m",%s' ..
    '"messages":[{"role":"user","content":"hi"}]}}\n'):format(custom_id, extra or "")
end

-- the files in dir whose names match pattern
local function listing(dir, pattern)
  local found = {}
  for name in capture("ls -A " .. quote(dir)):gmatch("[^\n]+") do
    if not pattern or name:match(pattern) then found[#found + 1] = name end
  end
  return found
end

describe("moonbatch.progress", function()
  local progress = require("moonbatch.progress")

  -- a reporter writing to a string, on a clock the test moves
  local function reporter(tty)
    local sink = { text = "" }
    function sink.write(self, s) self.text = self.text .. s end
    function sink.flush() end
    local clock = { now = 100 }
    local r = progress.new({ stream = sink, tty = tty, width = 100, clock = function() return clock.now end })
    return r, sink, clock
  end

  it("says sizes and durations as people read them", function()
    assert.equal("0 B", progress.bytes(0))
    assert.equal("1023 B", progress.bytes(1023))
    assert.equal("1.5 KiB", progress.bytes(1536))
    assert.equal("12.0 MiB", progress.bytes(12 * 1024 * 1024))
    assert.equal("2.5 GiB", progress.bytes(2.5 * 1024 ^ 3))
    assert.equal("0:07", progress.duration(7))
    assert.equal("12:34", progress.duration(754))
    assert.equal("1:02:03", progress.duration(3723))
    assert.equal("--:--", progress.duration(nil))
    assert.equal("--:--", progress.duration(math.huge))
  end)

  it("redraws a bar in place at most ten times a second and ends it with a newline", function()
    local r, sink, clock = reporter(true)
    local t = r:transfer("uploading x.jsonl", 10 * 1024 * 1024)
    local update = t:callback()
    for i = 1, 100 do
      clock.now = 100 + i * 0.01              -- 100 updates over one second
      update(i * 100 * 1024, 10 * 1024 * 1024 + 300)
    end
    local _, draws = sink.text:gsub("\r\27%[K", "")
    assert.is_true(draws >= 9 and draws <= 12, "drawn " .. draws .. " times")
    assert.is_nil(sink.text:find("\n"))
    assert.matches("uploading x.jsonl  %[#+%-+%]  %d%d?%%  %d+%.%d MiB / 10%.0 MiB  %d+%.%d MiB/s  %d:%d%d left$", sink.text)
    t:finish(true)
    assert.matches("\r\27%[Kuploading x.jsonl  %[####################%] 100%%  10%.0 MiB / 10%.0 MiB  in 0:01\n$",
      sink.text)
    r:line("next")
    assert.matches("in 0:01\nnext\n$", sink.text)
  end)

  it("leaves a failed transfer's bar where it stopped", function()
    local r, sink, clock = reporter(true)
    local t = r:transfer("downloading y", nil)
    clock.now = 101
    t:update(512, 2048)
    t:finish(false)
    assert.matches(" 25%%  512 B / 2%.0 KiB  stopped after 0:01\n$", sink.text)
  end)

  it("draws nothing but the caller's lines when not on a terminal", function()
    local r, sink = reporter(false)
    local t = r:transfer("uploading x", 100)
    t:update(50, 100)
    t:finish(true)
    local status = r:status("batch b")
    status:update("in_progress 1/3", 1 / 3, "batch b: in_progress 1/3")
    status:update("in_progress 1/3", 1 / 3, "batch b: in_progress 1/3")
    status:update("completed 3/3", 1, "batch b: completed 3/3")
    status:finish()
    assert.equal("batch b: in_progress 1/3\nbatch b: completed 3/3\n", sink.text)
  end)

  it("keeps a status on one line, its clock moving, until it finishes", function()
    local r, sink, clock = reporter(true)
    local status = r:status("batch b")
    status:update("in_progress 1/4", 0.25, "plain")
    clock.now = 165
    r:tick()
    assert.matches("\r\27%[Kbatch b  in_progress 1/4  %[#####%-+%]  25%%  1:05$", sink.text)
    status:update("completed 4/4", 1, "plain")
    status:finish()
    assert.matches("batch b  completed 4/4  %[####################%] 100%%  1:05\n$", sink.text)
    local _, newlines = sink.text:gsub("\n", "")
    assert.equal(1, newlines)
  end)

  it("says nothing when quiet", function()
    local sink = { text = "" }
    function sink.write(self, s) self.text = self.text .. s end
    function sink.flush() end
    local r = progress.new({ stream = sink, tty = true, quiet = true })
    local t = r:transfer("x", 10)
    t:update(5, 10)
    t:finish(true)
    r:line("step")
    r:status("b"):update("x", 1, "x")
    assert.equal("", sink.text)
  end)
end)

describe("moonbatch.cli helpers", function()
  local cli = require("moonbatch.cli")

  it("puts .errors before the results' extension", function()
    assert.equal("/tmp/results.errors.jsonl", cli.errors_path("/tmp/results.jsonl"))
    assert.equal("out.errors", cli.errors_path("out"))
    assert.equal("dir.v2/out.errors", cli.errors_path("dir.v2/out"))
    assert.equal("a.b.errors.jsonl", cli.errors_path("a.b.jsonl"))
  end)

  it("writes JSON with sorted keys, lists as arrays, and no raw", function()
    assert.equal('{"a":1,"b":[1,2],"data":[],"m":{},"s":"x\\"\\n\\u0001"}',
      cli.json({ b = { 1, 2 }, a = 1, data = {}, m = {}, s = 'x"\n\1', raw = { secret = true } }))
    assert.equal('{"data":[{"id":"f"}],"n":1.5}', cli.json({ data = { { id = "f", raw = {} } }, n = 1.5 }))
    assert.same({ a = { 1, 2 }, b = true }, cjson.decode(cli.json({ a = { 1, 2 }, b = true })))
  end)

  it("parses options before and after the command, with = or a separate value", function()
    local p = cli.parse({ "--provider", "together", "run", "in.jsonl", "-o", "out.jsonl", "--interval=0.5",
                          "--metadata", "a=1", "--metadata", "b=2", "--", "--not-an-option" })
    assert.equal("run", p.command)
    assert.same({ "in.jsonl", "--not-an-option" }, p.args)
    assert.equal("together", p.opts.provider)
    assert.equal("out.jsonl", p.opts.output)
    assert.equal(0.5, p.opts.interval)
    assert.same({ "a=1", "b=2" }, p.opts.metadata)
  end)
end)

describe("moonbatch (the command line)", function()
  local s, dir, good, mixed, bad
  local outputs = {} -- everything every run printed, to check the key never shows

  -- run moonbatch with `args` (a list of words); env: extra variables; returns code, out, err
  local function moonbatch(args, env)
    local code, o, e = subprocess.run(dir, args, env)
    outputs[#outputs + 1] = o .. e
    return code, o, e
  end

  -- moonbatch with the key and base URL of `provider` on the stand-in
  local function on(provider, args, env)
    local e = { MOONBATCH_API_KEY = KEY, MOONBATCH_BASE_URL = s.urls[provider],
                MOONBATCH_PROVIDER = provider }
    for k, v in pairs(env or {}) do e[k] = v end
    return moonbatch(args, e)
  end

  local function json_of(out)
    local ok, value = pcall(cjson.decode, out)
    assert(ok, "not JSON: " .. out)
    return value
  end

  local function has_dialect(name)
    return s.urls[name] ~= nil
  end

  local function fast_batches()
    local _, status = s:call("POST", "/config", { step_seconds = 0.1 })
    return status == 200
  end

  fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)
  setup(function()
    good = dir .. "/requests.jsonl"
    write_file(good, line("r1") .. line("r2") .. line("r3"))
    mixed = dir .. "/mixed.jsonl"
    write_file(mixed, line("ok1") .. line("bad", '"standin_fail":true,') .. line("ok2"))
    bad = dir .. "/bad.jsonl"
    write_file(bad, line("r1") .. "not json\n" .. line("r1"))
  end)

  after_each(function()
    for _, text in ipairs(outputs) do
      assert.is_nil(text:find(KEY, 1, true), "the API key was printed: " .. text)
    end
    outputs = {}
  end)

  describe("help and usage", function()
    it("prints the tool's help with --help, -h and help", function()
      for _, args in ipairs({ { "--help" }, { "-h" }, { "help" } }) do
        local code, out, err = moonbatch(args)
        assert.equal(0, code)
        assert.equal("", err)
        assert.matches("usage: moonbatch", out, 1, true)
        for _, command in ipairs({ "run", "validate", "upload", "files", "create", "status", "wait",
                                   "cancel", "download" }) do
          assert.matches("\n  " .. command .. " ", out, 1, true)
        end
      end
    end)

    it("prints each command's help", function()
      for _, command in ipairs({ "run", "validate", "upload", "files", "batches", "create", "status",
                                 "wait", "cancel", "download", "delete" }) do
        local code, out = moonbatch({ command, "--help" })
        assert.equal(0, code)
        assert.matches("usage: moonbatch " .. command, out, 1, true)
        local _, again = moonbatch({ "help", command })
        assert.equal(out, again)
      end
      local _, out = moonbatch({ "run", "-h" })
      assert.matches("-o, --output RESULTS", out, 1, true)
      assert.matches("--errors PATH", out, 1, true)
    end)

    it("runs from any directory, also through a link", function()
      local link = dir .. "/moonbatch-link"
      assert(succeeded(os.execute(("ln -s %s %s"):format(quote(capture("pwd"):gsub("%s+$", "") .. "/bin/moonbatch"),
        quote(link)))))
      for _, command in ipairs({ "lua5.4 " .. quote(link), quote(link) }) do
        local out = capture(("cd / && %s %s --version 2>&1"):format(CLEAN_ENV, command))
        assert.matches("^moonbatch %d+%.%d+", out)
      end
    end)

    it("prints the version", function()
      local code, out = moonbatch({ "--version" })
      assert.equal(0, code)
      assert.matches("^moonbatch %d+%.%d+", out)
    end)

    it("exits 2 with a usage message for bad words", function()
      local cases = {
        { {}, "usage: moonbatch" },
        { { "frobnicate" }, "unknown command 'frobnicate'" },
        { { "files", "--frob" }, "unknown option '--frob'" },
        { { "files", "-x" }, "unknown option '-x'" },
        { { "upload" }, "missing FILE" },
        { { "download", "file-1" }, "missing PATH" },
        { { "status", "a", "b" }, "unexpected argument 'b'" },
        { { "run", good }, "missing -o RESULTS" },
        { { "run", good, "-o" }, "option --output needs a value" },
        { { "files", "--limit", "0" }, "--limit needs a whole number" },
        { { "wait", "b", "--interval", "soon" }, "--interval needs a number" },
        { { "files", "--json=yes" }, "--json takes no value" },
        { { "validate", good, "--base-url", "http://x" }, "unknown option '--base-url'" },
        { { "files", "--provider", "nope" }, "unknown provider 'nope'" },
      }
      for _, case in ipairs(cases) do
        local code, out, err = moonbatch(case[1], { MOONBATCH_API_KEY = KEY })
        assert.equal(2, code, table.concat(case[1], " "))
        assert.equal("", out)
        assert.matches(case[2], err, 1, true)
      end
    end)
  end)

  describe("the API key", function()
    it("is refused as an argument, without being repeated", function()
      for _, args in ipairs({ { "files", "--api-key", "sk-LEAKED" }, { "--api-key=sk-LEAKED", "files" },
                              { "files", "--key", "sk-LEAKED" }, { "run", good, "-o", "x", "--api-key=sk-LEAKED" } }) do
        local code, out, err = moonbatch(args)
        assert.equal(2, code)
        assert.equal("", out)
        assert.matches("refused", err, 1, true)
        assert.matches("--key-file", err, 1, true)
        assert.matches("MOONBATCH_API_KEY", err, 1, true)
        assert.is_nil(err:find("sk-LEAKED", 1, true))
      end
      assert.equal(0, #s:log())
    end)

    it("is required from the environment or a key file", function()
      local code, out, err = moonbatch({ "files" }, { MOONBATCH_BASE_URL = s.urls.siliconflow })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("no API key: set SILICONFLOW_API_KEY or MOONBATCH_API_KEY, or use --key-file", err, 1, true)
      code, out, err = moonbatch({ "files", "--provider", "together" }, { MOONBATCH_BASE_URL = s.urls.siliconflow })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("TOGETHER_API_KEY", err, 1, true)
    end)

    it("is read from the provider's variable", function()
      local code = moonbatch({ "files" }, { SILICONFLOW_API_KEY = KEY, MOONBATCH_BASE_URL = s.urls.siliconflow })
      assert.equal(0, code)
    end)

    it("is read from --key-file, with a warning when others may read the file", function()
      local key_file = dir .. "/key"
      write_file(key_file, "  " .. KEY .. "  \nsecond line\n")
      os.execute("chmod 600 " .. quote(key_file))
      local env = { MOONBATCH_BASE_URL = s.urls.siliconflow }
      local code, out, err = moonbatch({ "files", "--key-file", key_file }, env)
      assert.equal(0, code, err)
      assert.equal("", err)
      assert.equal("no files\n", out)
      os.execute("chmod 644 " .. quote(key_file))
      code, out, err = moonbatch({ "--key-file=" .. key_file, "files" }, env)
      assert.equal(0, code)
      assert.equal("no files\n", out)
      assert.matches("warning: the key file .* can be read by other users", err)
      write_file(key_file, "sk-wrong\n")
      code, out, err = moonbatch({ "files", "--key-file", key_file }, env)
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("HTTP 401", err, 1, true)
      write_file(key_file, "\n")
      code, out, err = moonbatch({ "files", "--key-file", key_file }, env)
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("is empty", err, 1, true)
      code, out, err = moonbatch({ "files", "--key-file", dir .. "/absent" }, env)
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("cannot read the key file", err, 1, true)
    end)
  end)

  describe("validate", function()
    it("reports a good file", function()
      local code, out, err = moonbatch({ "validate", good })
      assert.equal(0, code, err)
      assert.matches("ok: true\nlines: 3\n", out, 1, true)
      assert.matches("models: m", out, 1, true)
      code, out = moonbatch({ "validate", "--json", good })
      assert.equal(0, code)
      local report = json_of(out)
      assert.is_true(report.ok)
      assert.equal(3, report.lines)
      assert.equal(#read_file(good), report.bytes)
    end)

    it("names each problem and exits 1", function()
      local code, out, err = moonbatch({ "validate", bad })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("2 problems", err, 1, true)
      assert.matches("\n  line 2: ", err, 1, true)
      assert.matches("\n  line 3: .*custom_id", err)
      code, out = moonbatch({ "validate", "--json", bad })
      assert.equal(1, code)
      local report = json_of(out)
      assert.is_false(report.ok)
      assert.equal(2, #report.problems)
      assert.equal(2, report.problems[1].line)
    end)

    it("shows at most 20 problems", function()
      local many = dir .. "/many.jsonl"
      write_file(many, ("x\n"):rep(25))
      local code, _, err = moonbatch({ "validate", many })
      assert.equal(1, code)
      assert.matches("  line 20: ", err, 1, true)
      assert.is_nil(err:find("  line 21: ", 1, true))
      assert.matches("and 5 more", err, 1, true)
    end)

    it("fails on a file that cannot be read", function()
      local code, _, err = moonbatch({ "validate", dir .. "/absent.jsonl" })
      assert.equal(1, code)
      assert.matches("absent.jsonl", err, 1, true)
    end)
  end)

  describe("files, batches and downloads", function()
    it("upload prints the File and its steps", function()
      local code, out, err = on("siliconflow", { "upload", good })
      assert.equal(0, code, err)
      assert.matches("^id: file%-%l+\nfilename: requests.jsonl\nbytes: %d+ %(", out)
      assert.matches("uploading " .. good .. " (", err, 1, true)
      assert.matches("uploaded " .. good .. " as file-", err, 1, true)
      assert.is_nil(err:find("\r", 1, true))
      code, out, err = on("siliconflow", { "upload", "--json", "-q", good })
      assert.equal(0, code)
      assert.equal("", err)
      local file = json_of(out)
      assert.equal("file", file.object)
      assert.equal(#read_file(good), file.bytes)
      assert.equal("batch", file.purpose)
      assert.is_number(file.created_at)
      assert.is_nil(file.raw)
    end)

    it("upload validates first and sends nothing when a line is bad", function()
      local code, out, err = on("siliconflow", { "upload", bad })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("line 2", err, 1, true)
      assert.equal(0, #s:log())
      code = on("siliconflow", { "upload", "--no-validate", bad })
      assert.equal(0, code)
    end)

    it("files lists them as a table and as a Page", function()
      local _, out = on("siliconflow", { "upload", "--json", good })
      local id = json_of(out).id
      local code, listed = on("siliconflow", { "files" })
      assert.equal(0, code)
      assert.matches("^ID +SIZE +CREATED %(UTC%) +LINES +PURPOSE +FILENAME\n", listed)
      assert.matches(id .. " ", listed, 1, true)
      code, out = on("siliconflow", { "files", "--json", "--limit", "5" })
      assert.equal(0, code)
      local page = json_of(out)
      assert.equal("list", page.object)
      assert.is_false(page.has_more)
      assert.equal(id, page.data[1].id)
      assert.is_nil(page.data[1].raw)
      code, out = on("siliconflow", { "files", "--json", "--all" })
      assert.equal(0, code)
      assert.equal(id, json_of(out).data[1].id)
    end)

    it("an empty list is an empty JSON array", function()
      local code, out = on("siliconflow", { "--json", "files" })
      assert.equal(0, code)
      assert.matches('"data":[]', out, 1, true)
    end)

    it("create, status, wait, download, cancel and batches", function()
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      local _, out = on("siliconflow", { "upload", "--json", good })
      local file_id = json_of(out).id

      local code, err
      code, out, err = on("siliconflow", { "create", file_id, "--json", "--metadata", "job=nightly",
                                           "--completion-window", "24h" })
      assert.equal(0, code, err)
      local batch = json_of(out)
      assert.equal("batch", batch.object)
      assert.equal(file_id, batch.input_file_id)
      assert.equal("/v1/chat/completions", batch.endpoint)
      assert.equal("nightly", batch.metadata.job)
      assert.is_nil(batch.raw)

      code, out = on("siliconflow", { "status", batch.id })
      assert.equal(0, code)
      assert.matches("^id: " .. batch.id .. "\nstatus: [%l_]+\n", out)
      assert.matches("input_file_id: " .. file_id, out, 1, true)

      code, out, err = on("siliconflow", { "wait", batch.id, "--interval", "0.1", "--json" })
      assert.equal(0, code, err)
      local done = json_of(out)
      assert.equal("completed", done.status)
      assert.same({ total = 3, completed = 3, failed = 0 }, done.request_counts)
      assert.matches("batch " .. batch.id .. ": completed 3/3\n", err, 1, true)
      assert.is_nil(err:find("\r", 1, true))

      local target = dir .. "/downloaded.jsonl"
      code, out, err = on("siliconflow", { "download", done.output_file_id, target, "--json" })
      assert.equal(0, code, err)
      local result = json_of(out)
      assert.equal(target, result.path)
      assert.equal(#read_file(target), result.bytes)
      assert.equal(3, lines_of(target))

      code, out = on("siliconflow", { "batches" })
      assert.equal(0, code)
      assert.matches(batch.id .. " +completed +3/3", out)

      -- a second batch, cancelled while it waits
      assert(s:call("POST", "/config", { step_seconds = 30 }))
      _, out = on("siliconflow", { "create", file_id, "--json" })
      local slow = json_of(out)
      code, _, err = on("siliconflow", { "wait", slow.id, "--timeout", "0.3", "--interval", "0.1" })
      assert.equal(1, code)
      assert.matches("still in_queue", err, 1, true)
      code, out = on("siliconflow", { "cancel", slow.id, "--json" })
      assert.equal(0, code)
      assert.truthy(({ cancelling = true, cancelled = true })[json_of(out).status])
    end)

    it("a failed call prints the error's message and exits 1", function()
      local code, out, err = on("siliconflow", { "status", "batch_nope" })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^moonbatch: siliconflow GET /batches/batch_nope: ", err)
      code, out, err = on("siliconflow", { "files" }, { MOONBATCH_BASE_URL = "http://127.0.0.1:1/v1" })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^moonbatch: siliconflow GET /files: ", err)
    end)

    it("an option the provider does not take is a usage error", function()
      if not has_dialect("together") then return pending("the stand-in has no together dialect") end
      local code, out, err = on("together", { "create", "file-x", "--metadata", "a=b" })
      assert.equal(2, code)
      assert.equal("", out)
      assert.equal("moonbatch: batches.create: option 'metadata' is not supported by together\n", err)
      code, out, err = on("siliconflow", { "create", "file-x", "--metadata", "no-equals" })
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("--metadata needs KEY=VALUE", err, 1, true)
      assert.equal(0, #s:log())
    end)

    it("--base-url wins over MOONBATCH_BASE_URL", function()
      local code = on("siliconflow", { "files", "--base-url", s.urls.siliconflow },
        { MOONBATCH_BASE_URL = "http://127.0.0.1:1/v1" })
      assert.equal(0, code)
    end)
  end)

  describe("run", function()
    local function run_ok(provider)
      if not has_dialect(provider) then return pending("the stand-in has no " .. provider .. " dialect") end
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      local results = dir .. "/" .. provider .. "-results.jsonl"
      local code, out, err = on(provider, { "run", good, "-o", results, "--interval", "0.1" })
      assert.equal(0, code, err)
      assert.equal(3, lines_of(results))
      for _, custom_id in ipairs({ "r1", "r2", "r3" }) do
        assert.matches('"custom_id":"' .. custom_id .. '"', read_file(results), 1, true)
      end
      assert.is_false(exists(dir .. "/" .. provider .. "-results.errors.jsonl"))
      assert.matches("requests: 3\ncompleted: 3\nfailed: 0\n", out, 1, true)
      assert.matches("results: " .. results .. " (3 lines)", out, 1, true)
      for _, step in ipairs({ "validated ", "uploading ", "uploaded ", "created batch ", ": completed",
                              "downloading results to ", "wrote " .. results }) do
        assert.matches(step, err, 1, true)
      end
      assert.same({}, listing(dir, "%.part$"))
    end

    local function run_mixed(provider)
      if not has_dialect(provider) then return pending("the stand-in has no " .. provider .. " dialect") end
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      local results = dir .. "/" .. provider .. "-mixed.jsonl"
      local errors = dir .. "/" .. provider .. "-mixed.errors.jsonl"
      local code, out, err = on(provider, { "run", mixed, "-o", results, "--interval", "0.1", "--json" })
      assert.equal(0, code, err)
      assert.equal(2, lines_of(results))
      assert.equal(1, lines_of(errors))
      assert.matches('"custom_id":"bad"', read_file(errors), 1, true)
      local summary = json_of(out)
      assert.equal(3, summary.requests)
      assert.equal(2, summary.completed)
      assert.equal(1, summary.failed)
      assert.equal(results, summary.results)
      assert.equal(errors, summary.errors)
      assert.equal("completed", summary.batch.status)
      assert.equal("batch", summary.batch.object)
      assert.equal("file", summary.input_file.object)
      assert.is_nil(summary.batch.raw)
    end

    for _, provider in ipairs({ "siliconflow", "together", "openai" }) do
      it("goes from a file to its results on " .. provider, function() run_ok(provider) end)
      it("puts failed requests in the error file on " .. provider, function() run_mixed(provider) end)
    end

    it("writes the error file where --errors says", function()
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      local results, errors = dir .. "/out", dir .. "/failures.txt"
      local code, out, err = on("siliconflow", { "run", mixed, "--output=" .. results, "--errors", errors,
                                                 "--interval", "0.1" })
      assert.equal(0, code, err)
      assert.equal(1, lines_of(errors))
      assert.matches("errors: " .. errors .. " (1 line)", out, 1, true)
      assert.is_false(exists(dir .. "/out.errors"))
    end)

    it("stops at a validation failure, names the problem and sends nothing", function()
      local results = dir .. "/never.jsonl"
      local code, out, err = on("siliconflow", { "run", bad, "-o", results })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("line 2: ", err, 1, true)
      assert.is_false(exists(results))
      assert.equal(0, #s:log())
    end)

    it("refuses to overwrite its input or write where it cannot", function()
      local code, out, err = on("siliconflow", { "run", good, "-o", good })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("is the input file", err, 1, true)
      code, out, err = on("siliconflow", { "run", good, "-o", dir .. "/no/such/dir/out.jsonl" })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("not a writable directory", err, 1, true)
      assert.equal(0, #s:log())
    end)
  end)

  describe("Ctrl-C", function()
    -- start moonbatch in the background; returns its pid and the paths of its output
    local function start(args, env)
      local vars = { "MOONBATCH_PROGRESS=never", "MOONBATCH_API_KEY=" .. KEY,
                     "MOONBATCH_BASE_URL=" .. quote(s.urls.siliconflow) }
      for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. quote(v) end
      local out, err = dir .. "/bg.out", dir .. "/bg.err"
      local command = ("{ exec %s %s %s %s >%s 2>%s; } </dev/null & echo $!"):format(CLEAN_ENV,
        table.concat(vars, " "), MOONBATCH, words(args), quote(out), quote(err))
      return tonumber((capture(command):match("%d+"))), out, err
    end

    local function wait_for(predicate, seconds)
      for _ = 1, seconds * 50 do
        if predicate() then return true end
        os.execute("sleep 0.02")
      end
      return false
    end

    -- the exit status of a background child of a shell we no longer have: read from its output
    local function interrupt(pid)
      os.execute("kill -INT " .. pid)
      return wait_for(function() return not standin.alive(pid) end, 10)
    end

    it("leaves no partial download behind", function()
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      local results = dir .. "/for-download.jsonl"
      assert.equal(0, (on("siliconflow", { "run", good, "-o", results, "--interval", "0.1" })))
      local _, out = on("siliconflow", { "batches", "--json" })
      local output_id = json_of(out).data[1].output_file_id
      -- every attempt breaks off after some bytes: the part file exists while the client waits
      s:fault("GET", "/siliconflow/v1/files/" .. output_id .. "/content", { { reset_after = 200, count = 3 } })
      local target = dir .. "/cut.jsonl"
      local pid, _, err_path = start({ "download", output_id, target })
      assert.is_true(wait_for(function() return #listing(dir, "^cut%.jsonl%.moonbatch%-.*%.part$") > 0 end, 5),
        "no part file appeared")
      assert.is_true(interrupt(pid))
      local err = read_file(err_path)
      outputs[#outputs + 1] = err
      assert.matches("moonbatch: interrupted", err, 1, true)
      assert.same({}, listing(dir, "^cut%.jsonl"))
    end)

    it("says how to follow a batch it stopped waiting for", function()
      local _, status = s:call("POST", "/config", { step_seconds = 30 })
      if status ~= 200 then return pending("the stand-in has no POST /config") end
      local results = dir .. "/interrupted.jsonl"
      local pid, out_path, err_path = start({ "run", good, "-o", results, "--interval", "0.1" })
      assert.is_true(wait_for(function() return (read_file(err_path) or ""):find(": in_queue", 1, true) ~= nil end, 10))
      assert.is_true(interrupt(pid))
      local err = read_file(err_path)
      outputs[#outputs + 1] = err .. (read_file(out_path) or "")
      assert.matches("moonbatch: interrupted\nmoonbatch: batch (%S+) keeps running: `moonbatch wait %1`", err)
      assert.is_false(exists(results))
      assert.same({}, listing(dir, "^interrupted"))
    end)
  end)

  describe("on a terminal", function()
    local tmux_ok = succeeded(os.execute("command -v tmux >/dev/null 2>&1"))
    local socket

    after_each(function()
      if socket then
        os.execute("tmux -S " .. quote(socket) .. " kill-server >/dev/null 2>&1")
        os.remove(socket)
      end
      socket = nil
    end)

    -- run moonbatch in a 100x40 tmux pane; returns the screen once it has finished
    local function on_screen(args)
      socket = dir .. "/tmux.socket"
      local env = ("TERM=xterm MOONBATCH_API_KEY=%s MOONBATCH_BASE_URL=%s"):format(KEY, quote(s.urls.siliconflow))
      local command = ("%s %s %s %s; echo __END__ $?; sleep 60"):format(CLEAN_ENV, env, MOONBATCH, words(args))
      assert(succeeded(os.execute(("TERM=xterm tmux -S %s -f /dev/null new-session -d -s mb -x 100 -y 40 %s")
        :format(quote(socket), quote(command)))))
      local screen
      for _ = 1, 500 do
        screen = capture(("tmux -S %s capture-pane -p -t mb -S -100 2>/dev/null"):format(quote(socket)))
        if screen:find("__END__", 1, true) then break end
        os.execute("sleep 0.05")
      end
      outputs[#outputs + 1] = screen
      return screen
    end

    it("draws the upload bar, the wait status and the download bar, each ending its line", function()
      if not tmux_ok then return pending("tmux is not installed") end
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      -- a file of a few MiB, so the bar has something to draw
      local big = dir .. "/big.jsonl"
      local chunks = {}
      local padding = ("x"):rep(900)
      for i = 1, 3000 do chunks[i] = line("big" .. i, '"note":"' .. padding .. '",') end
      write_file(big, table.concat(chunks))
      local results = dir .. "/tty-results.jsonl"
      local screen = on_screen({ "run", big, "-o", results, "--interval", "0.1" })
      assert.matches("\n__END__ 0\n", "\n" .. screen, 1, true)
      local rows = {}
      for row in screen:gmatch("([^\n]*)\n") do rows[#rows + 1] = row end
      local function row_matching(pattern)
        local found
        for _, row in ipairs(rows) do
          if row:find(pattern) then
            assert.is_nil(found, "drawn twice: " .. pattern .. "\n" .. screen)
            found = row
          end
        end
        assert.is_not_nil(found, "not on screen: " .. pattern .. "\n" .. screen)
        return found
      end
      local upload = row_matching("^uploading big%.jsonl ")
      assert.matches("  %[#+%] 100%%  %d+%.%d MiB / %d+%.%d MiB  in %d+:%d%d$", upload)
      local status = row_matching("^batch %S+  completed 3000/3000")
      assert.matches("  %[#+%] 100%%  %d+:%d%d$", status)
      local download = row_matching("^downloading tty%-results%.jsonl ")
      assert.matches("100%%", download)
      row_matching("^wrote " .. results:gsub("%p", "%%%0"))
      row_matching("^requests: 3000$")
      assert.equal(3000, lines_of(results))
      -- each bar's last drawing is its final one (a line left unfinished would have run into
      -- the next, and the anchored patterns above would not match)
      for _, row in ipairs(rows) do
        assert.is_nil(row:find(" left$"), row)
      end
    end)

    it("draws plain lines, without carriage returns, when standard error is not a terminal", function()
      if not fast_batches() then return pending("the stand-in cannot make batches fast (POST /config)") end
      local code, _, err = on("siliconflow", { "run", good, "-o", dir .. "/plain.jsonl", "--interval", "0.1" },
        { MOONBATCH_PROGRESS = "auto" })
      assert.equal(0, code)
      assert.is_nil(err:find("[\r\27]"))
      assert.matches("batch %S+: completed 3/3\n", err)
    end)
  end)
end)
