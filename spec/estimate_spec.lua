-- spec/estimate_spec.lua: moonbatch.estimate and `moonbatch estimate FILE`: requests and bytes
-- exact, input tokens by the stated rule (ASCII text a quarter of its bytes, other characters
-- one each, escapes decoded, keys and the custom_id, method, url, model and role values not
-- counted, 4 a message, 3 a request), output tokens the sum of max_tokens (lines without one
-- counted as unbounded), shards as a job cuts them for the provider, cost from the prices given;
-- bad arguments raise naming them; the command's text and JSON.
local cjson = require("cjson")
local moonbatch = require("moonbatch")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")
local quote, write_file, tmpdir = shell.quote, shell.write_file, shell.tmpdir

local LUA = arg and arg[-1] or "lua5.4"

describe("moonbatch.estimate", function()
  local dir
  setup(function() dir = tmpdir() end)
  teardown(function() if dir then os.execute("rm -rf " .. quote(dir)) end end)

  it("counts requests, bytes, tokens and output bounds by its rule", function()
    local path = dir .. "/small.jsonl"
    local text = table.concat({
      -- "abcdefgh" (8 ASCII bytes: 2 tokens), one message: 2 + 4 + 3 = 9; max_tokens 10
      '{"custom_id":"a-very-long-custom-id","method":"POST","url":"/v1/chat/completions",' ..
        '"body":{"model":"some-model-name","messages":[{"role":"user","content":"abcdefgh"}],"max_tokens":10}}\n',
      "\n",
      -- "数据" and an escaped é: 3 characters; 2 messages, "ab" and "cd": 1 token; 3 + 1 + 8 + 3 = 15;
      -- max_completion_tokens 5
      '{"custom_id":"b","body":{"messages":[{"role":"system","content":"\\u00e9\\u6570ab"},' ..
        '{"role":"user","content":"据cd"}],"max_completion_tokens":5}}\r\n',
      -- no max_tokens: unbounded; "x y" 3 bytes: 1 token; 1 + 4 + 3 = 8
      '{"custom_id":"c","body":{"messages":[{"role":"user","content":"x y"}]}}',
    })
    write_file(path, text)
    local r = assert(moonbatch.estimate(path, { provider = "openai", prices = { input = 2, output = 8 } }))
    assert.same({ requests = 3, bytes = #text, input_tokens = 9 + 15 + 8, output_tokens = 15, unbounded = 1,
                  shards = 1, batches = 1, provider = "openai" },
      { requests = r.requests, bytes = r.bytes, input_tokens = r.input_tokens, output_tokens = r.output_tokens,
        unbounded = r.unbounded, shards = r.shards, batches = r.batches, provider = r.provider })
    -- the output of an unbounded line has no price: only the input's cost is known
    assert.near(32 / 1e6 * 2, r.cost.input, 1e-12)
    assert.is_nil(r.cost.output)
    assert.is_nil(r.cost.total)
    -- without prices, no cost
    assert.is_nil(assert(moonbatch.estimate(path)).cost)
  end)

  it("cuts shards as a job does, for the provider and the limits given", function()
    local path = dir .. "/many.jsonl"
    local parts = {}
    for i = 1, 12001 do
      parts[i] = cjson.encode({ custom_id = "r" .. i, body = { model = "m", max_tokens = 100,
        messages = { { role = "user", content = "hello number " .. i } } } }) .. "\n"
    end
    write_file(path, table.concat(parts))
    local sf = assert(moonbatch.estimate(path))
    assert.equal(12001, sf.requests)
    assert.equal(3, sf.shards) -- SiliconFlow: 5,000 lines a file
    assert.equal(1200100, sf.output_tokens)
    assert.equal(0, sf.unbounded)
    assert.equal(1, assert(moonbatch.estimate(path, { provider = "together" })).shards)
    assert.equal(13, assert(moonbatch.estimate(path, { provider = "openai", max_lines = 1000 })).shards)
    local r = assert(moonbatch.estimate(path, { prices = { input = 0.5, output = 1.5, currency = "USD" } }))
    assert.near(r.input_tokens / 1e6 * 0.5 + 1200100 / 1e6 * 1.5, r.cost.total, 1e-9)
    assert.equal("USD", r.cost.currency)
  end)

  it("fails on a file it cannot read, and raises for bad arguments, naming them", function()
    local none, msg, info = moonbatch.estimate(dir .. "/missing.jsonl")
    assert.is_nil(none)
    assert.matches("cannot read", msg, 1, true)
    assert.equal("io", info.kind)
    local path = dir .. "/one.jsonl"
    write_file(path, '{"custom_id":"a","body":{"messages":[]}}\n')
    assert.has_error(function() moonbatch.estimate(nil) end)
    assert.has_error(function() moonbatch.estimate(path, { frob = 1 }) end, "moonbatch.estimate: unknown option 'frob'")
    assert.has_error(function() moonbatch.estimate(path, { provider = "nobody" }) end)
    assert.has_error(function() moonbatch.estimate(path, { prices = { input = -1 } }) end,
      "moonbatch.estimate: bad option 'prices.input' (a price of 0 or more expected)")
    assert.has_error(function() moonbatch.estimate(path, { prices = { input = 0 / 0 } }) end)
    assert.has_error(function() moonbatch.estimate(path, { max_lines = 0 }) end)
  end)

  it("runs as `moonbatch estimate FILE`, in text and JSON", function()
    local path = dir .. "/cli.jsonl"
    write_file(path, '{"custom_id":"a","body":{"model":"m","messages":[{"role":"user","content":"abcdefgh"}],' ..
      '"max_tokens":1000000}}\n')
    local code, out, err = cli.run(dir, { "estimate", path, "--input-price", "1", "--output-price", "2" }, {}, LUA)
    assert.equal(0, code, err)
    assert.matches("requests: 1\n", out, 1, true)
    assert.matches("input tokens: about 9\n", out, 1, true)
    assert.matches("output tokens: at most 1,000,000\n", out, 1, true)
    assert.matches("shards: 1 on siliconflow (1 batch)", out, 1, true)
    assert.matches("cost: at most 2.00001\n", out, 1, true)
    code, out = cli.run(dir, { "--json", "estimate", path, "--provider", "openai" }, {}, LUA)
    assert.equal(0, code)
    local r = cjson.decode(out)
    assert.equal(9, r.input_tokens)
    assert.equal("openai", r.provider)
    local _
    code, _, err = cli.run(dir, { "estimate", dir .. "/missing.jsonl" }, {}, LUA)
    assert.equal(1, code)
    assert.matches("cannot read", err, 1, true)
  end)
end)
