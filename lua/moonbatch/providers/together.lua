--- moonbatch.providers.together: Together AI's dialect.
-- Upload is POST /files/upload with `file_name` and `file_type`; files are FileResponse objects
-- (FileType, Processed); the file list and batch list have no paging; create answers 201
-- {job, warning}; statuses are upper case; times are ISO-8601 strings.
-- @module moonbatch.providers.together
local objects = require("moonbatch.objects")
local provider = require("moonbatch.providers.base")

local P = provider.define({
  name = "together",
  base_url = "https://api.together.ai/v1",
  require_method_url = false,
  key_env = "TOGETHER_API_KEY",
  batch_purpose = "batch-api",
  upload_path = "/files/upload",
  files_cursor = false,
  batches_cursor = false,
  limits = { lines = 50000, bytes = 100 * 1000 * 1000, custom_id = 64 },
  -- a batch failed on a quota (created again later by a job): Together's rate-limit code (its v1
  -- SDK: "rate limits were previously coded as 400's with code 'rate_limit'")
  quota_errors = { "rate_limit" },
})

local file_types = { jsonl = true, csv = true, parquet = true }

function P.upload_fields(opts)
  local name = opts.filename or opts.file:match("[^/]*$")
  local ext = name:match("%.([^.]+)$")
  ext = ext and ext:lower()
  if not file_types[ext] then
    return nil, { kind = "validation", message = ("cannot tell file_type of '%s': Together takes " ..
      ".jsonl, .csv or .parquet"):format(name) }
  end
  return { file_name = name, file_type = ext }
end

-- GET /files takes no parameters; the purpose is filtered here
function P.list_query()
  return {}
end

function P.file(body)
  local f, err = provider.base.file(body)
  if not f then return nil, err end
  f.file_type = f.raw.FileType
  f.processed = f.raw.Processed
  return f
end

function P.files_page(body, opts)
  local page, err = provider.base.list_page(body, P.file, "a file list")
  if not page then return nil, err end
  local purpose = opts and opts.purpose
  if purpose then
    local kept = {}
    for _, f in ipairs(page.data) do
      if f.purpose == purpose then kept[#kept + 1] = f end
    end
    page = objects.page(kept, false)
  end
  return page
end

local statuses = {
  VALIDATING = "validating", IN_PROGRESS = "in_progress", COMPLETED = "completed",
  FAILED = "failed", EXPIRED = "expired", CANCELLED = "cancelled", CANCELED = "cancelled",
  CANCELING = "cancelling", CANCELLING = "cancelling", QUEUED = "in_queue",
}

function P.batch(body)
  if type(body) ~= "table" then return nil, { kind = "decode", message = "reply is not a batch object" } end
  local job, warning = body, nil
  if type(body.job) == "table" then
    job, warning = body.job, body.warning -- the 201 reply of create
  end
  if type(job.id) ~= "string" then return nil, { kind = "decode", message = "reply is not a batch object" } end
  local status = type(job.status) == "string" and (statuses[job.status:upper()] or job.status:lower())
  local b = objects.batch(job, status)
  b.progress = b.raw.progress
  b.model = b.raw.model_id
  b.warning = objects.clean(warning)
  if type(b.raw.error) == "string" and b.raw.error ~= "" then
    b.errors = { { message = b.raw.error } }
  end
  return b
end

-- GET /batches answers a bare array
function P.batches_page(body)
  if type(body) ~= "table" then return nil, { kind = "decode", message = "reply is not a batch list" } end
  return provider.base.list_page({ data = body }, P.batch, "a batch list")
end

-- Together's create takes endpoint, input_file_id, completion_window, priority and model_id:
-- replace.model becomes model_id; metadata has no place
function P.create_options(opts, p)
  p = p or P
  if opts.metadata ~= nil then
    error("batches.create: option 'metadata' is not supported by together", 4)
  end
  return {
    input_file_id = opts.input_file_id,
    endpoint = opts.endpoint or p.endpoint,
    completion_window = opts.completion_window,
    fields = opts.replace and opts.replace.model and { model_id = opts.replace.model } or nil,
  }
end

return P
