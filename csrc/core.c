/* core.c: luaopen_moonbatch_core, the only C entry point: the module table, the generic request,
 * sessions, and the clock and sleep the Lua layer's retries use.
 *
 * Caveats: request JSON is written by a private lua-cjson instance (cjson.new()), so a user's
 * cjson settings do not change what moonbatch sends (it writes "/" as "\/", valid JSON); replies
 * are decoded by reply.c (no cjson.null, integral numbers as integers). */
#include <errno.h>
#include <time.h>

#include <curl/curl.h>

#include "checksum.h"
#include "compat.h"
#include "fsutil.h"
#include "multi.h"
#include "ops.h"
#include "session.h"
#include "transfer.h"
#include "url.h"
#include "validate.h"

#define NUPVALUES 2 /* encode, default session */

/* core.request{url, method, headers, body | json | form, timeout, ...} on opts.session or the
 * default session: one exchange, `body, res` or `nil, msg, info` */
static int core_request(lua_State *L)
{
    session *s;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "session");
    s = lua_isnil(L, -1) ? session_check(L, lua_upvalueindex(2), "default session")
                         : session_check(L, -1, "option 'session'");
    lua_pop(L, 1);
    return session_request(L, s, 1);
}

/* core.session(): a new session (its own curl handle and connection) */
static int core_session(lua_State *L)
{
    session_new(L);
    return 1;
}

/* core.multi(): a set of concurrent transfers on one connection pool */
static int core_multi(lua_State *L)
{
    return multi_new(L);
}

/* core.now(): seconds on a monotonic clock, for measuring waits and deadlines */
static int core_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.time(): wall-clock Unix time in seconds, with a fraction */
static int core_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.sleep(seconds): blocks the calling thread; resumes after signals */
static int core_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (!(s > 0))
        return 0;
    if (s > 1e7)
        s = 1e7;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

/* core.curl(): the libcurl this module runs on, for health checks and bug reports:
 * {version = "8.5.0", version_num = 0x080500, ssl = "OpenSSL/3.0.11" or nil, libz = ... or nil,
 * host = "x86_64-pc-linux-gnu", features = {ssl = true, http2 = true, ...}} (features named from
 * curl_version_info's bitmask; a feature this libcurl's headers do not know is left out) */
static int core_curl(lua_State *L)
{
    static const struct {
        const char *name;
        int bit;
    } features[] = {
        {"ssl", CURL_VERSION_SSL},
        {"libz", CURL_VERSION_LIBZ},
        {"ipv6", CURL_VERSION_IPV6},
        {"asynchdns", CURL_VERSION_ASYNCHDNS},
        {"largefile", CURL_VERSION_LARGEFILE},
#ifdef CURL_VERSION_HTTP2
        {"http2", CURL_VERSION_HTTP2},
#endif
#ifdef CURL_VERSION_HTTP3
        {"http3", CURL_VERSION_HTTP3},
#endif
#ifdef CURL_VERSION_BROTLI
        {"brotli", CURL_VERSION_BROTLI},
#endif
#ifdef CURL_VERSION_ZSTD
        {"zstd", CURL_VERSION_ZSTD},
#endif
    };
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
    size_t i;
    lua_createtable(L, 0, 6);
    lua_pushstring(L, info->version);
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, (lua_Integer)info->version_num);
    lua_setfield(L, -2, "version_num");
    lua_pushstring(L, info->ssl_version); /* NULL pushes nil: a libcurl without TLS */
    lua_setfield(L, -2, "ssl");
    lua_pushstring(L, info->libz_version);
    lua_setfield(L, -2, "libz");
    lua_pushstring(L, info->host);
    lua_setfield(L, -2, "host");
    lua_newtable(L);
    for (i = 0; i < sizeof features / sizeof features[0]; i++) {
        lua_pushboolean(L, (info->features & features[i].bit) != 0);
        lua_setfield(L, -2, features[i].name);
    }
    lua_setfield(L, -2, "features");
    return 1;
}

static const luaL_Reg core_functions[] = {
    {"request", core_request},
    {"session", core_session},
    {"multi", core_multi},
    {NULL, NULL}};

static const luaL_Reg plain_functions[] = {
    {"now", core_now},
    {"time", core_time},
    {"sleep", core_sleep},
    {"validate", validate_file},
    {"checksum", checksum_file},
    {"curl", core_curl},
    {"parse_url", url_parse},
    {"regular_file", fsutil_lua_regular_file},
    {"durable_rename", fsutil_lua_durable_rename},
    {"file_identity", transfer_file_identity},
    {NULL, NULL}};

static const luaL_Reg files_functions[] = {
    {"upload", ops_files_upload},
    {"list", ops_files_list},
    {NULL, NULL}};

static const luaL_Reg batches_functions[] = {
    {"create", ops_batches_create},
    {NULL, NULL}};

/* ** push copies of the NUPVALUES upvalues kept at `first` */
static void push_upvalues(lua_State *L, int first)
{
    int i;
    for (i = 0; i < NUPVALUES; i++)
        lua_pushvalue(L, first + i);
}

int luaopen_moonbatch_core(lua_State *L);

int luaopen_moonbatch_core(lua_State *L)
{
    static int curl_ready = 0; /* curl_global_init once per process, never undone */
    int up;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "moonbatch.core: curl_global_init failed");
        curl_ready = 1;
    }
    transfer_open(L);

    /* upvalues: a private lua-cjson instance's encode (for `json` bodies; replies are decoded by
     * reply.c), and the default session */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_remove(L, -2);
    lua_getfield(L, -1, "encode");
    lua_remove(L, -2);
    up = lua_gettop(L);
    session_open(L, 1); /* a session's request method needs encode */
    multi_open(L, 1);
    session_new(L);

    lua_newtable(L);
    push_upvalues(L, up);
    luaL_setfuncs(L, core_functions, NUPVALUES);
    luaL_setfuncs(L, plain_functions, 0);

    lua_newtable(L);
    push_upvalues(L, up);
    luaL_setfuncs(L, files_functions, NUPVALUES);
    lua_setfield(L, -2, "files");

    lua_newtable(L);
    push_upvalues(L, up);
    luaL_setfuncs(L, batches_functions, NUPVALUES);
    lua_setfield(L, -2, "batches");

    {
        /* not curl_version(): it initialises libldap's SASL, which never frees that memory */
        const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
        lua_pushfstring(L, "libcurl/%s %s", info->version, info->ssl_version ? info->ssl_version : "");
        lua_setfield(L, -2, "curl_version");
    }
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "version");
    return 1;
}
