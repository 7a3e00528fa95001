/* ops.h: the seed operations (upload a file, list files, create a batch) as Lua functions. */
#ifndef MOONBATCH_OPS_H
#define MOONBATCH_OPS_H

#include "lua.h"

/* ** each expects upvalues decode, encode, default session; one HTTP exchange per call */
int ops_files_upload(lua_State *L);
int ops_files_list(lua_State *L);
int ops_batches_create(lua_State *L);

#endif
