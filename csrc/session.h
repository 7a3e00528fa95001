/* session.h: a curl easy handle kept across calls, so they share one keep-alive connection. */
#ifndef MOONBATCH_SESSION_H
#define MOONBATCH_SESSION_H

#include <curl/curl.h>

#include "lua.h"

#define SESSION_TYPE "moonbatch.core.session"

typedef struct session {
    CURL *easy;  /* NULL once closed */
    int busy;    /* a transfer is running on the handle */
} session;

/* ** push a new open session; raises when libcurl cannot make a handle */
session *session_new(lua_State *L);
/* ** the session at idx (raises naming argument `arg` when it is not one) */
session *session_check(lua_State *L, int idx, const char *arg);
/* ** register the metatable; `nup` upvalues (encode) are on the stack top and are given to the
 * methods */
void session_open(lua_State *L, int nup);
/* ** run one exchange described by the options table at `opts` on session `s`; pushes
 * `body, res` or `nil, msg, info` and returns the count. Needs the JSON encode function as
 * upvalue 1 of the running C function. */
int session_request(lua_State *L, session *s, int opts);

#endif
