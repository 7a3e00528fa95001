--- moonbatch.providers.siliconflow-global: SiliconFlow's international service, same dialect.
-- @module moonbatch.providers.siliconflow-global
local provider = require("moonbatch.providers.base")

return provider.define({
  name = "siliconflow-global",
  base_url = "https://api.siliconflow.com/v1",
}, require("moonbatch.providers.siliconflow"))
