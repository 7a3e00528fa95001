--- moonbatch.cli.job: the `moonbatch job` commands (run, status, cancel, retry-failed) of
-- moonbatch.cli: their descriptions and their run(ctx), on moonbatch.job. moonbatch.cli calls
-- this module with its table of commands and the helpers the commands share with the others.
-- @module moonbatch.cli.job

return function(commands, h)
  local EXIT_OK, EXIT_FAILED = h.EXIT_OK, h.EXIT_FAILED
  local BATCH_OPTIONS_HELP = h.BATCH_OPTIONS_HELP
  local fail, usage_error, unraised, guarded, file_failure = h.fail, h.usage_error, h.unraised, h.guarded,
    h.file_failure
  local output_paths, create_options, plural, table_lines, batch_counts = h.output_paths, h.create_options,
    h.plural, h.table_lines, h.batch_counts

  commands.job = {
    args = { "COMMAND" },
    summary = "jobs larger than one batch: run, status, cancel, retry-failed",
    usage = "moonbatch job run|status|cancel|retry-failed ... [options]",
    flags = {},
    help = [[
A job splits one input file of any size into shards within the provider's limits (see the
README's provider table; 50,000 lines where none is stated), runs each shard as a batch and
merges every result into one results file and one errors file, each custom_id once. Every step
is recorded in the job's store, RESULTS.job.db (SQLite), before the network step that depends on
it: run the same command again after a crash, Ctrl-C or kill, and the job goes on where it
stopped, uploading no shard and creating no batch twice. One run of a job goes on at a time: a
second one is refused, naming the process that runs it.

commands:
  job run FILE -o RESULTS          run (or resume) the job of FILE
  job status RESULTS               each shard's progress
  job cancel RESULTS               cancel every batch of the job, create no more
  job retry-failed RESULTS -o NEW  run the requests that failed or got no result as a new job

Run `moonbatch job COMMAND --help` for a command's options.
]],
  }

  commands["job run"] = {
    args = { "FILE" },
    summary = "run a job of any size as many batches, resumable",
    flags = { "output", "errors", "endpoint", "completion-window", "model", "metadata", "interval",
              "concurrency", "shard-lines", "shard-bytes", "max-active-batches", "max-enqueued-requests",
              "max-enqueued-tokens" },
    required = { "output" }, required_value = "RESULTS",
    usage = "moonbatch job run FILE -o RESULTS [options]",
    help = [[
Validates FILE once, splits it into shards within the provider's limits (in one pass, never the
whole file in memory), uploads the shards and creates their batches (a few at a time), waits for
all of them, downloads every result and error file, and merges them into RESULTS and the errors
file, each custom_id once. Then reports requests, succeeded, failed and missing (neither).

The job is recorded in RESULTS.job.db (shards in RESULTS.shards/ while it runs; the job of an
older version's RESULTS.manifest.json is imported once). Running the same command again resumes
it: after a crash, a kill or Ctrl-C at any point, nothing is uploaded or created twice and no
result is lost or merged twice. While it runs, another `job run` of the same RESULTS is refused
(exit 1, naming this one's pid). An input that changed since the job started is refused. Exits
0 when every batch completed (some requests may have failed: they are in the errors file), 1
otherwise.

options:
  -o, --output RESULTS      where the merged results go (required)
  --errors PATH             where failed requests go (default: RESULTS with .errors before
                            its extension)
]] .. BATCH_OPTIONS_HELP .. [[
  --metadata KEY=VALUE      a metadata entry on every batch (repeatable; not on together)
  --concurrency N           uploads, creates and downloads at once (default: 4)
  --shard-lines N           at most N lines a shard (default: the provider's limit)
  --shard-bytes N           at most N bytes a shard (default: the provider's limit)
  --max-active-batches N    at most N batches created and not ended at once
  --max-enqueued-requests N at most N requests in those batches
  --max-enqueued-tokens N   at most N input tokens in them (estimated: a quarter of the bytes);
                            a batch that fails on the provider's quota anyway is created again
                            once an earlier one ends (the reason shows in `job status`)
  --interval SECONDS        poll every SECONDS (default: 2, growing to 30)
]],
  }

  commands["job status"] = {
    args = { "RESULTS" },
    summary = "show each shard of a job",
    flags = {},
    help = [[
Shows the job whose results go to RESULTS (from RESULTS.job.db, also while a run goes on): each
shard's lines, status, batch and request counts, and once merged the tokens billed. Batches still running are asked for their status now (when
an API key is at hand). The provider and base URL are the job's own.
]],
  }

  commands["job cancel"] = {
    args = { "RESULTS" },
    summary = "cancel every batch of a job",
    flags = {},
    help = [[
Cancels the job whose results go to RESULTS: marks it cancelled (a `job run` going on, or run
later, creates no more batches) and cancels every batch still running. `job run` then collects
what the batches finished; `job retry-failed` runs the rest as a new job.
]],
  }

  commands["job retry-failed"] = {
    args = { "RESULTS" },
    summary = "run a job's failed and missing requests again, as a new job",
    flags = { "output", "errors", "interval", "concurrency" },
    required = { "output" }, required_value = "NEW_RESULTS",
    usage = "moonbatch job retry-failed RESULTS -o NEW_RESULTS [options]",
    help = [[
Takes the finished job whose results went to RESULTS, and runs again, as a new job with the
same options, every request that is not in RESULTS (those in its errors file, and those that got
no result at all). Their lines, copied from the job's input, go to NEW_RESULTS with .input
before its extension; the new job's results to NEW_RESULTS. Running it again resumes the new job.

options:
  -o, --output NEW_RESULTS  where the new job's results go (required)
  --errors PATH             where its failed requests go (default: NEW_RESULTS with .errors
                            before its extension)
  --concurrency N           uploads, creates and downloads at once (default: 4)
  --interval SECONDS        poll every SECONDS (default: 2, growing to 30)
]],
  }


  local function job_events(ctx)
    return function(e) ctx:say(e.text) end
  end

  -- "3 completed, 1 expired" from {completed = 3, expired = 1}
  local function tally_text(t)
    local names = {}
    for k in pairs(t or {}) do names[#names + 1] = k end
    table.sort(names)
    for i, k in ipairs(names) do names[i] = ("%d %s"):format(t[k], (k:gsub("_", " "))) end
    return table.concat(names, ", ")
  end

  -- print a job's summary; the exit status: 0 when every batch completed
  local function job_summary(ctx, summary)
    if ctx.json then
      ctx:print_json(summary)
    else
      ctx:out("job: " .. summary.job_id)
      ctx:out("requests: " .. summary.requests)
      ctx:out("succeeded: " .. summary.succeeded)
      ctx:out("failed: " .. summary.failed)
      ctx:out("missing: " .. summary.missing)
      ctx:out(("shards: %d (%s)"):format(summary.shards, tally_text(summary.batches)))
      ctx:out(("results: %s (%s)"):format(summary.results, plural(summary.succeeded, "line")))
      ctx:out(("errors: %s (%s)"):format(summary.errors, plural(summary.failed, "line")))
      ctx:out("store: " .. summary.store)
    end
    if not summary.complete then
      ctx:warn(("moonbatch: job %s: not every batch completed (%s)%s: `moonbatch job retry-failed` runs " ..
        "the requests without a result again"):format(summary.job_id, tally_text(summary.batches),
        summary.cancelled and ", the job was cancelled" or ""))
      return EXIT_FAILED
    end
    return EXIT_OK
  end

  -- the client of the job whose results go to `results`: its provider and base URL are the
  -- manifest's (a --provider or --base-url saying otherwise is a usage error); the job's status
  local function job_client(ctx, results, optional)
    local moonbatch = ctx:library()
    local report, msg, info = moonbatch.job.status(nil, { results = results })
    if not report then fail(msg, EXIT_FAILED, { info = info }) end
    local given_url = ctx.opts["base-url"] and ctx.opts["base-url"]:gsub("/+$", "")
    if (ctx.opts.provider and ctx.opts.provider ~= report.provider) or (given_url and given_url ~= report.base_url) then
      usage_error(("the job of %s runs on %s at %s"):format(results, report.provider, report.base_url), ctx.command)
    end
    ctx.provider = report.provider
    return ctx:client({ tasks = true, base_url = report.base_url, optional = optional }), report
  end

  commands["job run"].run = function(ctx)
    local file = ctx.args[1]
    local results = output_paths(ctx, file)
    local client = ctx:client({ tasks = true })
    local job = ctx:library().job
    ctx.job_manifest = job.store_path(results)
    local opts = create_options(ctx) -- every batch's endpoint, window, metadata and model
    opts.input, opts.results, opts.errors = file, results, ctx.opts.errors
    opts.concurrency, opts.max_lines, opts.max_bytes = ctx.opts.concurrency, ctx.opts["shard-lines"],
      ctx.opts["shard-bytes"]
    opts.interval, opts.on_event = ctx.opts.interval, job_events(ctx)
    opts.max_active_batches, opts.max_enqueued_requests, opts.max_enqueued_tokens = ctx.opts["max-active-batches"],
      ctx.opts["max-enqueued-requests"], ctx.opts["max-enqueued-tokens"]
    local summary, msg, info = unraised(job.run, client, opts)
    if not summary then file_failure(ctx, file, msg, info) end
    return job_summary(ctx, summary)
  end

  commands["job status"].run = function(ctx)
    local results = ctx.args[1]
    local client, report = job_client(ctx, results, true)
    local job = ctx.moonbatch.job
    local running = report.statuses.running
    if client and running then report = ctx:check(job.status(client, { results = results })) end
    if ctx.json then
      ctx:print_json(report)
      return EXIT_OK
    end
    ctx:out(("job: %s (%s%s)"):format(report.job_id, report.state, report.cancelled and ", cancelled" or ""))
    ctx:out(("input: %s (%s)"):format(report.input, plural(report.requests, "request")))
    ctx:out(("provider: %s %s"):format(report.provider, report.base_url))
    ctx:out(("shards: %d (%s)"):format(#report.shards, tally_text(report.statuses)))
    local rows = {}
    for _, r in ipairs(report.shards) do
      local c = r.counts or {}
      local done = batch_counts({ request_counts = c.total and c or nil, progress = c.progress })
      rows[#rows + 1] = { tostring(r.index), tostring(r.lines), r.status, r.batch_id or "-",
                          r.batch_status and (r.batch_status .. (done and (" " .. done) or "")) or "-" }
    end
    for _, line in ipairs(table_lines({ "SHARD", "LINES", "STATUS", "BATCH", "BATCH STATUS" }, rows)) do
      ctx:out(line)
    end
    for _, r in ipairs(report.shards) do
      if r.error then ctx:out(("shard %d: last error: %s"):format(r.index, r.error)) end
      if r.quota_reason then
        ctx:out(("shard %d: %s on a quota (%s)"):format(r.index, r.status == "uploaded" and "held back" or
          ("created again %d time%s"):format(r.resubmits or 1, (r.resubmits or 1) == 1 and "" or "s"), r.quota_reason))
      end
    end
    local m = report.summary
    if m then
      ctx:out(("succeeded: %d, failed: %d, missing: %d"):format(m.succeeded, m.failed, m.missing))
      if m.usage then
        ctx:out(("billed: %d input tokens, %d output tokens"):format(m.usage.input_tokens, m.usage.output_tokens))
      end
      ctx:out(("results: %s"):format(m.results))
      ctx:out(("errors: %s"):format(m.errors))
    end
    if running and not client then
      ctx:say("(running batches as last recorded: no API key to ask for their status now)")
    end
    return EXIT_OK
  end

  commands["job cancel"].run = function(ctx)
    local results = ctx.args[1]
    local client = job_client(ctx, results)
    local report = guarded(ctx, ctx.moonbatch.job.cancel, client, { results = results })
    if ctx.json then
      ctx:print_json(report)
    else
      ctx:out(("job: %s (cancelled)"):format(report.job_id))
      for _, r in ipairs(report.shards) do
        ctx:out(("shard %d: %s"):format(r.index, r.batch_id and ("batch %s %s"):format(r.batch_id, r.batch_status or "?")
          or "no batch (none will be created)"))
      end
    end
    for _, msg in ipairs(report.failures) do ctx:warn(msg) end
    return #report.failures == 0 and EXIT_OK or EXIT_FAILED
  end

  commands["job retry-failed"].run = function(ctx)
    local old = ctx.args[1]
    local results = output_paths(ctx, old)
    local client = job_client(ctx, old)
    local job = ctx.moonbatch.job
    ctx.job_manifest = job.store_path(results)
    local summary, msg, info = unraised(job.retry_failed, client, {
      from = old, results = results, errors = ctx.opts.errors, concurrency = ctx.opts.concurrency,
      interval = ctx.opts.interval, on_event = job_events(ctx),
    })
    if not summary then file_failure(ctx, old, msg, info) end
    if summary.requests == 0 then
      if ctx.json then ctx:print_json(summary) else ctx:out("nothing to retry: every request of " .. old .. " has a result") end
      return EXIT_OK
    end
    return job_summary(ctx, summary)
  end
end
