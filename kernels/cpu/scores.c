/*
 * scores.c — attention probabilities reduced onto cached keys (the scoring
 * step of KVzip, SnapKV and ChunkKV) on the CPU. See kvz_score_params.
 *
 * Tasks are (query head, tile of queries). A task computes its score tile
 * against the key ranges laid end to end (one sgemm per range), takes each
 * row's causal softmax over them, and folds the probabilities into a
 * per-thread (n_kv_heads, capacity) accumulator; the accumulators are
 * combined at the end, so threads never write the same key. attention.c does
 * the same inside the forward pass when asked to (no second sgemm).
 */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/softmax.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#define SCORE_TILE 32

static int32_t support_size(const kvz_score_params *p)
{
    int32_t s = 0;
    for (int r = 0; r < p->n_ranges; r++)
        s += p->range_end[r] - p->range_begin[r];
    return s;
}

size_t kvz_cpu_scores_scratch_floats(const kvz_score_params *p, int n_threads)
{
    return (size_t)n_threads *
           ((size_t)SCORE_TILE * (size_t)support_size(p) + (size_t)p->n_kv_heads * (size_t)p->capacity);
}

/* Zero the ranges of a per-thread accumulator. */
void kvz_cpu_score_acc_clear(const kvz_score_params *p, float *acc)
{
    for (int r = 0; r < p->n_ranges; r++)
        for (int32_t g = 0; g < p->n_kv_heads; g++)
            memset(acc + (size_t)g * p->capacity + p->range_begin[r], 0,
                   sizeof(float) * (size_t)(p->range_end[r] - p->range_begin[r]));
}

void kvz_cpu_attention_scores(float *scores, const float *q, const float *k_cache,
                              const kvz_score_params *p, float *scratch, int n_threads)
{
    const int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads, S = support_size(p);
    const int ld = p->n_heads * hd;
    const int32_t n_tiles = (p->n + SCORE_TILE - 1) / SCORE_TILE;
    const int64_t tasks = (int64_t)p->n_heads * n_tiles;
    const size_t per_thread = (size_t)SCORE_TILE * (size_t)S + (size_t)p->n_kv_heads * (size_t)p->capacity;
    const float *parts[KVZ_SCORE_MAX_THREADS];
    int used = 1;
#pragma omp parallel num_threads(kvz_score_threads(n_threads))
    {
        float *tile = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *acc = tile + (size_t)SCORE_TILE * (size_t)S;
        kvz_cpu_score_acc_clear(p, acc);
#pragma omp single
        used = omp_get_num_threads();
#pragma omp for schedule(static, 1) /* task -> thread fixed: score sums fold in one order */
        for (int64_t t = 0; t < tasks; t++) {
            int32_t h = (int32_t)(t % p->n_heads), i0 = (int32_t)(t / p->n_heads) * SCORE_TILE;
            int32_t rows = p->n - i0 < SCORE_TILE ? p->n - i0 : SCORE_TILE;
            int32_t g = h / group;
            const float *qh = q + (size_t)i0 * ld + (size_t)h * hd;
            const float *kh = k_cache + (size_t)g * p->capacity * hd;
            for (int r = 0, off = 0; r < p->n_ranges; off += p->range_end[r] - p->range_begin[r], r++)
                if (p->range_end[r] > p->range_begin[r])
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows,
                                p->range_end[r] - p->range_begin[r], hd, 1.0f, qh, ld,
                                kh + (size_t)p->range_begin[r] * hd, hd, 0.0f, tile + off, S);
            for (int32_t i = 0; i < rows; i++) {
                float *row = tile + (size_t)i * S;
                int32_t vis = kvz_score_visible(p, p->q_pos0 + i0 + i);
                kvz_softmax_prefix(row, vis, p->scale);
                kvz_score_fold(p, row, vis, acc + (size_t)g * p->capacity);
            }
        }
    }
    for (int th = 0; th < used; th++)
        parts[th] = scratch + (size_t)th * per_thread + (size_t)SCORE_TILE * (size_t)S;
    kvz_score_combine(p, parts, used, scores);
}
