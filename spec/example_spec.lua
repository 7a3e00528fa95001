-- spec/example_spec.lua: examples/batch_workflow.lua runs unchanged against every dialect of the
-- stand-in, only the provider changing, and ends with one result line per request.
local standin = require("spec.standin_helper")

describe("examples/batch_workflow.lua", function()
  local s

  setup(function()
    s = standin.start({ key = "sk-standin" })
  end)

  teardown(function()
    if s then s:stop() end
  end)

  for _, provider in ipairs({ "siliconflow", "siliconflow-global", "together", "openai", "azure", "groq",
                              "deepinfra", "dashscope", "dashscope-intl", "moonshot", "mistral" }) do
    it("runs the whole job on " .. provider, function()
      s:reset()
      s:config({ step_seconds = 0.2 })
      local results = os.tmpname()
      local cmd = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' " ..
        "MOONBATCH_BASE_URL=%s MOONBATCH_API_KEY=sk-standin lua5.4 examples/batch_workflow.lua %s %s 2>&1")
        :format(s.urls[provider], provider, results)
      local p = io.popen(cmd)
      local out = p:read("*a")
      local ok = p:close()
      local n = 0
      for _ in io.lines(results) do n = n + 1 end
      os.remove(results)
      assert.truthy(ok, out)
      assert.equal(3, n, out)
      assert.truthy(out:find("status = completed", 1, true), out)
    end)
  end

  -- Zhipu's lines must say /v4/chat/completions: the example's OpenAI-format file is refused
  -- before upload (spec/workflow_spec.lua runs Zhipu's whole job on /v4 lines)
  pending("runs the whole job on zhipu (its lines need url /v4/chat/completions; the example's say /v1)")
end)
