-- SiliconFlow's result-file URLs: GET /_standin/results/<token>, no auth, as an object store
-- would serve them. Batches created with siliconflow_output_urls name their results this way.
--
-- It goes through common.serve like a dialect, so it is logged and takes faults (truncate and
-- reset_after cut the download); errors look like SiliconFlow's.
local common = require("standin.common")
local lifecycle = require("standin.lifecycle")
local siliconflow = require("standin.dialects.siliconflow")

local M = {}

local function result(req)
  local record = common.result_file(req.params.token)
  if not record or not lifecycle.available(record) then return siliconflow.not_found() end
  return common.file_reply(record)
end

M.route = common.router({
  ["GET /{token}"] = { handle = result, download = true, public = true },
})

M.not_found = siliconflow.not_found
M.unauthorized = siliconflow.unauthorized
M.error_reply = siliconflow.error_reply

function M.serve()
  return common.serve(M, "results", "/_standin/results")
end

return M
