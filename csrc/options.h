/* options.h: reading Lua option tables with errors that name the option. */
#ifndef MOONBATCH_OPTIONS_H
#define MOONBATCH_OPTIONS_H

#include "lua.h"

/* ** raise naming the first key of the table at `idx` that is not in `known` (NULL-ended) */
void options_check_known(lua_State *L, int idx, const char *const known[], const char *who);
/* ** push t[name]; raise unless it is nil or of `type`; returns 1 when not nil */
int options_get(lua_State *L, int idx, const char *name, int type, const char *who);
/* ** t[name] as a string (NULL when absent; raises when required and absent). The string
 * stays valid while the table holds it. */
const char *options_string(lua_State *L, int idx, const char *name, int required, const char *who);
/* ** t[name] as a number >= 0 (math.huge included: never cast it unchecked), or `dflt` when
 * absent */
double options_number(lua_State *L, int idx, const char *name, double dflt, const char *who);

/* ** t[name] as a number from min to max, or `dflt` when absent; raises naming the option for
 * NaN, an infinity or a value out of range, so a cast of the value to long or size_t is safe */
double options_range(lua_State *L, int idx, const char *name, double dflt, double min, double max,
                     const char *who);

/* ** push a sequence of the string keys of the table at idx, sorted, so that extra fields and
 * query parameters go out in a stable order; raises unless the values are strings (or numbers,
 * when `numbers`); returns its stack index */
int options_sorted_keys(lua_State *L, int idx, const char *who, const char *what, int numbers);
/* ** push the query string of the table at idx ("?a=1&b=x%20y", "&..." unless `first`, "" when
 * empty), names sorted, values percent-encoded */
void options_push_query(lua_State *L, int idx, int first, const char *who);

#endif
