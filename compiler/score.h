/*
 * score.h — importance scores of a document's cached key/value pairs.
 *
 * The context holds [prefix (P tokens) | document (n tokens)] when these run;
 * each leaves it that way (scoring passes drop their own KV). Scores come out
 * as (n_layers, n_kv_heads, n) f32 on the host, higher = more important.
 *
 *  KVzip   for each chunk of `chunk` document tokens, one forward pass of
 *          "repeat" prompt + the chunk on top of the cache; in every layer a
 *          softmax over [prefix | this chunk | the repeat input (causal)]; a
 *          pair's score is the largest probability any query row of its GQA
 *          group gave it. Chunk 0 asks to repeat the previous context; chunk
 *          i > 0 asks to repeat from the last 8 tokens of chunk i-1 (included).
 *  window  SnapKV / ChunkKV: softmax of the window's queries over every key,
 *          summed over window rows, averaged over the GQA group. The window is
 *          the last `window` document tokens (scored during their prefill) or a
 *          question appended after the document.
 *  knorm   minus the L2 norm of the key.
 */
#ifndef KVZ_COMPILER_SCORE_H
#define KVZ_COMPILER_SCORE_H

#include "model/context.h"

#include <stdint.h>

#define KVZ_KVZIP_OVERLAP 8 /* tokens of the previous chunk quoted in the repeat prompt */

/* Called with document tokens processed so far, for progress. */
typedef void (*kvz_score_progress_fn)(void *ctx, int64_t tokens);

/* Prefill the document after the prefix already in `c`. With window > 0 the
 * last `window` tokens are scored as a SnapKV observation window into scores
 * (n_layers, n_kv_heads, n), max-pooled over `pool` neighbours when pool > 1
 * (SnapKV's smoothing, on the backend). */
int kvz_prefill_document(kvz_context *c, const int32_t *doc, int32_t n, int32_t window, int32_t pool,
                         float *scores, kvz_score_progress_fn progress, void *progress_ctx);

/* KVzip scores; the context holds [prefix (P) | document (n)]. */
int kvz_score_kvzip(kvz_context *c, int32_t P, const int32_t *doc, int32_t n, int32_t chunk,
                    float *scores, kvz_score_progress_fn progress, void *progress_ctx);

/* Window scores from a question appended after the document (then dropped),
 * max-pooled as kvz_prefill_document's. */
int kvz_score_question(kvz_context *c, int32_t P, int32_t n, const int32_t *question, int32_t nq,
                       int32_t pool, float *scores);

/* -‖k‖ of each document key. */
int kvz_score_knorm(kvz_context *c, int32_t P, int32_t n, float *scores);

/* Tokens a KVzip repeat pass adds to the context at most (for capacity). */
int32_t kvz_kvzip_pass_tokens(const kvz_model *m, int32_t chunk);

#endif
