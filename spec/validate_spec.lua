-- spec/validate_spec.lua: moonbatch.core.validate, the streaming JSONL validator, one rule at a
-- time (a failing and a passing case each), then the report, line endings, chunking and misuse.
local core = require("moonbatch.core")

local MESSAGES = '[{"role":"user","content":"hi"}]'

-- a line that passes every rule
local function good(id, model)
  return ('{"custom_id":"%s","method":"POST","url":"/v1/chat/completions",' ..
          '"body":{"model":"%s","messages":%s}}'):format(id or "r0", model or "m1", MESSAGES)
end

-- a line with custom_id `id` and body `body` (raw JSON)
local function with_body(id, body)
  return ('{"custom_id":"%s","body":%s}'):format(id, body)
end

-- a passing line whose message content is the raw JSON string text `s` (no quotes)
local function content(s, id)
  return with_body(id or "u", '{"model":"m1","messages":[{"role":"user","content":"' .. s .. '"}]}')
end

-- every case's file is a good first line, then `line` as line 2, then a newline
local cases = {
  -- json
  { rule = "json", line = '{"custom_id":"a",' },
  { rule = "json", line = good("a") .. " x" },
  { rule = "json", line = '{"custom_id":"a" "body":{}}' },
  { rule = "json", line = "{custom_id:1}" },
  { rule = "json", line = "{'custom_id':'a'}" },
  { rule = "json", line = '{"a":1,}' },
  { rule = "json", line = '{"a":[1,2,]}' },
  { rule = "json", line = '{"a":01}' },
  { rule = "json", line = '{"a":1.}' },
  { rule = "json", line = '{"a":-}' },
  { rule = "json", line = '{"a":1e}' },
  { rule = "json", line = '{"a":+1}' },
  { rule = "json", line = '{"a":.5}' },
  { rule = "json", line = '{"a":tru}' },
  { rule = "json", line = '{"a":nul}' },
  { rule = "json", line = '{"a":True}' },
  { rule = "json", line = '{"a":"\\x"}' },
  { rule = "json", line = '{"a":"\\u12G4"}' },
  { rule = "json", line = '{"a":"tab\there"}' },
  { rule = "json", line = '{"a":"unterminated}' },
  { rule = "json", line = '{"a":[1,2}' },
  { rule = "json", line = '{"a":{"b":1]}' },
  { rule = "json", line = '{"a":1}}' },
  { rule = "json", line = '{"a"}' },
  { rule = "json", line = "{" },
  { rule = "json", line = '{"a":' .. ("["):rep(64) .. ("]"):rep(64) .. "}" },
  { ok = true, line = with_body("a", '{"model":"m1","messages":' .. MESSAGES .. ',"x":' ..
                                     ("["):rep(62) .. ("]"):rep(62) .. "}") },
  { ok = true, line = with_body("a", '{"model":"m1","messages":' .. MESSAGES ..
      ',"n":[0,-0,1.5,-2.25e+10,3E-2,0.0e0,123456789012345678901234567890],' ..
      '"l":[true,false,null],"o":{},"a":[],"e":"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00"}') },
  { ok = true, line = ' \t{ "custom_id" : "a" , "body" : { "model" : "m1" , "messages" : [ 1 ] } } \t' },
  -- object
  { rule = "object", line = "[1,2]" },
  { rule = "object", line = '"a string"' },
  { rule = "object", line = "42" },
  { rule = "object", line = "null" },
  { rule = "object", line = "true" },
  -- utf8: raw bytes
  { rule = "utf8", line = content("bad \195\040 byte") },
  { rule = "utf8", line = content("stray \128 continuation") },
  { rule = "utf8", line = content("overlong \192\175") },
  { rule = "utf8", line = content("overlong \224\128\175") },
  { rule = "utf8", line = content("overlong \240\130\130\172") },
  { rule = "utf8", line = content("surrogate \237\160\128") },
  { rule = "utf8", line = content("too big \244\144\128\128") },
  { rule = "utf8", line = content("not a lead \245\128\128\128") },
  { rule = "utf8", line = content("truncated \226\130") },
  -- utf8: \u escapes
  { rule = "utf8", line = content("lone high \\ud800") },
  { rule = "utf8", line = content("lone low \\udc00") },
  { rule = "utf8", line = content("high then letter \\ud800\\u0041") },
  { rule = "utf8", line = content("high then escape \\ud800\\n") },
  { rule = "utf8", line = content("two highs \\ud800\\ud800") },
  { ok = true, line = content("caf\195\169 \226\130\172 \240\159\152\128 \239\191\191 \244\143\191\191") },
  { ok = true, line = content("\\u00e9 \\u20AC \\ud83d\\ude00 \\uDBFF\\uDFFF \\u0000") },
  -- custom_id
  { rule = "custom_id", line = '{"body":{"model":"m1","messages":' .. MESSAGES .. "}}" },
  { rule = "custom_id", line = '{"custom_id":7,"body":{"model":"m1","messages":' .. MESSAGES .. "}}" },
  { rule = "custom_id", line = '{"custom_id":null,"body":{"model":"m1","messages":' .. MESSAGES .. "}}" },
  { ok = true, line = good("a") },
  -- custom_id_length
  { rule = "custom_id_length", line = good("abcdef"), opts = { max_custom_id = 5 } },
  { rule = "custom_id_length", line = good("\\u00e9\\u00e9\\u00e9"), opts = { max_custom_id = 5 } },
  { ok = true, line = good("abcde"), opts = { max_custom_id = 5 } },
  -- custom_id_unique
  { rule = "custom_id_unique", line = good("r0"), pattern = 'custom_id "r0" already used on line 1' },
  { rule = "custom_id_unique", line = good("\\u0072\\u0030") }, -- "r0", escaped
  { ok = true, line = good("r1") },
  -- method
  { rule = "method", line = good("a"):gsub('"POST"', '"GET"') },
  { rule = "method", line = good("a"):gsub('"POST"', "1") },
  { rule = "method", line = content("x"), opts = { require_method_url = true }, also = { "url" } },
  { ok = true, line = content("x") },
  { ok = true, line = good("a"), opts = { require_method_url = true } },
  -- url
  { rule = "url", line = good("a"):gsub("/v1/chat/completions", "/v1/embeddings") },
  { rule = "url", line = good("a"), opts = { endpoint = "/v1/embeddings" },
    first = good("r0"):gsub("/v1/chat/completions", "/v1/embeddings") },
  { rule = "url", line = good("a"):gsub('"url":"[^"]*"', '"url":null') },
  { ok = true, line = good("a"):gsub("/v1/chat/completions", "/v1/embeddings"),
    opts = { endpoint = "/v1/embeddings" }, first = good("r0"):gsub("/v1/chat/completions", "/v1/embeddings") },
  -- body
  { rule = "body", line = '{"custom_id":"a"}' },
  { rule = "body", line = '{"custom_id":"a","body":"text"}' },
  { rule = "body", line = '{"custom_id":"a","body":[]}' },
  { ok = true, line = with_body("a", '{"model":"m1","messages":[1]}') },
  -- messages
  { rule = "messages", line = with_body("a", '{"model":"m1"}') },
  { rule = "messages", line = with_body("a", '{"model":"m1","messages":{}}') },
  { rule = "messages", line = with_body("a", '{"model":"m1","messages":[]}') },
  { rule = "messages", line = with_body("a", '{"model":"m1","messages":[ \t]}') },
  { ok = true, line = with_body("a", '{"model":"m1","messages":[[]]}') },
  -- model
  { rule = "model", line = with_body("a", '{"messages":[1]}') },
  { rule = "model", line = with_body("a", '{"model":5,"messages":[1]}') },
  { ok = true, line = with_body("a", '{"messages":[1]}'), opts = { replace_model = "m9" } },
  -- one_model
  { rule = "one_model", line = good("a", "m2"), pattern = 'body.model "m2" differs from "m1" on line 1' },
  { ok = true, line = good("a", "m2"), opts = { replace_model = "m9" } },
  -- empty_line
  { rule = "empty_line", line = "" },
  { rule = "empty_line", line = " \t " },
  { rule = "empty_line", line = "\r" },
  -- duplicate keys: the first occurrence counts
  { ok = true, line = '{"custom_id":"a","custom_id":5,"body":{"model":"m1","model":7,"messages":[1]},"body":1}' },
  { rule = "custom_id", line = '{"custom_id":5,"custom_id":"a","body":{"model":"m1","messages":[1]}}' },
  { rule = "body", line = '{"custom_id":"a","body":1,"body":{"model":"m1","messages":[1]}}' },
  { rule = "model", line = with_body("a", '{"model":1,"model":"m1","messages":[1]}') },
  -- keys are compared decoded, and only at their own level
  { rule = "custom_id_unique", line = '{"\\u0063ustom_id":"r0","body":{"model":"m1","messages":[1]}}' },
  { rule = "model", line = '{"custom_id":"a","model":"m1","body":{"messages":[1],"x":{"model":"m1"}}}' },
  { ok = true, line = '{"custom_id":"a","x":{"custom_id":1,"body":2},"body":{"model":"m1","messages":[1]}}' },
}

local tmpfiles = {}

local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end

local function rules_of(report)
  local out = {}
  for _, p in ipairs(report.problems) do out[#out + 1] = p.rule .. "@" .. p.line end
  return table.concat(out, " ")
end

local function find_problem(report, rule)
  for _, p in ipairs(report.problems) do
    if p.rule == rule then return p end
  end
end

describe("moonbatch.core.validate", function()
  after_each(function()
    for _, path in ipairs(tmpfiles) do os.remove(path) end
    tmpfiles = {}
  end)

  describe("rules", function()
    for i, case in ipairs(cases) do
      local title = ("#%d %s: %s"):format(i, case.ok and "passes" or ("fails " .. case.rule),
                                          (case.line:gsub("[%z\1-\31\128-\255]", "?"):sub(1, 70)))
      it(title, function()
        local path = tmpfile((case.first or good("r0")) .. "\n" .. case.line .. "\n")
        local report = assert(core.validate(path, case.opts))
        assert.equal(2, report.lines)
        if case.ok then
          assert.is_true(report.ok, rules_of(report))
          assert.same({}, report.problems)
        else
          assert.is_false(report.ok)
          local p = find_problem(report, case.rule)
          assert.is_table(p, "no " .. case.rule .. " problem in: " .. rules_of(report))
          assert.equal(2, p.line)
          assert.matches("^line 2: ", p.message)
          assert.is_nil(p.message:find("\n"), "one line")
          if case.pattern then assert.truthy(p.message:find(case.pattern, 1, true), p.message) end
          assert.equal(1 + #(case.also or {}), #report.problems, rules_of(report))
        end
      end)
    end
  end)

  describe("file rules", function()
    it("max_lines: reported once, at the first line over", function()
      local text = table.concat({ good("a"), good("b"), good("c"), good("d") }, "\n") .. "\n"
      local report = core.validate(tmpfile(text), { max_lines = 2 })
      assert.is_false(report.ok)
      assert.equal(4, report.lines)
      assert.equal(1, #report.problems)
      assert.equal("max_lines", report.problems[1].rule)
      assert.equal(3, report.problems[1].line)
      assert.matches("^line 3: ", report.problems[1].message)
      assert.is_true(core.validate(tmpfile(text), { max_lines = 4 }).ok)
    end)

    it("max_bytes: reported once, on the line holding the first byte over", function()
      local text = good("a") .. "\n" .. good("b") .. "\n" .. good("c") .. "\n"
      local first = #good("a") + 1
      local report = core.validate(tmpfile(text), { max_bytes = first + 5 })
      assert.is_false(report.ok)
      assert.equal(#text, report.bytes)
      assert.equal(3, report.lines)
      assert.equal(1, #report.problems)
      assert.equal("max_bytes", report.problems[1].rule)
      assert.equal(2, report.problems[1].line)
      assert.matches("^line 2: ", report.problems[1].message)
      assert.is_true(core.validate(tmpfile(text), { max_bytes = #text }).ok)
      assert.equal("max_bytes", core.validate(tmpfile(text), { max_bytes = 0 }).problems[1].rule)
    end)

    it("validates the lines after a max_bytes problem as well", function()
      local text = good("a") .. "\n" .. good("a") .. "\n"
      local report = core.validate(tmpfile(text), { max_bytes = 10 })
      assert.equal("max_bytes@1 custom_id_unique@2", rules_of(report))
    end)
  end)

  describe("the report", function()
    it("counts lines and bytes and lists the models in order of first appearance", function()
      local text = table.concat({ good("a", "m1"), good("b", "m2"), good("c", "m1"), good("d", "m3") }, "\n") .. "\n"
      local report = core.validate(tmpfile(text), { replace_model = "x" })
      assert.is_true(report.ok, rules_of(report))
      assert.equal(4, report.lines)
      assert.equal(#text, report.bytes)
      assert.same({ "m1", "m2", "m3" }, report.models)
      assert.same({}, report.problems)
      assert.is_false(report.truncated)
    end)

    it("counts a last line without a newline, and checks it", function()
      local report = core.validate(tmpfile(good("a") .. "\n" .. good("b")))
      assert.is_true(report.ok)
      assert.equal(2, report.lines)
      report = core.validate(tmpfile(good("a") .. "\n" .. "42"))
      assert.equal("object@2", rules_of(report))
      report = core.validate(tmpfile(good("a") .. "\n" .. '{"custom_id":"b"'))
      assert.equal("json@2", rules_of(report))
    end)

    it("takes a trailing newline as the end of the last line, not an empty line", function()
      local report = core.validate(tmpfile(good("a") .. "\n"))
      assert.is_true(report.ok)
      assert.equal(1, report.lines)
      report = core.validate(tmpfile(good("a") .. "\n\n"))
      assert.equal("empty_line@2", rules_of(report))
      assert.equal(2, report.lines)
    end)

    it("accepts CRLF line endings", function()
      local text = table.concat({ good("a"), good("b"), good("c") }, "\r\n") .. "\r\n"
      local report = core.validate(tmpfile(text), { require_method_url = true })
      assert.is_true(report.ok, rules_of(report))
      assert.equal(3, report.lines)
      assert.same({ "m1" }, report.models)
      report = core.validate(tmpfile(good("a") .. "\r\n\r\n" .. good("b") .. "\r\n"))
      assert.equal("empty_line@2", rules_of(report))
    end)

    it("reads an empty file as 0 lines, ok", function()
      local report = core.validate(tmpfile(""))
      assert.same({ ok = true, lines = 0, bytes = 0, models = {}, problems = {}, truncated = false }, report)
    end)

    it("quotes at most about 40 bytes of a value, on one line", function()
      local id = ("x"):rep(500) .. "\\n"
      local report = core.validate(tmpfile(good(id) .. "\n" .. good(id) .. "\n"))
      local p = find_problem(report, "custom_id_unique")
      assert.truthy(#p.message < 120, p.message)
      assert.truthy(p.message:find(("x"):rep(40) .. "...", 1, true), p.message)
      report = core.validate(tmpfile(good("a\\nb") .. "\n" .. good("a\\nb") .. "\n"))
      assert.equal('line 2: custom_id "a?b" already used on line 1', report.problems[1].message)
    end)

    it("keeps max_problems problems, counts every line, and says it truncated", function()
      local lines = {}
      for i = 1, 10 do lines[i] = "[" .. i .. "]" end
      local text = table.concat(lines, "\n") .. "\n"
      local report = core.validate(tmpfile(text), { max_problems = 3 })
      assert.is_false(report.ok)
      assert.is_true(report.truncated)
      assert.equal(10, report.lines)
      assert.equal(3, #report.problems)
      assert.equal("object@1 object@2 object@3", rules_of(report))

      report = core.validate(tmpfile(text), { max_problems = 10 })
      assert.is_false(report.truncated)
      assert.equal(10, #report.problems)

      report = core.validate(tmpfile(text), { max_problems = 0 })
      assert.is_false(report.ok)
      assert.is_true(report.truncated)
      assert.same({}, report.problems)

      lines = {}
      for i = 1, 150 do lines[i] = "{}" end
      report = core.validate(tmpfile(table.concat(lines, "\n")))
      assert.equal(100, #report.problems) -- the default
      assert.is_true(report.truncated)
      assert.equal(150, report.lines)
    end)
  end)

  describe("custom_id_unique", function()
    -- the set is looked up a few lines late (to hide cache misses); the report must not show it
    it("reports a duplicate in its place among the line's other problems", function()
      local text = good("a") .. "\n" .. good("a"):gsub('"POST"', '"GET"') .. "\n" .. "[3]\n"
      assert.equal("custom_id_unique@2 method@2 object@3", rules_of(core.validate(tmpfile(text))))
      text = good("a") .. "\n" .. good("a"):gsub("abcde", "") .. "\n"
      local report = core.validate(tmpfile(text), { max_custom_id = 0, max_lines = 1 })
      assert.equal("custom_id_length@1 custom_id_length@2 custom_id_unique@2 max_lines@2",
                   rules_of(report))
    end)

    it("keeps the first max_problems problems in line order", function()
      local lines = { good("a"), good("a") }
      for i = 3, 20 do lines[i] = "[" .. i .. "]" end
      local report = core.validate(tmpfile(table.concat(lines, "\n")), { max_problems = 2 })
      assert.equal("custom_id_unique@2 object@3", rules_of(report))
      assert.is_true(report.truncated)
      lines[21] = good("a")
      report = core.validate(tmpfile(table.concat(lines, "\n")), { max_problems = 30 })
      assert.equal(20, #report.problems)
      assert.equal("custom_id_unique@21", report.problems[20].rule .. "@" .. report.problems[20].line)
      assert.matches("already used on line 1", report.problems[20].message)
    end)

    it("finds duplicates among neighbouring lines and at the end of the file", function()
      local lines = {}
      for i = 1, 12 do lines[i] = good("id" .. (i % 3)) end
      local report = core.validate(tmpfile(table.concat(lines, "\n")))
      local want = {}
      for i = 4, 12 do want[#want + 1] = "custom_id_unique@" .. i end
      assert.equal(table.concat(want, " "), rules_of(report))
      assert.matches('"id1" already used on line 1$', report.problems[7].message)
    end)
  end)

  describe("streaming", function()
    it("validates lines longer than the 256 KiB chunk, split anywhere", function()
      -- multi-byte characters, escapes and surrogate pairs land on every offset of a chunk
      local unit = "a\195\169\226\130\172\240\159\152\128\\n\\u00e9\\ud83d\\ude00\\\\"
      local big = unit:rep(math.ceil(700 * 1024 / #unit))
      local text = content(big, "long-1") .. "\n" .. content(big, "long-2") .. "\n" ..
                   good("short") .. "\n" .. content(big, "long-1") .. "\n"
      local report = core.validate(tmpfile(text))
      assert.equal(4, report.lines)
      assert.equal(#text, report.bytes)
      assert.same({ "m1" }, report.models)
      assert.equal("custom_id_unique@4", rules_of(report))
      assert.matches('already used on line 1', report.problems[1].message)
    end)

    it("finds a problem far into a long line, with its byte offset", function()
      local big = ("b"):rep(600 * 1024)
      local report = core.validate(tmpfile(good("a") .. "\n" .. content(big .. "\1")))
      assert.equal("json@2", rules_of(report))
      assert.matches("^line 2: invalid JSON at byte " .. (#content("") - 5 + #big + 1) .. ":",
                     report.problems[1].message)
      report = core.validate(tmpfile(content(big .. "\237\160\128", "z")))
      assert.equal("utf8@1", rules_of(report))
    end)

    it("validates a file of 10,000 lines", function()
      local lines = {}
      for i = 1, 10000 do lines[i] = good("req-" .. i) end
      local text = table.concat(lines, "\n") .. "\n"
      local report = core.validate(tmpfile(text), { require_method_url = true, max_lines = 10000 })
      assert.is_true(report.ok, rules_of(report))
      assert.equal(10000, report.lines)
      assert.equal(#text, report.bytes)
      assert.same({ "m1" }, report.models)

      lines[10001] = good("req-5000")
      report = core.validate(tmpfile(table.concat(lines, "\n")), { max_lines = 10000 })
      assert.equal("custom_id_unique@10001 max_lines@10001", rules_of(report))
      assert.matches('"req%-5000" already used on line 5000', report.problems[1].message)
    end)
  end)

  describe("failures and misuse", function()
    it("returns nil, msg, info{kind = 'io'} for a missing file", function()
      local path = os.tmpname()
      os.remove(path)
      local report, msg, info = core.validate(path)
      assert.is_nil(report)
      assert.is_string(msg)
      assert.truthy(msg:find(path, 1, true))
      assert.equal("io", info.kind)
      assert.equal(path, info.path)
    end)

    it("returns an io failure for a directory", function()
      local report, msg, info = core.validate("/")
      assert.is_nil(report)
      assert.is_string(msg)
      assert.equal("io", info.kind)
    end)

    it("raises naming the argument or option", function()
      local path = tmpfile(good("a") .. "\n")
      assert.has_error(function() core.validate(nil) end,
                       "moonbatch.core.validate: bad argument #1 'path' (string expected, got nil)")
      assert.has_error(function() core.validate(42) end,
                       "moonbatch.core.validate: bad argument #1 'path' (string expected, got number)")
      assert.has_error(function() core.validate(path, "x") end,
                       "moonbatch.core.validate: bad argument #2 'opts' (table expected, got string)")
      assert.has_error(function() core.validate(path, { nope = 1 }) end,
                       "moonbatch.core.validate: unknown option 'nope'")
      local bad = {
        { max_lines = "1" }, { max_lines = 1.5 }, { max_bytes = -1 }, { max_custom_id = {} },
        { max_problems = 0 / 0 }, { require_method_url = 1 }, { endpoint = 5 }, { replace_model = true },
      }
      for _, opts in ipairs(bad) do
        local name = next(opts)
        local ok, err = pcall(core.validate, path, opts)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("moonbatch.core.validate: bad option '" .. name .. "'", 1, true),
                      tostring(err))
      end
      assert.is_true(core.validate(path, {}).ok)
      assert.is_true(core.validate(path, { max_lines = math.huge, max_problems = 5.0 }).ok)
    end)
  end)
end)
