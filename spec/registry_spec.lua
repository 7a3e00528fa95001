-- spec/registry_spec.lua: moonbatch.providers: every default in a provider's data, the
-- OpenAI-compatible services and Azure as entries, user providers as data (a table given to
-- moonbatch.new or a file named by MOONBATCH_PROVIDERS), each checked field by field.
local moonbatch = require("moonbatch")
local providers = require("moonbatch.providers")
local shell = require("spec.support.shell")

local function tmpfile(text, suffix)
  local path = os.tmpname() .. (suffix or "")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function raises(fn, wanted)
  local ok, err = pcall(fn)
  assert.is_false(ok, "did not raise")
  assert.truthy(tostring(err):find(wanted, 1, true), tostring(err))
end

-- a fresh interpreter with `env` (name = value) running `script`; its output and success
local function run_lua(env, script)
  local words = {}
  for k, v in pairs(env) do words[#words + 1] = k .. "=" .. shell.quote(v) end
  -- (the exit status is echoed: 5.1's pipe close does not give it)
  local cmd = ("%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/%s/?.so;;' %s -e %s 2>&1; echo \" rc=$?\"")
    :format(table.concat(words, " "), _VERSION:match("%d%.%d"), arg[-1] or "lua5.4", shell.quote(script))
  local out, rc = shell.capture(cmd):match("^(.-) rc=(%d+)%s*$")
  return out, rc == "0"
end

describe("moonbatch.providers", function()
  it("lists the built-in providers, the four of before first, and names its default", function()
    local names = providers.names()
    assert.same({ "siliconflow", "siliconflow-global", "together", "openai" }, { names[1], names[2], names[3], names[4] })
    for _, n in ipairs({ "azure", "mistral", "groq", "deepinfra", "dashscope", "dashscope-intl", "moonshot", "zhipu" }) do
      local found = false
      for _, m in ipairs(names) do found = found or m == n end
      assert.is_true(found, n)
    end
    assert.equal("siliconflow", providers.default)
    assert.equal(names, moonbatch.providers)
  end)

  it("has every default in the provider's data", function()
    for _, name in ipairs(providers.names()) do
      local p = providers.get(name)
      assert.equal(name, p.name)
      assert.is_string(p.endpoint, name)
      assert.is_string(p.completion_window, name)
      assert.is_string(p.batch_purpose, name)
      assert.is_string(p.key_env, name)
      assert.is_table(p.request_id_headers, name)
      assert.is_number(p.late_result_polls, name)
      assert.is_function(p.auth_headers, name)
      assert.is_function(p.query, name)
    end
    assert.equal(5, providers.get("siliconflow").late_result_polls)
    assert.equal(0, providers.get("openai").late_result_polls)
    assert.equal("x-siliconcloud-trace-id", providers.get("siliconflow").request_id_headers[3])
  end)

  it("gives each OpenAI-compatible service its URL, key variable, limits and quirks", function()
    local want = {
      groq = { "https://api.groq.com/openai/v1", "GROQ_API_KEY", 100000000 },
      deepinfra = { "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY" },
      dashscope = { "https://dashscope.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY", 100000000 },
      ["dashscope-intl"] = { "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY", 100000000 },
      moonshot = { "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", 100000000 },
      zhipu = { "https://open.bigmodel.cn/api/paas/v4", "ZHIPUAI_API_KEY", 100000000 },
    }
    for name, w in pairs(want) do
      local p = providers.get(name)
      assert.equal(w[1], p.base_url, name)
      assert.equal(w[2], p.key_env, name)
      assert.equal(w[3], p.limits and p.limits.bytes, name)
      assert.equal("batch", p.batch_purpose, name)
    end
    assert.equal(50000, providers.get("dashscope").limits.lines)
    assert.equal("/v4/chat/completions", providers.get("zhipu").endpoint)
    assert.is_true(providers.get("moonshot").one_model)
    assert.same({ 24, 24 }, providers.get("deepinfra").windows)
  end)

  it("refuses an unknown name, listing the known ones", function()
    raises(function() providers.get("nope", "here") end, "here: unknown provider 'nope' (known: siliconflow,")
  end)

  it("loads validate without the client (no cycle)", function()
    local out, ok = run_lua({}, [[
      require("moonbatch.validate")
      io.write(tostring(package.loaded["moonbatch.client"]))]])
    assert.truthy(ok, out)
    assert.equal("nil", out)
  end)
end)

describe("a provider given as data", function()
  local function user(extra)
    local t = { name = "myllm", base_url = "https://llm.example/v1", key_env = "MYLLM_KEY",
                limits = { lines = 2, bytes = 10000 } }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end

  it("is a client's provider, on OpenAI's dialect by default, its own data first", function()
    local c = moonbatch.new({ provider = user(), api_key = "k" })
    assert.equal("myllm", c.provider.name)
    assert.equal("https://llm.example/v1", c.base_url)
    assert.equal("/v1/chat/completions", c.provider.endpoint)
    assert.equal(2, c.provider.limits.lines)
    assert.equal("moonbatch client (myllm, https://llm.example/v1)", tostring(c))
    c.close()
    -- on another built-in's dialect
    local t = moonbatch.new({ provider = user({ base = "together" }), api_key = "k" })
    assert.equal("/files/upload", t.provider.upload_path)
    assert.equal("batch-api", t.provider.batch_purpose)
    t.close()
  end)

  it("takes its key from its own variable", function()
    local out, ok = run_lua({ MYLLM_KEY = "sk-mine" }, [[
      local c = require("moonbatch").new({ provider = { name = "myllm", base_url = "https://x/v1", key_env = "MYLLM_KEY" } })
      io.write(c.api_key == "sk-mine" and "yes" or "no")]])
    assert.truthy(ok, out)
    assert.equal("yes", out)
  end)

  it("has its limits enforced by the validator", function()
    local line = '{"custom_id":"%s","method":"POST","url":"/v1/chat/completions","body":{"model":"m",' ..
                 '"messages":[{"role":"user","content":"hi"}]}}\n'
    local path = tmpfile(line:format("a") .. line:format("b") .. line:format("c"))
    local report, msg, info = moonbatch.validate(path, { provider = user() })
    os.remove(path)
    assert.is_nil(report)
    assert.equal("validation", info.kind)
    assert.equal("max_lines", info.problems[1].rule, msg)
    assert.truthy(msg:find("myllm", 1, true), msg)
  end)

  local bad = {
    { "no name", { base_url = "https://x/v1" }, "missing field 'name'" },
    { "no base_url", { name = "a" }, "missing field 'base_url' (of 'a')" },
    { "an unknown field", user({ purpose = "batch" }), "unknown field 'purpose'" },
    { "a bad limit", user({ limits = { lines = 0 } }), "bad field 'limits.lines' (an integer >= 1 expected, got number)" },
    { "a string limit", user({ limits = { bytes = "1MB" } }), "bad field 'limits.bytes'" },
    { "an unknown limit", user({ limits = { files = 3 } }), "unknown field 'limits.files'" },
    { "a bad URL", user({ base_url = "ftp://x" }), "bad field 'base_url' (an http(s) URL expected, got string)" },
    { "a bad key variable", user({ key_env = "MY KEY" }), "bad field 'key_env' (an environment variable's name" },
    { "an unknown base", user({ base = "nope" }), "bad field 'base' ('nope' is not a provider; known: siliconflow," },
    { "a built-in's name", user({ name = "openai" }), "name 'openai' is a built-in provider's" },
    { "a bad endpoint", user({ endpoint = "v1/chat" }), "bad field 'endpoint' (a path starting with '/'" },
    { "windows the wrong way round", user({ windows = { 48, 24 } }), "bad field 'windows' (min 48 is above max 24)" },
    { "not a table", "x", "" },
  }
  for _, case in ipairs(bad) do
    it("is refused with a clear error: " .. case[1], function()
      if type(case[2]) == "string" then
        raises(function() providers.get({}, "moonbatch.new") end, "missing field 'name'")
        return
      end
      raises(function() moonbatch.new({ provider = case[2] }) end, "moonbatch.new: bad provider: " .. case[3])
    end)
  end

  it("refuses a completion window outside its windows before anything is sent", function()
    local c = moonbatch.new({ provider = user({ windows = { 12, 168 } }), api_key = "k" })
    raises(function() c.batches.create({ input_file_id = "f", completion_window = "8d" }) end,
      "batches.create: bad option 'completion_window' ('8d': myllm takes 12h to 7d)")
    raises(function() c.batches.create({ input_file_id = "f", completion_window = "soon" }) end,
      "('soon': myllm takes 12h to 7d)")
    c.close()
    local d = moonbatch.new({ provider = "deepinfra", api_key = "k" })
    raises(function() d.batches.create({ input_file_id = "f", completion_window = "48h" }) end,
      "('48h': deepinfra takes 24h)")
    d.close()
  end)
end)

describe("MOONBATCH_PROVIDERS", function()
  it("adds the providers of a JSON file and a Lua data file", function()
    local json = tmpfile('[{"name":"jsonllm","base_url":"https://j.example/v1","key_env":"J_KEY",' ..
                         '"limits":{"lines":7}},{"name":"other","base":"together","base_url":"https://o.example/v1"}]',
                         ".json")
    local lua = tmpfile('return { name = "luallm", base_url = "https://l.example/v1", endpoint = "/v2/chat" }', ".lua")
    local out, ok = run_lua({ MOONBATCH_PROVIDERS = json .. ":" .. lua }, [[
      local mb = require("moonbatch")
      local c = mb.new({ provider = "jsonllm", api_key = "k" })
      local l = mb.new({ provider = "luallm", api_key = "k" })
      local o = mb.new({ provider = "other", api_key = "k" })
      io.write(c.base_url, " ", c.provider.limits.lines, " ", l.provider.endpoint, " ", o.provider.upload_path, " ",
               table.concat(require("moonbatch.providers").names(), ","))]])
    os.remove(json)
    os.remove(lua)
    assert.truthy(ok, out)
    assert.truthy(out:find("^https://j.example/v1 7 /v2/chat /files/upload "), out)
    assert.truthy(out:find(",zhipu,jsonllm,other,luallm$"), out)
  end)

  it("names the file and the field of a bad entry", function()
    local json = tmpfile('[{"name":"a","base_url":"https://a/v1"},{"name":"b","base_url":"https://b/v1","limits":{"lines":-1}}]',
                         ".json")
    local out, ok = run_lua({ MOONBATCH_PROVIDERS = json },
      [[require("moonbatch").new({ provider = "b", api_key = "k" })]])
    os.remove(json)
    assert.falsy(ok)
    assert.truthy(out:find(("MOONBATCH_PROVIDERS: %s[2]: bad provider: bad field 'limits.lines'"):format(json), 1, true), out)
  end)

  it("runs a Lua data file with nothing in reach, and says what is wrong with a file", function()
    local code = tmpfile('os.remove("/tmp/x"); return {}', ".lua")
    local missing = os.tmpname() .. "-none.json"
    local notjson = tmpfile("{", ".json")
    for path, wanted in pairs({ [code] = "attempt to index", [missing] = "cannot read '" .. missing .. "'",
                                [notjson] = "is not valid JSON" }) do
      local out, ok = run_lua({ MOONBATCH_PROVIDERS = path },
        [[require("moonbatch").new({ provider = "x", api_key = "k" })]])
      assert.falsy(ok)
      assert.truthy(out:find(wanted, 1, true), out)
      assert.truthy(out:find("MOONBATCH_PROVIDERS", 1, true), out)
    end
    os.remove(code)
    os.remove(notjson)
  end)
end)

describe("azure", function()
  it("sends the key as api-key, and api-version (the client's, else the GA one) on every call", function()
    local p = providers.get("azure")
    assert.same({ ["api-key"] = "k" }, p.auth_headers("k"))
    assert.same({ ["api-version"] = "2024-10-21", limit = 3 }, p.query({ limit = 3 }, {}))
    assert.same({ ["api-version"] = "2025-01-01" }, p.query(nil, { api_version = "2025-01-01" }))
    assert.same({ Authorization = "Bearer k" }, providers.get("openai").auth_headers("k"))
    assert.is_nil(providers.get("openai").query(nil, {}))
  end)

  it("needs the resource's base URL", function()
    raises(function() moonbatch.new({ provider = "azure", api_key = "k" }) end,
      "moonbatch.new: provider azure needs base_url (https://RESOURCE.openai.azure.com/openai)")
    local c = moonbatch.new({ provider = "azure", api_key = "k", base_url = "https://r.openai.azure.com/openai" })
    assert.equal("https://r.openai.azure.com/openai", c.base_url)
    c.close()
  end)
end)
