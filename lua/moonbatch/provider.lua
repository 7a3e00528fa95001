--- moonbatch.provider: the defaults every provider starts from (OpenAI's dialect). A provider file
-- is data plus the few functions where its dialect differs; the client calls only these:
--   upload_fields(opts)        extra multipart fields of an upload, or nil, error fields
--   list_query(opts)           the query of GET files (purpose, limit, after)
--   file(body)                 a reply to a canonical File, or nil, error fields
--   files_page(body, opts)     a reply to a Page of File
--   batch(body)                a reply to a canonical Batch
--   batches_page(body)         a reply to a Page of Batch
--   create_options(opts)       what core.batches.create sends for batches.create{...}
--   retryable(body, res)       is a failed reply the provider's own "try again"?
-- @module moonbatch.provider
local objects = require("moonbatch.objects")

local base = {
  batch_purpose = "batch",
  upload_path = "/files",
  files_path = "/files",
  batches_path = "/batches",
  files_cursor = true,
  batches_cursor = true,
  require_method_url = true, -- input lines carry method and url (Together's and SiliconFlow's may not)
}

local function decode_error(what)
  return nil, { kind = "decode", message = "reply is not " .. what }
end

function base.upload_fields()
  return nil
end

function base.list_query(opts)
  return { purpose = opts.purpose, limit = opts.limit, after = opts.after }
end

function base.file(body)
  if type(body) ~= "table" or type(body.id) ~= "string" then return decode_error("a file object") end
  return objects.file(body)
end

-- a list {data = [...], has_more} of items made by `make`
local function page(body, make, what)
  if type(body) ~= "table" or type(body.data) ~= "table" then return decode_error(what) end
  local items = {}
  for i, raw in ipairs(body.data) do
    local item, err = make(raw)
    if not item then return nil, err end
    items[i] = item
  end
  return objects.page(items, body.has_more == true)
end
base.list_page = page

function base.files_page(body)
  return page(body, base.file, "a file list")
end

function base.batch(body)
  if type(body) ~= "table" or type(body.id) ~= "string" then return decode_error("a batch object") end
  return objects.batch(body, body.status)
end

function base.batches_page(body, p)
  return page(body, function(raw) return p.batch(raw) end, "a batch list")
end

function base.create_options(opts)
  return {
    input_file_id = opts.input_file_id,
    endpoint = opts.endpoint or "/v1/chat/completions",
    completion_window = opts.completion_window or "24h",
    metadata = opts.metadata,
    replace = opts.replace,
  }
end

function base.retryable()
  return false
end

local provider = { base = base }

--- A provider table: `t`'s fields, then the defaults.
function provider.define(t, parent)
  return setmetatable(t, { __index = parent or base })
end

return provider
