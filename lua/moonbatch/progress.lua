--- moonbatch.progress: what the command line draws on standard error while it works.
-- On a terminal, one line redrawn in place (a transfer bar, a batch status) that fits the
-- terminal's width, down to 40 columns and less; elsewhere, plain lines that are written once
-- and never rewritten, so logs and pipes see no carriage returns.
-- @module moonbatch.progress
local printable = require("moonbatch.errors").printable
local progress = {}

local CLEAR_LINE = "\r\27[K"
local REDRAW_EVERY = 0.1 -- seconds between redraws of the same line: at most ~10 a second
local RATE_WINDOW = 3 -- seconds of samples behind the shown rate

--- "512 B", "1.5 KiB", "12.0 MiB", "1.2 GiB".
function progress.bytes(n)
  n = n or 0
  if n < 1024 then return ("%d B"):format(n) end
  local units = { "KiB", "MiB", "GiB", "TiB" }
  local value, unit = n / 1024, 1
  while value >= 1024 and unit < #units do
    value, unit = value / 1024, unit + 1
  end
  return ("%.1f %s"):format(value, units[unit])
end

--- "0:07", "12:34", "1:02:03" for a number of seconds; "--:--" when unknown.
function progress.duration(seconds)
  if not seconds or seconds ~= seconds or seconds < 0 or seconds == math.huge then return "--:--" end
  seconds = math.floor(seconds + 0.5)
  local h, m, s = math.floor(seconds / 3600), math.floor(seconds / 60) % 60, seconds % 60
  if h > 0 then return ("%d:%02d:%02d"):format(h, m, s) end
  return ("%d:%02d"):format(m, s)
end

-- "[#########-----------]" for a fraction in 0..1
local function bar(fraction, width)
  fraction = math.max(0, math.min(1, fraction))
  local full = math.floor(fraction * width + 0.5)
  return "[" .. ("#"):rep(full) .. ("-"):rep(width - full) .. "]"
end

local function percent(fraction)
  return ("%3d%%"):format(math.floor(math.max(0, math.min(1, fraction)) * 100))
end

local MIN_LABEL = 12 -- columns a shortened label keeps before details are dropped instead

-- the first `n` bytes of `s`, or fewer, never cutting a UTF-8 character in two
local function head(s, n)
  if n <= 0 then return "" end
  s = s:sub(1, n)
  return (s:gsub("[\192-\255][\128-\191]*$", function(c)
    local len = c:byte() >= 240 and 4 or c:byte() >= 224 and 3 or 2
    return #c == len and c or ""
  end))
end

-- the last bytes of `s` (at most `n`), starting at a character
local function tail(s, n)
  if n <= 0 then return "" end
  return (s:sub(-n):gsub("^[\128-\191]+", ""))
end

-- `s` in at most `room` columns, its middle cut to "...": the start and the end (a name's
-- extension, an id's last letters) stay
local function cut_middle(s, room)
  if #s <= room then return s end
  if room < 5 then return head(s, room) end
  local keep = room - 3
  local front = math.floor(keep / 2)
  local back = tail(s, keep - front)
  -- "name....jsonl" reads badly: the extension's dot gives its place to the name
  if back:sub(1, 1) == "." then return head(s, front + 1) .. "..." .. back:sub(2) end
  return head(s, front) .. "..." .. back
end

-- a label ("uploading NAME", "batch ID") in at most `room` columns: the name shortened first;
-- the verb goes when fewer than 10 columns would be left for the name
local function shorten(label, room)
  if #label <= room then return label end
  local verb, name = label:match("^(%S+) (.+)$")
  if verb and room - #verb - 1 >= 10 then return verb .. " " .. cut_middle(name, room - #verb - 1) end
  return cut_middle(name or label, room)
end

-- one line in `width` columns: the label, then the parts of the first variant (the richest
-- first) that leaves the label MIN_LABEL columns; else the last variant, with what room is left.
-- So a narrow terminal loses the bar, the rate and the time left before the percent and counts.
local function fit(label, variants, width)
  local rest
  for _, parts in ipairs(variants) do
    rest = "  " .. table.concat(parts, "  ")
    if width - #rest >= math.min(#label, MIN_LABEL) then break end
  end
  local room = width - #rest
  if room < 6 then return head((rest:gsub("^%s+", "")), width) end
  return shorten(label, room) .. rest
end

local Reporter = {}
Reporter.__index = Reporter

--- progress.new{ stream = io.stderr, tty = false, width = 80, clock = os.clock, quiet = false }:
-- a reporter. `tty` chooses redrawn lines over plain ones; `clock` gives seconds (any origin).
function progress.new(opts)
  opts = opts or {}
  return setmetatable({
    stream = opts.stream or io.stderr,
    tty = opts.tty and true or false,
    width = math.max(20, (opts.width or 80) - 1), -- a full line would wrap on some terminals
    clock = opts.clock or os.clock,
    quiet = opts.quiet and true or false,
    redact = opts.redact or tostring, -- the caller's keys out of every text shown
    open = false,   -- whether a redrawn line is on screen without its newline yet
    active = nil,   -- the redrawn line's owner, for tick()
  }, Reporter)
end

-- network text (labels, statuses) as shown: no key, no terminal control sequence
function Reporter:clean(text, keep_lines)
  return printable(self.redact(text), keep_lines)
end

function Reporter:write(s)
  self.stream:write(s)
  self.stream:flush()
end

--- End a redrawn line, if one is open, with a newline.
function Reporter:close_line()
  if self.open then
    self:write("\n")
    self.open = false
  end
  self.active = nil
end

--- A line only where nothing is redrawn (its bar says the same on a terminal).
function Reporter:plain(text)
  if not self.tty then self:line(text) end
end

--- A plain line (a step done, a warning): ends any redrawn line first.
function Reporter:line(text)
  if self.quiet then return end
  self:close_line()
  self:write(self:clean(text, true) .. "\n")
end

-- redraw the open line with `text`
function Reporter:draw(text)
  self:write(CLEAR_LINE .. text)
  self.open = true
end

--- Redraw whatever is on the line now (a status's elapsed time); called while sleeping.
function Reporter:tick()
  if self.active and self.active.tick then self.active:tick() end
end

-- transfers -----------------------------------------------------------------------------------

local Transfer = {}
Transfer.__index = Transfer

--- A transfer of up to `total` bytes (nil when unknown) labelled `label` ("uploading x.jsonl").
-- When `total` is given the bytes shown are scaled to it: an upload's wire total includes its
-- multipart framing, and the user knows the file's size. Plain mode draws nothing: the caller
-- says what starts and what ended in its own lines.
function Reporter:transfer(label, total)
  local t = setmetatable({
    reporter = self, label = self:clean(label), total = total, scale_to = total, done = 0,
    started = self.clock(), drawn_at = nil, samples = {},
  }, Transfer)
  if self.tty and not self.quiet then
    self:close_line()
    self.active = t
    t:draw(self.clock())
  end
  return t
end

-- bytes a second over the last few seconds (the whole transfer at its start)
function Transfer:rate(now)
  local samples = self.samples
  local first = samples[1]
  if not first or now - first.t < 0.2 then
    local elapsed = now - self.started
    return elapsed > 0.2 and self.done / elapsed or nil
  end
  return (self.done - first.done) / (now - first.t)
end

-- the bar's text; `ending` is nil while it runs, "done" or "stopped" for its last drawing
function Transfer:line(now, ending)
  local final = ending == "done"
  local width = self.reporter.width
  local total = self.total and self.total > 0 and self.total or nil
  local rate = self:rate(now)
  local fraction = total and (final and 1 or self.done / total)
  local counts = total and (progress.bytes(final and total or self.done) .. " / " .. progress.bytes(total))
    or progress.bytes(self.done)
  local timing, speed
  if ending then
    timing = (final and "in " or "stopped after ") .. progress.duration(now - self.started)
  else
    speed = rate and (progress.bytes(rate) .. "/s") or "--/s"
    if total then
      local left = rate and rate > 0 and (total - self.done) / rate or nil
      timing = progress.duration(left) .. " left"
    end
  end
  -- from the whole line down to the percent and the counts
  local variants = {}
  local function variant(bar_width, with_speed, with_timing)
    local parts = {}
    if fraction then
      parts[1] = bar_width > 0 and bar(fraction, bar_width) .. " " .. percent(fraction)
        or (percent(fraction):gsub("^%s+", ""))
    end
    parts[#parts + 1] = counts
    if with_speed and speed then parts[#parts + 1] = speed end
    if with_timing and timing then parts[#parts + 1] = timing end
    variants[#variants + 1] = parts
  end
  variant(20, true, true)
  variant(10, true, true)
  variant(0, true, true)
  variant(0, false, true)
  variant(0, false, false)
  return fit(self.label, variants, width)
end

function Transfer:draw(now, ending)
  self.drawn_at = now
  self.reporter:draw(self:line(now, ending))
end

--- `on_progress(done, total)` for the client: redraws at most every `REDRAW_EVERY` seconds.
function Transfer:update(done, total)
  local now = self.reporter.clock()
  if total and total > 0 then
    if self.scale_to then
      done = math.floor(math.min(done, total) * self.scale_to / total)
    else
      self.total = total
    end
  end
  if done < self.done then
    -- a retried transfer starts again from its first byte
    self.samples = {}
    self.started = now
  end
  self.done = done
  -- a sample a tenth of a second at most: callbacks come per chunk, thousands a second
  local samples = self.samples
  local last = samples[#samples]
  if not last or now - last.t >= 0.1 then
    samples[#samples + 1] = { t = now, done = done }
    while #samples > 2 and now - samples[1].t > RATE_WINDOW do table.remove(samples, 1) end
  end
  if not (self.reporter.tty and not self.reporter.quiet) or self.reporter.active ~= self then return end
  if self.drawn_at and now - self.drawn_at < REDRAW_EVERY then return end
  self:draw(now)
end

--- The callback to hand the client as on_progress.
function Transfer:callback()
  return function(done, total) self:update(done, total) end
end

--- End the bar: at 100 % when the transfer succeeded, as it stood when it failed; then a newline.
function Transfer:finish(ok)
  local r = self.reporter
  if r.tty and not r.quiet and r.active == self then
    if ok and not self.total then self.total = self.done end
    self:draw(r.clock(), ok and "done" or "stopped")
    r:close_line()
  end
end

-- statuses ------------------------------------------------------------------------------------

local Status = {}
Status.__index = Status

--- A status line for a batch being waited on: redrawn in place on a terminal (with the time
-- since it started), one plain line per change elsewhere.
function Reporter:status(label)
  local s = setmetatable({ reporter = self, label = self:clean(label), started = self.clock(), text = nil,
                           fraction = nil, last_plain = nil }, Status)
  return s
end

function Status:line(now)
  local variants = {}
  local function variant(bar_width, with_time)
    local parts = { self.text or "" }
    if self.fraction then
      parts[2] = bar_width > 0 and bar(self.fraction, bar_width) .. " " .. percent(self.fraction)
        or (percent(self.fraction):gsub("^%s+", ""))
    end
    if with_time then parts[#parts + 1] = progress.duration(now - self.started) end
    variants[#variants + 1] = parts
  end
  variant(20, true)
  variant(10, true)
  variant(0, true)
  variant(0, false)
  return fit(self.label, variants, self.reporter.width)
end

--- Show `text` (the status and counts) and, when known, the fraction done (0..1).
-- `plain` is the line for a log; it is written only when it differs from the last one.
function Status:update(text, fraction, plain)
  local r = self.reporter
  self.text, self.fraction = text and r:clean(text), fraction
  plain = plain and r:clean(plain)
  if r.quiet then return end
  if r.tty then
    if r.active ~= self then
      r:close_line()
      r.active = self
    end
    r:draw(self:line(r.clock()))
  elseif plain ~= self.last_plain then
    self.last_plain = plain
    r:write(plain .. "\n")
  end
end

function Status:tick()
  local r = self.reporter
  if r.tty and not r.quiet and r.active == self then r:draw(self:line(r.clock())) end
end

--- End the status line with a newline (on a terminal; plain lines end themselves).
function Status:finish()
  local r = self.reporter
  if r.active == self then r:close_line() end
end

return progress
