/* reply.c: raw reply to Lua values: header block to a table, JSON body decoded to clean Lua values.
 *
 * The body is decoded here rather than by lua-cjson because the reply is the hot path of every
 * call (a files.list spent half its instructions in cjson.decode, mostly growing tables one key
 * at a time, then as much again copying the result to drop cjson.null and turn 3.0 into 3).
 * This decoder builds each table at its final size and gives the values the Lua layer wants.
 *
 * Caveats (what differs from lua-cjson's decode):
 * - JSON null is absent: an object member whose value is null is not set (and unsets the same
 *   key met before it: the last one wins), an array element that is null leaves a hole. There is
 *   no cjson.null in a decoded reply.
 * - A number that is integral and within +-2^53 is an integer (on Lua 5.3+); any other is a float.
 * - Duplicate keys: the last one wins (as cjson).
 * - Strings must be well-formed UTF-8 (cjson takes any bytes): a reply that is not fails as
 *   invalid JSON, naming the first byte of the bad sequence. A lone \u surrogate is an error
 *   too (as cjson); control characters are taken as they are (as cjson, except NUL, which
 *   cjson refuses).
 * - Nesting deeper than REPLY_MAX_DEPTH is an error. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "jsonbytes.h"
#include "reply.h"

#define REPLY_MAX_DEPTH 1000
/* values a container keeps on the Lua stack before they go into its table: a container with
 * fewer items gets a table of exactly its size; a longer one is flushed in batches */
#define REPLY_BATCH 64

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---------------------------------------------------------------- headers */

/* ** push header `name` lower-cased; set it in the table at -2 (joining repeats with ", ") */
static void set_header(lua_State *L, const char *name, size_t nlen, const char *val, size_t vlen)
{
    char lower[128];
    size_t i;
    if (nlen == 0 || nlen >= sizeof lower)
        return; /* an absurd header name is dropped, not an error */
    for (i = 0; i < nlen; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lua_pushlstring(L, lower, nlen);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, val, vlen);
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
        lua_pushlstring(L, val, vlen);
    }
    lua_rawset(L, -3);
}

/* ** push a table of the header lines in head[0..len) (status lines are skipped) */
static void push_headers(lua_State *L, const char *head, size_t len)
{
    const char *p = head, *end = head + len;
    lua_createtable(L, 0, 8);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && !(line_end - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
            const char *name_end = colon, *v = colon + 1, *v_end = line_end;
            while (name_end > p && is_space(name_end[-1]))
                name_end--;
            while (v < v_end && is_space(*v))
                v++;
            while (v_end > v && is_space(v_end[-1]))
                v_end--;
            set_header(L, p, (size_t)(name_end - p), v, (size_t)(v_end - v));
        }
        p = eol ? eol + 1 : end;
    }
}

/* ** does the body look like JSON: a JSON content type, or a first byte that opens a value */
static int looks_like_json(lua_State *L, int headers_idx, const char *body, size_t len)
{
    const char *ct;
    size_t i = 0;
    lua_getfield(L, headers_idx, "content-type");
    ct = lua_tostring(L, -1);
    lua_pop(L, 1); /* ct stays valid: the headers table still holds the string */
    if (ct != NULL && strstr(ct, "json") != NULL)
        return 1;
    while (i < len && is_space(body[i]))
        i++;
    return i < len && (body[i] == '{' || body[i] == '[' || body[i] == '"');
}

/* ---------------------------------------------------------------- the JSON decoder */

typedef struct decoder {
    lua_State *L;
    const char *start, *p, *end;
    int depth;
    char error[96]; /* why decoding stopped, when it did */
} decoder;

/* what a parsed value left on the stack */
enum { PUSHED_VALUE, PUSHED_NOTHING, FAILED }; /* PUSHED_NOTHING: it was null */

static int fail(decoder *d, const char *what)
{
    snprintf(d->error, sizeof d->error, "%s at byte %lu", what,
             (unsigned long)(d->p - d->start) + 1);
    return FAILED;
}

static void skip_space_run(decoder *d)
{
    const char *p = d->p, *end = d->end;
    while (p < end && is_space(*p))
        p++;
    d->p = p;
}

/* most tokens follow no whitespace at all (compact JSON): that test alone is inlined */
static inline void skip_space(decoder *d)
{
    if (d->p < d->end && is_space(*d->p))
        skip_space_run(d);
}

static int parse_value(decoder *d);

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned c = (unsigned char)p[i], h;
        if (c - '0' < 10)
            h = c - '0';
        else if ((c | 0x20) - 'a' < 6)
            h = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + h;
    }
    *out = v;
    return 0;
}

/* ** add code point `cp` to `b` as UTF-8 */
static void add_utf8(luaL_Buffer *b, unsigned cp)
{
    if (cp < 0x80) {
        luaL_addchar(b, (char)cp);
    } else if (cp < 0x800) {
        luaL_addchar(b, (char)(0xC0 | cp >> 6));
        luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        luaL_addchar(b, (char)(0xE0 | cp >> 12));
        luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
        luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
    } else {
        luaL_addchar(b, (char)(0xF0 | cp >> 18));
        luaL_addchar(b, (char)(0x80 | (cp >> 12 & 0x3F)));
        luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
        luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
    }
}

/* bytes that end a plain run inside a string: '"', '\\' and the first byte of a UTF-8 sequence
 * (checked apart) */
static const unsigned char string_stop[256] = JSON_STRING_BYTES(0, 1, 0, 1);

/* ** the length of the well-formed UTF-8 sequence at p (whose first byte is 0x80 or above), or
 * 0: no overlong form, no surrogate, nothing past U+10FFFF, nothing cut short */
static size_t utf8_length(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], low = 0x80, high = 0xBF;
    size_t n, i;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (c == 0xE0)
        low = 0xA0;
    else if (c == 0xED)
        high = 0x9F;
    else if (c == 0xF0)
        low = 0x90;
    else if (c == 0xF4)
        high = 0x8F;
    if ((size_t)(end - p) < n || p[1] < low || p[1] > high)
        return 0;
    for (i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* ** past the plain bytes of a string from `p`: at its closing quote, a backslash or the end of
 * the body; NULL (the failure noted) at a byte where no well-formed UTF-8 sequence starts */
static const char *string_run(decoder *d, const char *p)
{
    const unsigned char *u = (const unsigned char *)p, *end = (const unsigned char *)d->end;
    for (;;) {
        size_t n;
        while (u < end && !string_stop[*u])
            u++;
        if (u == end || *u < 0x80)
            return (const char *)u;
        n = utf8_length(u, end);
        if (n == 0) {
            d->p = (const char *)u;
            fail(d, "invalid UTF-8");
            return NULL;
        }
        u += n;
    }
}

/* ** the rest of a string with escapes, from d->p (just after its first backslash); the bytes
 * before it, [from, d->p - 1), are plain. Pushes the decoded string. */
static int parse_escaped(decoder *d, const char *from)
{
    luaL_Buffer b;
    luaL_buffinit(d->L, &b);
    luaL_addlstring(&b, from, (size_t)(d->p - 1 - from));
    for (;;) {
        const char *run = d->p;
        unsigned cp;
        char c;
        if (d->p >= d->end)
            goto unterminated;
        c = *d->p++;
        switch (c) {
        case '"': case '\\': case '/': luaL_addchar(&b, c); break;
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
        case 'u':
            if (d->end - d->p < 4 || hex4(d->p, &cp) != 0)
                goto bad_escape;
            d->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                goto bad_escape; /* a low surrogate alone */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned low;
                if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' ||
                    hex4(d->p + 2, &low) != 0 || low < 0xDC00 || low > 0xDFFF)
                    goto bad_escape; /* a high surrogate without its low half */
                d->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            add_utf8(&b, cp);
            break;
        default:
            d->p = run;
            goto bad_escape;
        }
        /* the plain bytes up to the next backslash or the closing quote */
        run = d->p;
        d->p = string_run(d, run);
        if (d->p == NULL)
            goto bad_utf8;
        luaL_addlstring(&b, run, (size_t)(d->p - run));
        if (d->p >= d->end)
            goto unterminated;
        if (*d->p++ == '"') {
            luaL_pushresult(&b);
            return PUSHED_VALUE;
        }
    }
bad_utf8:
    luaL_pushresult(&b);
    lua_pop(d->L, 1);
    return FAILED; /* noted by string_run */
bad_escape:
    luaL_pushresult(&b);
    lua_pop(d->L, 1);
    return fail(d, "invalid escape in a string");
unterminated:
    luaL_pushresult(&b);
    lua_pop(d->L, 1);
    return fail(d, "unterminated string");
}

/* ** a string whose opening quote is just before d->p */
static int parse_string(decoder *d)
{
    const char *from = d->p, *p = string_run(d, d->p), *end = d->end;
    /* most strings have no escape: pushed straight from the body */
    if (p == NULL)
        return FAILED;
    if (p >= end) {
        d->p = p;
        return fail(d, "unterminated string");
    }
    d->p = p + 1;
    if (*p == '"') {
        lua_pushlstring(d->L, from, (size_t)(p - from));
        return PUSHED_VALUE;
    }
    return parse_escaped(d, from);
}

/* ** push a number as the Lua layer wants it: integral values within +-2^53 as integers */
static void push_number(lua_State *L, lua_Number n)
{
    if (n > -9007199254740992.0 && n < 9007199254740992.0 && (lua_Number)(long long)n == n)
        lua_pushinteger(L, (lua_Integer)n);
    else
        lua_pushnumber(L, n);
}

/* ** a number, JSON's grammar: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? */
static int parse_number(decoder *d)
{
    const char *from = d->p, *p = d->p, *end = d->end;
    int negative = 0, integral = 1, digits = 0;
    lua_Number whole = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p < end && *p == '0') {
        p++;
        digits = 1;
    } else {
        while (p < end && (unsigned)(*p - '0') < 10) {
            whole = whole * 10 + (*p - '0');
            p++;
            digits++;
        }
    }
    if (digits == 0)
        return fail(d, "invalid number");
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || (unsigned)(*p - '0') >= 10)
            goto bad;
        while (p < end && (unsigned)(*p - '0') < 10)
            p++;
    }
    if (p < end && (*p | 0x20) == 'e') {
        integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || (unsigned)(*p - '0') >= 10)
            goto bad;
        while (p < end && (unsigned)(*p - '0') < 10)
            p++;
    }
    d->p = p;
    if (integral && digits <= 15) {
        /* exact: 15 digits stay below 2^53 */
        push_number(d->L, negative ? -whole : whole);
    } else {
        /* Lua's own conversion (strtod, with the locale's decimal point handled) */
        lua_Number n;
        lua_pushlstring(d->L, from, (size_t)(p - from));
        n = lua_tonumber(d->L, -1);
        lua_pop(d->L, 1);
        push_number(d->L, n);
    }
    return PUSHED_VALUE;
bad:
    d->p = p;
    return fail(d, "invalid number");
}

static int parse_literal(decoder *d, const char *word, size_t len)
{
    if ((size_t)(d->end - d->p) < len || memcmp(d->p, word, len) != 0)
        return fail(d, "invalid value");
    d->p += len;
    return PUSHED_VALUE;
}

/* ** move the `n` values at the stack top into the table at `t`, from index `first` on */
static void flush_array(lua_State *L, int t, int first, int n)
{
    int i;
    for (i = n - 1; i >= 0; i--)
        lua_rawseti(L, t, first + i);
}

/* ** an array whose '[' is just before d->p. Elements wait on the stack (REPLY_BATCH at most)
 * so that a short array's table is made at its final size. */
static int parse_array(decoder *d)
{
    lua_State *L = d->L;
    int t = 0, n = 0, count = 0, r;
    lua_pushnil(L); /* the table's place, filled at the first flush or at the end */
    t = lua_gettop(L);
    skip_space(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        lua_createtable(L, 0, 0);
        lua_replace(L, t);
        return PUSHED_VALUE;
    }
    for (;;) {
        if (!lua_checkstack(L, 4))
            return fail(d, "nesting too deep");
        r = parse_value(d);
        if (r == FAILED)
            return FAILED;
        if (r == PUSHED_NOTHING)
            lua_pushnil(L); /* null: a hole */
        n++;
        if (n == REPLY_BATCH) {
            if (lua_isnil(L, t)) {
                lua_createtable(L, REPLY_BATCH * 2, 0);
                lua_replace(L, t);
            }
            flush_array(L, t, count + 1, n);
            count += n;
            n = 0;
        }
        skip_space(d);
        if (d->p >= d->end)
            return fail(d, "unterminated array");
        if (*d->p == ',') {
            d->p++;
            skip_space(d);
            continue;
        }
        if (*d->p == ']') {
            d->p++;
            break;
        }
        return fail(d, "expected ',' or ']'");
    }
    if (lua_isnil(L, t)) {
        lua_createtable(L, n, 0);
        lua_replace(L, t);
    }
    flush_array(L, t, count + 1, n);
    return PUSHED_VALUE;
}

/* ** move the `n` key-value pairs above the table at `t` into it, in order (a later duplicate
 * key wins; a nil value, a JSON null, unsets the key), and pop them */
static void flush_object(lua_State *L, int t, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        lua_pushvalue(L, t + 1 + 2 * i);
        if (lua_isnil(L, t + 2 + 2 * i)) {
            /* unset only a key already there: a nil stored for a new key could leave it in the
             * table, unseen, on Lua 5.1 to 5.3 */
            lua_pushvalue(L, -1);
            lua_rawget(L, t);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 2);
                continue;
            }
            lua_pop(L, 1);
        }
        lua_pushvalue(L, t + 2 + 2 * i);
        lua_rawset(L, t);
    }
    lua_settop(L, t);
}

/* ** an object whose '{' is just before d->p; members wait on the stack like array elements */
static int parse_object(decoder *d)
{
    lua_State *L = d->L;
    int t, n = 0, r;
    lua_pushnil(L);
    t = lua_gettop(L);
    skip_space(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        lua_createtable(L, 0, 0);
        lua_replace(L, t);
        return PUSHED_VALUE;
    }
    for (;;) {
        if (!lua_checkstack(L, 6))
            return fail(d, "nesting too deep");
        if (d->p >= d->end || *d->p != '"')
            return fail(d, "expected a key");
        d->p++;
        if (parse_string(d) == FAILED)
            return FAILED;
        skip_space(d);
        if (d->p >= d->end || *d->p != ':')
            return fail(d, "expected ':'");
        d->p++;
        skip_space(d);
        r = parse_value(d);
        if (r == FAILED)
            return FAILED;
        if (r == PUSHED_NOTHING)
            lua_pushnil(L); /* null: unsets the key (see flush_object) */
        n++;
        if (n == REPLY_BATCH) {
            if (lua_isnil(L, t)) {
                lua_createtable(L, 0, REPLY_BATCH * 2);
                lua_replace(L, t);
            }
            flush_object(L, t, n);
            n = 0;
        }
        skip_space(d);
        if (d->p >= d->end)
            return fail(d, "unterminated object");
        if (*d->p == ',') {
            d->p++;
            skip_space(d);
            continue;
        }
        if (*d->p == '}') {
            d->p++;
            break;
        }
        return fail(d, "expected ',' or '}'");
    }
    if (lua_isnil(L, t)) {
        lua_createtable(L, 0, n);
        lua_replace(L, t);
    }
    flush_object(L, t, n);
    return PUSHED_VALUE;
}

/* ** the value at d->p (no space before it); pushes it unless it is null */
static int parse_value(decoder *d)
{
    int r;
    if (d->p >= d->end)
        return fail(d, "expected a value");
    switch (*d->p) {
    case '"':
        d->p++;
        return parse_string(d);
    case '{':
    case '[':
        if (d->depth >= REPLY_MAX_DEPTH)
            return fail(d, "nesting too deep");
        d->depth++;
        r = *d->p++ == '{' ? parse_object(d) : parse_array(d);
        d->depth--;
        return r;
    case 't':
        lua_pushboolean(d->L, 1);
        if (parse_literal(d, "true", 4) == FAILED) {
            lua_pop(d->L, 1);
            return FAILED;
        }
        return PUSHED_VALUE;
    case 'f':
        lua_pushboolean(d->L, 0);
        if (parse_literal(d, "false", 5) == FAILED) {
            lua_pop(d->L, 1);
            return FAILED;
        }
        return PUSHED_VALUE;
    case 'n':
        return parse_literal(d, "null", 4) == FAILED ? FAILED : PUSHED_NOTHING;
    default:
        if (*d->p == '-' || (unsigned)(*d->p - '0') < 10)
            return parse_number(d);
        return fail(d, "invalid value");
    }
}

/* ** decode body[0..len): push the value (nil for a top-level null) and return 1, or push
 * nothing, leave the stack as it was, and return 0 with the reason in d->error */
static int decode_json(lua_State *L, decoder *d, const char *body, size_t len)
{
    int base = lua_gettop(L), r;
    d->L = L;
    d->start = d->p = body;
    d->end = body + len;
    d->depth = 0;
    d->error[0] = '\0';
    skip_space(d);
    r = parse_value(d);
    if (r != FAILED) {
        skip_space(d);
        if (d->p < d->end) {
            r = fail(d, "unexpected bytes after the value");
        }
    }
    if (r == FAILED) {
        lua_settop(L, base);
        return 0;
    }
    if (r == PUSHED_NOTHING)
        lua_pushnil(L);
    return 1;
}

/* ---------------------------------------------------------------- the reply */

void reply_push(lua_State *L, long status, const char *head, size_t headlen, const char *body,
                size_t bodylen)
{
    int res_idx, headers_idx;
    lua_createtable(L, 0, 8);
    res_idx = lua_gettop(L);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, res_idx, "status");
    push_headers(L, head, headlen);
    headers_idx = lua_gettop(L);

    if (bodylen > 0 && looks_like_json(L, headers_idx, body, bodylen)) {
        decoder d;
        if (decode_json(L, &d, body, bodylen)) {
            lua_pushboolean(L, 1);
            lua_setfield(L, res_idx, "json");
        } else {
            lua_pushstring(L, d.error);
            lua_setfield(L, res_idx, "json_error");
            lua_pushlstring(L, body, bodylen);
            lua_pushboolean(L, 0);
            lua_setfield(L, res_idx, "json");
        }
    } else {
        lua_pushlstring(L, body, bodylen);
        lua_pushboolean(L, 0);
        lua_setfield(L, res_idx, "json");
    }
    /* stack: res, headers, body -> body, res */
    lua_insert(L, headers_idx);
    lua_setfield(L, res_idx, "headers");
    lua_insert(L, res_idx);
}
