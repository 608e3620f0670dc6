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
#include "kernels/cpu/softmax.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define QUERY_TILE 32

/* Scoring inside the forward pass (see kvz_score_params): row r of a score
 * tile holds the raw dots with cache rows 0..; gather the scored ranges'
 * visible part, softmax it on its own and fold it into the accumulator. */
static void score_rows(const kvz_score_params *sp, const float *s, int32_t rows, int32_t cols,
                       int32_t first_query, float scale, float *gather, float *acc)
{
    for (int32_t r = 0; r < rows; r++) {
        const float *row = s + (size_t)r * cols;
        int32_t last = first_query + r, vis = 0;
        for (int k = 0; k < sp->n_ranges; k++)
            for (int32_t j = sp->range_begin[k]; j < sp->range_end[k] && j <= last; j++)
                gather[vis++] = row[j];
        kvz_softmax_prefix(gather, vis, scale);
        kvz_score_fold(sp, gather, vis, acc);
    }
}

static void softmax_causal_rows(float *s, int32_t rows, int32_t cols, int32_t first_visible,
                                float scale)
{
    /* row r sees columns 0 .. first_visible + r */
    for (int32_t r = 0; r < rows; r++) {
        float *row = s + (size_t)r * cols;
        int32_t visible = first_visible + r + 1;
        kvz_softmax_prefix(row, visible, scale);
        for (int32_t c = visible; c < cols; c++)
            row[c] = 0.0f;
    }
}

/* Where KV head g's rows start and how many precede its first query. */
static inline const float *head_block(const float *cache, const kvz_attention_params *p, int32_t g)
{
    size_t base = p->head_base ? (size_t)p->head_base[g] : (size_t)g * p->capacity;
    return cache + base * p->head_dim;
}

static inline int32_t head_first(const kvz_attention_params *p, int32_t g)
{
    return p->head_base ? p->head_rows[g] : p->pos0;
}

/* The most rows any query may see, for scratch sizing. */
static inline int32_t max_visible(const kvz_attention_params *p)
{
    return (p->head_base ? p->max_head_rows : p->pos0) + p->n;
}

/* Decode: a few queries. Each KV head's group of query heads walks the cache
 * together, so every key and value row is read once per group (GEMM calls
 * with one row spend more time packing than multiplying). */
#define DECODE_MAX_QUERIES 4
#define MAX_GROUP 16

/* A dot product in 8 independent lanes, which the compiler vectorises
 * without reassociating a single sum. */
static inline float dot8(const float *a, const float *b, int32_t n)
{
    float lane[8] = {0};
    int32_t e = 0;
    for (; e + 8 <= n; e += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += a[e + l] * b[e + l];
    float s = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
    for (; e < n; e++)
        s += a[e] * b[e];
    return s;
}

static void attention_decode(float *out, const float *q, const float *k_cache,
                             const float *v_cache, const kvz_attention_params *p, float *scratch,
                             int n_threads)
{
    const int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    const int64_t tasks = (int64_t)p->n_kv_heads * p->n;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int32_t g = (int32_t)(t / p->n), i = (int32_t)(t % p->n);
        int32_t kv_len = head_first(p, g) + i + 1;
        float *scores = scratch + (size_t)t * group * (size_t)max_visible(p);
        const float *kh = head_block(k_cache, p, g);
        const float *vh = head_block(v_cache, p, g);
        const float *qg = q + ((size_t)i * p->n_heads + (size_t)g * group) * hd;
        float *og = out + ((size_t)i * p->n_heads + (size_t)g * group) * hd;
        for (int32_t j = 0; j < kv_len; j++) {
            const float *kj = kh + (size_t)j * hd;
            for (int32_t h = 0; h < group; h++)
                scores[(size_t)h * kv_len + j] = dot8(qg + (size_t)h * hd, kj, hd);
        }
        for (int32_t h = 0; h < group; h++) {
            float *sh = scores + (size_t)h * kv_len;
            float max = -INFINITY, sum = 0;
            for (int32_t j = 0; j < kv_len; j++)
                max = sh[j] > max ? sh[j] : max;
            for (int32_t j = 0; j < kv_len; j++)
                sum += sh[j] = expf((sh[j] - max) * p->scale);
            float inv = 1.0f / sum;
            for (int32_t j = 0; j < kv_len; j++)
                sh[j] *= inv;
            memset(og + (size_t)h * hd, 0, (size_t)hd * sizeof(float));
        }
        for (int32_t j = 0; j < kv_len; j++) {
            const float *vj = vh + (size_t)j * hd;
            for (int32_t h = 0; h < group; h++) {
                float w = scores[(size_t)h * kv_len + j];
                float *oh = og + (size_t)h * hd;
                for (int32_t e = 0; e < hd; e++)
                    oh[e] += w * vj[e];
            }
        }
    }
}

size_t kvz_cpu_attention_scratch_floats(const kvz_attention_params *p, const kvz_score_params *sp,
                                        int n_threads)
{
    size_t kv = (size_t)max_visible(p);
    size_t decode = (size_t)p->n_heads * DECODE_MAX_QUERIES * kv;
    size_t per_thread = QUERY_TILE * kv;
    if (sp) /* a gather row and an accumulator per thread */
        per_thread += kv + (size_t)sp->n_kv_heads * (size_t)sp->capacity;
    size_t prefill = (size_t)n_threads * per_thread;
    size_t need = decode > prefill ? decode : prefill;
    if (sp) /* the decode path scores with the separate kernel after attention */
        need += kvz_cpu_scores_scratch_floats(sp, n_threads);
    return need;
}

void kvz_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                       const kvz_attention_params *p, const kvz_score_params *sp, float *scores,
                       float *scratch, int n_threads)
{
    if (p->n <= DECODE_MAX_QUERIES && p->n_heads / p->n_kv_heads <= MAX_GROUP) {
        attention_decode(out, q, k_cache, v_cache, p, scratch, n_threads);
        if (sp) {
            size_t decode = (size_t)p->n_heads * DECODE_MAX_QUERIES * (size_t)max_visible(p);
            kvz_cpu_attention_scores(scores, q, k_cache, sp, scratch + decode, n_threads);
        }
        return;
    }
    const int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    const int32_t n_tiles = (p->n + QUERY_TILE - 1) / QUERY_TILE;
    const int ld = p->n_heads * hd; /* stride between tokens in q and out */
    const int64_t tasks = (int64_t)p->n_heads * n_tiles;
    const int32_t kv_max = max_visible(p);
    const size_t per_thread = QUERY_TILE * (size_t)kv_max +
                              (sp ? (size_t)kv_max + (size_t)sp->n_kv_heads * (size_t)sp->capacity : 0);
    int used = 1;
#pragma omp parallel num_threads(kvz_score_threads(n_threads)) /* an accumulator each when scoring */
    {
        float *tile = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *gather = tile + QUERY_TILE * (size_t)kv_max, *acc = gather + kv_max;
        if (sp)
            kvz_cpu_score_acc_clear(sp, acc);
#pragma omp single
        used = omp_get_num_threads();
#pragma omp for schedule(static, 1) /* task -> thread fixed: score sums fold in one order */
        for (int64_t t = 0; t < tasks; t++) {
            int32_t h = (int32_t)(t % p->n_heads), i0 = (int32_t)(t / p->n_heads) * QUERY_TILE;
            int32_t rows = p->n - i0 < QUERY_TILE ? p->n - i0 : QUERY_TILE;
            int32_t first = head_first(p, h / group);
            int32_t kv_len = first + i0 + rows; /* keys the last row may see */
            const float *kh = head_block(k_cache, p, h / group);
            const float *vh = head_block(v_cache, p, h / group);
            const float *qh = q + (size_t)i0 * ld + (size_t)h * hd;
            float *oh = out + (size_t)i0 * ld + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kv_len, hd, 1.0f, qh, ld, kh,
                        hd, 0.0f, tile, kv_len);
            if (sp)
                score_rows(sp, tile, rows, kv_len, first + i0, p->scale, gather,
                           acc + (size_t)(h / group) * sp->capacity);
            softmax_causal_rows(tile, rows, kv_len, first + i0, p->scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, kv_len, 1.0f, tile,
                        kv_len, vh, hd, 0.0f, oh, ld);
        }
    }
    if (sp) {
        const float *parts[KVZ_SCORE_MAX_THREADS];
        for (int th = 0; th < used; th++)
            parts[th] = scratch + (size_t)th * per_thread + QUERY_TILE * (size_t)kv_max + kv_max;
        kvz_score_combine(sp, parts, used, scores);
    }
}
