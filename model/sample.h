/*
 * sample.h — choosing the next token from logits: greedy, or temperature +
 * top-p with a seeded generator (same seed, same text).
 */
#ifndef KVZ_MODEL_SAMPLE_H
#define KVZ_MODEL_SAMPLE_H

#include <stdint.h>

typedef struct kvz_sampler {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 keeps every token */
    uint64_t state;    /* xoshiro-style state seeded by splitmix64 */
    uint64_t state2;
    int32_t *order;    /* scratch, grown on demand */
    float *probs;
    int32_t cap;
} kvz_sampler;

void kvz_sampler_init(kvz_sampler *s, float temperature, float top_p, uint64_t seed);
void kvz_sampler_free(kvz_sampler *s);

/* Index of the largest logit (the first of equal ones). */
int32_t kvz_argmax(const float *logits, int32_t n);

/* The next token; -1 only if scratch memory cannot be had. */
int32_t kvz_sample(kvz_sampler *s, const float *logits, int32_t n);

#endif
