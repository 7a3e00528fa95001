/* reply.c: raw reply to Lua values: header block to a table, JSON body decoded via lua-cjson. */
#include <ctype.h>
#include <string.h>

#include "compat.h"
#include "reply.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ** push header `name` lower-cased; set it in the table at -2 (joining repeats with ", ") */
static void set_header(lua_State *L, const char *name, size_t nlen, const char *val, size_t vlen)
{
    char lower[128];
    size_t i;
    if (nlen == 0 || nlen >= sizeof lower)
        return; /* an absurd header name is dropped, not an error */
    for (i = 0; i < nlen; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lua_pushlstring(L, lower, nlen);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, val, vlen);
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
        lua_pushlstring(L, val, vlen);
    }
    lua_rawset(L, -3);
}

/* ** push a table of the header lines in head[0..len) (status lines are skipped) */
static void push_headers(lua_State *L, const char *head, size_t len)
{
    const char *p = head, *end = head + len;
    lua_newtable(L);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && !(line_end - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
            const char *name_end = colon, *v = colon + 1, *v_end = line_end;
            while (name_end > p && is_space(name_end[-1]))
                name_end--;
            while (v < v_end && is_space(*v))
                v++;
            while (v_end > v && is_space(v_end[-1]))
                v_end--;
            set_header(L, p, (size_t)(name_end - p), v, (size_t)(v_end - v));
        }
        p = eol ? eol + 1 : end;
    }
}

/* ** does the body look like JSON: a JSON content type, or a first byte that opens a value */
static int looks_like_json(lua_State *L, int headers_idx, const char *body, size_t len)
{
    const char *ct;
    size_t i = 0;
    lua_getfield(L, headers_idx, "content-type");
    ct = lua_tostring(L, -1);
    lua_pop(L, 1); /* ct stays valid: the headers table still holds the string */
    if (ct != NULL && strstr(ct, "json") != NULL)
        return 1;
    while (i < len && is_space(body[i]))
        i++;
    return i < len && (body[i] == '{' || body[i] == '[' || body[i] == '"');
}

void reply_push(lua_State *L, int decode_idx, long status, const char *head, size_t headlen,
                const char *body, size_t bodylen)
{
    int res_idx, headers_idx;
    decode_idx = compat_absindex(L, decode_idx);
    lua_createtable(L, 0, 4);
    res_idx = lua_gettop(L);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, res_idx, "status");
    push_headers(L, head, headlen);
    headers_idx = lua_gettop(L);

    if (bodylen > 0 && looks_like_json(L, headers_idx, body, bodylen)) {
        lua_pushvalue(L, decode_idx);
        lua_pushlstring(L, body, bodylen);
        if (lua_pcall(L, 1, 1, 0) == 0) {
            lua_pushboolean(L, 1);
            lua_setfield(L, res_idx, "json");
        } else {
            lua_setfield(L, res_idx, "json_error");
            lua_pushlstring(L, body, bodylen);
            lua_pushboolean(L, 0);
            lua_setfield(L, res_idx, "json");
        }
    } else {
        lua_pushlstring(L, body, bodylen);
        lua_pushboolean(L, 0);
        lua_setfield(L, res_idx, "json");
    }
    /* stack: res, headers, body -> body, res */
    lua_insert(L, headers_idx);
    lua_setfield(L, res_idx, "headers");
    lua_insert(L, res_idx);
}
