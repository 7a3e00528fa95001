/* fsutil.c: the one way moonbatch.core opens a file to read (never blocking, regular files only)
 * and the durable commit of a finished temporary file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"
#include "fsutil.h"

/* ** what kind of non-regular file `mode` is, for a message */
static const char *file_type(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
#ifdef S_ISSOCK
    if (S_ISSOCK(mode))
        return "a socket";
#endif
    return "of an unknown type";
}

int fsutil_open_regular(const char *path, struct stat *st, char why[FSUTIL_WHY_SIZE])
{
    int fd, flags;
    why[0] = '\0';
    /* O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one */
    do
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        /* a socket cannot be opened at all (ENXIO): say what it is rather than why open failed */
        int e = errno;
        if (stat(path, st) == 0 && !S_ISREG(st->st_mode)) {
            snprintf(why, FSUTIL_WHY_SIZE, "not a regular file (%s)", file_type(st->st_mode));
            e = 0;
        }
        errno = e;
        return -1;
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, FSUTIL_WHY_SIZE, "not a regular file (%s)", file_type(st->st_mode));
        close(fd);
        errno = 0;
        return -1;
    }
    /* reads of a regular file never return EAGAIN, but the callers' loops expect blocking */
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int fsutil_lua_regular_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char why[FSUTIL_WHY_SIZE];
    struct stat st;
    int fd = fsutil_open_regular(path, &st, why);
    if (fd < 0)
        return util_read_failure(L, path, "io", errno, why);
    close(fd);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 1;
}

/* ** fsync the file or folder at path (opened read-only: fsync needs no write access) */
static int sync_path(const char *path, int directory)
{
    int fd, rc, e;
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
#ifdef O_DIRECTORY
    if (directory)
        flags |= O_DIRECTORY;
#else
    (void)directory;
#endif
    do
        fd = open(path, flags);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    do
        rc = fsync(fd);
    while (rc != 0 && errno == EINTR);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* ** nil, "cannot commit 'TARGET': STEP: REASON", {kind = "io", path, message, errno, step} */
static int commit_failure(lua_State *L, const char *target, const char *step, int e)
{
    char msg[UTIL_MESSAGE_SIZE];
    snprintf(msg, sizeof msg, "cannot commit '%s': %s: %s", target, step, strerror(e));
    util_file_failure(L, "io", target, msg, e);
    lua_pushstring(L, step);
    lua_setfield(L, -2, "step");
    return 3;
}

int fsutil_lua_durable_rename(lua_State *L)
{
    const char *temp = luaL_checkstring(L, 1);
    const char *target = luaL_checkstring(L, 2);
    const char *slash = strrchr(target, '/');
    char *folder;
    int rc, e;
    /* the data reaches the disk before the name does: after a crash, the target holds the old
     * content or the whole new one, never an empty or partial file under the new name */
    if (sync_path(temp, 0) != 0)
        return commit_failure(L, target, "fsync of the temporary file", errno);
    if (rename(temp, target) != 0)
        return commit_failure(L, target, "rename", errno);
    /* then the folder, so that the rename itself survives a crash */
    if (slash == NULL) {
        rc = sync_path(".", 1);
        e = errno;
    } else {
        size_t n = slash == target ? 1 : (size_t)(slash - target);
        folder = (char *)malloc(n + 1);
        if (folder == NULL)
            return luaL_error(L, "moonbatch.core: out of memory");
        memcpy(folder, target, n);
        folder[n] = '\0';
        rc = sync_path(folder, 1);
        e = errno;
        free(folder);
    }
    /* EINVAL: a file system that cannot sync a folder (some FUSE ones); nothing more to do */
    if (rc != 0 && e != EINVAL)
        return commit_failure(L, target, "fsync of the folder", e);
    lua_pushboolean(L, 1);
    return 1;
}
