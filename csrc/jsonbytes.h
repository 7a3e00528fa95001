/* jsonbytes.h: the byte classes of a JSON string, as one 256-entry table for both scanners that
 * run over strings (reply.c's decoder and validate.c's check), each giving its own values. */
#ifndef MOONBATCH_JSONBYTES_H
#define MOONBATCH_JSONBYTES_H

#define JSON_R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x

/* the table's initialiser: CONTROL for 0x00-0x1F, QUOTE for '"' and '\\' (the bytes a string
 * cannot hold as they are), PLAIN for every other ASCII byte, HIGH for 0x80-0xFF (UTF-8) */
#define JSON_STRING_BYTES(CONTROL, QUOTE, PLAIN, HIGH)                                            \
    {                                                                                         \
        JSON_R16(CONTROL), JSON_R16(CONTROL),                                                 \
        PLAIN, PLAIN, QUOTE, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN,                               \
        PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, /* 0x22 '"' */                \
        JSON_R16(PLAIN), JSON_R16(PLAIN),                                                     \
        PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN,                               \
        PLAIN, PLAIN, PLAIN, PLAIN, QUOTE, PLAIN, PLAIN, PLAIN, /* 0x5C '\\' */               \
        JSON_R16(PLAIN), JSON_R16(PLAIN),                                                     \
        JSON_R16(HIGH), JSON_R16(HIGH), JSON_R16(HIGH), JSON_R16(HIGH),                       \
        JSON_R16(HIGH), JSON_R16(HIGH), JSON_R16(HIGH), JSON_R16(HIGH)                        \
    }

#endif
