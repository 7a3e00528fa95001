--- moonbatch.providers.mistral: Mistral's Files and Batch API (specs/mistral.yaml,
-- more-providers.md). Files as OpenAI's (POST /files, purpose batch, 512 MB a file); the list
-- pages with page/page_size and has no cursor. Batches are jobs: POST /batch/jobs with
-- input_files (a list), model, endpoint, metadata and timeout_hours; statuses QUEUED, RUNNING,
-- SUCCESS, FAILED, TIMEOUT_EXCEEDED, CANCELLATION_REQUESTED, CANCELLED; counts
-- total/succeeded/failed_requests; results in output_file and error_file. Input lines are
-- {custom_id, body}: the user's OpenAI-format lines are rewritten so as they are uploaded
-- (upload_source), the user's file untouched.
-- @module moonbatch.providers.mistral
local cjson = require("cjson")
local objects = require("moonbatch.objects")
local provider = require("moonbatch.providers.base")

local P = provider.define({
  name = "mistral",
  base_url = "https://api.mistral.ai/v1",
  key_env = "MISTRAL_API_KEY",
  batches_path = "/batch/jobs",
  files_cursor = false,
  batches_cursor = false,
  require_method_url = false, -- its lines have no method or url
  windows = { 1, 168 }, -- timeout_hours
  limits = { lines = 1000000, bytes = 512 * 1000 * 1000 },
  request_id_headers = { "x-request-id", "mistral-correlation-id" },
  job_model = true, -- the job names the model: the client remembers each upload's one model
})

function P.list_query(opts)
  return { purpose = opts.purpose, page_size = opts.limit }
end

local statuses = {
  QUEUED = "in_queue", RUNNING = "in_progress", SUCCESS = "completed", FAILED = "failed",
  TIMEOUT_EXCEEDED = "expired", CANCELLATION_REQUESTED = "cancelling", CANCELLED = "cancelled",
}

function P.batch(body)
  if type(body) ~= "table" or type(body.id) ~= "string" then
    return nil, { kind = "decode", message = "reply is not a batch job" }
  end
  local status = type(body.status) == "string" and (statuses[body.status] or body.status:lower())
  local b = objects.batch(body, status)
  local raw = b.raw
  b.input_file_id = type(raw.input_files) == "table" and raw.input_files[1] or nil
  b.output_file_id, b.error_file_id = raw.output_file, raw.error_file
  b.in_progress_at = objects.unix_time(raw.started_at)
  b.model = raw.model
  if raw.total_requests ~= nil then
    b.request_counts = { total = raw.total_requests, completed = raw.succeeded_requests or 0,
                         failed = raw.failed_requests or 0 }
  end
  if raw.timeout_hours then b.completion_window = ("%dh"):format(raw.timeout_hours) end
  return b
end

function P.batches_page(body)
  return provider.base.list_page(body, P.batch, "a batch job list")
end

-- hours of a window such as "24h" or "7d"
local function hours(w)
  local n, unit = tostring(w):match("^(%d+)([hd])$")
  return n and tonumber(n) * (unit == "d" and 24 or 1)
end

-- the job's model: replace.model, else the one model of the file this client uploaded (its
-- check found it); Mistral reads the model from the job, not from the lines
function P.create_options(opts, p, client)
  p = p or P
  provider.base.check_window(opts.completion_window, p)
  local model = opts.replace and opts.replace.model
  if model == nil and client and client.upload_models then model = client.upload_models[opts.input_file_id] end
  -- the whole body: the client sends it as it is (no input_file_id or completion_window)
  return { json = { input_files = { opts.input_file_id }, endpoint = opts.endpoint or p.endpoint, model = model,
                    metadata = opts.metadata,
                    timeout_hours = opts.completion_window and hours(opts.completion_window) or nil } }
end

-- one OpenAI-format line as Mistral's {custom_id, body}; other lines (blank, not JSON) as they are,
-- for the check to name
local function rewrite(line)
  local ok, t = pcall(cjson.decode, line)
  if not ok or type(t) ~= "table" or t.body == nil then return line end
  return cjson.encode({ custom_id = t.custom_id, body = t.body })
end

--- The file an upload sends: `path` rewritten line by line into a temporary file (constant
-- memory), and a function that removes it; nil, message when it cannot be written.
function P.upload_source(path)
  local src, why = io.open(path, "rb")
  if not src then return nil, why end
  local temp = os.tmpname()
  local out, err = io.open(temp, "wb")
  if not out then
    src:close()
    return nil, err
  end
  for line in src:lines() do
    local cr = line:sub(-1) == "\r" and "\r" or ""
    if cr ~= "" then line = line:sub(1, -2) end
    local ok, werr = out:write(rewrite(line), cr, "\n")
    if not ok then
      src:close()
      out:close()
      os.remove(temp)
      return nil, werr
    end
  end
  src:close()
  local ok, cerr = out:close()
  if not ok then
    os.remove(temp)
    return nil, cerr
  end
  return temp, function() os.remove(temp) end
end

return P
