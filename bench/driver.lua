-- bench/driver.lua: the moonbatch side of each benchmark case, one measurement per process (so
-- that the process's peak RSS, read by scripts/bench through /usr/bin/time, is its own).
-- Prints one line of key=value pairs; times are measured around the library call only, with
-- core.now() (monotonic), so process start and module loading are not counted.
--
--   gen PATH BYTES [WIDTH]                a JSONL batch file of valid lines of WIDTH (1,024) bytes
--   upload BASE KEY FILE on|capped|off [PROVIDER]
--                                        one files.upload: validated with the provider's limits
--                                        lifted (on), with a 50,000-line cap and no byte cap
--                                        (capped), or not validated (off)
--   list BASE KEY N [PROVIDER]           N sequential files.list on one client (keep-alive)
--   download BASE KEY ID OUT BYTES [PROVIDER]
--                                        one files.download of file ID to OUT (BYTES expected)
--   many BASE KEY CONCURRENCY FILE...    one files.upload_many over the files
--   validate FILE                        core.validate (no provider limits)
--   endurance BASE KEY CALLS TRANSFERS FILE
--                                        CALLS files.list, then TRANSFERS uploads of FILE
--                                        through files.upload_many; RSS and fds before/after
local mode = arg[1]

local function out(fields)
  local parts = {}
  for _, kv in ipairs(fields) do parts[#parts + 1] = kv[1] .. "=" .. tostring(kv[2]) end
  io.write(table.concat(parts, " "), "\n")
  io.flush()
end

local function die(msg)
  io.stderr:write("bench/driver.lua ", tostring(mode), ": ", tostring(msg), "\n")
  os.exit(1)
end

local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local size = f:seek("end")
  f:close()
  return size
end

------------------------------------------------------------------------------------------ gen

-- Lines of exactly `width` bytes (newline included), each a valid OpenAI-style request with a
-- unique custom_id and some non-ASCII text, so that every validator rule is exercised.
local function gen(path, bytes, width)
  local LINE = width or 1024
  assert(bytes % LINE == 0, "BYTES must be a multiple of WIDTH")
  local head = '{"custom_id":"request-%07d","method":"POST","url":"/v1/chat/completions",'
    .. '"body":{"model":"deepseek-ai/DeepSeek-V3","messages":[{"role":"system","content":'
    .. '"You are a helpful assistant."},{"role":"user","content":"'
  local tail = '"}],"max_tokens":512,"temperature":0.7}}\n'
  local words = "Summarise the following passage in three sentences and list its key terms. "
  local filler = words:rep(math.ceil(LINE / #words) + 1)
  local f = assert(io.open(path .. ".part", "wb"))
  local lines = bytes // LINE
  local block, block_bytes = {}, 0
  for i = 1, lines do
    local start = ("Question %d — résumé des données, 数据批处理 %d: "):format(i, i % 97)
    local fixed = #head - 4 + 7 + #start + #tail -- %07d -> 7 digits
    local line = head:format(i) .. start .. filler:sub(1 + i % 13, LINE - fixed + i % 13) .. tail
    if #line ~= LINE then die(("line %d is %d bytes"):format(i, #line)) end
    block[#block + 1] = line
    block_bytes = block_bytes + LINE
    if block_bytes >= 1048576 or i == lines then
      assert(f:write(table.concat(block)))
      block, block_bytes = {}, 0
    end
  end
  assert(f:close())
  assert(os.rename(path .. ".part", path))
  out({ { "lines", lines }, { "bytes", bytes } })
end

--------------------------------------------------------------------------------- the library

local function client(base, key, provider)
  local moonbatch = require("moonbatch")
  return moonbatch.new({ provider = provider or "siliconflow", base_url = base, api_key = key,
                         max_retries = 0 })
end

local function now()
  return require("moonbatch.core").now()
end

local function upload(base, key, path, how, provider)
  local size = file_size(path)
  local validate = how ~= "off"
  local p = require("moonbatch.providers." .. (provider or "siliconflow"))
  if how == "on" then
    -- the 1 GiB file of 1 KiB lines is over every provider's caps (SiliconFlow: 5,000 lines,
    -- 1 GB): lift them, so the scan runs in full and passes; the rules per line are the same
    rawset(p, "limits", false)
  elseif how == "capped" then
    -- a file a provider could take but for its size: the largest line cap of any provider
    -- (OpenAI's and Together's), no byte cap
    rawset(p, "limits", { lines = 50000 })
  end
  local c = client(base, key, provider)
  local t0 = now()
  local file, msg = c.files.upload({ file = path, validate = validate })
  local seconds = now() - t0
  if not file then die(msg) end
  if file.bytes ~= size then die(("the server got %s bytes of %d"):format(tostring(file.bytes), size)) end
  out({ { "seconds", ("%.6f"):format(seconds) }, { "bytes", size } })
end

local function list(base, key, n, provider)
  local c = client(base, key, provider)
  local first = assert(c.files.list())
  local per_page = #first.data
  if per_page == 0 then die("the list page is empty") end
  local items = 0
  local t0 = now()
  for _ = 1, n do
    local page, msg = c.files.list()
    if not page then die(msg) end
    items = items + #page.data
  end
  local seconds = now() - t0
  if items ~= n * per_page then die(("%d items in %d pages of %d"):format(items, n, per_page)) end
  out({ { "seconds", ("%.6f"):format(seconds) }, { "calls", n }, { "rate", ("%.1f"):format(n / seconds) },
        { "per_page", per_page } })
end

local function download(base, key, id, path, bytes, provider)
  local c = client(base, key, provider)
  local t0 = now()
  local result, msg = c.files.download(id, path)
  local seconds = now() - t0
  if not result then die(msg) end
  if result.bytes ~= bytes or file_size(path) ~= bytes then
    die(("got %s bytes of %d"):format(tostring(result.bytes), bytes))
  end
  os.remove(path)
  out({ { "seconds", ("%.6f"):format(seconds) }, { "bytes", bytes } })
end

-- The result of one upload_many item: the File, or nil and the message.
local function many_result(r)
  if type(r) ~= "table" then return nil, "result is a " .. type(r) end
  if r.file then return r.file end
  return nil, r.error or r[2] or "failed"
end

local function many(base, key, concurrency, paths)
  local c = client(base, key)
  if type(c.files.upload_many) ~= "function" then
    out({ { "na", "no-concurrent-api" } })
    return
  end
  local list_, total = {}, 0
  for i, p in ipairs(paths) do
    list_[i] = { file = p }
    total = total + file_size(p)
  end
  local t0 = now()
  local results = c.files.upload_many(list_, { concurrency = concurrency, validate = false })
  local seconds = now() - t0
  for i, p in ipairs(paths) do
    local file, msg = many_result(results[i])
    if not file then die(("item %d: %s"):format(i, tostring(msg))) end
    if file.bytes ~= file_size(p) then die(("item %d: the server got %s bytes"):format(i, tostring(file.bytes))) end
  end
  out({ { "seconds", ("%.6f"):format(seconds) }, { "bytes", total }, { "files", #paths } })
end

local function validate(path)
  local core = require("moonbatch.core")
  local t0 = now()
  local report, msg = core.validate(path, { endpoint = "/v1/chat/completions" })
  local seconds = now() - t0
  if not report then die(msg) end
  if not report.ok then
    die("the file does not pass: " .. tostring(report.problems[1] and report.problems[1].message))
  end
  out({ { "seconds", ("%.6f"):format(seconds) }, { "bytes", report.bytes }, { "lines", report.lines } })
end

------------------------------------------------------------------------------------ endurance

local function status_kib(field)
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+) kB"))
end

local function fd_count()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  -- the pipe of this popen is one of them, on both counts
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
  local n = p:read("n")
  p:close()
  return n
end

local function sample()
  collectgarbage("collect")
  return { rss = status_kib("VmRSS"), fds = fd_count() }
end

local function endurance(base, key, calls, transfers, path)
  local c = client(base, key)
  local fields = {}
  for _ = 1, 1000 do assert(c.files.list()) end -- warm-up
  local before = sample()
  local t0 = now()
  for i = 1, calls do
    local page, msg = c.files.list()
    if not page then die(("call %d: %s"):format(i, msg)) end
  end
  local seconds = now() - t0
  local after = sample()
  for _, kv in ipairs({ { "list_calls", calls }, { "list_rate", ("%.1f"):format(calls / seconds) },
      { "list_rss0", before.rss }, { "list_rss1", after.rss }, { "list_fd0", before.fds },
      { "list_fd1", after.fds } }) do
    fields[#fields + 1] = kv
  end
  if type(c.files.upload_many) ~= "function" then
    fields[#fields + 1] = { "many", "na" }
  else
    local size = file_size(path)
    local ROUND = 100
    local function round(n)
      local items = {}
      for i = 1, n do items[i] = { file = path } end
      local results = c.files.upload_many(items, { concurrency = 16, validate = false })
      for i = 1, n do
        local file, msg = many_result(results[i])
        if not file then die(("transfer %d: %s"):format(i, tostring(msg))) end
        if file.bytes ~= size then die("a transfer lost bytes") end
      end
    end
    round(ROUND) -- warm-up: the connection pool and its buffers fill
    local b = sample()
    local done = 0
    local t1 = now()
    while done < transfers do
      local n = math.min(ROUND, transfers - done)
      round(n)
      done = done + n
    end
    local s = now() - t1
    local a = sample()
    for _, kv in ipairs({ { "many_transfers", done }, { "many_rate", ("%.1f"):format(done / s) },
        { "many_rss0", b.rss }, { "many_rss1", a.rss }, { "many_fd0", b.fds }, { "many_fd1", a.fds } }) do
      fields[#fields + 1] = kv
    end
  end
  fields[#fields + 1] = { "hwm", status_kib("VmHWM") }
  out(fields)
end

------------------------------------------------------------------------------------------ main

if mode == "gen" then
  gen(arg[2], assert(tonumber(arg[3]), "BYTES"), tonumber(arg[4]))
elseif mode == "upload" then
  upload(arg[2], arg[3], arg[4], arg[5], arg[6])
elseif mode == "list" then
  list(arg[2], arg[3], assert(tonumber(arg[4]), "N"), arg[5])
elseif mode == "download" then
  download(arg[2], arg[3], arg[4], arg[5], assert(tonumber(arg[6]), "BYTES"), arg[7])
elseif mode == "many" then
  local paths = {}
  for i = 5, #arg do paths[#paths + 1] = arg[i] end
  many(arg[2], arg[3], assert(tonumber(arg[4]), "CONCURRENCY"), paths)
elseif mode == "validate" then
  validate(arg[2])
elseif mode == "endurance" then
  endurance(arg[2], arg[3], assert(tonumber(arg[4])), assert(tonumber(arg[5])), arg[6])
else
  die("usage: lua5.4 bench/driver.lua gen|upload|list|download|many|validate|endurance ...")
end
