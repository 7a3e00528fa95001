/* fsutil.h: opening a file to read without ever blocking on a FIFO, and committing a finished
 * temporary file durably (fsync, rename, fsync of the folder). */
#ifndef MOONBATCH_FSUTIL_H
#define MOONBATCH_FSUTIL_H

#include <sys/stat.h>

#include "lua.h"

/* size of the buffer fsutil_open_regular writes its reason into */
#define FSUTIL_WHY_SIZE 64

/* Opens `path` read-only and close-on-exec, returning the fd (blocking reads) with its fstat in
 * *st; or -1 with errno set and why[0] == 0, or -1 with errno 0 and why set ("not a regular
 * file (a FIFO)") when the file is not a regular one. Never blocks: the open is O_NONBLOCK,
 * which is cleared once fstat has shown a regular file. */
int fsutil_open_regular(const char *path, struct stat *st, char why[FSUTIL_WHY_SIZE]);

/* core.regular_file(path): the size of the regular file at path, or nil, "cannot read 'PATH':
 * REASON", {kind = "io", path =, message =[, errno =]} (never blocks) */
int fsutil_lua_regular_file(lua_State *L);

/* core.durable_rename(temp, target): fsync temp, rename it over target, fsync target's folder:
 * true, or nil, msg, {kind = "io", path =, message =[, errno =], step =} (temp left in place) */
int fsutil_lua_durable_rename(lua_State *L);

#endif
