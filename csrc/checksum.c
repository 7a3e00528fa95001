/* checksum.c: SHA-256 (FIPS 180-4) fed in pieces, and core.checksum, which digests a file or a
 * byte range of one in fixed-size reads (memory does not grow with the file). Large jobs use it
 * to name a shard's bytes, and to notice an input that changed between two runs.
 *
 * Caveats: offsets and lengths come from Lua numbers, so they are exact up to 2^53 bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

void checksum_sha256_init(checksum_sha256 *c)
{
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->state, initial, sizeof initial);
    c->length = 0;
    c->used = 0;
}

/* ** the compression function on one 64-byte block */
static void compress_block(uint32_t state[8], const unsigned char *p)
{
    uint32_t w[64];
    uint32_t a, b, c, d, e, f, g, h;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = state[0], b = state[1], c = state[2], d = state[3];
    e = state[4], f = state[5], g = state[6], h = state[7];
    for (i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                      round_constants[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1;
        d = c, c = b, b = a, a = t1 + t2;
    }
    state[0] += a, state[1] += b, state[2] += c, state[3] += d;
    state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

void checksum_sha256_feed(checksum_sha256 *c, const void *data, size_t length)
{
    const unsigned char *p = (const unsigned char *)data;
    c->length += length;
    if (c->used > 0) {
        size_t take = 64 - c->used < length ? 64 - c->used : length;
        memcpy(c->block + c->used, p, take);
        c->used += take, p += take, length -= take;
        if (c->used < 64)
            return;
        compress_block(c->state, c->block);
        c->used = 0;
    }
    for (; length >= 64; p += 64, length -= 64)
        compress_block(c->state, p);
    memcpy(c->block, p, length);
    c->used = length;
}

void checksum_sha256_finish(checksum_sha256 *c, unsigned char digest[CHECKSUM_DIGEST_SIZE])
{
    uint64_t bits = c->length * 8;
    int i;
    c->block[c->used++] = 0x80;
    if (c->used > 56) {
        memset(c->block + c->used, 0, 64 - c->used);
        compress_block(c->state, c->block);
        c->used = 0;
    }
    memset(c->block + c->used, 0, 56 - c->used);
    for (i = 0; i < 8; i++)
        c->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    compress_block(c->state, c->block);
    for (i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char)(c->state[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(c->state[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(c->state[i] >> 8);
        digest[4 * i + 3] = (unsigned char)c->state[i];
    }
}

#ifndef CHECKSUM_CORE_ONLY
#include "util.h"
#include "fsutil.h"

#define CHUNK_SIZE (256 * 1024)

static const char who[] = "moonbatch.core.checksum";

/* ** argument `i` as a byte count: an integer >= 0, or `dflt` (-1: none) when absent */
static double byte_count(lua_State *L, int i, const char *name, double dflt)
{
    double d;
    if (lua_isnoneornil(L, i))
        return dflt;
    if (lua_type(L, i) != LUA_TNUMBER)
        luaL_error(L, "%s: bad argument #%d '%s' (number expected, got %s)", who, i, name,
                   luaL_typename(L, i));
    d = (double)lua_tonumber(L, i);
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(long long)d)
        luaL_error(L, "%s: bad argument #%d '%s' (an integer >= 0 expected)", who, i, name);
    return d;
}

/* ** nil, msg, {kind = "io", path =, message =[, errno =]}; closes fd when it is open */
static int fail(lua_State *L, int fd, const char *path, int e, const char *why)
{
    if (fd >= 0)
        close(fd);
    return util_read_failure(L, path, "io", e, why);
}

int checksum_file(lua_State *L)
{
    static const char hex[] = "0123456789abcdef";
    checksum_sha256 c;
    unsigned char digest[CHECKSUM_DIGEST_SIZE];
    char text[2 * CHECKSUM_DIGEST_SIZE];
    const char *path;
    double offset, wanted, done = 0;
    char *chunk;
    struct stat st;
    char type_why[FSUTIL_WHY_SIZE];
    int fd, i;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "%s: bad argument #1 'path' (string expected, got %s)", who,
                          luaL_typename(L, 1));
    path = lua_tostring(L, 1);
    offset = byte_count(L, 2, "offset", 0);
    wanted = byte_count(L, 3, "length", -1);
    /* the buffer belongs to Lua, so nothing leaks whatever happens; no Lua error can be raised
     * from here on while the file is open */
    chunk = (char *)lua_newuserdata(L, CHUNK_SIZE);

    fd = fsutil_open_regular(path, &st, type_why);
    if (fd < 0)
        return fail(L, -1, path, errno, type_why);
    if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0)
        return fail(L, fd, path, errno, NULL);
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, (off_t)offset, 0, POSIX_FADV_SEQUENTIAL);
#endif
    checksum_sha256_init(&c);
    while (wanted < 0 || done < wanted) {
        size_t ask = CHUNK_SIZE;
        ssize_t n;
        if (wanted >= 0 && wanted - done < (double)ask)
            ask = (size_t)(wanted - done);
        n = read(fd, chunk, ask);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(L, fd, path, errno, NULL);
        }
        if (n == 0)
            break;
        checksum_sha256_feed(&c, chunk, (size_t)n);
        done += (double)n;
    }
    close(fd);
    if (wanted >= 0 && done < wanted) {
        char why[120];
        snprintf(why, sizeof why, "only %.0f of the %.0f bytes from offset %.0f are there", done,
                 wanted, offset);
        return fail(L, -1, path, 0, why);
    }
    checksum_sha256_finish(&c, digest);
    for (i = 0; i < CHECKSUM_DIGEST_SIZE; i++) {
        text[2 * i] = hex[digest[i] >> 4];
        text[2 * i + 1] = hex[digest[i] & 15];
    }
    lua_pushlstring(L, text, sizeof text);
    lua_pushinteger(L, (lua_Integer)done);
    return 2;
}

#endif /* CHECKSUM_CORE_ONLY */
