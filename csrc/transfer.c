/* transfer.c: configures one exchange from Lua options, runs libcurl callbacks, builds results.
 *
 * Caveats: libcurl callbacks never call into Lua except on_progress and, at least every
 * VISIT_SECONDS, a no-op Lua function (so that a signal hook such as lua.c's Ctrl-C handler
 * fires even while a transfer is stalled), both only under lua_pcall: an error there is kept,
 * the transfer aborted, and the error raised again once libcurl has unwound. Reply bytes go to
 * C buffers and become Lua values after the transfer. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "fsutil.h"
#include "transfer.h"
#include "reply.h"
#include "options.h"

#define DEFAULT_MAX_REPLY ((size_t)64 * 1024 * 1024)
/* bytes libcurl reads from the socket at a time for `output` (default 16 KiB), and written to
 * the file at a time */
#define DOWNLOAD_BUFFER ((size_t)1024 * 1024)

static const char *const known_options[] = {
    "method", "url", "headers", "body", "json", "form", "timeout", "connect_timeout",
    "low_speed_limit", "low_speed_time", "on_progress", "max_reply_bytes", "session", "cainfo",
    "output", "query", NULL};

/* ---------------------------------------------------------------- a file part */

#define SCAN_CHUNK (256 * 1024) /* bytes read at a time when the rest of a file is scanned */
#define CHECK_HEAD (256 * 1024) /* bytes of a validated file checked before the request starts */

static void check_join(upload_check *c);

static void check_free(upload_check *c)
{
    while (c != NULL) {
        upload_check *next = c->next;
        check_join(c); /* before the descriptor and the scanner go */
        if (c->fd >= 0)
            close(c->fd);
        if (c->validating)
            validate_release(&c->scanner);
        free(c->head);
        free(c->endpoint);
        free(c->path);
        free(c);
        c = next;
    }
}

static ssize_t read_some(int fd, char *buf, size_t n)
{
    ssize_t got;
    do
        got = read(fd, buf, n);
    while (got < 0 && errno == EINTR);
    return got;
}

/* ** the identity of an open file: device, inode, size and modification time, as one string
 * (what a part's `identity` option is compared with) */
static void push_identity(lua_State *L, const struct stat *st)
{
#if defined(__APPLE__)
    long nsec = (long)st->st_mtimespec.tv_nsec;
#else
    long nsec = (long)st->st_mtim.tv_nsec;
#endif
    char id[128];
    snprintf(id, sizeof id, "%llu:%llu:%lld:%lld.%09ld", (unsigned long long)st->st_dev,
             (unsigned long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtime, nsec);
    lua_pushstring(L, id);
}

/* ** does the open file still have the size and modification time it had when opened? */
static int file_unchanged(const upload_check *c)
{
    struct stat st;
    if (fstat(c->fd, &st) != 0)
        return 0;
    return (curl_off_t)st.st_size == c->size && st.st_mtime == c->opened.st_mtime &&
#if defined(__APPLE__)
           st.st_mtimespec.tv_nsec == c->opened.st_mtimespec.tv_nsec;
#else
           st.st_mtim.tv_nsec == c->opened.st_mtim.tv_nsec;
#endif
}

/* ** stop the read-ahead thread, if any, and take over what it found */
static void check_join(upload_check *c)
{
    uint64_t scanned = 0;
    int err = 0, why;
    if (c->ahead == NULL)
        return;
    why = readahead_stop(c->ahead, &scanned, &err);
    c->ahead = NULL;
    c->offset = (curl_off_t)(c->head_len + scanned);
    if (why == READAHEAD_PROBLEM)
        c->stopped = 1;
    else if (why == READAHEAD_READ_ERROR)
        c->read_errno = err;
    else if (why == READAHEAD_CHANGED)
        c->changed = 1;
}

/* ** scan the bytes read from the file; the last ones end the scan. Returns 1 when the file
 * has a problem (or the scanner ran out of memory). */
static int check_scan(upload_check *c, const char *p, size_t n)
{
    c->offset += (curl_off_t)n;
    if (!c->validating)
        return 0;
    validate_feed(&c->scanner, p, n);
    if (c->offset == c->size)
        validate_finish(&c->scanner);
    if (c->scanner.problem_total > 0 || c->scanner.out_of_memory)
        c->stopped = 1;
    return c->stopped;
}

/* ** (re)start the part from the first byte: the head is scanned again, the file read after it */
static int check_start(upload_check *c)
{
    check_join(c);
    c->offset = c->sent = 0;
    c->stopped = c->changed = c->read_errno = 0;
    if (lseek(c->fd, (off_t)c->head_len, SEEK_SET) < 0)
        return -1;
    if (!c->validating)
        return 0;
    validate_release(&c->scanner);
    validate_init(&c->scanner, &c->config);
    if ((uint64_t)c->size > c->config.max_bytes)
        c->stopped = 1; /* over the byte limit: nothing of it is worth sending */
    else
        check_scan(c, c->head, c->head_len);
    /* the rest is read and checked ahead on a second thread (or, without one, here) */
    if (!c->stopped && c->offset < c->size && readahead_useful())
        c->ahead = readahead_start(c->fd, (uint64_t)c->offset, (uint64_t)c->size, &c->scanner);
    return 0;
}

/* ** libcurl's read callback of a file part: the head, then the next bytes of the file, each
 * piece scanned before it is sent when the part is validated. A piece with a problem is not
 * sent: the transfer stops there. So is the last piece of a file that changed while it was
 * read (shorter, longer or rewritten): the server never gets a whole body, and the call fails
 * at once instead of waiting for bytes that will not come. */
static size_t check_read(char *buf, size_t size, size_t n, void *arg)
{
    upload_check *c = (upload_check *)arg;
    size_t want = size * n;
    ssize_t got;
    if (c->stopped || c->changed)
        return CURL_READFUNC_ABORT;
    if (c->sent < (curl_off_t)c->head_len) {
        if (want > c->head_len - (size_t)c->sent)
            want = c->head_len - (size_t)c->sent;
        memcpy(buf, c->head + c->sent, want);
        c->sent += (curl_off_t)want;
        return want;
    }
    if ((curl_off_t)want > c->size - c->offset)
        want = (size_t)(c->size - c->offset);
    if (want == 0)
        return 0;
    got = read_some(c->fd, buf, want);
    if (got < 0) {
        c->read_errno = errno;
        return CURL_READFUNC_ABORT;
    }
    if (got == 0) {
        c->changed = 1; /* it shrank since it was opened */
        return CURL_READFUNC_ABORT;
    }
    if (c->ahead != NULL) {
        /* checked on the other thread: pass nothing it has not checked yet */
        c->offset += got;
        if (readahead_wait(c->ahead, (uint64_t)c->offset) != 0) {
            check_join(c); /* a problem, a read error or a changed file: stop here */
            if (!c->stopped && c->read_errno == 0)
                c->changed = 1;
            return CURL_READFUNC_ABORT;
        }
    } else if (check_scan(c, buf, (size_t)got)) {
        return CURL_READFUNC_ABORT;
    }
    if (c->offset == c->size && !file_unchanged(c)) {
        c->changed = 1; /* grown or rewritten while it was read */
        return CURL_READFUNC_ABORT;
    }
    c->sent += got;
    return (size_t)got;
}

/* ** libcurl rewinds the part before each time it sends it: the scan starts again */
static int check_seek(void *arg, curl_off_t offset, int origin)
{
    upload_check *c = (upload_check *)arg;
    if (origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_CANTSEEK; /* a part only starts from the first byte */
    return check_start(c) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* ** the request of a file found bad before it started is never sent */
static int refuse_request(void *arg, char *primary_ip, char *local_ip, int primary_port,
                          int local_port)
{
    (void)arg;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    return CURL_PREREQFUNC_ABORT;
}
#endif

static char *copy_string(const char *s, size_t len)
{
    char *copy = (char *)malloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

/* ** core.file_identity(path) -> the identity of the regular file at path (its device, inode,
 * size and modification time, as one string) and its size, or nil, msg, info (kind "io"): the
 * one check before a call's attempts (opened without blocking: a FIFO is refused), given to each
 * attempt as the file part's `identity`, so that a file changed between attempts is not sent */
int transfer_file_identity(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char why[FSUTIL_WHY_SIZE] = "";
    struct stat st;
    int fd = fsutil_open_regular(path, &st, why);
    if (fd < 0)
        return util_read_failure(L, path, "io", errno, why);
    close(fd);
    push_identity(L, &st);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 2;
}

/* ** the part `p` sends `file`, read by check_read; through the validator configured by the
 * table at `validate` when it is not 0. `identity` (or NULL) is what the file must still be.
 * Returns 0, or -1 (t->failure says why) when the file cannot be read or has changed. */
static int setup_file_part(lua_State *L, transfer *t, curl_mimepart *p, const char *file,
                           int validate, const char *identity)
{
    upload_check *c;
    char why[FSUTIL_WHY_SIZE] = "";
    size_t got = 0;
    if (validate != 0 && t->check != NULL)
        luaL_error(L, "moonbatch.core: bad option 'form' (only one part can be validated)");
    c = (upload_check *)calloc(1, sizeof *c);
    if (c == NULL)
        luaL_error(L, "moonbatch.core: out of memory");
    c->fd = -1;
    c->next = t->files;
    t->files = c; /* released with the transfer, also when an option below raises */
    c->path = copy_string(file, strlen(file));
    if (c->path == NULL)
        luaL_error(L, "moonbatch.core: out of memory");
    if (validate != 0) {
        t->check = c;
        c->validating = 1;
        validate_read_config(L, validate, &c->config);
        c->endpoint = copy_string(c->config.endpoint, c->config.endpoint_length);
        lua_pop(L, 1);
        if (c->endpoint == NULL)
            luaL_error(L, "moonbatch.core: out of memory");
        c->config.endpoint = c->endpoint;
    }
    c->fd = fsutil_open_regular(file, &c->opened, why); /* never blocks on a FIFO */
    if (c->fd < 0)
        goto unreadable;
    c->size = (curl_off_t)c->opened.st_size;
    if (identity != NULL) {
        int same;
        push_identity(L, &c->opened);
        same = strcmp(lua_tostring(L, -1), identity) == 0;
        lua_pop(L, 1);
        if (!same) {
            util_read_message(t->failure, sizeof t->failure, file, 0,
                              "the file changed since the upload started");
            return -1;
        }
    }
    if (validate != 0) {
        c->head_len = (size_t)(c->size < CHECK_HEAD ? c->size : CHECK_HEAD);
        c->head = (char *)malloc(c->head_len + 1);
        if (c->head == NULL)
            luaL_error(L, "moonbatch.core: out of memory");
        while (got < c->head_len) {
            ssize_t n = read_some(c->fd, c->head + got, c->head_len - got);
            if (n <= 0) {
                if (n == 0)
                    errno = EIO; /* shorter than its size */
                goto unreadable;
            }
            got += (size_t)n;
        }
    }
    if (check_start(c) != 0)
        goto unreadable;
    if (c->stopped) {
#if LIBCURL_VERSION_NUM >= 0x075000
        curl_easy_setopt(t->easy, CURLOPT_PREREQFUNCTION, refuse_request);
#endif /* else the first read stops it, the request's headers sent */
    }
    /* what curl_mime_filedata would give: the file's base name, a generic type */
    if (curl_mime_data_cb(p, c->size, check_read, check_seek, NULL, c) != CURLE_OK ||
        curl_mime_filename(p, strrchr(file, '/') ? strrchr(file, '/') + 1 : file) != CURLE_OK ||
        curl_mime_type(p, "application/octet-stream") != CURLE_OK)
        luaL_error(L, "moonbatch.core: out of memory");
    return 0;
unreadable:
    util_read_message(t->failure, sizeof t->failure, file, why[0] ? 0 : errno, why);
    return -1;
}

/* ** the validated part's rest is scanned, so that the report lists every problem */
static void check_scan_rest(upload_check *c)
{
    char *chunk = (char *)malloc(SCAN_CHUNK);
    ssize_t got = 0;
    if (chunk == NULL)
        c->scanner.out_of_memory = 1;
    else if (lseek(c->fd, (off_t)c->offset, SEEK_SET) < 0)
        got = -1;
    else
        while ((got = read_some(c->fd, chunk, SCAN_CHUNK)) > 0 &&
               validate_feed(&c->scanner, chunk, (size_t)got) == 0)
            ;
    free(chunk);
    if (got < 0)
        c->read_errno = errno;
    else
        validate_finish(&c->scanner);
}

/* ** after a transfer with file parts: push `nil, msg, info` and return 3 when a file could not
 * be read or changed while it was sent (kind "io"), or the validated one stopped it (kind
 * "validation", info.report as core.validate's); else return 0 */
static int check_outcome(lua_State *L, transfer *t)
{
    upload_check *c;
    char msg[UTIL_MESSAGE_SIZE];
    for (c = t->files; c != NULL; c = c->next)
        check_join(c); /* the results are the thread's until then */
    for (c = t->files; c != NULL; c = c->next) {
        if (c->read_errno == 0 && !c->changed)
            continue;
        if (c->changed) {
            char why[96];
            snprintf(why, sizeof why, "the file changed while it was sent (%lld bytes when the "
                     "upload started)", (long long)c->size);
            util_read_message(msg, sizeof msg, c->path, 0, why);
        } else {
            util_read_message(msg, sizeof msg, c->path, c->read_errno, NULL);
        }
        transfer_fail(L, "io", msg);
        lua_pushstring(L, c->path);
        lua_setfield(L, -2, "path");
        return 3;
    }
    c = t->check;
    if (c == NULL)
        return 0;
    if (c->stopped && !c->scanner.out_of_memory && c->offset < c->size) {
        check_scan_rest(c);
        if (c->read_errno != 0) {
            util_read_message(msg, sizeof msg, c->path, c->read_errno, NULL);
            transfer_fail(L, "io", msg);
            lua_pushstring(L, c->path);
            lua_setfield(L, -2, "path");
            return 3;
        }
    }
    if (c->scanner.out_of_memory) {
        util_read_message(msg, sizeof msg, c->path, 0, "out of memory");
        transfer_fail(L, "memory", msg);
        return 3;
    }
    if (c->stopped) {
        transfer_fail(L, "validation", "the file does not pass validation");
        validate_push_report(L, &c->scanner);
        lua_setfield(L, -2, "report");
        return 3;
    }
    return 0;
}

transfer *transfer_new(lua_State *L)
{
    transfer *t = (transfer *)lua_newuserdata(L, sizeof *t);
    memset(t, 0, sizeof *t);
    t->progress_ref = LUA_NOREF;
    t->error_ref = LUA_NOREF;
    t->out_fd = -1;
    luaL_setmetatable(L, TRANSFER_TYPE);
    return t;
}

void transfer_release(lua_State *L, transfer *t)
{
    if (t->multi != NULL && t->easy != NULL)
        curl_multi_remove_handle(t->multi, t->easy);
    t->multi = NULL;
    if (t->easy != NULL) {
        /* the handle goes back to its session: unbind what is freed below. Callers release
         * before the session can be closed, so the handle is alive here. */
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
        curl_easy_setopt(t->easy, CURLOPT_MIMEPOST, (curl_mime *)NULL);
        t->easy = NULL;
    }
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    curl_mime_free(t->mime);
    t->mime = NULL;
    if (t->owns_easy && t->easy_owned != NULL)
        curl_easy_cleanup(t->easy_owned);
    t->easy_owned = NULL;
    check_free(t->files); /* after the mime, which calls its callbacks */
    t->files = t->check = NULL;
    buffer_free(&t->head);
    buffer_free(&t->body);
    if (t->out_fd >= 0)
        close(t->out_fd);
    t->out_fd = -1;
    free(t->out_buf);
    t->out_buf = NULL;
    t->out_buf_len = 0;
    free(t->out_path);
    t->out_path = NULL;
    if (L != NULL) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->progress_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, t->error_ref);
    }
    t->progress_ref = t->error_ref = LUA_NOREF;
}

static int transfer_gc(lua_State *L)
{
    transfer_release(L, (transfer *)luaL_checkudata(L, 1, TRANSFER_TYPE));
    return 0;
}

void transfer_open(lua_State *L)
{
    luaL_newmetatable(L, TRANSFER_TYPE);
    lua_pushcfunction(L, transfer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

int transfer_fail(lua_State *L, const char *kind, const char *msg)
{
    return util_failure(L, kind, msg);
}

/* ---------------------------------------------------------------- libcurl callbacks */

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    transfer *t = (transfer *)ud;
    size_t len = size * n;
    /* a new status line starts a new response (after 100 Continue or a redirect) */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
        buffer_clear(&t->head);
    if (t->head.len + len > 256 * 1024 || buffer_append(&t->head, p, len) != 0)
        return 0;
    return len;
}

/* ** is the reply being received a success, whose body goes to `output`? */
static int body_to_file(transfer *t)
{
    long status = 0;
    if (t->out_path == NULL)
        return 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    return status >= 200 && status < 300;
}

/* ** open `output` at the first byte of a 2xx body; when the reply announces its length, the
 * file's blocks are reserved at once (fewer allocations as it grows, and a disk too small for
 * it fails before the transfer rather than at its end) */
static int open_output(transfer *t)
{
    curl_off_t announced = -1;
    if (t->out_fd >= 0)
        return 0;
    do
        t->out_fd = open(t->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    while (t->out_fd < 0 && errno == EINTR);
    if (t->out_fd < 0) {
        t->out_errno = errno ? errno : EIO;
        return -1;
    }
    curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__)
    if (announced > 0) {
        int err = posix_fallocate(t->out_fd, 0, (off_t)announced);
        if (err == ENOSPC || err == EFBIG) {
            t->out_errno = err;
            return -1;
        }
        if (err == 0)
            t->out_reserved = announced;
        /* else (a file system without it): the file grows as it is written */
    }
#else
    (void)announced; /* no portable preallocation: the file grows as it is written */
#endif
    return 0;
}

/* ** write the whole chunk to the output; 0 or -1 (t->out_errno says why) */
static int write_all(transfer *t, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(t->out_fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            t->out_errno = n < 0 && errno ? errno : EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ** write what the buffer holds; 0 or -1 */
static int flush_output(transfer *t)
{
    size_t n = t->out_buf_len;
    t->out_buf_len = 0;
    return n > 0 ? write_all(t, t->out_buf, n) : 0;
}

/* ** after the body: the rest written, the reservation cut to what came, the file closed; 0 or
 * -1 */
static int close_output(transfer *t)
{
    int failed = flush_output(t) != 0;
    if (t->out_reserved > 0 && t->out_reserved != t->out_bytes &&
        ftruncate(t->out_fd, (off_t)t->out_bytes) != 0)
        failed = 1;
    if (close(t->out_fd) != 0)
        failed = 1;
    t->out_fd = -1;
    return failed ? -1 : 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    transfer *t = (transfer *)ud;
    size_t len = size * n;
    if (t->out_fd >= 0 || body_to_file(t)) {
        if (open_output(t) != 0)
            return 0;
        if (t->out_buf == NULL && (t->out_buf = (char *)malloc(DOWNLOAD_BUFFER)) == NULL) {
            t->out_errno = ENOMEM;
            return 0;
        }
        if (len > DOWNLOAD_BUFFER - t->out_buf_len && flush_output(t) != 0)
            return 0;
        if (len >= DOWNLOAD_BUFFER) {
            if (write_all(t, p, len) != 0)
                return 0;
        } else {
            memcpy(t->out_buf + t->out_buf_len, p, len);
            t->out_buf_len += len;
        }
        t->out_bytes += (curl_off_t)len;
        return len;
    }
    if (len > t->max_reply - t->body.len) {
        t->too_large = 1;
        return 0;
    }
    if (buffer_append(&t->body, p, len) != 0)
        return 0;
    return len;
}

#define VISIT_SECONDS 0.25
#define PROGRESS_SECONDS 0.05 /* on_progress runs at most this often (but for the last bytes) */
static char visit_key; /* its address keys the no-op Lua function in the registry */

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ** keep the error at the top of L and ask libcurl to abort */
static int keep_error(lua_State *L, transfer *t)
{
    t->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1; /* abort; the error is raised after libcurl returns */
}

/* ** run a Lua function that does nothing: a hook a signal handler set (Ctrl-C in lua.c) runs
 * there and its error ("interrupted!") ends the transfer */
static int visit_lua(lua_State *L, transfer *t)
{
    if (!lua_checkstack(L, 3))
        return 0;
    lua_pushlightuserdata(L, &visit_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        if (luaL_loadbuffer(L, "return", 6, "=moonbatch") != 0) {
            lua_pop(L, 1);
            return 0;
        }
        lua_pushlightuserdata(L, &visit_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    if (lua_pcall(L, 0, 0, 0) != 0)
        return keep_error(L, t);
    return 0;
}

/* ** call on_progress(done, total) under lua_pcall; 0, or 1 (abort) when it raised */
static int call_progress(lua_State *L, transfer *t, curl_off_t done, curl_off_t total, double now)
{
    t->last_done = done;
    t->last_total = total;
    t->last_call = t->last_visit = now;
    if (!lua_checkstack(L, 3))
        return 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->progress_ref);
    lua_pushnumber(L, (lua_Number)done);
    lua_pushnumber(L, (lua_Number)total);
    if (lua_pcall(L, 2, 0, 0) != 0)
        return keep_error(L, t);
    return 0;
}

/* ** libcurl's progress callback: calls on_progress(done, total) when the numbers change (the
 * bytes sent for a transfer that uploads, its small reply being no progress anyone waits for,
 * else the bytes received), at most every PROGRESS_SECONDS but for the last bytes (and
 * transfer_finish makes the final call), and lets Lua run at least every VISIT_SECONDS. A
 * transfer without on_progress calls into Lua only for those visits. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    transfer *t = (transfer *)ud;
    lua_State *L = *t->runner;
    curl_off_t done = dlnow, total = dltotal;
    double now = monotonic_seconds();
    if (t->mime != NULL || ultotal > 0) {
        done = ulnow;
        total = ultotal;
    }
    t->seen_done = done;
    t->seen_total = total;
    if (t->progress_ref == LUA_NOREF || (total == 0 && done == 0) ||
        (done == t->last_done && total == t->last_total) ||
        (now - t->last_call < PROGRESS_SECONDS && !(total > 0 && done == total))) {
        if (now - t->last_visit < VISIT_SECONDS)
            return 0;
        t->last_visit = now;
        return visit_lua(L, t);
    }
    return call_progress(L, t, done, total, now);
}

/* ** at the end of a transfer, on_progress hears the last numbers if the rate limit held them */
static void final_progress(lua_State *L, transfer *t)
{
    if (t->progress_ref == LUA_NOREF || t->error_ref != LUA_NOREF ||
        (t->seen_total == 0 && t->seen_done == 0) ||
        (t->seen_done == t->last_done && t->seen_total == t->last_total))
        return;
    call_progress(L, t, t->seen_done, t->seen_total, monotonic_seconds());
}

/* ---------------------------------------------------------------- reading options */

#define WHO "moonbatch.core"
#define string_option(L, idx, name, required) options_string((L), (idx), (name), (required), WHO)
/* a number in [0, max]: NaN, infinities and values a cast to long or size_t cannot hold raise */
#define number_option(L, idx, name, dflt, max) options_range((L), (idx), (name), (dflt), 0, (max), WHO)
/* seconds whose milliseconds fit a 32-bit long (CURLOPT_TIMEOUT_MS), a long's count */
#define MAX_SECONDS 2147483.0
#define MAX_LONG 2147483647.0
/* a size_t, and exact in a double */
#define MAX_BYTES ((double)SIZE_MAX < 9007199254740992.0 ? (double)SIZE_MAX : 9007199254740992.0)
#define get_option(L, idx, name, type) options_get((L), (idx), (name), (type), WHO)

/* header names and values must not smuggle in another header */
static void check_header_text(lua_State *L, const char *s, size_t len, const char *what)
{
    if (memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL || strlen(s) != len)
        luaL_error(L, "moonbatch.core: bad option 'headers' (%s contains CR, LF or NUL)", what);
}

static void setup_headers(lua_State *L, transfer *t, int opts)
{
    if (!get_option(L, opts, "headers", LUA_TTABLE)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        size_t nlen, vlen;
        const char *name, *value;
        struct curl_slist *grown;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "moonbatch.core: bad option 'headers' (string names and values expected)");
        name = lua_tolstring(L, -2, &nlen);
        value = lua_tolstring(L, -1, &vlen);
        check_header_text(L, name, nlen, "a name");
        check_header_text(L, value, vlen, "a value");
        if (nlen == 0 || memchr(name, ':', nlen) != NULL)
            luaL_error(L, "moonbatch.core: bad option 'headers' (bad header name '%s')", name);
        lua_pushfstring(L, vlen ? "%s: %s" : "%s;", name, value);
        grown = curl_slist_append(t->headers, lua_tostring(L, -1));
        if (grown == NULL)
            luaL_error(L, "moonbatch.core: out of memory");
        t->headers = grown;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* ** a part of the form: {name=, value=} or {name=, file=, filename=, content_type=} */
static int setup_form_part(lua_State *L, transfer *t, int part)
{
    const char *name = string_option(L, part, "name", 1);
    const char *value = string_option(L, part, "value", 0);
    const char *file = string_option(L, part, "file", 0);
    const char *filename = string_option(L, part, "filename", 0);
    const char *content_type = string_option(L, part, "content_type", 0);
    curl_mimepart *p;
    if ((value == NULL) == (file == NULL))
        luaL_error(L, "moonbatch.core: form part '%s' needs exactly one of 'value' or 'file'", name);
    p = curl_mime_addpart(t->mime);
    if (p == NULL || curl_mime_name(p, name) != CURLE_OK)
        luaL_error(L, "moonbatch.core: out of memory");
    if (file != NULL) {
        const char *identity = string_option(L, part, "identity", 0);
        int validate = get_option(L, part, "validate", LUA_TTABLE) ? lua_gettop(L) : 0;
        if (setup_file_part(L, t, p, file, validate, identity) != 0)
            return -1;
        lua_pop(L, 1);
    } else {
        size_t vlen;
        lua_getfield(L, part, "value");
        value = lua_tolstring(L, -1, &vlen);
        if (curl_mime_data(p, value, vlen) != CURLE_OK)
            luaL_error(L, "moonbatch.core: out of memory");
        lua_pop(L, 1);
    }
    if (filename != NULL && curl_mime_filename(p, filename) != CURLE_OK)
        luaL_error(L, "moonbatch.core: out of memory");
    if (content_type != NULL && curl_mime_type(p, content_type) != CURLE_OK)
        luaL_error(L, "moonbatch.core: out of memory");
    return 0;
}

static int setup_form(lua_State *L, transfer *t, int opts)
{
    int i, n, form;
    if (!get_option(L, opts, "form", LUA_TTABLE)) {
        lua_pop(L, 1);
        return 0;
    }
    form = lua_gettop(L);
    t->mime = curl_mime_init(t->easy);
    if (t->mime == NULL)
        luaL_error(L, "moonbatch.core: out of memory");
    n = (int)lua_rawlen(L, form);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, form, i);
        if (!lua_istable(L, -1))
            luaL_error(L, "moonbatch.core: bad option 'form' (part %d is not a table)", i);
        if (setup_form_part(L, t, lua_gettop(L)) != 0) {
            lua_settop(L, form - 1);
            return -1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    curl_easy_setopt(t->easy, CURLOPT_MIMEPOST, t->mime);
    return 0;
}

static int setup_body(lua_State *L, transfer *t, int opts, int encode_idx)
{
    size_t len;
    const char *body;
    int has_body = get_option(L, opts, "body", LUA_TSTRING);
    int has_json;
    lua_pop(L, 1);
    lua_getfield(L, opts, "json");
    has_json = !lua_isnil(L, -1);
    if (has_body && has_json)
        luaL_error(L, "moonbatch.core: options 'body' and 'json' exclude each other");
    if (has_json) {
        lua_pushvalue(L, encode_idx);
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 1, 0) != 0)
            luaL_error(L, "moonbatch.core: bad option 'json' (%s)", lua_tostring(L, -1));
    } else if (has_body) {
        lua_pop(L, 1);
        lua_getfield(L, opts, "body");
    } else {
        lua_pop(L, 1);
        return 0;
    }
    body = lua_tolstring(L, -1, &len);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(t->easy, CURLOPT_COPYPOSTFIELDS, body);
    lua_pop(L, 1);
    if (has_json) {
        struct curl_slist *grown = curl_slist_append(t->headers, "Content-Type: application/json");
        if (grown == NULL)
            luaL_error(L, "moonbatch.core: out of memory");
        t->headers = grown;
    }
    return 1;
}

int transfer_setup(lua_State *L, transfer *t, CURL *easy, int opts, int encode_idx)
{
    const char *url, *method, *cainfo;
    double timeout, connect_timeout, low_speed_limit, low_speed_time;
    int has_body;

    opts = util_absindex(L, opts);
    encode_idx = util_absindex(L, encode_idx);
    luaL_checktype(L, opts, LUA_TTABLE);
    options_check_known(L, opts, known_options, WHO);
    url = string_option(L, opts, "url", 1);
    method = string_option(L, opts, "method", 0);
    cainfo = string_option(L, opts, "cainfo", 0);
    timeout = number_option(L, opts, "timeout", 0, MAX_SECONDS);
    connect_timeout = number_option(L, opts, "connect_timeout", 0, MAX_SECONDS);
    low_speed_limit = number_option(L, opts, "low_speed_limit", 0, MAX_LONG);
    low_speed_time = number_option(L, opts, "low_speed_time", 0, MAX_LONG - 1);
    t->max_reply = (size_t)number_option(L, opts, "max_reply_bytes", (double)DEFAULT_MAX_REPLY, MAX_BYTES);
    {
        /* copied: the path must not depend on the options table staying alive */
        const char *output = string_option(L, opts, "output", 0);
        if (output != NULL) {
            size_t len = strlen(output) + 1;
            t->out_path = (char *)malloc(len);
            if (t->out_path == NULL)
                luaL_error(L, "moonbatch.core: out of memory");
            memcpy(t->out_path, output, len);
        }
    }
    if (get_option(L, opts, "on_progress", LUA_TFUNCTION))
        t->progress_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        lua_pop(L, 1);

    t->easy = easy;
    curl_easy_reset(easy); /* keeps the live connections, DNS and TLS session caches */
    setup_headers(L, t, opts);
    if (setup_form(L, t, opts) != 0)
        return -1;
    has_body = setup_body(L, t, opts, encode_idx);
    if (has_body && t->mime != NULL)
        luaL_error(L, "moonbatch.core: options 'form' and 'body'/'json' exclude each other");

    if (get_option(L, opts, "query", LUA_TTABLE)) {
        lua_pushstring(L, url);
        options_push_query(L, -2, strchr(url, '?') == NULL, WHO);
        lua_concat(L, 2);
        curl_easy_setopt(easy, CURLOPT_URL, lua_tostring(L, -1)); /* libcurl copies it */
        lua_pop(L, 2);
    } else {
        lua_pop(L, 1);
        curl_easy_setopt(easy, CURLOPT_URL, url);
    }
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L); /* never squash "/../": ids are segments */
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "moonbatch/0.1 libcurl/" LIBCURL_VERSION);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    /* stated, not assumed: TLS peers are verified, and redirects are never followed (so the
     * Authorization header cannot travel to another host) */
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    if (t->out_path != NULL) /* a download: fewer, larger reads and writes */
        curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, (long)DOWNLOAD_BUFFER);
    if (t->headers != NULL)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    if (cainfo != NULL)
        curl_easy_setopt(easy, CURLOPT_CAINFO, cainfo);
    if (timeout > 0)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000 + 0.5));
    if (connect_timeout > 0)
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout * 1000 + 0.5));
    if (low_speed_limit > 0 && low_speed_time > 0) {
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, (long)low_speed_limit);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long)(low_speed_time + 0.5));
    }
    if (method != NULL) {
        if (strcmp(method, "GET") == 0) {
            if (has_body || t->mime != NULL)
                luaL_error(L, "moonbatch.core: a GET request cannot carry a body");
        } else if (strcmp(method, "POST") == 0) {
            if (!has_body && t->mime == NULL) {
                curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
                curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "");
            }
        } else if (strcmp(method, "DELETE") == 0 || strcmp(method, "PUT") == 0
                   || strcmp(method, "PATCH") == 0) {
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
        } else {
            luaL_error(L, "moonbatch.core: bad option 'method' (unsupported method '%s')", method);
        }
    }
    /* always: on_progress when given, and Lua's visits (see visit_lua) */
    t->L = L;
    if (t->runner == NULL)
        t->runner = &t->L;
    t->last_done = t->last_total = -1;
    t->seen_done = t->seen_total = 0;
    t->last_visit = monotonic_seconds();
    t->last_call = t->last_visit - 1; /* the first numbers are reported at once */
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    return 0;
}

static const char *failure_kind(CURLcode code)
{
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_READ_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        return "io";
    default:
        return "network";
    }
}

int transfer_finish(lua_State *L, transfer *t, CURLcode code)
{
    long status = 0;
    final_progress(L, t);
    if (t->error_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->error_ref);
        return lua_error(L);
    }
    if (t->files != NULL && check_outcome(L, t) != 0)
        return 3;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_OK && body_to_file(t)) {
        /* an empty success still leaves its (empty) file; a failed close loses data */
        int closed = open_output(t) == 0 ? close_output(t) : -1;
        if (closed != 0 && t->out_errno == 0)
            t->out_errno = errno ? errno : EIO;
    }
    if (t->out_errno != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "cannot write '%s': %s", t->out_path, strerror(t->out_errno));
        transfer_fail(L, "io", msg);
        lua_pushstring(L, t->out_path);
        lua_setfield(L, -2, "path");
        return 3;
    }
    if (code != CURLE_OK) {
        const char *detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(code);
        if (t->too_large) {
            char msg[96];
            snprintf(msg, sizeof msg, "reply larger than %lu bytes (max_reply_bytes)",
                     (unsigned long)t->max_reply);
            transfer_fail(L, "decode", msg);
        } else {
            transfer_fail(L, failure_kind(code), detail);
        }
        lua_pushinteger(L, (lua_Integer)code);
        lua_setfield(L, -2, "curl_code");
        if (status >= 200) { /* a 1xx alone (100 Continue) is no reply */
            lua_pushinteger(L, (lua_Integer)status);
            lua_setfield(L, -2, "status");
        }
        return 3;
    }
    {
        long connects = 0;
        double seconds = 0;
        reply_push(L, status, t->head.data ? t->head.data : "", t->head.len,
                   t->body.data ? t->body.data : "", t->body.len);
        curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
        curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &seconds);
        lua_pushinteger(L, (lua_Integer)connects);
        lua_setfield(L, -2, "connects");
        lua_pushnumber(L, (lua_Number)seconds);
        lua_setfield(L, -2, "seconds");
        if (t->check != NULL && t->check->offset == t->check->size) {
            validate_push_report(L, &t->check->scanner); /* what the upload checked */
            lua_setfield(L, -2, "validation");
        }
        if (t->out_path != NULL && status >= 200 && status < 300) {
            lua_pushstring(L, t->out_path);
            lua_setfield(L, -2, "output");
            lua_pushnumber(L, (lua_Number)t->out_bytes);
            lua_setfield(L, -2, "output_bytes");
        }
    }
    return 2;
}
