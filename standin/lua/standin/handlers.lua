-- The handlers the dialects share, and the router over a dialect's route list.
--
-- Fetching, deleting and downloading a file, fetching and cancelling a batch are the same steps
-- in every provider's API; only the shapes differ. A dialect lists its routes as data
--
--   M.route = handlers.router(shapes, {
--     ["/files"] = { POST = handlers.multipart(upload), GET = list_files },
--     ["/files/{id}"] = { GET = "get_file", DELETE = "delete_file" },
--   })
--
-- where a value is its own handler, the name of a shared one below, or a route table (see
-- common.router); `shapes` is what the shared handlers render and answer with:
--   file(record), no_file(id), deleted(record)          the file endpoints' objects and 404
--   batch(b), no_batch(id), cannot_cancel(b, view)      the batch endpoints' (cannot_cancel
--                                                        absent: a cancel always answers the batch)
--   text_content = true                                 downloads are sent as text/plain
local common = require("standin.common")
local lifecycle = require("standin.lifecycle")

local M = {}

-- name -> function(shapes, req) -> reply
local SHARED = {}
-- the shared handlers that send a file's bytes (nginx serves them: see common.serve)
local DOWNLOADS = { file_content = true }

-- The record the path's id names (find: common.file or common.batch), or nil and missing's 404.
local function lookup(req, find, missing)
  local record = find(req.instance, req.params.id)
  if record then return record end
  return nil, missing(req.params.id)
end

-- GET of one record: its object (shapes[render]), or the 404 (shapes[missing]).
local function getter(find, missing, render)
  return function(shapes, req)
    local record, none = lookup(req, find, shapes[missing])
    return none or common.json_reply(200, shapes[render](record))
  end
end

SHARED.get_file = getter(common.file, "no_file", "file")
SHARED.get_batch = getter(common.batch, "no_batch", "batch")

-- A result file appears only once its batch has ended (lifecycle.available).
function SHARED.file_content(shapes, req)
  local record = common.file(req.instance, req.params.id)
  if not record or not lifecycle.available(record) then return shapes.no_file(req.params.id) end
  return common.file_reply(record, shapes.text_content)
end

function SHARED.delete_file(shapes, req)
  local record, none = lookup(req, common.file, shapes.no_file)
  if none then return none end
  common.delete_file(record)
  return common.json_reply(200, shapes.deleted(record))
end

function SHARED.cancel_batch(shapes, req)
  local b, none = lookup(req, common.batch, shapes.no_batch)
  if none then return none end
  local ok, v = lifecycle.cancel(b)
  if not ok and shapes.cannot_cancel then return shapes.cannot_cancel(b, v) end
  return common.json_reply(200, shapes.batch(b))
end

-- The route of the shared handler `name`, answering with `shapes`.
local function shared(name, shapes)
  local handle = assert(SHARED[name], "no shared handler " .. name)
  return { download = DOWNLOADS[name], handle = function(req) return handle(shapes, req) end }
end

--- A route whose body is a multipart form (read into req.body.form).
function M.multipart(handle)
  return { body = "multipart", handle = handle }
end

--- A route whose body is JSON (req.body.value).
function M.json(handle)
  return { body = "json", handle = handle }
end

--- common.router over `routes` (path -> { METHOD = handler | shared name | route }).
function M.router(shapes, routes)
  local flat = {}
  for path, methods in pairs(routes) do
    for method, route in pairs(methods) do
      if type(route) == "string" then
        route = shared(route, shapes)
      elseif type(route) == "function" then
        route = { handle = route }
      end
      flat[method .. " " .. path] = route
    end
  end
  return common.router(flat)
end

return M
