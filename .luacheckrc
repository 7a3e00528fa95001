-- luacheck settings: Lua 5.1 through 5.4 and LuaJIT; busted globals in specs.
std = "max"
max_line_length = 150
files["spec/"] = { std = "+busted" }
files["standin/lua/"] = { globals = { "ngx" } }
exclude_files = { "build/", ".luarocks-tree/", "node_modules/" }
-- the host adapters and their scripts run inside Neovim and OpenResty
files["lua/moonbatch/nvim.lua"] = { read_globals = { "vim" } }
files["spec/hosts/"] = { read_globals = { "vim", "ngx" } }
files["lua/moonbatch/ngx.lua"] = { read_globals = { "ngx" } }
