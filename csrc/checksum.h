/* checksum.h: SHA-256 (FIPS 180-4), streaming, and core.checksum, its Lua binding over a file or
 * a byte range of one. */
#ifndef MOONBATCH_CHECKSUM_H
#define MOONBATCH_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define CHECKSUM_DIGEST_SIZE 32

typedef struct checksum_sha256 {
    uint32_t state[8];
    uint64_t length;          /* bytes fed so far */
    unsigned char block[64];  /* a partial block waiting for more bytes */
    size_t used;              /* bytes in block */
} checksum_sha256;

/* ** start a digest */
void checksum_sha256_init(checksum_sha256 *c);
/* ** feed the next `length` bytes (any split) */
void checksum_sha256_feed(checksum_sha256 *c, const void *data, size_t length);
/* ** pad, and write the 32-byte digest; `c` must be initialised again before reuse */
void checksum_sha256_finish(checksum_sha256 *c, unsigned char digest[CHECKSUM_DIGEST_SIZE]);

#ifndef CHECKSUM_CORE_ONLY
#include "lua.h"
/* ** core.checksum(path [, offset [, length]]): the SHA-256 of the file (or of `length` bytes
 * from `offset`) as 64 lower-case hex digits and the number of bytes read, or nil, msg, info */
int checksum_file(lua_State *L);
#endif

#endif
