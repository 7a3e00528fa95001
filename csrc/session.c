/* session.c: the session userdata and the protected run of one transfer on it. */
#include <string.h>

#include "util.h"
#include "session.h"
#include "transfer.h"

session *session_new(lua_State *L)
{
    session *s = (session *)lua_newuserdata(L, sizeof *s);
    s->easy = NULL; /* closed until the handle exists: an error below leaks nothing */
    s->busy = 0;
    luaL_setmetatable(L, SESSION_TYPE);
    s->easy = curl_easy_init();
    if (s->easy == NULL)
        luaL_error(L, "moonbatch.core: curl_easy_init failed");
    return s;
}

session *session_check(lua_State *L, int idx, const char *arg)
{
    session *s = (session *)luaL_testudata(L, idx, SESSION_TYPE);
    if (s == NULL)
        luaL_error(L, "moonbatch.core: bad %s (a moonbatch.core.session expected, got %s)", arg,
                   luaL_typename(L, idx));
    return s;
}

/* ** everything that can raise, run under lua_pcall by session_request:
 * upvalue: encode; arguments: session, transfer, options */
static int protected_request(lua_State *L)
{
    session *s = (session *)lua_touserdata(L, 1);
    transfer *t = (transfer *)lua_touserdata(L, 2);
    CURLcode code;
    if (transfer_setup(L, t, s->easy, 3, lua_upvalueindex(1)) != 0) {
        transfer_fail(L, "io", t->failure);
        return 3;
    }
    s->busy = 1;
    code = curl_easy_perform(s->easy);
    s->busy = 0;
    return transfer_finish(L, t, code);
}

int session_request(lua_State *L, session *s, int opts)
{
    transfer *t;
    int base, status;
    opts = util_absindex(L, opts);
    luaL_checktype(L, opts, LUA_TTABLE);
    if (s->easy == NULL)
        luaL_error(L, "moonbatch.core: the session is closed");
    if (s->busy)
        luaL_error(L, "moonbatch.core: the session is busy (a request made from on_progress?)");
    t = transfer_new(L); /* kept on the stack, so it outlives the protected call */
    base = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, protected_request, 1);
    lua_pushlightuserdata(L, s);
    lua_pushvalue(L, base);
    lua_pushvalue(L, opts);
    status = lua_pcall(L, 3, LUA_MULTRET, 0);
    s->busy = 0;
    transfer_release(L, t); /* the session's handle is still alive here */
    lua_remove(L, base);
    if (status != 0)
        return lua_error(L);
    return lua_gettop(L) - base + 1;
}

static int session_close(lua_State *L)
{
    session *s = (session *)luaL_checkudata(L, 1, SESSION_TYPE);
    if (s->busy)
        return luaL_error(L, "moonbatch.core: cannot close a busy session");
    if (s->easy != NULL) {
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
    }
    return 0;
}

static int session_method_request(lua_State *L)
{
    session *s = (session *)luaL_checkudata(L, 1, SESSION_TYPE);
    return session_request(L, s, 2);
}

static int session_tostring(lua_State *L)
{
    session *s = (session *)luaL_checkudata(L, 1, SESSION_TYPE);
    lua_pushfstring(L, "moonbatch.core.session (%s)", s->easy ? "open" : "closed");
    return 1;
}

static const luaL_Reg session_methods[] = {
    {"request", session_method_request},
    {"close", session_close},
    {NULL, NULL}};

void session_open(lua_State *L, int nup)
{
    util_newclass(L, SESSION_TYPE, session_methods, nup, session_close, session_tostring);
}
