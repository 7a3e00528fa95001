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

-- name -> function(shapes) -> route
local SHARED = {}

-- The record the path's id names (find: common.file or common.batch), or nil and missing's 404.
local function lookup(req, find, missing)
  local record = find(req.instance, req.params.id)
  if record then return record end
  return nil, missing(req.params.id)
end

function SHARED.get_file(shapes)
  return { handle = function(req)
    local record, none = lookup(req, common.file, shapes.no_file)
    return none or common.json_reply(200, shapes.file(record))
  end }
end

function SHARED.delete_file(shapes)
  return { handle = function(req)
    local record, none = lookup(req, common.file, shapes.no_file)
    if none then return none end
    common.delete_file(record)
    return common.json_reply(200, shapes.deleted(record))
  end }
end

-- A result file appears only once its batch has ended (lifecycle.available).
function SHARED.file_content(shapes)
  return { download = true, handle = function(req)
    local record = common.file(req.instance, req.params.id)
    if not record or not lifecycle.available(record) then return shapes.no_file(req.params.id) end
    return common.file_reply(record, shapes.text_content)
  end }
end

function SHARED.get_batch(shapes)
  return { handle = function(req)
    local b, none = lookup(req, common.batch, shapes.no_batch)
    return none or common.json_reply(200, shapes.batch(b))
  end }
end

function SHARED.cancel_batch(shapes)
  return { handle = function(req)
    local b, none = lookup(req, common.batch, shapes.no_batch)
    if none then return none end
    local ok, v = lifecycle.cancel(b)
    if not ok and shapes.cannot_cancel then return shapes.cannot_cancel(b, v) end
    return common.json_reply(200, shapes.batch(b))
  end }
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
        route = assert(SHARED[route], "no shared handler " .. route)(shapes)
      elseif type(route) == "function" then
        route = { handle = route }
      end
      flat[method .. " " .. path] = route
    end
  end
  return common.router(flat)
end

return M
