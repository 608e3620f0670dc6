/*
 * sample.h — the sampler's settings and seeded generator: greedy, or
 * temperature + top-p (same seed, same text, on any backend). The choice
 * itself is the backend's sample op (kernels/backend.h), run on the logits
 * where they are: kvz_context_sample().
 */
#ifndef KVZ_MODEL_SAMPLE_H
#define KVZ_MODEL_SAMPLE_H

#include "kernels/backend.h"

#include <stdint.h>

typedef struct kvz_sampler {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 keeps every token */
    uint64_t state;    /* xorshift128+ state seeded by splitmix64 */
    uint64_t state2;
} kvz_sampler;

void kvz_sampler_init(kvz_sampler *s, float temperature, float top_p, uint64_t seed);

/* The parameters of the next choice; a sampling (not greedy) choice takes
 * one draw from the generator. s == NULL: greedy. */
kvz_sample_params kvz_sampler_next(kvz_sampler *s);

/* Index of the largest logit (the first of equal ones), on host memory. */
int32_t kvz_argmax(const float *logits, int32_t n);

#endif
