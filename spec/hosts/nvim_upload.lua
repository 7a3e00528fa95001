-- spec/hosts/nvim_upload.lua: run by `nvim --headless` from spec/nvim_spec.lua. Uploads a file
-- through moonbatch.nvim while a 10 ms vim.loop timer counts its ticks, then writes what it saw
-- as JSON to the path in MOONBATCH_NVIM_OUT and quits. The key comes from the environment.
local root = os.getenv("MOONBATCH_ROOT")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.1/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;" .. package.cpath

local uv = vim.loop
local out_path = os.getenv("MOONBATCH_NVIM_OUT")

local function finish(result)
  local cjson = require("cjson")
  local f = assert(io.open(out_path, "w"))
  f:write(cjson.encode(result))
  f:close()
  vim.cmd("qall!")
end

local ok, err = pcall(function()
  local mb = require("moonbatch.nvim")
  local client = mb.new({ provider = os.getenv("MOONBATCH_NVIM_PROVIDER"),
                          base_url = os.getenv("MOONBATCH_NVIM_URL") })
  local ticks, worst, last = 0, 0, nil
  local timer = uv.new_timer()
  timer:start(10, 10, function()
    local now = uv.hrtime()
    if last then worst = math.max(worst, (now - last) / 1e6) end
    last = now
    ticks = ticks + 1
  end)
  local started = uv.hrtime()
  local in_main_loop
  client.files.upload({ file = os.getenv("MOONBATCH_NVIM_FILE") }, function(file, msg, info)
    local elapsed = (uv.hrtime() - started) / 1e6
    timer:stop()
    -- vim.schedule delivered us: the API is usable here (not in a fast event)
    in_main_loop = pcall(vim.api.nvim_get_current_buf)
    finish({
      ok = file ~= nil, id = file and file.id, object = file and file.object, bytes = file and file.bytes,
      filename = file and file.filename, error = msg, kind = info and info.kind,
      ticks = ticks, elapsed_ms = elapsed, worst_gap_ms = worst, in_main_loop = in_main_loop,
      pending_after = mb.pending(),
    })
  end)
end)
if not ok then finish({ ok = false, error = tostring(err) }) end
