-- examples/batch_workflow.lua: a whole batch job: upload a batch input file, list files, create
-- a batch, wait for it, download its results; print each canonical object on the way.
--   lua5.4 examples/batch_workflow.lua [provider] [results.jsonl]
-- The provider defaults to $MOONBATCH_PROVIDER, then siliconflow; the key comes from the
-- provider's variable (SILICONFLOW_API_KEY, ...) or MOONBATCH_API_KEY, the service from
-- MOONBATCH_BASE_URL when set: `make demo` points it at the local stand-in.
local moonbatch = require("moonbatch")

local provider = arg[1] or os.getenv("MOONBATCH_PROVIDER") or "siliconflow"
local results = arg[2] or os.tmpname() .. "-results.jsonl"
local here = (arg[0] or ""):match("^(.*)/[^/]*$") or "."
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

local client = moonbatch.new({ provider = provider })
print(("provider %s at %s"):format(provider, client.base_url))

local file = assert(client.files.upload({ file = input }))
show("uploaded file:", file)

local page = assert(client.files.list({ limit = 5 }))
print(("files (%d shown, has_more = %s):"):format(#page.data, tostring(page.has_more)))
for _, f in ipairs(page.data) do
  print(("  %s  %s  %d bytes"):format(f.id, f.filename, f.bytes))
end

local batch = assert(client.batches.create({ input_file_id = file.id }))
show("created batch:", batch)

batch = assert(client.batches.wait(batch.id, {
  interval = 0.5,
  on_update = function(b)
    local rc = b.request_counts
    print(("  %s%s"):format(b.status, rc and (" %d/%d done, %d failed"):format(rc.completed, rc.total, rc.failed) or ""))
  end,
}))
show("finished batch:", batch)

if batch.output_file_id then
  local got = assert(client.files.download(batch.output_file_id, results))
  print(("results: %d bytes in %s"):format(got.bytes, got.path))
  for line in io.lines(results) do print("  " .. line:sub(1, 150)) end
end
client.close()
