/*
 * context.h — one sequence being run through a model: its KV cache and the
 * scratch activations of the forward pass.
 *
 * kvz_context_eval() appends tokens: it runs them through every layer in
 * chunks of at most max_chunk tokens (peak activation memory is bounded by
 * the chunk, not by the sequence), stores their keys and values, and returns
 * logits. kvz_context_truncate() forgets the tail of the cache, which is how a
 * scoring pass or a question is run "without keeping its KV".
 *
 * The cache holds keys after RoPE, per layer as (n_kv_heads, capacity,
 * head_dim); position i of the sequence is row i.
 */
#ifndef KVZ_MODEL_CONTEXT_H
#define KVZ_MODEL_CONTEXT_H

#include "model/model.h"
#include "model/sample.h"

#include <stdint.h>

typedef struct kvz_context kvz_context;

/* What a layer hook sees, right after the chunk's keys and values entered the
 * cache and before attention. All pointers are backend memory. */
typedef struct kvz_layer_view {
    int32_t layer;
    const float *q;        /* (n, n_heads, head_dim), after RoPE */
    const float *k_cache;  /* (n_kv_heads, capacity, head_dim), rows < pos0 + n valid */
    const float *v_cache;
    const kvz_attention_params *attn; /* n, pos0, heads, capacity, scale */
    const int32_t *positions;         /* backend (n) */
} kvz_layer_view;

/* Return KVZ_OK to continue; any other status aborts the evaluation with it. */
typedef int (*kvz_layer_hook)(void *ctx, const kvz_layer_view *view);

typedef enum kvz_logits_mode {
    KVZ_LOGITS_NONE = 0,
    KVZ_LOGITS_LAST = 1, /* one row: the last token's */
    KVZ_LOGITS_ALL = 2,  /* one row per evaluated token */
    KVZ_LOGITS_KEEP = 3, /* the last token's row, left in backend memory for kvz_context_sample */
} kvz_logits_mode;

typedef struct kvz_eval_opts {
    kvz_logits_mode logits;
    kvz_layer_hook hook; /* optional */
    void *hook_ctx;
    /* Optional scoring inside attention (kvz_score_params): the ranges and
     * reduction are taken from `score`, the rest from each layer; layer l
     * accumulates into scores + l * n_kv_heads * capacity (backend memory). */
    const kvz_score_params *score;
    float *scores;
} kvz_eval_opts;

/* A context for up to `capacity` tokens, evaluating at most `max_chunk` at a
 * time. KVZ_ERR_RANGE if capacity exceeds what the model supports. */
int kvz_context_new(kvz_context **out, kvz_model *m, int32_t capacity, int32_t max_chunk);
void kvz_context_free(kvz_context *c);

int32_t kvz_context_len(const kvz_context *c);
int32_t kvz_context_capacity(const kvz_context *c);
kvz_model *kvz_context_model(const kvz_context *c);
/* The backend the context's memory and work are on. */
kvz_backend *kvz_context_backend(const kvz_context *c);

/* Append and run `n` tokens. `logits` (host) receives vocab floats per
 * requested row. KVZ_ERR_RANGE when the cache would overflow (nothing is
 * appended then), KVZ_ERR_ARG for a token id outside the vocabulary. The
 * backend has finished the work when it returns, except with KVZ_LOGITS_KEEP:
 * then kvz_context_sample or kvz_context_finish waits for it, so that on a GPU
 * the host queues the sampling while the device still runs the step, and a
 * failure of the device's work is reported there, with the tokens left
 * appended (such a failure leaves a GPU's context unusable: free it). */
int kvz_context_eval(kvz_context *c, const int32_t *tokens, int32_t n, const kvz_eval_opts *opts,
                     float *logits);

/* A context over a loaded (compressed) cache: KV head h of layer l holds
 * loaded[l * n_kv_heads + h] rows, filled through kvz_context_ragged_rows (keys
 * with RoPE already applied at their positions); `extra` tokens can then be
 * evaluated, the first at position first_position. kvz_context_len counts the
 * appended tokens; truncate drops them. KVZ_ERR_RANGE when positions or rows
 * would exceed the model's trained context. `backend`: the model's when NULL,
 * or one forked from it (its fork op) so that this context works beside
 * others on the model from another thread; it must outlive the context. */
int kvz_context_new_ragged(kvz_context **out, kvz_model *m, kvz_backend *backend, const int32_t *loaded,
                           int32_t extra, int32_t max_chunk, int32_t first_position);
/* Backend pointers to rows row0 .. row0 + n of a head's loaded part in the
 * key and value caches (each row head_dim floats), for the backend's kv_load. */
int kvz_context_ragged_rows(kvz_context *c, int32_t layer, int32_t head, int32_t row0, int32_t n, float **k,
                            float **v);

/* The next token, chosen by the backend from the logits the last evaluation
 * kept (KVZ_LOGITS_KEEP) without bringing them to the host; s == NULL:
 * greedy. KVZ_ERR_INTERNAL when the last evaluation kept none. */
int kvz_context_sample(kvz_context *c, kvz_sampler *s, int32_t *token);

/* Wait until the backend has finished the work queued so far (what an
 * evaluation with KVZ_LOGITS_KEEP left running): for timing, or before the
 * host stops using the context. Reports that work's failure. */
int kvz_context_finish(kvz_context *c);

/* Forget cache rows from `len` on (len <= current length). */
void kvz_context_truncate(kvz_context *c, int32_t len);

/* Backend pointers to layer `l`'s caches (n_kv_heads, capacity, head_dim). */
void kvz_context_layer_cache(const kvz_context *c, int32_t l, float **k, float **v);

#endif
