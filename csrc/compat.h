/* compat.h: the few Lua 5.2+ API calls moonbatch.core uses, for the Lua 5.1 ABI (LuaJIT, 5.1). */
#ifndef MOONBATCH_COMPAT_H
#define MOONBATCH_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

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

#endif
