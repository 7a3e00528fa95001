/* transfer.h: one HTTP exchange on a curl easy handle, configured from a Lua options table. */
#ifndef MOONBATCH_TRANSFER_H
#define MOONBATCH_TRANSFER_H

#include <stdio.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "lua.h"
#include "buffer.h"
#include "validate.h"
#include "readahead.h"

#define TRANSFER_TYPE "moonbatch.core.transfer"

/* A file part, read by transfer.c's read callback from a descriptor opened at setup, whose size
 * and modification time are checked again when its last byte is read: a file that shrank, grew
 * or was rewritten while it was sent fails the call (kind "io") before the body is complete.
 * A validated part (form part option `validate`) is also read through the validator: one
 * pass over the file checks and uploads it. Its first bytes are read and checked before the
 * request starts, so a small file, or a problem near the start, sends nothing; a later problem
 * stops the transfer before the body is complete, so the server never gets a whole file. The
 * rest of the file is then scanned locally: the report lists every problem, as core.validate's. */
typedef struct upload_check {
    struct upload_check *next;   /* the transfer's other file parts */
    int validating;              /* the part goes through the validator */
    validate_scanner scanner;
    validate_config config;      /* kept to restart the scan when libcurl rewinds the part */
    char *endpoint;              /* config.endpoint points here (the Lua string may go) */
    char *path;
    int fd;
    struct stat opened;          /* the file when it was opened */
    char *head;                  /* the file's first head_len bytes, checked at setup */
    size_t head_len;
    curl_off_t size;             /* the file's size */
    curl_off_t offset;           /* bytes read from the file and scanned */
    curl_off_t sent;             /* bytes handed to libcurl since it last rewound the part */
    int stopped;                 /* a problem stopped the transfer (or kept it from starting) */
    int changed;                 /* the file shrank, grew or was rewritten while it was read */
    int read_errno;              /* why reading the file failed, 0 when it did not */
    readahead *ahead;            /* the thread reading and checking past the head, or NULL
                                  * (then check_read reads and scans the file itself) */
} upload_check;

/* A transfer is a userdata created closed (every resource NULL) before any curl resource is
 * acquired, so a Lua error raised while reading options leaks nothing: __gc releases it. */
typedef struct transfer {
    CURL *easy;                  /* borrowed from a session while configured, else NULL */
    struct curl_slist *headers;
    curl_mime *mime;
    buffer head;                 /* raw header lines of the final response */
    buffer body;                 /* reply body */
    size_t max_reply;            /* cap on the body, in bytes */
    int too_large;               /* the write callback refused a body over max_reply */
    lua_State *L;                /* the thread running the transfer, for the progress callback */
    lua_State **runner;          /* where to find that thread: &L, or the multi's current one */
    CURLM *multi;                /* the multi handle the transfer is added to, or NULL */
    int owns_easy;               /* the easy handle is the transfer's own (multi transfers) */
    CURL *easy_owned;            /* that handle, kept for cleanup once `easy` is unbound */
    int progress_ref;            /* LUA_NOREF or the on_progress function */
    int error_ref;               /* LUA_NOREF or the error raised by on_progress */
    curl_off_t last_done, last_total; /* what on_progress was last told */
    curl_off_t seen_done, seen_total; /* what libcurl last said */
    double last_visit;           /* monotonic seconds when Lua last ran during the transfer */
    double last_call;            /* monotonic seconds when on_progress last ran */
    char *out_path;              /* `output`: a 2xx body is written to this file, else NULL */
    int out_fd;                  /* opened at the first byte of a 2xx body, else -1 */
    curl_off_t out_bytes;
    curl_off_t out_reserved;     /* bytes preallocated for the announced length, else 0 */
    char *out_buf;               /* the body's bytes not written yet (libcurl hands them over
                                  * 16 KiB at a time; they go to the file a MiB at a time) */
    size_t out_buf_len;
    int out_errno;               /* why writing the output failed, 0 when it did not */
    upload_check *files;         /* the file parts, or NULL */
    upload_check *check;         /* the validated one among them, or NULL */
    char errbuf[CURL_ERROR_SIZE];
    char failure[512];           /* why setup refused an input (an unreadable file) */
} transfer;

/* ** push a new closed transfer userdata */
transfer *transfer_new(lua_State *L);
/* ** configure `easy` from the options table at `opts`; raises on a misused option.
 * `encode_idx` is the stack index of the JSON encode function. Returns 0, or -1 for an input
 * failure that must not raise (a file that cannot be read): t->failure says why. */
int transfer_setup(lua_State *L, transfer *t, CURL *easy, int opts, int encode_idx);
/* ** after the transfer: push `body, res` (status, headers) or `nil, msg, info`; returns the
 * count. Raises the error that on_progress raised, if any. The caller releases the transfer. */
int transfer_finish(lua_State *L, transfer *t, CURLcode code);
/* ** release every resource (a multi transfer leaves its multi and frees its own handle);
 * idempotent */
void transfer_release(lua_State *L, transfer *t);
/* ** core.file_identity(path): a regular file's identity (device, inode, size, mtime) as a string
 * and its size, or nil, msg, info (opened without blocking); what a form part's `identity` expects */
int transfer_file_identity(lua_State *L);
/* ** register the transfer metatable */
void transfer_open(lua_State *L);
/* ** push `nil, msg, info{kind=kind}`; returns 3 */
int transfer_fail(lua_State *L, const char *kind, const char *msg);

#endif
