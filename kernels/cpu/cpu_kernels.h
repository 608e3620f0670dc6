/*
 * cpu_kernels.h — the CPU reference kernels, callable on plain host memory.
 *
 * backend_cpu.c exposes them through kvz_backend_ops; the CUDA tests call
 * them directly as the reference. Shapes and semantics: kernels/backend.h.
 * Kernels parallelise with OpenMP over `n_threads`; BLAS calls inside run
 * single-threaded so the two thread pools never compete.
 */
#ifndef KVZ_KERNELS_CPU_KERNELS_H
#define KVZ_KERNELS_CPU_KERNELS_H

#include "kernels/backend.h"

#include <stdint.h>

/* Whether a kernel's loop takes a parallel region: not for a decode step's
 * few rows (`big` false) nor on one thread, where even an if(false) region
 * makes a team of one (about a microsecond, several times a layer). */
static inline int kvz_cpu_worth_threads(int big, int n_threads) { return big && n_threads > 1; }

/* Quantized weights need scratch of this many floats (0 for f32 weights). */
size_t kvz_cpu_matmul_scratch_floats(const kvz_weight *w, int n_threads);
void kvz_cpu_matmul(float *out, const float *x, const kvz_weight *w, int32_t n, int accumulate,
                    float *scratch, int n_threads);
/* Decode-sized products (a few rows of x) read straight from the weights'
 * GGUF blocks (the backend passes views over w->native); see matvec.c. */
#define KVZ_CPU_MATVEC_MAX_ROWS 8
int kvz_cpu_matvec_has_fast_path(uint32_t type);
size_t kvz_cpu_matvec_scratch_floats(const kvz_weight *w, int32_t n, int n_threads);
/* A thread's share of that scratch, for weights of `cols` columns. */
size_t kvz_cpu_matvec_thread_floats(int64_t cols, int32_t n);
/* The gather_rows op (kernels/backend.h) on host memory. */
void kvz_cpu_gather_rows(float *dst, const float *src, const int32_t *idx, int32_t count, int32_t width,
                         int n_threads);

/* out[k] (n, w[k].rows) = x (n, cols) · w[k]ᵀ (+= when accumulate) for
 * `count` weights of the same cols, in one parallel step: a decode step's
 * q, k and v products (gate and up) wait for each other's threads once, not
 * once each. Uses w[k]->data / type: pass views whose data are the native
 * blocks. Scratch: kvz_cpu_matvec_scratch_floats of any of them. */
void kvz_cpu_matvec(int32_t count, float *const *out, const float *x, const kvz_weight *const *w, int32_t n,
                    int accumulate, float *scratch, int n_threads);
/* The same, as the calling thread's share of the enclosing parallel region's
 * work: every thread of it calls; none waits for the others at the end (a
 * barrier where the output is read, or the region's end); scratch: the
 * thread's own kvz_cpu_matvec_thread_floats. */
void kvz_cpu_matvec_team(int32_t count, float *const *out, const float *x, const kvz_weight *const *w, int32_t n,
                         int accumulate, float *scratch);
void kvz_cpu_embed(float *out, const kvz_weight *table, const int32_t *tokens, int32_t n,
                   int n_threads);
void kvz_cpu_rmsnorm(float *out, const float *x, const float *weight, int32_t n, int32_t dim,
                     float eps, int n_threads);
/* Rotary dimensions kvz_cpu_rope handles (the model loader refuses more). */
#define KVZ_CPU_ROPE_MAX_DIM 1024
/* (cos, sin) of every pair's angle at positions [0, n_positions), in f32,
 * exactly as kvz_cpu_rope computes them per row. */
typedef struct kvz_cpu_rope_table {
    float *cs; /* (n_positions, half) (cos, sin) pairs */
    int32_t n_positions, half;
    float freq_base; /* the angles' parameters, with half and the factors */
    int32_t n_factors;
    float factors[KVZ_ROPE_MAX_FACTORS];
} kvz_cpu_rope_table;
/* Grow t to cover every one of `positions` for p's angles (remade if it was
 * made for others). Out of memory leaves t as it was: rotation without it is
 * slower and the same. */
void kvz_cpu_rope_table_cover(kvz_cpu_rope_table *t, const kvz_rope_params *p, const int32_t *positions,
                              int32_t n, int n_threads);
void kvz_cpu_rope_table_free(kvz_cpu_rope_table *t);
/* Rotate n rows of n_heads heads to their positions (inverse: back). table
 * (NULL: none) gives the angles of the positions it covers; the result is the
 * same bits with or without it. */
void kvz_cpu_rope(float *x, const int32_t *positions, int32_t n, int32_t n_heads, const kvz_rope_params *p,
                  int inverse, const kvz_cpu_rope_table *table, int n_threads);
void kvz_cpu_add_bias(float *x, const float *bias, int32_t n, int32_t cols, int n_threads);
void kvz_cpu_swiglu(float *out, const float *gate, const float *up, int64_t count, int n_threads);
void kvz_cpu_kv_append(float *k_cache, float *v_cache, const float *k, const float *v,
                       const kvz_attention_params *p);
/* With sp (else NULL), also scores the queries as kvz_cpu_attention_scores
 * does, reusing the attention's dot products. */
size_t kvz_cpu_attention_scratch_floats(const kvz_attention_params *p, const kvz_score_params *sp,
                                        int n_threads);
void kvz_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                       const kvz_attention_params *p, const kvz_score_params *sp, float *scores,
                       float *scratch, int n_threads);
/* Whether kvz_cpu_attention takes its decode path for p (a few queries),
 * which kvz_cpu_attention_decode_team is, unscored, as the calling thread's
 * share of the enclosing region's work (of at most n_threads threads, as
 * the scratch was sized for; every thread calls, and, as the matvec's, none
 * waits for the others at the end). */
int kvz_cpu_attention_decodes(const kvz_attention_params *p);
void kvz_cpu_attention_decode_team(float *out, const float *q, const float *k_cache, const float *v_cache,
                                   const kvz_attention_params *p, float *scratch, int n_threads);

/* Set mask[c] = 1 for the k highest-scored candidates c (c = idx[i], or i when
 * idx is NULL, for i < count; scores are indexed by c), leaving other entries
 * as they are. Ties go to the earlier candidate; -0 equals +0; NaN ranks below
 * everything (kernels/order_key.h). keys: scratch of count entries. O(count),
 * no sort. */
void kvz_cpu_top_k_mask(const float *scores, const uint32_t *idx, size_t count, size_t k,
                        uint8_t *mask, uint32_t *keys);

/* The top_k_rows op (kernels/backend.h) on host memory; keys: scratch of n entries. */
void kvz_cpu_top_k_rows(uint8_t *mask, const float *scores, int32_t rows, int32_t n, const int32_t *length,
                        const int32_t *k, uint32_t *keys);

/* The max_pool and chunk_sums ops (kernels/backend.h) on host memory. */
void kvz_cpu_max_pool(float *out, const float *in, int32_t rows, int32_t n, int64_t stride, int32_t kernel);
void kvz_cpu_chunk_sums(float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk);

/* The key_norms op (kernels/backend.h) on host memory. */
void kvz_cpu_key_norms(float *out, const float *keys, int32_t rows, int32_t n, int64_t stride, int32_t head_dim,
                       int n_threads);

/* The kv_load op (kernels/backend.h) on host memory: dequantize, then RoPE. */
void kvz_cpu_kv_load(float *dst, const kvz_quant_shape *s, int is_keys, const uint8_t *payload,
                     const uint16_t *scales, const int32_t *positions, const kvz_rope_params *rope,
                     const kvz_cpu_rope_table *table, int n_threads);

/* The sample op (kernels/backend.h) on host logits; order and probs: scratch
 * of n entries each. */
int32_t kvz_cpu_argmax(const float *x, int32_t n);
int32_t kvz_cpu_sample(const float *logits, int32_t n, const kvz_sample_params *p, int32_t *order, float *probs);

size_t kvz_cpu_scores_scratch_floats(const kvz_score_params *p, int n_threads);
void kvz_cpu_score_acc_clear(const kvz_score_params *p, float *acc);
void kvz_cpu_attention_scores(float *scores, const float *q, const float *k_cache,
                              const kvz_score_params *p, float *scratch, int n_threads);

#endif
