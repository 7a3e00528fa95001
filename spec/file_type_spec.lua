-- spec/file_type_spec.lua: a FIFO, a folder, a device, a socket or a symlink to a FIFO given as
-- an input never blocks and is refused with kind "io" and "cannot read 'PATH': not a regular
-- file (...)" (issue 13, item 11). Each entry point runs in a child under `timeout 10`, so a
-- regression fails (exit 124) instead of hanging the suite.
local fixture = require("spec.support.fixture")
local shell = require("spec.support.shell")
local cli = require("spec.support.moonbatch_cli")

local KEY = "sk-standin"
local CHILD_CPATH = "build/5.4/?.so" -- the children run lua5.4, whichever Lua runs the spec

describe("non-regular input files", function()
  local s, dir, cpath
  local paths = {}

  fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)
  setup(function()
    cpath = CHILD_CPATH
    paths.fifo = dir .. "/in.fifo"
    paths.link = dir .. "/link-to-fifo.jsonl"
    paths.folder = dir .. "/a-folder"
    paths.zero = "/dev/zero"
    paths.socket = dir .. "/a.sock"
    assert(shell.succeeded(os.execute(("mkfifo %s && ln -s %s %s && mkdir %s"):format(shell.quote(paths.fifo),
      shell.quote(paths.fifo), shell.quote(paths.link), shell.quote(paths.folder)))))
    -- a Unix socket file, if a tool here can make one (python3's socket module)
    if not shell.succeeded(os.execute(("python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' %s 2>/dev/null")
      :format(shell.quote(paths.socket)))) then
      paths.socket = nil
    end
  end)
  -- run `body` (Lua using `c`, a client, and `path`) in a child under timeout 10: its stdout,
  -- and the exit code
  local function child(body, path)
    local script = dir .. "/child.lua"
    shell.write_file(script, ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local moonbatch = require("moonbatch")
      local core = require("moonbatch.core")
      local c = moonbatch.new({ base_url = %q, api_key = %q, max_retries = 0 })
      local path = %q
      local function show(ok, msg, info)
        io.write(tostring(ok), "\n", tostring(msg), "\n", tostring(info and info.kind), "\n")
      end
      %s
    ]]):format(cpath, s.urls.siliconflow, KEY, path, body))
    local out = shell.capture(("timeout 10 lua5.4 %s 2>&1; echo \"exit $?\""):format(shell.quote(script)))
    return out, tonumber(out:match("exit (%d+)%s*$"))
  end

  local entry_points = {
    { "files.upload", "show(c.files.upload({ file = path }))" },
    { "files.upload without validation", "show(c.files.upload({ file = path, validate = false }))" },
    { "files.upload_many", "local r = c.files.upload_many({ { file = path } }); show(r[1].file, r[1].error, r[1].info)" },
    { "moonbatch.validate", "show(moonbatch.validate(path))" },
    { "core.validate", "show(core.validate(path))" },
    { "core.checksum", "show(core.checksum(path))" },
    { "core.files.upload", [[show(core.request(core.files.upload({ base_url = c.base_url, api_key = "x",
      path = "/files", file = path, prepare = true })))]] },
    { "core.files.upload with a validated part", [[
      local req = core.files.upload({ base_url = c.base_url, api_key = "x", path = "/files", file = path, prepare = true })
      for _, part in ipairs(req.form) do if part.file then part.validate = {} end end
      show(core.request(req))]] },
    { "a job's input", [[show(require("moonbatch.job").run(c, { input = path, results = path .. ".out.jsonl" }))]] },
  }

  for _, kind in ipairs({ "fifo", "link", "folder", "zero", "socket" }) do
    for _, ep in ipairs(entry_points) do
      it(("%s refuses %s at once, kind io, naming the file"):format(ep[1], kind), function()
        local path = paths[kind]
        if not path then return pending("cannot make a " .. kind .. " here") end
        local out, code = child(ep[2], path)
        assert.are_not.equal(124, code, "blocked: killed by timeout\n" .. out)
        local ok, msg, k = out:match("^(.-)\n(.-)\n(.-)\n")
        if not ok then
          -- a job raises its failures
          assert.matches("not a regular file", out, 1, true)
          assert.matches(path, out, 1, true)
          return
        end
        assert.equal("nil", ok, out)
        assert.equal("io", k, out)
        assert.matches("cannot read '" .. path .. "': not a regular file (", msg, 1, true)
        assert.same({}, s:log())
      end)
    end

    for _, command in ipairs({ { "validate" }, { "upload" }, { "upload", "--no-validate" }, { "run" } }) do
      it(("the CLI's %s refuses %s at once"):format(table.concat(command, " "), kind), function()
        local path = paths[kind]
        if not path then return pending("cannot make a " .. kind .. " here") end
        local words = {}
        for i, w in ipairs(command) do words[i] = w end
        words[#words + 1] = path
        if command[1] == "run" then
          words[#words + 1] = "-o"
          words[#words + 1] = dir .. "/run-out.jsonl"
        end
        local out = shell.capture(("%s SILICONFLOW_API_KEY=%s MOONBATCH_BASE_URL=%s MOONBATCH_PROGRESS=never " ..
          "timeout 10 %s %s 2>&1 </dev/null; echo \"exit $?\""):format(cli.CLEAN_ENV, KEY,
          shell.quote(s.urls.siliconflow), cli.command(), shell.words(words)))
        local code = tonumber(out:match("exit (%d+)%s*$"))
        assert.are_not.equal(124, code, "blocked: killed by timeout\n" .. out)
        assert.equal(1, code, out)
        assert.matches("cannot read '" .. path .. "': not a regular file (", out, 1, true)
        assert.same({}, s:log())
      end)
    end
  end
end)
