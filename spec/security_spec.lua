-- spec/security_spec.lua: the key stays secret and traffic stays protected (TLS, no plain HTTP
-- off this machine, no redirects, a debug log with the key redacted).
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")

local KEY = "sk-standin"

describe("security", function()
  local s

  setup(function() s = standin.start({ key = KEY }) end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  it("refuses plain HTTP to another host unless allowed", function()
    assert.has_error(function() moonbatch.new({ base_url = "http://api.example.com/v1" }) end,
      "moonbatch.new: bad base_url: plain HTTP to api.example.com would send the API key and data in clear " ..
      "(use https, or allow_http = true)")
    assert.has_error(function() moonbatch.new({ base_url = "ftp://example.com" }) end)
    assert.truthy(moonbatch.new({ base_url = "http://api.example.com/v1", allow_http = true }))
    for _, url in ipairs({ "https://api.example.com/v1", "http://127.0.0.1:9/v1", "http://localhost/v1", "http://[::1]:8/v1" }) do
      assert.truthy(moonbatch.new({ base_url = url }), url)
    end
  end)

  it("refuses a plain-HTTP result URL on another host", function()
    local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY })
    local got, msg, info = c.files.download("http://files.example.com/r.jsonl", os.tmpname())
    assert.is_nil(got)
    assert.equal("validation", info.kind)
    assert.truthy(msg:find("plain HTTP", 1, true))
    assert.equal(0, #s:log())
  end)

  it("never follows a redirect, so the key cannot travel with it", function()
    s:fault("GET", "/siliconflow/v1/files", { { status = 307, body = "",
      headers = { Location = "http://127.0.0.2:" .. s.port .. "/siliconflow/v1/files?purpose=batch" } } })
    local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY, max_retries = 0 })
    local page, _, info = c.files.list()
    assert.is_nil(page)
    assert.equal(307, info.status)
    assert.equal(1, #s:log())
  end)

  it("verifies TLS peers: a self-signed server is refused", function()
    -- nothing listens with TLS here: an https URL to the plain-HTTP stand-in fails the handshake
    local c = moonbatch.new({ base_url = (s.urls.siliconflow:gsub("^http:", "https:")), api_key = KEY,
                              max_retries = 0 })
    local page, _, info = c.files.list()
    assert.is_nil(page)
    assert.equal("network", info.kind)
  end)

  it("logs each exchange under MOONBATCH_LOG=debug with the key redacted", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local c = require("moonbatch").new({ base_url = %q })
      assert(c.files.list())
    ]]):format(package.cpath:match("^[^;]+"), s.urls.siliconflow))
    f:close()
    local p = io.popen(("MOONBATCH_LOG=debug MOONBATCH_API_KEY=%s %s %s 2>&1"):format(KEY, arg[-1], script))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.truthy(out:find("moonbatch: debug: GET " .. s.urls.siliconflow .. "/files", 1, true), out)
    assert.truthy(out:find("Authorization: Bearer [redacted]", 1, true), out)
    assert.truthy(out:find("-> HTTP 200", 1, true), out)
    assert.is_nil(out:find(KEY, 1, true))
  end)
end)
