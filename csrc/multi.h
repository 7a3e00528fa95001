/* multi.h: many transfers at once on one curl multi handle (one connection pool). */
#ifndef MOONBATCH_MULTI_H
#define MOONBATCH_MULTI_H

#include "lua.h"

#define MULTI_TYPE "moonbatch.core.multi"

/* ** push a new multi; raises when libcurl cannot make one */
int multi_new(lua_State *L);
/* ** register the metatable; the methods get the `nup` upvalues (encode) on the stack top */
void multi_open(lua_State *L, int nup);

#endif
