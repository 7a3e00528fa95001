-- spec/download_cleanup_spec.lua: a download's temporary .part file is removed on every way out
-- (issue 13, item 9): an error returned, an error raised through the call (on_progress raising,
-- Ctrl-C's "interrupted!" in a plain lua5.4 script), a scheduler task stopped or ended by an
-- error, a rename that fails; and an existing target is left as it was.
local moonbatch = require("moonbatch")
local core = require("moonbatch.core")
local fixture = require("spec.support.fixture")
local shell = require("spec.support.shell")

local KEY = "sk-standin"
local CHILD_CPATH = "build/5.4/?.so" -- the children run lua5.4, whichever Lua runs the spec

describe("an interrupted download", function()
  local s, c, dir, file_id, content_path, cpath

  -- the .part files in dir
  local function parts()
    local out = shell.capture("ls -a " .. shell.quote(dir))
    local found = {}
    for name in out:gmatch("[^\n]+") do
      if name:match("%.part$") then found[#found + 1] = name end
    end
    return found
  end

  local function wait_for(pred, seconds)
    local ends = core.now() + seconds
    while core.now() < ends do
      if pred() then return true end
      core.sleep(0.02)
    end
    return pred()
  end

  local input_text
  fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)
  setup(function()
    cpath = CHILD_CPATH
    local line = '{"custom_id":"%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n'
    local lines = {}
    for i = 1, 200 do lines[i] = line:format(i) end
    input_text = table.concat(lines)
  end)
  before_each(function()
    os.execute("rm -rf " .. shell.quote(dir) .. "/*")
    c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY, max_retries = 0 })
    local input = dir .. "/input.jsonl"
    shell.write_file(input, input_text)
    file_id = assert(c.files.upload({ file = input })).id
    content_path = "/siliconflow/v1/files/" .. file_id .. "/content"
    os.remove(input)
    shell.write_file(dir .. "/target.jsonl", "the old content\n")
  end)

  local function assert_clean()
    assert.same({}, parts())
    assert.equal("the old content\n", shell.read_file(dir .. "/target.jsonl"))
  end

  it("returning an error (the connection reset mid-body)", function()
    s:fault("GET", content_path, { { reset_after = 100 } })
    local got, _, info = c.files.download(file_id, dir .. "/target.jsonl")
    assert.is_nil(got)
    assert.equal("network", info.kind)
    assert_clean()
  end)

  it("on_progress raising: the error reaches the caller, the .part goes", function()
    s:fault("GET", content_path, { { drip = { bytes = 64, every = 0.05 } } })
    local saw_part = false
    local ok, err = pcall(c.files.download, file_id, dir .. "/target.jsonl", {
      on_progress = function(done)
        if done > 0 then
          saw_part = #parts() > 0
          error("stop here")
        end
      end,
    })
    assert.is_false(ok)
    assert.matches("stop here", tostring(err), 1, true)
    assert.is_true(saw_part, "no .part existed when on_progress raised")
    assert_clean()
  end)

  it("a client's own on_progress raising (a table as the error value, kept as it is)", function()
    s:fault("GET", content_path, { { drip = { bytes = 64, every = 0.05 } } })
    local value = { reason = "mine" }
    local raising = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY, max_retries = 0,
      on_progress = function(done) if done > 0 then error(value) end end })
    local ok, err = pcall(raising.files.download, file_id, dir .. "/target.jsonl")
    assert.is_false(ok)
    assert.equal(value, err)
    assert_clean()
  end)

  it("a rename that fails (the target is a folder): kind io, the .part goes, the folder stays", function()
    os.execute("mkdir -p " .. shell.quote(dir .. "/folder/inside"))
    local got, msg, info = c.files.download(file_id, dir .. "/folder")
    assert.is_nil(got)
    assert.equal("io", info.kind)
    assert.matches("cannot move the download into place", msg, 1, true)
    assert.same({}, parts())
    assert.is_true(shell.exists(dir .. "/folder/inside"))
  end)

  it("a scheduler task stopped while its download runs (another task's error ends the run)", function()
    s:fault("GET", content_path, { { drip = { bytes = 64, every = 0.05 } } })
    local ok, err = pcall(moonbatch.concurrently, {
      function() return c.files.download(file_id, dir .. "/target.jsonl") end,
      function()
        require("moonbatch.scheduler").sleep(0.5)
        error("the other task fails")
      end,
    })
    assert.is_false(ok)
    assert.matches("the other task fails", tostring(err), 1, true)
    assert_clean()
  end)

  it("a scheduler task whose download's on_progress raises", function()
    s:fault("GET", content_path, { { drip = { bytes = 64, every = 0.05 } } })
    local ok, err = pcall(moonbatch.concurrently, {
      function()
        return c.files.download(file_id, dir .. "/target.jsonl", {
          on_progress = function(done) if done > 0 then error("stop in a task") end end })
      end,
    })
    assert.is_false(ok)
    assert.matches("stop in a task", tostring(err), 1, true)
    assert_clean()
  end)

  -- in a child: `lua` runs body with `c` and `target`; its output
  local function child(lua, lua_cpath, body)
    local script = dir .. "/child.lua"
    shell.write_file(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local moonbatch = require("moonbatch")
      local c = moonbatch.new({ base_url = %q, api_key = %q, max_retries = 0 })
      local target, id = %q, %q
      %s
    ]]):format(lua_cpath, s.urls.siliconflow, KEY, dir .. "/target.jsonl", file_id, body))
    return shell.capture(("timeout 20 %s %s 2>&1; echo \"exit $?\""):format(lua, shell.quote(script)))
  end

  for _, lua in ipairs({ { "lua5.1", "build/5.1/?.so" }, { "luajit", "build/5.1/?.so" }, { "lua5.4", "build/5.4/?.so" } }) do
    it(("in a task under %s (where pcall may not yield): a raise and a stop both remove the .part"):format(lua[1]), function()
      if not shell.succeeded(os.execute("command -v " .. lua[1] .. " >/dev/null && test -f " .. lua[2]:gsub("%?", "moonbatch/core"))) then
        return pending(lua[1] .. " or its build is missing")
      end
      s:fault("GET", content_path, { { drip = { bytes = 64, every = 0.05 }, count = 2 } })
      local out = child(lua[1], lua[2], [[
        local ok, err = pcall(moonbatch.concurrently, { function()
          return c.files.download(id, target, { on_progress = function(done) if done > 0 then error("raised") end end })
        end })
        io.write("1 ", tostring(ok), " ", tostring(err), "\n")
        ok, err = pcall(moonbatch.concurrently, {
          function() return c.files.download(id, target) end,
          function() require("moonbatch.scheduler").sleep(0.5); error("stopped") end,
        })
        io.write("2 ", tostring(ok), " ", tostring(err), "\n")
      ]])
      assert.matches("1 false [^\n]*raised", out)
      assert.matches("2 false [^\n]*stopped", out)
      assert.matches("exit 0", out, 1, true)
      assert_clean()
    end)
  end

  it("Ctrl-C in a plain lua5.4 script: 'interrupted!' as lua.c says it, no .part left", function()
    s:fault("GET", content_path, { { drip = { bytes = 16, every = 0.1 } } })
    local script, err = dir .. "/ctrlc.lua", dir .. "/ctrlc.err"
    shell.write_file(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local c = require("moonbatch").new({ base_url = %q, api_key = %q, max_retries = 0 })
      c.files.download(%q, %q, { on_progress = function(done)
        if done > 0 then io.stderr:write("receiving\n") end
      end })
      io.stderr:write("the download returned\n")
    ]]):format(cpath, s.urls.siliconflow, KEY, file_id, dir .. "/target.jsonl"))
    local pid = tonumber(shell.capture(("lua5.4 %s </dev/null >/dev/null 2>%s & echo $!")
      :format(shell.quote(script), shell.quote(err))))
    assert.is_true(wait_for(function() return (shell.read_file(err) or ""):find("receiving", 1, true) ~= nil end, 10))
    assert.is_true(#parts() > 0, "no .part while the download runs")
    os.execute("kill -INT " .. pid)
    assert.is_true(wait_for(function() return not shell.alive(pid) end, 10), "still running after SIGINT")
    local said = shell.read_file(err) or ""
    assert.matches("interrupted!", said, 1, true)
    assert.is_nil(said:find("the download returned", 1, true))
    os.remove(script)
    os.remove(err)
    assert_clean()
  end)
end)
