/* options.c: reading Lua option tables with errors that name the option. */
#include <stdio.h>
#include <string.h>

#include "util.h"
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

/* ** a number for a message: 16 significant digits (2^53 whole), NaN named */
static const char *number_text(char *buf, size_t size, double v)
{
    if (v != v)
        return "NaN";
    snprintf(buf, size, "%.16g", v);
    return buf;
}

double options_range(lua_State *L, int idx, const char *name, double dflt, double min, double max,
                     const char *who)
{
    double v = dflt;
    if (options_get(L, idx, name, LUA_TNUMBER, who)) {
        v = (double)lua_tonumber(L, -1);
        /* written so that NaN fails too: it compares false with everything */
        if (!(v >= min && v <= max)) {
            char a[32], b[32], c[32];
            luaL_error(L, "%s: bad option '%s' (a number from %s to %s expected, got %s)", who, name,
                       number_text(a, sizeof a, min), number_text(b, sizeof b, max),
                       number_text(c, sizeof c, v));
        }
    }
    lua_pop(L, 1);
    return v;
}

int options_sorted_keys(lua_State *L, int idx, const char *who, const char *what, int numbers)
{
    int names;
    idx = util_absindex(L, idx);
    lua_newtable(L);
    names = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int vt = lua_type(L, -1);
        if (lua_type(L, -2) != LUA_TSTRING || !(vt == LUA_TSTRING || (numbers && vt == LUA_TNUMBER)))
            luaL_error(L, "%s: bad option '%s' (string names and %s values expected)", who, what,
                       numbers ? "string or number" : "string");
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, names, (int)lua_rawlen(L, names) + 1);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_remove(L, -2);
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);
    return names;
}

/* ** push one query piece: "?name=value" (the first) or "&name=value", percent-encoded */
static void push_query_piece(lua_State *L, int first, const char *name, int value_idx)
{
    static const char hex[] = "0123456789ABCDEF";
    char number[64];
    const unsigned char *p;
    luaL_Buffer b;
    if (lua_type(L, value_idx) == LUA_TNUMBER) {
        /* integral numbers without Lua 5.4's ".0" (lua-cjson and 5.4 floats) */
        lua_Number n = lua_tonumber(L, value_idx);
        if (n >= -9e15 && n <= 9e15 && n == (lua_Number)(long long)n)
            snprintf(number, sizeof number, "%lld", (long long)n);
        else
            snprintf(number, sizeof number, "%.17g", (double)n);
        p = (const unsigned char *)number;
    } else {
        p = (const unsigned char *)lua_tostring(L, value_idx);
    }
    luaL_buffinit(L, &b);
    luaL_addchar(&b, first ? '?' : '&');
    luaL_addstring(&b, name);
    luaL_addchar(&b, '=');
    for (; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
            || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            luaL_addchar(&b, (char)*p);
        } else {
            luaL_addchar(&b, '%');
            luaL_addchar(&b, hex[*p >> 4]);
            luaL_addchar(&b, hex[*p & 15]);
        }
    }
    luaL_pushresult(&b);
}

void options_push_query(lua_State *L, int idx, int first, const char *who)
{
    int names, i, n;
    idx = util_absindex(L, idx);
    names = options_sorted_keys(L, idx, who, "query", 1);
    n = (int)lua_rawlen(L, names);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, names, i);
        lua_pushvalue(L, -1);
        lua_gettable(L, idx);
        push_query_piece(L, first && i == 1, lua_tostring(L, -2), lua_gettop(L));
        lua_replace(L, -3); /* the piece takes the name's place; the value goes */
        lua_pop(L, 1);
    }
    lua_remove(L, names);
    lua_concat(L, n);
}
