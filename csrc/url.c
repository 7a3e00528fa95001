/* url.c: core.parse_url, libcurl's URL parser (curl_url) exposed to the Lua layer. */
#include <stdlib.h>

#include <curl/curl.h>

#include "compat.h"
#include "url.h"

/* ** one part of the URL in the table at the top of the stack, when present */
static void set_part(lua_State *L, CURLU *u, CURLUPart what, const char *name, unsigned flags)
{
    char *value = NULL;
    if (curl_url_get(u, what, &value, flags) == CURLUE_OK && value != NULL) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
    curl_free(value);
}

int url_parse(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    CURLU *u;
    CURLUcode rc;
    char *port = NULL;
    /* created before anything can raise, so freed on every way out: the table is made first
     * (lua_createtable may raise out of memory), then the handle */
    lua_createtable(L, 0, 10);
    u = curl_url();
    if (u == NULL)
        return luaL_error(L, "moonbatch.core: out of memory");
    /* the flags the easy interface parses CURLOPT_URL with, less the scheme guessing: a URL
     * must name its scheme (so what is checked here is what the transfer connects to) */
    rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
    if (rc != CURLUE_OK) {
        curl_url_cleanup(u);
        lua_pushnil(L);
#if LIBCURL_VERSION_NUM >= 0x075000
        lua_pushstring(L, curl_url_strerror(rc));
#else
        lua_pushfstring(L, "libcurl's URL parser says no (code %d)", (int)rc);
#endif
        return 2;
    }
    set_part(L, u, CURLUPART_SCHEME, "scheme", 0);
    set_part(L, u, CURLUPART_USER, "user", 0);
    set_part(L, u, CURLUPART_PASSWORD, "password", 0);
    set_part(L, u, CURLUPART_OPTIONS, "options", 0);
    set_part(L, u, CURLUPART_HOST, "host", 0);
    set_part(L, u, CURLUPART_ZONEID, "zoneid", 0);
    set_part(L, u, CURLUPART_PATH, "path", 0);
    set_part(L, u, CURLUPART_QUERY, "query", 0);
    set_part(L, u, CURLUPART_FRAGMENT, "fragment", 0);
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && port != NULL) {
        lua_pushinteger(L, (lua_Integer)strtol(port, NULL, 10));
        lua_setfield(L, -2, "port");
    }
    curl_free(port);
    curl_url_cleanup(u);
    return 1;
}
