/*
 * attention.c — dense causal GQA attention over a (n_kv_heads, capacity,
 * head_dim) cache on the CPU.
 *
 * Prefill work is split into (KV head, tile of tokens) tasks. A task copies
 * the tile's queries of the KV head's group of query heads together, computes
 * their scores against every key its last token may see with one sgemm,
 * masks the future, takes the softmax row by row and multiplies by V with a
 * second sgemm. Decode (a few queries) walks the cache without GEMMs.
 */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/softmax.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

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

/* Rows of a prefill task: a tile of tokens times the query heads of one KV
 * head's group, so sgemm packs K and V once per group, not once per head.
 * Measured on 2 Zen 4 cores, KVzip on 1,138 tokens: 32 rows of one head
 * scored in 3.05 s, 96 rows of a group in 2.65 s; 192 rows of one head, slower. */
#define QUERY_ROWS 96

static inline int32_t tile_tokens(int32_t group) { return group < QUERY_ROWS ? QUERY_ROWS / group : 1; }

/* Tokens per task for this call: fewer than a whole tile where whole tiles
 * would leave threads idle (a question over a long cache, SnapKV's window:
 * one tile per KV head). Depends on n and the thread count alone, so a
 * thread count still gives one order of the score sums. */
static int32_t task_tokens(const kvz_attention_params *p, int n_threads)
{
    int32_t tokens = tile_tokens(p->n_heads / p->n_kv_heads);
    int64_t tiles_per_head = ((int64_t)n_threads + p->n_kv_heads - 1) / p->n_kv_heads;
    int64_t fit = ((int64_t)p->n + tiles_per_head - 1) / tiles_per_head;
    return fit < tokens ? (int32_t)(fit > 0 ? fit : 1) : tokens;
}

/* A prefill thread's scratch: the score tile, the group's queries and
 * outputs for it, and when scoring a gather row and an accumulator. */
typedef struct tile_scratch {
    float *scores, *q, *out, *gather, *acc;
} tile_scratch;

static size_t tile_rows(const kvz_attention_params *p)
{
    int32_t group = p->n_heads / p->n_kv_heads;
    return (size_t)tile_tokens(group) * (size_t)group;
}

/* The one statement of that layout: its size in floats, and with t the
 * pieces at base. */
static size_t tile_layout(const kvz_attention_params *p, const kvz_score_params *sp, float *base, tile_scratch *t)
{
    const size_t rows = tile_rows(p), kv = (size_t)max_visible(p), hd = (size_t)p->head_dim;
    const size_t at_q = rows * kv, at_out = at_q + rows * hd, at_gather = at_out + rows * hd;
    const size_t at_acc = at_gather + (sp ? kv : 0);
    if (t)
        *t = (tile_scratch){base, base + at_q, base + at_out, base + at_gather, sp ? base + at_acc : NULL};
    return at_acc + (sp ? (size_t)sp->n_kv_heads * (size_t)sp->capacity : 0);
}

static size_t prefill_thread_floats(const kvz_attention_params *p, const kvz_score_params *sp)
{
    return tile_layout(p, sp, NULL, NULL);
}

static tile_scratch tile_scratch_at(const kvz_attention_params *p, const kvz_score_params *sp, float *base)
{
    tile_scratch t;
    tile_layout(p, sp, base, &t);
    return t;
}

/* Whether the scored ranges, laid end to end, are the cache rows 0..last
 * (and maybe more): then a query at row `last` scores with exactly the
 * attention's own softmax. True for one range from 0 (SnapKV's window, a
 * question) and for a KVzip pass over a document of one chunk. */
static int ranges_cover(const kvz_score_params *sp, int32_t last)
{
    int32_t next = 0;
    for (int k = 0; k < sp->n_ranges && next <= last; k++) {
        if (sp->range_begin[k] != next)
            return 0;
        next = sp->range_end[k];
    }
    return next > last;
}

/* The attention's probabilities of the scored keys a query at row `last`
 * sees, summed in 8 lanes (one order, so one result). */
static float scored_mass(const kvz_score_params *sp, const float *probs, int32_t last)
{
    float lane[8] = {0}, tail = 0.0f;
    for (int k = 0; k < sp->n_ranges; k++) {
        int32_t j = sp->range_begin[k], end = kvz_score_range_end(sp, k, last);
        for (; j + 8 <= end; j += 8)
            for (int l = 0; l < 8; l++)
                lane[l] += probs[j + l];
        for (; j < end; j++)
            tail += probs[j];
    }
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7])) + tail;
}

/* Below this scored mass the scored keys' probabilities under the
 * attention's softmax may lie under FLT_MIN, where they lose their digits:
 * such a row is scored from its dots instead. A key outside the ranges
 * would have to take all but 1e-12 of a query's attention. */
#define SCORED_MASS_MIN 1e-12f

/* Scoring inside the forward pass (see kvz_score_params), after the
 * attention's softmax: row r of the tile (token r / group) holds a query's
 * probabilities over cache rows 0..last. The scored softmax is that row on
 * the scored ranges, renormalised (p_j times 1 / the scored mass; the row
 * itself where the ranges cover every visible key), so no second exp pass.
 * A row whose scored mass is too small for that is recomputed from its
 * query (an sgemv into `gather`), gathered and given a softmax of its own. */
static void score_rows(const kvz_score_params *sp, const float *probs, int32_t n_tok, int32_t group,
                       int32_t cols, int32_t first_query, float scale, const float *q_tile,
                       const float *k_head, int32_t head_dim, float *gather, float *acc)
{
    for (int32_t r = 0; r < n_tok * group; r++) {
        const float *row = probs + (size_t)r * cols;
        int32_t last = first_query + r / group;
        if (ranges_cover(sp, last)) {
            kvz_score_fold_rows(sp, row, last, 1.0f, acc);
            continue;
        }
        float mass = scored_mass(sp, row, last);
        if (mass >= SCORED_MASS_MIN) {
            kvz_score_fold_rows(sp, row, last, 1.0f / mass, acc);
            continue;
        }
        if (kvz_score_visible(sp, last) == 0) /* no scored key in sight: nothing to fold */
            continue;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, last + 1, head_dim, 1.0f, k_head, head_dim,
                    q_tile + (size_t)r * head_dim, 1, 0.0f, gather, 1);
        int32_t vis = 0; /* ranges ascend: each moves left or stays */
        for (int k = 0; k < sp->n_ranges; k++) {
            int32_t end = kvz_score_range_end(sp, k, last);
            if (end > sp->range_begin[k]) {
                memmove(gather + vis, gather + sp->range_begin[k], sizeof(float) * (size_t)(end - sp->range_begin[k]));
                vis += end - sp->range_begin[k];
            }
        }
        kvz_softmax_prefix(gather, vis, scale);
        kvz_score_fold(sp, gather, vis, acc);
    }
}

static void softmax_causal_rows(float *s, int32_t n_tok, int32_t group, int32_t cols, int32_t first_visible,
                                float scale)
{
    /* row r (token r / group) sees columns 0 .. first_visible + r / group */
    for (int32_t r = 0; r < n_tok * group; r++) {
        float *row = s + (size_t)r * cols;
        int32_t visible = first_visible + r / group + 1;
        kvz_softmax_prefix(row, visible, scale);
        if (cols > visible)
            memset(row + visible, 0, sizeof(float) * (size_t)(cols - visible));
    }
}

/* Decode: a few queries. Each KV head's group of query heads walks the cache
 * together, so every key and value row is read once per group (GEMM calls
 * with one row spend more time packing than multiplying). The walk is cut
 * into spans of DECODE_SPAN_ROWS rows, one task each, whose partial results
 * (each head's max, sum and weighted values) are combined after, as
 * flash-decoding does: one task per KV head left threads idle (SmolLM2's
 * three KV heads on two threads: one thread did two thirds of the work). A
 * walk's spans depend on its length alone, so the result does not depend on
 * the thread count; a walk of one span writes its output directly. */
#define DECODE_MAX_QUERIES 4
#define MAX_GROUP 16
#define DECODE_SPAN_ROWS 256

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

/* out[r] <- dot8(q, k + r * hd, hd) for 8 rows of keys, the same bits: each
 * row's 8 lanes accumulate as in dot8, then one transposed reduction adds
 * them in dot8's order, ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)),
 * for all 8 rows at once instead of lane by lane for each. */
static inline void dot8_rows8(float *out, const float *q, const float *k, int32_t hd)
{
#if defined(__AVX2__)
    if (hd % 8 == 0) {
        __m256 acc[8];
        for (int r = 0; r < 8; r++)
            acc[r] = _mm256_setzero_ps();
        for (int32_t e = 0; e < hd; e += 8) {
            __m256 qe = _mm256_loadu_ps(q + e);
            for (int r = 0; r < 8; r++)
                acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(qe, _mm256_loadu_ps(k + (size_t)r * hd + e)));
        }
        __m256 u[4]; /* u[r] = (l0 + l4, l1 + l5, l2 + l6, l3 + l7) of row r | of row r + 4 */
        for (int r = 0; r < 4; r++)
            u[r] = _mm256_add_ps(_mm256_permute2f128_ps(acc[r], acc[r + 4], 0x20),
                                 _mm256_permute2f128_ps(acc[r], acc[r + 4], 0x31));
        __m256 pairs01 = _mm256_hadd_ps(u[0], u[1]), pairs23 = _mm256_hadd_ps(u[2], u[3]);
        __m256 dots = _mm256_hadd_ps(pairs01, pairs23); /* rows 0 1 2 3 | 4 5 6 7 */
        _mm256_storeu_ps(out, dots);
        return;
    }
#endif
    for (int r = 0; r < 8; r++)
        out[r] = dot8(q, k + (size_t)r * hd, hd);
}

/* Spans of a walk over `rows` keys; a walk of one span writes its output
 * directly, the others are combined. */
static inline int32_t spans_of(int32_t rows) { return (rows + DECODE_SPAN_ROWS - 1) / DECODE_SPAN_ROWS; }

/* Spans of the longest walk. */
static int32_t decode_spans(const kvz_attention_params *p) { return spans_of(max_visible(p)); }

/* Decode's scratch: a thread's scores over a span (the group's rows), one
 * per thread; after them a span task's results, one per task: per head its
 * weighted values (head_dim), its max and its sum. */
static size_t decode_scores_floats(const kvz_attention_params *p)
{
    return (size_t)(p->n_heads / p->n_kv_heads) * DECODE_SPAN_ROWS;
}

/* Rounded up to whole 64-byte lines, so that tasks running on two threads
 * never write to one line. */
static size_t decode_task_floats(const kvz_attention_params *p)
{
    size_t floats = (size_t)(p->n_heads / p->n_kv_heads) * ((size_t)p->head_dim + 2);
    return (floats + 15) / 16 * 16;
}

static size_t decode_scratch_floats(const kvz_attention_params *p, int n_threads)
{
    return (size_t)n_threads * decode_scores_floats(p) + 16 /* to align it */ +
           (size_t)p->n_kv_heads * DECODE_MAX_QUERIES * (size_t)decode_spans(p) * decode_task_floats(p);
}

/* One span [j0, j1) of KV head g's walk for query i: og[h] <- softmax over
 * the span of head h's scores, times the span's values; max[h] is the shift
 * and sum[h] the divisor of that softmax. */
static void decode_span(float *og, float *max, float *sum, float *scores, const float *qg, const float *kh,
                        const float *vh, int32_t j0, int32_t j1, int32_t group, int32_t hd, float scale)
{
    const int32_t len = j1 - j0;
    int32_t j = 0;
    for (; j + 8 <= len; j += 8)
        for (int32_t h = 0; h < group; h++)
            dot8_rows8(scores + (size_t)h * len + j, qg + (size_t)h * hd, kh + (size_t)(j0 + j) * hd, hd);
    for (; j < len; j++) {
        const float *kj = kh + (size_t)(j0 + j) * hd;
        for (int32_t h = 0; h < group; h++)
            scores[(size_t)h * len + j] = dot8(qg + (size_t)h * hd, kj, hd);
    }
    for (int32_t h = 0; h < group; h++) {
        float *sh = scores + (size_t)h * len;
        max[h] = kvz_row_max(sh, len); /* len >= 1 */
        sum[h] = kvz_exp_shifted(sh, len, max[h], scale);
        float inv = 1.0f / sum[h];
        for (int32_t r = 0; r < len; r++)
            sh[r] *= inv;
        memset(og + (size_t)h * hd, 0, (size_t)hd * sizeof(float));
    }
    /* og[h] += p_j v_j in order of j, four rows per store: the same
     * additions, without a store and a load of og between each two */
    for (j = 0; j + 4 <= len; j += 4) {
        const float *v0 = vh + (size_t)(j0 + j) * hd, *v1 = v0 + hd, *v2 = v1 + hd, *v3 = v2 + hd;
        for (int32_t h = 0; h < group; h++) {
            const float *ph = scores + (size_t)h * len + j;
            float w0 = ph[0], w1 = ph[1], w2 = ph[2], w3 = ph[3];
            float *oh = og + (size_t)h * hd;
            for (int32_t e = 0; e < hd; e++)
                oh[e] = oh[e] + w0 * v0[e] + w1 * v1[e] + w2 * v2[e] + w3 * v3[e];
        }
    }
    for (; j < len; j++) {
        const float *vj = vh + (size_t)(j0 + j) * hd;
        for (int32_t h = 0; h < group; h++) {
            float w = scores[(size_t)h * len + j];
            float *oh = og + (size_t)h * hd;
            for (int32_t e = 0; e < hd; e++)
                oh[e] += w * vj[e];
        }
    }
}

/* A span task's results in the scratch (decode_task_floats each, after the
 * threads' scores). */
typedef struct span_result {
    float *out, *max, *sum;
} span_result;

static span_result span_result_at(float *results, int64_t task, int32_t group, int32_t hd, size_t per_task)
{
    float *out = results + (size_t)task * per_task, *max = out + (size_t)group * hd;
    return (span_result){out, max, max + group};
}

/* Head h of a walk cut into n_spans spans (tasks t0 ..): the softmax over
 * the whole walk is, on span s, span s's own softmax times
 * sum_s e^(scale (max_s - max)) / total, total adding that over the spans. */
static void decode_combine(float *oh, float *results, size_t per_task, int64_t t0, int32_t n_spans, int32_t h,
                           int32_t group, int32_t hd, float scale)
{
    float max = -INFINITY, total = 0.0f;
    for (int32_t s = 0; s < n_spans; s++) {
        span_result r = span_result_at(results, t0 + s, group, hd, per_task);
        max = r.max[h] > max ? r.max[h] : max;
    }
    for (int32_t s = 0; s < n_spans; s++) {
        span_result r = span_result_at(results, t0 + s, group, hd, per_task);
        total += r.sum[h] * expf((r.max[h] - max) * scale);
    }
    memset(oh, 0, (size_t)hd * sizeof(float));
    for (int32_t s = 0; s < n_spans; s++) {
        span_result r = span_result_at(results, t0 + s, group, hd, per_task);
        float w = r.sum[h] * expf((r.max[h] - max) * scale) / total;
        const float *os = r.out + (size_t)h * hd;
        for (int32_t e = 0; e < hd; e++)
            oh[e] += w * os[e];
    }
}

int kvz_cpu_attention_decodes(const kvz_attention_params *p)
{
    return p->n <= DECODE_MAX_QUERIES && p->n_heads / p->n_kv_heads <= MAX_GROUP;
}

void kvz_cpu_attention_decode_team(float *out, const float *q, const float *k_cache, const float *v_cache,
                                   const kvz_attention_params *p, float *scratch, int n_threads)
{
    const int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads, spans = decode_spans(p);
    const int64_t walks = (int64_t)p->n_kv_heads * p->n, tasks = walks * spans; /* walk w = g * n + i */
    scratch += (64 - (uintptr_t)scratch % 64) % 64 / sizeof(float); /* to a line; it holds whole floats */
    float *results = scratch + (size_t)n_threads * decode_scores_floats(p); /* whole lines after it */
    const size_t per_task = decode_task_floats(p);
    float *scores = scratch + (size_t)omp_get_thread_num() * decode_scores_floats(p);
    /* heads' walks differ in length on a loaded cache: a span goes to whichever thread is free */
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t t = 0; t < tasks; t++) {
        int32_t g = (int32_t)(t / spans / p->n), i = (int32_t)(t / spans % p->n), s = (int32_t)(t % spans);
        int32_t kv_len = head_first(p, g) + i + 1, walk_spans = spans_of(kv_len), j0 = s * DECODE_SPAN_ROWS;
        if (s >= walk_spans)
            continue;
        int32_t j1 = kv_len - j0 < DECODE_SPAN_ROWS ? kv_len : j0 + DECODE_SPAN_ROWS;
        span_result r = span_result_at(results, t, group, hd, per_task);
        float *og = out + ((size_t)i * p->n_heads + (size_t)g * group) * hd;
        decode_span(walk_spans == 1 ? og : r.out, r.max, r.sum, scores,
                    q + ((size_t)i * p->n_heads + (size_t)g * group) * hd, head_block(k_cache, p, g),
                    head_block(v_cache, p, g), j0, j1, group, hd, p->scale);
    }
    if (spans == 1) /* every walk wrote its output: nothing to combine */
        return;
#pragma omp barrier
#pragma omp for schedule(static) nowait
    for (int64_t wh = 0; wh < walks * group; wh++) {
        int32_t g = (int32_t)(wh / group / p->n), i = (int32_t)(wh / group % p->n), h = (int32_t)(wh % group);
        int32_t n_spans = spans_of(head_first(p, g) + i + 1);
        if (n_spans > 1)
            decode_combine(out + ((size_t)i * p->n_heads + (size_t)g * group + h) * hd, results,
                           per_task, wh / group * spans, n_spans, h, group, hd, p->scale);
    }
}

size_t kvz_cpu_attention_scratch_floats(const kvz_attention_params *p, const kvz_score_params *sp,
                                        int n_threads)
{
    size_t decode = decode_scratch_floats(p, n_threads);
    size_t prefill = (size_t)kvz_score_threads(n_threads) * prefill_thread_floats(p, sp);
    size_t need = decode > prefill ? decode : prefill;
    if (sp) /* the decode path scores with the separate kernel after attention */
        need += kvz_cpu_scores_scratch_floats(sp, n_threads);
    return need;
}

void kvz_cpu_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                       const kvz_attention_params *p, const kvz_score_params *sp, float *scores,
                       float *scratch, int n_threads)
{
    if (kvz_cpu_attention_decodes(p)) {
#pragma omp parallel num_threads(n_threads)
        kvz_cpu_attention_decode_team(out, q, k_cache, v_cache, p, scratch, n_threads);
        if (sp) {
            kvz_cpu_attention_scores(scores, q, k_cache, sp, scratch + decode_scratch_floats(p, n_threads), n_threads);
        }
        return;
    }
    const int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    const int32_t tokens = task_tokens(p, kvz_score_threads(n_threads));
    const int32_t n_tiles = (p->n + tokens - 1) / tokens;
    const int ld = p->n_heads * hd; /* stride between tokens in q and out */
    const int64_t tasks = (int64_t)p->n_kv_heads * n_tiles;
    const size_t per_thread = prefill_thread_floats(p, sp);
    int used = 1;
#pragma omp parallel num_threads(kvz_score_threads(n_threads)) /* an accumulator each when scoring */
    {
        tile_scratch ts = tile_scratch_at(p, sp, scratch + (size_t)omp_get_thread_num() * per_thread);
        if (sp)
            kvz_cpu_score_acc_clear(sp, ts.acc);
#pragma omp single
        used = omp_get_num_threads();
#pragma omp for schedule(static, 1) /* task -> thread fixed: score sums fold in one order */
        for (int64_t t = 0; t < tasks; t++) {
            int32_t g = (int32_t)(t % p->n_kv_heads), i0 = (int32_t)(t / p->n_kv_heads) * tokens;
            int32_t n_tok = p->n - i0 < tokens ? p->n - i0 : tokens, rows = n_tok * group;
            int32_t first = head_first(p, g);
            int32_t kv_len = first + i0 + n_tok; /* keys the last token may see */
            /* the group's heads are adjacent in a token's q: row (i, h) of the
             * tile is query head g * group + h of token i0 + i */
            for (int32_t i = 0; i < n_tok; i++)
                memcpy(ts.q + (size_t)i * group * hd, q + (size_t)(i0 + i) * ld + (size_t)g * group * hd,
                       sizeof(float) * (size_t)group * hd);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kv_len, hd, 1.0f, ts.q, hd,
                        head_block(k_cache, p, g), hd, 0.0f, ts.scores, kv_len);
            softmax_causal_rows(ts.scores, n_tok, group, kv_len, first + i0, p->scale);
            if (sp)
                score_rows(sp, ts.scores, n_tok, group, kv_len, first + i0, p->scale, ts.q,
                           head_block(k_cache, p, g), hd, ts.gather, ts.acc + (size_t)g * sp->capacity);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, kv_len, 1.0f, ts.scores, kv_len,
                        head_block(v_cache, p, g), hd, 0.0f, ts.out, hd);
            for (int32_t i = 0; i < n_tok; i++)
                memcpy(out + (size_t)(i0 + i) * ld + (size_t)g * group * hd, ts.out + (size_t)i * group * hd,
                       sizeof(float) * (size_t)group * hd);
        }
    }
    if (sp) {
        const float *parts[KVZ_SCORE_MAX_THREADS];
        for (int th = 0; th < used; th++)
            parts[th] = tile_scratch_at(p, sp, scratch + (size_t)th * per_thread).acc;
        kvz_score_combine(sp, parts, used, scores);
    }
}
