-- moonbatch.providers.siliconflow-global: SiliconFlow's international service, same dialect.
local base = require("moonbatch.providers.siliconflow")

local P = setmetatable({
  name = "siliconflow-global",
  base_url = "https://api.siliconflow.com/v1",
}, { __index = base })

return P
