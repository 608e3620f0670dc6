/*
 * softmax.h — the softmax and score reduction shared by the CPU attention and
 * scoring kernels. exp runs 8 lanes at a time through glibc's libmvec.
 */
#ifndef KVZ_KERNELS_CPU_SOFTMAX_H
#define KVZ_KERNELS_CPU_SOFTMAX_H

#include "kernels/backend.h"

#include <math.h>
#include <stdint.h>

#if defined(__AVX2__)
#include <immintrin.h>
__m256 _ZGVdN8v_expf(__m256 x); /* libmvec */
#endif

/* max(row[0..n)), n >= 1, as the loop `m = row[j] > m ? row[j] : m` gives it
 * (NaNs after row[0] skipped; max is exact, so the lanes' order does not
 * matter, but for the sign of a zero max, which no softmax sees: exp(x - m)
 * is the same), 32 lanes at a time: the scalar loop waits on each compare,
 * and was half the time of the attention's own code in a KVzip pass. */
static inline float kvz_row_max(const float *row, int32_t n)
{
    float max = row[0];
    int32_t j = 1;
#if defined(__AVX2__)
    if (n >= 33) {
        __m256 m0 = _mm256_set1_ps(max), m1 = m0, m2 = m0, m3 = m0;
        for (; j + 32 <= n; j += 32) { /* max_ps(x, m) is x > m ? x : m, as below */
            m0 = _mm256_max_ps(_mm256_loadu_ps(row + j), m0);
            m1 = _mm256_max_ps(_mm256_loadu_ps(row + j + 8), m1);
            m2 = _mm256_max_ps(_mm256_loadu_ps(row + j + 16), m2);
            m3 = _mm256_max_ps(_mm256_loadu_ps(row + j + 24), m3);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
        for (int l = 0; l < 8; l++)
            max = lanes[l] > max ? lanes[l] : max;
    }
#endif
    for (; j < n; j++)
        max = row[j] > max ? row[j] : max;
    return max;
}

/* row[j] <- exp((row[j] - max) * scale) for j in [0, n); returns their sum. */
static inline float kvz_exp_shifted(float *row, int32_t n, float max, float scale)
{
    int32_t j = 0;
    float sum = 0.0f;
#if defined(__AVX2__)
    __m256 vmax = _mm256_set1_ps(max), vscale = _mm256_set1_ps(scale), vsum = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + j), vmax), vscale);
        __m256 e = _ZGVdN8v_expf(x);
        _mm256_storeu_ps(row + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vsum);
    for (int k = 0; k < 8; k++)
        sum += lanes[k];
#endif
    for (; j < n; j++)
        sum += row[j] = expf((row[j] - max) * scale);
    return sum;
}

/* row[0..n) <- softmax(row[0..n) * scale) */
static inline void kvz_softmax_prefix(float *row, int32_t n, float scale)
{
    if (n <= 0)
        return;
    float inv = 1.0f / kvz_exp_shifted(row, n, kvz_row_max(row, n), scale);
    for (int32_t j = 0; j < n; j++)
        row[j] *= inv;
}

/* Where range r stops for a query at cache row `last` (it sees 0..last);
 * at or before the range's begin where it sees none of it. */
static inline int32_t kvz_score_range_end(const kvz_score_params *p, int r, int32_t last)
{
    return p->range_end[r] < last + 1 ? p->range_end[r] : last + 1;
}

/* Number of keys of the ranges that cache row `last` may see: they form a
 * prefix of the ranges laid end to end (ranges ascend). */
static inline int32_t kvz_score_visible(const kvz_score_params *p, int32_t last)
{
    int32_t vis = 0;
    for (int r = 0; r < p->n_ranges; r++) {
        int32_t hi = kvz_score_range_end(p, r, last);
        vis += hi > p->range_begin[r] ? hi - p->range_begin[r] : 0;
    }
    return vis;
}

/* acc[j] <- reduce(acc[j], src[j] * factor) for j in [0, len) */
static inline void kvz_score_fold_span(kvz_score_reduce reduce, const float *src, int32_t len, float factor,
                                       float *acc)
{
    if (reduce == KVZ_REDUCE_MAX)
        for (int32_t j = 0; j < len; j++) {
            float v = src[j] * factor;
            acc[j] = v > acc[j] ? v : acc[j];
        }
    else
        for (int32_t j = 0; j < len; j++)
            acc[j] += src[j] * factor;
}

/* Fold probabilities of the visible prefix (ranges laid end to end) into the
 * per-key accumulator of one KV head, indexed by cache row. */
static inline void kvz_score_fold(const kvz_score_params *p, const float *probs, int32_t vis, float *acc)
{
    for (int r = 0, off = 0; r < p->n_ranges && off < vis; off += p->range_end[r] - p->range_begin[r], r++) {
        int32_t len = p->range_end[r] - p->range_begin[r];
        len = len < vis - off ? len : vis - off;
        kvz_score_fold_span(p->reduce, probs + off, len, 1.0f, acc + p->range_begin[r]);
    }
}

/* The same from a row indexed by cache row (a query at row `last` sees
 * 0..last), each probability times `factor`. */
static inline void kvz_score_fold_rows(const kvz_score_params *p, const float *row, int32_t last, float factor,
                                       float *acc)
{
    for (int r = 0; r < p->n_ranges; r++) {
        int32_t begin = p->range_begin[r], end = kvz_score_range_end(p, r, last);
        if (end > begin)
            kvz_score_fold_span(p->reduce, row + begin, end - begin, factor, acc + begin);
    }
}

/* The most threads a scoring pass runs: one accumulator each, combined at the end. */
#define KVZ_SCORE_MAX_THREADS 256
static inline int kvz_score_threads(int n_threads)
{
    return n_threads < KVZ_SCORE_MAX_THREADS ? n_threads : KVZ_SCORE_MAX_THREADS;
}

/* Combine per-thread accumulators (each (n_kv_heads, capacity)) into scores. */
static inline void kvz_score_combine(const kvz_score_params *p, const float *const *parts, int n_parts,
                                     float *scores)
{
    for (int th = 0; th < n_parts; th++)
        for (int32_t g = 0; g < p->n_kv_heads; g++)
            for (int r = 0; r < p->n_ranges; r++)
                for (int32_t j = p->range_begin[r]; j < p->range_end[r]; j++) {
                    float v = parts[th][(size_t)g * p->capacity + j], *o = &scores[(size_t)g * p->capacity + j];
                    *o = p->reduce == KVZ_REDUCE_MAX ? (v > *o ? v : *o) : *o + v;
                }
}

#endif
