/* validate.c: core.validate, a one-pass streaming validator of batch input JSONL files (JSON
 * grammar, UTF-8 and the batch line rules), fed in fixed-size chunks with no Lua call per line.
 *
 * The scanner is a resumable push parser: every piece of state lives in validate_scanner, so a
 * line, a string, an escape or a UTF-8 sequence may be split anywhere between two feeds, and a
 * line of any length costs no more memory than the few values it captures (top-level keys,
 * custom_id, method, url, body.model).
 *
 * Speed (about 2 GB/s on 1 KiB lines): strings, most of every line, go 16 bytes at a time
 * (SSE2, else 8 with bit tricks) and CJK text a character at a time; only top-level keys and
 * body's are matched; the custom_id set is looked up VALIDATE_ID_QUEUE lines late, its slot
 * prefetched, and a duplicate's problem is put back in its place, so the report is unchanged.
 *
 * Caveats:
 * - Duplicate keys: the first occurrence counts for every rule; later ones are ignored.
 * - A line that is not valid JSON gets one `json` problem and no other rule is checked on it.
 *   A `utf8` problem (at most one per line) does not stop the line's other checks.
 * - "\r" is JSON whitespace, so CRLF files pass; a line of only whitespace is an empty line.
 * - A single final newline ends the last line; any other empty line is a problem.
 * - Memory grows with the lines (each custom_id is kept, with about 30 bytes of overhead), not
 *   with their length, up to max_lines: the ids of the lines after the first one past it are
 *   not kept, nor checked for uniqueness (they are over the limit already). The hash sets are not seeded: colliding ids
 *   are slow, never wrong. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonbytes.h"
#include "validate.h"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

#define KEY_MAX 16    /* a key that outgrows its buffer past this is none of ours: stop there */
#define SHOWN_MAX 40  /* bytes of a value quoted in a message */

enum state {
    ST_LINE_START,   /* nothing but whitespace yet on this line */
    ST_VALUE,        /* a value is expected */
    ST_ARRAY_FIRST,  /* after '[': a value or ']' */
    ST_OBJECT_FIRST, /* after '{': a key or '}' */
    ST_OBJECT_KEY,   /* after ',' in an object: a key */
    ST_COLON,        /* after a key */
    ST_AFTER_VALUE,  /* inside a container, after a value: ',' or its closer */
    ST_DONE,         /* the line's value is complete: only whitespace may follow */
    ST_STRING,
    ST_ESCAPE,       /* after a backslash */
    ST_UNICODE,      /* inside \uXXXX */
    ST_UTF8,         /* inside a UTF-8 sequence that a feed boundary split */
    ST_NUMBER,
    ST_LITERAL,      /* inside true, false or null */
    ST_SKIP          /* the line has a json problem: skip to its end */
};

enum type { T_NONE, T_OBJECT, T_ARRAY, T_STRING, T_NUMBER, T_BOOLEAN, T_NULL };

/* the values the rules look at; slot 0 collects every other value harmlessly */
enum slot { SLOT_NONE, SLOT_CUSTOM_ID, SLOT_METHOD, SLOT_URL, SLOT_BODY, SLOT_MODEL, SLOT_MESSAGES };

/* number grammar: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? */
enum number { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRACTION, N_E, N_E_SIGN, N_EXPONENT };

static const char *const type_names[] = {"nothing", "an object", "an array", "a string",
                                         "a number", "a boolean", "null"};

/* bytes a string may hold as they are: not '"', '\\', a control character or non-ASCII */
static const unsigned char string_plain[256] = JSON_STRING_BYTES(0, 0, 1, 0);

#define MALFORMED "a malformed sequence starting with byte"
#define OFFSET(v, p) ((v)->chunk_offset + (uint64_t)((p) - (v)->chunk))
/* JSON whitespace: bytes that are not a token ('\n' ends the line too) */
static const unsigned char json_blank[256] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0,
                                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

/* ------------------------------------------------------------------- buffers and sets */

/* ** room for `n` more bytes in `b`; 0, or -1 (and the scanner marked) when memory runs out */
static int buffer_reserve(validate_scanner *v, validate_buffer *b, size_t n)
{
    size_t want;
    char *grown;
    if (b->capacity - b->length >= n)
        return 0;
    if (n > (size_t)-1 / 2 - b->length)
        goto fail;
    want = b->capacity ? b->capacity * 2 : 64;
    if (want < b->length + n)
        want = b->length + n;
    grown = (char *)realloc(b->data, want);
    if (grown == NULL)
        goto fail;
    b->data = grown;
    b->capacity = want;
    return 0;
fail:
    v->out_of_memory = 1;
    return -1;
}

/* ** do the `n` bytes at `a` and `b` match? (for short strings, where a call to memcmp costs
 * more than the comparison) */
static int same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    uint32_t x4, y4;
    if (n >= 8) {
        const char *last = a + n - 8; /* the final word may overlap the one before it */
        for (; a < last; a += 8, b += 8) {
            memcpy(&x, a, 8);
            memcpy(&y, b, 8);
            if (x != y)
                return 0;
        }
        memcpy(&x, last, 8);
        memcpy(&y, b - (a - last), 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&x4, a, 4);
        memcpy(&y4, b, 4);
        if (x4 != y4)
            return 0;
        memcpy(&x4, a + n - 4, 4);
        memcpy(&y4, b + n - 4, 4);
        return x4 == y4;
    }
    for (; n > 0; n--)
        if (*a++ != *b++)
            return 0;
    return 1;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    const uint64_t k = 0x9E3779B97F4A7C15u;
    uint64_t h = k ^ (uint64_t)n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    if (n > 0) {
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * k;
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93u;
    h ^= h >> 32;
    return h;
}

/* ** the length of entry `i`'s string */
static size_t entry_length(const validate_set *set, size_t i)
{
    size_t end = i + 1 < set->count ? set->entries[i + 1].offset : set->text.length;
    return end - set->entries[i].offset;
}

/* ** the slot where the string `s` of hash `h` is, or would go. A slot's home is the hash's
 * top half (its tag), so the table grows without hashing anything again. */
static size_t set_probe(const validate_set *set, const char *s, size_t n, uint64_t h)
{
    uint64_t tag = h >> 32;
    size_t i = (size_t)tag & set->slot_mask;
    for (;; i = (i + 1) & set->slot_mask) {
        uint64_t slot = set->slots[i];
        size_t index = (uint32_t)slot - 1;
        if (slot == 0)
            return i;
        if (slot >> 32 == tag && entry_length(set, index) == n &&
            same_bytes(set->text.data + set->entries[index].offset, s, n))
            return i;
    }
}

/* ** start loading the slot a string of hash `h` will probe first (see queue_id) */
static void set_prefetch(const validate_set *set, uint64_t h)
{
#if defined(__GNUC__)
    if (set->slots != NULL)
        __builtin_prefetch(&set->slots[(size_t)(h >> 32) & set->slot_mask]);
#else
    (void)set;
    (void)h;
#endif
}

/* ** double the slot table (which stays at most three quarters full) */
static int set_grow_slots(validate_scanner *v, validate_set *set)
{
    size_t old_size = set->slots ? set->slot_mask + 1 : 0, size = old_size ? old_size * 2 : 64, i, j;
    uint64_t *slots = (uint64_t *)calloc(size, sizeof *slots);
    if (slots == NULL) {
        v->out_of_memory = 1;
        return -1;
    }
    for (i = 0; i < old_size; i++) {
        uint64_t slot = set->slots[i];
        if (slot == 0)
            continue;
        for (j = (size_t)(slot >> 32) & (size - 1); slots[j] != 0; j = (j + 1) & (size - 1))
            ;
        slots[j] = slot;
    }
    free(set->slots);
    set->slots = slots;
    set->slot_mask = size - 1;
    return 0;
}

/* ** add `s` (hash `h`) first seen on `line`; its entry index in *position. 1 when added, 0
 * when it was there already, -1 when memory runs out */
static int set_add(validate_scanner *v, validate_set *set, const char *s, size_t n, uint64_t h,
                   uint64_t line, size_t *position)
{
    size_t i;
    validate_entry *e;
    if ((set->count + 1) * 4 > (set->slots ? set->slot_mask + 1 : 0) * 3 && set_grow_slots(v, set) != 0)
        return -1;
    i = set_probe(set, s, n, h);
    if (set->slots[i] != 0) {
        *position = (uint32_t)set->slots[i] - 1;
        return 0;
    }
    if (set->count >= 0x7FFFFFFF) { /* the slot table would need more than 2^32 slots */
        v->out_of_memory = 1;
        return -1;
    }
    if (set->count == set->entries_capacity) {
        size_t want = set->entries_capacity ? set->entries_capacity * 2 : 16;
        validate_entry *grown = (validate_entry *)realloc(set->entries, want * sizeof *grown);
        if (grown == NULL) {
            v->out_of_memory = 1;
            return -1;
        }
        set->entries = grown;
        set->entries_capacity = want;
    }
    if (buffer_reserve(v, &set->text, n + 1) != 0) /* + 1: text.data is never NULL */
        return -1;
    if (n > 0)
        memcpy(set->text.data + set->text.length, s, n);
    e = &set->entries[set->count];
    e->offset = set->text.length;
    e->line = line;
    set->text.length += n;
    set->slots[i] = (h >> 32 << 32) | (uint64_t)(set->count + 1);
    *position = set->count++;
    return 1;
}

static void set_free(validate_set *set)
{
    free(set->text.data);
    free(set->entries);
    free(set->slots);
}

/* ------------------------------------------------------------------- problems */

/* ** a value as a message may quote it: at most SHOWN_MAX bytes, cut on a character boundary,
 * control characters as '?' */
static const char *show(char out[SHOWN_MAX + 4], const char *s, size_t n)
{
    size_t i, cut = n;
    if (n > SHOWN_MAX) {
        cut = SHOWN_MAX;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
    }
    for (i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (char)(c < 0x20 || c == 0x7F ? '?' : c);
    }
    if (cut < n) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* ** does `p` come after a custom_id_unique problem of line `line`? (check_line reports the
 * custom_id rules first, then the others, then end_line max_lines) */
static int problem_after_unique(const validate_problem *p, uint64_t line)
{
    static const char *const later[] = {"method", "url", "body", "messages", "model", "one_model",
                                        "max_lines", NULL};
    int i;
    if (p->line != line)
        return p->line > line;
    for (i = 0; later[i] != NULL; i++)
        if (strcmp(p->rule, later[i]) == 0)
            return 1;
    return 0;
}

/* ** a problem of line `line`. `late`: it was found after problems that follow it (a deferred
 * custom_id_unique), so it goes in its place; the first config.max_problems are kept, all are
 * counted. */
static void problem_at(validate_scanner *v, uint64_t line, int late, const char *rule,
                       const char *format, va_list ap) PRINTF_LIKE(5, 0);

static void problem_at(validate_scanner *v, uint64_t line, int late, const char *rule,
                       const char *format, va_list ap)
{
    validate_problem *problem;
    size_t at = v->problem_count;
    int n;
    v->problem_total++;
    while (late && at > 0 && problem_after_unique(&v->problems[at - 1], line))
        at--;
    if (at >= v->config.max_problems)
        return;
    if (v->problem_count == v->config.max_problems) {
        v->problem_count--; /* the last one kept is pushed out */
    } else if (v->problem_count == v->problem_capacity) {
        size_t want = v->problem_capacity ? v->problem_capacity * 2 : 16;
        validate_problem *grown = (validate_problem *)realloc(v->problems, want * sizeof *grown);
        if (grown == NULL) {
            v->out_of_memory = 1;
            return;
        }
        v->problems = grown;
        v->problem_capacity = want;
    }
    memmove(&v->problems[at + 1], &v->problems[at], (v->problem_count - at) * sizeof *problem);
    v->problem_count++;
    problem = &v->problems[at];
    problem->line = line;
    problem->rule = rule;
    n = snprintf(problem->message, sizeof problem->message, "line %llu: ", (unsigned long long)line);
    vsnprintf(problem->message + n, sizeof problem->message - (size_t)n, format, ap);
}

static void add_problem(validate_scanner *v, const char *rule, const char *format, ...)
    PRINTF_LIKE(3, 4);

/* ** a problem on the current line */
static void add_problem(validate_scanner *v, const char *rule, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    problem_at(v, v->lines + 1, 0, rule, format, ap);
    va_end(ap);
}

static void add_late_problem(validate_scanner *v, uint64_t line, const char *rule,
                             const char *format, ...) PRINTF_LIKE(4, 5);

static void add_late_problem(validate_scanner *v, uint64_t line, const char *rule,
                             const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    problem_at(v, line, 1, rule, format, ap);
    va_end(ap);
}

/* ** the line is not valid JSON (`what` went wrong at `p`): report, and skip the rest of the line */
static void json_fail(validate_scanner *v, const unsigned char *p, const char *what)
{
    char found[16];
    v->state = ST_SKIP;
    if (v->problem_count >= v->config.max_problems) {
        v->problem_total++; /* counted, not kept: spare the formatting */
        return;
    }
    if (*p >= 0x20 && *p < 0x7F)
        snprintf(found, sizeof found, "'%c'", *p);
    else
        snprintf(found, sizeof found, "byte 0x%02X", *p);
    add_problem(v, "json", "invalid JSON at byte %llu: %s (found %s)",
                (unsigned long long)(OFFSET(v, p) - v->line_start + 1), what, found);
}

/* ** invalid UTF-8 at offset `at` (`what`, then the byte unless it is < 0): the line's first such
 * problem is reported, and the scan goes on */
static void utf8_fail(validate_scanner *v, uint64_t at, const char *what, int byte)
{
    if (v->utf8_reported)
        return;
    v->utf8_reported = 1;
    if (byte >= 0)
        add_problem(v, "utf8", "invalid UTF-8 at byte %llu: %s 0x%02X",
                    (unsigned long long)(at - v->line_start + 1), what, (unsigned)byte);
    else
        add_problem(v, "utf8", "invalid UTF-8 at byte %llu: %s",
                    (unsigned long long)(at - v->line_start + 1), what);
}

static void lone_surrogate(validate_scanner *v, uint64_t at)
{
    if (v->pending_high)
        at = v->pending_high_at; /* a high half without its low one */
    utf8_fail(v, at, "an unpaired surrogate \\u escape", -1);
    v->pending_high = 0;
}

/* ------------------------------------------------------------------- the JSON grammar */

/* ** append to the current capture (a key's stops at KEY_MAX bytes) */
static void capture(validate_scanner *v, const unsigned char *s, size_t n)
{
    validate_buffer *b = v->capture;
    if (b->capacity - b->length < n) {
        if (v->in_key && b->length + n > KEY_MAX) {
            v->key_too_long = 1;
            return;
        }
        if (buffer_reserve(v, b, n) != 0)
            return;
    }
    memcpy(b->data + b->length, s, n);
    b->length += n;
}

/* ** append code point `cp` (from a \u escape) to the capture as UTF-8 */
static void capture_code_point(validate_scanner *v, unsigned cp)
{
    unsigned char out[4];
    size_t n;
    if (v->capture == NULL)
        return;
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (unsigned char)(0xF0 | cp >> 18);
        out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    capture(v, out, n);
}

/* ** a \uXXXX escape ending just before `p` is complete: pair surrogates, capture the result */
static void unicode_escape(validate_scanner *v, const unsigned char *p)
{
    unsigned u = v->escape_value;
    uint64_t at = OFFSET(v, p) - 6;
    if (v->pending_high) {
        if (u >= 0xDC00 && u <= 0xDFFF) {
            capture_code_point(v, 0x10000 + ((v->pending_high - 0xD800) << 10) + (u - 0xDC00));
            v->pending_high = 0;
            return;
        }
        lone_surrogate(v, at);
    }
    if (u >= 0xD800 && u <= 0xDBFF) {
        v->pending_high = u;
        v->pending_high_at = at;
    }
    else if (u >= 0xDC00 && u <= 0xDFFF)
        lone_surrogate(v, at);
    else
        capture_code_point(v, u);
}

static int hex_value(unsigned c)
{
    if (c - '0' < 10)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6)
        return (int)(c - 'a' + 10);
    return -1;
}

/* ** the next state of a number after byte `c`, or -1 when `c` cannot continue it */
static int number_step(int state, unsigned c)
{
    int digit = c - '0' < 10;
    switch (state) {
    case N_MINUS:
        return digit ? (c == '0' ? N_ZERO : N_INT) : -1;
    case N_ZERO:
        return c == '.' ? N_DOT : (c | 0x20) == 'e' ? N_E : -1;
    case N_INT:
        return digit ? N_INT : c == '.' ? N_DOT : (c | 0x20) == 'e' ? N_E : -1;
    case N_DOT:
        return digit ? N_FRACTION : -1;
    case N_FRACTION:
        return digit ? N_FRACTION : (c | 0x20) == 'e' ? N_E : -1;
    case N_E:
        return digit ? N_EXPONENT : c == '+' || c == '-' ? N_E_SIGN : -1;
    default: /* N_E_SIGN, N_EXPONENT */
        return digit ? N_EXPONENT : -1;
    }
}

#define NUMBER_COMPLETE(s) ((s) == N_ZERO || (s) == N_INT || (s) == N_FRACTION || (s) == N_EXPONENT)

/* ** which rule-relevant value a value starting now is */
static unsigned current_slot(const validate_scanner *v)
{
    if (v->depth == 1)
        return v->stack[0] == '{' ? v->top_key : SLOT_NONE;
    if (v->depth == 2 && v->body_open)
        return v->body_key;
    return SLOT_NONE;
}

/* ** the key just read names `slot`: its value goes there, unless the key was met before */
static void set_key_slot(validate_scanner *v, unsigned slot)
{
    if (slot != SLOT_NONE) {
        if (v->seen & (1u << slot))
            slot = SLOT_NONE;
        else
            v->seen |= 1u << slot;
    }
    if (v->depth == 1)
        v->top_key = (unsigned char)slot;
    else
        v->body_key = (unsigned char)slot;
}

/* the keys the rules look at: a line's (depth 1) and its body's (depth 2) */
typedef struct known_key {
    const char *name;
    size_t length;
    unsigned char slot;
} known_key;
static const known_key line_keys[] = {{"custom_id", 9, SLOT_CUSTOM_ID}, {"method", 6, SLOT_METHOD},
                                      {"url", 3, SLOT_URL}, {"body", 4, SLOT_BODY}, {NULL, 0, 0}};
static const known_key body_keys[] = {{"model", 5, SLOT_MODEL}, {"messages", 8, SLOT_MESSAGES},
                                      {NULL, 0, 0}};

/* ** the slot a key names (the key's decoded bytes at k, n) */
static unsigned key_slot(const validate_scanner *v, const char *k, size_t n)
{
    const known_key *key;
    for (key = v->depth == 1 ? line_keys : body_keys; key->name != NULL; key++)
        if (n == key->length && same_bytes(k, key->name, n))
            return key->slot;
    return SLOT_NONE;
}

/* ** a key whose opening quote is just before `p`, read straight from the piece when it can be:
 * the bytes of a name and its closing quote (returns their length, the slot set), or a first
 * byte no name and no escape starts (returns 0, slot none, and the key is scanned as a plain
 * string). Returns -1 when only its decoded bytes can tell. */
static long key_from_piece(validate_scanner *v, const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);
    const known_key *k;
    int starts = 0;
    if (avail == 0 || *p == '\\')
        return -1;
    for (k = v->depth == 1 ? line_keys : body_keys; k->name != NULL; k++) {
        if (*p != (unsigned char)k->name[0])
            continue;
        starts = 1;
        if (avail > k->length && same_bytes((const char *)p, k->name, k->length) &&
            p[k->length] == '"') {
            set_key_slot(v, k->slot);
            return (long)k->length + 1;
        }
    }
    if (starts)
        return -1; /* a name's first byte: its decoded bytes tell */
    set_key_slot(v, SLOT_NONE);
    return 0;
}

/* ** a value of `type` starts in `slot` */
static void note_value(validate_scanner *v, unsigned slot, unsigned type)
{
    v->types[slot] = (unsigned char)type;
    if (v->depth == 0)
        v->top_type = (unsigned char)type;
}

#if defined(__SSE2__) && !defined(VALIDATE_NO_SIMD)
#include <emmintrin.h>

/* ** a bit per byte of the 16 at `p` that ends a plain run inside a string: '"', '\\', below
 * 0x20 or 0x80 and above (a signed compare catches both ends at once) */
static unsigned special_mask(const unsigned char *p)
{
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote),
                                                _mm_cmpeq_epi8(x, backslash)),
                                   _mm_cmplt_epi8(x, space));
    return (unsigned)_mm_movemask_epi8(special);
}

/* ** the first byte at or after `p` that ends a plain run inside a string: 16 bytes first (most
 * strings are short), then 32 at a time (the long ones: prompts) */
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end)
{
    unsigned mask;
    if (end - p >= 16) {
        if ((mask = special_mask(p)) != 0)
            return p + __builtin_ctz(mask);
        p += 16;
        while (end - p >= 32) {
            mask = special_mask(p) | special_mask(p + 16) << 16;
            if (mask != 0)
                return p + __builtin_ctz(mask);
            p += 32;
        }
        if (end - p >= 16) {
            if ((mask = special_mask(p)) != 0)
                return p + __builtin_ctz(mask);
            p += 16;
        }
    }
    while (p < end && string_plain[*p])
        p++;
    return p;
}
#else
static uint64_t load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* ** does any byte of `w` end a plain run: '"', '\\', below 0x20, or 0x80 and above? */
static int word_is_special(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t t = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
                 ((w - ones * 0x20) & ~w) | w;
    return (t & high) != 0;
}

/* ** the first byte at or after `p` that ends a plain run inside a string (8 at a time) */
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8 && !word_is_special(load64(p)))
        p += 8;
    while (p < end && string_plain[*p])
        p++;
    return p;
}
#endif

/* ** past the well-formed, complete UTF-8 sequences that start at `p` (which is non-ASCII), back
 * to back, as in CJK text; stops at ASCII, at the end, or where utf8_sequence must decide */
static const unsigned char *utf8_run(const unsigned char *p, const unsigned char *end)
{
    while (p < end && *p >= 0xC2) {
        unsigned c = *p;
        size_t avail = (size_t)(end - p);
        if (c < 0xE0) {
            if (avail < 2 || (p[1] & 0xC0) != 0x80)
                break;
            p += 2;
        } else if (c < 0xF0) {
            if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
                (c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
                break;
            p += 3;
        } else {
            if (c > 0xF4 || avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
                (p[3] & 0xC0) != 0x80 || (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
                break;
            p += 4;
        }
    }
    return p;
}

/* ** a non-ASCII byte at `p` inside a string: check and capture its UTF-8 sequence. When the
 * sequence runs past `end`, v->utf8_need says how many bytes the next piece must finish. */
static const unsigned char *utf8_sequence(validate_scanner *v, const unsigned char *p,
                                          const unsigned char *end)
{
    unsigned c = p[0], need, low = 0x80, high = 0xBF, i;
    if (c < 0xC2 || c > 0xF4) {
        utf8_fail(v, OFFSET(v, p), "a byte that cannot start a character:", (int)c);
        if (v->capture != NULL)
            capture(v, p, 1);
        return p + 1;
    }
    need = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (c == 0xE0)
        low = 0xA0; /* overlong */
    else if (c == 0xED)
        high = 0x9F; /* a surrogate */
    else if (c == 0xF0)
        low = 0x90; /* overlong */
    else if (c == 0xF4)
        high = 0x8F; /* beyond U+10FFFF */
    if ((size_t)(end - p) > need) {
        int ok = p[1] >= low && p[1] <= high;
        for (i = 2; ok && i <= need; i++)
            ok = p[i] >= 0x80 && p[i] <= 0xBF;
        if (ok) {
            if (v->capture != NULL)
                capture(v, p, need + 1);
            return p + need + 1;
        }
        utf8_fail(v, OFFSET(v, p), MALFORMED, (int)c);
        if (v->capture != NULL)
            capture(v, p, 1);
        return p + 1; /* what follows the lead is scanned again on its own */
    }
    if (v->capture != NULL)
        capture(v, p, 1);
    v->utf8_need = (unsigned char)need;
    v->utf8_low = (unsigned char)low;
    v->utf8_high = (unsigned char)high;
    v->utf8_lead = c;
    v->utf8_lead_at = OFFSET(v, p);
    return p + 1;
}

/* ------------------------------------------------------------------- lines */

static void reset_line(validate_scanner *v)
{
    v->state = ST_LINE_START;
    v->depth = 0;
    v->seen = 0;
    v->top_type = T_NONE;
    v->top_key = v->body_key = SLOT_NONE;
    v->in_key = v->body_open = v->messages_pending = v->messages_nonempty = 0;
    v->utf8_reported = 0;
    v->utf8_need = 0;
    v->pending_high = 0;
    v->capture = NULL;
    memset(v->types, 0, sizeof v->types);
}

/* ** does a captured value equal `s`? */
static int value_is(const validate_buffer *b, const char *s, size_t n)
{
    return b->length == n && same_bytes(b->data, s, n);
}

/* ** put the oldest waiting custom_id in the set: a duplicate's problem goes in its place */
static void settle_id(validate_scanner *v)
{
    validate_pending_id *id = &v->pending_ids[v->pending_first];
    char shown[SHOWN_MAX + 4];
    size_t at;
    if (set_add(v, &v->ids, id->text.data, id->text.length, id->hash, id->line, &at) == 0)
        add_late_problem(v, id->line, "custom_id_unique", "custom_id \"%s\" already used on line %llu",
                         show(shown, id->text.data, id->text.length),
                         (unsigned long long)v->ids.entries[at].line);
    v->pending_first = (v->pending_first + 1) % VALIDATE_ID_QUEUE;
    v->pending_count--;
}

/* ** the set is looked up VALIDATE_ID_QUEUE lines after the custom_id's slot was prefetched:
 * with a few million custom_ids the table outgrows the caches, and a short line alone does not
 * hide the miss */
static void queue_id(validate_scanner *v, const validate_buffer *b)
{
    validate_pending_id *id;
    if (v->pending_count == VALIDATE_ID_QUEUE)
        settle_id(v);
    id = &v->pending_ids[(v->pending_first + v->pending_count) % VALIDATE_ID_QUEUE];
    id->text.length = 0;
    if (buffer_reserve(v, &id->text, b->length + 1) != 0) /* + 1: data is never NULL */
        return;
    if (b->length > 0)
        memcpy(id->text.data, b->data, b->length);
    id->text.length = b->length;
    id->hash = v->id_hash;
    id->line = v->lines + 1;
    v->pending_count++;
}

/* ** the line is a JSON object: apply the batch rules */
static void check_line(validate_scanner *v)
{
    const validate_config *cfg = &v->config;
    const validate_buffer *b;
    char shown[SHOWN_MAX + 4], shown2[SHOWN_MAX + 4];
    size_t at;
    unsigned t;

    t = v->types[SLOT_CUSTOM_ID];
    b = &v->values[SLOT_CUSTOM_ID];
    if (t == T_NONE) {
        add_problem(v, "custom_id", "custom_id is missing");
    } else if (t != T_STRING) {
        add_problem(v, "custom_id", "custom_id is %s, not a string", type_names[t]);
    } else {
        if (b->length > cfg->max_custom_id)
            add_problem(v, "custom_id_length", "custom_id \"%s\" is %llu bytes, more than %llu",
                        show(shown, b->data, b->length), (unsigned long long)b->length,
                        (unsigned long long)cfg->max_custom_id);
        /* custom_id_unique. Past the first line over max_lines, ids are no longer kept (those
         * lines are a problem already): memory is bounded by the provider's line cap. */
        if (v->lines <= cfg->max_lines)
            queue_id(v, b);
    }

    t = v->types[SLOT_METHOD];
    b = &v->values[SLOT_METHOD];
    if (t == T_NONE) {
        if (cfg->require_method_url)
            add_problem(v, "method", "method is missing");
    } else if (t != T_STRING) {
        add_problem(v, "method", "method is %s, not the string \"POST\"", type_names[t]);
    } else if (!value_is(b, "POST", 4)) {
        add_problem(v, "method", "method is \"%s\", not \"POST\"", show(shown, b->data, b->length));
    }

    t = v->types[SLOT_URL];
    b = &v->values[SLOT_URL];
    if (t == T_NONE) {
        if (cfg->require_method_url)
            add_problem(v, "url", "url is missing");
    } else if (t != T_STRING) {
        add_problem(v, "url", "url is %s, not the string \"%s\"", type_names[t],
                    show(shown2, cfg->endpoint, cfg->endpoint_length));
    } else if (!value_is(b, cfg->endpoint, cfg->endpoint_length)) {
        add_problem(v, "url", "url is \"%s\", not \"%s\"", show(shown, b->data, b->length),
                    show(shown2, cfg->endpoint, cfg->endpoint_length));
    }

    t = v->types[SLOT_BODY];
    if (t == T_NONE) {
        add_problem(v, "body", "body is missing");
        return;
    } else if (t != T_OBJECT) {
        add_problem(v, "body", "body is %s, not an object", type_names[t]);
        return;
    }

    t = v->types[SLOT_MESSAGES];
    if (t == T_NONE)
        add_problem(v, "messages", "body.messages is missing");
    else if (t != T_ARRAY)
        add_problem(v, "messages", "body.messages is %s, not an array", type_names[t]);
    else if (!v->messages_nonempty)
        add_problem(v, "messages", "body.messages is empty");

    t = v->types[SLOT_MODEL];
    b = &v->values[SLOT_MODEL];
    if (t == T_STRING) {
        /* most files name one model throughout: compare with the last line's before hashing */
        size_t last = v->last_model;
        if (last != 0 && value_is(b, v->models.text.data + v->models.entries[last - 1].offset,
                                  entry_length(&v->models, last - 1)))
            at = last - 1;
        else if (set_add(v, &v->models, b->data, b->length, hash_bytes(b->data, b->length),
                         v->lines + 1, &at) < 0)
            return;
        v->last_model = at + 1;
        if (at != 0 && cfg->check_model) {
            const validate_entry *first = &v->models.entries[0];
            add_problem(v, "one_model", "body.model \"%s\" differs from \"%s\" on line %llu",
                        show(shown, b->data, b->length),
                        show(shown2, v->models.text.data + first->offset, entry_length(&v->models, 0)),
                        (unsigned long long)first->line);
        }
    } else if (cfg->check_model) {
        if (t == T_NONE)
            add_problem(v, "model", "body.model is missing");
        else
            add_problem(v, "model", "body.model is %s, not a string", type_names[t]);
    }
}

/* ** the current line ends (at a newline or the end of the file) */
static void end_line(validate_scanner *v)
{
    switch (v->state) {
    case ST_LINE_START:
        add_problem(v, "empty_line", "empty line");
        break;
    case ST_SKIP:
        break;
    case ST_DONE:
        if (v->top_type == T_OBJECT)
            check_line(v);
        else
            add_problem(v, "object", "the JSON value is %s, not an object", type_names[v->top_type]);
        break;
    case ST_NUMBER:
        if (NUMBER_COMPLETE(v->number_state) && v->depth == 0)
            add_problem(v, "object", "the JSON value is a number, not an object");
        else
            add_problem(v, "json", "invalid JSON: the line ends before the value is complete");
        break;
    case ST_UTF8:
        utf8_fail(v, v->utf8_lead_at, MALFORMED, (int)v->utf8_lead);
        /* fall through */
    case ST_STRING:
    case ST_ESCAPE:
    case ST_UNICODE:
        add_problem(v, "json", "invalid JSON: the line ends inside a string");
        break;
    default:
        add_problem(v, "json", "invalid JSON: the line ends before the value is complete");
        break;
    }
    if (v->lines >= v->config.max_lines && !v->lines_reported) {
        add_problem(v, "max_lines", "more than %llu lines", (unsigned long long)v->config.max_lines);
        v->lines_reported = 1;
    }
    v->lines++;
    reset_line(v);
}

/* Entering a state: out of bytes, save the state and return; at a newline, end the line. */
#define NEXT_BYTE(st)             \
    do {                          \
        if (p == end) {           \
            v->state = (st);      \
            return;               \
        }                         \
        c = *p;                   \
        if (c == '\n') {          \
            v->state = (st);      \
            goto newline;         \
        }                         \
    } while (0)
/* Entering a state where whitespace may come first: NEXT_BYTE at the first byte that is not
 * whitespace (one test per byte on the common path: compact JSON has none) */
#define NEXT_TOKEN(st)                \
    for (;; p++) {                    \
        if (p == end) {               \
            v->state = (st);          \
            return;                   \
        }                             \
        c = *p;                       \
        if (!json_blank[c])           \
            break;                    \
        if (c == '\n') {              \
            v->state = (st);          \
            goto newline;             \
        }                             \
    }

/* ** scan the bytes [p, end) of the piece that starts at v->chunk. The grammar is a threaded
 * state machine: states are labels, v->state is written only where the bytes run out or the
 * line ends, and the switch below only resumes where the previous piece stopped. */
static void scan(validate_scanner *v, const unsigned char *p, const unsigned char *end)
{
    const unsigned char *run;
    unsigned c, slot;
    int object, h, s, next;
    unsigned char out;

    switch (v->state) {
    case ST_LINE_START: goto line_start;
    case ST_VALUE: goto value;
    case ST_ARRAY_FIRST: goto array_first;
    case ST_OBJECT_FIRST: goto object_first;
    case ST_OBJECT_KEY: goto object_key;
    case ST_COLON: goto colon;
    case ST_AFTER_VALUE: goto after_value;
    case ST_DONE: goto done;
    case ST_STRING: goto string;
    case ST_ESCAPE: goto escape;
    case ST_UNICODE: goto unicode;
    case ST_UTF8: goto utf8;
    case ST_NUMBER: goto number;
    case ST_LITERAL: goto literal;
    default: goto skip;
    }

newline: /* p is at a '\n'; v->state tells how far the line got */
    end_line(v);
    p++;
    v->line_start = OFFSET(v, p);
line_start:
    NEXT_TOKEN(ST_LINE_START)
    goto begin_value;
value:
    NEXT_TOKEN(ST_VALUE)
begin_value: /* a value starts with c, at p */
    slot = current_slot(v);
    switch (c) {
    case '"':
        note_value(v, slot, T_STRING);
        v->in_key = 0;
        v->capture = NULL;
        if (slot == SLOT_CUSTOM_ID || slot == SLOT_METHOD || slot == SLOT_URL || slot == SLOT_MODEL) {
            v->capture = &v->values[slot];
            v->capture->length = 0;
        }
        p++;
        goto string;
    case '{':
    case '[':
        if (v->depth == VALIDATE_MAX_DEPTH) {
            json_fail(v, p, "nesting deeper than 64 levels");
            goto skip;
        }
        note_value(v, slot, c == '{' ? T_OBJECT : T_ARRAY);
        v->stack[v->depth++] = (unsigned char)c;
        p++;
        if (c == '[') {
            v->messages_pending = slot == SLOT_MESSAGES;
            goto array_first;
        }
        if (slot == SLOT_BODY) {
            v->body_open = 1;
            v->body_key = SLOT_NONE;
        }
        goto object_first;
    case 't':
    case 'f':
    case 'n':
        note_value(v, slot, c == 'n' ? T_NULL : T_BOOLEAN);
        v->literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
        v->literal_pos = 1;
        p++;
        goto literal;
    default:
        if (c != '-' && c - '0' >= 10) {
            json_fail(v, p, "expected a value");
            goto skip;
        }
        note_value(v, slot, T_NUMBER);
        v->number_state = (unsigned char)(c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT);
        p++;
        goto number;
    }

array_first:
    NEXT_TOKEN(ST_ARRAY_FIRST)
    if (v->messages_pending) {
        v->messages_nonempty = c != ']';
        v->messages_pending = 0;
    }
    if (c != ']')
        goto begin_value;
    p++;
    goto close;

object_first:
    NEXT_TOKEN(ST_OBJECT_FIRST)
    if (c == '}') {
        p++;
        goto close;
    }
    if (c != '"') {
        json_fail(v, p, "expected a key or '}'");
        goto skip;
    }
    goto key;
object_key:
    NEXT_TOKEN(ST_OBJECT_KEY)
    if (c != '"') {
        json_fail(v, p, "expected a key");
        goto skip;
    }
key:
    p++;
    v->in_key = 1;
    v->key_too_long = 0;
    v->capture = NULL;
    if (v->depth == 1 || (v->depth == 2 && v->body_open)) {
        long known = key_from_piece(v, p, end);
        if (known > 0) {
            p += known;
            v->in_key = 0;
            goto colon;
        }
        if (known < 0) {
            v->capture = &v->key;
            v->key.length = 0;
        }
    }
    goto string;

colon:
    NEXT_TOKEN(ST_COLON)
    if (c != ':') {
        json_fail(v, p, "expected ':'");
        goto skip;
    }
    p++;
    goto value;

close: /* a closer was consumed */
    v->depth--;
    if (v->depth == 1)
        v->body_open = 0; /* whatever closed at depth 2 was the body, if it was open */
value_end:
    if (v->depth == 0)
        goto done;
after_value:
    NEXT_TOKEN(ST_AFTER_VALUE)
    object = v->stack[v->depth - 1] == '{';
    if (c == ',') {
        p++;
        if (object)
            goto object_key;
        goto value;
    }
    if (c == (object ? '}' : ']')) {
        p++;
        goto close;
    }
    json_fail(v, p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    goto skip;

done:
    NEXT_TOKEN(ST_DONE)
    json_fail(v, p, "expected the end of the line");
skip:
    v->state = ST_SKIP;
    run = (const unsigned char *)memchr(p, '\n', (size_t)(end - p));
    if (run == NULL)
        return;
    p = run;
    goto newline;

string: /* the hot loop */
    for (;;) {
        if (p == end) {
            v->state = ST_STRING;
            return;
        }
        if (v->pending_high && *p != '\\')
            lone_surrogate(v, OFFSET(v, p));
        run = p;
        for (;;) { /* plain ASCII and well-formed UTF-8, as one run */
            const unsigned char *after;
            p = plain_run(p, end);
            if (p == end || *p < 0x80 || (after = utf8_run(p, end)) == p)
                break;
            p = after;
        }
        if (v->capture != NULL && p > run)
            capture(v, run, (size_t)(p - run));
        if (p == end)
            continue;
        c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c == '\\') {
            p++;
            goto escape;
        }
        if (c < 0x20) {
            if (c == '\n') {
                v->state = ST_STRING;
                goto newline;
            }
            json_fail(v, p, "unescaped control character in a string");
            goto skip;
        }
        p = utf8_sequence(v, p, end);
        if (v->utf8_need)
            goto utf8;
    }
    /* the closing quote */
    if (v->in_key) {
        if (v->capture != NULL)
            set_key_slot(v, v->key_too_long ? SLOT_NONE : key_slot(v, v->key.data, v->key.length));
        v->in_key = 0;
        goto colon;
    }
    if (v->capture == &v->values[SLOT_CUSTOM_ID]) {
        v->id_hash = hash_bytes(v->capture->data, v->capture->length);
        set_prefetch(&v->ids, v->id_hash);
    }
    goto value_end;

escape:
    NEXT_BYTE(ST_ESCAPE);
    if (v->pending_high && c != 'u')
        lone_surrogate(v, OFFSET(v, p));
    switch (c) {
    case '"': case '\\': case '/': out = (unsigned char)c; break;
    case 'b': out = '\b'; break;
    case 'f': out = '\f'; break;
    case 'n': out = '\n'; break;
    case 'r': out = '\r'; break;
    case 't': out = '\t'; break;
    case 'u':
        v->escape_value = 0;
        v->escape_digits = 0;
        p++;
        goto unicode;
    default:
        json_fail(v, p, "unknown escape");
        goto skip;
    }
    if (v->capture != NULL)
        capture(v, &out, 1);
    p++;
    goto string;

unicode:
    NEXT_BYTE(ST_UNICODE);
    h = hex_value(c);
    if (h < 0) {
        json_fail(v, p, "expected a hex digit in a \\u escape");
        goto skip;
    }
    v->escape_value = v->escape_value * 16 + (unsigned)h;
    p++;
    if (++v->escape_digits < 4)
        goto unicode;
    unicode_escape(v, p);
    goto string;

utf8: /* the rest of a sequence that a piece boundary split */
    NEXT_BYTE(ST_UTF8);
    if (c >= v->utf8_low && c <= v->utf8_high) {
        if (v->capture != NULL)
            capture(v, p, 1);
        p++;
        v->utf8_low = 0x80;
        v->utf8_high = 0xBF;
        if (--v->utf8_need > 0)
            goto utf8;
        goto string;
    }
    utf8_fail(v, v->utf8_lead_at, MALFORMED, (int)v->utf8_lead);
    v->utf8_need = 0;
    goto string; /* this byte is scanned again as part of the string */

number:
    s = v->number_state;
    while (p < end && (next = number_step(s, *p)) >= 0) {
        s = next;
        p++;
    }
    v->number_state = (unsigned char)s;
    if (p == end) {
        v->state = ST_NUMBER;
        return;
    }
    if (NUMBER_COMPLETE(s))
        goto value_end; /* the byte at p belongs to what follows */
    if (*p == '\n') {
        v->state = ST_NUMBER;
        goto newline;
    }
    json_fail(v, p, "expected a digit");
    goto skip;

literal:
    NEXT_BYTE(ST_LITERAL);
    if (c != (unsigned char)v->literal[v->literal_pos]) {
        json_fail(v, p, "expected true, false or null");
        goto skip;
    }
    p++;
    if (v->literal[++v->literal_pos] != '\0')
        goto literal;
    goto value_end;
}

/* ------------------------------------------------------------------- the core's API */

void validate_config_defaults(validate_config *config)
{
    static const char endpoint[] = "/v1/chat/completions";
    config->max_lines = VALIDATE_NO_LIMIT;
    config->max_bytes = VALIDATE_NO_LIMIT;
    config->max_custom_id = VALIDATE_NO_LIMIT;
    config->max_problems = 100;
    config->require_method_url = 0;
    config->check_model = 1;
    config->endpoint = endpoint;
    config->endpoint_length = sizeof endpoint - 1;
}

void validate_init(validate_scanner *v, const validate_config *config)
{
    memset(v, 0, sizeof *v);
    v->config = *config;
    reset_line(v);
}

/* ** scan a piece of the file that starts at offset v->bytes */
static void scan_piece(validate_scanner *v, const unsigned char *p, size_t n)
{
    v->chunk = p;
    v->chunk_offset = v->bytes;
    scan(v, p, p + n);
    v->bytes += n;
}

int validate_feed(validate_scanner *v, const char *data, size_t length)
{
    const unsigned char *p = (const unsigned char *)data;
    if (!v->bytes_reported && length > v->config.max_bytes - v->bytes) {
        /* the first byte past the limit is reported on the line it belongs to */
        size_t head = (size_t)(v->config.max_bytes - v->bytes);
        scan_piece(v, p, head);
        add_problem(v, "max_bytes", "the file is larger than %llu bytes",
                    (unsigned long long)v->config.max_bytes);
        v->bytes_reported = 1;
        p += head;
        length -= head;
    }
    scan_piece(v, p, length);
    return v->out_of_memory ? -1 : 0;
}

int validate_finish(validate_scanner *v)
{
    if (v->bytes > v->line_start) {
        end_line(v);
        v->line_start = v->bytes;
    }
    while (v->pending_count > 0)
        settle_id(v);
    return v->out_of_memory ? -1 : 0;
}

const char *validate_model(const validate_scanner *v, size_t i, size_t *length)
{
    const validate_entry *e = &v->models.entries[i];
    *length = entry_length(&v->models, i);
    return v->models.text.data + e->offset;
}

void validate_release(validate_scanner *v)
{
    int i;
    free(v->problems);
    set_free(&v->models);
    set_free(&v->ids);
    free(v->key.data);
    for (i = 0; i < VALIDATE_SLOTS; i++)
        free(v->values[i].data);
    for (i = 0; i < VALIDATE_ID_QUEUE; i++)
        free(v->pending_ids[i].text.data);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------- core.validate */
#ifndef VALIDATE_CORE_ONLY

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"
#include "fsutil.h"
#include "options.h"

#define VALIDATE_JOB "moonbatch.core.validate"
#define CHUNK_SIZE (256 * 1024)

static const char who[] = "moonbatch.core.validate";

static const char *const validate_options[] = {
    "max_lines", "max_bytes", "max_custom_id", "require_method_url", "endpoint", "replace_model",
    "max_problems", NULL};

/* one call's resources, in a userdata so that an error half-way frees them at collection */
typedef struct validate_job {
    validate_scanner scanner;
    char *chunk;
    int fd;
} validate_job;

/* ** close the file and free the buffers; idempotent (also the __gc) */
static void job_close(validate_job *job)
{
    if (job->fd >= 0)
        close(job->fd);
    job->fd = -1;
    free(job->chunk);
    job->chunk = NULL;
    validate_release(&job->scanner);
}

static int job_gc(lua_State *L)
{
    job_close((validate_job *)lua_touserdata(L, 1));
    return 0;
}

/* ** opts[name] (the table at idx) as a count: an integer >= 0 (math.huge: no limit), or `dflt`
 * when absent */
static uint64_t option_count(lua_State *L, int idx, const char *name, uint64_t dflt)
{
    double d = options_number(L, idx, name, -1.0, who);
    if (d < 0)
        return dflt;
    if (d >= 18446744073709551616.0)
        return VALIDATE_NO_LIMIT;
    if (d != (double)(uint64_t)d)
        luaL_error(L, "%s: bad option '%s' (an integer >= 0 expected)", who, name);
    return (uint64_t)d;
}

void validate_read_config(lua_State *L, int idx, validate_config *cfg)
{
    size_t length;
    idx = util_absindex(L, idx);
    validate_config_defaults(cfg);
    options_check_known(L, idx, validate_options, who);
    cfg->max_lines = option_count(L, idx, "max_lines", cfg->max_lines);
    cfg->max_bytes = option_count(L, idx, "max_bytes", cfg->max_bytes);
    cfg->max_custom_id = option_count(L, idx, "max_custom_id", cfg->max_custom_id);
    cfg->max_problems = option_count(L, idx, "max_problems", cfg->max_problems);
    if (options_get(L, idx, "require_method_url", LUA_TBOOLEAN, who))
        cfg->require_method_url = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (options_string(L, idx, "replace_model", 0, who) != NULL)
        cfg->check_model = 0;
    /* last, and left on the stack so that the string outlives the scan */
    if (options_get(L, idx, "endpoint", LUA_TSTRING, who)) {
        cfg->endpoint = lua_tolstring(L, -1, &length);
        cfg->endpoint_length = length;
    }
}

/* ** nil, msg, {kind = kind, path = path, message = msg[, errno = e]}; closes the job */
static int job_fail(lua_State *L, validate_job *job, const char *path, const char *kind, int e)
{
    job_close(job);
    return util_read_failure(L, path, kind, e, "out of memory");
}

/* ** nil, msg, {kind = "io", ...} for a file that is not a regular one; closes the job */
static int job_fail_why(lua_State *L, validate_job *job, const char *path, const char *why)
{
    job_close(job);
    return util_read_failure(L, path, "io", 0, why);
}

static void push_count(lua_State *L, uint64_t n)
{
    if (n <= (uint64_t)1 << 53)
        lua_pushinteger(L, (lua_Integer)n);
    else
        lua_pushnumber(L, (lua_Number)n);
}

void validate_push_report(lua_State *L, const validate_scanner *v)
{
    size_t i, length;
    lua_createtable(L, 0, 6);
    lua_pushboolean(L, v->problem_total == 0);
    lua_setfield(L, -2, "ok");
    push_count(L, v->lines);
    lua_setfield(L, -2, "lines");
    push_count(L, v->bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushboolean(L, v->problem_total > v->problem_count);
    lua_setfield(L, -2, "truncated");

    lua_createtable(L, (int)(v->models.count < 1000000 ? v->models.count : 1000000), 0);
    for (i = 0; i < v->models.count; i++) {
        const char *model = validate_model(v, i, &length);
        lua_pushlstring(L, model, length);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    lua_setfield(L, -2, "models");

    lua_createtable(L, (int)v->problem_count, 0);
    for (i = 0; i < v->problem_count; i++) {
        const validate_problem *problem = &v->problems[i];
        lua_createtable(L, 0, 3);
        push_count(L, problem->line);
        lua_setfield(L, -2, "line");
        lua_pushstring(L, problem->rule);
        lua_setfield(L, -2, "rule");
        lua_pushstring(L, problem->message);
        lua_setfield(L, -2, "message");
        lua_rawseti(L, -2, (int)(i + 1));
    }
    lua_setfield(L, -2, "problems");
}

int validate_file(lua_State *L)
{
    validate_config cfg;
    validate_job *job;
    const char *path;
    struct stat st;
    char why[FSUTIL_WHY_SIZE];
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "%s: bad argument #1 'path' (string expected, got %s)", who,
                          luaL_typename(L, 1));
    path = lua_tostring(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    } else if (!lua_istable(L, 2)) {
        return luaL_error(L, "%s: bad argument #2 'opts' (table expected, got %s)", who,
                          luaL_typename(L, 2));
    }
    lua_settop(L, 2);
    validate_read_config(L, 2, &cfg); /* leaves the endpoint at 3 */

    /* created closed, before the file and the buffers are acquired */
    job = (validate_job *)lua_newuserdata(L, sizeof *job);
    job->fd = -1;
    job->chunk = NULL;
    validate_init(&job->scanner, &cfg);
    if (luaL_newmetatable(L, VALIDATE_JOB)) {
        lua_pushcfunction(L, job_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);

    job->chunk = (char *)malloc(CHUNK_SIZE);
    if (job->chunk == NULL)
        return job_fail(L, job, path, "memory", 0);
    job->fd = fsutil_open_regular(path, &st, why);
    if (job->fd < 0)
        return why[0] ? job_fail_why(L, job, path, why) : job_fail(L, job, path, "io", errno);
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(job->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    for (;;) {
        ssize_t n = read(job->fd, job->chunk, CHUNK_SIZE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return job_fail(L, job, path, "io", errno);
        }
        if (n == 0)
            break;
        if (validate_feed(&job->scanner, job->chunk, (size_t)n) != 0)
            return job_fail(L, job, path, "memory", 0);
    }
    if (validate_finish(&job->scanner) != 0)
        return job_fail(L, job, path, "memory", 0);
    close(job->fd);
    job->fd = -1;
    validate_push_report(L, &job->scanner);
    job_close(job);
    return 1;
}

#endif /* VALIDATE_CORE_ONLY */
