/*
 * test_kernels.c — each CPU kernel against a naive loop written from its
 * definition (the CPU kernels are in turn the reference for CUDA).
 */
#include "test_util.h"

#include <math.h>

#include "common/cpu_quota.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/softmax.h"
#include "kernels/ggml_types.h"

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = test_frand();
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = max_keeping_nan(m, d);
    }
    return m;
}

static void test_matmul_every_type(void **state)
{
    const uint32_t types[] = {KVZ_GGML_F32,  KVZ_GGML_F16,  KVZ_GGML_BF16, KVZ_GGML_Q4_0,
                              KVZ_GGML_Q4_1, KVZ_GGML_Q5_0, KVZ_GGML_Q5_1, KVZ_GGML_Q8_0,
                              KVZ_GGML_Q4_K, KVZ_GGML_Q5_K, KVZ_GGML_Q6_K};
    const int64_t rows = 300, cols = 512;
    const int32_t ns[] = {1, 3, 70};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint8_t *wq = test_random_blocks(types[ti], rows, cols);
        float *wf = malloc(sizeof(float) * rows * cols);
        size_t row_bytes = kvz_ggml_row_bytes(types[ti], cols);
        for (int64_t r = 0; r < rows; r++)
            kvz_dequantize_row(types[ti], wq + r * row_bytes, wf + r * cols, cols);
        kvz_weight w = {.rows = rows, .cols = cols, .type = types[ti], .data = wq};
        float *scratch = malloc(sizeof(float) * (kvz_cpu_matmul_scratch_floats(&w, 2) + 1));
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int32_t n = ns[ni];
            float *x = malloc(sizeof(float) * n * cols), *y = malloc(sizeof(float) * n * rows);
            float *want = malloc(sizeof(float) * n * rows);
            fill(x, (size_t)n * cols);
            fill(y, (size_t)n * rows);
            for (int32_t i = 0; i < n; i++)
                for (int64_t r = 0; r < rows; r++) {
                    double s = y[i * rows + r]; /* accumulate onto the old values */
                    for (int64_t c = 0; c < cols; c++)
                        s += (double)x[i * cols + c] * wf[r * cols + c];
                    want[i * rows + r] = (float)s;
                }
            float *y2 = malloc(sizeof(float) * n * rows);
            memcpy(y2, y, sizeof(float) * n * rows);
            kvz_cpu_matmul(y, x, &w, n, 1, scratch, 2);
            double d = max_abs_diff(y, want, (size_t)n * rows);
            if (d > 1e-3)
                fail_msg("%s n=%d: max error %g", kvz_ggml_type_info_of(types[ti]).name, n, d);
            if (n <= KVZ_CPU_MATVEC_MAX_ROWS) { /* the decode path reads the blocks directly */
                float *mv_scratch = malloc(sizeof(float) * kvz_cpu_matvec_scratch_floats(&w, n, 2));
                const kvz_weight *one = &w;
                kvz_cpu_matvec(1, &y2, x, &one, n, 1, mv_scratch, 2);
                d = max_abs_diff(y2, want, (size_t)n * rows);
                if (d > 1e-3)
                    fail_msg("matvec %s n=%d: max error %g", kvz_ggml_type_info_of(types[ti]).name, n, d);
                free(mv_scratch);
            }
            free(y2);
            free(x);
            free(y);
            free(want);
        }
        free(scratch);
        free(wf);
        free(wq);
    }
}

/* Several weights in one kvz_cpu_matvec call give the bits of one call
 * each: row groups that straddle no weight, a fast and a slow type mixed,
 * row counts that are not multiples of the group of 4. */
static void test_matvec_many(void **state)
{
    (void)state;
    /* a slow type first: x's block sums are made when any weight is fast */
    const uint32_t types[3] = {KVZ_GGML_Q6_K, KVZ_GGML_Q4_1, KVZ_GGML_Q8_0};
    const int64_t rows[3] = {7, 300, 65}, cols = 512;
    kvz_weight w[3];
    const kvz_weight *wp[3];
    for (int k = 0; k < 3; k++) {
        w[k] = (kvz_weight){.rows = rows[k], .cols = cols, .type = types[k],
                            .data = test_random_blocks(types[k], rows[k], cols)};
        wp[k] = &w[k];
    }
    for (int32_t n = 1; n <= 3; n += 2)
        for (int accumulate = 0; accumulate <= 1; accumulate++) {
            float *x = malloc(sizeof(float) * n * cols);
            float *scratch = malloc(sizeof(float) * kvz_cpu_matvec_scratch_floats(&w[0], n, 3));
            fill(x, (size_t)n * cols);
            float *together[3], *apart[3];
            for (int k = 0; k < 3; k++) {
                together[k] = malloc(sizeof(float) * n * rows[k]);
                apart[k] = malloc(sizeof(float) * n * rows[k]);
                fill(together[k], (size_t)n * rows[k]);
                memcpy(apart[k], together[k], sizeof(float) * n * rows[k]);
                kvz_cpu_matvec(1, &apart[k], x, &wp[k], n, accumulate, scratch, 3);
            }
            kvz_cpu_matvec(3, together, x, wp, n, accumulate, scratch, 3);
            for (int k = 0; k < 3; k++) {
                if (memcmp(together[k], apart[k], sizeof(float) * n * rows[k]) != 0)
                    fail_msg("matvec of 3 weights: weight %d (n=%d, accumulate %d) differs from its own call", k,
                             n, accumulate);
                free(together[k]);
                free(apart[k]);
            }
            free(scratch);
            free(x);
        }
    for (int k = 0; k < 3; k++)
        free(w[k].data);
}

/* A weight narrower than one 32-element block (an F16 model of width 16):
 * no fast path, no blocks to fetch ahead, the definition's dots. */
static void test_matvec_narrow(void **state)
{
    (void)state;
    const int64_t rows = 9, cols = 16;
    kvz_weight w = {.rows = rows, .cols = cols, .type = KVZ_GGML_F16,
                    .data = test_random_blocks(KVZ_GGML_F16, rows, cols)};
    const kvz_weight *wp = &w;
    float x[16], out[9], row[16];
    fill(x, (size_t)cols);
    float *outp = out;
    float *scratch = malloc(sizeof(float) * kvz_cpu_matvec_scratch_floats(&w, 1, 2));
    kvz_cpu_matvec(1, &outp, x, &wp, 1, 0, scratch, 2);
    for (int64_t r = 0; r < rows; r++) {
        kvz_dequantize_row(KVZ_GGML_F16, (const uint8_t *)w.data + (size_t)r * cols * 2, row, cols);
        double want = 0;
        for (int64_t c = 0; c < cols; c++)
            want += (double)row[c] * x[c];
        assert_true(fabs(out[r] - want) < 1e-5);
    }
    free(scratch);
    free(w.data);
}

/* The CPU backend's norm_matmul_many: five products of one input (more than
 * one parallel step takes: two parts), some streaming the file's blocks (Q4_1,
 * Q8_0 with the fast path), some the f32 copy (Q6_K, an f32 weight), each
 * output the bits of matmul alone on the normalised input. */
static void test_cpu_norm_matmul_many(void **state)
{
    (void)state;
    enum { COUNT = 5 };
    const uint32_t types[COUNT] = {KVZ_GGML_Q4_1, KVZ_GGML_Q6_K, KVZ_GGML_F32, KVZ_GGML_Q8_0, KVZ_GGML_Q4_1};
    const int64_t rows[COUNT] = {70, 9, 33, 256, 5}, cols = 512;
    kvz_backend *b = NULL;
    assert_int_equal(kvz_backend_create(&b, &(kvz_backend_config){.device = KVZ_DEVICE_CPU, .n_threads = 2,
                                                                   .weights = KVZ_WEIGHTS_F32}),
                     KVZ_OK);
    kvz_weight w[COUNT];
    const kvz_weight *wp[COUNT];
    uint8_t *src[COUNT];
    for (int k = 0; k < COUNT; k++) {
        src[k] = test_random_blocks(types[k], rows[k], cols);
        assert_int_equal(b->ops->weight_load(b, &w[k], types[k], src[k], rows[k], cols), KVZ_OK);
        wp[k] = &w[k];
    }
    float *norm = malloc(sizeof(float) * cols);
    fill(norm, (size_t)cols);
    for (int32_t n = 1; n <= 3; n += 2) {
        float *x = malloc(sizeof(float) * n * cols), *h = malloc(sizeof(float) * n * cols);
        fill(x, (size_t)n * cols);
        float *many[COUNT], *one[COUNT];
        for (int k = 0; k < COUNT; k++) {
            many[k] = malloc(sizeof(float) * n * rows[k]);
            one[k] = malloc(sizeof(float) * n * rows[k]);
        }
        assert_int_equal(b->ops->norm_matmul_many(b, COUNT, many, h, x, norm, 1e-5f, wp, n), KVZ_OK);
        for (int k = 0; k < COUNT; k++) {
            assert_int_equal(b->ops->matmul(b, one[k], h, &w[k], n, 0), KVZ_OK);
            if (memcmp(many[k], one[k], sizeof(float) * n * rows[k]) != 0)
                fail_msg("norm_matmul_many: product %d (%s, n=%d) differs from matmul alone", k,
                         kvz_ggml_type_info_of(types[k]).name, n);
            free(many[k]);
            free(one[k]);
        }
        free(x);
        free(h);
    }
    for (int k = 0; k < COUNT; k++) {
        b->ops->weight_free(b, &w[k]);
        free(src[k]);
    }
    free(norm);
    b->ops->destroy(b);
}

static void naive_attention(float *out, const float *q, const float *kc, const float *vc,
                            const kvz_attention_params *p)
{
    int32_t hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    double *s = malloc(sizeof(double) * ((p->head_base ? p->max_head_rows : p->pos0) + p->n));
    for (int32_t i = 0; i < p->n; i++)
        for (int32_t h = 0; h < p->n_heads; h++) {
            const int32_t g = h / group;
            const size_t base = p->head_base ? (size_t)p->head_base[g] : (size_t)g * p->capacity;
            const float *qi = q + ((size_t)i * p->n_heads + h) * hd;
            const float *kh = kc + base * hd;
            const float *vh = vc + base * hd;
            int32_t visible = (p->head_base ? p->head_rows[g] : p->pos0) + i + 1;
            double max = -1e300, sum = 0;
            for (int32_t j = 0; j < visible; j++) {
                double d = 0;
                for (int32_t e = 0; e < hd; e++)
                    d += (double)qi[e] * kh[(size_t)j * hd + e];
                s[j] = d * p->scale;
                max = s[j] > max ? s[j] : max;
            }
            for (int32_t j = 0; j < visible; j++)
                sum += (s[j] = exp(s[j] - max));
            for (int32_t e = 0; e < hd; e++) {
                double acc = 0;
                for (int32_t j = 0; j < visible; j++)
                    acc += s[j] / sum * vh[(size_t)j * hd + e];
                out[((size_t)i * p->n_heads + h) * hd + e] = (float)acc;
            }
        }
    free(s);
}

/* Against the definition, in double. head_rows (NULL: dense, pos0 rows
 * before the queries in every head) gives each of the 2 KV heads its own
 * rows, packed one block after the other (the runtime's ragged cache). */
static void check_attention_group(int32_t n, int32_t pos0, int32_t capacity, const int32_t *head_rows,
                                  int32_t group, int threads)
{
    kvz_attention_params p = {.n = n, .pos0 = pos0, .n_heads = 2 * group, .n_kv_heads = 2, .head_dim = 64,
                              .capacity = capacity, .scale = 0.125f};
    int64_t head_base[2];
    size_t rows = (size_t)p.n_kv_heads * p.capacity;
    if (head_rows) {
        rows = 0;
        for (int g = 0; g < p.n_kv_heads; g++) {
            head_base[g] = (int64_t)rows;
            rows += (size_t)head_rows[g] + (size_t)n;
            p.max_head_rows = head_rows[g] > p.max_head_rows ? head_rows[g] : p.max_head_rows;
        }
        p.head_base = head_base, p.head_rows = head_rows, p.pos0 = 0;
    }
    size_t cache = rows * p.head_dim;
    size_t qn = (size_t)p.n * p.n_heads * p.head_dim;
    float *kc = malloc(cache * 4), *vc = malloc(cache * 4), *q = malloc(qn * 4);
    float *out = malloc(qn * 4), *want = malloc(qn * 4);
    fill(kc, cache);
    fill(vc, cache);
    fill(q, qn);
    for (size_t i = 0; i < qn; i++)
        q[i] *= 3; /* peaky softmax */
    float *scratch = malloc(kvz_cpu_attention_scratch_floats(&p, NULL, threads) * 4);
    kvz_cpu_attention(out, q, kc, vc, &p, NULL, NULL, scratch, threads);
    naive_attention(want, q, kc, vc, &p);
    double d = max_abs_diff(out, want, qn);
    if (head_rows)
        print_message("attention n=%d head rows %d/%d: max error %.2e\n", n, head_rows[0], head_rows[1], d);
    else
        print_message("attention n=%d pos0=%d group %d, %d threads: max error %.2e\n", n, pos0, group, threads, d);
    assert_true(d < 1e-5);
    free(scratch);
    free(kc);
    free(vc);
    free(q);
    free(out);
    free(want);
}

static void check_attention(int32_t n, int32_t pos0, int32_t capacity, const int32_t *head_rows)
{
    check_attention_group(n, pos0, capacity, head_rows, 3, 2);
}

/* GQA groups of 3; several query tiles (prefill) and 1..4 queries (decode),
 * over dense caches short and long and over ragged ones (heads of very
 * different lengths, one empty before its queries). Then other groups: a
 * prefill tile holds about 96 rows of (token, head of the group), so 96
 * tokens of one head, 12 of 8, 2 of 40, and one token of a group of 100
 * (which the decode path leaves to the prefill path); and more threads
 * than whole tiles would keep busy. */
static void test_attention_causal_gqa(void **state)
{
    check_attention(45, 30, 100, NULL);
    check_attention(45, 0, 100, NULL);
    check_attention(1, 0, 100, NULL);
    check_attention(1, 54, 100, NULL);
    check_attention(3, 20, 100, NULL);
    check_attention(2, 1022, 1100, NULL);
    check_attention(4, 1100, 1200, NULL);
    check_attention(1, 1024, 1100, NULL);
    check_attention(1, 255, 300, NULL); /* decode walks of 256 rows (one span) and 257 */
    check_attention(1, 256, 300, NULL);
    check_attention(4, 254, 300, NULL); /* 255..258 rows: one span and two in one call */
    const int32_t ragged[][2] = {{1030, 3}, {0, 700}, {511, 512}};
    for (int r = 0; r < 3; r++)
        for (int32_t n = 1; n <= 4; n += 3)
            check_attention(n, 0, 0, ragged[r]);
    check_attention_group(200, 30, 230, NULL, 1, 2);
    check_attention_group(45, 30, 100, NULL, 8, 2);
    check_attention_group(45, 30, 100, ragged[2], 8, 2);
    check_attention_group(5, 7, 20, NULL, 40, 2);
    check_attention_group(3, 7, 20, NULL, 100, 2);
    /* more threads than KV heads: shorter tiles, so that every thread has work */
    check_attention_group(45, 30, 100, NULL, 3, 16);
    check_attention_group(7, 1100, 1200, NULL, 4, 5);
    check_attention_group(5, 0, 0, ragged[0], 3, 16);
}

/* Decode cuts each walk of the cache into spans whose results combine in one
 * order: the same bits on 1, 2 and 7 threads, dense and ragged. */
static void test_attention_decode_threads(void **state)
{
    (void)state;
    const int32_t head_rows[2] = {3000, 700};
    int64_t head_base[2] = {0, 3000 + 4};
    kvz_attention_params dense = {.n = 3, .pos0 = 5000, .n_heads = 6, .n_kv_heads = 2, .head_dim = 64,
                                  .capacity = 5003, .scale = 0.125f};
    kvz_attention_params ragged = dense;
    ragged.pos0 = 0, ragged.head_base = head_base, ragged.head_rows = head_rows, ragged.max_head_rows = 3000;
    const kvz_attention_params *cases[2] = {&dense, &ragged};
    size_t cache = (size_t)2 * 5003 * 64, qn = (size_t)3 * 6 * 64;
    float *kc = malloc(cache * 4), *vc = malloc(cache * 4), *q = malloc(qn * 4);
    float *first = malloc(qn * 4), *out = malloc(qn * 4);
    fill(kc, cache);
    fill(vc, cache);
    fill(q, qn);
    for (int c = 0; c < 2; c++) {
        const int threads[3] = {1, 2, 7};
        for (int t = 0; t < 3; t++) {
            float *scratch = malloc(kvz_cpu_attention_scratch_floats(cases[c], NULL, threads[t]) * 4);
            kvz_cpu_attention(t ? out : first, q, kc, vc, cases[c], NULL, NULL, scratch, threads[t]);
            if (t)
                assert_memory_equal(first, out, qn * 4);
            free(scratch);
        }
    }
    free(kc);
    free(vc);
    free(q);
    free(first);
    free(out);
}

/* The softmax's max in lanes against the plain loop: lengths around the
 * 32-lane blocks, the max at every position; NaNs skipped after row[0],
 * kept at row[0]. */
static float loop_max(const float *row, int32_t n)
{
    float m = row[0];
    for (int32_t j = 1; j < n; j++)
        m = row[j] > m ? row[j] : m;
    return m;
}

static void test_row_max(void **state)
{
    float row[300];
    const int32_t lengths[] = {1, 2, 31, 32, 33, 34, 63, 64, 65, 66, 100, 257, 300};
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
        int32_t n = lengths[k];
        for (int32_t at = 0; at < n; at++) {
            for (int32_t j = 0; j < n; j++)
                row[j] = -1.0f - 4.0f * fabsf(test_frand());
            row[at] = 0.5f + (float)at;
            if (kvz_row_max(row, n) != row[at] || kvz_row_max(row, n) != loop_max(row, n))
                fail_msg("n %d, max at %d: %g", n, at, kvz_row_max(row, n));
        }
    }
    for (int32_t j = 0; j < 70; j++)
        row[j] = (float)j;
    row[3] = row[40] = row[69] = NAN;
    assert_true(kvz_row_max(row, 70) == 68.0f && loop_max(row, 70) == 68.0f);
    row[0] = NAN;
    assert_true(isnan(kvz_row_max(row, 70)) && isnan(loop_max(row, 70)));
}

/* Scores by definition: per (query, head) a causal softmax over the ranges,
 * reduced over queries and the GQA group. */
static void naive_scores(float *out, const float *q, const float *kc, const kvz_score_params *p)
{
    int32_t group = p->n_heads / p->n_kv_heads, hd = p->head_dim;
    double *s = malloc(sizeof(double) * p->capacity);
    for (int32_t i = 0; i < p->n; i++)
        for (int32_t h = 0; h < p->n_heads; h++) {
            int32_t g = h / group;
            double max = -1e300, sum = 0;
            for (int r = 0; r < p->n_ranges; r++)
                for (int32_t j = p->range_begin[r]; j < p->range_end[r] && j <= p->q_pos0 + i; j++) {
                    double d = 0;
                    for (int32_t e = 0; e < hd; e++)
                        d += (double)q[((size_t)i * p->n_heads + h) * hd + e] * kc[((size_t)g * p->capacity + j) * hd + e];
                    s[j] = d * p->scale;
                    max = s[j] > max ? s[j] : max;
                }
            for (int r = 0; r < p->n_ranges; r++)
                for (int32_t j = p->range_begin[r]; j < p->range_end[r] && j <= p->q_pos0 + i; j++)
                    sum += exp(s[j] - max);
            for (int r = 0; r < p->n_ranges; r++)
                for (int32_t j = p->range_begin[r]; j < p->range_end[r] && j <= p->q_pos0 + i; j++) {
                    float prob = (float)(exp(s[j] - max) / sum);
                    float *o = &out[(size_t)g * p->capacity + j];
                    *o = p->reduce == KVZ_REDUCE_MAX ? (prob > *o ? prob : *o) : *o + prob;
                }
        }
    free(s);
}

static void test_attention_scores(void **state)
{
    /* KVzip's shape: prefix, one chunk of the document, then the repeat
     * queries; then ranges that are every row a query sees (a KVzip pass
     * over one chunk, SnapKV's window), where attention scores with its own
     * softmax; then ranges that are for the first tile of queries (rows
     * 150..181) but not for the second. Last, three queries (the decode
     * path, which scores after its attention) over a cache of three spans. */
    const struct {
        int n;
        int32_t begin[3], end[3];
        int32_t queries, q_pos0, capacity;
    } sets[] = {{3, {0, 60, 150}, {10, 110, 190}, 40, 150, 200},
                {2, {0, 100}, {100, 190}, 40, 150, 200},
                {1, {0}, {185}, 40, 150, 200},
                {3, {0, 300, 600}, {10, 500, 602}, 3, 600, 700}};
    for (int set = 0; set < 4; set++)
    for (int reduce = 0; reduce < 2; reduce++) {
        kvz_score_params p = {.n = sets[set].queries, .q_pos0 = sets[set].q_pos0, .n_heads = 6, .n_kv_heads = 2,
                              .head_dim = 32, .capacity = sets[set].capacity, .scale = 0.2f,
                              .n_ranges = sets[set].n,
                              .reduce = (kvz_score_reduce)reduce};
        for (int r = 0; r < p.n_ranges; r++)
            p.range_begin[r] = sets[set].begin[r], p.range_end[r] = sets[set].end[r];
        size_t cache = (size_t)p.n_kv_heads * p.capacity * p.head_dim, qn = (size_t)p.n * p.n_heads * p.head_dim;
        float *kc = malloc(cache * 4), *q = malloc(qn * 4);
        float *got = calloc((size_t)p.n_kv_heads * p.capacity, 4), *want = calloc((size_t)p.n_kv_heads * p.capacity, 4);
        fill(kc, cache);
        fill(q, qn);
        for (size_t i = 0; i < qn; i++)
            q[i] *= 4;
        float *scratch = malloc(kvz_cpu_scores_scratch_floats(&p, 2) * 4);
        kvz_cpu_attention_scores(got, q, kc, &p, scratch, 2);
        naive_scores(want, q, kc, &p);
        double d = max_abs_diff(got, want, (size_t)p.n_kv_heads * p.capacity);
        print_message("attention scores (ranges %d, %s): max error %.2e\n", set, reduce ? "sum" : "max", d);
        assert_true(d < 1e-5);
        if (set == 0)
            assert_true(got[20] == 0.0f && got[p.capacity + 130] == 0.0f); /* outside the ranges */
        if (set == 2)
            assert_true(got[p.capacity + 187] == 0.0f);
        /* a second block accumulates */
        kvz_cpu_attention_scores(got, q, kc, &p, scratch, 2);
        naive_scores(want, q, kc, &p);
        assert_true(max_abs_diff(got, want, (size_t)p.n_kv_heads * p.capacity) < 1e-5);
        /* scoring fused into attention gives the same scores: the queries sit at
         * rows 150.. of a cache whose every row they may see causally */
        kvz_attention_params ap = {.n = p.n, .pos0 = p.q_pos0, .n_heads = p.n_heads,
                                   .n_kv_heads = p.n_kv_heads, .head_dim = p.head_dim,
                                   .capacity = p.capacity, .scale = p.scale};
        float *fused = calloc((size_t)p.n_kv_heads * p.capacity, 4), *vc = malloc(cache * 4);
        float *out = malloc(qn * 4), *plain = malloc(qn * 4);
        fill(vc, cache);
        memset(want, 0, (size_t)p.n_kv_heads * p.capacity * 4);
        naive_scores(want, q, kc, &p);
        float *ascratch = malloc(kvz_cpu_attention_scratch_floats(&ap, &p, 2) * 4);
        kvz_cpu_attention(out, q, kc, vc, &ap, &p, fused, ascratch, 2);
        kvz_cpu_attention(plain, q, kc, vc, &ap, NULL, NULL, ascratch, 2);
        d = max_abs_diff(fused, want, (size_t)p.n_kv_heads * p.capacity);
        print_message("scores fused into attention (ranges %d, %s): max error %.2e\n", set, reduce ? "sum" : "max",
                      d);
        assert_true(d < 1e-5);
        assert_true(max_abs_diff(out, plain, qn) == 0); /* scoring leaves attention unchanged */
        /* The same bits on every run, however the threads' tasks interleave,
         * so that compiling twice gives the same artifacts: 4 threads, both
         * the scoring pass and the scoring fused into attention. */
        size_t sn = (size_t)p.n_kv_heads * p.capacity;
        float *first = calloc(sn, 4), *again = malloc(sn * 4), *first_fused = calloc(sn, 4);
        float *scratch4 = malloc(kvz_cpu_scores_scratch_floats(&p, 4) * 4);
        float *ascratch4 = malloc(kvz_cpu_attention_scratch_floats(&ap, &p, 4) * 4);
        kvz_cpu_attention_scores(first, q, kc, &p, scratch4, 4);
        kvz_cpu_attention(out, q, kc, vc, &ap, &p, first_fused, ascratch4, 4);
        for (int run = 0; run < 20; run++) {
            memset(again, 0, sn * 4);
            kvz_cpu_attention_scores(again, q, kc, &p, scratch4, 4);
            assert_memory_equal(first, again, sn * 4);
            memset(again, 0, sn * 4);
            kvz_cpu_attention(out, q, kc, vc, &ap, &p, again, ascratch4, 4);
            assert_memory_equal(first_fused, again, sn * 4);
        }
        free(first), free(again), free(first_fused), free(scratch4), free(ascratch4);
        free(fused), free(vc), free(out), free(plain), free(ascratch);
        free(kc), free(q), free(got), free(want), free(scratch);
    }
}

/* Scores fused into attention renormalise the attention's probabilities on
 * the scored ranges. A key outside them (row 30) that draws nearly all of
 * every query's attention: at 200 nats above the rest the scored keys'
 * probabilities underflow to 0, at 95 nats they are subnormal (few digits
 * left; with max and with sum), and each row is scored from its dots again;
 * at 15 nats the renormalised row must keep its digits. Against the
 * definition in doubles. */
static void test_attention_scores_loud_unscored_key(void **state)
{
    (void)state;
    const float loud[] = {200.0f, 95.0f, 15.0f, 95.0f};
    for (int strength = 0; strength < 4; strength++) {
        kvz_score_params p = {.n = 40, .q_pos0 = 150, .n_heads = 6, .n_kv_heads = 2, .head_dim = 32,
                              .capacity = 200, .scale = 0.2f, .n_ranges = 3,
                              .reduce = strength == 3 ? KVZ_REDUCE_SUM : KVZ_REDUCE_MAX,
                              .range_begin = {0, 60, 150}, .range_end = {10, 110, 190}};
        kvz_attention_params ap = {.n = p.n, .pos0 = p.q_pos0, .n_heads = p.n_heads,
                                   .n_kv_heads = p.n_kv_heads, .head_dim = p.head_dim,
                                   .capacity = p.capacity, .scale = p.scale};
        size_t cache = (size_t)p.n_kv_heads * p.capacity * p.head_dim, qn = (size_t)p.n * p.n_heads * p.head_dim;
        size_t sn = (size_t)p.n_kv_heads * p.capacity;
        float *kc = malloc(cache * 4), *vc = malloc(cache * 4), *q = malloc(qn * 4), *out = malloc(qn * 4);
        float *got = calloc(sn, 4), *want = calloc(sn, 4);
        fill(kc, cache), fill(vc, cache), fill(q, qn);
        for (size_t i = 0; i < qn; i += (size_t)p.head_dim)
            q[i] = 1.0f; /* every query's first element */
        for (int32_t g = 0; g < p.n_kv_heads; g++)
            kc[((size_t)g * p.capacity + 30) * p.head_dim] = loud[strength] / p.scale;
        float *scratch = malloc(kvz_cpu_attention_scratch_floats(&ap, &p, 2) * 4);
        kvz_cpu_attention(out, q, kc, vc, &ap, &p, got, scratch, 2);
        naive_scores(want, q, kc, &p);
        double d = max_abs_diff(got, want, sn), top = 0;
        for (size_t i = 0; i < sn; i++)
            top = want[i] > top ? want[i] : top;
        print_message("scores fused, a key %.0f nats louder outside the ranges: max error %.2e (largest score %.2f)\n",
                      loud[strength], d, top);
        assert_true(d < 1e-5);
        assert_true(top > 0.05); /* the scored softmax, not the attention's, is what was folded */
        free(kc), free(vc), free(q), free(out), free(got), free(want), free(scratch);
    }
}

/* More threads than a scoring pass combines accumulators of (a machine with
 * more than 256 logical CPUs): the pass runs on at most that many and loses
 * nothing. 264 tasks of (head, 32-query tile), compared with 4 threads. */
static void test_attention_scores_many_threads(void **state)
{
    const int32_t n = 44 * 32;
    kvz_score_params p = {.n = n, .q_pos0 = 0, .n_heads = 6, .n_kv_heads = 2, .head_dim = 32, .capacity = n,
                          .scale = 0.2f, .n_ranges = 1, .range_begin = {0}, .range_end = {n},
                          .reduce = KVZ_REDUCE_SUM};
    size_t cache = (size_t)p.n_kv_heads * n * p.head_dim, qn = (size_t)n * p.n_heads * p.head_dim;
    size_t sn = (size_t)p.n_kv_heads * n;
    float *kc = malloc(cache * 4), *q = malloc(qn * 4), *few = calloc(sn, 4), *many = calloc(sn, 4);
    fill(kc, cache);
    fill(q, qn);
    float *scratch = malloc(kvz_cpu_scores_scratch_floats(&p, 300) * 4);
    kvz_cpu_attention_scores(few, q, kc, &p, scratch, 4);
    kvz_cpu_attention_scores(many, q, kc, &p, scratch, 300);
    double d = max_abs_diff(few, many, sn);
    print_message("attention scores, 300 threads against 4: max difference %.2e\n", d);
    assert_true(d < 1e-4);
    free(kc), free(q), free(few), free(many), free(scratch);
}

static void test_kv_append(void **state)
{
    kvz_attention_params p = {.n = 3, .pos0 = 5, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
                              .capacity = 10};
    float kc[2 * 10 * 4] = {0}, vc[2 * 10 * 4] = {0}, k[3 * 8], v[3 * 8];
    for (int i = 0; i < 24; i++)
        k[i] = (float)i, v[i] = (float)(100 + i);
    kvz_cpu_kv_append(kc, vc, k, v, &p);
    /* token 2, kv head 1, element 3 -> cache row 7 of head 1 */
    assert_true(kc[(1 * 10 + 7) * 4 + 3] == k[2 * 8 + 1 * 4 + 3]);
    assert_true(vc[(0 * 10 + 5) * 4 + 0] == v[0]);
    assert_true(kc[(0 * 10 + 4) * 4] == 0.0f);
}

/* Both modes, and the normal one with frequency factors (Llama 3.1+), which
 * divide each pair's angle. */
static void test_rope(void **state)
{
    const kvz_rope_mode modes[] = {KVZ_ROPE_NORMAL, KVZ_ROPE_NEOX, KVZ_ROPE_NORMAL};
    for (int mi = 0; mi < 3; mi++) {
        kvz_rope_params rp = {.head_dim = 64, .rope_dim = 64, .freq_base = 100000.0f, .mode = modes[mi]};
        if (mi == 2) {
            rp.n_factors = 32;
            for (int32_t j = 0; j < 32; j++)
                rp.factors[j] = 1.0f + (float)(j % 5) * 1.75f;
        }
        int32_t n = 5, heads = 3;
        int32_t pos[5] = {0, 1, 17, 4095, 30000};
        size_t len = (size_t)n * heads * 64;
        float *x = malloc(len * 4), *orig = malloc(len * 4);
        fill(x, len);
        memcpy(orig, x, len * 4);
        kvz_cpu_rope(x, pos, n, heads, &rp, 0, NULL, 2);
        for (int32_t i = 0; i < n; i++)
            for (int32_t h = 0; h < heads; h++)
                for (int32_t j = 0; j < 32; j++) {
                    int32_t a = mi != 1 ? 2 * j : j, b = mi != 1 ? 2 * j + 1 : j + 32;
                    double th = pos[i] * pow(100000.0, -2.0 * j / 64) / (mi == 2 ? rp.factors[j] : 1.0);
                    const float *o = orig + ((size_t)i * heads + h) * 64;
                    const float *r = x + ((size_t)i * heads + h) * 64;
                    double ra = o[a] * cos(th) - o[b] * sin(th), rb = o[a] * sin(th) + o[b] * cos(th);
                    assert_true(fabs(r[a] - ra) < 1e-5 && fabs(r[b] - rb) < 1e-5);
                }
        kvz_cpu_rope(x, pos, n, heads, &rp, 1, NULL, 2); /* rotating back restores the input */
        assert_true(max_abs_diff(x, orig, len) < 1e-5);
        free(x);
        free(orig);
    }
}

/* Angles from the table rotate rows to the very bits computed per row: both
 * modes, a partial rotary dimension, forward and back, positions inside the
 * table, beyond it (a table grown for fewer), and a table made for other
 * angles (another base; the same base without frequency factors), which must
 * be remade rather than used. */
static void test_rope_table(void **state)
{
    const kvz_rope_mode modes[] = {KVZ_ROPE_NORMAL, KVZ_ROPE_NEOX, KVZ_ROPE_NORMAL};
    const int order[] = {0, 2, 1}; /* 2 after 0: the same base and width, with factors */
    kvz_cpu_rope_table table = {0};
    for (int oi = 0; oi < 3; oi++)
        for (int inverse = 0; inverse < 2; inverse++) {
            const int mi = order[oi];
            kvz_rope_params rp = {.head_dim = 128, .rope_dim = mi == 1 ? 96 : 128,
                                  .freq_base = mi == 1 ? 500000.0f : 10000.0f, .mode = modes[mi]};
            if (mi == 2) {
                rp.n_factors = 64;
                for (int32_t j = 0; j < 64; j++)
                    rp.factors[j] = j < 20 ? 1.0f : 8.0f / (1.0f + (float)(j % 3));
            }
            const int32_t n = 3000, heads = 2;
            int32_t *pos = malloc(n * sizeof *pos);
            for (int32_t i = 0; i < n; i++)
                pos[i] = (int32_t)(((uint32_t)i * 2654435761u) % 40000u); /* scattered up to 40K */
            const size_t len = (size_t)n * heads * 128;
            float *want = malloc(len * 4), *got = malloc(len * 4);
            fill(want, len);
            memcpy(got, want, len * 4);
            kvz_cpu_rope(want, pos, n, heads, &rp, inverse, NULL, 2);
            const int32_t below = 4999;
            kvz_cpu_rope_table_cover(&table, &rp, &below, 1, 2); /* an eighth of the positions */
            if (!inverse) /* the last table was made for other angles: remade from nothing */
                assert_int_equal(table.n_positions, 5120);
            assert_true(table.half == rp.rope_dim / 2 && table.freq_base == rp.freq_base);
            kvz_cpu_rope(got, pos, n, heads, &rp, inverse, &table, 2);
            assert_memory_equal(want, got, len * 4);
            kvz_cpu_rope_table_cover(&table, &rp, pos, n, 2); /* now all of them */
            assert_true(table.n_positions >= 40000 - 1);
            kvz_cpu_rope(want, pos, n, heads, &rp, inverse, NULL, 2);
            kvz_cpu_rope(got, pos, n, heads, &rp, inverse, &table, 2);
            assert_memory_equal(want, got, len * 4);
            free(pos), free(want), free(got);
        }
    kvz_cpu_rope_table_free(&table);
}

static void test_rmsnorm_swiglu(void **state)
{
    int32_t n = 7, dim = 576;
    float *x = malloc(n * dim * 4), *w = malloc(dim * 4), *out = malloc(n * dim * 4);
    fill(x, (size_t)n * dim);
    fill(w, dim);
    kvz_cpu_rmsnorm(out, x, w, n, dim, 1e-5f, 2);
    for (int32_t i = 0; i < n; i++) {
        double ss = 0;
        for (int32_t j = 0; j < dim; j++)
            ss += (double)x[i * dim + j] * x[i * dim + j];
        double scale = 1 / sqrt(ss / dim + 1e-5);
        for (int32_t j = 0; j < dim; j++)
            assert_true(fabs(out[i * dim + j] - x[i * dim + j] * scale * w[j]) < 1e-5);
    }
    float gate[5] = {-20, -1, 0, 1, 20}, up[5] = {1, 2, 3, 4, 5}, act[5];
    kvz_cpu_swiglu(act, gate, up, 5, 2);
    for (int i = 0; i < 5; i++)
        assert_true(fabs(act[i] - gate[i] / (1 + exp(-gate[i])) * up[i]) < 1e-5);
    free(x);
    free(w);
    free(out);
}

static void test_embed(void **state)
{
    uint8_t *table = test_random_blocks(KVZ_GGML_Q8_0, 50, 64);
    kvz_weight w = {.rows = 50, .cols = 64, .type = KVZ_GGML_Q8_0, .data = table};
    int32_t tokens[3] = {49, 0, 7};
    float out[3 * 64], want[64];
    kvz_cpu_embed(out, &w, tokens, 3, 2);
    size_t row = kvz_ggml_row_bytes(KVZ_GGML_Q8_0, 64);
    kvz_dequantize_row(KVZ_GGML_Q8_0, table + 49 * row, want, 64);
    assert_memory_equal(out, want, sizeof want);
    kvz_dequantize_row(KVZ_GGML_Q8_0, table + 7 * row, want, 64);
    assert_memory_equal(out + 128, want, sizeof want);
    free(table);
}

/* The reference order, written from the definition: higher score first, NaN
 * last, -0 equal to +0, ties by candidate position. */
typedef struct cand {
    float score;
    size_t pos;
} cand;

static int ref_order(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    int an = isnan(a->score), bn = isnan(b->score);
    if (an != bn)
        return an - bn;
    if (!an && a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->pos < b->pos ? -1 : 1;
}

static void test_top_k_mask(void **state)
{
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 3.5f, -3.5f};
    for (int trial = 0; trial < 60; trial++) {
        size_t n = 1 + (size_t)((test_frand() * 0.5 + 0.5) * 3000) + (size_t)trial;
        float *s = malloc(n * sizeof *s);
        for (size_t i = 0; i < n; i++) {
            double r = test_frand() * 0.5 + 0.5;
            if (trial % 3 == 0) /* many ties */
                s[i] = (float)(int)(r * 7) * 0.25f;
            else if (trial % 3 == 1 && r < 0.3)
                s[i] = specials[(size_t)(r * 30) % (sizeof specials / sizeof specials[0])];
            else
                s[i] = test_frand() * 1e3f;
        }
        /* candidates: every index, or a subset in increasing order */
        uint32_t *idx = malloc(n * sizeof *idx);
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
            if (trial % 2 == 0 || test_frand() > 0)
                idx[count++] = (uint32_t)i;
        size_t ks[] = {0, 1, count / 3, count > 0 ? count - 1 : 0, count, count + 5};
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            size_t k = ks[ki];
            uint8_t *got = calloc(n, 1), *want = calloc(n, 1);
            uint32_t *keys = malloc(n * sizeof *keys);
            cand *c = malloc((count + 1) * sizeof *c);
            for (size_t i = 0; i < count; i++)
                c[i] = (cand){s[idx[i]], i};
            qsort(c, count, sizeof *c, ref_order);
            for (size_t i = 0; i < k && i < count; i++)
                want[idx[c[i].pos]] = 1;
            kvz_cpu_top_k_mask(s, trial % 2 == 0 ? NULL : idx, count, k, got, keys);
            assert_memory_equal(got, want, n);
            free(got), free(want), free(keys), free(c);
        }
        free(s), free(idx);
    }
}

/* Rows at once: each row's first length[r] scores, everything past them 0,
 * k beyond the length keeping the whole prefix; the other kernels from their
 * definitions, pooling from strided rows and clipped at both ends. */
static void test_window_kernels(void **state)
{
    enum { ROWS = 5, N = 40, STRIDE = 47 };
    float s[ROWS * STRIDE];
    for (int i = 0; i < ROWS * STRIDE; i++)
        s[i] = (float)(int)(test_frand() * 6) * 0.5f; /* ties */
    int32_t length[ROWS] = {N, 31, 0, 12, 25}, k[ROWS] = {9, 31, 3, 20, 0};
    uint8_t got[ROWS * N], want[ROWS * N] = {0};
    uint32_t keys[N];
    for (int r = 0; r < ROWS; r++)
        kvz_cpu_top_k_mask(s + r * N, NULL, (size_t)length[r], (size_t)k[r], want + r * N, keys);
    memset(got, 7, sizeof got);
    kvz_cpu_top_k_rows(got, s, ROWS, N, length, k, keys);
    assert_memory_equal(got, want, sizeof got);
    for (int r = 0; r < ROWS; r++) {
        int kept = 0;
        for (int t = 0; t < N; t++)
            kept += got[r * N + t];
        assert_int_equal(kept, k[r] < length[r] ? k[r] : length[r]);
    }
    float pooled[ROWS * N], sums[(N + 6) / 7];
    kvz_cpu_max_pool(pooled, s + 3, ROWS, N, STRIDE, 5);
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < N; t++) {
            float best = -INFINITY;
            for (int j = t - 2; j <= t + 2; j++)
                if (j >= 0 && j < N && s[3 + r * STRIDE + j] > best)
                    best = s[3 + r * STRIDE + j];
            assert_true(pooled[r * N + t] == best);
        }
    kvz_cpu_chunk_sums(sums, s, ROWS, N, 7);
    for (int c = 0; c < (N + 6) / 7; c++) {
        float sum = 0; /* exact: halves */
        for (int r = 0; r < ROWS; r++)
            for (int t = c * 7; t < N && t < c * 7 + 7; t++)
                sum += s[r * N + t];
        assert_true(sums[c] == sum);
    }
}

/* Key norms from strided heads, against the definition. */
static void test_key_norms(void **state)
{
    enum { ROWS = 3, N = 20, HD = 8, STRIDE = 25 * HD };
    float keys[ROWS * STRIDE], out[ROWS * N];
    for (int i = 0; i < ROWS * STRIDE; i++)
        keys[i] = test_frand();
    kvz_cpu_key_norms(out, keys + 2 * HD, ROWS, N, STRIDE, HD, 2);
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < N; t++) {
            double ss = 0;
            for (int e = 0; e < HD; e++)
                ss += (double)keys[r * STRIDE + (2 + t) * HD + e] * keys[r * STRIDE + (2 + t) * HD + e];
            assert_true(fabs(out[r * N + t] - sqrt(ss)) <= 1e-6 * sqrt(ss));
        }
}

/* Sampling from the definition (kvz_sample_params): logits whose exponentials
 * are 2, 4, 3, 1, ~0, 4 at temperature 1; the draw picks along the running sum
 * of the candidates ordered by probability, ties by lower id. */
static void test_sample(void **state)
{
    float logits[6] = {logf(2), logf(4), logf(3), logf(1), -1000.0f, logf(4)};
    int32_t order[6];
    float probs[6];
    kvz_sample_params greedy = {.temperature = 0, .top_p = 1, .draw = 0.99};
    assert_int_equal(kvz_cpu_sample(logits, 6, &greedy, order, probs), 1); /* the first of the two largest */
    assert_int_equal(kvz_cpu_argmax(logits, 6), 1);
    /* a NaN ranks below every number (order_key.h), first or not; -0 equals +0 */
    float broken[5] = {NAN, -INFINITY, 2.0f, NAN, 2.0f};
    assert_int_equal(kvz_cpu_argmax(broken, 5), 2);
    float all_nan[3] = {NAN, NAN, NAN}, zeros[3] = {-1.0f, -0.0f, 0.0f};
    assert_int_equal(kvz_cpu_argmax(all_nan, 3), 0);
    assert_int_equal(kvz_cpu_argmax(zeros, 3), 1);
    kvz_sample_params warm = {.temperature = 1, .top_p = 0.9f, .draw = 0.5};
    assert_int_equal(kvz_cpu_sample(broken, 5, &warm, order, probs), 2); /* no probability: the largest */
    float infinite[3] = {1.0f, INFINITY, 2.0f};
    assert_int_equal(kvz_cpu_sample(infinite, 3, &warm, order, probs), 1);
    /* mass 4,4,3,2,1 of 14 (token 4 under the minimum share): order 1, 5, 2, 0, 3 */
    const struct { float top_p; double draw; int32_t token; } cases[] = {
        {1.0f, 0.0, 1},   {1.0f, 0.28, 1}, {1.0f, 0.30, 5}, {1.0f, 0.56, 5}, {1.0f, 0.58, 2},
        {1.0f, 0.80, 0},  {1.0f, 0.93, 3}, {1.0f, 0.9999, 3},
        {0.5f, 0.49, 1},  {0.5f, 0.51, 5}, /* cut after 8 of 14 (>= 0.5): draws scale to 8 */
        {0.2f, 0.99, 1},                  /* the best token alone holds 4/14 >= 0.2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kvz_sample_params p = {.temperature = 1, .top_p = cases[i].top_p, .draw = cases[i].draw};
        int32_t got = kvz_cpu_sample(logits, 6, &p, order, probs);
        if (got != cases[i].token)
            fail_msg("top_p %.2f draw %.4f: token %d, expected %d", cases[i].top_p, cases[i].draw, got,
                     cases[i].token);
    }
}

/* Write `text` to dir/name (dir made first). */
static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    assert_int_equal(system(path), 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A made-up cgroup v2 tree as the host's namespace shows a pod: `file` set
 * to each value on /kubepods/pod1/c1, /kubepods/pod1 and /kubepods under
 * `v2`, mounted whole, this process in c1 (`top`'s cgroup and mountinfo). */
static void put_v2_pod(const char *top, const char *v2, const char *file, const char *c1, const char *pod,
                       const char *kubepods)
{
    char dir[400], text[1024];
    snprintf(dir, sizeof dir, "%s/kubepods/pod1/c1", v2);
    put_file(dir, file, c1);
    snprintf(dir, sizeof dir, "%s/kubepods/pod1", v2);
    put_file(dir, file, pod);
    snprintf(dir, sizeof dir, "%s/kubepods", v2);
    put_file(dir, file, kubepods);
    put_file(top, "cgroup", "0::/kubepods/pod1/c1\n");
    snprintf(text, sizeof text, "30 23 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw\n", v2);
    put_file(top, "mountinfo", text);
}

/* The cgroup CPU quota as a container shows it (v2, its own cgroup the
 * mount's top, a tighter limit above it) and as cgroup v1 does, in a made-up
 * /proc and /sys/fs/cgroup. */
static void test_cpu_quota(void **state)
{
    (void)state;
    const char *top = test_tmp_path("cgroups");
    char v2[300], v1[300], dir[400], cgroup[400], mounts[400], text[1024];
    snprintf(v2, sizeof v2, "%s/v2", top);
    snprintf(v1, sizeof v1, "%s/cpu,cpuacct", top);
    snprintf(cgroup, sizeof cgroup, "%s/cgroup", top);
    snprintf(mounts, sizeof mounts, "%s/mountinfo", top);
    /* v2: the pod's cgroup /kubepods/pod1/c1 seen from the host's namespace */
    put_v2_pod(top, v2, "cpu.max", "max 100000\n", "250000 100000\n", "800000 100000\n");
    assert_int_equal(kvz_cpu_quota_from(cgroup, mounts), 3); /* the pod's 2.5 CPUs: 3 threads */
    /* inside the container's namespace: the mount's top is its own cgroup, the
     * path /proc shows too; only c1's own limit is visible */
    snprintf(text, sizeof text, "30 23 0:26 /kubepods/pod1/c1 %s/kubepods/pod1/c1 rw - cgroup2 cgroup2 rw\n", v2);
    put_file(top, "mountinfo", text);
    assert_int_equal(kvz_cpu_quota_from(cgroup, mounts), 0); /* c1: max */
    snprintf(dir, sizeof dir, "%s/kubepods/pod1/c1", v2);
    put_file(dir, "cpu.max", "50000 100000\n");
    assert_int_equal(kvz_cpu_quota_from(cgroup, mounts), 1); /* half a CPU: one thread */
    /* v1, the cpu controller beside others; no limit: 0 */
    snprintf(dir, sizeof dir, "%s/job", v1);
    put_file(dir, "cpu.cfs_quota_us", "-1\n");
    put_file(dir, "cpu.cfs_period_us", "100000\n");
    put_file(v1, "cpu.cfs_quota_us", "-1\n");
    put_file(v1, "cpu.cfs_period_us", "100000\n");
    put_file(top, "cgroup", "5:memory:/job\n4:cpu,cpuacct:/job\n1:name=systemd:/job\n");
    snprintf(text, sizeof text,
             "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
             "32 31 0:29 / %s rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n", v1);
    put_file(top, "mountinfo", text);
    assert_int_equal(kvz_cpu_quota_from(cgroup, mounts), 0);
    put_file(dir, "cpu.cfs_quota_us", "400000\n");
    assert_int_equal(kvz_cpu_quota_from(cgroup, mounts), 4);
    /* no cgroup files at all: 0 */
    snprintf(dir, sizeof dir, "%s/none", top);
    assert_int_equal(kvz_cpu_quota_from(dir, mounts), 0);
    /* and this process's, whatever it is, is 0 or a count of CPUs */
    assert_true(kvz_cpu_quota() >= 0);
}

/* A cgroup's memory limit, the tightest up the hierarchy (cgroup v2, then
 * v1): the AUTO weights policy sizes an f32 copy of the weights by it where
 * the node's memory, which sysconf reports in a container, is larger. */
static void test_memory_limit(void **state)
{
    (void)state;
    const char *top = test_tmp_path("memory-cgroups");
    char v2[300], v1[300], dir[400], cgroup[400], mounts[400], text[1024];
    snprintf(v2, sizeof v2, "%s/v2", top);
    snprintf(v1, sizeof v1, "%s/memory", top);
    snprintf(cgroup, sizeof cgroup, "%s/cgroup", top);
    snprintf(mounts, sizeof mounts, "%s/mountinfo", top);
    put_v2_pod(top, v2, "memory.max", "max\n", "2147483648\n", "68719476736\n");
    assert_true(kvz_memory_limit_from(cgroup, mounts) == 2147483648.0); /* the pod's 2 GiB */
    /* v1: its "none" is a number near 2^63; the memory controller's own line and mount */
    snprintf(dir, sizeof dir, "%s/job", v1);
    put_file(dir, "memory.limit_in_bytes", "9223372036854771712\n");
    put_file(v1, "memory.limit_in_bytes", "9223372036854771712\n");
    put_file(top, "cgroup", "5:memory:/job\n4:cpu,cpuacct:/\n");
    snprintf(text, sizeof text,
             "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
             "35 31 0:32 / %s rw,relatime - cgroup cgroup rw,memory\n", v1);
    put_file(top, "mountinfo", text);
    assert_true(kvz_memory_limit_from(cgroup, mounts) == 0); /* none, as the header says */
    put_file(dir, "memory.limit_in_bytes", "536870912\n");
    assert_true(kvz_memory_limit_from(cgroup, mounts) == 536870912.0);
    /* no cgroup files at all: 0; this process's: 0 or a size */
    snprintf(dir, sizeof dir, "%s/none", top);
    assert_true(kvz_memory_limit_from(dir, mounts) == 0);
    assert_true(kvz_memory_limit() >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_every_type),
        cmocka_unit_test(test_matvec_many),
        cmocka_unit_test(test_matvec_narrow),
        cmocka_unit_test(test_cpu_norm_matmul_many),
        cmocka_unit_test(test_row_max),
        cmocka_unit_test(test_attention_causal_gqa),
        cmocka_unit_test(test_attention_decode_threads),
        cmocka_unit_test(test_attention_scores),
        cmocka_unit_test(test_attention_scores_loud_unscored_key),
        cmocka_unit_test(test_attention_scores_many_threads),
        cmocka_unit_test(test_kv_append),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_rmsnorm_swiglu),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_top_k_mask),
        cmocka_unit_test(test_window_kernels),
        cmocka_unit_test(test_key_norms),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_cpu_quota),
        cmocka_unit_test(test_memory_limit),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
