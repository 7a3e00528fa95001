--- moonbatch.provider: the old name of moonbatch.providers.base (kept so that code requiring it
-- still loads): `base` and `define`.
-- @module moonbatch.provider
return require("moonbatch.providers.base")
