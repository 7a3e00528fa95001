-- spec/support/summary_output.lua: busted's usual terminal output, plus a count of passes and
-- failures appended to $MOONBATCH_SUMMARY for scripts/run-tests' closing line.
return function(options)
  local busted = require("busted")
  local inner = options.arguments and options.arguments.plain
  local name = (os.getenv("TERM") and io.stdout and not inner) and "utfTerminal" or "plainTerminal"
  local handler = require("busted.outputHandlers." .. name)(options)

  busted.subscribe({ "suite", "end" }, function()
    local path = os.getenv("MOONBATCH_SUMMARY")
    if path then
      local f = assert(io.open(path, "a"))
      f:write(("%d %d %d\n"):format(handler.successesCount, handler.failuresCount,
        handler.errorsCount))
      f:close()
    end
    return nil, true
  end)
  return handler
end
