-- spec/terminal_spec.lua: text from the network never drives the user's terminal. A server's
-- error message, file names, ids, statuses, batch errors and metadata may carry window-title
-- (OSC 0/2), clear-screen (CSI 2J), clipboard (OSC 52) sequences, BEL, backspace and CR
-- overwrites, C1 controls (the 8-bit CSI U+009B), DEL and bidi overrides: the library's msg and
-- every line the CLI prints show them as visible escapes, and --json stays valid JSON.
local cjson = require("cjson")
local errors = require("moonbatch.errors")
local fixture = require("spec.support.fixture")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")

local KEY = "sk-terminal-spec-key"

-- each hostile piece, valid UTF-8 (a JSON reply can carry it)
local HOSTILE = {
  osc0_title = "\27]0;PWNED-TITLE\7",
  osc2_title = "\27]2;PWNED-TITLE2\27\\",
  clear_screen = "\27[2J\27[H",
  clipboard = "\27]52;c;cHduZWQ=\7",
  bel = "\7\7",
  backspace = "abc\8\8\8XYZ",
  cr_overwrite = "real text\rFAKE",
  c1_csi = "\194\155" .. "2J",          -- U+009B, the 8-bit CSI
  c1_osc = "\194\157" .. "0;C1TITLE\194\156", -- U+009D OSC ... U+009C ST
  c1_dcs = "\194\144" .. "q\194\156",   -- U+0090 DCS
  del = "x\127y",
  bidi_rlo = "\226\128\174" .. "txt.exe", -- U+202E
  bidi_lre = "\226\128\170\226\128\171\226\128\172\226\128\173", -- U+202A-U+202D
  bidi_isolates = "\226\129\166\226\129\167\226\129\168\226\129\169", -- U+2066-U+2069
  marks = "\226\128\142\226\128\143\216\156", -- U+200E, U+200F, U+061C
  separators = "\226\128\168\226\128\169", -- U+2028, U+2029
  vt_ff = "\11\12",
  nul = "a\0b",
}
local ALL = {}
for _, name in ipairs((function()
  local names = {}
  for n in pairs(HOSTILE) do names[#names + 1] = n end
  table.sort(names)
  return names
end)()) do ALL[#ALL + 1] = HOSTILE[name] end
ALL = table.concat(ALL, " ")

-- the code point at s[i] and its length, or nil when not UTF-8
local function utf8_at(s, i)
  local c = s:byte(i)
  if c < 0x80 then return c, 1 end
  local n = c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and 2 or nil
  if not n or c > 0xF4 then return nil end
  local cp = c % (2 ^ (7 - n))
  for k = 1, n - 1 do
    local cc = s:byte(i + k)
    if not cc or cc < 0x80 or cc > 0xBF then return nil end
    cp = cp * 64 + cc - 0x80
  end
  return cp, n
end

-- the first thing in `s` a terminal would act on (anything but newline and tab), or nil
local function unsafe(s)
  local i = 1
  while i <= #s do
    local cp, n = utf8_at(s, i)
    if not cp then return ("byte 0x%02x at %d (not UTF-8)"):format(s:byte(i), i) end
    if (cp < 0x20 and cp ~= 10 and cp ~= 9) or (cp >= 0x7F and cp <= 0x9F) or cp == 0x061C
      or cp == 0x200E or cp == 0x200F or (cp >= 0x2028 and cp <= 0x202E)
      or (cp >= 0x2066 and cp <= 0x2069) then
      return ("U+%04X at %d"):format(cp, i)
    end
    i = i + n
  end
  return nil
end

local function assert_safe(s, what)
  local found = unsafe(s)
  assert.is_nil(found, ("%s: %s in %q"):format(what, tostring(found), s))
end

describe("terminal safety", function()
  describe("errors.printable", function()
    for name, text in pairs(HOSTILE) do
      it("escapes " .. name, function()
        local shown = errors.printable("<" .. text .. ">")
        assert_safe(shown, name)
        assert.equal("<", shown:sub(1, 1))
        assert.equal(">", shown:sub(-1))
        assert.truthy(shown:find("\\", 1, true), shown) -- visibly escaped, not silently dropped
      end)
    end

    it("escapes bytes that are not UTF-8, the 8-bit CSI 0x9B among them", function()
      for b = 0x80, 0xFF do
        assert_safe(errors.printable("a" .. string.char(b) .. "[2J"), ("byte 0x%02x"):format(b))
      end
      assert.equal("\\x9b[2J", errors.printable("\155[2J"))
      assert.equal("\\xc0\\xaf", errors.printable("\192\175")) -- an overlong '/'
      assert.equal("\\xed\\xa0\\x80", errors.printable("\237\160\128")) -- a UTF-16 surrogate
    end)

    it("leaves printable text as it is: ASCII, accents, CJK, emoji", function()
      for _, s in ipairs({ "plain text: 100% (a/b) [x] {y} ~", "café naïve", "日本語のファイル.jsonl",
                           "🙂 ok", "tab\tsep" }) do
        if s:find("\t") then
          assert.equal(s, errors.printable(s, true))
        else
          assert.equal(s, errors.printable(s))
        end
      end
      assert.equal("a\nb", errors.printable("a\nb", true))
      assert.equal("a\\x0ab", errors.printable("a\nb"))
    end)

    it("printable_json keeps JSON valid and the text the same once decoded", function()
      for name, text in pairs(HOSTILE) do
        local json = errors.printable_json(cjson.encode({ v = text }))
        assert_safe(json, name)
        assert.same({ v = text }, cjson.decode(json), name)
      end
    end)
  end)

  describe("the library's msg is one printable line", function()
    for name, text in pairs(HOSTILE) do
      it("with " .. name .. " in the provider's message", function()
        local msg, info = errors.make({ provider = "openai", method = "GET", path = "/files",
          url = "http://h/v1/files", secret = KEY }, { kind = "api", status = 400, message = "bad " .. text })
        assert_safe(msg, name)
        assert.is_nil(msg:find("\n", 1, true))
        assert.equal("bad " .. text, info.message) -- info keeps the data as it came
      end)
    end

    it("with control characters in an id of the path", function()
      local msg = errors.make({ provider = "openai", method = "GET", path = "/files/" .. ALL,
        url = "http://h/v1/files/x", secret = KEY }, { kind = "http", status = 404 })
      assert_safe(msg, "path")
    end)
  end)

  describe("the CLI against a hostile server", function()
    local s, dir
    fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)

    local function run(args, env)
      local words = { "--provider", "openai", "--base-url", s.urls.openai }
      for _, w in ipairs(args) do words[#words + 1] = w end
      local e = { OPENAI_API_KEY = KEY }
      for k, v in pairs(env or {}) do e[k] = v end
      return cli.run(dir, words, e)
    end

    local error_bodies = {
      { "a JSON error", { status = 400, content_type = "application/json",
        body = cjson.encode({ error = { message = ALL, code = ALL, type = ALL, param = ALL } }) } },
      { "plain text", { status = 500, content_type = "text/plain", body = ALL .. "\nmore" } },
      { "an HTML page", { status = 502, content_type = "text/html",
        body = "<html><title>" .. ALL .. "</title></html>" } },
      { "raw bytes (8-bit CSI, invalid UTF-8)", { status = 503, content_type = "text/plain",
        body_base64 = "m1sySiDCmzJKIBtdMDtUSVRMRQcgwP8=" } }, -- "\x9b[2J \xc2\x9b2J \x1b]0;TITLE\x07 \xc0\xff"
    }
    for _, case in ipairs(error_bodies) do
      it("prints an error reply of " .. case[1] .. " safely (text and --json)", function()
        for _, args in ipairs({ { "files" }, { "files", "--json" }, { "status", "batch_x" },
                                { "batches" }, { "download", "file-x", dir .. "/out.jsonl" } }) do
          s:reset()
          local fault = {}
          for k, v in pairs(case[2]) do fault[k] = v end
          fault.count = 10
          for _, path in ipairs({ "/openai/v1/files", "/openai/v1/batches/batch_x", "/openai/v1/batches",
                                  "/openai/v1/files/file-x/content" }) do
            s:fault("GET", path, { fault })
          end
          local code, out, err = run(args)
          assert.equal(1, code, table.concat(args, " ") .. ": " .. err)
          assert_safe(out, table.concat(args, " ") .. " stdout")
          assert_safe(err, table.concat(args, " ") .. " stderr")
          assert.truthy(err:find("moonbatch: openai GET", 1, true), err)
        end
      end)
    end

    local function file_object(i)
      return { id = "file-" .. i .. ALL, object = "file", bytes = 10, created_at = 1700000000,
               filename = ALL .. ".jsonl", purpose = "batch", status = ALL }
    end
    local function batch_object(status)
      return { id = "batch_h", object = "batch", endpoint = "/v1/chat/completions", status = status,
               input_file_id = "file-" .. ALL, output_file_id = ALL, completion_window = "24h",
               created_at = 1700000000, request_counts = { total = 1, completed = 0, failed = 1 },
               errors = { object = "list", data = { { code = ALL, message = ALL, line = 1, param = ALL } } },
               metadata = { note = ALL, [ALL] = "v" } }
    end

    it("lists files with hostile names and ids safely; --json keeps them as data", function()
      s:fault("GET", "/openai/v1/files", { { status = 200, content_type = "application/json", count = 2,
        body = cjson.encode({ object = "list", data = { file_object(1), file_object(2) }, has_more = false }) } })
      local code, out, err = run({ "files" })
      assert.equal(0, code, err)
      assert_safe(out, "files stdout")
      assert_safe(err, "files stderr")
      assert.truthy(out:find("file-1", 1, true), out)
      code, out, err = run({ "files", "--json" })
      assert.equal(0, code, err)
      assert_safe(out, "files --json stdout")
      assert_safe(err, "files --json stderr")
      local decoded = cjson.decode(out)
      local list = decoded.data or decoded
      assert.equal(ALL .. ".jsonl", list[1].filename)
      assert.equal("file-1" .. ALL, list[1].id)
    end)

    it("shows and lists batches with hostile fields safely (status, errors, metadata)", function()
      local batch = cjson.encode(batch_object(ALL))
      s:fault("GET", "/openai/v1/batches/batch_h", { { status = 200, content_type = "application/json",
        body = batch, count = 2 } })
      s:fault("GET", "/openai/v1/batches", { { status = 200, content_type = "application/json", count = 2,
        body = cjson.encode({ object = "list", data = { batch_object(ALL) }, has_more = false }) } })
      for _, args in ipairs({ { "status", "batch_h" }, { "status", "batch_h", "--json" }, { "batches" },
                              { "batches", "--json" } }) do
        local code, out, err = run(args)
        assert.equal(0, code, table.concat(args, " ") .. ": " .. err)
        assert_safe(out, table.concat(args, " ") .. " stdout")
        assert_safe(err, table.concat(args, " ") .. " stderr")
        if args[#args] == "--json" then assert.truthy(cjson.decode(out)) end
      end
    end)

    it("waits on a batch whose status is hostile: its status lines are safe", function()
      s:fault("GET", "/openai/v1/batches/batch_h", { { status = 200, content_type = "application/json",
        body = cjson.encode(batch_object("in_progress" .. ALL)), count = 50 } })
      local code, out, err = run({ "wait", "batch_h", "--interval", "0.1", "--timeout", "0.5" })
      assert.equal(1, code, err)
      assert_safe(out, "wait stdout")
      assert_safe(err, "wait stderr")
      assert.truthy(err:find("in_progress", 1, true), err)
    end)

    describe("on a terminal (tmux)", function()
      local tmux_ok = shell.succeeded(os.execute("command -v tmux >/dev/null 2>&1"))
      local socket
      after_each(function()
        if socket then
          os.execute("tmux -S " .. shell.quote(socket) .. " kill-server >/dev/null 2>&1")
          os.remove(socket)
        end
        socket = nil
      end)

      local function tmux(args)
        return shell.capture(("tmux -S %s %s 2>&1"):format(shell.quote(socket), args))
      end

      -- run moonbatch in a tmux pane after a marker line; returns the screen, the pane's title
      -- before and after, and the paste buffers (where OSC 52 would put the clipboard)
      local function on_screen(args)
        socket = dir .. "/tmux.socket"
        local words = { "--provider", "openai", "--base-url", s.urls.openai }
        for _, w in ipairs(args) do words[#words + 1] = w end
        local command = ("printf 'MARKER-BEFORE\\n'; sleep 0.3; %s TERM=xterm OPENAI_API_KEY=%s %s %s; echo __END__ $?; sleep 60")
          :format(cli.CLEAN_ENV, KEY, cli.command(), shell.words(words))
        assert(shell.succeeded(os.execute(("TERM=xterm tmux -S %s -f /dev/null new-session -d -s mb -x 120 -y 40 %s")
          :format(shell.quote(socket), shell.quote(command)))))
        os.execute(("tmux -S %s set-option -g set-clipboard on >/dev/null 2>&1"):format(shell.quote(socket)))
        os.execute("sleep 0.1")
        local title_before = tmux("display-message -p -t mb '#{pane_title}'")
        local screen
        for _ = 1, 400 do
          screen = tmux("capture-pane -p -t mb -S -100")
          if screen:find("__END__", 1, true) then break end
          os.execute("sleep 0.05")
        end
        return screen, title_before, tmux("display-message -p -t mb '#{pane_title}'"), tmux("list-buffers")
      end

      it("a hostile error leaves the title, the screen and the clipboard alone", function()
        if not tmux_ok then return pending("tmux is not installed") end
        s:fault("GET", "/openai/v1/files", { { status = 400, content_type = "application/json",
          body = cjson.encode({ error = { message = ALL } }) } })
        local screen, before, after, buffers = on_screen({ "files" })
        assert.truthy(screen:find("__END__ 1", 1, true), screen)
        assert.truthy(screen:find("MARKER-BEFORE", 1, true), "the screen was cleared:\n" .. screen)
        assert.is_nil(after:find("PWNED", 1, true), after)
        assert.is_nil(after:find("C1TITLE", 1, true), after)
        assert.equal(before, after)
        assert.is_nil(buffers:find("pwned", 1, true), buffers)
        assert.equal("", shell.trim(buffers))
        assert.truthy(screen:find("\\x1b]0;PWNED-TITLE", 1, true), screen) -- shown, escaped
      end)

      it("a hostile batch status drawn as a redrawn status line leaves the terminal alone", function()
        if not tmux_ok then return pending("tmux is not installed") end
        s:fault("GET", "/openai/v1/batches/batch_h", { { status = 200, content_type = "application/json",
          body = cjson.encode(batch_object("in_progress" .. ALL)), count = 50 } })
        local screen, before, after, buffers = on_screen({ "wait", "batch_h", "--interval", "0.1", "--timeout", "0.6" })
        assert.truthy(screen:find("__END__ 1", 1, true), screen)
        assert.truthy(screen:find("MARKER-BEFORE", 1, true), "the screen was cleared:\n" .. screen)
        assert.equal(before, after)
        assert.equal("", shell.trim(buffers))
      end)
    end)
  end)
end)
