--- moonbatch.validate: check a batch input file against a provider's rules before upload. The
-- scan is moonbatch.core.validate (C, streaming); this decides which rules apply and words the
-- result in the library's error convention. files.upload runs the same scan on the bytes it
-- sends (core's form part option `validate`), with the rules from `validate.options`.
-- @module moonbatch.validate
local core = require("moonbatch.core")
local args = require("moonbatch.args")
local errors = require("moonbatch.errors")
local providers = require("moonbatch.providers")

local spec = { provider = "string", endpoint = "string", replace_model = "string" }
local spec_data = { provider = "table", endpoint = "string", replace_model = "string" }

local SHOWN = 3 -- problems quoted in the message; all of them are in info.problems

local M = {}

--- The options of the scan (core.validate's) for provider `p` and the caller's `opts`
-- ({endpoint, replace_model}).
-- @tparam table p a provider
-- @tparam table opts
-- @treturn table the options of `core.validate`
function M.options(p, opts)
  local limits = p.limits or {}
  return {
    max_lines = limits.lines, max_bytes = limits.bytes, max_custom_id = limits.custom_id,
    require_method_url = p.require_method_url or false,
    endpoint = opts.endpoint or p.endpoint, replace_model = opts.replace_model,
  }
end

--- The outcome of a finished scan's `report` (core.validate's): { lines, bytes, models } when the
-- file passes, else nil, msg, info with info.kind = "validation", info.problems and info.report.
-- `ctx` is the error context (errors.make's).
-- @tparam table report
-- @tparam table ctx
-- @return `{lines, bytes, models}`, or `nil, msg, info`
function M.result(report, ctx)
  if report.ok then
    return { lines = report.lines, bytes = report.bytes, models = report.models }
  end
  local quoted = {}
  for i = 1, math.min(SHOWN, #report.problems) do quoted[i] = report.problems[i].message end
  local more = #report.problems - #quoted
  local text = table.concat(quoted, "; ")
  if more > 0 or report.truncated then
    text = text .. ("; and %s more"):format(report.truncated and "many" or tostring(more))
  end
  local m, i = errors.make(ctx, { kind = "validation", message = text })
  i.problems = report.problems
  i.report = { lines = report.lines, bytes = report.bytes, models = report.models }
  return nil, m, i
end

--- moonbatch.validate(path, { provider = NAME or a provider's data table (default: the
-- registry's default), endpoint = the provider's, replace_model = nil }): the report { lines, bytes, models } of a file that passes, or
-- nil, msg, info with info.kind = "validation" and info.problems = { {line, rule, message} ... }.
local function validate(path, opts, p, ctx)
  args.string("moonbatch.validate", 1, "path", path)
  args.check("moonbatch.validate", opts, type(opts) == "table" and type(opts.provider) == "table"
    and spec_data or spec)
  opts = opts or {}
  if not p then
    p = providers.get(opts.provider or providers.default, "moonbatch.validate")
  end
  local report, msg, info = core.validate(path, M.options(p, opts))
  ctx = ctx or { provider = p.name, method = "validate", path = path, url = path }
  if not report then
    return nil, errors.make(ctx, { kind = info.kind, message = msg })
  end
  return M.result(report, ctx)
end

-- the module is called as the function validate (moonbatch.validate, moonbatch.job)
return setmetatable(M, { __call = function(_, ...) return validate(...) end })
