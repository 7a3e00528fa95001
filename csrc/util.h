/* util.h: moonbatch.core's own small helpers, shared by its files: a stable stack index, the one
 * producer of "cannot read 'PATH': REASON", and the metatable of a userdata type. */
#ifndef MOONBATCH_UTIL_H
#define MOONBATCH_UTIL_H

#include <stdio.h>
#include <string.h>

#include "compat.h"

/* a stack index that stays valid while the stack grows; pseudo-indices are left alone */
#define util_absindex(L, i) ((i) < 0 && (i) > LUA_REGISTRYINDEX ? lua_gettop(L) + (i) + 1 : (i))

/* room for a message naming a path: any path the system can open (PATH_MAX is 4096 on Linux)
 * and its reason; a longer one is cut */
#define UTIL_MESSAGE_SIZE (4096 + 256)

/* "cannot read 'PATH': REASON" into buf (n bytes), REASON strerror(e), or `why` when e is 0;
 * every such message of the C side is made here. Returns buf. */
static inline const char *util_read_message(char *buf, size_t n, const char *path, int e,
                                            const char *why)
{
    snprintf(buf, n, "cannot read '%s': %s", path, e ? strerror(e) : why ? why : "unknown error");
    return buf;
}

/* a runtime failure: pushes nil, msg and {kind =, message = msg} (on the stack top, for the
 * caller to add to); returns 3 */
static inline int util_failure(lua_State *L, const char *kind, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    return 3;
}

/* a failure on a file: util_failure's, with path = path[, errno = e] */
static inline int util_file_failure(lua_State *L, const char *kind, const char *path,
                                    const char *msg, int e)
{
    util_failure(L, kind, msg);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    if (e) {
        lua_pushinteger(L, e);
        lua_setfield(L, -2, "errno");
    }
    return 3;
}

/* a file that cannot be read: pushes nil, "cannot read 'PATH': REASON" and
 * {kind =, path =, message =[, errno =]}; REASON is strerror(e), or `why` when e is 0 */
static inline int util_read_failure(lua_State *L, const char *path, const char *kind, int e,
                                    const char *why)
{
    char buf[UTIL_MESSAGE_SIZE];
    return util_file_failure(L, kind, path, util_read_message(buf, sizeof buf, path, e, why), e);
}

/* the metatable of a userdata type with methods: `methods` (closing over the `nup` values
 * below them on the stack, which stay there) in __index, `close` as __gc and, on 5.4, __close,
 * and `tostring` as __tostring when given */
static inline void util_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, int nup,
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
