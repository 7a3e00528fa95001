--- moonbatch.providers.compatible: the OpenAI-compatible services, as data only (the same fields a
-- user's own provider gives, checked the same way by moonbatch.providers). Facts from
-- more-providers.md and each service's API document (spec/contract/). Windows are the
-- completion windows a batch may ask for, in hours ({min, max}); limits are one input file's.
-- @module moonbatch.providers.compatible
local MB = 1000 * 1000

return {
  {
    name = "groq", base = "openai", base_url = "https://api.groq.com/openai/v1", key_env = "GROQ_API_KEY",
    -- groq.yaml: "The file can be up to 100 MB"; completion_window "24h" to "7d"; 50,000 lines
    -- (Groq's batch page, 2nd)
    limits = { lines = 50000, bytes = 100 * MB }, windows = { 24, 168 },
  },
  {
    name = "deepinfra", base = "openai", base_url = "https://api.deepinfra.com/v1/openai",
    key_env = "DEEPINFRA_API_KEY",
    -- deepinfra.yaml: completion_window only "24h"; endpoint chat or completions; metadata
    -- required (an object or null); no file limit stated (jobs shard at 50,000 lines)
    windows = { 24, 24 }, require_metadata = true,
  },
  {
    name = "dashscope", base = "openai", base_url = "https://dashscope.aliyuncs.com/compatible-mode/v1",
    key_env = "DASHSCOPE_API_KEY",
    -- 50,000 requests and 100 MB a file; windows 24h to 336h (DashScope's batch page, 2nd)
    limits = { lines = 50000, bytes = 100 * MB }, windows = { 24, 336 },
  },
  {
    name = "dashscope-intl", base = "openai",
    base_url = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", key_env = "DASHSCOPE_API_KEY",
    limits = { lines = 50000, bytes = 100 * MB }, windows = { 24, 336 },
  },
  {
    name = "moonshot", base = "openai", base_url = "https://api.moonshot.ai/v1", key_env = "MOONSHOT_API_KEY",
    -- at most 100 MB a file, one model a batch (the validator's one_model rule), 12h to 7d
    limits = { bytes = 100 * MB }, windows = { 12, 168 }, one_model = true,
  },
  {
    name = "zhipu", base = "openai", base_url = "https://open.bigmodel.cn/api/paas/v4", key_env = "ZHIPUAI_API_KEY",
    -- each line's url (and the batch's endpoint) is /v4/chat/completions; at most 100 MB a file;
    -- completion_window 24h (Zhipu's batch page, 2nd)
    endpoint = "/v4/chat/completions", limits = { bytes = 100 * MB }, windows = { 24, 24 },
  },
}
