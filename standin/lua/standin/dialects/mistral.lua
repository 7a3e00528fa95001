-- The Mistral dialect (specs/mistral.yaml): OpenAI's Files (standin.dialects.openai, purpose
-- batch, 512 MB a file) and batch jobs on /batch/jobs: create with input_files, endpoint,
-- model, metadata, timeout_hours (1 to 168); jobs QUEUED, RUNNING, SUCCESS, FAILED,
-- TIMEOUT_EXCEEDED, CANCELLATION_REQUESTED, CANCELLED, with total/succeeded/failed_requests and
-- output_file/error_file; lists page with page and page_size, {data, object, total}. Errors:
-- {"detail": ...} for a bad request (422, as FastAPI answers), {"message": ...} for 401/404.
local common = require("standin.common")
local handlers = require("standin.handlers")
local lifecycle = require("standin.lifecycle")
local openai = require("standin.dialects.openai")

local M = {}

openai.variants.mistral = { max_bytes = 512 * 1000 * 1000, version = "/v1" }

local JOB = common.shape({
  "id", "object", "input_files", "metadata", "endpoint", "model", "agent_id", "output_file", "error_file",
  "errors", "status", "created_at", "total_requests", "completed_requests", "succeeded_requests",
  "failed_requests", "started_at", "completed_at", "timeout_hours",
})
local LIST = common.shape({ "data", "object", "total" })
local ENDPOINTS = { ["/v1/chat/completions"] = true, ["/v1/embeddings"] = true, ["/v1/fim/completions"] = true,
                    ["/v1/moderations"] = true, ["/v1/chat/moderations"] = true }

local STATUS = {
  queued = "QUEUED", in_progress = "RUNNING", finalizing = "RUNNING", completed = "SUCCESS", failed = "FAILED",
  expired = "TIMEOUT_EXCEEDED", cancelling = "CANCELLATION_REQUESTED", cancelled = "CANCELLED",
}

local function message(status, text)
  return common.json_reply(status, { message = text })
end

-- FastAPI's 422: {"detail": [{"loc", "msg", "type"}]}
local function invalid(loc, msg)
  return common.json_reply(422, { detail = common.array({ { loc = common.array(loc), msg = msg,
                                                            type = "value_error" } }) })
end

local function render(b)
  local v = lifecycle.view(b)
  local started = v.times.in_progress
  local job = setmetatable({
    id = b.id, object = "batch", input_files = common.array({ b.input.id }), metadata = b.metadata,
    endpoint = b.endpoint, model = b.model, output_file = v.output_file and v.output_file.id,
    error_file = v.error_file and v.error_file.id, errors = common.array(), status = STATUS[v.status] or "QUEUED",
    created_at = math.floor(b.created), total_requests = v.status ~= "queued" and v.total or 0,
    completed_requests = v.completed + v.failed, succeeded_requests = v.completed, failed_requests = v.failed,
    started_at = started and math.floor(started), timeout_hours = b.timeout_hours,
  }, JOB)
  local final = v.times.completed or v.times.failed or v.times.expired or v.times.cancelled
  if final then job.completed_at = math.floor(final) end
  for i, p in ipairs(v.problems or {}) do job.errors[i] = { message = p.message, count = 1 } end
  return job
end

local function no_such_job(id)
  return message(404, ("Batch job %s not found"):format(id))
end

local function create_job(req)
  if req.body.error then return invalid({ "body" }, "JSON decode error") end
  local b = req.body.value
  if not common.is_object(b) then return invalid({ "body" }, "Input should be a valid dictionary") end
  if common.absent(b.endpoint) then return invalid({ "body", "endpoint" }, "Field required") end
  if not ENDPOINTS[b.endpoint] then
    return invalid({ "body", "endpoint" }, "Input should be '/v1/chat/completions', '/v1/embeddings', ...")
  end
  if type(b.input_files) ~= "table" or type(b.input_files[1]) ~= "string" then
    return invalid({ "body", "input_files" }, "Either input_files or requests must be given")
  end
  if not common.absent(b.timeout_hours) and (type(b.timeout_hours) ~= "number" or b.timeout_hours % 1 ~= 0
      or b.timeout_hours < 1 or b.timeout_hours > 168) then
    return invalid({ "body", "timeout_hours" }, "Input should be an integer from 1 to 168")
  end
  if common.absent(b.model) and common.absent(b.agent_id) then
    return invalid({ "body", "model" }, "model or agent_id is required")
  end
  local input = common.file(req.instance, b.input_files[1])
  if not input then return message(404, ("File %s not found"):format(b.input_files[1])) end
  local metadata = not common.absent(b.metadata) and b.metadata or nil
  local job = lifecycle.create(req.instance, {
    id = common.new_id("", 36, "0123456789abcdef"), input = input, endpoint = b.endpoint, metadata = metadata,
    has_finalizing = false, expire = metadata ~= nil and metadata.standin_expire == "true",
    model = b.model,
    new_file_id = function() return common.new_id("", 36, "0123456789abcdef") end,
    file_fields = function(kind, batch) return { purpose = "batch", filename = batch.id .. "_" .. kind .. ".jsonl" } end,
  })
  job.model, job.timeout_hours = b.model, b.timeout_hours or 24
  return common.json_reply(200, render(job))
end

local function list_jobs(req)
  local q = req.query
  local size = q.page_size and common.query_integer(q.page_size) or 100
  local page = q.page and common.query_integer(q.page) or 0
  if not size or not page then return invalid({ "query", "page_size" }, "Input should be a valid integer") end
  local all = common.batches(req.instance)
  local data = common.array()
  for i = page * size + 1, math.min(#all, (page + 1) * size) do data[#data + 1] = render(all[i]) end
  return common.json_reply(200, setmetatable({ data = data, object = "list", total = #all }, LIST))
end

-- Batch jobs: the dialect's own handlers, and the shared ones (standin.handlers) by name; a
-- cancel answers the job whatever its state.
local jobs = handlers.router({ batch = render, no_batch = no_such_job }, {
  ["/batch/jobs"] = { POST = handlers.json(create_job), GET = list_jobs },
  ["/batch/jobs/{id}"] = { GET = "get_batch" },
  ["/batch/jobs/{id}/cancel"] = { POST = "cancel_batch" },
})

function M.route(method, path)
  if path:match("^/batch/") then return jobs(method, path) end
  return openai.route(method, path)
end

M.prepare = lifecycle.advance

function M.not_found()
  return common.json_reply(404, { detail = "Not Found" })
end

function M.unauthorized()
  return message(401, "Unauthorized")
end

function M.error_reply(status, path)
  if status == 401 then return M.unauthorized(path) end
  if status == 429 then return message(429, "Requests rate limit exceeded") end
  return message(status, status >= 500 and "Internal server error" or "Bad request")
end

function M.serve()
  return common.serve(M, "mistral", "/mistral/v1")
end

return M
