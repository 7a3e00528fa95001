-- examples/batch_workflow.lua: upload a batch input file, list files, create a batch, and print
-- each canonical object. The key comes from SILICONFLOW_API_KEY (or MOONBATCH_API_KEY), the
-- service from MOONBATCH_BASE_URL when set: `make demo` points it at the local stand-in.
local moonbatch = require("moonbatch")

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local input = here .. "/requests.jsonl"

-- print a canonical object, keys sorted, `raw` left out
local function show(title, object, indent)
  indent = indent or "  "
  if title then print(title) end
  local keys = {}
  for k in pairs(object) do
    if k ~= "raw" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = object[k]
    if type(v) == "table" then
      print(indent .. tostring(k) .. ":")
      show(nil, v, indent .. "  ")
    else
      print(indent .. tostring(k) .. " = " .. tostring(v))
    end
  end
end

local client = moonbatch.new({ provider = "siliconflow" })

local file = assert(client.files.upload({ file = input }))
show("uploaded file:", file)

local page = assert(client.files.list({ limit = 5 }))
print(("files (%d shown, has_more = %s):"):format(#page.data, tostring(page.has_more)))
for _, f in ipairs(page.data) do
  print(("  %s  %s  %d bytes  %s lines"):format(f.id, f.filename, f.bytes, tostring(f.line_count)))
end

local batch = assert(client.batches.create({
  input_file_id = file.id,
  endpoint = "/v1/chat/completions",
  completion_window = "24h",
  metadata = { description = "moonbatch demo" },
  replace = { model = "deepseek-ai/DeepSeek-V3" },
}))
show("created batch:", batch)
client.close()
