-- spec/docs_spec.lua: the API reference. LDoc runs on this checkout (as `make docs` runs it) into a
-- temporary folder, with no warning; its pages hold every module under lua/moonbatch (a new one
-- included without an edit), moonbatch.core, and every public operation by name, moonbatch.new
-- with every option of the README's option table; nothing refers to a file outside the
-- repository; the README links the reference.
local shell = require("spec.support.shell")
local quote, capture, read_file, tmpdir = shell.quote, shell.capture, shell.read_file, shell.tmpdir

-- the anchors (documented names) of a page
local function anchors(page)
  local names = {}
  for name in page:gmatch('<a name = "([^"]+)"') do names[name] = true end
  return names
end

-- the parameter names of a page's entry `name` (up to the next entry)
local function parameters(page, name)
  local from = page:find('<a name = "' .. name .. '"', 1, true)
  if not from then return {} end
  local to = page:find('<a name = "', from + 1, true) or #page
  local found = {}
  for p in page:sub(from, to):gmatch('<span class="parameter">([^<]+)</span>') do found[p] = true end
  return found
end

describe("the API reference (LDoc)", function()
  local dir, output, ldoc_path

  setup(function()
    ldoc_path = capture("command -v ldoc 2>/dev/null"):gsub("%s+$", "")
    assert(ldoc_path ~= "", "ldoc is not installed (make docs installs lua-ldoc)")
    dir = tmpdir()
    output = capture(("lua5.1 %s -d %s . 2>&1"):format(quote(ldoc_path), quote(dir .. "/docs")))
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. quote(dir)) end
  end)

  local function page(module)
    local text = read_file(("%s/docs/modules/%s.html"):format(dir, module))
    assert.is_not_nil(text, "no page for " .. module .. "\n" .. output)
    return text
  end

  it("is made without a warning", function()
    local others = {}
    for line in output:gmatch("[^\n]+") do
      if not (line == "reading configuration from config.ld" or line:find("^output written to ")) then
        others[#others + 1] = line
      end
    end
    assert.same({}, others)
    assert.matches("output written to ", output)
  end)

  it("has a page for every module under lua/moonbatch, and for moonbatch.core", function()
    local modules = { "moonbatch.core" }
    for path in capture("find lua/moonbatch -name '*.lua' | sort"):gmatch("[^\n]+") do
      local name = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      modules[#modules + 1] = name
    end
    assert.is_true(#modules > 20)
    for _, name in ipairs(modules) do
      page(name)
    end
    -- the stand-in's Lua API, when the checkout has it
    if read_file("lua/moonbatch/standin.lua") or read_file("lua/moonbatch/standin/init.lua") then
      assert.is_true(next(anchors(page("moonbatch.standin"))) ~= nil, "moonbatch.standin documents nothing")
    end
  end)

  it("documents every operation of the client by name", function()
    local names = anchors(page("moonbatch.client"))
    for _, op in ipairs({ "files.upload", "files.list", "files.each", "files.get", "files.delete",
                          "files.download", "files.upload_many", "batches.create", "batches.get",
                          "batches.list", "batches.each", "batches.cancel", "batches.wait", "close" }) do
      assert.is_true(names[op], op .. " is not in the reference")
    end
    local client = page("moonbatch.client")
    for _, opt in ipairs({ "file", "purpose", "filename", "on_progress", "validate" }) do
      assert.is_true(parameters(client, "files.upload")[opt], "files.upload: " .. opt)
    end
    for _, opt in ipairs({ "input_file_id", "endpoint", "completion_window", "metadata", "replace" }) do
      assert.is_true(parameters(client, "batches.create")[opt], "batches.create: " .. opt)
    end
    for _, opt in ipairs({ "interval", "max_interval", "timeout", "on_update" }) do
      assert.is_true(parameters(client, "batches.wait")[opt], "batches.wait: " .. opt)
    end
  end)

  it("documents moonbatch.new with every option of the README's table", function()
    local top = page("moonbatch")
    local names = anchors(top)
    for _, f in ipairs({ "new", "validate", "concurrently" }) do assert.is_true(names[f], f) end
    local readme = assert(read_file("README.md"))
    local tbl = assert(readme:match("\n### Client options\n(.-)\n\n[^|]"), "README: no Client options table")
    local documented = parameters(top, "new")
    local count = 0
    for row in tbl:gmatch("[^\n]+") do
      local cell = row:match("^| ([^|]+) |")
      if cell and cell:find("`", 1, true) then
        for opt in cell:gmatch("`([%w_]+)`") do
          count = count + 1
          assert.is_true(documented[opt], "moonbatch.new: option " .. opt .. " is not documented")
        end
      end
    end
    assert.is_true(count >= 17, "the README's table has " .. count .. " options")
    for _, opt in ipairs({ "provider", "endpoint", "replace_model" }) do
      assert.is_true(parameters(top, "validate")[opt], "moonbatch.validate: " .. opt)
    end
    assert.is_true(parameters(top, "concurrently").concurrency)
  end)

  it("documents moonbatch.core, moonbatch.ngx, moonbatch.nvim and moonbatch.job", function()
    local core = anchors(page("moonbatch.core"))
    for _, f in ipairs({ "request", "files.upload", "files.list", "batches.create", "session", "multi",
                         "validate", "checksum", "now", "time", "sleep", "version", "curl_version" }) do
      assert.is_true(core[f], "moonbatch.core: " .. f)
    end
    assert.is_true(anchors(page("moonbatch.ngx")).new)
    local nvim = anchors(page("moonbatch.nvim"))
    assert.is_true(nvim.new and nvim.run and nvim.pending)
    local job = anchors(page("moonbatch.job"))
    for _, f in ipairs({ "run", "status", "cancel", "retry_failed" }) do assert.is_true(job[f], "job." .. f) end
    local job_page = page("moonbatch.job")
    for _, opt in ipairs({ "input", "results", "concurrency", "max_lines", "on_event" }) do
      assert.is_true(parameters(job_page, "run")[opt], "job.run: " .. opt)
    end
  end)

  it("refers to no file outside the repository", function()
    local pages = capture(("find %s/docs -name '*.html'"):format(quote(dir)))
    for path in pages:gmatch("[^\n]+") do
      local text = read_file(path)
      assert.is_nil(text:find("CONTRACT", 1, true), path)
      assert.is_nil(text:find("provider-apis", 1, true), path)
      assert.is_nil(text:find("§", 1, true), path)
    end
  end)

  it("is linked from the README, with the command that makes it", function()
    local readme = assert(read_file("README.md"))
    assert.matches("make docs", readme, 1, true)
    assert.matches("build/docs/index.html", readme, 1, true)
  end)
end)
