-- spec/redaction_spec.lua: no piece of the key in any error, log line or CLI output, whatever
-- encoding a server echoes it in and wherever the cut falls (redacted first, then cut); and
-- redaction never corrupts the library's own words (kind, method, provider, path templates),
-- even with a key as short as "k".
local cjson = require("cjson")
local errors = require("moonbatch.errors")
local moonbatch = require("moonbatch")
local standin = require("spec.standin_helper")
local fixture = require("spec.support.fixture")
local cli = require("spec.support.moonbatch_cli")
local shell = require("spec.support.shell")

-- a key with the characters JSON and URLs escape ('/', '+', '=')
local KEY = "sk-live-AbC/dEf+GhI=jKl_0123456789"

-- encoders, written here independently of moonbatch.errors -----------------------------------

local function json_u(s, upper)
  return (s:gsub(".", function(c) return (upper and "\\u%04X" or "\\u%04x"):format(c:byte()) end))
end
local function every_other_u(s)
  local i = 0
  return (s:gsub(".", function(c)
    i = i + 1
    return i % 2 == 0 and ("\\u%04x"):format(c:byte()) or c
  end))
end
local function percent(s, fmt, all)
  return (s:gsub(all and "." or "[^%w%-%._~]", function(c) return (fmt or "%%%02X"):format(c:byte()) end))
end
local function entities(s, hex)
  return (s:gsub(".", function(c) return (hex and "&#x%x;" or "&#%d;"):format(c:byte()) end))
end
local function x_escapes(s)
  return (s:gsub(".", function(c) return ("\\x%02x"):format(c:byte()) end))
end
local function hex(s, fmt)
  return (s:gsub(".", function(c) return (fmt or "%02x"):format(c:byte()) end))
end
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s, url)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, 4 do
      if k <= chars then
        local v = math.floor(n / 64 ^ (4 - k)) % 64
        out[#out + 1] = B64:sub(v + 1, v + 1)
      else
        out[#out + 1] = "="
      end
    end
  end
  local text = table.concat(out)
  if url then text = text:gsub("[+/]", { ["+"] = "-", ["/"] = "_" }) end
  return text
end

-- the ways a reply can carry the key
local ENCODINGS = {
  raw = function(k) return k end,
  ["JSON \\/"] = function(k) return (k:gsub("/", "\\/")) end,
  ["JSON \\u lower"] = function(k) return json_u(k) end,
  ["JSON \\u upper"] = function(k) return json_u(k, true) end,
  ["JSON \\u every other character"] = every_other_u,
  ["JSON escaped twice"] = function(k) return (json_u(k):gsub("\\", "\\\\")) end,
  ["cjson-encoded twice"] = function(k) return cjson.encode(cjson.encode({ key = k })) end,
  ["percent upper"] = function(k) return percent(k) end,
  ["percent lower"] = function(k) return percent(k, "%%%02x") end,
  ["percent every character"] = function(k) return percent(k, "%%%02X", true) end,
  ["percent twice"] = function(k) return (percent(k):gsub("%%", "%%25")) end,
  ["%u escapes"] = function(k) return percent(k, "%%u%04X", true) end,
  ["HTML decimal references"] = function(k) return entities(k) end,
  ["HTML hex references"] = function(k) return entities(k, true) end,
  ["\\x escapes"] = x_escapes,
  ["hex lower"] = function(k) return hex(k) end,
  ["hex upper"] = function(k) return hex(k, "%02X") end,
  ["base64 of the key"] = function(k) return base64(k) end,
  ["base64 of 'Bearer key'"] = function(k) return base64("Bearer " .. k) end,
  ["base64 of 'x:key' (Basic auth)"] = function(k) return base64("x:" .. k) end,
  ["base64url of ':key'"] = function(k) return base64(":" .. k, true) end,
  ["percent-encoded JSON \\u"] = function(k) return percent(json_u(k), "%%%02X", true) end,
  ["upper case"] = function(k) return k:upper() end,
  ["lower case"] = function(k) return k:lower() end,
  ["ES6 \\u{XX}"] = function(k) return (k:gsub(".", function(c) return ("\\u{%x}"):format(c:byte()) end)) end,
  ["Python \\U0000XXXX"] = function(k) return (k:gsub(".", function(c) return ("\\U%08x"):format(c:byte()) end)) end,
  ["HTML named and numeric references mixed"] = function(k)
    return (k:gsub("/", "&sol;"):gsub("%+", "&plus;"):gsub("=", "&#61;"))
  end,
}

-- every 8-character run of `k`, raw and in every encoding above (8 key characters make 10-12
-- base64 or 16 hex characters: the runs of those are checked through their own encoders)
local function pieces(k)
  local list = {}
  for i = 1, #k - 7 do list[#list + 1] = k:sub(i, i + 7) end
  return list
end

local function decodings(text)
  local out = { text }
  local t = text
  for _ = 1, 3 do
    t = t:gsub("\\+u{(%x+)}", function(h) return string.char(tonumber(h, 16) % 256) end)
      :gsub("\\+U0000(%x%x%x%x)", function(h) return string.char(tonumber(h, 16) % 256) end)
      :gsub("&sol;", "/"):gsub("&plus;", "+")
    t = t:gsub("\\+u(%x%x%x%x)", function(h)
      local n = tonumber(h, 16)
      return n < 128 and string.char(n) or nil
    end):gsub("\\+x(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      :gsub("\\+([/\"])", "%1"):gsub("%%25", "%%"):gsub("%%[uU]00(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      :gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      :gsub("&#[xX](%x+);", function(h) return string.char(tonumber(h, 16) % 256) end)
      :gsub("&#(%d+);", function(d) return string.char(tonumber(d) % 256) end)
    out[#out + 1] = t
  end
  return out
end

-- the first piece of `k` that `text` shows, in any encoding, or nil
local function leak(text, k)
  if type(text) ~= "string" then return nil end
  for _, t in ipairs(decodings(text)) do
    for _, p in ipairs(pieces(k)) do
      if t:lower():find(p:lower(), 1, true) then return p end
    end
  end
  for _, name in ipairs({ "base64 of the key", "base64 of 'Bearer key'", "base64 of 'x:key' (Basic auth)",
                          "base64url of ':key'", "hex lower", "hex upper" }) do
    local encoded = ENCODINGS[name](k)
    -- the encoded form's own runs of 12 (9 key bytes in base64, 6 in hex)
    for i = 5, #encoded - 16 do
      local run = encoded:sub(i, i + 11)
      if text:find(run, 1, true) then return name .. ": " .. run end
    end
  end
  return nil
end

local function assert_no_leak(msg, info, k)
  k = k or KEY
  local where = leak(msg, k)
  assert.is_nil(where, "msg shows " .. tostring(where) .. ": " .. tostring(msg))
  for field, v in pairs(info) do
    where = leak(type(v) == "string" and v or nil, k)
    assert.is_nil(where, ("info.%s shows %s: %s"):format(field, tostring(where), tostring(v)))
  end
end

local CTX = { provider = "openai", method = "GET", path = "/files/file-1",
              url = "http://127.0.0.1:9/v1/files/file-1", secret = KEY }

describe("redaction", function()
  describe("every encoding of the key", function()
    for name, encode in pairs(ENCODINGS) do
      local echoed = encode(KEY)
      it(name .. ": in the message, body, request id, code, type and param", function()
        local text = "invalid api key '" .. echoed .. "' given"
        local msg, info = errors.make(CTX, {
          kind = "api", status = 401, message = text, code = echoed, type = text, param = echoed,
          body = '{"error":{"message":"' .. echoed .. '"}}',
          headers = { ["x-request-id"] = "req-" .. echoed },
        })
        assert_no_leak(msg, info)
        assert.truthy(msg:find("[redacted]", 1, true), msg)
        assert.equal("api", info.kind)
        assert.equal("GET", info.method)
      end)

      it(name .. ": in a decoded JSON body (a table, re-encoded)", function()
        local _, info = errors.make(CTX, { kind = "api", status = 400,
          body = { error = { message = "key " .. echoed, code = echoed }, list = { echoed } } })
        assert_no_leak("", info)
        assert.truthy(info.body:find("[redacted]", 1, true), info.body)
      end)

      it(name .. ": in an id of the path and URL (an id a server sent)", function()
        local path = "/files/" .. percent(echoed) .. "/content"
        local msg, info = errors.make({ provider = "openai", method = "GET", path = path,
          url = "http://127.0.0.1:9/v1" .. path, secret = KEY }, { kind = "http", status = 404 })
        assert_no_leak(msg, info)
        assert.equal("http://127.0.0.1:9/v1/files/", info.url:sub(1, 28))
      end)
    end
  end)

  describe("redacted before it is cut", function()
    -- the cut of msg (300 characters) and of info.body (512 bytes) at every place in the key
    for offset = -2, #KEY + 2 do
      it(("a key crossing the message's cut at its character %d"):format(offset), function()
        -- the key starts at the detail's character 298 - offset; the detail is cut at 297
        local message = ("m"):rep(287 - offset) .. KEY .. (" tail"):rep(20)
        local msg, info = errors.make(CTX, { kind = "api", status = 401, message = message })
        assert_no_leak(msg, info)
      end)

      it(("a key crossing the body's cut at its byte %d"):format(offset), function()
        local body = ("b"):rep(512 - offset) .. KEY .. ("z"):rep(100)
        local _, info = errors.make(CTX, { kind = "http", status = 502, body = body })
        assert.is_nil(leak(info.body, KEY), info.body)
        assert.is_true(#info.body <= 512)
        -- in JSON, re-encoded from a table
        local _, info2 = errors.make(CTX, { kind = "api", status = 400,
          body = { message = ("j"):rep(500 - offset) .. KEY .. ("y"):rep(50) } })
        assert.is_nil(leak(info2.body, KEY), info2.body)
      end)
    end

    it("a key the server cut itself (its start ends the text)", function()
      for n = 4, #KEY - 1 do
        local msg, info = errors.make(CTX, { kind = "api", status = 401,
          message = "bad key " .. KEY:sub(1, n), body = "key=" .. KEY:sub(1, n) })
        assert.is_nil(msg:find(KEY:sub(1, 4), 1, true), msg)
        assert.is_nil(info.body:find(KEY:sub(1, 4), 1, true), info.body)
      end
    end)

    it("a key whose characters look like escapes is still found as written", function()
      for _, odd in ipairs({ "sk-%41%42-0123456789", "sk-\\u0041-0123456789", "sk-&#65;-0123456789" }) do
        local msg, info = errors.make({ provider = "openai", method = "GET", path = "/files", url = "http://h/files",
          secret = odd }, { kind = "api", status = 401, message = "bad key " .. odd, body = odd })
        assert.is_nil(msg:find(odd, 1, true), msg)
        assert.is_nil(info.body:find(odd:sub(1, 8), 1, true), info.body)
      end
    end)

    it("a piece of the key (8 characters or more) anywhere", function()
      for i = 1, #KEY - 7 do
        local piece = KEY:sub(i, i + 7)
        local msg, info = errors.make(CTX, { kind = "api", status = 401,
          message = "key ending " .. piece .. " is invalid", body = piece })
        assert.is_nil(msg:find(piece, 1, true), msg)
        assert.is_nil(info.body:find(piece, 1, true), info.body)
        assert.truthy(msg:find("is invalid", 1, true), msg)
      end
    end)

    it("keeps up to 512 bytes of a body and 300 characters of the detail", function()
      local msg, info = errors.make(CTX, { kind = "api", status = 401, message = ("w "):rep(400),
                                           body = ("x"):rep(2000) })
      assert.equal(512, #info.body)
      assert.equal(#"moonbatch: openai GET /files/file-1: " + 300, #msg)
    end)
  end)

  describe("short keys: the library's own words are never redacted", function()
    local words = { "k", "o", "GET", "POST", "network", "api", "http", "timeout", "validation",
                    "openai", "files", "batches", "v1", "content", "1", "e", "s", "i", "/", "-" }
    for _, key in ipairs(words) do
      it(("key %q"):format(key), function()
        for _, kind in ipairs({ "network", "api", "http", "timeout", "decode", "validation", "io" }) do
          local ctx = { provider = "openai", method = "GET", path = "/files/file-abc/content",
                        url = "https://api.openai.com/v1/files/file-abc/content", secret = key }
          local msg, info = errors.make(ctx, { kind = kind, status = kind == "api" and 401 or nil,
                                               retryable = false })
          assert.equal(kind, info.kind)
          assert.equal("GET", info.method)
          assert.equal("/files/file-abc/content", info.path)
          assert.equal("https://api.openai.com/v1/files/file-abc/content", info.url)
          local prefix = "moonbatch: openai GET /files/file-abc/content: "
          assert.equal(prefix, msg:sub(1, #prefix))
          ctx.method = "POST"
          local _, info2 = errors.make(ctx, { kind = kind })
          assert.equal("POST", info2.method)
        end
      end)
    end

    it("a short key is redacted where it stands as a whole token of outside text", function()
      for _, key in ipairs({ "k", "o", "GET", "abc1234" }) do
        local ctx = { provider = "openai", method = "GET", path = "/files/" .. key, url = "http://h/v1/files/" .. key,
                      secret = key }
        local text = ("Incorrect API key provided: %s. Keys look like sk-...; token=%s&x"):format(key, key)
        local msg, info = errors.make(ctx, { kind = "api", status = 401, message = text, body = text,
                                             headers = { ["x-request-id"] = key } })
        local detail = msg:sub(#"moonbatch: openai GET " + 1)
        for _, v in ipairs({ detail, info.message, info.body, info.request_id, info.path, info.url }) do
          for token in v:gmatch("[%w]+") do assert.are_not.equal(key, token, v) end
          assert.truthy(v:find("[redacted]", 1, true), v)
        end
        -- inside words it stays: a one-letter key is not a secret fragment of "Keys"
        assert.truthy(info.message:find("Keys look like", 1, true), info.message)
      end
    end)

    it("the rule's threshold is documented and exported", function()
      assert.equal(8, errors.SHORT_KEY)
      -- 7 characters: a token only; 8: anywhere
      assert.equal("xabcdefgx", errors.redact("xabcdefgx", "abcdefg"))
      assert.equal("x[redacted]x", errors.redact("xabcdefghx", "abcdefgh"))
      assert.equal("a [redacted] b", errors.redact("a abcdefg b", "abcdefg"))
    end)

    it("the path segments it keeps are the providers' own path templates", function()
      -- every provider, with a short key equal to each fixed segment of its paths: the error's
      -- path keeps the segment (a refused connection on this machine fails at once)
      local providers = require("moonbatch.providers")
      local checked = 0
      for _, name in ipairs(providers.names()) do
        local p = providers.get(name, "spec")
        for _, field in ipairs({ "files_path", "batches_path" }) do
          for segment in tostring(p[field]):gmatch("[^/]+") do
            if #segment < errors.SHORT_KEY then
              local c = moonbatch.new({ provider = name, api_key = segment, max_retries = 0,
                                        base_url = "http://127.0.0.1:9/v1", connect_timeout = 2 })
              local get = field == "files_path" and c.files.get or c.batches.get
              local _, _, info = get("some-id")
              assert.equal(p[field] .. "/some-id", info.path, name .. " " .. segment)
              c.close()
              checked = checked + 1
            end
          end
        end
      end
      assert.is_true(checked >= 20, "checked " .. checked)
    end)
  end)

  describe("end to end", function()
    local s, dir
    fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)

    -- a 401 that echoes the key in every encoding, in the body, the message and headers
    local function hostile(extra)
      local parts = {}
      for _, encode in pairs(ENCODINGS) do parts[#parts + 1] = encode(KEY) end
      local message = ("x"):rep(270) .. KEY .. " " .. table.concat(parts, " ")
      local fault = { status = 401, content_type = "application/json",
        body = cjson.encode({ error = { message = message, code = KEY, type = KEY:gsub("/", "\\/"),
                                        param = percent(KEY) } }),
        headers = { ["x-request-id"] = KEY, ["WWW-Authenticate"] = "Bearer " .. KEY } }
      for k, v in pairs(extra or {}) do fault[k] = v end
      return fault
    end

    it("the library's msg and info show no piece of the key", function()
      s:fault("GET", "/openai/v1/files", { hostile() })
      local c = moonbatch.new({ provider = "openai", base_url = s.urls.openai, api_key = KEY, max_retries = 0 })
      local page, msg, info = c.files.list()
      assert.is_nil(page)
      assert.equal("api", info.kind)
      assert_no_leak(msg, info)
    end)

    it("the debug log line shows no piece of it, nor of a key in an id", function()
      s:fault("GET", "/openai/v1/files/" .. percent(KEY), { hostile() })
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(([[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = %q .. ";" .. package.cpath
        local c = require("moonbatch").new({ provider = "openai", base_url = %q, max_retries = 0,
          headers = { ["X-Api-Key"] = os.getenv("MOONBATCH_API_KEY") } })
        local _, msg = c.files.get(os.getenv("MOONBATCH_API_KEY"))
        io.stderr:write(msg, "\n")
      ]]):format(package.cpath:match("^[^;]+"), s.urls.openai))
      f:close()
      local p = io.popen(("MOONBATCH_LOG=debug MOONBATCH_API_KEY=%s %s %s 2>&1"):format(shell.quote(KEY), arg[-1], script))
      local out = p:read("*a")
      p:close()
      os.remove(script)
      assert.truthy(out:find("moonbatch: debug: GET ", 1, true), out)
      assert.is_nil(leak(out, KEY), out)
    end)

    it("the short key 'GET' leaves the debug line's method alone", function()
      local short = standin.start({ key = "GET" })
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(([[
        package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
        package.cpath = %q .. ";" .. package.cpath
        assert(require("moonbatch").new({ provider = "openai", base_url = %q, api_key = "GET" }).files.list())
      ]]):format(package.cpath:match("^[^;]+"), short.urls.openai))
      f:close()
      local p = io.popen(("MOONBATCH_LOG=debug %s %s 2>&1"):format(arg[-1], script))
      local out = p:read("*a")
      p:close()
      os.remove(script)
      short:stop()
      assert.truthy(out:find("moonbatch: debug: GET " .. short.urls.openai .. "/files", 1, true), out)
      assert.truthy(out:find("Authorization: Bearer [redacted]", 1, true), out)
    end)

    it("a short key leaves the CLI's own words alone (field names, numbers, the msg's start)", function()
      -- (keys the stand-in's own redaction of its replies leaves whole: "1" or "id" would break them)
      for _, key in ipairs({ "api", "GET", "files", "v1" }) do
        local short = standin.start({ key = key })
        local c = moonbatch.new({ provider = "openai", base_url = short.urls.openai, api_key = key })
        local path = dir .. "/one.jsonl"
        local f = assert(io.open(path, "w"))
        f:write('{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}\n')
        f:close()
        assert(c.files.upload({ file = path }))
        -- a local file's problems are the library's own words: "line 1" stays
        local bad = dir .. "/bad.jsonl"
        f = assert(io.open(bad, "w"))
        f:write('{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n')
        f:close()
        local _, vmsg = c.files.upload({ file = bad })
        assert.truthy(vmsg:find("line 1", 1, true), vmsg)
        local function run(args)
          local words = { "--provider", "openai", "--base-url", short.urls.openai }
          for _, w in ipairs(args) do words[#words + 1] = w end
          return cli.run(dir, words, { OPENAI_API_KEY = key })
        end
        local code, out, err = run({ "files", "--json" })
        assert.equal(0, code, err)
        local page = cjson.decode(out)
        local file = (page.data or page)[1]
        assert.is_string(file.id, out)
        assert.is_number(file.bytes, out)
        assert.is_number(file.created_at, out)
        code, out, err = run({ "files" })
        assert.equal(0, code, err)
        assert.truthy(out:find("^ID"), out)
        code, _, err = run({ "status", "batch_nosuch" })
        assert.equal(1, code)
        assert.truthy(err:find("moonbatch: openai GET /batches/batch_nosuch: HTTP 404", 1, true), key .. ": " .. err)
        short:stop()
      end
    end)

    it("the CLI prints no piece of it, text or --json", function()
      for _, args in ipairs({ { "files" }, { "files", "--json" }, { "status", "batch_x" }, { "status", "batch_x", "--json" } }) do
        s:reset()
        s:fault("GET", "/openai/v1/files", { hostile() })
        s:fault("GET", "/openai/v1/batches/batch_x", { hostile() })
        local words = { "--provider", "openai", "--base-url", s.urls.openai }
        for _, w in ipairs(args) do words[#words + 1] = w end
        local code, out, err = cli.run(dir, words, { OPENAI_API_KEY = KEY })
        assert.equal(1, code, err)
        assert.is_nil(leak(out, KEY), out)
        assert.is_nil(leak(err, KEY), err)
        assert.truthy((out .. err):find("[redacted]", 1, true), out .. err)
      end
    end)
  end)
end)
