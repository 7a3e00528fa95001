--- moonbatch.retry: when a failed attempt is tried again, and how long to wait first.
-- @module moonbatch.retry
local objects = require("moonbatch.objects")

local retry = {}

retry.max_wait = 120 -- seconds: a longer Retry-After ends the call instead of waiting

local retried_status = { [408] = true, [409] = true, [429] = true }

--- Is a failure worth another attempt? `info` is the failure's info table, `headers` the reply's.
-- @tparam table info
-- @tparam ?table headers
-- @treturn boolean
function retry.retryable(info, headers)
  local override = headers and headers["x-should-retry"]
  if override == "true" then return true end
  if override == "false" then return false end
  if info.kind == "network" or info.kind == "timeout" then return true end
  local status = info.status
  if status and (retried_status[status] or status >= 500) then return true end
  return info.provider_retryable == true
end

local months = {
  Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12,
}

--- Unix seconds of an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT"), or nil.
-- @tparam string s
-- @treturn ?number
function retry.http_date(s)
  local d, mon, y, h, mi, sec = s:match("^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not months[mon] then return nil end
  return objects.unix_time(("%s-%02d-%02dT%s:%s:%sZ"):format(y, months[mon], tonumber(d), h, mi, sec))
end

--- Seconds the server asked us to wait, from retry-after-ms or retry-after; nil if it did not.
-- @tparam ?table headers
-- @tparam[opt] number now Unix seconds (default: now), for an HTTP date
-- @treturn ?number seconds
function retry.server_wait(headers, now)
  if not headers then return nil end
  local ms = tonumber(headers["retry-after-ms"])
  if ms and ms >= 0 then return ms / 1000 end
  local ra = headers["retry-after"]
  if not ra then return nil end
  local seconds = tonumber(ra)
  if seconds then return seconds >= 0 and seconds or nil end
  local at = retry.http_date(ra)
  if at then return math.max(0, at - (now or os.time())) end
  return nil
end

--- The wait before retry n (0-based): the server's demand if any, else min(0.5 * 2^n, 8) less a
-- random 0-25 %. Returns the wait, or nil and the demanded wait when it exceeds retry.max_wait.
-- @tparam integer n
-- @tparam ?table headers
-- @tparam function random the jitter, as `math.random`
-- @tparam[opt] number now
-- @treturn ?number the wait, or nil
-- @treturn ?number the demanded wait, when it is too long
function retry.wait(n, headers, random, now)
  local demanded = retry.server_wait(headers, now)
  if demanded then
    if demanded > retry.max_wait then return nil, demanded end
    return demanded
  end
  local base = math.min(0.5 * 2 ^ n, 8)
  return base * (1 - 0.25 * random())
end

return retry
