-- bench/report.lua RESULTS META: the table of scripts/bench. RESULTS has one "metric<TAB>value"
-- line per measurement (a metric repeats once per run); each row shows medians, their ratio, the
-- target and PASS or FAIL. Exits 1 when a target fails. Rows whose metrics are absent (a case
-- not run) are left out.
local results_path, meta_path = arg[1], arg[2]

local samples = {}
for line in io.lines(results_path) do
  local k, v = line:match("^([^\t]+)\t(.*)$")
  if k then
    samples[k] = samples[k] or {}
    samples[k][#samples[k] + 1] = tonumber(v) or v
  end
end

local function median(k)
  local s = samples[k]
  if not s or #s == 0 then return nil end
  local t = {}
  for i, v in ipairs(s) do t[i] = v end
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

local function have(...)
  for _, k in ipairs({ ... }) do
    if not samples[k] then return false end
  end
  return true
end

local function sec(s) return ("%.3f s"):format(s) end
local function mib(kib) return ("%.1f MiB"):format(kib / 1024) end
local function rate(r) return ("%.0f req/s"):format(r) end
local function mbps(bytes, s) return ("%.0f MB/s"):format(bytes / s / 1e6) end
local function times(x) return ("%.2f×"):format(x) end

local rows = {}
local counts = { PASS = 0, FAIL = 0, ["n/a"] = 0, info = 0 }
local function row(case, mb, ref, ratio, target, result)
  rows[#rows + 1] = { case, mb or "", ref or "", ratio or "", target or "", result }
  counts[result] = counts[result] + 1
end
local function verdict(ok) return ok and "PASS" or "FAIL" end

local RSS_MAX = 16 * 1024 -- KiB
local FLAT = 1024         -- KiB of growth that still counts as flat

------------------------------------------------------------------------------ case 1: upload

local sizes = { { "64m", "64 MiB" }, { "256m", "256 MiB" }, { "1g", "1 GiB" } }
-- each side: its key, its label, its curl reference, and whether its RSS has the target (the
-- 1 KiB-line file checked with the limits lifted keeps its 1,048,576 custom_ids: RSS as info)
-- (and the 1 GiB time target: the check of 1 KiB lines, the worst case for its CPU, runs on a
-- second thread ahead of the send, and may cost a tenth more than curl)
local sides = {
  { "mb", "validate=false", "curl", true, 1.05 },
  { "mbv", "validate=true, 1 KiB lines, limits lifted", "curl", false, 1.1 },
  { "mbw", "validate=true, 64 KiB lines, 50,000-line cap", "curlw", true, 1.05 },
}
for _, side in ipairs(sides) do
  local key, label, ref, rss_target, time_target = side[1], side[2], side[3], side[4], side[5]
  for _, size in ipairs(sizes) do
    local m, c = ("upload.%s.%s."):format(size[1], key), ("upload.%s.%s."):format(size[1], ref)
    if have(m .. "seconds", c .. "seconds") then
      local tm, tc = median(m .. "seconds"), median(c .. "seconds")
      -- the issue's time target is the 1 GiB upload; the smaller ones (tens of milliseconds,
      -- where a few ms of process noise move the ratio) are shown as context
      local target, result = "context", "info"
      if size[1] == "1g" then target, result = ("≤ %.2f×"):format(time_target), verdict(tm / tc <= time_target) end
      row(("1 upload %s, %s: time"):format(size[2], label), sec(tm), sec(tc) .. " curl -F", times(tm / tc), target,
        result)
    end
  end
  for _, size in ipairs(sizes) do
    local m, c = ("upload.%s.%s."):format(size[1], key), ("upload.%s.%s."):format(size[1], ref)
    if have(m .. "rss", c .. "rss") then
      local rm, rc = median(m .. "rss"), median(c .. "rss")
      local target, result = "every custom_id kept", "info"
      if rss_target then target, result = "≤ 16 MiB", verdict(rm <= RSS_MAX) end
      row(("1 upload %s, %s: peak RSS"):format(size[2], label), mib(rm), mib(rc) .. " curl", times(rm / rc), target,
        result)
    end
  end
  local lo, hi, first, last
  for _, size in ipairs(sizes) do
    local r = median(("upload.%s.%s.rss"):format(size[1], key))
    if r then
      lo, hi = math.min(lo or r, r), math.max(hi or r, r)
      first = first or r
      last = r
    end
  end
  if lo and first ~= last and rss_target then
    row(("1 upload 64 MiB → 1 GiB, %s: RSS growth"):format(label),
      ("%+.1f MiB (%s → %s)"):format((last - first) / 1024, mib(first), mib(last)), "", "",
      "flat: spread ≤ 1 MiB", verdict(hi - lo <= FLAT))
  end
end

------------------------------------------------------------------------------ case 2: download

do
  local lo, hi, first, last
  for _, size in ipairs(sizes) do
    local m, c = ("download.%s.mb."):format(size[1]), ("download.%s.curl."):format(size[1])
    if have(m .. "seconds", c .. "seconds") then
      local tm, tc = median(m .. "seconds"), median(c .. "seconds")
      local bytes = size[1] == "1g" and 1073741824 or (size[1] == "256m" and 268435456 or 67108864)
      local last_size = size[1] == "1g"
      row(("2 download %s: time"):format(size[2]), sec(tm) .. ", " .. mbps(bytes, tm),
        sec(tc) .. " curl -o + fsync", times(tm / tc), last_size and "≤ 1.05×" or "context",
        last_size and verdict(tm / tc <= 1.05) or "info")
      if have(c:gsub("curl", "curlraw") .. "seconds") then
        local raw = median(c:gsub("curl", "curlraw") .. "seconds")
        row(("2 download %s: time vs curl -o without fsync"):format(size[2]), sec(tm), sec(raw) .. " curl -o",
          times(tm / raw), "context", "info")
      end
    end
    if have(m .. "rss", c .. "rss") then
      local rm, rc = median(m .. "rss"), median(c .. "rss")
      row(("2 download %s: peak RSS"):format(size[2]), mib(rm), mib(rc) .. " curl", times(rm / rc),
        "≤ 16 MiB", verdict(rm <= RSS_MAX))
      lo, hi = math.min(lo or rm, rm), math.max(hi or rm, rm)
      first = first or rm
      last = rm
    end
  end
  if lo and first ~= last then
    row("2 download 64 MiB → 1 GiB: RSS growth",
      ("%+.1f MiB (%s → %s)"):format((last - first) / 1024, mib(first), mib(last)), "", "",
      "flat: spread ≤ 1 MiB", verdict(hi - lo <= FLAT))
  end
end

-------------------------------------------------------------------------------- case 3: list

if have("list.mb.rate", "list.loop.rate") then
  local rm, rl = median("list.mb.rate"), median("list.loop.rate")
  row("3 files.list ×10,000, keep-alive, decoded", rate(rm), rate(rl) .. " libcurl loop",
    times(rm / rl), "≥ 0.90×", verdict(rm / rl >= 0.9))
end
if have("list.wrk.rate") then
  local rw = median("list.wrk.rate")
  if have("list.loop.rate") then
    row("3 the libcurl loop (curl_easy_perform ×10,000, one handle) vs wrk", rate(median("list.loop.rate")),
      rate(rw) .. " wrk -c1", times(median("list.loop.rate") / rw), "context", "info")
  end
  if have("list.mb.rate") then
    row("3 files.list vs wrk", rate(median("list.mb.rate")), rate(rw) .. " wrk -c1",
      times(median("list.mb.rate") / rw), "context", "info")
  end
  if have("list.curl.rate") then
    row("3 the same URL ×10,000 with curl's command line, keep-alive", rate(median("list.curl.rate")),
      rate(rw) .. " wrk -c1", times(median("list.curl.rate") / rw), "context", "info")
  end
end

-------------------------------------------------------------------------- case 4: concurrent

if have("many.na") then
  row("4 16 × 64 MiB at once: throughput", "n/a (no concurrent API yet)", "", "", "≥ 0.95×", "n/a")
elseif have("many.mb.seconds", "many.curl.seconds") then
  local bytes = median("many.bytes")
  local tm, tc = median("many.mb.seconds"), median("many.curl.seconds")
  row("4 16 × 64 MiB at once: throughput", mbps(bytes, tm), mbps(bytes, tc) .. " curl --parallel",
    times(tc / tm), "≥ 0.95×", verdict(tc / tm >= 0.95))
  if have("many.mb.rss", "many.curl.rss") then
    local rm, rc = median("many.mb.rss"), median("many.curl.rss")
    row("4 16 × 64 MiB at once: peak RSS", mib(rm), mib(rc) .. " curl", times(rm / rc), "", "info")
  end
end

---------------------------------------------------------------------------- case 5: validate

if have("validate.mb.seconds", "validate.wc.seconds") then
  local bytes = median("validate.bytes")
  local tm, tw = median("validate.mb.seconds"), median("validate.wc.seconds")
  row("5 validate 1 GiB (hot cache): speed", ("%.2f GB/s"):format(bytes / tm / 1e9),
    ("%.2f GB/s wc -l"):format(bytes / tw / 1e9), "", "≥ 1 GB/s", verdict(bytes / tm >= 1e9))
  row("5 validate 1 GiB (hot cache): time", sec(tm), sec(tw) .. " wc -l", times(tm / tw), "≤ 4×",
    verdict(tm / tw <= 4))
  if have("validate.mb.rss") then
    row("5 validate 1 GiB: peak RSS", mib(median("validate.mb.rss")), "", "", "", "info")
  end
end

---------------------------------------------------------------------- case 6: the npm SDK

-- A context row: the median of sdk.<what>.mb.<measure> against sdk.<what>.sdk.<measure>.
local function versus_sdk(case, what, measure, show)
  local m, s = median(("sdk.%s.mb.%s"):format(what, measure)), median(("sdk.%s.sdk.%s"):format(what, measure))
  row(case, show(m), show(s) .. " SDK", times(m / s), "context", "info")
end

if have("sdk.upload.mb.seconds", "sdk.upload.sdk.seconds") then
  versus_sdk("6 upload 1 GiB vs openai npm SDK: time", "upload", "seconds", sec)
  versus_sdk("6 upload 1 GiB vs openai npm SDK: peak RSS", "upload", "rss", mib)
end
if have("sdk.list.mb.rate", "sdk.list.sdk.rate") then
  versus_sdk("6 files.list ×2,000 on /openai/v1 vs SDK", "list", "rate", rate)
  versus_sdk("6 files.list ×2,000 vs SDK: peak RSS", "list", "rss", mib)
end

--------------------------------------------------------------------------- case 7: endurance

local function e(k) return median("endurance." .. k) end
if have("endurance.list_rss0") then
  local calls = e("list_calls")
  local r0, r1 = e("list_rss0"), e("list_rss1")
  row(("7 endurance: files.list ×%d (%.0f/s): RSS"):format(calls, e("list_rate")),
    ("%s → %s (%+.1f MiB)"):format(mib(r0), mib(r1), (r1 - r0) / 1024), "", "",
    "growth ≤ 1 MiB", verdict(r1 - r0 <= FLAT))
  row(("7 endurance: files.list ×%d: open fds"):format(calls), ("%d → %d"):format(e("list_fd0"), e("list_fd1")),
    "", "", "no growth", verdict(e("list_fd1") <= e("list_fd0")))
  if have("endurance.many") then
    row("7 endurance: 1,000 concurrent transfers", "n/a (no concurrent API yet)", "", "", "flat", "n/a")
  elseif have("endurance.many_rss0") then
    local m0, m1 = e("many_rss0"), e("many_rss1")
    row(("7 endurance: %d transfers via upload_many (%.0f/s): RSS"):format(e("many_transfers"), e("many_rate")),
      ("%s → %s (%+.1f MiB)"):format(mib(m0), mib(m1), (m1 - m0) / 1024), "", "", "growth ≤ 1 MiB",
      verdict(m1 - m0 <= FLAT))
    row(("7 endurance: %d transfers via upload_many: open fds"):format(e("many_transfers")),
      ("%d → %d"):format(e("many_fd0"), e("many_fd1")), "", "", "no growth",
      verdict(e("many_fd1") <= e("many_fd0")))
  end
end

------------------------------------------------------------------------------------ print

local header = { "case", "moonbatch", "reference", "ratio", "target", "result" }
local width = {}
local function len(s) return utf8.len(s) or #s end
for i, h in ipairs(header) do width[i] = len(h) end
for _, r in ipairs(rows) do
  for i, cell in ipairs(r) do width[i] = math.max(width[i], len(cell)) end
end
local function line(cells)
  local parts = {}
  for i, cell in ipairs(cells) do parts[i] = cell .. (" "):rep(width[i] - len(cell)) end
  return (table.concat(parts, "  "):gsub("%s+$", ""))
end

local meta = io.open(meta_path)
if meta then
  io.write(meta:read("a"))
  meta:close()
end
io.write("medians of each case's runs; times are each tool's own transfer clock (curl's time_total,\n"
  .. "moonbatch's around the call), RSS the process peak (GNU time); ratio = moonbatch / reference\n"
  .. "(for throughput and rates: moonbatch's speed / the reference's)\n\n")
io.write(line(header), "\n")
local rule = {}
for i = 1, #header do rule[i] = ("-"):rep(width[i]) end
io.write(line(rule), "\n")
for _, r in ipairs(rows) do io.write(line(r), "\n") end
io.write(("\ntargets: %d PASS, %d FAIL, %d n/a; %d rows of context\n")
  :format(counts.PASS, counts.FAIL, counts["n/a"], counts.info))
os.exit(counts.FAIL > 0 and 1 or 0)
