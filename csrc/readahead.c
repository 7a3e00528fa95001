/* readahead.c: a validated upload's file checked on a second thread, ahead of libcurl's reads.
 *
 * One mutex and condition variable guard `checked`, `why` and `cancel`; the scanner, the
 * buffer and the counters are the thread's alone until the join. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, to count the CPUs this process may run on */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

#include "readahead.h"

#define BLOCK (256 * 1024) /* bytes read and checked at a time */

struct readahead {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t moved;        /* `checked` grew, or the thread stopped */
    int fd;
    uint64_t offset, size;       /* the thread's next byte, and the end */
    validate_scanner *scanner;
    char *block;
    uint64_t checked;            /* every byte before it is checked and has no problem */
    int done;                    /* the thread ended (at the end, or early: why != 0) */
    int why, err;                /* READAHEAD_ reason it stopped early, and the read's errno */
    int cancel;                  /* readahead_stop asks the thread to end */
    uint64_t scanned;            /* bytes fed to the scanner */
};

int readahead_useful(void)
{
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set) >= 2;
#endif
#if defined(_SC_NPROCESSORS_ONLN)
    return sysconf(_SC_NPROCESSORS_ONLN) >= 2;
#else
    return 0;
#endif
}

/* ** read want bytes at the thread's offset; 0, or the READAHEAD_ reason it could not */
static int read_block(readahead *r, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(r->fd, r->block + got, want - got, (off_t)(r->offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->err = errno;
            return READAHEAD_READ_ERROR;
        }
        if (n == 0)
            return READAHEAD_CHANGED; /* shorter than its size: it shrank */
        got += (size_t)n;
    }
    return 0;
}

static void *run(void *arg)
{
    readahead *r = (readahead *)arg;
    int why = 0, cancel = 0;
    while (why == 0 && !cancel && r->offset < r->size) {
        size_t want = r->size - r->offset < BLOCK ? (size_t)(r->size - r->offset) : BLOCK;
        why = read_block(r, want);
        if (why == 0) {
            validate_feed(r->scanner, r->block, want);
            r->scanned += want;
            r->offset += want;
            if (r->offset == r->size)
                validate_finish(r->scanner);
            if (r->scanner->problem_total > 0 || r->scanner->out_of_memory)
                why = READAHEAD_PROBLEM; /* this block is not passed */
        }
        pthread_mutex_lock(&r->lock);
        if (why != 0)
            r->why = why;
        else
            r->checked = r->offset;
        cancel = r->cancel;
        pthread_cond_broadcast(&r->moved);
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_lock(&r->lock);
    r->done = 1;
    pthread_cond_broadcast(&r->moved);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

readahead *readahead_start(int fd, uint64_t from, uint64_t size, validate_scanner *scanner)
{
    readahead *r = (readahead *)calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->block = (char *)malloc(BLOCK);
    if (r->block == NULL)
        goto no_block;
    r->fd = fd;
    r->offset = r->checked = from;
    r->size = size;
    r->scanner = scanner;
    if (pthread_mutex_init(&r->lock, NULL) != 0)
        goto no_lock;
    if (pthread_cond_init(&r->moved, NULL) != 0)
        goto no_cond;
    if (pthread_create(&r->thread, NULL, run, r) != 0)
        goto no_thread;
    return r;
no_thread:
    pthread_cond_destroy(&r->moved);
no_cond:
    pthread_mutex_destroy(&r->lock);
no_lock:
    free(r->block);
no_block:
    free(r);
    return NULL;
}

int readahead_wait(readahead *r, uint64_t upto)
{
    int ok;
    pthread_mutex_lock(&r->lock);
    while (r->checked < upto && !r->done)
        pthread_cond_wait(&r->moved, &r->lock);
    ok = r->checked >= upto;
    pthread_mutex_unlock(&r->lock);
    return ok ? 0 : -1;
}

int readahead_stop(readahead *r, uint64_t *scanned, int *err)
{
    int why;
    if (r == NULL)
        return 0;
    pthread_mutex_lock(&r->lock);
    r->cancel = 1;
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    why = r->why;
    *scanned = r->scanned;
    *err = r->err;
    pthread_cond_destroy(&r->moved);
    pthread_mutex_destroy(&r->lock);
    free(r->block);
    free(r);
    return why;
}
