-- spec/url_guard_spec.lua: the plain-HTTP guard decides on the host libcurl connects to (issue 13,
-- item 1): base_url, MOONBATCH_BASE_URL and a result URL given to files.download are parsed by
-- libcurl's own parser (core.parse_url); only 127.0.0.0/8, localhost and [::1] count as this
-- machine; a base URL with a user name or password (or a query or fragment) is refused.
local moonbatch = require("moonbatch")
local client = require("moonbatch.client")
local core = require("moonbatch.core")
local fixture = require("spec.support.fixture")
local shell = require("spec.support.shell")

local KEY = "sk-standin"
local CHILD_CPATH = "build/5.4/?.so" -- the children run lua5.4, whichever Lua runs the spec

-- URLs that must not pass as this machine: userinfo, fragment and query tricks, look-alike
-- names, IPv4-mapped IPv6, and the unparsable
local refused = {
  "http://127.0.0.1@example.invalid/v1", "http://127.0.0.1.example.invalid/v1",
  "http://127.evil.invalid/v1", "http://localhost.evil.invalid", "http://localhost.evil.invalid/v1",
  "http://[::1]@evil.invalid", "http://user:pw@127.0.0.1/v1", "http://user@127.0.0.1/v1",
  "http://:pw@localhost/v1", "http://evil.invalid#@127.0.0.1", "http://evil.invalid?@127.0.0.1",
  "http://127.0.0.1\\@evil.invalid", "http://127.0.0.1:80@evil.invalid/", "http://[::ffff:127.0.0.1]/",
  "http://127.0.0.1:99999/", "http://127.0.0.1 /v1", "http:// 127.0.0.1/v1", "http://", "http:///v1",
  "http://127.0.0.256/", "http://localhost./v1", "http://sub.localhost/v1", "http://[::1%25lo]/",
  "http://0.0.0.0/", "http://128.0.0.1/", "127.0.0.1/v1", "localhost:8080/v1", "ftp://127.0.0.1/",
  "file:///etc/passwd", "", "http://127.0.0.1/v1?x=@evil.invalid", "http://127.0.0.1/v1#frag",
}

-- URLs libcurl connects to this machine with: accepted
local accepted = {
  "http://127.0.0.1/v1", "http://127.0.0.1:8080/v1", "HTTP://LOCALHOST:8080/v1", "http://localhost/v1",
  "http://[::1]:8/v1", "http://[0:0:0:0:0:0:0:1]/v1", "http://127.1.2.3/v1", "http://0x7f.1/",
  "http://2130706433/", "http://0177.0.0.1/", "http://127.0.0.%31/", "https://api.example.com/v1",
}

describe("the plain-HTTP guard", function()
  describe("for base_url", function()
    for _, url in ipairs(refused) do
      it(("refuses %q"):format(url), function()
        local ok, err = pcall(moonbatch.new, { base_url = url, api_key = KEY })
        assert.is_false(ok)
        assert.matches("^moonbatch.new: bad base_url: ", tostring(err))
      end)
    end
    for _, url in ipairs(accepted) do
      it(("accepts %q"):format(url), function()
        assert.truthy(moonbatch.new({ base_url = url, api_key = KEY }))
      end)
    end

    it("names the reason: the host libcurl would connect to, the scheme, the userinfo, the parse", function()
      local function why(url) return select(2, pcall(moonbatch.new, { base_url = url })) end
      assert.matches("user name or password (user:password@...) is refused (this one connects to example.invalid)",
        why("http://127.0.0.1@example.invalid/v1"), 1, true)
      assert.matches("plain HTTP to 127.0.0.1.example.invalid ", why("http://127.0.0.1.example.invalid/v1"), 1, true)
      assert.matches("plain HTTP to evil.invalid ", why("http://evil.invalid#@127.0.0.1"), 1, true)
      assert.matches("is not an http(s) URL", why("ftp://127.0.0.1/"), 1, true)
      assert.matches("user name or password", why("http://user:pw@127.0.0.1/v1"), 1, true)
      assert.is_nil(why("http://user:hunter2@127.0.0.1/v1"):find("hunter2", 1, true))
      assert.matches("is not a URL libcurl can use %(.*[Pp]ort", why("http://127.0.0.1:99999/"))
      assert.matches("is not a URL libcurl can use", why("http://127.0.0.1 /v1"), 1, true)
      local broken = why("http://user:hunter2@127.0.0.1:99999/v1")
      assert.matches("is not a URL libcurl can use", broken, 1, true)
      assert.is_nil(broken:find("hunter2", 1, true))
    end)

    it("refuses userinfo even over https or with allow_http", function()
      assert.has_error(function() moonbatch.new({ base_url = "https://u:p@api.example.com/v1" }) end)
      assert.has_error(function() moonbatch.new({ base_url = "http://u@example.invalid/v1", allow_http = true }) end)
      assert.truthy(moonbatch.new({ base_url = "http://example.invalid/v1", allow_http = true }))
    end)

    it("applies to MOONBATCH_BASE_URL as to the option", function()
      local script = shell.tmpname(".lua")
      shell.write_file(script, ([[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = %q .. ";" .. package.cpath
        local ok, err = pcall(require("moonbatch").new, {})
        io.write(ok and "accepted" or tostring(err))
      ]]):format(CHILD_CPATH))
      local function run(url)
        return shell.capture(("MOONBATCH_BASE_URL=%s timeout 20 lua5.4 %s 2>&1")
          :format(shell.quote(url), shell.quote(script)))
      end
      assert.matches("bad base_url: .*connects to example.invalid", run("http://127.0.0.1@example.invalid/v1"))
      assert.matches("bad base_url: plain HTTP to 127.evil.invalid", run("http://127.evil.invalid/v1"), 1, true)
      assert.equal("accepted", run("http://localhost:8080/v1"))
      os.remove(script)
    end)
  end)

  it("core.parse_url gives the host as libcurl normalises it", function()
    assert.equal("127.0.0.1", core.parse_url("http://0x7f.1/").host)
    assert.equal("127.0.0.1", core.parse_url("http://2130706433/").host)
    assert.equal("example.invalid", core.parse_url("http://127.0.0.1@example.invalid/v1").host)
    assert.equal("127.0.0.1", core.parse_url("http://127.0.0.1@example.invalid/v1").user)
    assert.equal(8080, core.parse_url("HTTP://LOCALHOST:8080/v1").port)
    assert.equal(443, core.parse_url("https://x.example/").port)
    local none, msg = core.parse_url("http://127.0.0.1:99999/")
    assert.is_nil(none)
    assert.is_string(msg)
    assert.has_error(function() core.parse_url(nil) end)
  end)

  it("client.insecure answers for any URL the same way", function()
    for _, url in ipairs(refused) do
      if not url:find("[?#]") then assert.is_string(client.insecure(url, false, true), url) end
    end
    for _, url in ipairs(accepted) do assert.is_nil(client.insecure(url, false, true), url) end
  end)

  describe("where libcurl connects", function()
    local s, dir
    fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)

    it("a loopback address in another spelling reaches the stand-in on 127.0.0.1 (accepted, sent there)", function()
      for _, host in ipairs({ "0x7f.1", "2130706433", "127.1", "localhost" }) do
        local url = ("http://%s:%d/siliconflow/v1"):format(host, s.port)
        local c = moonbatch.new({ base_url = url, api_key = KEY, max_retries = 0 })
        local page, msg = c.files.list()
        assert.truthy(page, msg)
      end
      assert.equal(4, #s:log())
    end)

    it("a URL naming 127.0.0.1 but connecting elsewhere is refused, and nothing reaches the stand-in", function()
      for _, form in ipairs({ "http://127.0.0.1@example.invalid:%d/siliconflow/v1",
                              "http://127.0.0.1:%d@example.invalid/siliconflow/v1",
                              "http://example.invalid:%d#@127.0.0.1/siliconflow/v1",
                              "http://127.0.0.1.example.invalid:%d/siliconflow/v1" }) do
        local url = form:format(s.port)
        assert.has_error(function() moonbatch.new({ base_url = url, api_key = KEY }) end, nil, url)
      end
      -- and libcurl itself, given such a URL, does go elsewhere: it never reaches 127.0.0.1
      local body = core.request({ url = ("http://127.0.0.1@example.invalid:%d/siliconflow/v1/files"):format(s.port),
                                  timeout = 5, connect_timeout = 5 })
      assert.is_nil(body)
      assert.same({}, s:log())
    end)

    it("files.download checks a result URL the same way before sending anything", function()
      local c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY, max_retries = 0 })
      for _, url in ipairs({ "http://127.0.0.1@example.invalid/r.jsonl",
                             ("http://127.0.0.1.example.invalid:%d/r"):format(s.port),
                             "http://127.evil.invalid/r", "http://evil.invalid#@127.0.0.1/r",
                             "http://[::ffff:127.0.0.1]/r", "HTTP://files.example.invalid/r",
                             "ftp://127.0.0.1/r", ("http://u:p@127.0.0.1:%d/r"):format(s.port) }) do
        local target = dir .. "/r.jsonl"
        local got, msg, info = c.files.download(url, target)
        assert.is_nil(got, url)
        assert.equal("validation", info.kind, url)
        assert.is_string(msg)
        assert.is_false(shell.exists(target))
      end
      assert.same({}, s:log())
      -- a loopback result URL, in libcurl's other spelling, is fetched (the stand-in answers 401:
      -- the key goes only to base_url)
      c.files.download(("http://0x7f.1:%d/siliconflow/v1/files"):format(s.port), dir .. "/list.json")
      assert.equal(1, #s:log())
    end)
  end)
end)
