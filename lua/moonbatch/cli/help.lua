--- moonbatch.cli.help: the command line's help records, one source for `--help`, the man page
-- (moonbatch.cli.man) and the completion scripts: each command's words, summary, flags and help
-- text, their order, the common options' text, and the tool's and each command's help as printed.
-- The commands' run functions are added by moonbatch.cli.commands and moonbatch.cli.job.
-- @module moonbatch.cli.help
local help = {}

--- The commands' records by name (args, summary, flags, help; moonbatch.cli adds their run).
help.commands = {}
local commands = help.commands

-- a command's record: its words after the name, one-line summary, flags (moonbatch.cli.parse's
-- names) and help text; `more`, its other fields (usage, required)
local function record(args, summary, flags, text, more)
  local c = { args = args, summary = summary, flags = flags, help = text }
  for k, v in pairs(more or {}) do c[k] = v end
  return c
end

local provider_help = require("moonbatch.providers.help")

help.COMMON_HELP = [[
common options:
  --provider NAME   ]] .. provider_help.names() .. [[

  --base-url URL    the API's base URL (default: $MOONBATCH_BASE_URL, then the provider's)
  --allow-http      allow a plain http:// base URL on another host (the key travels in clear)
  --key-file PATH   read the API key from the first line of PATH (keep it chmod 600)
  --json            print the result as JSON on standard output, and nothing else there
  -q, --quiet       no steps or progress on standard error
  -h, --help        this help
]]

help.KEY_HELP = provider_help.keys()

-- the options of a batch's creation, as create, run and job run describe them
help.BATCH_OPTIONS_HELP = [[
  --endpoint PATH           the endpoint of every request (default: the provider's)
  --completion-window W     how long the provider may take (default: the provider's)
  --model MODEL             replace every line's model with MODEL
]]

help.order = { "run", "job", "validate", "estimate", "upload", "files", "batches", "create", "status",
                "wait", "cancel", "download", "delete", "completion" }

commands.estimate = require("moonbatch.cli.estimate")

commands.validate = record({ "FILE" }, "check a batch input file without sending it",
  { "provider", "json", "quiet", "help", "endpoint", "model" },
  [[
Checks every line of FILE against the provider's rules (JSON, custom_id unique, method and url,
a model, the size and line limits) and says what is wrong, line by line. Sends nothing.

options:
  --provider NAME   whose rules (default: as the other commands)
  --endpoint PATH   the batch's endpoint (default: the provider's)
  --model MODEL     the model that will replace each line's (create --model)
  --json            the report as JSON: {ok, file, lines, bytes, models[, problems]}
]])

commands.upload = record({ "FILE" }, "upload a batch input file",
  { "purpose", "filename", "no-validate", "endpoint", "model" },
  [[
Validates FILE (unless --no-validate), uploads it, and prints the File.

options:
  --purpose PURPOSE  the file's purpose (default: the provider's batch purpose)
  --filename NAME    the name to give the file (default: FILE's own)
  --no-validate      upload without checking the lines first
  --endpoint PATH    the endpoint the lines are checked for (default: the provider's)
  --model MODEL      check lines as if create --model MODEL will replace their model
]])

commands.files = record({}, "list uploaded files", { "purpose", "limit", "all" },
  [[
Lists files: one page (--limit, default 10) or, with --all, every page.

options:
  --purpose PURPOSE  only files of this purpose (default: the provider's batch purpose)
  --limit N          files per page (default: 10)
  --all              follow every page
]])

commands.batches = record({}, "list batches", { "limit", "all" },
  [[
Lists batches: one page or, with --all, every page.

options:
  --limit N   batches per page (where the provider pages them)
  --all       follow every page
]])

commands.create = record({ "FILE_ID" }, "create a batch from an uploaded file",
  { "endpoint", "completion-window", "model", "metadata" },
  [[
Creates a batch from the uploaded file FILE_ID and prints the Batch.

options:
]] .. help.BATCH_OPTIONS_HELP .. [[
  --metadata KEY=VALUE      a metadata entry (repeatable; not on together)
]])

commands.status = record({ "BATCH_ID" }, "show a batch", {},
  "Prints the Batch BATCH_ID: its status, request counts, files and times.\n")

commands.wait = record({ "BATCH_ID" }, "wait until a batch is done", { "interval", "timeout" },
  [[
Polls the batch until it is completed, failed, expired or cancelled, showing its status and
request counts, then prints the Batch. Exits 0 when it completed, 1 otherwise.

options:
  --interval SECONDS  poll every SECONDS (default: 2, growing to 30)
  --timeout SECONDS   give up after SECONDS (default: wait as long as it takes)
]])

commands.cancel = record({ "BATCH_ID" }, "cancel a batch", {},
  "Asks the provider to cancel the batch BATCH_ID and prints the Batch.\n")

commands.download = record({ "FILE_ID", "PATH" }, "download a file (a batch's results)", {},
  [[
Downloads FILE_ID (a batch's output_file_id or error_file_id) to PATH. The bytes go to a
temporary file beside PATH, renamed into place only once complete. With PATH `-` the file's
bytes go to standard output, once complete, and nothing else does.
]])

commands.delete = record({ "FILE_ID" }, "delete an uploaded file", {},
  "Deletes the file FILE_ID.\n")

commands.completion = record({ "SHELL" }, "print a completion script for bash, zsh or fish", {},
  [[
Prints a script that completes moonbatch's commands, options and providers in SHELL (bash, zsh
or fish). To use it now: source <(moonbatch completion bash); to keep it, save it where the
shell loads completions (e.g. ~/.local/share/bash-completion/completions/moonbatch,
a directory of zsh's $fpath as _moonbatch, ~/.config/fish/completions/moonbatch.fish).
]])

commands.run = record({ "FILE" }, "validate, upload, create a batch, wait, download its results",
  { "output", "errors", "endpoint", "completion-window", "model", "metadata", "purpose", "interval", "timeout",
    "no-validate" }, [[
The whole job: validates FILE, uploads it, creates a batch, waits for it, downloads its output
file to RESULTS and its error file (when the batch has one) to the errors path, then reports
the counts. Each file is written completely or not at all. Exits 0 when the batch completed
(even if some requests failed: they are in the error file), 1 otherwise.

options:
  -o, --output RESULTS      where the results go (required)
  --errors PATH             where failed requests go (default: RESULTS with .errors before
                            its extension: results.jsonl -> results.errors.jsonl)
]] .. help.BATCH_OPTIONS_HELP .. [[
  --metadata KEY=VALUE      a metadata entry (repeatable; not on together)
  --purpose PURPOSE         the upload's purpose (default: the provider's batch purpose)
  --interval SECONDS        poll every SECONDS (default: 2, growing to 30)
  --timeout SECONDS         stop waiting after SECONDS (the batch keeps running)
  --no-validate             upload without checking the lines first
]], { required = { "output" }, required_value = "RESULTS", usage = "moonbatch run FILE -o RESULTS [options]" })

--- The usage line of command `name` ("moonbatch files [options]").
function help.command_usage(name)
  local c = commands[name]
  if c.usage then return c.usage end
  local words = { "moonbatch", name }
  for _, a in ipairs(c.args) do words[#words + 1] = a end
  words[#words + 1] = "[options]"
  return table.concat(words, " ")
end

--- The text of `moonbatch --help`.
function help.tool_help()
  local lines = {
    "usage: moonbatch [--provider NAME] [--base-url URL] [--json] COMMAND [ARGS] [options]",
    "",
    "Batch inference on every provider of --provider, from one OpenAI-format requests file.",
    "",
    "commands:",
  }
  for _, name in ipairs(help.order) do
    local c = commands[name]
    local words = { name }
    for _, a in ipairs(c.args) do words[#words + 1] = a end
    if name == "run" then words[#words + 1] = "-o RESULTS" end
    lines[#lines + 1] = ("  %-24s %s"):format(table.concat(words, " "), c.summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = help.COMMON_HELP .. "  --version         print the version"
  lines[#lines + 1] = ""
  lines[#lines + 1] = help.KEY_HELP
  lines[#lines + 1] = require("moonbatch.cli.env").help()
  lines[#lines + 1] = "Run `moonbatch COMMAND --help` for a command's options. Exit status: 0 done,"
  lines[#lines + 1] = "1 failed (the reason on standard error), 2 usage error, 130 interrupted."
  return table.concat(lines, "\n") .. "\n"
end

--- The text of `moonbatch NAME --help`.
function help.command_help(name)
  local c = commands[name]
  local text = "usage: " .. help.command_usage(name) .. "\n\n" .. c.summary:gsub("^%l", string.upper) .. ".\n\n"
    .. c.help
  if name == "validate" then
    return text .. "  -q, --quiet       no steps on standard error\n  -h, --help        this help\n"
  end
  return text .. "\n" .. help.COMMON_HELP .. "\n" .. help.KEY_HELP
end

return help
