package = "moonbatch"
version = "scm-1"
source = {
  url = "git+https://example.invalid/moonbatch.git",
}
description = {
  summary = "A fast, streaming Lua client for LLM batch-inference APIs",
  detailed = [[
moonbatch uploads batch input files, lists files and creates batches on SiliconFlow (and other
OpenAI-compatible services) through libcurl: uploads stream from disk, calls reuse one
keep-alive connection, replies become canonical Lua tables, and failures are retried as the
providers ask.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  SQLITE = { header = "sqlite3.h", library = "sqlite3" },
}
build = {
  type = "builtin",
  modules = {
    ["moonbatch.core"] = {
      sources = { "csrc/buffer.c", "csrc/checksum.c", "csrc/core.c", "csrc/multi.c", "csrc/ops.c", "csrc/options.c",
                  "csrc/reply.c", "csrc/session.c", "csrc/transfer.c", "csrc/validate.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl" },
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
    ["moonbatch.cli.estimate"] = "lua/moonbatch/cli/estimate.lua",
    ["moonbatch.cli.job"] = "lua/moonbatch/cli/job.lua",
    ["moonbatch.client"] = "lua/moonbatch/client.lua",
    ["moonbatch.errors"] = "lua/moonbatch/errors.lua",
    ["moonbatch.estimate"] = "lua/moonbatch/estimate.lua",
    ["moonbatch.fs"] = "lua/moonbatch/fs.lua",
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
    ["moonbatch.validate"] = "lua/moonbatch/validate.lua",
    ["moonbatch.providers.openai"] = "lua/moonbatch/providers/openai.lua",
    ["moonbatch.providers.siliconflow"] = "lua/moonbatch/providers/siliconflow.lua",
    ["moonbatch.providers.siliconflow-global"] = "lua/moonbatch/providers/siliconflow-global.lua",
    ["moonbatch.providers.together"] = "lua/moonbatch/providers/together.lua",
  },
  install = {
    bin = { moonbatch = "bin/moonbatch" },
  },
}
