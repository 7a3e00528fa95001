--- moonbatch.providers.base: the defaults every provider starts from (OpenAI's dialect). A provider
-- is data plus the few functions where its dialect differs. The data (every default the layers
-- above use; none of them knows a provider's name or numbers):
--   name, base_url, key_env    who it is, where, and the variable holding its key
--   endpoint                   a batch's endpoint and the url of its lines, by default
--   completion_window          a batch's window, by default; windows: the ones it takes, or nil
--   batch_purpose              the purpose of an upload
--   limits                     {lines, bytes, custom_id} of one input file (nil: none known)
--   request_id_headers         reply headers naming the request, first found wins
--   late_result_polls          polls of a completed batch that names no result file yet
--   require_metadata           a create always carries metadata ({} when the caller gives none)
--   content_404_grace          seconds a result file may answer 404 after its batch ended
-- and the functions the client calls:
--   auth_headers(key)          the headers carrying the key (Bearer)
--   query(q, self)             the query of every call (q, or nil), given the client
--   upload_fields(opts)        extra multipart fields of an upload, or nil, error fields
--   list_query(opts)           the query of GET files (purpose, limit, after)
--   file(body)                 a reply to a canonical File, or nil, error fields
--   files_page(body, opts)     a reply to a Page of File
--   batch(body)                a reply to a canonical Batch
--   batches_page(body)         a reply to a Page of Batch
--   create_options(opts, p)    what core.batches.create sends for batches.create{...} on p
--   retryable(body, res)       is a failed reply the provider's own "try again"?
-- @module moonbatch.providers.base
local objects = require("moonbatch.objects")

local base = {
  name = "openai-compatible",
  endpoint = "/v1/chat/completions",
  completion_window = "24h",
  batch_purpose = "batch",
  request_id_headers = { "x-request-id", "request-id" },
  late_result_polls = 0,
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

function base.auth_headers(key)
  return { Authorization = "Bearer " .. key }
end

function base.query(q)
  return q
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

-- hours of a window such as "24h" or "7d", or nil
local function window_hours(w)
  local n, unit = tostring(w):match("^(%d+)([hd])$")
  if not n then return nil end
  return tonumber(n) * (unit == "d" and 24 or 1)
end

local function hours_text(h)
  return h % 24 == 0 and h >= 48 and ("%dd"):format(h / 24) or ("%dh"):format(h)
end

--- Raises (the message only) when `window` is not one `p` takes (p.windows).
function base.check_window(window, p)
  local range = p.windows
  if not range or window == nil then return end
  local h = window_hours(window)
  if not h or h < range[1] or h > range[2] then
    local takes = range[1] == range[2] and hours_text(range[1])
      or ("%s to %s"):format(hours_text(range[1]), hours_text(range[2]))
    error(("batches.create: bad option 'completion_window' ('%s': %s takes %s)")
      :format(tostring(window), p.name, takes), 0)
  end
end

function base.create_options(opts, p)
  p = p or base
  base.check_window(opts.completion_window, p)
  return {
    input_file_id = opts.input_file_id,
    endpoint = opts.endpoint or p.endpoint,
    completion_window = opts.completion_window or p.completion_window,
    -- require_metadata: the service refuses a create without the field (DeepInfra's document)
    metadata = opts.metadata or (p.require_metadata and {} or nil), -- cjson writes {} as an object
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
