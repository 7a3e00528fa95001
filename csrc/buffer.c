/* buffer.c: a growable byte buffer (reply bodies and header blocks). */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

int buffer_append(buffer *b, const char *p, size_t n)
{
    if (n > b->cap - b->len) {
        size_t want = b->cap ? b->cap : 4096;
        char *grown;
        while (want - b->len < n) {
            if (want > ((size_t)-1) / 2)
                return -1;
            want *= 2;
        }
        grown = realloc(b->data, want);
        if (grown == NULL)
            return -1;
        b->data = grown;
        b->cap = want;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void buffer_clear(buffer *b)
{
    b->len = 0;
}

void buffer_free(buffer *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
