-- moonbatch 0.1.0: written by `make rockspec` from moonbatch-scm-1.rockspec; edit that one.
package = "moonbatch"
version = "0.1.0-1"
source = {
  -- the archive of tag v0.1.0 that `make dist` writes (git archive --prefix=moonbatch-0.1.0/)
  url = "https://github.com/moonbatch/moonbatch/releases/download/v0.1.0/moonbatch-0.1.0.tar.gz",
  dir = "moonbatch-0.1.0",
}
description = {
  summary = "A fast, streaming Lua client for LLM batch-inference APIs",
  detailed = [[
moonbatch uploads batch input files, lists files and creates batches on SiliconFlow (and other
OpenAI-compatible services) through libcurl: uploads stream from disk, calls reuse one
keep-alive connection, replies become canonical Lua tables, and failures are retried as the
providers ask.
]],
  homepage = "https://github.com/moonbatch/moonbatch",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
-- Only the library is looked for: luarocks finds it in the platform's lib folders (Debian's
-- lib/x86_64-linux-gnu, Fedora's lib64, macOS's SDK) and sets CURL_INCDIR to <prefix>/include
-- beside it. curl.h itself is left to the compiler's default include path, which knows
-- Debian's multiarch /usr/include/x86_64-linux-gnu; a header check would look in
-- <prefix>/include only and fail there. CURL_DIR=... (or CURL_INCDIR, CURL_LIBDIR) still
-- points the build at another libcurl.
external_dependencies = {
  CURL = { library = "curl" },
  SQLITE = { library = "sqlite3" },
}
build = {
  type = "builtin",
  modules = {
    ["moonbatch.core"] = {
      sources = { "csrc/buffer.c", "csrc/checksum.c", "csrc/core.c", "csrc/fsutil.c", "csrc/multi.c", "csrc/ops.c", "csrc/options.c",
                  "csrc/readahead.c", "csrc/reply.c", "csrc/session.c", "csrc/transfer.c", "csrc/url.c",
                  "csrc/validate.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "pthread" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
    -- the job store (moonbatch.job only): its own module, so that moonbatch.core needs no SQLite
    ["moonbatch.store"] = {
      sources = { "csrc/store/store.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "sqlite3" },
      incdirs = { "$(SQLITE_INCDIR)" },
      libdirs = { "$(SQLITE_LIBDIR)" },
    },
    ["moonbatch"] = "lua/moonbatch/init.lua",
    ["moonbatch.args"] = "lua/moonbatch/args.lua",
    ["moonbatch.cli"] = "lua/moonbatch/cli.lua",
    ["moonbatch.cli.completion"] = "lua/moonbatch/cli/completion.lua",
    ["moonbatch.cli.env"] = "lua/moonbatch/cli/env.lua",
    ["moonbatch.cli.man"] = "lua/moonbatch/cli/man.lua",
    ["moonbatch.cli.stdout"] = "lua/moonbatch/cli/stdout.lua",
    ["moonbatch.cli.url"] = "lua/moonbatch/cli/url.lua",
    ["moonbatch.cli.estimate"] = "lua/moonbatch/cli/estimate.lua",
    ["moonbatch.cli.job"] = "lua/moonbatch/cli/job.lua",
    ["moonbatch.client"] = "lua/moonbatch/client/init.lua",
    ["moonbatch.client.call"] = "lua/moonbatch/client/call.lua",
    ["moonbatch.client.files"] = "lua/moonbatch/client/files.lua",
    ["moonbatch.client.batches"] = "lua/moonbatch/client/batches.lua",
    ["moonbatch.cli.failure"] = "lua/moonbatch/cli/failure.lua",
    ["moonbatch.cli.output"] = "lua/moonbatch/cli/output.lua",
    ["moonbatch.cli.help"] = "lua/moonbatch/cli/help.lua",
    ["moonbatch.cli.parse"] = "lua/moonbatch/cli/parse.lua",
    ["moonbatch.errors"] = "lua/moonbatch/errors.lua",
    ["moonbatch.estimate"] = "lua/moonbatch/estimate.lua",
    ["moonbatch.fs"] = "lua/moonbatch/fs.lua",
    ["moonbatch.health"] = "lua/moonbatch/health.lua",
    ["moonbatch.job"] = "lua/moonbatch/job/init.lua",
    ["moonbatch.job.common"] = "lua/moonbatch/job/common.lua",
    ["moonbatch.job.merge"] = "lua/moonbatch/job/merge.lua",
    ["moonbatch.job.plan"] = "lua/moonbatch/job/plan.lua",
    ["moonbatch.job.quota"] = "lua/moonbatch/job/quota.lua",
    ["moonbatch.job.runner"] = "lua/moonbatch/job/runner.lua",
    ["moonbatch.job.steps"] = "lua/moonbatch/job/steps.lua",
    ["moonbatch.job.store"] = "lua/moonbatch/job/store.lua",
    ["moonbatch.manifest"] = "lua/moonbatch/manifest.lua",
    ["moonbatch.ngx"] = "lua/moonbatch/ngx.lua",
    ["moonbatch.nvim"] = "lua/moonbatch/nvim.lua",
    ["moonbatch.objects"] = "lua/moonbatch/objects.lua",
    ["moonbatch.progress"] = "lua/moonbatch/progress.lua",
    ["moonbatch.provider"] = "lua/moonbatch/provider.lua",
    ["moonbatch.retry"] = "lua/moonbatch/retry.lua",
    ["moonbatch.scheduler"] = "lua/moonbatch/scheduler.lua",
    ["moonbatch.standin"] = "lua/moonbatch/standin.lua",
    ["moonbatch.validate"] = "lua/moonbatch/validate.lua",
    ["moonbatch.providers"] = "lua/moonbatch/providers/init.lua",
    ["moonbatch.providers.azure"] = "lua/moonbatch/providers/azure.lua",
    ["moonbatch.providers.base"] = "lua/moonbatch/providers/base.lua",
    ["moonbatch.providers.compatible"] = "lua/moonbatch/providers/compatible.lua",
    ["moonbatch.providers.help"] = "lua/moonbatch/providers/help.lua",
    ["moonbatch.providers.mistral"] = "lua/moonbatch/providers/mistral.lua",
    ["moonbatch.providers.openai"] = "lua/moonbatch/providers/openai.lua",
    ["moonbatch.providers.siliconflow"] = "lua/moonbatch/providers/siliconflow.lua",
    ["moonbatch.providers.siliconflow-global"] = "lua/moonbatch/providers/siliconflow-global.lua",
    ["moonbatch.providers.together"] = "lua/moonbatch/providers/together.lua",
  },
  install = {
    bin = { moonbatch = "bin/moonbatch", ["moonbatch-standin"] = "bin/moonbatch-standin" },
  },
  -- the stand-in's nginx configuration and Lua handlers, into the rock's own folder, where
  -- <rock>/bin/moonbatch-standin finds them as it finds them in a checkout
  copy_directories = { "doc", "standin" },
}
