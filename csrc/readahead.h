/* readahead.h: a validated upload's file checked on a second thread, ahead of libcurl's reads. */
#ifndef MOONBATCH_READAHEAD_H
#define MOONBATCH_READAHEAD_H

#include <stdint.h>

#include "validate.h"

/* The thread reads the file on its own (pread, its own buffer) and feeds it to the scanner as
 * fast as it can, publishing how far the check has gone; the upload's read callback reads the
 * file as it does without a check and waits only until the thread has checked past the bytes
 * it is about to hand to libcurl. So the scan's CPU goes to a second core, and the sending
 * thread does no more than curl's own. A block with a problem is never passed: the sender
 * stops before it. The scanner belongs to the thread from readahead_start to readahead_stop. */
typedef struct readahead readahead;

/* why the thread stopped before the end */
enum { READAHEAD_PROBLEM = 1, READAHEAD_READ_ERROR, READAHEAD_CHANGED };

/* ** is a second thread worth it: can this process run on two CPUs or more? */
int readahead_useful(void);
/* ** start checking bytes from..size of `fd` (read with pread: the descriptor's offset is not
 * touched); NULL when memory or threads run out */
readahead *readahead_start(int fd, uint64_t from, uint64_t size, validate_scanner *scanner);
/* ** wait until every byte before `upto` is checked: 0, or -1 when the thread stopped first */
int readahead_wait(readahead *r, uint64_t upto);
/* ** stop and join the thread; returns 0 or the READAHEAD_ reason it stopped early, with
 * *scanned the bytes it fed to the scanner and *err the errno of a read error. NULL-safe. */
int readahead_stop(readahead *r, uint64_t *scanned, int *err);

#endif
