/* validate_fuzz.c: a libFuzzer harness for the scanner in csrc/validate.c (no Lua needed).
 *
 * Each input is scanned three ways: in one piece, in pieces of pseudo-random sizes, and (when
 * short) a byte at a time. The scanner keeps all of its state between feeds, so the three
 * reports must be identical. The report is also checked against what can be counted directly
 * (lines, bytes), against its own invariants (messages name their line, one line each, lines in
 * order, at most max_problems kept, and those the first of all problems), and line by line
 * against a plain recursive-descent reference grammar (the json, object, utf8 and empty_line
 * verdicts).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *         -DVALIDATE_CORE_ONLY -Icsrc fuzz/validate_fuzz.c csrc/validate.c -o validate_fuzz
 *   ./validate_fuzz -max_len=4096 -max_total_time=120 fuzz/corpus
 *
 * Add -DVALIDATE_NO_SIMD to fuzz the portable 8-bytes-at-a-time string scan instead of SSE2.
 *
 * Input layout: byte 0 picks the options, byte 1 seeds the piece sizes, the rest is the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void config_from(uint8_t bits, validate_config *cfg)
{
    static const char embeddings[] = "/v1/embeddings";
    validate_config_defaults(cfg);
    cfg->require_method_url = bits & 1;
    cfg->check_model = !(bits & 2);
    if (bits & 4)
        cfg->max_custom_id = 4;
    if (bits & 8)
        cfg->max_lines = 3;
    if (bits & 16)
        cfg->max_bytes = 100;
    if (bits & 32)
        cfg->max_problems = 2;
    if (bits & 64) {
        cfg->endpoint = embeddings;
        cfg->endpoint_length = sizeof embeddings - 1;
    }
}

/* ** scan `file` in pieces: 0 = one piece, 1 = a byte at a time, else sizes from seed `mode` */
static void run(validate_scanner *v, const validate_config *cfg, const uint8_t *file, size_t n,
                unsigned mode)
{
    size_t at = 0;
    uint32_t state = mode * 2654435761u + 1;
    validate_init(v, cfg);
    while (at < n) {
        size_t piece = n - at;
        if (mode == 1) {
            piece = 1;
        } else if (mode > 1) {
            state = state * 1103515245u + 12345u;
            piece = 1 + (state >> 16) % 67;
            if (piece > n - at)
                piece = n - at;
        }
        if (validate_feed(v, (const char *)file + at, piece) != 0)
            abort(); /* nothing here should run out of memory */
        at += piece;
    }
    if (validate_finish(v) != 0)
        abort();
}

static void check_invariants(const validate_scanner *v, const uint8_t *file, size_t n)
{
    uint64_t lines = 0, last_line = 0;
    size_t i;
    for (i = 0; i < n; i++)
        lines += file[i] == '\n';
    if (n > 0 && file[n - 1] != '\n')
        lines++;
    if (v->lines != lines || v->bytes != n)
        abort();
    if (v->problem_count > v->config.max_problems || v->problem_count > v->problem_total)
        abort();
    if ((v->problem_total > v->problem_count) != (v->problem_count < v->problem_total))
        abort();
    for (i = 0; i < v->problem_count; i++) {
        const validate_problem *p = &v->problems[i];
        char prefix[32];
        int k = snprintf(prefix, sizeof prefix, "line %llu: ", (unsigned long long)p->line);
        if (p->line < 1 || p->line > v->lines || p->line < last_line)
            abort();
        if (strncmp(p->message, prefix, (size_t)k) != 0 || strchr(p->message, '\n') != NULL)
            abort();
        last_line = p->line;
    }
    for (i = 0; i < v->models.count; i++) {
        size_t length;
        validate_model(v, i, &length);
    }
}

static void compare(const validate_scanner *a, const validate_scanner *b)
{
    size_t i;
    if (a->lines != b->lines || a->bytes != b->bytes || a->problem_total != b->problem_total ||
        a->problem_count != b->problem_count || a->models.count != b->models.count)
        abort();
    for (i = 0; i < a->problem_count; i++) {
        const validate_problem *p = &a->problems[i], *q = &b->problems[i];
        if (p->line != q->line || strcmp(p->rule, q->rule) != 0 || strcmp(p->message, q->message) != 0) {
            fprintf(stderr, "problem %zu differs:\n  %s: %s\n  %s: %s\n", i, p->rule, p->message,
                    q->rule, q->message);
            abort();
        }
    }
    for (i = 0; i < a->models.count; i++) {
        size_t la, lb;
        const char *ma = validate_model(a, i, &la), *mb = validate_model(b, i, &lb);
        if (la != lb || (la > 0 && memcmp(ma, mb, la) != 0))
            abort();
    }
}

/* ------------------------------------------------------------------- a reference grammar
 * A deliberately plain recursive-descent reading of one line, written apart from the scanner,
 * to check its json, object, utf8 and empty_line verdicts. */

typedef struct reference {
    const uint8_t *p, *end;
    int utf8_bad;
} reference;

static void ref_space(reference *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r'))
        r->p++;
}

/* ** the length of a well-formed UTF-8 character at p (lead >= 0x80), or 0 */
static size_t ref_utf8(const uint8_t *p, const uint8_t *end)
{
    uint32_t cp;
    size_t n, i;
    if (p[0] >= 0xC0 && p[0] < 0xE0)
        n = 2, cp = p[0] & 0x1F;
    else if (p[0] >= 0xE0 && p[0] < 0xF0)
        n = 3, cp = p[0] & 0x0F;
    else if (p[0] >= 0xF0 && p[0] < 0xF8)
        n = 4, cp = p[0] & 0x07;
    else
        return 0;
    /* a lead followed by anything but continuations is malformed at the lead */
    for (i = 1; i < n; i++) {
        if (p + i >= end || (p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
        return 0; /* overlong */
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return n;
}

static int ref_hex4(reference *r, unsigned *u)
{
    int i;
    *u = 0;
    for (i = 0; i < 4; i++) {
        uint8_t c;
        if (r->p >= r->end)
            return 0;
        c = *r->p++;
        if (c >= '0' && c <= '9')
            *u = *u * 16 + (unsigned)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            *u = *u * 16 + (unsigned)((c | 0x20) - 'a' + 10);
        else
            return 0;
    }
    return 1;
}

static int ref_string(reference *r)
{
    int pending = 0; /* a high surrogate escape waits for its low half */
    r->p++;
    for (;;) {
        uint8_t c;
        if (r->p >= r->end)
            return 0;
        c = *r->p;
        if (pending && c != '\\') {
            r->utf8_bad = 1;
            pending = 0;
        }
        if (c == '"') {
            r->p++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            unsigned u;
            r->p++;
            if (r->p >= r->end)
                return 0;
            c = *r->p++;
            if (c != 'u') {
                if (pending)
                    r->utf8_bad = 1;
                pending = 0;
                if (strchr("\"\\/bfnrt", c) == NULL || c == 0)
                    return 0;
                continue;
            }
            if (!ref_hex4(r, &u))
                return 0;
            if (pending && u >= 0xDC00 && u <= 0xDFFF) {
                pending = 0;
                continue;
            }
            if (pending)
                r->utf8_bad = 1;
            pending = u >= 0xD800 && u <= 0xDBFF;
            if (u >= 0xDC00 && u <= 0xDFFF)
                r->utf8_bad = 1;
            continue;
        }
        if (c < 0x80) {
            r->p++;
        } else {
            size_t n = ref_utf8(r->p, r->end);
            if (n == 0) {
                r->utf8_bad = 1;
                n = 1;
            }
            r->p += n;
        }
    }
}

static int ref_digits(reference *r)
{
    const uint8_t *start = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > start;
}

static int ref_number(reference *r)
{
    if (*r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (r->p >= r->end || *r->p < '1' || *r->p > '9' || !ref_digits(r))
        return 0;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (!ref_digits(r))
            return 0;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (!ref_digits(r))
            return 0;
    }
    return 1;
}

static int ref_value(reference *r, int depth)
{
    static const char *const literals[] = {"true", "false", "null"};
    int i;
    ref_space(r);
    if (r->p >= r->end)
        return 0;
    switch (*r->p) {
    case '"':
        return ref_string(r);
    case '{':
    case '[': {
        uint8_t close = *r->p == '{' ? '}' : ']';
        if (depth == 64)
            return 0;
        r->p++;
        ref_space(r);
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return 1;
        }
        for (;;) {
            if (close == '}') {
                ref_space(r);
                if (r->p >= r->end || *r->p != '"' || !ref_string(r))
                    return 0;
                ref_space(r);
                if (r->p >= r->end || *r->p++ != ':')
                    return 0;
            }
            if (!ref_value(r, depth + 1))
                return 0;
            ref_space(r);
            if (r->p >= r->end)
                return 0;
            if (*r->p == close) {
                r->p++;
                return 1;
            }
            if (*r->p++ != ',')
                return 0;
        }
    }
    default:
        for (i = 0; i < 3; i++) {
            size_t n = strlen(literals[i]);
            if ((size_t)(r->end - r->p) >= n && memcmp(r->p, literals[i], n) == 0) {
                r->p += n;
                return 1;
            }
        }
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
            return ref_number(r);
        return 0;
    }
}

enum { SAW_JSON = 1, SAW_OBJECT = 2, SAW_UTF8 = 4, SAW_EMPTY = 8 };

/* ** compare the scanner's per-line verdicts with the reference's (when no problem was cut) */
static void check_grammar(const validate_scanner *v, const uint8_t *file, size_t n)
{
    unsigned char *saw;
    size_t i, line = 0, start = 0;
    if (v->problem_count != v->problem_total)
        return;
    saw = (unsigned char *)calloc((size_t)v->lines + 1, 1);
    for (i = 0; i < v->problem_count; i++) {
        const validate_problem *p = &v->problems[i];
        unsigned char bit = strcmp(p->rule, "json") == 0 ? SAW_JSON
                          : strcmp(p->rule, "object") == 0 ? SAW_OBJECT
                          : strcmp(p->rule, "utf8") == 0 ? SAW_UTF8
                          : strcmp(p->rule, "empty_line") == 0 ? SAW_EMPTY : 0;
        saw[p->line] |= bit;
    }
    while (start < n) {
        const uint8_t *nl = (const uint8_t *)memchr(file + start, '\n', n - start);
        size_t stop = nl ? (size_t)(nl - file) : n;
        reference r;
        unsigned char want;
        int valid, object;
        line++;
        r.p = file + start;
        r.end = file + stop;
        r.utf8_bad = 0;
        ref_space(&r);
        if (r.p == r.end) {
            want = SAW_EMPTY;
        } else {
            object = *r.p == '{';
            valid = ref_value(&r, 0);
            ref_space(&r);
            valid = valid && r.p == r.end;
            want = !valid ? SAW_JSON : (object ? 0 : SAW_OBJECT) | (r.utf8_bad ? SAW_UTF8 : 0);
        }
        if ((want & SAW_JSON) ? !(saw[line] & SAW_JSON) || (saw[line] & (SAW_OBJECT | SAW_EMPTY))
                              : (saw[line] & (SAW_JSON | SAW_OBJECT | SAW_UTF8 | SAW_EMPTY)) != want) {
            fprintf(stderr, "line %zu: the reference says %u, the scanner %u\n", line, want, saw[line]);
            abort();
        }
        start = stop + 1;
    }
    free(saw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    validate_config cfg;
    validate_scanner whole, pieces, bytes;
    const uint8_t *file;
    size_t n, i;
    if (size < 2)
        return 0;
    config_from(data[0], &cfg);
    file = data + 2;
    n = size - 2;

    run(&whole, &cfg, file, n, 0);
    check_invariants(&whole, file, n);
    check_grammar(&whole, file, n);
    run(&pieces, &cfg, file, n, 2u + data[1]);
    compare(&whole, &pieces);
    validate_release(&pieces);
    validate_release(&pieces); /* idempotent */
    if (n <= 4096) {
        run(&bytes, &cfg, file, n, 1);
        compare(&whole, &bytes);
        validate_release(&bytes);
    }
    /* the kept problems are the first of all of them, in order */
    cfg.max_problems = VALIDATE_NO_LIMIT;
    run(&bytes, &cfg, file, n, 0);
    if (bytes.problem_total != whole.problem_total || bytes.problem_count != bytes.problem_total)
        abort();
    for (i = 0; i < whole.problem_count; i++)
        if (bytes.problems[i].line != whole.problems[i].line ||
            strcmp(bytes.problems[i].message, whole.problems[i].message) != 0)
            abort();
    check_grammar(&bytes, file, n);
    validate_release(&bytes);
    validate_release(&whole);
    return 0;
}
