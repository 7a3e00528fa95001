-- spec/cli_more_spec.lua: what users of other batch CLIs expect of moonbatch's command line: a bad
-- --base-url is a usage error and --allow-http exists, `download ID -` writes to standard output,
-- --version, `completion bash|zsh|fish`, the man page from `make man`, every environment variable
-- the code reads listed in --help, and progress lines that fit a 40-column terminal (tmux).
local subprocess = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local quote, capture, read_file, write_file = shell.quote, shell.capture, shell.read_file, shell.write_file
local succeeded, tmpdir, words = shell.succeeded, shell.tmpdir, shell.words
local standin = require("spec.standin_helper")

local KEY = "sk-standin"
local MOONBATCH = subprocess.command()

local function has(command)
  return succeeded(os.execute("command -v " .. command .. " >/dev/null 2>&1"))
end

local function line(custom_id, extra)
  return ('{"custom_id":"%s","method":"POST","url":"/v1/chat/completions","body":{"model":"m",%s' ..
    '"messages":[{"role":"user","content":"hi"}]}}\n'):format(custom_id, extra or "")
end

local dir
setup(function() dir = tmpdir() end)
teardown(function() if dir then os.execute("rm -rf " .. quote(dir)) end end)

local function moonbatch(args, env)
  return subprocess.run(dir, args, env)
end

-- no "lua/moonbatch/cli.lua:812:"-style prefix, no traceback
local function no_internal_path(text)
  assert.is_nil(text:find("%.lua:%d+"), text)
  assert.is_nil(text:find("traceback", 1, true), text)
end

describe("moonbatch --base-url", function()
  local bad = {
    { "notaurl", "is not a URL" },
    { "api.openai.com/v1", "is not a URL" },
    { "ftp://example.com/v1", "is not an http%(s%) URL" },
    { "http://example.com/v1", "plain HTTP to example.com" },
    { "http://10.1.2.3:8080/v1", "plain HTTP to 10.1.2.3" },
    { "https://user:sk-secret@example.com/v1", "user name or password" },
    { "https://example.com/v1?x=1", "query or fragment" },
    { "https://example.com/v1#top", "query or fragment" },
    { "https:///v1", "has no host" },
    { "https://example.com:99999/v1", "bad port" },
    { "https://exa mple.com/v1", "space or a control character" },
    { "", "empty" },
  }
  for _, case in ipairs(bad) do
    it(("refuses %q as a usage error (exit 2) saying why"):format(case[1]), function()
      local code, out, err = moonbatch({ "--base-url", case[1], "files" }, { MOONBATCH_API_KEY = KEY })
      assert.equal(2, code, err)
      assert.equal("", out)
      assert.matches("^moonbatch: bad %-%-base%-url: ", err)
      assert.matches(case[2], err)
      no_internal_path(err)
      assert.is_nil(err:find("sk-secret", 1, true), err)
    end)
  end

  it("is refused the same after the command, and from MOONBATCH_BASE_URL", function()
    local code, _, err = moonbatch({ "batches", "--base-url=http://example.com/v1" }, { MOONBATCH_API_KEY = KEY })
    assert.equal(2, code)
    assert.matches("bad %-%-base%-url: plain HTTP to example.com .*%-%-allow%-http", err)
    no_internal_path(err)
    code, _, err = moonbatch({ "files" }, { MOONBATCH_API_KEY = KEY, MOONBATCH_BASE_URL = "http://example.com/v1" })
    assert.equal(2, code)
    assert.matches("bad MOONBATCH_BASE_URL: plain HTTP to example.com", err)
    no_internal_path(err)
    code, _, err = moonbatch({ "status", "b1" }, { MOONBATCH_API_KEY = KEY, MOONBATCH_BASE_URL = "nope" })
    assert.equal(2, code)
    assert.matches("bad MOONBATCH_BASE_URL: 'nope' is not a URL", err)
  end)

  it("takes every well-formed base URL (then the connection decides)", function()
    for _, url in ipairs({ "http://[::1]:1/v1", "HTTPS://127.0.0.1:1/v1", "http://localhost:1/v1/",
                           "http://127.0.0.1:1" }) do
      local code, _, err = moonbatch({ "--base-url", url, "files" }, { MOONBATCH_API_KEY = KEY })
      assert.equal(1, code, url .. ": " .. err)
      assert.matches("siliconflow GET /files: ", err)
    end
  end)

  it("takes plain HTTP to another host with --allow-http (then the connection decides)", function()
    local code, _, err = moonbatch({ "--allow-http", "--base-url", "http://0.0.0.0:1/v1", "files" },
      { MOONBATCH_API_KEY = KEY })
    assert.equal(1, code, err)
    assert.is_nil(err:find("bad --base-url", 1, true), err)
    assert.matches("siliconflow GET /files: ", err)
    code = moonbatch({ "files", "--allow-http", "--base-url", "http://0.0.0.0:1/v1" }, { MOONBATCH_API_KEY = KEY })
    assert.equal(1, code)
    local _, help = moonbatch({ "--help" })
    assert.matches("%-%-allow%-http ", help)
  end)
end)

describe("moonbatch --version", function()
  it("prints moonbatch X.Y.Z, the library's _VERSION", function()
    local code, out = moonbatch({ "--version" })
    assert.equal(0, code)
    assert.matches("^moonbatch %d+%.%d+%.%d+[%w.-]*\n$", out)
    local version = tostring(require("moonbatch")._VERSION)
    assert.equal(version:match("(%d+%.%d+%.%d+[%w.-]*)"), out:match("(%d+%.%d+%.%d+[%w.-]*)"))
  end)
end)

describe("moonbatch --help", function()
  -- every variable named in os.getenv("...") or env("...") in the command line and the library,
  -- and each provider's key variable
  local function variables_read()
    local names = {}
    local files = capture("find lua/moonbatch -name '*.lua'; echo bin/moonbatch")
    for path in files:gmatch("[^\n]+") do
      local text = read_file(path) or ""
      for name in text:gmatch("getenv%(%s*[\"']([%w_]+)[\"']") do names[name] = true end
      for name in text:gmatch("[^%w_]env%(%s*[\"']([%w_]+)[\"']") do names[name] = true end
      for name in text:gmatch("key_env%s*=%s*[\"']([%w_]+)[\"']") do names[name] = true end
    end
    return names
  end

  it("lists every environment variable the CLI or the library reads", function()
    local names = variables_read()
    assert.is_true(names.MOONBATCH_LOG and names.MOONBATCH_PROGRESS and names.SILICONFLOW_API_KEY and true)
    local _, help = moonbatch({ "--help" })
    local environment = help:match("\nenvironment:\n(.-)\n\n")
    assert.is_not_nil(environment, help)
    for name in pairs(names) do
      assert.matches("\n  " .. name .. " ", "\n" .. environment, 1, true)
    end
  end)
end)

describe("moonbatch completion", function()
  local scripts = {}
  setup(function()
    for _, sh in ipairs({ "bash", "zsh", "fish" }) do
      local code, out, err = moonbatch({ "completion", sh })
      assert.equal(0, code, err)
      scripts[sh] = dir .. "/completion." .. sh
      write_file(scripts[sh], out)
    end
  end)

  it("prints scripts that bash, zsh and fish parse", function()
    assert.is_true(succeeded(os.execute("bash -n " .. quote(scripts.bash))))
    if has("zsh") then assert.is_true(succeeded(os.execute("zsh -n " .. quote(scripts.zsh)))) end
    if has("fish") then assert.is_true(succeeded(os.execute("fish -n " .. quote(scripts.fish)))) end
  end)

  -- what bash offers for the words typed so far (the last one being completed)
  local function bash_offers(typed)
    local list = {}
    for i, w in ipairs(typed) do list[i] = quote(w) end
    local script = ("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _moonbatch; printf '%%s\\n' \"${COMPREPLY[@]}\"")
      :format(quote(scripts.bash), table.concat(list, " "), #typed - 1)
    local offered = {}
    for w in capture("bash -c " .. quote(script) .. " 2>&1"):gmatch("[^\n]+") do offered[w] = true end
    return offered
  end

  it("completes commands, job commands, options and the library's providers in bash", function()
    local offered = bash_offers({ "moonbatch", "" })
    for _, c in ipairs({ "run", "job", "validate", "upload", "files", "batches", "create", "status", "wait",
                         "cancel", "download", "delete", "completion" }) do
      assert.is_true(offered[c], c)
    end
    offered = bash_offers({ "moonbatch", "--provider", "" })
    for _, p in ipairs(require("moonbatch.client").providers) do assert.is_true(offered[p], p) end
    offered = bash_offers({ "moonbatch", "--provider", "together", "job", "" })
    assert.is_true(offered["retry-failed"] and offered.run and offered.status and offered.cancel)
    offered = bash_offers({ "moonbatch", "job", "run", "x.jsonl", "--sh" })
    assert.is_true(offered["--shard-lines"] and offered["--shard-bytes"])
    offered = bash_offers({ "moonbatch", "run", "-" })
    assert.is_true(offered["--output"] and offered["--allow-http"] and offered["--no-validate"])
    assert.is_nil(offered["--shard-lines"])
  end)

  it("loads in zsh's completion system and completes in fish", function()
    if has("zsh") then
      local out = capture(("zsh -c %s 2>&1"):format(quote(("autoload -U compinit; compinit -u -d %s; source %s; " ..
        "print -r -- ${_comps[moonbatch]}"):format(quote(dir .. "/zcompdump"), quote(scripts.zsh)))))
      assert.equal("_moonbatch\n", out)
    end
    if has("fish") then
      local function fish_offers(typed)
        local offered = {}
        local out = capture(("fish -c %s 2>&1"):format(quote(("source %s; complete -C %s")
          :format(quote(scripts.fish), quote(typed)))))
        for w in out:gmatch("([^\t\n]+)[^\n]*\n") do offered[w] = true end
        return offered
      end
      local offered = fish_offers("moonbatch --provider ")
      for _, p in ipairs(require("moonbatch.client").providers) do assert.is_true(offered[p], p) end
      offered = fish_offers("moonbatch job ")
      assert.is_true(offered["retry-failed"] and offered.run and offered.status and offered.cancel)
      assert.is_true(fish_offers("moonbatch job run x --sh")["--shard-lines"])
      assert.is_nil(fish_offers("moonbatch run x --sh")["--shard-lines"])
      assert.is_true(fish_offers("moonbatch run x --no")["--no-validate"])
    end
  end)

  it("names the library's providers in the zsh and fish scripts", function()
    for _, sh in ipairs({ "zsh", "fish" }) do
      local text = read_file(scripts[sh])
      assert.matches("siliconflow siliconflow%-global together openai", text)
      assert.matches("allow%-http", text)
      assert.matches("retry%-failed", text)
    end
  end)

  it("refuses a shell it does not know with a usage error", function()
    local code, out, err = moonbatch({ "completion", "tcsh" })
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("no completion for 'tcsh'", err)
  end)
end)

describe("make man", function()
  it("writes build/man/moonbatch.1 from the help texts, which groff and man render without warnings", function()
    assert.is_true(succeeded(os.execute("make -s man >/dev/null")))
    local page = read_file("build/man/moonbatch.1")
    assert.matches("^%.\\\" moonbatch%(1%)", page)
    assert.matches("\n%.TH MOONBATCH 1 ", page)
    local warnings = capture("groff -man -Tutf8 -ww -z build/man/moonbatch.1 2>&1")
    assert.equal("", warnings)
    local shown = capture("MANWIDTH=100 man -l -P cat build/man/moonbatch.1 2>&1")
    local _, help = moonbatch({ "--help" })
    -- every command and option of the help is on the page, and every variable
    for flag in help:gmatch("\n  (%-%-[%w-]+)") do assert.matches(flag, shown, 1, true) end
    for row in help:match("\ncommands:\n(.-)\n\n"):gmatch("[^\n]+") do
      local c = row:match("^  (%S+)")
      if c then assert.matches("moonbatch " .. c, shown, 1, true) end
    end
    for name in help:match("\nenvironment:\n(.-)\n\n"):gmatch("\n?  ([%u_]+) ") do
      assert.matches(name, shown, 1, true)
    end
    for _, heading in ipairs({ "NAME", "SYNOPSIS", "COMMANDS", "COMMON OPTIONS", "ENVIRONMENT" }) do
      assert.matches("\n" .. heading .. "\n", shown, 1, true)
    end
    assert.matches("%-%-shard%-lines N", shown)
    assert.is_nil(shown:find("\\", 1, true), "a troff escape shown as is")
  end)
end)

describe("with the stand-in", function()
  local s, good

  setup(function()
    s = standin.start({ key = KEY })
    good = dir .. "/requests.jsonl"
    write_file(good, line("r1") .. line("r2") .. line("r3"))
  end)
  teardown(function() if s then s:stop() end end)

  local function on(args, env)
    local e = { MOONBATCH_API_KEY = KEY, MOONBATCH_BASE_URL = s.urls.siliconflow }
    for k, v in pairs(env or {}) do e[k] = v end
    return moonbatch(args, e)
  end

  describe("moonbatch download ID -", function()
    it("writes the file's bytes to standard output, and nothing else there", function()
      local code, out, err = on({ "upload", good, "--json" })
      assert.equal(0, code, err)
      local id = require("cjson").decode(out).id
      code, out, err = on({ "download", id, "-" })
      assert.equal(0, code, err)
      assert.equal(read_file(good), out)
      assert.matches("wrote standard output %(", err)
      code, out = on({ "download", id, "-", "--json" })
      assert.equal(0, code)
      assert.equal(read_file(good), out)
      assert.is_nil(io.open("-", "rb"), "a file named - was made")
    end)

    it("writes nothing to standard output when the download fails", function()
      -- on openai: siliconflow waits out a 404 for a minute (a result file may appear late)
      local code, out, err = on({ "download", "file-missing", "-" },
        { MOONBATCH_PROVIDER = "openai", MOONBATCH_BASE_URL = s.urls.openai })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("404", err)
    end)
  end)

  describe("on a 40-column terminal", function()
    local socket
    after_each(function()
      if socket then os.execute("tmux -S " .. quote(socket) .. " kill-server >/dev/null 2>&1") end
      socket = nil
    end)

    -- run moonbatch in a 40x10 tmux window; the rows of its screen once it has finished
    local function on_screen(args)
      socket = dir .. "/tmux40.socket"
      local env = ("TERM=xterm MOONBATCH_API_KEY=%s MOONBATCH_BASE_URL=%s"):format(KEY, quote(s.urls.siliconflow))
      local command = ("%s %s %s %s; echo __END__ $?; sleep 60"):format(subprocess.CLEAN_ENV, env, MOONBATCH, words(args))
      assert(succeeded(os.execute(("TERM=xterm tmux -S %s -f /dev/null new-session -d -s mb -x 40 -y 10 %s")
        :format(quote(socket), quote(command)))))
      local screen
      for _ = 1, 600 do
        screen = capture(("tmux -S %s capture-pane -p -J -t mb -S -100 2>/dev/null"):format(quote(socket)))
        if screen:find("__END__", 1, true) then break end
        os.execute("sleep 0.05")
      end
      local rows = {}
      for row in screen:gmatch("([^\n]*)\n") do rows[#rows + 1] = row end
      return rows, screen
    end

    it("keeps each bar on one line, with its percent and counts", function()
      if not has("tmux") then return pending("tmux is not installed") end
      local big = dir .. "/a-long-name-for-a-batch-input-file.jsonl"
      local chunks = {}
      for i = 1, 2000 do chunks[i] = line("big" .. i, '"note":"' .. ("x"):rep(900) .. '",') end
      write_file(big, table.concat(chunks))
      local rows, screen = on_screen({ "upload", big })
      assert.matches("__END__ 0", screen, 1, true)
      local bar
      for _, row in ipairs(rows) do
        -- -J joins wrapped rows: a bar longer than the window would show here (the plain
        -- messages may wrap, as any command's do)
        if row:find("%%") or row:find("^uploading") then
          assert.is_true(#row <= 40, ("%d columns: %q"):format(#row, row))
          bar = row
        end
      end
      assert.is_not_nil(bar, screen)
      assert.matches("100%%  %d+%.%d MiB / %d+%.%d MiB", bar)
      assert.matches("%.%.%.", bar) -- the name shortened
    end)
  end)
end)

describe("moonbatch.progress at 40 columns", function()
  local progress = require("moonbatch.progress")

  local function last_drawing(text)
    return (text:match("([^\r\n]*)\n?$"):gsub("\27%[K", ""))
  end

  it("drops the bar, the rate and the time left before the percent and the counts", function()
    local sink = { text = "" }
    function sink.write(self, t) self.text = self.text .. t end
    function sink.flush() end
    local clock = { now = 100 }
    local r = progress.new({ stream = sink, tty = true, width = 40, clock = function() return clock.now end })
    local t = r:transfer("uploading a-very-long-file-name-indeed.jsonl", 1000 * 1024 * 1024)
    clock.now = 101
    t:update(300 * 1024 * 1024, 1000 * 1024 * 1024)
    local drawn = last_drawing(sink.text)
    assert.is_true(#drawn <= 39, drawn)
    assert.matches("30%%  300%.0 MiB / 1000%.0 MiB$", drawn)
    assert.matches("^%S", drawn)
    t:finish(true)
    drawn = last_drawing(sink.text)
    assert.is_true(#drawn <= 39, drawn)
    assert.matches("100%%  1000%.0 MiB / 1000%.0 MiB", drawn)
    local st = r:status("batch batch_0123456789abcdef")
    st:update("in_progress 1500/5000", 0.3, "x")
    drawn = last_drawing(sink.text)
    assert.is_true(#drawn <= 39, drawn)
    assert.matches("in_progress 1500/5000  30%%", drawn)
  end)
end)
