-- spec/objects_spec.lua: canonical objects from decoded replies (moonbatch.objects).
local cjson = require("cjson")
local objects = require("moonbatch.objects")

describe("moonbatch.objects", function()
  describe("clean", function()
    it("drops cjson.null at every depth and keeps other values", function()
      local t = objects.clean({ a = cjson.null, b = { c = cjson.null, d = "x" }, e = { 1, 2 } })
      assert.is_nil(t.a)
      assert.is_nil(t.b.c)
      assert.equal("x", t.b.d)
      assert.same({ 1, 2 }, t.e)
    end)

    it("turns integral floats into integers where the Lua has them", function()
      local t = objects.clean(cjson.decode('{"bytes": 8509, "p": 12.5}'))
      assert.equal(8509, t.bytes)
      assert.equal("8509", tostring(t.bytes))
      assert.equal(12.5, t.p)
    end)
  end)

  describe("unix_time", function()
    local cases = {
      { 1741685396, 1741685396 },
      { "1741685396", 1741685396 },
      { "2024-01-15T15:30:00Z", 1705332600 },
      { "2024-01-15T15:30:00.123456Z", 1705332600 },
      { "2024-01-15T17:30:00+02:00", 1705332600 },
      { "1970-01-01T00:00:00Z", 0 },
      { "2000-02-29T00:00:00Z", 951782400 },
      { "yesterday", nil },
      { "2024-01-15T15:30:00 PST", nil },
    }
    for _, case in ipairs(cases) do
      it(("reads %s"):format(tostring(case[1])), function()
        assert.equal(case[2], objects.unix_time(case[1]))
      end)
    end
  end)

  it("makes a File from SiliconFlow's upload object (createdAt)", function()
    local f = objects.file(cjson.decode([[{"id":"file-jkvytbjtow","object":"file","bytes":8509,
      "createdAt":1741685396,"filename":"requests.jsonl","purpose":"batch"}]]))
    assert.same({ id = "file-jkvytbjtow", object = "file", bytes = 8509, created_at = 1741685396,
                  filename = "requests.jsonl", purpose = "batch" },
                { id = f.id, object = f.object, bytes = f.bytes, created_at = f.created_at,
                  filename = f.filename, purpose = f.purpose })
    assert.equal("file-jkvytbjtow", f.raw.id)
  end)

  it("makes a Batch with every time, no nulls, errors as a list", function()
    local b = objects.batch(cjson.decode([[{"id":"batch_rdyqgrcgjg","object":"batch",
      "endpoint":"/v1/chat/completions","errors":["bad line"],"input_file_id":"file-x",
      "completion_window":"24h","status":"in_queue","output_file_id":null,"created_at":1741685413,
      "expires_at":1741771813,"request_counts":{"total":3,"completed":1,"failed":0},
      "metadata":{"description":"nightly eval job"}}]]))
    assert.equal("batch", b.object)
    assert.equal("in_queue", b.status)
    assert.is_nil(b.output_file_id)
    assert.equal(1741771813, b.expires_at)
    assert.same({ total = 3, completed = 1, failed = 0 }, b.request_counts)
    assert.same({ { message = "bad line" } }, b.errors)
    assert.same({ description = "nightly eval job" }, b.metadata)
  end)

  it("reads empty request_counts ({} or null) as nil", function()
    assert.is_nil(objects.batch(cjson.decode('{"id":"b","request_counts":{}}')).request_counts)
    assert.is_nil(objects.batch(cjson.decode('{"id":"b","request_counts":null}')).request_counts)
  end)

  it("makes a Page with first and last ids", function()
    local p = objects.page({ { id = "a" }, { id = "b" } }, false)
    assert.same({ object = "list", data = { { id = "a" }, { id = "b" } }, has_more = false,
                  first_id = "a", last_id = "b" }, p)
    assert.is_nil(objects.page({}, false).first_id)
  end)
end)
