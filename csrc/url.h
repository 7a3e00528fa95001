/* url.h: a URL taken apart by libcurl's own parser, so the Lua layer decides on the host that
 * libcurl will connect to. */
#ifndef MOONBATCH_URL_H
#define MOONBATCH_URL_H

#include "lua.h"

/* core.parse_url(url): {scheme =, host =, port =, user =, password =, options =, zoneid =,
 * path =, query =, fragment =} as libcurl reads url (absent parts are nil; host as libcurl
 * normalises it: IPv4 in dotted decimal, IPv6 in brackets; port an integer, the scheme's
 * default when none is given), or nil and libcurl's reason. Raises only for a non-string. */
int url_parse(lua_State *L);

#endif
