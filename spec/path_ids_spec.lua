-- spec/path_ids_spec.lua: an id is one path segment (issue 13, item 5). The dot segments "." and
-- ".." are refused (a server resolves them even percent-encoded), the empty id too; every other
-- byte outside RFC 3986's unreserved set is percent-encoded; libcurl sends the path as it is
-- (CURLOPT_PATH_AS_IS). The stand-in's log shows the request line exactly as received.
local moonbatch = require("moonbatch")
local fixture = require("spec.support.fixture")

local KEY = "sk-standin"

describe("ids in paths", function()
  local s, c, dir

  fixture.standin({ key = KEY, dir = true }, function(new_s, new_dir) s, dir = new_s, new_dir end)
  before_each(function()
    -- no waits: a download's 404 grace then ends at once
    local now = 0
    c = moonbatch.new({ base_url = s.urls.siliconflow, api_key = KEY, max_retries = 0,
                        clock = function() now = now + 1000; return now end, sleep = function() end })
  end)

  -- every operation that puts an id into a path, and the path's shape around the id
  local ops = {
    { "files.get", function(id) return c.files.get(id) end, "GET", "/siliconflow/v1/files/%s" },
    { "files.delete", function(id) return c.files.delete(id) end, "DELETE", "/siliconflow/v1/files/%s" },
    { "files.download", function(id) return c.files.download(id, dir .. "/out.jsonl") end, "GET",
      "/siliconflow/v1/files/%s/content" },
    { "batches.get", function(id) return c.batches.get(id) end, "GET", "/siliconflow/v1/batches/%s" },
    { "batches.cancel", function(id) return c.batches.cancel(id) end, "POST", "/siliconflow/v1/batches/%s/cancel" },
    { "batches.wait", function(id) return c.batches.wait(id, { timeout = 0 }) end, "GET", "/siliconflow/v1/batches/%s" },
  }

  for _, op in ipairs(ops) do
    local name, call, method, shape = op[1], op[2], op[3], op[4]

    for _, id in ipairs({ ".", "..", "" }) do
      it(("%s refuses the id '%s' before sending anything"):format(name, id), function()
        assert.has_error(function() call(id) end)
        local ok, err = pcall(call, id)
        assert.is_false(ok)
        assert.matches("bad argument #1 'id'", tostring(err), 1, true)
        assert.matches(name, tostring(err), 1, true)
        assert.same({}, s:log())
      end)
    end

    -- the id, and the exact segment the server must receive for it
    local sent = {
      { "a/../b", "a%2F..%2Fb" }, { "./x", ".%2Fx" }, { "x/..", "x%2F.." }, { "../x", "..%2Fx" },
      { "%2e%2e", "%252e%252e" }, { "%2E", "%252E" }, { "?x", "%3Fx" }, { "#x", "%23x" },
      { "...", "..." }, { ".x", ".x" }, { "a b", "a%20b" }, { "é", "%C3%A9" }, { "a\\..", "a%5C.." },
      { "file-abc_1.~", "file-abc_1.~" },
    }
    for _, case in ipairs(sent) do
      it(("%s sends the id %q as one segment, %s"):format(name, case[1], case[2]), function()
        call(case[1])
        local log = s:log()
        assert.is_true(#log >= 1) -- a download waits out a result's 404s: each the same request
        for _, entry in ipairs(log) do
          assert.equal(method, entry.method)
          assert.equal(shape:format(case[2]), entry.request_uri)
        end
      end)
    end
  end

  it("keeps '/../' in a path as sent (CURLOPT_PATH_AS_IS): libcurl does not squash it", function()
    local core = require("moonbatch.core")
    core.request({ url = s.urls.siliconflow .. "/files/../x/./y", headers = { Authorization = "Bearer " .. KEY } })
    local log = s:log()
    assert.equal(1, #log)
    assert.equal("/siliconflow/v1/files/../x/./y", log[1].request_uri)
  end)
end)
