-- spec/errors_spec.lua: every provider error shape becomes one message and info (moonbatch.errors).
local cjson = require("cjson")
local errors = require("moonbatch.errors")

describe("moonbatch.errors", function()
  describe("parse_body", function()
    local html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad " ..
                 "Gateway</h1></center><hr><center>nginx</center></body></html>"
    local cases = {
      { "SiliconFlow 400 {code, message, data}",
        cjson.decode('{"code":20012,"message":"Model does not exist.","data":null}'), true,
        { message = "Model does not exist.", code = "20012", recognized = true } },
      { "SiliconFlow 503 overload",
        cjson.decode('{"code":50505,"message":"Model service overloaded.","data":"retry"}'), true,
        { message = "Model service overloaded. (retry)", code = "50505", recognized = true } },
      { "SiliconFlow bare JSON string 401", "Invalid token", true,
        { message = "Invalid token", recognized = true } },
      { "OpenAI/Together error object",
        cjson.decode('{"error":{"message":"bad","type":"invalid_request_error","param":"file","code":null}}'),
        true, { message = "bad", type = "invalid_request_error", param = "file", recognized = true } },
      { "Together batch error string", cjson.decode('{"error":"job not found"}'), true,
        { message = "job not found", recognized = true } },
      { "an HTML page from a proxy", html, false, { message = "502 Bad Gateway", recognized = false } },
      { "plain text", "404 page not found\n", false, { message = "404 page not found", recognized = false } },
      { "an empty body", "", false, { recognized = false } },
      { "an unknown JSON object", cjson.decode('{"weird":1}'), true, { recognized = false } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.same(c[4], errors.parse_body(c[2], { json = c[3] }))
      end)
    end
  end)

  describe("make", function()
    local ctx = { provider = "siliconflow", method = "POST", path = "/files",
                  url = "http://h/v1/files", secret = "sk-very-secret" }

    it("writes the contract's one-line message", function()
      local msg, info = errors.make(ctx, { kind = "api", status = 401, message = "Invalid token",
                                           attempts = 1, headers = { ["x-request-id"] = "req-1" } })
      assert.equal("moonbatch: siliconflow POST /files: HTTP 401: Invalid token", msg)
      assert.equal("api", info.kind)
      assert.equal(401, info.status)
      assert.equal("req-1", info.request_id)
      assert.equal("POST", info.method)
      assert.equal("http://h/v1/files", info.url)
      assert.equal(1, info.attempts)
      assert.is_false(info.retryable)
    end)

    it("keeps messages on one line", function()
      local msg = errors.make(ctx, { kind = "http", status = 502, message = "a\r\nb\n\nc" })
      assert.equal("moonbatch: siliconflow POST /files: HTTP 502: a b c", msg)
    end)

    it("never lets the API key through, wherever a server echoes it", function()
      local msg, info = errors.make(ctx, { kind = "api", status = 401,
        message = "key sk-very-secret is invalid", body = "sk-very-secret" })
      assert.is_nil(msg:find("sk-very-secret", 1, true))
      for _, v in pairs(info) do
        assert.is_nil(tostring(v):find("sk-very-secret", 1, true))
      end
      assert.truthy(msg:find("[redacted]", 1, true))
    end)

    it("keeps the start of the raw body", function()
      local _, info = errors.make(ctx, { kind = "http", status = 502, body = ("x"):rep(2000) })
      assert.equal(512, #info.body)
    end)
  end)
end)
