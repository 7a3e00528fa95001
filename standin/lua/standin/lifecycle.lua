-- How a stand-in batch runs: its input read and judged once, its states over time, its results.
--
-- Nothing runs in the background. A batch is created with a plan (the time each state begins,
-- one step apart); every read works out where the plan stands now (view), and the first read
-- that finds the batch in a final state writes its result files (finalize). The dialects only
-- render views in their own shapes.
--
-- Timeline, with s = the step and t0 = creation (has_finalizing: SiliconFlow and OpenAI):
--   queued t0, in_progress t0+s, finalizing t0+2s, completed t0+3s   (Together: completed t0+2s)
--   no valid input line: queued t0, failed t0+s
--   expire: queued t0, in_progress t0+s (only half the requests get done), expired t0+2s
--   cancel at tc (before a final state): ..., cancelling tc, cancelled tc+s
-- Requests are done at an even pace through in_progress, in input order.
local common = require("standin.common")

local M = {}

local CHUNK = 65536
local MAX_LINE = 8 * 1048576   -- a longer input line is an error line, and never held in memory
local MAX_ERRORS = 10          -- job-level errors kept for a failed batch

M.FINAL = { completed = true, failed = true, expired = true, cancelled = true }

local EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."

---------------------------------------------------------------------------------------------
-- Reading the input.

-- Calls fn(n, text) for each line of the file at path (n from 1; text without "\n" or a
-- trailing "\r"), or fn(n, nil) for a line longer than MAX_LINE. Reads in chunks.
local function each_line(path, fn)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local parts, size, over, n = {}, 0, false, 0
  local function emit()
    n = n + 1
    local text = not over and table.concat(parts) or nil
    if text then text = text:gsub("\r$", "") end
    fn(n, text)
    parts, size, over = {}, 0, false
  end
  while true do
    local chunk = f:read(CHUNK)
    if not chunk then break end
    local pos = 1
    while true do
      local nl = chunk:find("\n", pos, true)
      local piece = chunk:sub(pos, nl and nl - 1 or nil)
      if not over then
        size = size + #piece
        if size > MAX_LINE then
          over, parts = true, {}
        else
          parts[#parts + 1] = piece
        end
      end
      if not nl then break end
      emit()
      pos = nl + 1
    end
  end
  f:close()
  if size > 0 or over then emit() end
  return true
end

local RESULT = common.shape({ "id", "custom_id", "response", "error" })
local RESPONSE = common.shape({ "status_code", "request_id", "body" })
local COMPLETION = common.shape({ "id", "object", "created", "model", "choices", "usage" })
local CHOICE = common.shape({ "index", "message", "finish_reason" })
local MESSAGE = common.shape({ "role", "content" })
local USAGE = common.shape({ "prompt_tokens", "completion_tokens", "total_tokens" })
local ERROR_BODY = common.shape({ "error" })
local REQUEST_ERROR = common.shape({ "message", "type" })
local LINE_ERROR = common.shape({ "code", "message" })

local request_seq = 0

local function tokens(text)
  return math.max(1, math.ceil(#text / 4))
end

local function success_line(custom_id, model, created, messages)
  request_seq = request_seq + 1
  local n = request_seq
  local content = "echo: " .. custom_id
  local prompt = tokens(common.encode(messages))
  local completion = tokens(content)
  return setmetatable({
    id = "batch_req_" .. n, custom_id = custom_id, error = common.null,
    response = setmetatable({
      status_code = 200, request_id = "req_" .. n,
      body = setmetatable({
        id = "chatcmpl-" .. n, object = "chat.completion", created = created, model = model,
        choices = common.array({ setmetatable({
          index = 0, finish_reason = "stop",
          message = setmetatable({ role = "assistant", content = content }, MESSAGE),
        }, CHOICE) }),
        usage = setmetatable({ prompt_tokens = prompt, completion_tokens = completion,
                               total_tokens = prompt + completion }, USAGE),
      }, COMPLETION),
    }, RESPONSE),
  }, RESULT)
end

local function failure_line(custom_id, message)
  request_seq = request_seq + 1
  local n = request_seq
  return setmetatable({
    id = "batch_req_" .. n, custom_id = custom_id, error = common.null,
    response = setmetatable({
      status_code = 400, request_id = "req_" .. n,
      body = setmetatable({
        error = setmetatable({ message = message, type = "invalid_request_error" }, REQUEST_ERROR),
      }, ERROR_BODY),
    }, RESPONSE),
  }, RESULT)
end

local function expired_line(custom_id)
  request_seq = request_seq + 1
  return setmetatable({
    id = "batch_req_" .. request_seq, custom_id = custom_id, response = common.null,
    error = setmetatable({ code = "batch_expired", message = EXPIRED_MESSAGE }, LINE_ERROR),
  }, RESULT)
end

-- Judges one input line. Returns valid, custom_id, result line (the error line when the
-- request fails), problem (why an invalid line is invalid).
local function judge(n, text, b)
  local fallback = "line-" .. n
  if text == nil then
    local problem = ("line %d is longer than %d bytes"):format(n, MAX_LINE)
    return false, fallback, failure_line(fallback, problem), problem
  end
  local line = common.decode(text)
  if not common.is_object(line) then
    local problem = ("line %d is not a JSON object"):format(n)
    return false, fallback, failure_line(fallback, problem), problem
  end
  local custom_id = line.custom_id
  if type(custom_id) ~= "string" or custom_id == "" then
    local problem = ("line %d has no custom_id string"):format(n)
    return false, fallback, failure_line(fallback, problem), problem
  end
  local body = line.body
  if not common.is_object(body) then
    local problem = ("line %d (custom_id %s) has no body object"):format(n, custom_id)
    return false, custom_id, failure_line(custom_id, problem), problem
  end
  if body.standin_fail == true then
    return true, custom_id, failure_line(custom_id, "standin_fail is set on this request")
  end
  local model = b.model_override
    or (type(body.model) == "string" and body.model)
    or b.default_model or "standin-model"
  return true, custom_id, success_line(custom_id, model, math.floor(b.created + b.step), body.messages)
end

-- Reads the input once: counts and judges its requests (blank lines are skipped), and writes
-- each request's result, in order, to a staging file: "<o|f>\t<custom_id JSON>\t<result JSON>".
local function scan(b, input_path)
  local stage_path = common.temp_path("stage-" .. b.id)
  local stage = assert(io.open(stage_path, "wb"))
  local outcomes, total, valid, problems = {}, 0, 0, {}
  local enqueued = 0 -- the batch's enqueued tokens: a quarter of its valid lines' bytes
  local ok, err = each_line(input_path, function(n, text)
    if text and not text:find("%S") then return end
    local is_valid, custom_id, result, problem = judge(n, text, b)
    if is_valid then enqueued = enqueued + math.ceil(#text / 4) end
    total = total + 1
    if is_valid then valid = valid + 1 end
    if problem and #problems < MAX_ERRORS then problems[#problems + 1] = { line = n, message = problem } end
    local outcome = result.response ~= common.null and result.response.status_code == 200 and "o" or "f"
    outcomes[total] = outcome
    stage:write(outcome, "\t", common.encode(custom_id), "\t", common.redact(common.encode(result)), "\n")
  end)
  stage:close()
  if not ok then problems = { { message = "cannot read the input file: " .. tostring(err) } } end
  b.stage_path = stage_path
  b.outcomes = table.concat(outcomes)
  b.total = total
  b.valid = valid
  b.tokens = enqueued
  if valid == 0 then
    b.fail = true
    if total == 0 and ok then problems = { { code = "empty_file", message = "The input file has no requests." } } end
    b.problems = problems
  end
end

---------------------------------------------------------------------------------------------
-- The plan.

local function build_plan(b)
  local s, t0 = b.step, b.created
  local plan = { { "queued", t0 } }
  if b.fail then
    plan[2] = { "failed", t0 + s }
  elseif b.expire then
    plan[2] = { "in_progress", t0 + s }
    plan[3] = { "expired", t0 + 2 * s }
  else
    plan[2] = { "in_progress", t0 + s }
    if b.has_finalizing then
      plan[3] = { "finalizing", t0 + 2 * s }
      plan[4] = { "completed", t0 + 3 * s }
    else
      plan[3] = { "completed", t0 + 2 * s }
    end
  end
  b.plan = plan
end

-- How many requests are done at time t (cancel freezes the count).
local function done_at(b, t)
  if b.fail or b.total == 0 then return 0 end
  local started = t - (b.created + b.step)
  local share = math.max(0, math.min(started / b.step, b.expire and 0.5 or 1))
  local done = math.floor(share * b.total + 1e-9)
  if b.cancel_done then done = math.min(done, b.cancel_done) end
  return done
end

local function count(outcomes, k, char)
  local _, n = outcomes:sub(1, k):gsub(char, "")
  return n
end

-- Creates and keeps a batch. spec: id, input (the input file's record), has_finalizing,
-- expire, model_override, default_model, new_file_id() and file_fields(kind, b) (the record
-- extras of a result file: purpose, filename, ...; kind "output" or "error"), and any fields
-- of the dialect's own. Takes the step, URL and 404 settings as they are now.
function M.create(instance, spec)
  local settings = common.settings()
  local b = spec
  b.created = ngx.now()
  b.step = settings.step_seconds
  b.content_404 = settings.content_404_seconds
  b.output_urls = settings.siliconflow_output_urls
  scan(b, spec.input.path)
  -- the enqueued-token limit (OpenAI's, per organisation): the tokens of the batches not yet
  -- ended, and this one's, may not exceed it, else it fails as token_limit_exceeded
  local limit = settings.enqueued_token_limit
  if limit > 0 and not b.fail then
    local enqueued = 0
    for _, other in ipairs(common.batches(instance)) do
      if other.plan and other.plan[#other.plan][2] > b.created and not other.cancel_done then
        enqueued = enqueued + (other.tokens or 0)
      end
    end
    if enqueued + b.tokens > limit then
      b.fail, b.tokens = true, 0
      b.problems = { { code = "token_limit_exceeded", message = ("Enqueued token limit reached for %s in " ..
        "organization org-standin. Limit: %d enqueued tokens. Please try again once some in_progress " ..
        "batches have been completed."):format(b.model_override or b.default_model or "the model", limit) } }
    end
  end
  build_plan(b)
  common.store_batch(instance, b)
  return b
end

---------------------------------------------------------------------------------------------
-- Results.

local function write_results(b, kind, lines_of)
  local id = b.new_file_id()
  local path = common.file_path(id)
  local f = assert(io.open(path, "wb"))
  local bytes, lines = 0, 0
  lines_of(function(line)
    f:write(line, "\n")
    bytes, lines = bytes + #line + 1, lines + 1
  end)
  f:close()
  if lines == 0 then
    os.remove(path)
    return nil
  end
  local record = { id = id, instance = b.instance, path = path, bytes = bytes, lines = lines,
                   created_at = math.floor(b.final_at), available_at = b.final_at + b.content_404 }
  for k, v in pairs(b.file_fields(kind, b)) do record[k] = v end
  common.add_file(record)
  if b.output_urls then
    record.url = ("http://127.0.0.1:%s/_standin/results/%s"):format(ngx.var.server_port,
      common.result_token(id))
  end
  return record
end

-- Writes the output and error files of a batch that has just reached a final state.
local function finalize(b, status, at)
  b.final, b.final_at = status, at
  local done = done_at(b, at)
  if status ~= "failed" then
    local staged = {}
    local function each_staged(fn)
      local f = io.open(b.stage_path, "rb")
      if not f then return end
      local n = 0
      for line in f:lines() do
        n = n + 1
        local outcome, custom_id, result = line:match("^(%a)\t(.-)\t(.*)$")
        fn(n, outcome, custom_id, result)
      end
      f:close()
    end
    staged.output = function(emit)
      each_staged(function(n, outcome, _, result)
        if n <= done and outcome == "o" then emit(result) end
      end)
    end
    staged.error = function(emit)
      each_staged(function(n, outcome, custom_id, result)
        if n <= done then
          if outcome == "f" then emit(result) end
        elseif status == "expired" then
          emit(common.redact(common.encode(expired_line(common.decode(custom_id)))))
        end
      end)
    end
    b.output_file = write_results(b, "output", staged.output)
    b.error_file = write_results(b, "error", staged.error)
  end
  common.forget_temp(b.stage_path)
end

-- Where the batch stands at time now (default: now), finalizing it if it has just ended.
-- Returns { status, times = { <status> = when it began }, total, done, completed, failed,
-- output_file, error_file, problems } with neutral status names (queued for the first state).
function M.view(b, now)
  now = now or ngx.now()
  local v = { times = {}, total = b.total }
  for _, step in ipairs(b.plan) do
    if step[2] > now then break end
    v.status = step[1]
    v.times[step[1]] = step[2]
  end
  if M.FINAL[v.status] and not b.final then finalize(b, v.status, v.times[v.status]) end
  local done = done_at(b, now)
  v.done = done
  v.completed = count(b.outcomes, done, "o")
  v.failed = count(b.outcomes, done, "f")
  if v.status == "expired" then v.failed = v.failed + (b.total - done) end
  v.output_file, v.error_file = b.output_file, b.error_file
  if v.status == "failed" then v.problems = b.problems end
  return v
end

-- Brings every batch of instance up to date, so the result files of those that ended exist.
function M.advance(instance)
  local now = ngx.now()
  for _, b in ipairs(common.batches(instance)) do
    if not b.final then M.view(b, now) end
  end
end

-- Cancels the batch. Returns its view, or nil and the view when it has already ended.
function M.cancel(b)
  local now = ngx.now()
  local v = M.view(b, now)
  if M.FINAL[v.status] then return nil, v end
  if v.status == "cancelling" then return v end
  b.cancel_done = done_at(b, now)
  local plan = {}
  for _, step in ipairs(b.plan) do
    if step[2] <= now then plan[#plan + 1] = step end
  end
  plan[#plan + 1] = { "cancelling", now }
  plan[#plan + 1] = { "cancelled", now + b.step }
  b.plan = plan
  return M.view(b, now)
end

-- Whether a result file may be served now (SiliconFlow's 404 window after a batch ends).
function M.available(record)
  return record.available_at == nil or ngx.now() >= record.available_at
end

return M
