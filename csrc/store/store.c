/* store.c: moonbatch.store, the job layer's C module: SQLite (open, exec, prepared statements),
 * an exclusive OS file lock, and a line reader that finds a result line's custom_id and usage. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "../compat.h"
#include "../util.h"

#define DB_TYPE "moonbatch.store.db"
#define STMT_TYPE "moonbatch.store.statement"
#define LOCK_TYPE "moonbatch.store.lock"
#define READER_TYPE "moonbatch.store.reader"
#define BUSY_MS 10000    /* how long a statement waits for another connection's write */
#define HOLDER_BYTES 256 /* what is read of another holder's lock file */

typedef struct store_db {
    sqlite3 *db; /* NULL once closed */
} store_db;

typedef struct store_stmt {
    sqlite3_stmt *stmt; /* NULL once finalized */
    sqlite3 *db;        /* for its error messages; closed with sqlite3_close_v2 after us */
} store_stmt;

typedef struct store_lock {
    int fd; /* -1 once released */
} store_lock;

typedef struct store_reader {
    FILE *f;     /* NULL once closed */
    char *line;  /* getline's buffer */
    size_t size; /* its capacity */
} store_reader;

/* database ------------------------------------------------------------------------------- */

static store_db *check_db(lua_State *L)
{
    store_db *d = (store_db *)luaL_checkudata(L, 1, DB_TYPE);
    if (d->db == NULL)
        luaL_error(L, "moonbatch.store: the database is closed");
    return d;
}

/* nil, "PATH: MESSAGE" */
static int db_failure(lua_State *L, sqlite3 *db, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
    return 2;
}

/* store.open(path): the database at `path` (made when missing), or nil, msg */
static int store_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    store_db *d = (store_db *)lua_newuserdata(L, sizeof *d);
    d->db = NULL; /* closed until it is open: an error below leaks nothing */
    luaL_setmetatable(L, DB_TYPE);
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        int n = db_failure(L, d->db, path);
        sqlite3_close(d->db);
        d->db = NULL;
        return n;
    }
    sqlite3_busy_timeout(d->db, BUSY_MS);
    sqlite3_extended_result_codes(d->db, 1);
    return 1;
}

/* db:exec(sql): true, or nil, msg (several statements may be given) */
static int db_exec(lua_State *L)
{
    store_db *d = check_db(L);
    const char *sql = luaL_checkstring(L, 2);
    char *err = NULL;
    if (sqlite3_exec(d->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : sqlite3_errmsg(d->db));
        sqlite3_free(err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* db:prepare(sql): a statement, or nil, msg */
static int db_prepare(lua_State *L)
{
    store_db *d = check_db(L);
    size_t n;
    const char *sql = luaL_checklstring(L, 2, &n);
    store_stmt *s = (store_stmt *)lua_newuserdata(L, sizeof *s);
    s->stmt = NULL;
    s->db = d->db;
    luaL_setmetatable(L, STMT_TYPE);
    if (sqlite3_prepare_v2(d->db, sql, (int)n, &s->stmt, NULL) != SQLITE_OK) {
        lua_pushnil(L);
        lua_pushstring(L, sqlite3_errmsg(d->db));
        return 2;
    }
    return 1;
}

/* db:changes(): the rows the last statement inserted, updated or deleted */
static int db_changes(lua_State *L)
{
    lua_pushinteger(L, sqlite3_changes(check_db(L)->db));
    return 1;
}

static int db_close(lua_State *L)
{
    store_db *d = (store_db *)luaL_checkudata(L, 1, DB_TYPE);
    /* a no-op once closed (NULL); else a zombie until its statements are finalized */
    sqlite3_close_v2(d->db);
    d->db = NULL;
    return 0;
}

/* statements ------------------------------------------------------------------------------ */

static store_stmt *check_stmt(lua_State *L)
{
    store_stmt *s = (store_stmt *)luaL_checkudata(L, 1, STMT_TYPE);
    if (s->stmt == NULL)
        luaL_error(L, "moonbatch.store: the statement is finalized");
    return s;
}

/* stmt:bind(...): the arguments as its parameters 1..n (nil is NULL, a boolean 0 or 1);
 * returns the statement */
static int stmt_bind(lua_State *L)
{
    store_stmt *s = check_stmt(L);
    int i, n = lua_gettop(L) - 1, rc = SQLITE_OK;
    sqlite3_reset(s->stmt);
    sqlite3_clear_bindings(s->stmt);
    if (n > sqlite3_bind_parameter_count(s->stmt))
        return luaL_error(L, "moonbatch.store: %d values for %d parameters", n,
                          sqlite3_bind_parameter_count(s->stmt));
    for (i = 1; i <= n && rc == SQLITE_OK; i++) {
        int at = i + 1;
        switch (lua_type(L, at)) {
        case LUA_TNIL:
            rc = sqlite3_bind_null(s->stmt, i);
            break;
        case LUA_TBOOLEAN:
            rc = sqlite3_bind_int(s->stmt, i, lua_toboolean(L, at));
            break;
        case LUA_TNUMBER: {
            lua_Number x = lua_tonumber(L, at);
#if LUA_VERSION_NUM >= 503
            if (lua_isinteger(L, at))
                rc = sqlite3_bind_int64(s->stmt, i, (sqlite3_int64)lua_tointeger(L, at));
            else
#endif
            if (x >= -9007199254740992.0 && x <= 9007199254740992.0 && x == (lua_Number)(sqlite3_int64)x)
                rc = sqlite3_bind_int64(s->stmt, i, (sqlite3_int64)x);
            else
                rc = sqlite3_bind_double(s->stmt, i, (double)x);
            break;
        }
        case LUA_TSTRING: {
            size_t len;
            const char *text = lua_tolstring(L, at, &len);
            rc = sqlite3_bind_text(s->stmt, i, text, (int)len, SQLITE_TRANSIENT);
            break;
        }
        default:
            return luaL_error(L, "moonbatch.store: bad value #%d to bind (%s)", i, luaL_typename(L, at));
        }
    }
    if (rc != SQLITE_OK)
        return luaL_error(L, "moonbatch.store: bind: %s", sqlite3_errmsg(s->db));
    lua_settop(L, 1);
    return 1;
}

/* stmt:step(): true when a row is there, false when done, or nil, msg (the statement reset) */
static int stmt_step(lua_State *L)
{
    store_stmt *s = check_stmt(L);
    int rc = sqlite3_step(s->stmt);
    if (rc == SQLITE_ROW) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == SQLITE_DONE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, sqlite3_errmsg(s->db));
    sqlite3_reset(s->stmt);
    return 2;
}

/* stmt:row(): the current row's columns (NULL is nil) */
static int stmt_row(lua_State *L)
{
    store_stmt *s = check_stmt(L);
    int i, n = sqlite3_data_count(s->stmt);
    luaL_checkstack(L, n, "too many columns");
    for (i = 0; i < n; i++) {
        switch (sqlite3_column_type(s->stmt, i)) {
        case SQLITE_INTEGER:
            lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(s->stmt, i));
            break;
        case SQLITE_FLOAT:
            lua_pushnumber(L, (lua_Number)sqlite3_column_double(s->stmt, i));
            break;
        case SQLITE_NULL:
            lua_pushnil(L);
            break;
        default: {
            const void *bytes = sqlite3_column_blob(s->stmt, i);
            lua_pushlstring(L, bytes ? (const char *)bytes : "", (size_t)sqlite3_column_bytes(s->stmt, i));
            break;
        }
        }
    }
    return n;
}

static int stmt_reset(lua_State *L)
{
    sqlite3_reset(check_stmt(L)->stmt);
    return 0;
}

static int stmt_finalize(lua_State *L)
{
    store_stmt *s = (store_stmt *)luaL_checkudata(L, 1, STMT_TYPE);
    sqlite3_finalize(s->stmt); /* a no-op once finalized (NULL) */
    s->stmt = NULL;
    return 0;
}

/* the lock -------------------------------------------------------------------------------- */

/* store.lock(path, note): an exclusive fcntl lock on the file `path` (made when missing), which
 * then holds "PID NOTE"; the kernel releases it when the process ends. The lock, or nil, msg,
 * holder (what the file says of the process holding it) */
static int store_lock_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t note_len;
    const char *note = luaL_optlstring(L, 2, "", &note_len);
    struct flock fl;
    char text[64];
    int len;
    store_lock *k = (store_lock *)lua_newuserdata(L, sizeof *k);
    k->fd = -1;
    luaL_setmetatable(L, LOCK_TYPE);
    /* no O_TRUNC: the file may say who holds the lock now */
    k->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (k->fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open %s: %s", path, strerror(errno));
        return 2;
    }
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(k->fd, F_SETLK, &fl) != 0) {
        int e = errno;
        char holder[HOLDER_BYTES];
        ssize_t got = (e == EACCES || e == EAGAIN) ? pread(k->fd, holder, sizeof holder, 0) : -1;
        close(k->fd);
        k->fd = -1;
        lua_pushnil(L);
        if (e == EACCES || e == EAGAIN) {
            lua_pushfstring(L, "%s is locked by another process", path);
            lua_pushlstring(L, holder, got > 0 ? (size_t)got : 0);
            return 3;
        }
        lua_pushfstring(L, "cannot lock %s: %s", path, strerror(e));
        return 2;
    }
    len = snprintf(text, sizeof text, "%ld ", (long)getpid());
    if (ftruncate(k->fd, 0) != 0 || pwrite(k->fd, text, (size_t)len, 0) != len ||
        pwrite(k->fd, note, note_len, len) != (ssize_t)note_len) {
        int e = errno;
        close(k->fd);
        k->fd = -1;
        lua_pushnil(L);
        lua_pushfstring(L, "cannot write %s: %s", path, strerror(e));
        return 2;
    }
    return 1;
}

/* lock:release(): the lock is free for other processes */
static int lock_release(lua_State *L)
{
    store_lock *k = (store_lock *)luaL_checkudata(L, 1, LOCK_TYPE);
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    return 0;
}

/* the line reader ------------------------------------------------------------------------ */

/* the end of the JSON string whose opening quote is at s[i]: the index of its closing quote, or
 * n when it does not end on the line */
static size_t string_end(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i;
    }
    return n;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    int k;
    for (k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

static void add_utf8(luaL_Buffer *b, unsigned c)
{
    if (c < 0x80) {
        luaL_addchar(b, (char)c);
    } else if (c < 0x800) {
        luaL_addchar(b, (char)(0xC0 | (c >> 6)));
        luaL_addchar(b, (char)(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        luaL_addchar(b, (char)(0xE0 | (c >> 12)));
        luaL_addchar(b, (char)(0x80 | ((c >> 6) & 0x3F)));
        luaL_addchar(b, (char)(0x80 | (c & 0x3F)));
    } else {
        luaL_addchar(b, (char)(0xF0 | (c >> 18)));
        luaL_addchar(b, (char)(0x80 | ((c >> 12) & 0x3F)));
        luaL_addchar(b, (char)(0x80 | ((c >> 6) & 0x3F)));
        luaL_addchar(b, (char)(0x80 | (c & 0x3F)));
    }
}

/* push the decoded text of the JSON string s[from..to) (between its quotes) */
static void push_string(lua_State *L, const char *s, size_t from, size_t to)
{
    luaL_Buffer b;
    size_t i;
    if (memchr(s + from, '\\', to - from) == NULL) { /* the common case: nothing to decode */
        lua_pushlstring(L, s + from, to - from);
        return;
    }
    luaL_buffinit(L, &b);
    for (i = from; i < to; i++) {
        unsigned c, low;
        if (s[i] != '\\' || i + 1 >= to) {
            luaL_addchar(&b, s[i]);
            continue;
        }
        i++;
        switch (s[i]) {
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
        case 'u':
            if (i + 4 < to && hex4(s + i + 1, &c)) {
                i += 4;
                if (c >= 0xD800 && c < 0xDC00 && i + 6 < to && s[i + 1] == '\\' && s[i + 2] == 'u' &&
                    hex4(s + i + 3, &low) && low >= 0xDC00 && low < 0xE000) {
                    c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
                add_utf8(&b, c);
            } else {
                luaL_addchar(&b, 'u');
            }
            break;
        default: luaL_addchar(&b, s[i]); break; /* \" \\ \/ */
        }
    }
    luaL_pushresult(&b);
}

/* the integer at s[i] (after blanks), or -1 when there is none */
static long long integer_at(const char *s, size_t i, size_t n)
{
    long long v = -1;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9' && v < 1000000000000000LL; i++)
        v = (v < 0 ? 0 : v * 10) + (s[i] - '0');
    return v;
}

#define KEY_IS(s, i, j, k) ((j) - (i) - 1 == sizeof(k) - 1 && memcmp((s) + (i) + 1, (k), sizeof(k) - 1) == 0)

/* a JSON line's facts, found in one pass without decoding it: the top-level custom_id's span (raw, between its quotes; NULL
 * when none), whether it has escapes, and the first prompt_tokens and completion_tokens
 * keys' integers at any depth (-1 when absent) */
typedef struct line_facts {
    const char *id;
    size_t id_length;
    int id_escaped;
    long long prompt, completion;
} line_facts;

static void line_scan(const char *s, size_t n, line_facts *f)
{
    size_t i = 0;
    int depth = 0;
    f->id = NULL;
    f->id_length = 0;
    f->id_escaped = 0;
    f->prompt = f->completion = -1;
    while (i < n) {
        char c = s[i];
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == '"') {
            size_t j = string_end(s, i, n), k = j + 1;
            while (k < n && (s[k] == ' ' || s[k] == '\t'))
                k++;
            if (k < n && s[k] == ':') {
                k++;
                if (depth == 1 && f->id == NULL && KEY_IS(s, i, j, "custom_id")) {
                    while (k < n && (s[k] == ' ' || s[k] == '\t'))
                        k++;
                    if (k < n && s[k] == '"') {
                        size_t e = string_end(s, k, n);
                        f->id = s + k + 1;
                        f->id_length = e - k - 1;
                        f->id_escaped = memchr(f->id, '\\', f->id_length) != NULL;
                    }
                } else if (f->prompt < 0 && KEY_IS(s, i, j, "prompt_tokens")) {
                    f->prompt = integer_at(s, k, n);
                } else if (f->completion < 0 && KEY_IS(s, i, j, "completion_tokens")) {
                    f->completion = integer_at(s, k, n);
                }
            }
            i = j;
        }
        i++;
    }
}

/* push the line's top-level custom_id (nil when none) and its prompt_tokens and
 * completion_tokens (nil when none), as line_scan finds them */
static void scan_line(lua_State *L, const char *s, size_t n)
{
    line_facts f;
    line_scan(s, n, &f);
    if (f.id != NULL)
        push_string(L, f.id, 0, f.id_length);
    else
        lua_pushnil(L);
    if (f.prompt >= 0)
        lua_pushinteger(L, (lua_Integer)f.prompt);
    else
        lua_pushnil(L);
    if (f.completion >= 0)
        lua_pushinteger(L, (lua_Integer)f.completion);
    else
        lua_pushnil(L);
}

/* store.reader(path): a reader of the lines of `path`, or nil, msg, info */
static int store_reader_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    store_reader *r = (store_reader *)lua_newuserdata(L, sizeof *r);
    r->f = NULL;
    r->line = NULL;
    r->size = 0;
    luaL_setmetatable(L, READER_TYPE);
    r->f = fopen(path, "rb");
    if (r->f == NULL)
        return util_read_failure(L, path, "io", errno, NULL);
    return 1;
}

/* reader:next(): the next line that is not blank (without its line end), its custom_id,
 * prompt_tokens and completion_tokens (each nil when absent); nil at the end */
static int reader_next(lua_State *L)
{
    store_reader *r = (store_reader *)luaL_checkudata(L, 1, READER_TYPE);
    ssize_t got;
    if (r->f == NULL)
        return luaL_error(L, "moonbatch.store: the reader is closed");
    while ((got = getline(&r->line, &r->size, r->f)) >= 0) {
        size_t n = (size_t)got, i;
        while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r'))
            n--;
        for (i = 0; i < n && (r->line[i] == ' ' || r->line[i] == '\t'); i++)
            ;
        if (i == n)
            continue;
        lua_pushlstring(L, r->line, n);
        scan_line(L, r->line, n);
        return 4;
    }
    if (ferror(r->f))
        return luaL_error(L, "moonbatch.store: read error: %s", strerror(errno));
    lua_pushnil(L);
    return 1;
}

static int reader_close(lua_State *L)
{
    store_reader *r = (store_reader *)luaL_checkudata(L, 1, READER_TYPE);
    if (r->f != NULL) {
        fclose(r->f);
        r->f = NULL;
    }
    free(r->line);
    r->line = NULL;
    r->size = 0;
    return 0;
}

/* store.scan(line): the custom_id, prompt_tokens and completion_tokens of one line */
static int store_scan(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    scan_line(L, s, n);
    return 3;
}

/* files --------------------------------------------------------------------------------- */

/* store.identity(path): "DEV:INODE:SIZE:MTIME" of the file at `path` (a file rewritten, even
 * to the same size, gets another), or nil, msg, info */
static int store_identity(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    char text[128];
    if (stat(path, &st) != 0)
        return util_read_failure(L, path, "io", errno, NULL);
    snprintf(text, sizeof text, "%llu:%llu:%lld:%lld.%09ld", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             (long)st.st_mtim.tv_nsec);
    lua_pushstring(L, text);
    return 1;
}

/* a file mapped into memory, read only (an empty file maps to nothing); the pages before
 * `released` are unmapped already, so that a scan of a large file keeps little of it resident */
typedef struct mapped {
    const char *data;
    size_t size, released;
} mapped;

#define RELEASE_STEP (8u << 20) /* bytes scanned between two releases of the pages behind */

/* unmap the whole pages before data + keep (nothing is read there any more) */
static void release_before(mapped *m, size_t keep)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), upto = keep / page * page;
    if (m->data != NULL && upto > m->released + RELEASE_STEP) {
        munmap((void *)(m->data + m->released), upto - m->released);
        m->released = upto;
    }
}

static int map_file(const char *path, mapped *m, int *e)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    m->data = NULL;
    m->size = 0;
    m->released = 0;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *e = errno;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        *e = EINVAL;
        return -1;
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            *e = errno;
            close(fd);
            return -1;
        }
        m->data = (const char *)p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

static void unmap_file(mapped *m)
{
    if (m->data != NULL && m->size > m->released)
        munmap((void *)(m->data + m->released), m->size - m->released);
    m->data = NULL;
}

/* t[key] = v, t the table on top of the stack */
static void set_integer(lua_State *L, const char *key, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
}

/* set {offset, length, lines} as item `index` of the table on top of the stack */
static void add_shard(lua_State *L, int index, size_t offset, size_t length, double lines)
{
    lua_createtable(L, 3, 0);
    lua_pushinteger(L, (lua_Integer)offset);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, (lua_Integer)length);
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, (lua_Integer)lines);
    lua_rawseti(L, -2, 3);
    lua_rawseti(L, -2, index);
}

/* store.split(path, max_lines, max_bytes): the shards of the file at `path`, cut at line ends,
 * each at most max_lines lines and max_bytes bytes: { {offset, length, lines}, ... } (a last
 * line without its newline counts), or nil, msg, info; a line longer than max_bytes: nil, msg,
 * { kind = "validation", line = N, bytes = B } */
static int store_split(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Number max_lines = luaL_checknumber(L, 2), max_bytes = luaL_checknumber(L, 3);
    mapped m;
    int e = 0, count = 0;
    size_t at = 0, start = 0, size = 0;
    double lines = 0, line_number = 0;
    if (map_file(path, &m, &e) != 0)
        return util_read_failure(L, path, "io", e, NULL);
    lua_newtable(L);
    while (at < m.size) {
        const char *nl = (const char *)memchr(m.data + at, '\n', m.size - at);
        size_t n = nl ? (size_t)(nl - (m.data + at)) + 1 : m.size - at;
        line_number++;
        if ((double)n > max_bytes) {
            unmap_file(&m);
            lua_pushnil(L);
            lua_pushfstring(L, "line %d is %d bytes, more than a shard may hold (%d)", (int)line_number, (int)n,
                            (int)max_bytes);
            lua_createtable(L, 0, 3);
            lua_pushstring(L, "validation");
            lua_setfield(L, -2, "kind");
            set_integer(L, "line", (lua_Integer)line_number);
            set_integer(L, "bytes", (lua_Integer)n);
            return 3;
        }
        if (lines > 0 && (lines + 1 > max_lines || (double)(size + n) > max_bytes)) {
            add_shard(L, ++count, start, size, lines);
            start += size;
            size = 0;
            lines = 0;
        }
        size += n;
        lines++;
        at += n;
        release_before(&m, at);
    }
    if (lines > 0) {
        add_shard(L, ++count, start, size, lines);
    }
    unmap_file(&m);
    return 1;
}

/* the merge ----------------------------------------------------------------------------- */

/* write out[from, to) of the mapped file to `out`: 0, or -1 (errno set) */
static int write_span(FILE *out, const char *from, const char *to)
{
    if (to > from && fwrite(from, 1, (size_t)(to - from), out) != (size_t)(to - from))
        return -1;
    return 0;
}

/* store.merge(stmt, path, out_path, shard, outcome): every line of `path` that is not blank
 * appended to `out_path` when stmt (INSERT OR IGNORE ... VALUES (custom_id, shard, outcome,
 * prompt_tokens, completion_tokens)) inserts a row for it (a line without custom_id is kept
 * without a row). One pass over the mapped file; runs of kept lines are written whole.
 * Returns kept, prompt_tokens and completion_tokens summed over the kept lines, or nil, msg, info */
static int store_merge(lua_State *L)
{
    store_stmt *s = check_stmt(L);
    const char *path = luaL_checkstring(L, 2), *out_path = luaL_checkstring(L, 3);
    lua_Integer shard = luaL_checkinteger(L, 4);
    size_t outcome_len;
    const char *outcome = luaL_checklstring(L, 5, &outcome_len);
    mapped m;
    FILE *out;
    int e = 0, failed = 0;
    size_t at = 0;
    const char *run = NULL; /* the start of the run of kept lines not yet written */
    long long kept = 0, prompt = 0, completion = 0;
    char why[256];
    why[0] = '\0';
    if (map_file(path, &m, &e) != 0)
        return util_read_failure(L, path, "io", e, NULL);
    out = fopen(out_path, "ab");
    if (out == NULL) {
        e = errno;
        unmap_file(&m);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot write %s: %s", out_path, strerror(e));
        return 2;
    }
    while (at < m.size && !failed) {
        const char *line = m.data + at, *nl = (const char *)memchr(line, '\n', m.size - at);
        size_t n = nl ? (size_t)(nl - line) : m.size - at, content = n, i;
        int keep = 1;
        at += nl ? n + 1 : n;
        while (content > 0 && line[content - 1] == '\r')
            content--;
        for (i = 0; i < content && (line[i] == ' ' || line[i] == '\t'); i++)
            ;
        if (i == content) {
            keep = 0; /* a blank line: dropped */
        } else {
            line_facts f;
            line_scan(line, content, &f);
            if (f.id != NULL) {
                int rc;
                sqlite3_reset(s->stmt);
                if (f.id_escaped) { /* decoded, as the ids of a request's input are */
                    push_string(L, f.id, 0, f.id_length);
                    rc = sqlite3_bind_text(s->stmt, 1, lua_tostring(L, -1), (int)lua_rawlen(L, -1), SQLITE_TRANSIENT);
                    lua_pop(L, 1);
                } else {
                    rc = sqlite3_bind_text(s->stmt, 1, f.id, (int)f.id_length, SQLITE_STATIC);
                }
                if (rc == SQLITE_OK)
                    rc = sqlite3_bind_int64(s->stmt, 2, (sqlite3_int64)shard);
                if (rc == SQLITE_OK)
                    rc = sqlite3_bind_text(s->stmt, 3, outcome, (int)outcome_len, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                    rc = f.prompt >= 0 ? sqlite3_bind_int64(s->stmt, 4, f.prompt) : sqlite3_bind_null(s->stmt, 4);
                if (rc == SQLITE_OK)
                    rc = f.completion >= 0 ? sqlite3_bind_int64(s->stmt, 5, f.completion)
                                           : sqlite3_bind_null(s->stmt, 5);
                if (rc == SQLITE_OK)
                    rc = sqlite3_step(s->stmt);
                if (rc != SQLITE_DONE) {
                    snprintf(why, sizeof why, "%s", sqlite3_errmsg(s->db));
                    failed = 1;
                    break;
                }
                keep = sqlite3_changes(s->db) > 0;
            }
            if (keep) {
                kept++;
                prompt += f.prompt > 0 ? f.prompt : 0;
                completion += f.completion > 0 ? f.completion : 0;
            }
        }
        if (run != NULL && (size_t)(line - run) >= RELEASE_STEP) { /* written, so its pages can go */
            if (write_span(out, run, line) != 0)
                failed = 1;
            run = line;
        }
        release_before(&m, (size_t)((run != NULL ? run : line) - m.data));
        /* the line's bytes, with a "\n" end whatever it had: kept lines extend the run, a
         * dropped one (or a line end to rewrite) ends it */
        if (keep && content == n && nl != NULL) {
            if (run == NULL)
                run = line;
        } else {
            if (run != NULL && write_span(out, run, line) != 0)
                failed = 1;
            run = NULL;
            if (keep && !failed && (write_span(out, line, line + content) != 0 || fputc('\n', out) == EOF))
                failed = 1;
        }
    }
    if (!failed && run != NULL && write_span(out, run, m.data + at) != 0)
        failed = 1;
    sqlite3_reset(s->stmt);
    sqlite3_clear_bindings(s->stmt); /* SQLITE_STATIC: nothing may point into the mapping */
    e = errno;
    if (fclose(out) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    unmap_file(&m);
    if (failed) {
        lua_pushnil(L);
        if (why[0] != '\0')
            lua_pushfstring(L, "the job store: %s", why);
        else
            lua_pushfstring(L, "cannot write %s: %s", out_path, strerror(e));
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)kept);
    lua_pushinteger(L, (lua_Integer)prompt);
    lua_pushinteger(L, (lua_Integer)completion);
    return 3;
}

/* the estimate -------------------------------------------------------------------------- */

/* what a line says about its tokens: the text of its string values (not keys, nor the values of
 * custom_id, method, url, model and role) as ASCII bytes and other characters, its messages
 * (role keys), and its max_tokens (or max_completion_tokens; -1 when none) */
typedef struct line_text {
    long long ascii, other, messages, max_tokens;
} line_text;

static int quiet_key(const char *s, size_t i, size_t j)
{
    return KEY_IS(s, i, j, "custom_id") || KEY_IS(s, i, j, "method") || KEY_IS(s, i, j, "url") ||
           KEY_IS(s, i, j, "model") || KEY_IS(s, i, j, "role");
}

static void count_text(const char *s, size_t from, size_t to, line_text *t)
{
    size_t i;
    for (i = from; i < to; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' && i + 1 < to) { /* an escape: \uXXXX is one character, others one byte */
            if (s[i + 1] == 'u') {
                t->other++;
                i += 5;
            } else {
                t->ascii++;
                i++;
            }
        } else if (c < 0x80) {
            t->ascii++;
        } else if (c >= 0xC0) { /* a UTF-8 lead byte: one character */
            t->other++;
        }
    }
}

static void text_scan(const char *s, size_t n, line_text *t)
{
    size_t i = 0;
    int quiet = 0; /* the string value that follows belongs to a quiet key */
    t->ascii = t->other = t->messages = 0;
    t->max_tokens = -1;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            size_t j = string_end(s, i, n), k = j + 1;
            while (k < n && (s[k] == ' ' || s[k] == '\t'))
                k++;
            if (k < n && s[k] == ':') { /* a key */
                quiet = quiet_key(s, i, j);
                if (KEY_IS(s, i, j, "role"))
                    t->messages++;
                if (t->max_tokens < 0 && (KEY_IS(s, i, j, "max_tokens") || KEY_IS(s, i, j, "max_completion_tokens")))
                    t->max_tokens = integer_at(s, k + 1, n);
            } else {
                if (!quiet)
                    count_text(s, i + 1, j, t);
                quiet = 0;
            }
            i = j;
        } else if (c == ',' || c == '{' || c == '[') {
            quiet = 0;
        }
        i++;
    }
}

/* store.estimate(path): one pass over the file at `path`: { lines, bytes, ascii, other,
 * messages, max_tokens (summed over the lines that have one), unbounded (lines without) }
 * (the text counted as text_scan says), or nil, msg, info */
static int store_estimate(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    mapped m;
    int e = 0;
    size_t at = 0;
    long long lines = 0, ascii = 0, other = 0, messages = 0, max_tokens = 0, unbounded = 0;
    if (map_file(path, &m, &e) != 0)
        return util_read_failure(L, path, "io", e, NULL);
    while (at < m.size) {
        const char *line = m.data + at, *nl = (const char *)memchr(line, '\n', m.size - at);
        size_t n = nl ? (size_t)(nl - line) : m.size - at, i;
        line_text t;
        at += nl ? n + 1 : n;
        for (i = 0; i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'); i++)
            ;
        if (i < n) {
            text_scan(line, n, &t);
            lines++;
            ascii += t.ascii;
            other += t.other;
            messages += t.messages;
            if (t.max_tokens >= 0)
                max_tokens += t.max_tokens;
            else
                unbounded++;
        }
        release_before(&m, at);
    }
    unmap_file(&m);
    lua_createtable(L, 0, 8);
    set_integer(L, "lines", (lua_Integer)lines);
    set_integer(L, "bytes", (lua_Integer)m.size);
    set_integer(L, "ascii", (lua_Integer)ascii);
    set_integer(L, "other", (lua_Integer)other);
    set_integer(L, "messages", (lua_Integer)messages);
    set_integer(L, "max_tokens", (lua_Integer)max_tokens);
    set_integer(L, "unbounded", (lua_Integer)unbounded);
    return 1;
}

/* the module ----------------------------------------------------------------------------- */

static const luaL_Reg db_methods[] = {
    { "exec", db_exec }, { "prepare", db_prepare }, { "changes", db_changes }, { "close", db_close },
    { NULL, NULL } };
static const luaL_Reg stmt_methods[] = {
    { "bind", stmt_bind }, { "step", stmt_step }, { "row", stmt_row }, { "reset", stmt_reset },
    { "finalize", stmt_finalize }, { NULL, NULL } };
static const luaL_Reg lock_methods[] = { { "release", lock_release }, { NULL, NULL } };
static const luaL_Reg reader_methods[] = { { "next", reader_next }, { "close", reader_close }, { NULL, NULL } };
static const luaL_Reg store_functions[] = {
    { "open", store_open }, { "lock", store_lock_file }, { "reader", store_reader_open },
    { "scan", store_scan }, { "identity", store_identity }, { "split", store_split }, { "merge", store_merge },
    { "estimate", store_estimate }, { NULL, NULL } };

int luaopen_moonbatch_store(lua_State *L);

int luaopen_moonbatch_store(lua_State *L)
{
    util_newclass(L, DB_TYPE, db_methods, 0, db_close, NULL);
    util_newclass(L, STMT_TYPE, stmt_methods, 0, stmt_finalize, NULL);
    util_newclass(L, LOCK_TYPE, lock_methods, 0, lock_release, NULL);
    util_newclass(L, READER_TYPE, reader_methods, 0, reader_close, NULL);
    luaL_newlib(L, store_functions);
    lua_pushstring(L, sqlite3_libversion());
    lua_setfield(L, -2, "sqlite_version");
    return 1;
}
