-- spec/nvim_spec.lua: moonbatch.nvim in a real `nvim --headless` (Debian's Neovim, LuaJIT): a
-- 256 MiB upload runs while a 10 ms timer keeps firing, and the callback gets the canonical File
-- on Neovim's main loop. Runs once (Lua 5.4 run, #slow): it needs the 5.1 module build.
local standin = require("spec.standin_helper")
local shell = require("spec.support.shell")
local batch_file = require("spec.support.inputs").batch_file
local cjson = require("cjson")

local KEY = "sk-standin"
local MiB = 1024 * 1024

local function run_nvim(env)
  local out = os.tmpname()
  local words = { "env" }
  env.MOONBATCH_NVIM_OUT = out
  env.MOONBATCH_ROOT = shell.trim(shell.capture("pwd"))
  for k, v in pairs(env) do words[#words + 1] = k .. "=" .. shell.quote(v) end
  words[#words + 1] = "nvim --headless -u NONE -i NONE -n -c " .. shell.quote("luafile spec/hosts/nvim_upload.lua")
  words[#words + 1] = "</dev/null >/dev/null 2>&1"
  os.execute(table.concat(words, " "))
  local f = io.open(out, "r")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(out)
  return text ~= "" and cjson.decode(text) or { ok = false, error = "nvim wrote nothing" }
end

describe("#slow moonbatch.nvim in nvim --headless", function()
  local s, dir, path

  setup(function()
    s = standin.start({ key = KEY })
    dir = os.tmpname()
    os.remove(dir)
    assert(shell.execute("mkdir -p " .. shell.quote(dir)))
    path = dir .. "/big.jsonl"
    batch_file(path, 256)
  end)

  teardown(function()
    if dir then shell.execute("rm -rf " .. shell.quote(dir)) end
    if s then s:stop() end
  end)

  it("uploads 256 MiB while a 10 ms timer keeps at least 80% of its ticks", function()
    local r = run_nvim({ SILICONFLOW_API_KEY = KEY, MOONBATCH_NVIM_PROVIDER = "siliconflow",
                         MOONBATCH_NVIM_URL = s.urls.siliconflow, MOONBATCH_NVIM_FILE = path })
    assert.is_true(r.ok, r.error)
    assert.equal("file", r.object)
    assert.equal(256 * MiB, r.bytes)
    assert.equal("big.jsonl", r.filename)
    local log = s:log()
    assert.equal(1, #log)
    assert.equal(256 * MiB, log[1].fields.file.bytes)
    assert.is_true(r.in_main_loop, "the callback ran in a fast event, not through vim.schedule")
    local expected = math.floor(r.elapsed_ms / 10)
    print(("\n    nvim: 256 MiB in %.0f ms, %d of %d timer ticks (%.0f%%), longest gap %.1f ms")
      :format(r.elapsed_ms, r.ticks, expected, 100 * r.ticks / expected, r.worst_gap_ms))
    assert.is_true(expected >= 20, "the upload was too quick to measure anything")
    assert.is_true(r.ticks >= 0.8 * expected,
      ("the timer fired %d times of %d expected"):format(r.ticks, expected))
  end)

  it("hands an error to the callback as nil, msg, info", function()
    local r = run_nvim({ SILICONFLOW_API_KEY = KEY, MOONBATCH_NVIM_PROVIDER = "siliconflow",
                         MOONBATCH_NVIM_URL = s.urls.siliconflow, MOONBATCH_NVIM_FILE = dir .. "/missing.jsonl" })
    assert.is_false(r.ok)
    assert.equal("io", r.kind)
    assert.matches("missing%.jsonl", r.error)
    assert.is_true(r.in_main_loop)
  end)
end)
