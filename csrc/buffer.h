/* buffer.h: a growable byte buffer with a size cap, filled from libcurl callbacks. */
#ifndef MOONBATCH_BUFFER_H
#define MOONBATCH_BUFFER_H

#include <stddef.h>

typedef struct buffer {
    char *data;
    size_t len;
    size_t cap;
} buffer;

/* ** append n bytes; returns 0 on success, -1 when memory runs out (buffer unchanged) */
int buffer_append(buffer *b, const char *p, size_t n);
/* ** forget the contents, keep the memory */
void buffer_clear(buffer *b);
/* ** release the memory; the buffer is empty and reusable afterwards */
void buffer_free(buffer *b);

#endif
