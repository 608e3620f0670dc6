/*
 * generate.h — prompt in, tokens out: prefill a prompt into a context, then
 * decode one token at a time until an end-of-generation token or the limit.
 */
#ifndef KVZ_MODEL_GENERATE_H
#define KVZ_MODEL_GENERATE_H

#include "model/context.h"
#include "model/sample.h"
#include "model/tokenizer.h"

/* Called with each generated token and its bytes (control tokens: none).
 * Return non-zero to stop. */
typedef int (*kvz_token_fn)(void *ctx, int32_t token, const char *bytes, size_t len);

typedef struct kvz_generate_opts {
    int32_t max_tokens;
    kvz_sampler *sampler;  /* NULL: greedy */
    kvz_token_fn on_token; /* optional */
    void *on_token_ctx;
} kvz_generate_opts;

typedef enum kvz_generate_stop {
    KVZ_GENERATE_END_OF_TURN = 1, /* an end-of-generation token */
    KVZ_GENERATE_MAX_TOKENS = 2,  /* the token limit */
    KVZ_GENERATE_CALLBACK = 3,    /* on_token asked to stop */
    KVZ_GENERATE_CONTEXT_FULL = 4 /* no room left in the context */
} kvz_generate_stop;

typedef struct kvz_generate_stats {
    int32_t prompt_tokens, generated_tokens;
    int32_t decode_steps; /* one-token forward passes after the prompt's (each gives the next token) */
    double prefill_seconds, decode_seconds; /* decode: all after the prefill, sampling included */
    kvz_generate_stop stopped_by; /* why it ended (when it returned KVZ_OK) */
} kvz_generate_stats;

/* Decode steps per second; 0 when there was none (an answer of one token,
 * whose time is the prefill's). */
double kvz_generate_decode_rate(const kvz_generate_stats *s);

/* Evaluate `prompt` after whatever the context holds, then generate. The
 * generated ids (end-of-generation token excluded) are appended to `out`. */
int kvz_generate(kvz_context *c, const int32_t *prompt, int32_t n_prompt,
                 const kvz_generate_opts *opts, kvz_tokens *out, kvz_generate_stats *stats);

#endif
