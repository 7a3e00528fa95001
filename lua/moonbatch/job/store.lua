--- moonbatch.job.store: a job's durable record in SQLite (moonbatch.store): the job's own fields
-- (one row, a few hundred bytes whatever the job's size), one row a shard, one row a request
-- once merged (custom_id, shard, outcome, usage). Every event is one small transaction on one
-- row, so it costs the same at shard 2,000 as at shard 2; a process killed at any moment leaves
-- the record before or after the event (SQLite's journal), never half of it. An exclusive OS
-- lock on `<store>.lock` lets one run of a job go on at a time.
-- @module moonbatch.job.store
local cjson = require("cjson").new()
local core = require("moonbatch.core")
local common = require("moonbatch.job.common")
local fs = require("moonbatch.fs")
local manifest = require("moonbatch.manifest")
local objects = require("moonbatch.objects")

local fail = common.fail
local store = {}

local SCHEMA_VERSION = 1
-- a shard's columns: the fields of a shard table, counts as JSON text
local SHARD_COLUMNS = { "name", "offset", "length", "lines", "checksum", "status", "file_id", "uploaded_at",
                        "batch_id", "batch_status", "counts", "output_file_id", "error_file_id",
                        "output_file", "error_file", "error", "cancel_sent", "quota_reason", "quota_since",
                        "resubmits" }
local JSON_COLUMNS = { counts = true }

local function shard_sets()
  local sets = {}
  for i, c in ipairs(SHARD_COLUMNS) do sets[i] = ('"%s" = ?'):format(c) end
  return table.concat(sets, ", ")
end

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS job (one INTEGER PRIMARY KEY CHECK (one = 1), doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (idx INTEGER PRIMARY KEY, name TEXT NOT NULL, offset INTEGER NOT NULL,
  length INTEGER NOT NULL, lines INTEGER NOT NULL, checksum TEXT NOT NULL, status TEXT NOT NULL,
  file_id TEXT, uploaded_at INTEGER, batch_id TEXT, batch_status TEXT, counts TEXT, output_file_id TEXT,
  error_file_id TEXT, output_file TEXT, error_file TEXT, error TEXT, cancel_sent INTEGER,
  quota_reason TEXT, quota_since REAL, resubmits INTEGER);
CREATE TABLE IF NOT EXISTS requests (custom_id TEXT PRIMARY KEY, shard INTEGER NOT NULL,
  outcome TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER) WITHOUT ROWID;
]]

local Store = {}
Store.__index = Store

local function check(path, ok, err)
  if not ok then fail(("%s: %s"):format(path, tostring(err)), { kind = "io" }) end
  return ok
end

local function prepare(self, sql)
  return check(self.path, self.db:prepare(sql))
end

--- Open the store at `path` (`create`: make it when missing; else it must exist): a Store.
function store.open(path, create)
  if not create and not fs.exists(path) then fail(("no job store at %s"):format(path), { kind = "io" }) end
  local db, err = common.sqlite().open(path)
  if not db then fail(("cannot open the job store %s"):format(err), { kind = "io" }) end
  local self = setmetatable({ db = db, path = path }, Store)
  -- WAL: readers (job status) never wait for the run; FULL: a committed event survives a power loss
  local ok, why = db:exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
  if not ok then
    db:close()
    fail(("%s is not a moonbatch job store (%s)"):format(path, tostring(why)), { kind = "io" })
  end
  local version = db:prepare("PRAGMA user_version")
  version:step()
  local v = version:row()
  version:finalize()
  if v ~= 0 and v ~= SCHEMA_VERSION then
    db:close()
    fail(("%s is a job store of another moonbatch version (schema %d, not %d)"):format(path, v, SCHEMA_VERSION),
      { kind = "io" })
  end
  if create and v == 0 then
    check(path, db:exec(SCHEMA .. "PRAGMA user_version = " .. SCHEMA_VERSION))
  end
  return self
end

function Store:close()
  for k, st in pairs(self) do
    if type(k) == "string" and k:match("^stmt_") then st:finalize() end
  end
  self.db:close()
end

-- the statement `sql`, prepared once for this store
function Store:stmt(name, sql)
  local key = "stmt_" .. name
  if not self[key] then self[key] = prepare(self, sql) end
  return self[key]
end

function Store:exec(sql)
  return check(self.path, self.db:exec(sql))
end

--- Run f() in one transaction (BEGIN IMMEDIATE: no other writer in between): its result.
function Store:transaction(f)
  self:exec("BEGIN IMMEDIATE")
  local ok, result = pcall(f)
  if not ok then
    self.db:exec("ROLLBACK")
    error(result, 0)
  end
  self:exec("COMMIT")
  return result
end

local function step(self, st)
  local more, err = st:step()
  if more == nil then fail(("cannot write the job store %s: %s"):format(self.path, tostring(err)), { kind = "io" }) end
  return more
end

local function job_doc(m)
  local top = {}
  for k, v in pairs(m) do
    if k ~= "shards" then top[k] = v end
  end
  return cjson.encode(top)
end

local function shard_values(s)
  local values = {}
  for i, c in ipairs(SHARD_COLUMNS) do
    local v = s[c]
    if JSON_COLUMNS[c] and v ~= nil then v = cjson.encode(v) end
    values[i] = v
  end
  values[#SHARD_COLUMNS + 1] = s.index -- the key, last (a hole above would fool #values)
  return values
end

local unpack = table.unpack or unpack -- luacheck: ignore 143

--- Record the job's own fields (not its shards): one transaction.
function Store:save_job(m)
  local st = self:stmt("save_job", "INSERT OR REPLACE INTO job (one, doc) VALUES (1, ?)")
  st:bind(job_doc(m))
  step(self, st)
  st:reset()
end

--- Record shard `s`: one transaction.
function Store:save_shard(s)
  local st = self:stmt("save_shard", "UPDATE shards SET " .. shard_sets() .. " WHERE idx = ?")
  st:bind(unpack(shard_values(s), 1, #SHARD_COLUMNS + 1))
  step(self, st)
  st:reset()
end

--- Record a whole job `m` (a new one, or one imported from a manifest): one transaction.
function Store:create(m)
  self:transaction(function()
    self:exec("DELETE FROM shards; DELETE FROM requests")
    self:save_job(m)
    local cols = { "idx" }
    local marks = { "?" }
    for i, c in ipairs(SHARD_COLUMNS) do cols[i + 1], marks[i + 1] = '"' .. c .. '"', "?" end
    local st = prepare(self, ("INSERT INTO shards (%s) VALUES (%s)"):format(table.concat(cols, ", "),
      table.concat(marks, ", ")))
    for _, s in ipairs(m.shards) do
      local values = shard_values(s)
      st:bind(s.index, unpack(values, 1, #SHARD_COLUMNS))
      step(self, st)
    end
    st:finalize()
  end)
end

--- The job the store records: the table moonbatch.manifest describes (shards in order), its
-- whole shape checked.
function Store:load()
  local st = prepare(self, "SELECT doc FROM job WHERE one = 1")
  local more = step(self, st)
  local doc = more and st:row()
  st:finalize()
  if not doc then fail(("%s records no job (it is empty)"):format(self.path), { kind = "io" }) end
  local ok, m = pcall(cjson.decode, doc)
  if not ok or type(m) ~= "table" then fail(("%s: the job's record is damaged"):format(self.path), { kind = "io" }) end
  m = objects.clean(m)
  m.shards = {}
  st = prepare(self, 'SELECT idx, "' .. table.concat(SHARD_COLUMNS, '", "') .. '" FROM shards ORDER BY idx')
  while step(self, st) do
    local row = { st:row() }
    local s = { index = row[1] }
    for i, c in ipairs(SHARD_COLUMNS) do
      local v = row[i + 1]
      if JSON_COLUMNS[c] and v ~= nil then v = objects.clean(cjson.decode(v)) end
      s[c] = v
    end
    if s.cancel_sent ~= nil then s.cancel_sent = s.cancel_sent ~= 0 end
    m.shards[#m.shards + 1] = s
  end
  st:finalize()
  local shape_ok, why = manifest.check(m)
  if not shape_ok then fail(("%s is damaged: %s"):format(self.path, why), { kind = "io" }) end
  return m
end

-- requests ------------------------------------------------------------------------------------

--- Forget every merged request (a merge starts over).
function Store:clear_requests()
  self:exec("DELETE FROM requests")
end

--- Record request `id` of shard `shard` with its outcome and usage: true when it is new, false
-- when the id was recorded already (through the table's index, not memory).
function Store:add_request(id, shard, outcome, prompt_tokens, completion_tokens)
  local st = self.stmt_add_request or self:stmt("add_request",
    "INSERT OR IGNORE INTO requests (custom_id, shard, outcome, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?)")
  st:bind(id, shard, outcome, prompt_tokens, completion_tokens)
  step(self, st)
  return self.db:changes() > 0
end

--- Append the lines of the file at `path` to the file at `out_path`, each custom_id once
-- (through the table's index; the C merge of moonbatch.store, one pass, no line decoded), its
-- rows recorded as of shard `shard` with `outcome`: the lines kept, and their usage summed
-- (prompt and completion tokens).
function Store:merge_file(path, out_path, shard, outcome)
  local st = self.stmt_add_request or self:stmt("add_request",
    "INSERT OR IGNORE INTO requests (custom_id, shard, outcome, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?)")
  local kept, prompt, completion = common.sqlite().merge(st, path, out_path, shard, outcome)
  if not kept then fail(prompt, { kind = "io" }) end
  return kept, prompt, completion
end

--- The outcome recorded for request `id`, or nil.
function Store:outcome(id)
  local st = self.stmt_outcome or self:stmt("outcome", "SELECT outcome FROM requests WHERE custom_id = ?")
  st:bind(id)
  local more = step(self, st)
  local outcome = more and st:row() or nil
  st:reset()
  return outcome
end

--- The number of merged requests.
function Store:request_count()
  local st = prepare(self, "SELECT count(*) FROM requests")
  step(self, st)
  local n = st:row()
  st:finalize()
  return n
end

-- the lock ------------------------------------------------------------------------------------

local held = {} -- the locks this process holds, by path: fcntl locks do not exclude their own process

--- Take the job's lock (`<path>.lock`), for `what` (written in it, with our pid): the lock, or
-- a failure naming the process that holds it.
function store.lock(path, what)
  local lock_path = path .. ".lock"
  if held[lock_path] then
    fail(("the job of %s is running in this process already"):format(path), { kind = "busy" })
  end
  local lock, err, holder = common.sqlite().lock(lock_path, what or "")
  if not lock then
    if holder then
      -- the holder writes its pid just after it took the lock: a moment later it is there
      for _ = 1, 50 do
        if holder:match("^%d+ ") then break end
        core.sleep(0.01)
        local f = io.open(lock_path, "rb")
        holder = f and f:read(256) or ""
        if f then f:close() end
      end
      local pid, note = holder:match("^(%d+) ?(.*)$")
      fail(("the job of %s is running in another process (pid %s%s): wait for it to end, or stop it first")
        :format(path, pid or "unknown", note and note ~= "" and ", " .. note or ""),
        { kind = "busy", pid = tonumber(pid) })
    end
    fail(err, { kind = "io" })
  end
  held[lock_path] = lock
  return function()
    if held[lock_path] == lock then
      held[lock_path] = nil
      lock:release()
    end
  end
end

return store
