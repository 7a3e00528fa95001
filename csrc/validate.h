/* validate.h: a one-pass streaming validator of batch input JSONL (a pure-C core that needs no
 * Lua) and core.validate, its Lua binding. */
#ifndef MOONBATCH_VALIDATE_H
#define MOONBATCH_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#define VALIDATE_MAX_DEPTH 64     /* deepest nesting of arrays and objects a line may have */
#define VALIDATE_MESSAGE_SIZE 200 /* a problem's message, with its terminating NUL */
#define VALIDATE_NO_LIMIT UINT64_MAX

typedef struct validate_config {
    uint64_t max_lines;        /* VALIDATE_NO_LIMIT: no limit */
    uint64_t max_bytes;        /* VALIDATE_NO_LIMIT: no limit */
    uint64_t max_custom_id;    /* bytes of a custom_id; VALIDATE_NO_LIMIT: no limit */
    uint64_t max_problems;     /* problems kept (all are counted) */
    int require_method_url;    /* lines must carry method and url */
    int check_model;           /* 0 when the batch replaces the model: no model or one_model */
    const char *endpoint;      /* what url must equal; not copied: must outlive the scanner */
    size_t endpoint_length;
} validate_config;

typedef struct validate_problem {
    uint64_t line;      /* 1-based */
    const char *rule;   /* a static string: "json", "custom_id", ... */
    char message[VALIDATE_MESSAGE_SIZE]; /* one line, starting "line N: " */
} validate_problem;

/* a growable byte buffer, reused from line to line */
typedef struct validate_buffer {
    char *data;
    size_t length, capacity;
} validate_buffer;

/* a set of byte strings remembering each one's first line; entries keep insertion order, and
 * their strings lie back to back in the set's text (an entry ends where the next begins) */
typedef struct validate_entry {
    size_t offset; /* in the set's text */
    uint64_t line;
} validate_entry;

typedef struct validate_set {
    validate_buffer text;
    validate_entry *entries;
    size_t count, entries_capacity;
    uint64_t *slots; /* open addressing: (hash tag << 32) | (entry index + 1); 0 is empty */
    size_t slot_mask;
} validate_set;

#define VALIDATE_SLOTS 7 /* none, custom_id, method, url, body, model, messages */
#define VALIDATE_ID_QUEUE 8 /* lines a custom_id waits, its slot prefetched, for the set */

/* a custom_id on its way to the set */
typedef struct validate_pending_id {
    validate_buffer text;
    uint64_t hash, line;
} validate_pending_id;

/* The scanner: validate_init, validate_feed any number of times with consecutive pieces of the
 * file (split anywhere), validate_finish once, read the results, validate_release. Fields
 * below "private" are the scanner's own. */
typedef struct validate_scanner {
    validate_config config;
    /* results */
    uint64_t lines;                 /* complete lines so far */
    uint64_t bytes;                 /* bytes fed so far */
    validate_problem *problems;     /* the first config.max_problems problems */
    size_t problem_count, problem_capacity;
    uint64_t problem_total;         /* every problem found, kept or not */
    validate_set models;            /* distinct string body.model values, first seen first */
    int out_of_memory;              /* an allocation failed: the results are incomplete */
    /* private */
    validate_set ids;
    uint64_t line_start;            /* offset of the current line's first byte */
    uint64_t chunk_offset;          /* offset of `chunk`, the piece being scanned */
    const unsigned char *chunk;
    uint64_t utf8_lead_at;          /* offset of the lead byte of a split UTF-8 sequence */
    unsigned utf8_lead;             /* and that byte */
    unsigned pending_high;          /* a \uD800-\uDBFF escape waiting for its low half */
    uint64_t pending_high_at;       /* and where that escape starts */
    uint64_t id_hash;               /* the hash of this line's custom_id, known early */
    validate_pending_id pending_ids[VALIDATE_ID_QUEUE]; /* a ring, oldest at pending_first */
    size_t pending_first, pending_count;
    size_t last_model;              /* 1 + the models entry the last line named, or 0 */
    unsigned escape_value, escape_digits;
    unsigned seen;                  /* bit per slot: its key was met on this line */
    unsigned char state, number_state, literal_pos, depth, top_type, in_key, key_too_long;
    unsigned char top_key, body_key, body_open, messages_pending, messages_nonempty;
    unsigned char utf8_reported, utf8_need, utf8_low, utf8_high;
    unsigned char bytes_reported, lines_reported;
    const char *literal;
    validate_buffer *capture;       /* where the current string's decoded bytes go, or NULL */
    validate_buffer key;
    validate_buffer values[VALIDATE_SLOTS];
    unsigned char types[VALIDATE_SLOTS];
    unsigned char stack[VALIDATE_MAX_DEPTH];
} validate_scanner;

/* ** defaults: no limits, 100 problems, method/url optional, endpoint /v1/chat/completions */
void validate_config_defaults(validate_config *config);
/* ** start a scan; allocates nothing */
void validate_init(validate_scanner *v, const validate_config *config);
/* ** scan the next `length` bytes of the file; -1 when out of memory, else 0 */
int validate_feed(validate_scanner *v, const char *data, size_t length);
/* ** end the scan (a last line without a newline is checked here); -1 when out of memory */
int validate_finish(validate_scanner *v);
/* ** the i-th distinct model (0-based, i < v->models.count) and its length */
const char *validate_model(const validate_scanner *v, size_t i, size_t *length);
/* ** free everything the scanner holds; idempotent, and safe after validate_init alone */
void validate_release(validate_scanner *v);

#ifndef VALIDATE_CORE_ONLY
#include "lua.h"
/* ** core.validate(path [, opts]): a report table, or nil, msg, {kind = "io", path = ...} */
int validate_file(lua_State *L);
/* ** the configuration in the options table at idx (max_lines, max_bytes, max_custom_id,
 * max_problems, require_method_url, endpoint, replace_model); raises on a misused option.
 * Pushes one value (the endpoint string, or nil) that cfg->endpoint points into: keep it (or a
 * copy) as long as the scan runs. */
void validate_read_config(lua_State *L, int idx, validate_config *cfg);
/* ** push the report {ok, lines, bytes, truncated, models, problems} of a finished scan */
void validate_push_report(lua_State *L, const validate_scanner *v);
#endif

#endif
