/* multi.c: the multi userdata: transfers added by `add`, driven by `perform` and `wait`, and
 * collected by `info` with the same results as a one-at-a-time request. A scheduler (Lua) or an
 * event loop (OpenResty, Neovim) drives it.
 *
 * Caveats: each transfer has its own easy handle; connections are shared through the multi's
 * pool. A transfer's userdata is anchored in a registry table until it is collected or removed,
 * so a handle the caller dropped still completes and is then freed. */
#include <string.h>

#include <curl/curl.h>

#include "util.h"
#include "multi.h"
#include "transfer.h"

typedef struct multi {
    CURLM *handle;   /* NULL once closed */
    lua_State *L;    /* the thread calling perform/info now, for progress callbacks */
    int anchors;     /* registry ref of {[lightuserdata transfer] = transfer userdata} */
    int active;      /* transfers added and not yet collected */
} multi;

static multi *check_multi(lua_State *L)
{
    multi *m = (multi *)luaL_checkudata(L, 1, MULTI_TYPE);
    if (m->handle == NULL)
        luaL_error(L, "moonbatch.core: the multi is closed");
    return m;
}

int multi_new(lua_State *L)
{
    multi *m = (multi *)lua_newuserdata(L, sizeof *m);
    m->handle = NULL; /* closed until the handle exists */
    m->L = L;
    m->anchors = LUA_NOREF;
    m->active = 0;
    luaL_setmetatable(L, MULTI_TYPE);
    lua_newtable(L);
    m->anchors = luaL_ref(L, LUA_REGISTRYINDEX);
    m->handle = curl_multi_init();
    if (m->handle == NULL)
        return luaL_error(L, "moonbatch.core: curl_multi_init failed");
    return 1;
}

/* ** anchors[key] = value at the top (popped) */
static void anchor(lua_State *L, multi *m, void *key)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->anchors);
    lua_pushlightuserdata(L, key);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 2);
}

static void unanchor(lua_State *L, multi *m, void *key)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->anchors);
    lua_pushlightuserdata(L, key);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* m:add(opts) -> handle, or nil, msg, info when an input cannot be read (nothing is sent) */
static int multi_add(lua_State *L)
{
    multi *m = check_multi(L);
    transfer *t;
    CURL *easy;
    luaL_checktype(L, 2, LUA_TTABLE);
    t = transfer_new(L);
    easy = curl_easy_init();
    if (easy == NULL)
        return luaL_error(L, "moonbatch.core: curl_easy_init failed");
    t->owns_easy = 1;
    t->easy_owned = easy;
    t->runner = &m->L;
    if (transfer_setup(L, t, easy, 2, lua_upvalueindex(1)) != 0) {
        transfer_release(L, t);
        return transfer_fail(L, "io", t->failure);
    }
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)t);
    if (curl_multi_add_handle(m->handle, easy) != CURLM_OK) {
        transfer_release(L, t);
        return luaL_error(L, "moonbatch.core: curl_multi_add_handle failed");
    }
    t->multi = m->handle;
    m->active++;
    lua_pushvalue(L, -1);
    anchor(L, m, t);
    return 1;
}

/* m:perform() -> number of transfers still running */
static int multi_perform(lua_State *L)
{
    multi *m = check_multi(L);
    int running = 0;
    CURLMcode code;
    m->L = L;
    code = curl_multi_perform(m->handle, &running);
    if (code != CURLM_OK)
        return luaL_error(L, "moonbatch.core: curl_multi_perform: %s", curl_multi_strerror(code));
    lua_pushinteger(L, running);
    return 1;
}

/* m:wait(seconds) -> number of sockets ready: waits until a transfer can move or the time is
 * up; wait(0) only looks */
static int multi_wait(lua_State *L)
{
    multi *m = check_multi(L);
    lua_Number s = luaL_optnumber(L, 2, 1);
    int ms = !(s > 0) ? 0 : s > 3600 ? 3600000 : (int)(s * 1000 + 0.5); /* NaN: 0 */
    int ready = 0;
    CURLMcode code = curl_multi_poll(m->handle, NULL, 0, ms, &ready);
    if (code != CURLM_OK)
        return luaL_error(L, "moonbatch.core: curl_multi_poll: %s", curl_multi_strerror(code));
    lua_pushinteger(L, ready);
    return 1;
}

/* ** under lua_pcall: arguments: transfer (light), code -> its results */
static int finish_transfer(lua_State *L)
{
    transfer *t = (transfer *)lua_touserdata(L, 1);
    CURLcode code = (CURLcode)lua_tointeger(L, 2);
    lua_settop(L, 0);
    return transfer_finish(L, t, code);
}

/* m:info() -> { {handle = h, n = k, ...results} or {handle = h, raised = err}, ... } for the
 * transfers that ended since the last call; each is then released */
static int multi_info(lua_State *L)
{
    multi *m = check_multi(L);
    int left = 0, count = 0;
    CURLMsg *msg;
    m->L = L;
    lua_newtable(L);
    while ((msg = curl_multi_info_read(m->handle, &left)) != NULL) {
        transfer *t = NULL;
        CURLcode code;
        int base, status, i, n;
        if (msg->msg != CURLMSG_DONE)
            continue;
        code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t == NULL)
            continue;
        lua_createtable(L, 4, 2);
        lua_rawgeti(L, LUA_REGISTRYINDEX, m->anchors);
        lua_pushlightuserdata(L, t);
        lua_rawget(L, -2);
        lua_remove(L, -2);
        lua_setfield(L, -2, "handle");
        base = lua_gettop(L);
        lua_pushcfunction(L, finish_transfer);
        lua_pushlightuserdata(L, t);
        lua_pushinteger(L, (lua_Integer)code);
        status = lua_pcall(L, 2, LUA_MULTRET, 0);
        n = lua_gettop(L) - base;
        if (status != 0) {
            lua_setfield(L, base, "raised");
        } else {
            for (i = n; i >= 1; i--)
                lua_rawseti(L, base, i);
            lua_pushinteger(L, n);
            lua_setfield(L, base, "n");
        }
        transfer_release(L, t); /* leaves the multi, frees its handle */
        m->active--;
        unanchor(L, m, t);
        lua_rawseti(L, -2, ++count);
    }
    return 1;
}

/* m:remove(handle): stop a transfer that has not ended; nothing more is reported for it */
static int multi_remove(lua_State *L)
{
    multi *m = check_multi(L);
    transfer *t = (transfer *)luaL_checkudata(L, 2, TRANSFER_TYPE);
    if (t->multi == m->handle) {
        transfer_release(L, t);
        m->active--;
        unanchor(L, m, t);
    }
    return 0;
}

/* m:count() -> transfers added and not yet collected */
static int multi_count(lua_State *L)
{
    lua_pushinteger(L, check_multi(L)->active);
    return 1;
}

/* m:close(), also __gc and __close: stops every transfer, frees everything; idempotent */
static int multi_close(lua_State *L)
{
    multi *m = (multi *)luaL_checkudata(L, 1, MULTI_TYPE);
    if (m->handle == NULL)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->anchors);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        transfer_release(L, (transfer *)lua_touserdata(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, m->anchors);
    m->anchors = LUA_NOREF;
    m->active = 0;
    curl_multi_cleanup(m->handle);
    m->handle = NULL;
    return 0;
}

static const luaL_Reg multi_methods[] = {
    {"add", multi_add},
    {"perform", multi_perform},
    {"wait", multi_wait},
    {"info", multi_info},
    {"remove", multi_remove},
    {"count", multi_count},
    {"close", multi_close},
    {NULL, NULL}};

void multi_open(lua_State *L, int nup)
{
    util_newclass(L, MULTI_TYPE, multi_methods, nup, multi_close, NULL);
}
