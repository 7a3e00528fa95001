-- spec/standin_lifecycle_spec.lua: stand-in batches that run (states, results, cancel, expiry,
-- failure, result URLs, the 404 window, broken downloads), per dialect, driven with curl.
local cjson = require("cjson")
local shell = require("spec.support.shell")
local quote, capture, read_file, write_file = shell.quote, shell.capture, shell.read_file, shell.write_file
local sh = shell.execute
local standin = require("spec.standin_helper")
local keys_of = standin.keys_of

local KEY = "sk-standin-lifecycle-3b9c"
local STEP = 0.2

-- Wall-clock seconds, with fractions.
local function now()
  return tonumber((capture("date +%s.%N"):gsub("%s+$", "")))
end

local function lines_of(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local curl = standin.curl_with(KEY)

local function post_json(url, body)
  return curl(url, { data = cjson.encode(body), headers = { "Content-Type: application/json" } })
end

local function message(content)
  return { { role = "user", content = content } }
end

-- Five requests (line 4 is blank): request-1, request-5 and request-6 succeed; request-2 is
-- marked to fail; line 3 is not JSON.
local INPUT = table.concat({
  cjson.encode({ custom_id = "request-1", body = { model = "model-a", messages = message("one") } }),
  cjson.encode({ custom_id = "request-2", body = { model = "model-a", messages = message("two"),
                                                   standin_fail = true } }),
  "this is not JSON",
  "",
  cjson.encode({ custom_id = "request-5", body = { messages = message("five") } }),
  cjson.encode({ custom_id = "request-6", method = "POST", url = "/v1/chat/completions",
                 body = { model = "model-b", messages = message("six") } }),
}, "\n") .. "\n"

describe("moonbatch-standin batches", function()
  local s, dir, tmp

  -- What the specs need of each dialect, in one shape.
  local dialects = {}

  local function path_of(name, content)
    local path = tmp .. "/" .. name
    write_file(path, content)
    return path
  end

  setup(function()
    dir = capture("mktemp -d"):gsub("%s+$", "")
    tmp = capture("mktemp -d"):gsub("%s+$", "")
    s = standin.start({ key = KEY, dir = dir })

    local function sf_dialect(name)
      local base = s.urls[name]
      return {
        name = name, base = base,
        states = { "in_queue", "in_progress", "finalizing", "completed" },
        cancel_states = { "cancelling", "cancelled" },
        upload = function(path)
          local r = curl(base .. "/files", { form = { "purpose=batch", "file=@" .. path } })
          assert.equal(200, r.status, r.body)
          return cjson.decode(r.body).data.id
        end,
        create = function(file_id, extra)
          local body = { input_file_id = file_id, endpoint = "/v1/chat/completions", completion_window = "24h" }
          for k, v in pairs(extra or {}) do body[k] = v end
          local r = post_json(base .. "/batches", body)
          assert.equal(200, r.status, r.body)
          return cjson.decode(r.body)
        end,
        expire = { metadata = { standin_expire = "true" } },
        get = function(id) return cjson.decode(curl(base .. "/batches/" .. id).body) end,
        cancel = function(id) return curl(base .. "/batches/" .. id .. "/cancel", { method = "POST" }) end,
        content = function(id) return curl(base .. "/files/" .. id .. "/content") end,
        done = function(b)
          local counts = b.request_counts
          return counts ~= cjson.null and counts.completed + counts.failed or 0
        end,
        assert_cancel_refused = function(r)
          assert.equal(400, r.status, r.body)
          assert.equal(20012, cjson.decode(r.body).code)
        end,
        assert_missing = function(r)
          assert.equal(404, r.status)
          assert.equal("404 page not found", r.body)
        end,
      }
    end
    dialects.siliconflow = sf_dialect("siliconflow")
    dialects["siliconflow-global"] = sf_dialect("siliconflow-global")

    local oa = s.urls.openai
    dialects.openai = {
      name = "openai", base = oa,
      states = { "validating", "in_progress", "finalizing", "completed" },
      cancel_states = { "cancelling", "cancelled" },
      upload = function(path)
        local r = curl(oa .. "/files", { form = { "purpose=batch", "file=@" .. path .. ";filename=input.jsonl" } })
        assert.equal(200, r.status, r.body)
        return cjson.decode(r.body).id
      end,
      create = function(file_id, extra)
        local body = { input_file_id = file_id, endpoint = "/v1/chat/completions", completion_window = "24h" }
        for k, v in pairs(extra or {}) do body[k] = v end
        local r = post_json(oa .. "/batches", body)
        assert.equal(200, r.status, r.body)
        return cjson.decode(r.body)
      end,
      expire = { metadata = { standin_expire = "true" } },
      get = function(id) return cjson.decode(curl(oa .. "/batches/" .. id).body) end,
      cancel = function(id) return curl(oa .. "/batches/" .. id .. "/cancel", { method = "POST" }) end,
      content = function(id) return curl(oa .. "/files/" .. id .. "/content") end,
      done = function(b) return b.request_counts.completed + b.request_counts.failed end,
      assert_cancel_refused = function(r)
        assert.equal(400, r.status, r.body)
        local err = cjson.decode(r.body).error
        assert.equal("invalid_request_error", err.type)
        assert.truthy(err.message:find("Cannot cancel", 1, true))
      end,
      assert_missing = function(r)
        assert.equal(404, r.status)
        assert.truthy(cjson.decode(r.body).error.message:find("No such File object", 1, true))
      end,
    }

    local tg = s.urls.together
    dialects.together = {
      name = "together", base = tg,
      states = { "VALIDATING", "IN_PROGRESS", "COMPLETED" },
      cancel_states = { "CANCELING", "CANCELLED" },
      upload = function(path)
        local r = curl(tg .. "/files/upload", { form = { "purpose=batch-api", "file_name=input.jsonl",
                                                         "file=@" .. path } })
        assert.equal(200, r.status, r.body)
        return cjson.decode(r.body).id
      end,
      create = function(file_id, extra)
        local body = { input_file_id = file_id, endpoint = "/v1/chat/completions" }
        for k, v in pairs(extra or {}) do body[k] = v end
        local r = post_json(tg .. "/batches", body)
        assert.equal(201, r.status, r.body)
        return cjson.decode(r.body).job
      end,
      expire = { priority = -1 },
      get = function(id) return cjson.decode(curl(tg .. "/batches/" .. id).body) end,
      cancel = function(id) return curl(tg .. "/batches/" .. id .. "/cancel", { method = "POST" }) end,
      content = function(id) return curl(tg .. "/files/" .. id .. "/content") end,
      done = function(b, total) return b.progress * total / 100 end,
      assert_cancel_refused = function(r)
        assert.equal(400, r.status, r.body)
        assert.equal("string", type(cjson.decode(r.body).error))
      end,
      assert_missing = function(r)
        assert.equal(404, r.status)
        assert.equal("table", type(cjson.decode(r.body).error))
      end,
    }
  end)

  teardown(function()
    if s then s:stop() end
    sh("rm -rf " .. quote(dir) .. " " .. quote(tmp))
  end)

  before_each(function()
    s:reset()
    s:config({ step_seconds = STEP })
  end)

  -- Polls the batch until until(batch) holds (default: a final state); returns it and the
  -- statuses seen, in order, without repeats.
  local FINAL = { completed = true, failed = true, expired = true, cancelled = true, COMPLETED = true,
                  FAILED = true, EXPIRED = true, CANCELLED = true }
  local function wait(d, id, seen, until_)
    seen = seen or {}
    until_ = until_ or function(b) return FINAL[b.status] end
    for _ = 1, 200 do
      local b = d.get(id)
      if seen[#seen] ~= b.status then seen[#seen + 1] = b.status end
      if until_(b) then return b, seen end
      sh("sleep 0.03")
    end
    error("batch " .. id .. " did not get there; seen: " .. table.concat(seen, " "))
  end

  -- Whether list holds items of order, in that order (a state may pass between two polls).
  local function assert_in_order(order, list)
    local at = 0
    for _, item in ipairs(list) do
      local found
      for i = at + 1, #order do
        if order[i] == item then found = i end
      end
      assert.is_truthy(found, item .. " out of order in " .. table.concat(list, " "))
      at = found
    end
  end

  local function download(d, id)
    local r = d.content(id)
    assert.equal(200, r.status, r.body)
    assert.equal(tostring(#r.body), r.headers["content-length"])
    -- byte-exact: the same bytes as on disk
    assert.equal(read_file(dir .. "/files/" .. id), r.body)
    assert.equal(r.body, s:file_content(id))
    return r.body
  end

  local function decoded_lines(text)
    local out = {}
    for i, line in ipairs(lines_of(text)) do out[i] = cjson.decode(line) end
    return out
  end

  local function custom_ids(results)
    local out = {}
    for i, line in ipairs(results) do out[i] = line.custom_id end
    return out
  end

  local function assert_success_line(line, model)
    assert.same({ "custom_id", "error", "id", "response" }, keys_of(line))
    assert.matches("^batch_req_", line.id)
    assert.equal(cjson.null, line.error)
    assert.equal(200, line.response.status_code)
    assert.matches("^req_", line.response.request_id)
    local body = line.response.body
    assert.matches("^chatcmpl%-", body.id)
    assert.equal("chat.completion", body.object)
    assert.equal("number", type(body.created))
    assert.equal(model, body.model)
    assert.equal(1, #body.choices)
    assert.same({ index = 0, finish_reason = "stop",
                  message = { role = "assistant", content = "echo: " .. line.custom_id } }, body.choices[1])
    local usage = body.usage
    assert.equal(usage.prompt_tokens + usage.completion_tokens, usage.total_tokens)
  end

  local function assert_failure_line(line)
    assert.same({ "custom_id", "error", "id", "response" }, keys_of(line))
    assert.equal(cjson.null, line.error)
    assert.equal(400, line.response.status_code)
    assert.matches("^req_", line.response.request_id)
    assert.equal("invalid_request_error", line.response.body.error.type)
    assert.equal("string", type(line.response.body.error.message))
  end

  local function iso_seconds(iso)
    local y, mo, d, h, mi, sec = iso:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)Z$")
    assert.is_truthy(y, iso)
    return tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec), y .. mo .. d
  end

  for _, name in ipairs({ "siliconflow", "siliconflow-global", "openai", "together" }) do
    describe(name, function()
      local d
      before_each(function()
        d = dialects[name]
      end)

      it("runs a batch through its states to completed results", function()
        local file_id = d.upload(path_of("input.jsonl", INPUT))
        local created = d.create(file_id)
        assert.equal(d.states[1], created.status)
        local progress = {}
        local seen = { created.status }
        local b = wait(d, created.id, seen, function(b)
          progress[#progress + 1] = d.done(b, 5)
          return FINAL[b.status]
        end)
        assert.equal(d.states[#d.states], b.status)
        assert_in_order(d.states, seen)
        assert.is_true(#seen >= 3, table.concat(seen, " "))
        for i = 2, #progress do assert.is_true(progress[i] >= progress[i - 1]) end
        if name == "together" then
          assert.equal(100, b.progress)
          local start = iso_seconds(b.created_at)
          local finish = iso_seconds(b.completed_at)
          assert.is_true((finish - start) % 86400 <= 2)
          assert.equal(cjson.null, b.error)
        else
          assert.same({ total = 5, completed = 3, failed = 2 }, b.request_counts)
          assert.is_true(b.created_at <= b.in_progress_at)
          assert.is_true(b.in_progress_at <= b.finalizing_at)
          assert.is_true(b.finalizing_at <= b.completed_at)
          assert.is_true(b.completed_at - b.created_at <= 2)
          for _, k in ipairs({ "failed_at", "expired_at", "cancelling_at", "cancelled_at" }) do
            assert.equal(cjson.null, b[k], k)
          end
          assert.equal(cjson.null, b.errors)
        end

        local output = decoded_lines(download(d, b.output_file_id))
        assert.same({ "request-1", "request-5", "request-6" }, custom_ids(output))
        assert_success_line(output[1], "model-a")
        assert_success_line(output[2], "standin-model")   -- the line names no model
        assert_success_line(output[3], "model-b")
        local errors = decoded_lines(download(d, b.error_file_id))
        assert.same({ "request-2", "line-3" }, custom_ids(errors))
        for _, line in ipairs(errors) do assert_failure_line(line) end

        -- a final batch cannot be cancelled; it stays as it was
        d.assert_cancel_refused(d.cancel(b.id))
        assert.same(b, d.get(b.id))
      end)

      it("cancels a queued batch: cancelling, then cancelled one step later, without results", function()
        local created = d.create(d.upload(path_of("input.jsonl", INPUT)))
        local r = d.cancel(created.id)
        assert.equal(200, r.status, r.body)
        local cancelling = cjson.decode(r.body)
        assert.equal(d.cancel_states[1], cancelling.status)
        local b, seen = wait(d, created.id, { cancelling.status })
        assert.same(d.cancel_states, seen)
        assert.equal(cjson.null, b.output_file_id)
        assert.equal(cjson.null, b.error_file_id)
        assert.equal(0, d.done(b, 5))
        if name == "together" then
          assert.equal("string", type(b.completed_at))
        else
          assert.is_true(b.cancelled_at >= b.cancelling_at)
          assert.equal(cjson.null, b.completed_at)
        end
        d.assert_cancel_refused(d.cancel(b.id))
      end)

      it("keeps the partial results of a batch cancelled while in progress", function()
        s:config({ step_seconds = 0.4 })
        local many = {}
        for i = 1, 30 do many[i] = cjson.encode({ custom_id = "r" .. i, body = { messages = message("x") } }) end
        local created = d.create(d.upload(path_of("many.jsonl", table.concat(many, "\n"))))
        wait(d, created.id, nil, function(b) return d.done(b, 30) > 0 end)
        local r = d.cancel(created.id)
        assert.equal(200, r.status, r.body)
        local at_cancel = d.done(cjson.decode(r.body), 30)
        local b = wait(d, created.id)
        assert.equal(d.cancel_states[2], b.status)
        assert.equal(at_cancel, d.done(b, 30))
        local output = decoded_lines(download(d, b.output_file_id))
        assert.is_true(#output >= 1 and #output < 30, #output .. " of 30 done at the cancel")
        assert.equal(math.floor(at_cancel + 0.5), #output)
        for i, line in ipairs(output) do assert.equal("r" .. i, line.custom_id) end
      end)

      it("expires when asked to, with the unfinished requests in the error file", function()
        local created = d.create(d.upload(path_of("input.jsonl", INPUT)), d.expire)
        local b, seen = wait(d, created.id, { created.status })
        local expired = name == "together" and "EXPIRED" or "expired"
        assert.equal(expired, b.status)
        assert.same({ d.states[1], d.states[2], expired }, seen)
        -- half the requests (2 of 5) were done: request-1 succeeded, request-2 failed
        assert.same({ "request-1" }, custom_ids(decoded_lines(download(d, b.output_file_id))))
        local errors = decoded_lines(download(d, b.error_file_id))
        assert.same({ "request-2", "line-3", "request-5", "request-6" }, custom_ids(errors))
        assert_failure_line(errors[1])
        for i = 2, 4 do
          assert.same({ id = errors[i].id, custom_id = errors[i].custom_id, response = cjson.null,
                        error = { code = "batch_expired",
                                  message = "This request could not be executed before the completion window expired." } },
            errors[i])
        end
        if name == "together" then
          assert.equal(40, b.progress)
        else
          assert.same({ total = 5, completed = 1, failed = 4 }, b.request_counts)
          assert.equal("number", type(b.expired_at))
          assert.equal(cjson.null, b.finalizing_at)
          assert.equal(cjson.null, b.completed_at)
          assert.is_true(b.expires_at <= b.expired_at)
        end
      end)

      it("fails a batch whose input has no valid line", function()
        local created = d.create(d.upload(path_of("bad.jsonl", 'not json\n{"custom_id":"x"}\n[1]\n')))
        local b, seen = wait(d, created.id, { created.status })
        local failed = name == "together" and "FAILED" or "failed"
        assert.same({ d.states[1], failed }, seen)
        assert.equal(cjson.null, b.output_file_id)
        assert.equal(cjson.null, b.error_file_id)
        if name == "together" then
          assert.equal("string", type(b.error))
          assert.truthy(b.error:find("line 1", 1, true))
        elseif name == "openai" then
          assert.equal("list", b.errors.object)
          assert.equal(3, #b.errors.data)
          for i, e in ipairs(b.errors.data) do
            assert.same({ "code", "line", "message", "param" }, keys_of(e))
            assert.equal(i, e.line)
            assert.equal(cjson.null, e.param)
          end
          assert.equal("number", type(b.failed_at))
        else
          assert.equal(3, #b.errors)
          for _, e in ipairs(b.errors) do assert.equal("string", type(e)) end
          assert.equal("number", type(b.failed_at))
        end
      end)
    end)
  end

  it("fails an empty input, with OpenAI's empty_file error", function()
    local d = dialects.openai
    local b = wait(d, d.create(d.upload(path_of("empty.jsonl", ""))).id)
    assert.equal("failed", b.status)
    assert.equal("empty_file", b.errors.data[1].code)
    assert.equal(cjson.null, b.errors.data[1].line)
  end)

  it("uses SiliconFlow's replace.model for every result line", function()
    local d = dialects.siliconflow
    local b = wait(d, d.create(d.upload(path_of("input.jsonl", INPUT)), { replace = { model = "deepseek-ai/DeepSeek-V3" } }).id)
    for _, line in ipairs(decoded_lines(download(d, b.output_file_id))) do
      assert.equal("deepseek-ai/DeepSeek-V3", line.response.body.model)
    end
  end)

  it("uses Together's model_id for lines without a model", function()
    local d = dialects.together
    local b = wait(d, d.create(d.upload(path_of("input.jsonl", INPUT)), { model_id = "together-model" }).id)
    local output = decoded_lines(download(d, b.output_file_id))
    assert.same({ "model-a", "together-model", "model-b" }, {
      output[1].response.body.model, output[2].response.body.model, output[3].response.body.model })
    assert.equal("together-model", b.model_id)
  end)

  it("lists result files like uploads where the provider does", function()
    local oa, tg, sf = dialects.openai, dialects.together, dialects.siliconflow
    local ids = {}
    for i, d in ipairs({ oa, tg, sf }) do ids[i] = d.create(d.upload(path_of("input.jsonl", INPUT))).id end
    local ob, tb, sb = wait(oa, ids[1]), wait(tg, ids[2]), wait(sf, ids[3])
    local file = cjson.decode(curl(oa.base .. "/files/" .. ob.output_file_id).body)
    assert.equal("batch_output", file.purpose)
    assert.equal(#download(oa, ob.output_file_id), file.bytes)
    local listed = cjson.decode(curl(oa.base .. "/files?purpose=batch_output").body)
    assert.equal(2, #listed.data)
    local tfile = cjson.decode(curl(tg.base .. "/files/" .. tb.error_file_id).body)
    assert.equal("batch-generated", tfile.purpose)
    -- SiliconFlow's list takes only purpose=batch: result files stay out of it
    local slist = cjson.decode(curl(sf.base .. "/files?purpose=batch").body).data.data
    assert.equal(1, #slist)
    assert.not_equal(sb.output_file_id, slist[1].id)
  end)

  it("reads input lines as a stream, whatever their length and line ending", function()
    local d = dialects.openai
    local long = cjson.encode({ custom_id = "long", body = { messages = message(("x"):rep(9 * 1048576)) } })
    local text = long .. "\r\n" .. cjson.encode({ custom_id = "crlf", body = { messages = message("y") } }) .. "\r\n"
      .. cjson.encode({ custom_id = "last", body = { messages = message("z") } })
    local b = wait(d, d.create(d.upload(path_of("long.jsonl", text))).id)
    assert.equal("completed", b.status)
    assert.same({ "crlf", "last" }, custom_ids(decoded_lines(download(d, b.output_file_id))))
    local errors = decoded_lines(download(d, b.error_file_id))
    assert.same({ "line-1" }, custom_ids(errors))
    assert.truthy(errors[1].response.body.error.message:find("longer than", 1, true))
  end)

  describe("settings", function()
    it("have defaults that reset restores, and refuse bad values", function()
      assert.same({ step_seconds = STEP, siliconflow_output_urls = false, content_404_seconds = 0,
                    enqueued_token_limit = 0 }, cjson.decode((s:call("GET", "/config"))).config)
      s:reset()
      local defaults = { step_seconds = 1, siliconflow_output_urls = false, content_404_seconds = 0,
                         enqueued_token_limit = 0 }
      assert.same(defaults, cjson.decode((s:call("GET", "/config"))).config)
      for _, bad in ipairs({ { step_seconds = 0 }, { step_seconds = "1" }, { step_seconds = 4000 },
                             { content_404_seconds = -1 }, { siliconflow_output_urls = "yes" }, { stpe_seconds = 1 },
                             { enqueued_token_limit = -1 }, { enqueued_token_limit = "many" },
                             { 1, 2 } }) do
        local body, status = s:call("POST", "/config", bad)
        assert.equal(400, status, body)
        assert.is_false(cjson.decode(body).ok)
      end
      assert.same(defaults, cjson.decode((s:call("GET", "/config"))).config)
      assert.same({ step_seconds = 2, siliconflow_output_urls = false, content_404_seconds = 0,
                    enqueued_token_limit = 0 }, s:config({ step_seconds = 2 }))
    end)

    it("step 1 second by default, read when a batch is created", function()
      s:reset()
      local d = dialects.openai
      local id = d.create(d.upload(path_of("input.jsonl", INPUT))).id
      s:config({ step_seconds = 0.05 })   -- too late for that batch
      local began = now()
      wait(d, id, nil, function(b) return b.status == "in_progress" end)
      local took = now() - began
      assert.is_true(took > 0.8 and took < 1.5, "in_progress after " .. took .. " s")
    end)
  end)

  describe("result files", function()
    it("are SiliconFlow URLs without auth when siliconflow_output_urls is set", function()
      local d = dialects.siliconflow
      local before = d.create(d.upload(path_of("input.jsonl", INPUT)))
      s:config({ siliconflow_output_urls = true })
      local b = wait(d, d.create(d.upload(path_of("input.jsonl", INPUT))).id)
      local prefix = "http://127.0.0.1:" .. s.port .. "/_standin/results/"
      for _, url in ipairs({ b.output_file_id, b.error_file_id }) do
        assert.equal(prefix, url:sub(1, #prefix))
        assert.matches("^%w+$", url:sub(#prefix + 1))
        for _, key in ipairs({ false, "sk-wrong" }) do
          local r = curl(url, { key = key })
          assert.equal(200, r.status)
          assert.equal(tostring(#r.body), r.headers["content-length"])
        end
      end
      local output = curl(b.output_file_id, { key = false }).body
      assert.same({ "request-1", "request-5", "request-6" }, custom_ids(decoded_lines(output)))
      local log = s:log()
      local e = log[#log]
      assert.equal(b.output_file_id:sub(#("http://127.0.0.1:" .. s.port) + 1), e.path)
      assert.equal("missing", e.auth)
      assert.equal(200, e.status)
      -- batches created before the setting keep file ids
      local earlier = wait(d, before.id)
      assert.matches("^file%-%l+$", earlier.output_file_id)
      local missing = curl(prefix .. "nosuchtoken", { key = false })
      assert.equal(404, missing.status)
      assert.equal("404 page not found", missing.body)
      s:reset()
      assert.equal(404, curl(b.output_file_id, { key = false }).status)
    end)

    it("answer 404 for content_404_seconds after their batch ends, then their bytes", function()
      s:config({ content_404_seconds = 1.5, siliconflow_output_urls = false })
      local names = { "siliconflow", "openai", "together" }
      local ids = {}
      for _, name in ipairs(names) do
        local d = dialects[name]
        ids[name] = d.create(d.upload(path_of("input.jsonl", INPUT))).id
      end
      s:config({ siliconflow_output_urls = true })
      local g = dialects["siliconflow-global"]
      local url_batch = g.create(g.upload(path_of("input.jsonl", INPUT))).id
      local done = {}
      for _, name in ipairs(names) do done[name] = wait(dialects[name], ids[name]) end
      local url = wait(g, url_batch).output_file_id
      for _, name in ipairs(names) do
        local d = dialects[name]
        d.assert_missing(d.content(done[name].output_file_id))
        d.assert_missing(d.content(done[name].error_file_id))
      end
      local early = curl(url, { key = false })
      assert.equal(404, early.status)
      assert.equal("404 page not found", early.body)
      for _, name in ipairs(names) do
        local d = dialects[name]
        local r
        for _ = 1, 100 do
          r = d.content(done[name].output_file_id)
          if r.status == 200 then break end
          sh("sleep 0.05")
        end
        assert.equal(200, r.status)
        assert.equal(3, #lines_of(r.body))
      end
      local late
      for _ = 1, 100 do
        late = curl(url, { key = false })
        if late.status == 200 then break end
        sh("sleep 0.05")
      end
      assert.equal(200, late.status)
    end)
  end)

  describe("downloads under faults", function()
    local d, b, output, path

    before_each(function()
      d = dialects.openai
      b = wait(d, d.create(d.upload(path_of("input.jsonl", INPUT))).id)
      path = "/openai/v1/files/" .. b.output_file_id .. "/content"
      output = download(d, b.output_file_id)
      assert.is_true(#output > 300)
    end)

    it("truncate announces the whole file, sends the first bytes and closes", function()
      s:fault("GET", path, { { truncate = 100 } })
      local r = d.content(b.output_file_id)
      assert.equal(18, r.rc)
      assert.equal(tostring(#output), r.headers["content-length"])
      assert.equal(output:sub(1, 100), r.body)
      local log = s:log()
      assert.same({ truncate = 100 }, log[#log].fault)
      assert.equal(output, d.content(b.output_file_id).body)
    end)

    it("reset_after sends that many bytes of the file, then resets the connection", function()
      s:fault("GET", path, { { reset_after = 150 }, { reset_after = 0 } })
      local r = d.content(b.output_file_id)
      assert.equal(56, r.rc)
      assert.equal(200, r.status)
      assert.equal(output:sub(1, 150), r.body)
      local nothing = d.content(b.output_file_id)
      assert.equal(56, nothing.rc)
      assert.equal("", nothing.body)
      assert.equal(output, d.content(b.output_file_id).body)
    end)

    it("status faults answer the dialect's error, then the file", function()
      s:fault("GET", path, { { status = 503, retry_after = "0" } })
      local r = d.content(b.output_file_id)
      assert.equal(503, r.status)
      assert.equal("server_error", cjson.decode(r.body).error.type)
      assert.equal(output, d.content(b.output_file_id).body)
    end)

    it("apply to SiliconFlow's result URLs too", function()
      s:config({ siliconflow_output_urls = true })
      local sf = dialects.siliconflow
      local url = wait(sf, sf.create(sf.upload(path_of("input.jsonl", INPUT))).id).output_file_id
      local whole = curl(url, { key = false }).body
      local url_path = url:match("^http://[^/]+(/.*)$")
      s:fault("GET", url_path, { { reset_after = 10 }, { truncate = 20 }, { status = 503 } })
      local reset = curl(url, { key = false })
      assert.equal(56, reset.rc)
      assert.equal(whole:sub(1, 10), reset.body)
      local cut = curl(url, { key = false })
      assert.equal(18, cut.rc)
      assert.equal(whole:sub(1, 20), cut.body)
      local busy = curl(url, { key = false })
      assert.equal(503, busy.status)
      assert.equal(50505, cjson.decode(busy.body).code)
      assert.equal(whole, curl(url, { key = false }).body)
    end)
  end)

  it("never lets the key into replies, result files or the log", function()
    s:config({ siliconflow_output_urls = true })
    local text = cjson.encode({ custom_id = "id-" .. KEY, body = { model = KEY, messages = message(KEY) } }) .. "\n"
      .. cjson.encode({ custom_id = KEY, body = { standin_fail = true } }) .. "\n"
    local bodies, ids = {}, {}
    local names = { "siliconflow", "openai", "together" }
    for _, name in ipairs(names) do
      local d = dialects[name]
      ids[name] = d.create(d.upload(path_of("key.jsonl", text)), name == "together" and { model_id = KEY }
        or { metadata = { note = KEY } }).id
    end
    for _, name in ipairs(names) do
      local d, id = dialects[name], ids[name]
      local b = wait(d, id)
      bodies[#bodies + 1] = cjson.encode(b)
      for _, ref in ipairs({ b.output_file_id, b.error_file_id }) do
        local r = ref:match("^http") and curl(ref, { key = false }) or d.content(ref)
        assert.equal(200, r.status)
        bodies[#bodies + 1] = r.body
      end
      bodies[#bodies + 1] = curl(d.base .. "/batches").body
      bodies[#bodies + 1] = d.cancel(id).body
    end
    for _, body in ipairs(bodies) do assert.is_nil(body:find(KEY, 1, true), body) end
    assert.truthy(bodies[2]:find("[redacted]", 1, true))
    assert.is_nil(s:call("GET", "/log"):find(KEY, 1, true))
    assert.is_nil((read_file(dir .. "/error.log") or ""):find(KEY, 1, true))
  end)

  it("keeps each dialect's batches to itself, and reset removes them with their files", function()
    local oa, tg = dialects.openai, dialects.together
    local b = wait(oa, oa.create(oa.upload(path_of("input.jsonl", INPUT))).id)
    assert.equal(404, curl(tg.base .. "/batches/" .. b.id).status)
    assert.equal("[]", curl(tg.base .. "/batches").body)
    assert.equal(404, curl(dialects.siliconflow.base .. "/batches/" .. b.id).status)
    s:reset()
    assert.equal(404, curl(oa.base .. "/batches/" .. b.id).status)
    assert.is_nil(read_file(dir .. "/files/" .. b.output_file_id))
    assert.equal("", capture("ls -A " .. quote(dir .. "/files")))
  end)
end)
