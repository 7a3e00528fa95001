/* compat.h: the few Lua 5.2+ API calls moonbatch.core uses, for the Lua 5.1 ABI (LuaJIT, 5.1). */
#ifndef MOONBATCH_COMPAT_H
#define MOONBATCH_COMPAT_H

#include <string.h>

#include "lua.h"
#include "lauxlib.h"

/* a stack index that stays valid while the stack grows; pseudo-indices are left alone */
#define compat_absindex(L, i) ((i) < 0 && (i) > LUA_REGISTRYINDEX ? lua_gettop(L) + (i) + 1 : (i))

#if LUA_VERSION_NUM < 502

#define lua_rawlen(L, i) lua_objlen((L), (i))

/* LuaJIT 2.1's lauxlib.h defines luaL_newlib and provides luaL_setfuncs, luaL_testudata and
 * luaL_setmetatable; plain Lua 5.1 has none of them. */
#if !defined(luaL_newlib)
#define luaL_newlibtable(L, l) lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#define luaL_setfuncs compat_setfuncs
#define luaL_testudata compat_testudata
#define luaL_setmetatable compat_setmetatable

static inline void compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

static inline void *compat_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2))
        p = NULL;
    lua_pop(L, 2);
    return p;
}

static inline void compat_setmetatable(lua_State *L, const char *tname)
{
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}
#endif /* !luaL_newlib */

#endif /* LUA_VERSION_NUM < 502 */

/* a file that cannot be read: pushes nil, "cannot read 'PATH': REASON" and
 * {kind =, path =, message =[, errno =]}; REASON is strerror(e), or `why` when e is 0 */
static inline int compat_read_failure(lua_State *L, const char *path, const char *kind, int e,
                                      const char *why)
{
    const char *msg;
    lua_pushnil(L);
    msg = lua_pushfstring(L, "cannot read '%s': %s", path, e ? strerror(e) : why);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    if (e) {
        lua_pushinteger(L, e);
        lua_setfield(L, -2, "errno");
    }
    return 3;
}

/* the metatable of a userdata type with methods: `methods` (closing over the `nup` values
 * below them on the stack, which stay there) in __index, `close` as __gc and, on 5.4, __close,
 * and `tostring` as __tostring when given */
static inline void compat_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, int nup,
                                   lua_CFunction close, lua_CFunction tostring)
{
    int i;
    luaL_newmetatable(L, tname);
    lua_newtable(L);
    for (i = 0; i < nup; i++)
        lua_pushvalue(L, -2 - nup);
    luaL_setfuncs(L, methods, nup);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
#endif
    if (tostring != NULL) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

#endif
