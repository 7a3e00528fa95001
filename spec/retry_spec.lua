-- spec/retry_spec.lua: which failures are retried and how long each wait is (moonbatch.retry).
local retry = require("moonbatch.retry")

describe("moonbatch.retry", function()
  describe("retryable", function()
    local cases = {
      { "a network failure", { kind = "network" }, nil, true },
      { "a timeout", { kind = "timeout" }, nil, true },
      { "an unreadable file", { kind = "io" }, nil, false },
      { "HTTP 400", { kind = "api", status = 400 }, nil, false },
      { "HTTP 401", { kind = "api", status = 401 }, nil, false },
      { "HTTP 404", { kind = "api", status = 404 }, nil, false },
      { "HTTP 408", { kind = "api", status = 408 }, nil, true },
      { "HTTP 409", { kind = "api", status = 409 }, nil, true },
      { "HTTP 429", { kind = "api", status = 429 }, nil, true },
      { "HTTP 500", { kind = "http", status = 500 }, nil, true },
      { "HTTP 503", { kind = "api", status = 503 }, nil, true },
      { "a 200 that is not JSON", { kind = "decode", status = 200 }, nil, false },
      { "the provider's overload code", { kind = "api", status = 200, provider_retryable = true }, nil, true },
      { "HTTP 400 with x-should-retry: true", { kind = "api", status = 400 },
        { ["x-should-retry"] = "true" }, true },
      { "HTTP 503 with x-should-retry: false", { kind = "api", status = 503 },
        { ["x-should-retry"] = "false" }, false },
    }
    for _, c in ipairs(cases) do
      it(("%s: %s"):format(c[4] and "retries" or "does not retry", c[1]), function()
        assert.equal(c[4], retry.retryable(c[2], c[3]))
      end)
    end
  end)

  describe("wait", function()
    it("backs off 0.5, 1, 2, 4, 8, 8 s with no jitter", function()
      local zero = function() return 0 end
      local got = {}
      for n = 0, 5 do got[#got + 1] = retry.wait(n, nil, zero) end
      assert.same({ 0.5, 1, 2, 4, 8, 8 }, got)
    end)

    it("takes off at most 25 % as jitter", function()
      local almost_one = function() return 0.999999 end
      assert.is_true(math.abs(retry.wait(0, nil, almost_one) - 0.375) < 1e-5)
      assert.is_true(math.abs(retry.wait(6, nil, almost_one) - 6) < 1e-4)
    end)

    local rnd = function() return 0.5 end
    it("obeys retry-after-ms before retry-after", function()
      assert.equal(0.15, retry.wait(0, { ["retry-after-ms"] = "150", ["retry-after"] = "9" }, rnd))
    end)

    it("obeys retry-after in seconds", function()
      assert.equal(3, retry.wait(4, { ["retry-after"] = "3" }, rnd))
      assert.equal(0, retry.wait(4, { ["retry-after"] = "0" }, rnd))
    end)

    it("obeys retry-after as an HTTP date", function()
      local now = 1445412480 -- Wed, 21 Oct 2015 07:28:00 GMT
      assert.equal(7, retry.wait(0, { ["retry-after"] = "Wed, 21 Oct 2015 07:28:07 GMT" }, rnd, now))
      assert.equal(0, retry.wait(0, { ["retry-after"] = "Wed, 21 Oct 2015 07:27:00 GMT" }, rnd, now))
    end)

    it("refuses a demand longer than the cap, returning it", function()
      local wait, demanded = retry.wait(0, { ["retry-after"] = "121" }, rnd)
      assert.is_nil(wait)
      assert.equal(121, demanded)
      assert.equal(120, retry.wait(0, { ["retry-after"] = "120" }, rnd))
    end)

    it("ignores a retry-after it cannot read", function()
      assert.equal(0.4375, retry.wait(0, { ["retry-after"] = "soon" }, rnd))
    end)
  end)

  it("parses HTTP dates", function()
    assert.equal(1445412480, retry.http_date("Wed, 21 Oct 2015 07:28:00 GMT"))
    assert.is_nil(retry.http_date("21 Oct 2015"))
  end)
end)
