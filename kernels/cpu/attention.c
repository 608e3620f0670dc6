/*
 * attention.c — dense causal GQA attention over a (n_kv_heads, capacity,
 * head_dim) cache on the CPU.
 *
 * Work is split into (query head, tile of queries) tasks. A task computes its
 * scores against every key its last query may see with one sgemm, masks the
 * future, takes the softmax row by row and multiplies by V with a second
 * sgemm. Query rows of one head are strided in q, which sgemm's leading
 * dimension absorbs without copies.
 */
#include "kernels/cpu/cpu_kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

#define QUERY_TILE 32

static void softmax_causal_rows(float *s, int32_t rows, int32_t cols, int32_t first_visible,
                                float scale)
{
    /* row r sees columns 0 .. first_visible + r */
    for (int32_t r = 0; r < rows; r++) {
        float *row = s + (size_t)r * cols;
        int32_t visible = first_visible + r + 1;
        float max = -INFINITY;
        for (int32_t c = 0; c < visible; c++)
            max = row[c] > max ? row[c] : max;
        float sum = 0.0f;
        for (int32_t c = 0; c < visible; c++) {
            row[c] = expf((row[c] - max) * scale);
            sum += row[c];
        }
        float inv = 1.0f / sum;
        for (int32_t c = 0; c < visible; c++)
            row[c] *= inv;
        for (int32_t c = visible; c < cols; c++)
            row[c] = 0.0f;
    }
}

size_t kvz_cpu_attention_scratch_floats(const kvz_attention_params *p, int n_threads)
{
    return (size_t)n_threads * QUERY_TILE * (size_t)(p->pos0 + p->n);
}

void kvz_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                       const kvz_attention_params *p, float *scratch, int n_threads)
{
    const int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    const int32_t n_tiles = (p->n + QUERY_TILE - 1) / QUERY_TILE;
    const int ld = p->n_heads * hd; /* stride between tokens in q and out */
    const int64_t tasks = (int64_t)p->n_heads * n_tiles;
    const int32_t kv_max = p->pos0 + p->n;
#pragma omp parallel num_threads(n_threads)
    {
        float *scores = scratch + (size_t)omp_get_thread_num() * QUERY_TILE * (size_t)kv_max;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tasks; t++) {
            int32_t h = (int32_t)(t % p->n_heads), tile = (int32_t)(t / p->n_heads);
            int32_t i0 = tile * QUERY_TILE;
            int32_t rows = p->n - i0 < QUERY_TILE ? p->n - i0 : QUERY_TILE;
            int32_t kv_len = p->pos0 + i0 + rows; /* keys the last row may see */
            const float *kh = k_cache + (size_t)(h / group) * p->capacity * hd;
            const float *vh = v_cache + (size_t)(h / group) * p->capacity * hd;
            const float *qh = q + (size_t)i0 * ld + (size_t)h * hd;
            float *oh = out + (size_t)i0 * ld + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kv_len, hd, 1.0f, qh, ld, kh,
                        hd, 0.0f, scores, kv_len);
            softmax_causal_rows(scores, rows, kv_len, p->pos0 + i0, p->scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, kv_len, 1.0f, scores,
                        kv_len, vh, hd, 0.0f, oh, ld);
        }
    }
}
