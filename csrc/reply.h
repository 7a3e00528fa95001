/* reply.h: turning a raw HTTP reply (status, header block, body) into Lua values. */
#ifndef MOONBATCH_REPLY_H
#define MOONBATCH_REPLY_H

#include <stddef.h>

#include "lua.h"

/* ** Push the decoded body and the `res` table `{status, headers, json, json_error}` (reply.c
 * decodes JSON itself: no cjson.null, integral numbers as integers, strings checked as UTF-8);
 * `head` holds the raw header lines of the final
 * response. The body is decoded when the content type says JSON or the body starts like JSON;
 * otherwise, or when decoding fails, it is pushed as a string.
 * Leaves 2 values on the stack; raises only on memory errors. */
void reply_push(lua_State *L, long status, const char *head, size_t headlen, const char *body,
                size_t bodylen);

#endif
