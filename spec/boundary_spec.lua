-- spec/boundary_spec.lua: the client crosses into moonbatch.core through one entry: every request
-- is built in Lua from the provider's data and sent by core.request; core.files.upload,
-- core.files.list and core.batches.create stay standalone conveniences the client never calls.
-- One upload crosses into C three times (the clock, the file's identity, the request), against
-- the stand-in over real sockets, on every provider.
local core = require("moonbatch.core")
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")

local KEY = "sk-standin"

local LINE = '{"custom_id":"r-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m",' ..
  '"messages":[{"role":"user","content":"hi"}]}}\n'

local function batch_file()
  local p = os.tmpname()
  os.remove(p)
  p = p .. ".jsonl"
  local f = assert(io.open(p, "wb"))
  for i = 1, 3 do f:write(LINE:format(i)) end
  f:close()
  return p
end

-- the names of moonbatch.core's functions, by function
local function core_names()
  local names = {}
  for k, v in pairs(core) do if type(v) == "function" then names[v] = "core." .. k end end
  for _, group in ipairs({ "files", "batches" }) do
    for k, v in pairs(core[group]) do names[v] = ("core.%s.%s"):format(group, k) end
  end
  return names
end

-- the calls into moonbatch.core `fn` makes, counted by a debug hook, and fn's results
local function crossings(fn)
  local names, counts, total = core_names(), {}, 0
  debug.sethook(function()
    local f = debug.getinfo(2, "f").func
    local name = names[f]
    if name then
      counts[name] = (counts[name] or 0) + 1
      total = total + 1
    end
  end, "c")
  local ok, a, b = pcall(fn)
  debug.sethook()
  assert(ok, a)
  return counts, total, a, b
end

describe("one boundary between the client and moonbatch.core", function()
  local s, path

  setup(function()
    s = standin.start({ key = KEY })
    path = batch_file()
  end)
  teardown(function()
    if s then s:stop() end
    if path then os.remove(path) end
  end)

  it("sends upload, list and create through core.request, never the standalone conveniences", function()
    local names = { upload = true, list = true }
    for _, provider in ipairs({ "openai", "siliconflow", "together" }) do
      local c = moonbatch.new({ provider = provider, base_url = s:url(provider), api_key = KEY,
                                sleep = function() end })
      assert(c.files.list()) -- connection made, modules loaded
      local counts = crossings(function()
        local file = assert(c.files.upload({ file = path }))
        assert(c.files.list())
        assert(c.batches.create({ input_file_id = file.id }))
      end)
      for name in pairs(names) do assert.is_nil(counts["core.files." .. name], provider .. ": core.files." .. name) end
      assert.is_nil(counts["core.batches.create"], provider .. ": core.batches.create")
      assert.are.equal(3, counts["core.request"], provider)
      c.close()
    end
  end)

  it("crosses into C three times in one files.upload: the clock, the file's identity, the request", function()
    local c = moonbatch.new({ provider = "openai", base_url = s:url("openai"), api_key = KEY })
    assert(c.files.list())
    local counts, total, file = crossings(function() return c.files.upload({ file = path }) end)
    assert.is_table(file)
    assert.are.same({ ["core.now"] = 1, ["core.file_identity"] = 1, ["core.request"] = 1 }, counts)
    assert.are.equal(3, total)
    c.close()
  end)

  it("core.file_identity refuses what is not a regular file, naming it, as before an upload", function()
    local id, size = core.file_identity(path)
    assert.is_string(id)
    assert.are.equal(3 * #LINE:format(1), size)
    local none, msg, info = core.file_identity("/nonexistent/moonbatch-boundary")
    assert.is_nil(none)
    assert.are.equal("cannot read '/nonexistent/moonbatch-boundary': No such file or directory", msg)
    assert.are.equal("io", info.kind)
    local dir, why = core.file_identity("/tmp")
    assert.is_nil(dir)
    assert.matches("^cannot read '/tmp': not a regular file", why)
  end)
end)
