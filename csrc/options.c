/* options.c: reading Lua option tables with errors that name the option. */
#include <string.h>

#include "compat.h"
#include "options.h"

void options_check_known(lua_State *L, int idx, const char *const known[], const char *who)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int i;
        const char *key;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", who);
        key = lua_tostring(L, -1);
        for (i = 0; known[i] != NULL; i++)
            if (strcmp(key, known[i]) == 0)
                break;
        if (known[i] == NULL)
            luaL_error(L, "%s: unknown option '%s'", who, key);
    }
}

int options_get(lua_State *L, int idx, const char *name, int type, const char *who)
{
    int got;
    lua_getfield(L, idx, name);
    got = lua_type(L, -1);
    if (got != LUA_TNIL && got != type)
        luaL_error(L, "%s: bad option '%s' (%s expected, got %s)", who, name,
                   lua_typename(L, type), luaL_typename(L, -1));
    return got != LUA_TNIL;
}

const char *options_string(lua_State *L, int idx, const char *name, int required, const char *who)
{
    const char *s = NULL;
    if (options_get(L, idx, name, LUA_TSTRING, who))
        s = lua_tostring(L, -1);
    else if (required)
        luaL_error(L, "%s: missing option '%s' (a string)", who, name);
    lua_pop(L, 1);
    return s;
}

double options_number(lua_State *L, int idx, const char *name, double dflt, const char *who)
{
    double v = dflt;
    if (options_get(L, idx, name, LUA_TNUMBER, who)) {
        v = (double)lua_tonumber(L, -1);
        if (!(v >= 0))
            luaL_error(L, "%s: bad option '%s' (a number >= 0 expected)", who, name);
    }
    lua_pop(L, 1);
    return v;
}
