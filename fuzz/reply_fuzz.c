/* reply_fuzz.c: a libFuzzer harness for reply_push (csrc/reply.c), the C path that turns a raw
 * reply (status, header block, body) into Lua values, its JSON decoder included.
 *
 * One Lua 5.4 state serves every input. Each input is a raw HTTP reply: the header block runs up
 * to and including the first blank line ("\r\n\r\n" or "\n\n"), the body is the rest; an input
 * without a blank line is all body (empty header block). The status is the number on an
 * "HTTP/x NNN" first line, else 0. Head and body are copied into buffers of their exact size, so
 * a read one byte past either is caught.
 *
 * Checked: reply_push raises nothing and leaves exactly 2 values, `body, res`; res.status is the
 * status; res.json is a boolean; a body not decoded is the reply's bytes, unchanged; a decoded one
 * has no json_error; every header name is lower case, non-empty, under 128 bytes, without ':' or
 * a line break; every value is on one line; the header table is exactly what the input's header
 * lines say (re-read here independently, repeats joined with ", "). And the decoder against
 * lua-cjson (its stricter grammar aside, they must agree): a body it decodes (without a NUL
 * byte, where cjson stops), cjson decodes to
 * the same value (a cjson.null being an absent value; integral numbers within +-2^53 integers);
 * and a valid UTF-8 body cjson decodes, re-encoded by cjson, it decodes as cjson does.
 *
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *            -Icsrc -I/usr/include/lua5.4 fuzz/reply_fuzz.c csrc/reply.c -llua5.4 -o reply_fuzz
 *   ./reply_fuzz -max_len=8192 -max_total_time=60 fuzz/corpus/reply
 *
 * (`make fuzz` does this on a copy of the corpus; see fuzz/README.md.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "reply.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the state's stack between inputs: a private lua-cjson instance's decode, encode and null */
enum { CJSON_DECODE = 1, CJSON_ENCODE, CJSON_NULL, BASE = CJSON_NULL };
static lua_State *state;

/* ** abort with a message: libFuzzer then keeps the input as a crash */
static void fail(const char *what)
{
    fprintf(stderr, "reply_fuzz: %s\n", what);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    state = luaL_newstate();
    if (state == NULL)
        fail("no Lua state");
    luaL_openlibs(state);
    lua_getglobal(state, "require");
    lua_pushliteral(state, "cjson");
    if (lua_pcall(state, 1, 1, 0) != LUA_OK)
        fail(lua_tostring(state, -1));
    lua_getfield(state, -1, "new");
    lua_call(state, 0, 1);
    lua_getfield(state, -1, "decode");
    lua_getfield(state, -2, "encode");
    lua_getfield(state, -3, "null");
    lua_remove(state, 1);
    lua_remove(state, 1);
    if (lua_gettop(state) != BASE || lua_type(state, CJSON_NULL) != LUA_TLIGHTUSERDATA)
        fail("no cjson");
    return 0;
}

typedef struct reply_input {
    long status;
    const char *head, *body;
    size_t headlen, bodylen;
} reply_input;

/* ** under lua_pcall: reply_push, and the count of what it left */
static int call_reply_push(lua_State *L)
{
    const reply_input *in = (const reply_input *)lua_touserdata(L, 1);
    int before = lua_gettop(L);
    reply_push(L, in->status, in->head, in->headlen, in->body, in->bodylen);
    if (lua_gettop(L) != before + 2)
        fail("reply_push did not leave exactly 2 values");
    return 2;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ** the header table (at the top) holds only well-formed names, and values on one line */
static void check_header_table(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        size_t nlen, vlen, i;
        const char *name, *value;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            fail("a header name or value is not a string");
        name = lua_tolstring(L, -2, &nlen);
        value = lua_tolstring(L, -1, &vlen);
        if (nlen == 0 || nlen >= 128)
            fail("a header name is empty or too long");
        for (i = 0; i < nlen; i++)
            if ((name[i] >= 'A' && name[i] <= 'Z') || name[i] == ':' || name[i] == '\n')
                fail("a header name is not lower case or holds ':' or a line break");
        if (is_space(name[nlen - 1]))
            fail("a header name ends in white space");
        if (memchr(value, '\n', vlen) != NULL)
            fail("a header value spans lines");
        lua_pop(L, 1);
    }
}

/* ** the table at the top is exactly what head[0..len) says, re-read here independently: each
 * header line but status lines, its name trimmed at the end and lower-cased (dropped when empty
 * or 128 bytes or longer), its value trimmed, repeats joined with ", " in order */
static void check_header_lines(lua_State *L, const char *head, size_t len)
{
    size_t start = 0, count = 0;
    int got = lua_gettop(L), want;
    lua_newtable(L);
    want = lua_gettop(L);
    while (start < len) {
        size_t stop = start, colon, name_end, v, v_end, i;
        char lower[128];
        while (stop < len && head[stop] != '\n')
            stop++;
        for (colon = start; colon < stop && head[colon] != ':'; colon++)
            ;
        name_end = colon;
        while (name_end > start && is_space(head[name_end - 1]))
            name_end--;
        if (colon < stop && !(stop - start >= 5 && memcmp(head + start, "HTTP/", 5) == 0) &&
            name_end > start && name_end - start < sizeof lower) {
            for (i = start; i < name_end; i++)
                lower[i - start] = (char)(head[i] >= 'A' && head[i] <= 'Z' ? head[i] + 32 : head[i]);
            for (v = colon + 1; v < stop && is_space(head[v]); v++)
                ;
            for (v_end = stop; v_end > v && is_space(head[v_end - 1]); v_end--)
                ;
            lua_pushlstring(L, lower, name_end - start);
            lua_pushvalue(L, -1);
            lua_rawget(L, want);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushlstring(L, head + v, v_end - v);
            } else {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, head + v, v_end - v);
                lua_concat(L, 3);
            }
            lua_rawset(L, want);
        }
        start = stop + 1;
    }
    /* the same keys, the same values */
    lua_pushnil(L);
    while (lua_next(L, want) != 0) {
        count++;
        lua_pushvalue(L, -2);
        lua_rawget(L, got);
        if (!lua_rawequal(L, -1, -2))
            fail("a header line is not in the table as it should be");
        lua_pop(L, 2);
    }
    lua_pushnil(L);
    while (lua_next(L, got) != 0) {
        count--;
        lua_pop(L, 1);
    }
    if (count != 0)
        fail("the table holds a header that is not in the reply");
    lua_pop(L, 1);
}

/* ** the first blank line ends the header block: its length, or 0 when there is none */
static size_t head_length(const uint8_t *data, size_t size)
{
    size_t i;
    for (i = 0; i + 1 < size; i++) {
        if (data[i] == '\n' && data[i + 1] == '\n')
            return i + 2;
        if (i + 3 < size && memcmp(data + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return 0;
}

/* ** reply_push on `in`, checked: leaves body, res on the stack and returns res.json */
static int push_reply(lua_State *L, const reply_input *in)
{
    int top = lua_gettop(L), body = top + 1, res = top + 2, json;
    lua_pushcfunction(L, call_reply_push);
    lua_pushlightuserdata(L, (void *)in);
    lua_pushvalue(L, CJSON_DECODE);
    if (lua_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK)
        fail("reply_push raised an error");
    if (lua_gettop(L) != res || lua_type(L, res) != LUA_TTABLE)
        fail("reply_push did not leave body, res");

    lua_getfield(L, res, "status");
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != in->status)
        fail("res.status is not the status");
    lua_getfield(L, res, "json");
    if (lua_type(L, -1) != LUA_TBOOLEAN)
        fail("res.json is not a boolean");
    json = lua_toboolean(L, -1);
    lua_getfield(L, res, "json_error");
    if (json ? !lua_isnil(L, -1) : !(lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING))
        fail("res.json_error does not match res.json");
    lua_pop(L, 3);
    if (json && in->bodylen == 0)
        fail("an empty body was decoded");
    if (!json) {
        size_t len;
        const char *s = lua_type(L, body) == LUA_TSTRING ? lua_tolstring(L, body, &len) : NULL;
        if (s == NULL || len != in->bodylen || memcmp(s, in->body, len) != 0)
            fail("an undecoded body is not the reply's bytes");
    }
    lua_getfield(L, res, "headers");
    if (lua_type(L, -1) != LUA_TTABLE)
        fail("res.headers is not a table");
    check_header_table(L);
    check_header_lines(L, in->head, in->headlen);
    lua_pop(L, 1);
    return json;
}

/* ** cjson's decode of s[0..n): pushes the value and returns 1, or pushes nothing and returns 0 */
static int cjson_decode(lua_State *L, const char *s, size_t n)
{
    lua_pushvalue(L, CJSON_DECODE);
    lua_pushlstring(L, s, n);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

/* ** is the decoded value at `a` what cjson made of the same text, at `b`? A cjson.null is an
 * absent value (nil, a hole, a missing key); numbers are equal, and integers exactly when they
 * are integral and within +-2^53. */
static int same(lua_State *L, int a, int b)
{
    int type = lua_type(L, b);
    luaL_checkstack(L, 8, "too deep");
    if (type == LUA_TLIGHTUSERDATA && lua_rawequal(L, b, CJSON_NULL))
        return lua_isnil(L, a);
    if (lua_type(L, a) != type)
        return 0;
    switch (type) {
    case LUA_TNUMBER: {
        lua_Number x = lua_tonumber(L, a);
        int integral = x > -9007199254740992.0 && x < 9007199254740992.0 &&
                       (lua_Number)(long long)x == x;
        return x == lua_tonumber(L, b) && lua_isinteger(L, a) == integral;
    }
    case LUA_TSTRING: {
        size_t la, lb;
        const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
        return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TBOOLEAN:
        return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TTABLE:
        /* each of cjson's keys has the same value in a; each of a's keys is one of cjson's */
        lua_pushnil(L);
        while (lua_next(L, b) != 0) {
            int top = lua_gettop(L);
            lua_pushvalue(L, top - 1);
            lua_rawget(L, a);
            if (!same(L, top + 1, top)) {
                lua_pop(L, 3);
                return 0;
            }
            lua_pop(L, 2);
        }
        lua_pushnil(L);
        while (lua_next(L, a) != 0) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawget(L, b);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 2);
                return 0;
            }
            lua_pop(L, 1);
        }
        return 1;
    default:
        return 0;
    }
}

/* ** is s[0..n) well-formed UTF-8 (no overlong form, no surrogate, nothing past U+10FFFF)? */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], cp, k, len;
        if (c < 0x80) {
            i++;
            continue;
        }
        len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (len == 0 || c > 0xF4 || n - i < len)
            return 0;
        cp = c & (0x7F >> len);
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* ** the decoder against cjson on body and on cjson's re-encoding of it (stack: body, res) */
static void check_decoder(lua_State *L, const reply_input *in, int json)
{
    static const char json_head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n";
    int body = lua_gettop(L) - 1, theirs = lua_gettop(L) + 1;
    size_t len;
    const char *text;
    reply_input again;
    if (!cjson_decode(L, in->body, in->bodylen)) {
        /* cjson stops at a NUL byte (its end of input), where the decoder takes a raw NUL in a
         * string like any other control character */
        if (json && memchr(in->body, '\0', in->bodylen) == NULL)
            fail("a body cjson refuses was decoded");
        return;
    }
    if (json && !same(L, body, theirs))
        fail("a decoded body is not what cjson makes of it");
    if (!utf8_valid((const unsigned char *)in->body, in->bodylen))
        return;
    /* cjson's canonical text (when it can write the value: not inf, say) is JSON for any decoder */
    lua_pushvalue(L, CJSON_ENCODE);
    lua_pushvalue(L, theirs);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return;
    text = lua_tolstring(L, -1, &len);
    again.status = 200;
    again.head = json_head;
    again.headlen = sizeof json_head - 1;
    again.body = text;
    again.bodylen = len;
    if (!push_reply(L, &again))
        fail("cjson's own text of a value was not decoded");
    if (!cjson_decode(L, text, len))
        fail("cjson refuses its own text");
    if (!same(L, lua_gettop(L) - 2, lua_gettop(L)))
        fail("cjson's text of a value is decoded otherwise than cjson does");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = state;
    reply_input in;
    char *head, *body;
    size_t headlen = head_length(data, size);
    int json;

    /* exact-size copies: malloc(0) may give NULL, and the module passes "" then */
    head = (char *)malloc(headlen ? headlen : 1);
    body = (char *)malloc(size - headlen ? size - headlen : 1);
    if (head == NULL || body == NULL)
        fail("out of memory");
    memcpy(head, data, headlen);
    memcpy(body, data + headlen, size - headlen);
    in.status = 0;
    if (headlen > 9 && memcmp(head, "HTTP/", 5) == 0) {
        const char *sp = memchr(head, ' ', headlen);
        if (sp != NULL && sp + 4 <= head + headlen && sp[1] >= '0' && sp[1] <= '9' &&
            sp[2] >= '0' && sp[2] <= '9' && sp[3] >= '0' && sp[3] <= '9')
            in.status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    }
    in.head = headlen ? head : "";
    in.headlen = headlen;
    in.body = size - headlen ? body : "";
    in.bodylen = size - headlen;

    json = push_reply(L, &in);
    check_decoder(L, &in, json);
    lua_settop(L, BASE);
    free(head);
    free(body);
    return 0;
}
