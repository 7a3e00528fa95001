--- moonbatch.cli.url: what the command line accepts as a base URL (`--base-url`, `MOONBATCH_BASE_URL`).
-- A bad one is the user's typing, so the command stops with a usage error that says what is
-- wrong, before any key is read or byte sent. The rule about plain HTTP to another host stays
-- the library's (`moonbatch.new` refuses it unless `allow_http`); this adds what the library
-- would only find later, or never: no host, a user name or password, a query or fragment.
-- @module moonbatch.cli.url
local url = {}

--- The URL as it may be shown: its user name and password (if any) hidden behind stars.
-- @tparam string s a base URL as given
-- @treturn string
function url.shown(s)
  return (s:gsub("^(%a[%w+.-]*://)[^/?#]*@", "%1***@"))
end

--- Why `s` is not a usable base URL, or nil when it is one.
-- @tparam string s the URL as given
-- @treturn ?string the reason, one clause naming what is wrong
function url.problem(s)
  if s == "" then return "it is empty" end
  if s:find("[%c%s]") then return ("'%s' contains a space or a control character"):format(url.shown(s):gsub("%c", "?")) end
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return ("'%s' is not a URL (expected https://HOST/PATH, e.g. https://api.example.com/v1)"):format(s)
  end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return ("'%s' is not an http(s) URL"):format(s)
  end
  local authority = rest:match("^[^/?#]*")
  if authority:find("@", 1, true) then
    -- not repeated as given: the password may be the API key itself
    return ("'%s' carries a user name or password: the key goes in the provider's variable " ..
            "or --key-file, never in the URL"):format(url.shown(s))
  end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([^%]]*)%](.*)$")
    if not host then return ("'%s' has a bad IPv6 address"):format(s) end
  else
    host, port = authority:match("^([^:]*)(.*)$")
  end
  if host == "" then return ("'%s' has no host"):format(s) end
  if port ~= "" then
    local digits = port:match("^:(%d+)$")
    if not digits or tonumber(digits) < 1 or tonumber(digits) > 65535 then
      return ("'%s' has a bad port"):format(s)
    end
  end
  if rest:find("[?#]") then
    return ("'%s' has a query or fragment: give the API's base only (e.g. https://api.example.com/v1)"):format(s)
  end
  return nil
end

return url
