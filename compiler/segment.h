/*
 * segment.h — documents longer than a segment limit are cut into segments at
 * paragraph boundaries (blank lines), else at line ends, else at token
 * boundaries, each compiled as its own artifact.
 */
#ifndef KVZ_COMPILER_SEGMENT_H
#define KVZ_COMPILER_SEGMENT_H

#include "model/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_segment {
    size_t start, len;  /* bytes of the document text */
    kvz_tokens tokens;  /* the segment's tokens (tokenized on its own) */
} kvz_segment;

typedef struct kvz_segments {
    kvz_segment *items;
    size_t len, cap;
    size_t dropped;        /* bytes of the text the vocabulary has no token for (left out) */
    uint8_t first_dropped; /* the first of them */
    size_t tokenized;      /* bytes given to the tokenizer to make them: the work, a few times len */
} kvz_segments;

/* Split text[0..len) into segments of at most max_tokens tokens each. */
int kvz_segment_text(const kvz_tokenizer *t, const char *text, size_t len, int32_t max_tokens,
                     kvz_segments *out);
void kvz_segments_free(kvz_segments *s);

#endif
