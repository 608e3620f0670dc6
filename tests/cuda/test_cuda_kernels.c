/*
 * test_cuda_kernels.c — every CUDA op against its CPU twin through the same
 * backend interface, by normalised error: max|cuda - cpu| / max|cpu|.
 * Needs an NVIDIA GPU; run by `make test-cuda`.
 */
#include "../unit/test_util.h"

#include <math.h>
#include <string.h>

#include "format/quant.h"
#include "kernels/backend.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"

/* gpu_simt: the same device with tensor-core attention turned off. */
static kvz_backend *cpu, *gpu, *gpu_simt;

static int setup(void **state)
{
    kvz_backend_config cc = {.device = KVZ_DEVICE_CPU, .weights = KVZ_WEIGHTS_F32};
    kvz_backend_config gc = {.device = KVZ_DEVICE_CUDA};
    CHECK_OK(kvz_backend_create(&cpu, &cc));
    CHECK_OK(kvz_backend_create(&gpu, &gc));
    /* the other kernels: CUDA-core attention, cuBLAS for every product */
    setenv("KVZ_CUDA_ATTENTION", "simt", 1);
    setenv("KVZ_CUDA_GEMV", "0", 1);
    CHECK_OK(kvz_backend_create(&gpu_simt, &gc));
    unsetenv("KVZ_CUDA_ATTENTION");
    unsetenv("KVZ_CUDA_GEMV");
    return 0;
}

static int teardown(void **state)
{
    kvz_backend_destroy(cpu);
    kvz_backend_destroy(gpu);
    kvz_backend_destroy(gpu_simt);
    return 0;
}

static float *host_random(size_t n, float scale)
{
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = test_frand() * scale;
    return x;
}

/* Device copy of host data. */
static void *dev(const void *host, size_t bytes)
{
    void *d;
    CHECK_OK(gpu->ops->alloc(gpu, bytes, &d));
    CHECK_OK(gpu->ops->upload(gpu, d, host, bytes));
    return d;
}

static float *back(const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    CHECK_OK(gpu->ops->download(gpu, h, d, n * sizeof(float)));
    return h;
}

static double normalised_error(const float *want, const float *got, size_t n)
{
    double max_diff = 0, max_ref = 1e-30;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        double d = fabs((double)want[i] - got[i]);
        max_diff = max_keeping_nan(max_diff, d);
        max_ref = fabs(want[i]) > max_ref ? fabs(want[i]) : max_ref;
    }
    return max_diff / max_ref;
}

static void expect_close(const char *what, const float *want, const float *got, size_t n, double tol)
{
    double e = normalised_error(want, got, n);
    print_message("%-40s normalised error %.2e (bound %.0e)\n", what, e, tol);
    if (!(e <= tol))
        fail_msg("%s: normalised error %g exceeds %g", what, e, tol);
}

/* Every weight type: dequantized to f16 on the device, then cuBLAS. */
static void test_matmul_every_type(void **state)
{
    const uint32_t types[] = {KVZ_GGML_F32,  KVZ_GGML_F16,  KVZ_GGML_BF16, KVZ_GGML_Q4_0,
                              KVZ_GGML_Q4_1, KVZ_GGML_Q5_0, KVZ_GGML_Q5_1, KVZ_GGML_Q8_0,
                              KVZ_GGML_Q4_K, KVZ_GGML_Q5_K, KVZ_GGML_Q6_K};
    const int64_t rows = 384, cols = 512;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint8_t *src = test_random_blocks(types[t], rows, cols);
        kvz_weight wc, wg;
        CHECK_OK(cpu->ops->weight_load(cpu, &wc, types[t], src, rows, cols));
        CHECK_OK(gpu->ops->weight_load(gpu, &wg, types[t], src, rows, cols));
        int32_t ns[] = {1, 3, 5, 77};
        for (size_t k = 0; k < 4; k++) {
            int32_t n = ns[k];
            float *x = host_random((size_t)n * cols, 1.0f), *y = host_random((size_t)n * rows, 1.0f);
            float *dx = dev(x, (size_t)n * cols * 4), *dy = dev(y, (size_t)n * rows * 4);
            float *dy2 = dev(y, (size_t)n * rows * 4);
            CHECK_OK(cpu->ops->matmul(cpu, y, x, &wc, n, 1));
            CHECK_OK(gpu->ops->matmul(gpu, dy, dx, &wg, n, 1));
            CHECK_OK(gpu->ops->synchronize(gpu)); /* the weights, for the other backend */
            CHECK_OK(gpu_simt->ops->matmul(gpu_simt, dy2, dx, &wg, n, 1));
            CHECK_OK(gpu_simt->ops->synchronize(gpu_simt));
            float *got = back(dy, (size_t)n * rows), *got_cublas = back(dy2, (size_t)n * rows);
            char what[64];
            /* f16 weights (exact for <=11-bit codes); f32 activations in the
             * own kernel of few rows, f16 ones into cuBLAS */
            snprintf(what, sizeof what, "matmul %s n=%d", kvz_ggml_type_info_of(types[t]).name, n);
            expect_close(what, y, got, (size_t)n * rows, 2e-3);
            snprintf(what, sizeof what, "matmul %s n=%d (cuBLAS)", kvz_ggml_type_info_of(types[t]).name, n);
            expect_close(what, y, got_cublas, (size_t)n * rows, 2e-3);
            /* up to 4 rows (GEMV_MAX_ROWS) take the own kernel, which cuBLAS's f16 inputs tell apart */
            assert_int_equal(memcmp(got, got_cublas, (size_t)n * rows * 4) != 0, n <= 4);
            free(got), free(got_cublas);
            gpu->ops->free(gpu, dy2);
            gpu->ops->free(gpu, dx);
            gpu->ops->free(gpu, dy);
            free(x);
            free(y);
        }
        cpu->ops->weight_free(cpu, &wc);
        gpu->ops->weight_free(gpu, &wg);
        free(src);
    }
}

static kvz_weight *load_both(kvz_weight *wc, kvz_weight *wg, int64_t rows, int64_t cols, uint8_t **src)
{
    *src = test_random_blocks(KVZ_GGML_Q8_0, rows, cols);
    CHECK_OK(cpu->ops->weight_load(cpu, wc, KVZ_GGML_Q8_0, *src, rows, cols));
    CHECK_OK(gpu->ops->weight_load(gpu, wg, KVZ_GGML_Q8_0, *src, rows, cols));
    return wg;
}

static void free_both(kvz_weight *wc, kvz_weight *wg, uint8_t *src)
{
    cpu->ops->weight_free(cpu, wc);
    gpu->ops->weight_free(gpu, wg);
    free(src);
}

/* RMSNorm, then one input by `count` weights of `rows[i]` rows (q, k, v) for
 * n = 1, 3 and 77 input rows: h and each output as the CPU gives them, and
 * each output bit for bit the GPU's own matmul of h. For n <= 4 the GPU's own
 * kernel takes up to three products a launch and, for small weights, applies
 * the norm itself as it reads x; for 77, the norm's launch writes cuBLAS's
 * f16 input. */
static void check_norm_matmul_many(const char *what, int32_t count, const int64_t *rows, int64_t cols)
{
    enum { W = 4 };
    assert_true(count <= W);
    const float eps = 1e-5f;
    kvz_weight wc[W], wg[W];
    uint8_t *src[W];
    const kvz_weight *cpu_weights[W], *weights[W];
    for (int i = 0; i < count; i++) {
        load_both(&wc[i], &wg[i], rows[i], cols, &src[i]);
        cpu_weights[i] = &wc[i], weights[i] = &wg[i];
    }
    float *norm = host_random(cols, 2.0f), *d_norm = dev(norm, cols * 4);
    const int32_t ns[] = {1, 3, 77};
    for (size_t k = 0; k < 3; k++) {
        const int32_t n = ns[k];
        const size_t xn = (size_t)n * cols;
        float *x = host_random(xn, 1.0f), *dx = dev(x, xn * 4), *h = malloc(xn * 4), *dh, *want[W], *many[W], *one[W];
        float *other = host_random(xn, 1.0f), *d_other = dev(other, xn * 4);
        CHECK_OK(gpu->ops->alloc(gpu, xn * 4, (void **)&dh));
        for (int i = 0; i < count; i++) {
            want[i] = malloc((size_t)n * rows[i] * 4);
            CHECK_OK(gpu->ops->alloc(gpu, (size_t)n * rows[i] * 4, (void **)&many[i]));
            CHECK_OK(gpu->ops->alloc(gpu, (size_t)n * rows[i] * 4, (void **)&one[i]));
        }
        CHECK_OK(cpu->ops->norm_matmul_many(cpu, count, want, h, x, norm, eps, cpu_weights, n));
        /* another input converted last: norm_matmul_many must write its own */
        CHECK_OK(gpu->ops->matmul(gpu, one[0], d_other, &wg[0], n, 0));
        CHECK_OK(gpu->ops->norm_matmul_many(gpu, count, many, dh, dx, d_norm, eps, weights, n));
        for (int i = 0; i < count; i++)
            CHECK_OK(gpu->ops->matmul(gpu, one[i], dh, &wg[i], n, 0));
        float *got_h = back(dh, xn);
        char label[96];
        snprintf(label, sizeof label, "%s: the norm, n=%d", what, n);
        expect_close(label, h, got_h, xn, 1e-5);
        for (int i = 0; i < count; i++) {
            float *got = back(many[i], (size_t)n * rows[i]), *alone = back(one[i], (size_t)n * rows[i]);
            snprintf(label, sizeof label, "%s: weight %d (%lld rows) n=%d", what, i, (long long)rows[i], n);
            expect_close(label, want[i], got, (size_t)n * rows[i], 2e-3);
            assert_memory_equal(got, alone, (size_t)n * rows[i] * 4);
            free(want[i]), free(got), free(alone);
            gpu->ops->free(gpu, many[i]);
            gpu->ops->free(gpu, one[i]);
        }
        gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dh), gpu->ops->free(gpu, d_other);
        free(x), free(h), free(other), free(got_h);
    }
    for (int i = 0; i < count; i++)
        free_both(&wc[i], &wg[i], src[i]);
    gpu->ops->free(gpu, d_norm);
    free(norm);
}

static void test_norm_matmul_many(void **state)
{
    /* SmolLM2's dim, 576: not whole 256-column strides. 124 and 44 rows end in
     * a part-filled block of 8 warps, 124 in the middle of a launch. */
    const int64_t three[3] = {384, 124, 44}, four[4] = {384, 124, 128, 44};
    check_norm_matmul_many("norm_matmul_many, 3 weights", 3, three, 576); /* n <= 4: one launch, the norm in it */
    check_norm_matmul_many("norm_matmul_many, 4 weights", 4, four, 576); /* the norm's launch, then two */
    /* past GEMV_FUSE_MAX_BYTES (8 MiB): the norm's own launch, then the products' */
    const int64_t large[1] = {4608};
    check_norm_matmul_many("norm_matmul_many, 9 MiB", 1, large, 1024);
}

/* SwiGLU, then the down projection accumulated onto out, for n = 1, 3 and 77
 * input rows: out as the CPU gives it. (gate is scratch: the GPU's own kernel
 * leaves it as it was, applying SwiGLU as it reads it, for small weights.) */
static void check_swiglu_matmul(int64_t rows, int64_t cols)
{
    kvz_weight wc, wg;
    uint8_t *src;
    load_both(&wc, &wg, rows, cols, &src);
    const int32_t ns[] = {1, 3, 77};
    for (size_t k = 0; k < 3; k++) {
        const int32_t n = ns[k];
        const size_t gn = (size_t)n * cols, on = (size_t)n * rows;
        float *gate = host_random(gn, 8.0f), *up = host_random(gn, 3.0f), *out = host_random(on, 1.0f);
        float *dg = dev(gate, gn * 4), *du = dev(up, gn * 4), *dout = dev(out, on * 4);
        float *other = host_random(gn, 1.0f), *d_other = dev(other, gn * 4), *scratch;
        CHECK_OK(gpu->ops->alloc(gpu, on * 4, (void **)&scratch));
        CHECK_OK(cpu->ops->swiglu_matmul(cpu, out, gate, up, &wc, n, 1));
        /* another input converted last: swiglu_matmul must write its own */
        CHECK_OK(gpu->ops->matmul(gpu, scratch, d_other, &wg, n, 0));
        CHECK_OK(gpu->ops->swiglu_matmul(gpu, dout, dg, du, &wg, n, 1));
        float *got = back(dout, on);
        char what[96];
        snprintf(what, sizeof what, "swiglu_matmul %lld x %lld, n=%d", (long long)rows, (long long)cols, n);
        expect_close(what, out, got, on, 2e-3);
        float *bufs[] = {dg, du, dout, d_other, scratch};
        for (int i = 0; i < 5; i++)
            gpu->ops->free(gpu, bufs[i]);
        free(gate), free(up), free(out), free(other), free(got);
    }
    free_both(&wc, &wg, src);
}

static void test_swiglu_matmul(void **state)
{
    check_swiglu_matmul(576, 1536); /* SmolLM2's down: SwiGLU in the product's launch for n <= 4 */
    check_swiglu_matmul(1152, 4096); /* 9 MiB, past GEMV_FUSE_MAX_BYTES: SwiGLU's own launch */
}

static void test_embed(void **state)
{
    const int64_t vocab = 1000, dim = 576;
    uint8_t *table = test_random_blocks(KVZ_GGML_Q8_0, vocab, dim);
    kvz_weight tc, tg;
    CHECK_OK(cpu->ops->weight_load(cpu, &tc, KVZ_GGML_Q8_0, table, vocab, dim));
    CHECK_OK(gpu->ops->weight_load(gpu, &tg, KVZ_GGML_Q8_0, table, vocab, dim));
    int32_t tokens[7] = {0, 999, 5, 5, 123, 456, 789};
    int32_t *dt = dev(tokens, sizeof tokens);
    float *ec = malloc(7 * dim * 4), *eg;
    CHECK_OK(gpu->ops->alloc(gpu, 7 * dim * 4, (void **)&eg));
    CHECK_OK(cpu->ops->embed(cpu, ec, &tc, tokens, 7));
    CHECK_OK(gpu->ops->embed(gpu, eg, &tg, dt, 7));
    float *got = back(eg, 7 * dim);
    expect_close("embed Q8_0 (f16 table)", ec, got, 7 * dim, 1e-3);
    free(got), free(ec), free(table);
    gpu->ops->free(gpu, eg), gpu->ops->free(gpu, dt);
    cpu->ops->weight_free(cpu, &tc);
    gpu->ops->weight_free(gpu, &tg);
}

/* Frequency factors (Llama 3.1+: each pair's angle divided by its own) for
 * every rotated pair of rp, from 1 to 8.8. */
static void add_rope_factors(kvz_rope_params *rp)
{
    rp->n_factors = rp->rope_dim / 2;
    for (int32_t j = 0; j < rp->n_factors; j++)
        rp->factors[j] = 1.0f + (float)(j % 7) * 1.3f;
}

static void test_rope(void **state)
{
    const kvz_rope_mode modes[] = {KVZ_ROPE_NORMAL, KVZ_ROPE_NEOX, KVZ_ROPE_NORMAL};
    for (int m = 0; m < 3; m++) {
        kvz_rope_params rp = {.head_dim = 128, .rope_dim = 128, .freq_base = 500000.0f, .mode = modes[m]};
        if (m == 2)
            add_rope_factors(&rp);
        int32_t n = 6, heads = 8, pos[6] = {0, 1, 77, 4095, 8191, 32767};
        size_t len = (size_t)n * heads * 128;
        float *x = host_random(len, 1.0f), *dx = dev(x, len * 4);
        int32_t *dp = dev(pos, sizeof pos);
        for (int inverse = 0; inverse < 2; inverse++) {
            CHECK_OK(cpu->ops->rope(cpu, x, pos, n, heads, &rp, inverse));
            CHECK_OK(gpu->ops->rope(gpu, dx, dp, n, heads, &rp, inverse));
            float *got = back(dx, len);
            const char *what[] = {"rope normal", "rope neox", "rope with factors"};
            expect_close(inverse ? "rope inverse" : what[m], x, got, len, 1e-6);
            free(got);
        }
        /* factors that are not one per rotated pair: refused by both, before anything is read */
        kvz_rope_params bad = rp;
        bad.n_factors = 3;
        assert_int_equal(cpu->ops->rope(cpu, x, pos, n, heads, &bad, 0), KVZ_ERR_ARG);
        assert_int_equal(gpu->ops->rope(gpu, dx, dp, n, heads, &bad, 0), KVZ_ERR_ARG);
        free(x);
        gpu->ops->free(gpu, dx);
        gpu->ops->free(gpu, dp);
    }
}

/* Chunks of at least this many queries run on tensor cores (f16 inputs):
 * their bound is f16's, the CUDA-core kernel's is f32's. */
#define TC_MIN_QUERIES 16
#define TC_BOUND 3e-3
#define TC_SCORE_BOUND 5e-3
#define SIMT_BOUND 1e-4

/* What the default backend's run of a chunk that may take tensor cores is
 * called: a device without room for a head size's tensor-core block (99 KB
 * of shared memory, head size 128) takes the CUDA-core kernel instead, and
 * then gives its bits exactly; f16 inputs never do. The bound stays the
 * looser one either way. */
static const char *kernel_label(int tensor_cores, const float *simt, const float *got, size_t count)
{
    if (!tensor_cores)
        return "(cuda cores)";
    return memcmp(simt, got, count * sizeof *got) == 0 ? "(cuda cores: no room for the tensor-core block)"
                                                        : "(tensor cores)";
}

/* Attention of the CPU against both CUDA kernels on the same device data. */
static void compare_attention(const char *what, const float *q, const float *kc, const float *vc, size_t cache,
                              const kvz_attention_params *cpu_p, const kvz_attention_params *gpu_p)
{
    size_t qn = (size_t)cpu_p->n * cpu_p->n_heads * cpu_p->head_dim;
    float *out = malloc(qn * 4), *dout;
    float *dkc = dev(kc, cache * 4), *dvc = dev(vc, cache * 4), *dq = dev(q, qn * 4);
    CHECK_OK(gpu->ops->alloc(gpu, qn * 4, (void **)&dout));
    CHECK_OK(cpu->ops->attention(cpu, out, q, kc, vc, cpu_p, NULL, NULL));
    kvz_backend *both[] = {gpu_simt, gpu};
    float *simt = NULL;
    for (int k = 0; k < 2; k++) {
        CHECK_OK(gpu->ops->synchronize(gpu)); /* the backends run on streams of their own */
        CHECK_OK(both[k]->ops->attention(both[k], dout, dq, dkc, dvc, gpu_p, NULL, NULL));
        CHECK_OK(both[k]->ops->synchronize(both[k]));
        float *got = back(dout, qn);
        char label[160];
        int tensor_cores = k == 1 && cpu_p->n >= TC_MIN_QUERIES;
        snprintf(label, sizeof label, "%s %s", what, kernel_label(tensor_cores, simt, got, qn));
        expect_close(label, out, got, qn, tensor_cores ? TC_BOUND : SIMT_BOUND);
        if (k == 0)
            simt = got;
        else
            free(got);
    }
    free(simt);
    float *bufs[] = {dkc, dvc, dq, dout};
    for (int i = 0; i < 4; i++)
        gpu->ops->free(gpu, bufs[i]);
    free(out);
}

/* A key and a value beyond f16's range (65504): the tensor-core kernel reads
 * them as f16 (kernels/cuda/half_range.cuh holds them at the largest f16, where
 * an infinity made rows NaN); its output stays finite, within the clamp's
 * 7% of the CPU's f32 result. The CUDA-core kernel (f32) keeps its bound. */
static void test_attention_beyond_half_range(void **state)
{
    const int32_t n = TC_MIN_QUERIES, pos0 = 100, H = 4, G = 1, hd = 64, cap = pos0 + n;
    kvz_attention_params p = {.n = n, .pos0 = pos0, .n_heads = H, .n_kv_heads = G, .head_dim = hd,
                              .capacity = cap, .scale = 0.125f};
    size_t cache = (size_t)G * cap * hd, qn = (size_t)n * H * hd;
    float *kc = host_random(cache, 1.0f), *vc = host_random(cache, 1.0f), *q = host_random(qn, 1e-4f);
    kc[5 * hd + 3] = 70000.0f;
    vc[7 * hd + 2] = 70000.0f;
    float *out = malloc(qn * 4), *dout;
    CHECK_OK(cpu->ops->attention(cpu, out, q, kc, vc, &p, NULL, NULL));
    float *dkc = dev(kc, cache * 4), *dvc = dev(vc, cache * 4), *dq = dev(q, qn * 4);
    CHECK_OK(gpu->ops->alloc(gpu, qn * 4, (void **)&dout));
    kvz_backend *both[] = {gpu_simt, gpu};
    for (int k = 0; k < 2; k++) {
        CHECK_OK(gpu->ops->synchronize(gpu));
        CHECK_OK(both[k]->ops->attention(both[k], dout, dq, dkc, dvc, &p, NULL, NULL));
        CHECK_OK(both[k]->ops->synchronize(both[k]));
        float *got = back(dout, qn);
        for (size_t i = 0; i < qn; i++)
            if (!isfinite(got[i]))
                fail_msg("%s: output %zu is %g", k ? "tensor cores" : "cuda cores", i, got[i]);
        expect_close(k ? "beyond f16's range (tensor cores)" : "beyond f16's range (cuda cores)", out, got, qn,
                     k ? 0.07 : SIMT_BOUND);
        free(got);
    }
    float *bufs[] = {dkc, dvc, dq, dout};
    for (int i = 0; i < 4; i++)
        gpu->ops->free(gpu, bufs[i]);
    free(kc), free(vc), free(q), free(out);
}

/* rope_kv_append on both backends from the same q, k and v (and with_bias,
 * qwen2's biases as large as the products), into caches equal on both (host
 * kc, vc; device dkc, dvc), for tokens at positions first_pos..: q and k must
 * turn alike, and the caches take the same rows. host_p and dev_p differ only
 * in where head_base and head_rows live. */
static void compare_rope_kv_append(const char *what, float *kc, float *vc, float *dkc, float *dvc, size_t cache,
                                   const kvz_attention_params *host_p, const kvz_attention_params *dev_p,
                                   int32_t first_pos, const kvz_rope_params *rope, int with_bias)
{
    const kvz_attention_params *p = host_p;
    size_t q_cols = (size_t)p->n_heads * p->head_dim, kv_cols = (size_t)p->n_kv_heads * p->head_dim;
    size_t qn = (size_t)p->n * q_cols, kvn = (size_t)p->n * kv_cols;
    float *q = host_random(qn, 2.0f), *k = host_random(kvn, 1.0f), *v = host_random(kvn, 1.0f);
    int32_t *pos = malloc(sizeof(int32_t) * p->n);
    for (int32_t i = 0; i < p->n; i++)
        pos[i] = first_pos + i;
    float *dq = dev(q, qn * 4), *dk = dev(k, kvn * 4), *dv = dev(v, kvn * 4);
    int32_t *dpos = dev(pos, sizeof(int32_t) * p->n);
    float *bias[3] = {0}, *dbias[3] = {0};
    const size_t bias_cols[3] = {q_cols, kv_cols, kv_cols};
    for (int i = 0; with_bias && i < 3; i++) {
        bias[i] = host_random(bias_cols[i], 1.0f);
        dbias[i] = dev(bias[i], bias_cols[i] * 4);
    }
    const kvz_qkv_bias host_bias = {bias[0], bias[1], bias[2]}, dev_bias = {dbias[0], dbias[1], dbias[2]};
    CHECK_OK(cpu->ops->rope_kv_append(cpu, kc, vc, q, k, v, with_bias ? &host_bias : NULL, pos, host_p, rope));
    CHECK_OK(gpu->ops->rope_kv_append(gpu, dkc, dvc, dq, dk, dv, with_bias ? &dev_bias : NULL, dpos, dev_p, rope));
    const struct { const char *part; const float *want, *dev; size_t n; double bound; } parts[] = {
        {"q", q, dq, qn, 1e-6}, {"k", k, dk, kvn, 1e-6}, {"k cache", kc, dkc, cache, 1e-6},
        {"v cache", vc, dvc, cache, 0}};
    for (int i = 0; i < 4; i++) {
        char label[128];
        snprintf(label, sizeof label, "%s: %s", what, parts[i].part);
        float *got = back(parts[i].dev, parts[i].n);
        expect_close(label, parts[i].want, got, parts[i].n, parts[i].bound);
        free(got);
    }
    for (int i = 0; with_bias && i < 3; i++)
        free(bias[i]), gpu->ops->free(gpu, dbias[i]);
    free(q), free(k), free(v), free(pos);
    gpu->ops->free(gpu, dq), gpu->ops->free(gpu, dk), gpu->ops->free(gpu, dv), gpu->ops->free(gpu, dpos);
}

static void check_attention(int32_t n, int32_t pos0, int32_t n_heads, int32_t n_kv, int32_t hd)
{
    kvz_attention_params p = {.n = n, .pos0 = pos0, .n_heads = n_heads, .n_kv_heads = n_kv,
                              .head_dim = hd, .capacity = pos0 + n + 3, .scale = 1.0f / sqrtf((float)hd)};
    /* head size 96 also turns only part of each head, the neox way */
    kvz_rope_params rope = {.head_dim = hd, .rope_dim = hd == 96 ? 64 : hd, .freq_base = 10000.0f,
                            .mode = hd == 96 ? KVZ_ROPE_NEOX : KVZ_ROPE_NORMAL};
    size_t cache = (size_t)n_kv * p.capacity * hd, qn = (size_t)n * n_heads * hd;
    float *kc = host_random(cache, 1.0f), *vc = host_random(cache, 1.0f), *q = host_random(qn, 2.0f);
    float *dkc = dev(kc, cache * 4), *dvc = dev(vc, cache * 4);
    char what[96];
    /* qwen2's biases: with its neox RoPE on part of each head (they reach q's
     * unrotated channels too), and on a second chunk with GQA */
    int with_bias = hd == 96 || pos0 == 37;
    snprintf(what, sizeof what, "rope_kv_append n=%d pos0=%d heads %d/%d%s", n, pos0, n_heads, n_kv,
             with_bias ? " biases" : "");
    compare_rope_kv_append(what, kc, vc, dkc, dvc, cache, &p, &p, pos0, &rope, with_bias);
    snprintf(what, sizeof what, "attention n=%d pos0=%d heads %d/%d hd %d", n, pos0, n_heads, n_kv, hd);
    compare_attention(what, q, kc, vc, cache, &p, &p);
    free(kc), free(vc), free(q);
    gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc);
}

/* A loaded cache: heads of different lengths, each followed by n query rows. */
static void check_attention_ragged(int32_t n, const int32_t *rows, int32_t n_heads, int32_t n_kv, int32_t hd)
{
    int64_t base[16], total = 0, total_rows = 0;
    int32_t max_rows = 0;
    for (int32_t h = 0; h < n_kv; h++) {
        base[h] = total;
        total += rows[h] + n + 2;
        total_rows += rows[h];
        max_rows = rows[h] > max_rows ? rows[h] : max_rows;
    }
    size_t cache = (size_t)total * hd, qn = (size_t)n * n_heads * hd;
    float *kc = host_random(cache, 1.0f), *vc = host_random(cache, 1.0f), *q = host_random(qn, 2.0f);
    int64_t *dbase = dev(base, sizeof(int64_t) * n_kv);
    int32_t *drows = dev(rows, sizeof(int32_t) * n_kv);
    kvz_attention_params p = {.n = n, .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd,
                              .scale = 1.0f / sqrtf((float)hd), .head_base = base, .head_rows = rows,
                              .max_head_rows = max_rows, .total_head_rows = total_rows};
    kvz_attention_params dp = p;
    dp.head_base = dbase;
    dp.head_rows = drows;
    /* the question's rows go after each head's own: its positions follow the document's;
     * with Llama 3.1's frequency factors for a question (n > 1) */
    kvz_rope_params rope = {.head_dim = hd, .rope_dim = hd, .freq_base = 500000.0f, .mode = KVZ_ROPE_NORMAL};
    if (n > 1)
        add_rope_factors(&rope);
    float *dkc = dev(kc, cache * 4), *dvc = dev(vc, cache * 4);
    char what[96];
    snprintf(what, sizeof what, "ragged rope_kv_append n=%d heads %d/%d%s", n, n_heads, n_kv,
             n == 1 ? " biases" : "");
    compare_rope_kv_append(what, kc, vc, dkc, dvc, cache, &p, &dp, 3000, &rope, n == 1);
    snprintf(what, sizeof what, "ragged attention n=%d heads %d/%d hd %d", n, n_heads, n_kv, hd);
    compare_attention(what, q, kc, vc, cache, &p, &dp);
    gpu->ops->free(gpu, dbase), gpu->ops->free(gpu, drows);
    gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc);
    free(kc), free(vc), free(q);
}

static void test_attention(void **state)
{
    check_attention(100, 0, 9, 3, 64);     /* SmolLM2 shape, prefill from empty */
    check_attention(70, 37, 9, 3, 64);     /* a second chunk */
    check_attention(1, 0, 9, 3, 64);       /* first decode step */
    check_attention(1, GPU_OR_EMULATED(5000, 900), 9, 3, 64); /* decode with split keys */
    check_attention(3, GPU_OR_EMULATED(9000, 1200), 32, 8, 128); /* Llama-3-8B shape */
    check_attention(GPU_OR_EMULATED(300, 40), GPU_OR_EMULATED(1000, 300), 32, 8, 128);
    check_attention(17, 200, 12, 12, 96); /* no GQA, head size 96 */
    /* a full prefill chunk deep in a document */
    check_attention(GPU_OR_EMULATED(512, 96), GPU_OR_EMULATED(3000, 400), 9, 3, 64);
    /* the smallest tensor-core chunk, split keys (on a GPU; the emulation's 4
     * SMs already have 2 blocks each from 8 KV heads) */
    check_attention(16, GPU_OR_EMULATED(7000, 700), 32, 8, 128);
    /* the same with 3 KV heads: split keys in the emulation too */
    check_attention(16, GPU_OR_EMULATED(7000, 700), 9, 3, 64);
    /* Llama-3-8B shape, chunks under 16 queries: more than 48 KB of shared
     * memory in the CUDA-core kernel, a different amount for each size */
    check_attention(13, 300, 32, 8, 128);
    check_attention(9, 300, 32, 8, 128);
}

static void test_attention_ragged(void **state)
{
    const int32_t smol[3] = {GPU_OR_EMULATED(700, 200), 1, GPU_OR_EMULATED(2300, 500)};
    const int32_t l3[8] = {0, 5, 64, 65, GPU_OR_EMULATED(1000, 300), GPU_OR_EMULATED(4000, 700), 63, 129};
    check_attention_ragged(1, smol, 9, 3, 64);   /* decode over a loaded SmolLM2 cache */
    check_attention_ragged(40, smol, 9, 3, 64);  /* a question appended to it */
    check_attention_ragged(1, l3, 32, 8, 128);
    check_attention_ragged(33, l3, 32, 8, 128);
}

/* Both kernels read the caches as float4s: a cache that is not 16-byte
 * aligned (which would fault on a GPU, not in the emulation) is refused. */
static void test_attention_misaligned(void **state)
{
    kvz_attention_params p = {.n = 1, .pos0 = 64, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                              .capacity = 68, .scale = 0.125f};
    kvz_score_params sp = {.n = 1, .q_pos0 = 64, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                           .capacity = 68, .scale = 0.125f, .n_ranges = 1, .range_end = {64}};
    size_t cache = (size_t)3 * 68 * 64 + 4, qn = (size_t)9 * 64;
    float *kc = host_random(cache, 1.0f), *q = host_random(qn, 1.0f), *dout, *dsc;
    float *dkc = dev(kc, cache * 4), *dvc = dev(kc, cache * 4), *dq = dev(q, qn * 4);
    CHECK_OK(gpu->ops->alloc(gpu, qn * 4, (void **)&dout));
    CHECK_OK(gpu->ops->alloc(gpu, (size_t)3 * 68 * 4, (void **)&dsc));
    CHECK_OK(gpu->ops->attention(gpu, dout, dq, dkc + 4, dvc + 4, &p, NULL, NULL)); /* 16 bytes in: fine */
    assert_int_equal(gpu->ops->attention(gpu, dout, dq, dkc + 1, dvc, &p, NULL, NULL), KVZ_ERR_INTERNAL);
    assert_int_equal(gpu->ops->attention(gpu, dout, dq, dkc, dvc + 2, &p, NULL, NULL), KVZ_ERR_INTERNAL);
    assert_int_equal(gpu->ops->attention_scores(gpu, dsc, dq, dkc + 3, &sp), KVZ_ERR_INTERNAL);
    kvz_error_clear();
    CHECK_OK(gpu->ops->synchronize(gpu));
    float *bufs[] = {dkc, dvc, dq, dout, dsc};
    for (int i = 0; i < 5; i++)
        gpu->ops->free(gpu, bufs[i]);
    free(kc), free(q);
}

static void check_scores(kvz_score_reduce reduce, int32_t n_heads, int32_t n_kv, int32_t hd,
                         int32_t n, int32_t q_pos0, int32_t capacity, int n_ranges, const int32_t *begin,
                         const int32_t *end)
{
    kvz_score_params p = {.n = n, .q_pos0 = q_pos0, .n_heads = n_heads, .n_kv_heads = n_kv,
                          .head_dim = hd, .capacity = capacity, .scale = 1.0f / sqrtf((float)hd),
                          .n_ranges = n_ranges, .reduce = reduce};
    for (int r = 0; r < n_ranges; r++)
        p.range_begin[r] = begin[r], p.range_end[r] = end[r];
    size_t cache = (size_t)n_kv * capacity * hd, qn = (size_t)n * n_heads * hd, sn = (size_t)n_kv * capacity;
    float *kc = host_random(cache, 1.0f), *q = host_random(qn, 3.0f), *sc = calloc(sn, 4);
    float *zero = calloc(sn, 4);
    float *dkc = dev(kc, cache * 4), *dq = dev(q, qn * 4), *dsc = dev(zero, sn * 4);
    CHECK_OK(cpu->ops->attention_scores(cpu, sc, q, kc, &p));
    kvz_backend *both[] = {gpu_simt, gpu};
    float *simt = NULL;
    for (int k = 0; k < 2; k++) {
        int tensor_cores = k == 1 && n >= TC_MIN_QUERIES;
        CHECK_OK(gpu->ops->upload(gpu, dsc, zero, sn * 4));
        CHECK_OK(gpu->ops->synchronize(gpu)); /* the backends run on streams of their own */
        CHECK_OK(both[k]->ops->attention_scores(both[k], dsc, dq, dkc, &p));
        CHECK_OK(both[k]->ops->synchronize(both[k]));
        float *got = back(dsc, sn);
        char what[192];
        snprintf(what, sizeof what, "scores %s n=%d heads %d/%d hd %d %s", reduce ? "sum" : "max", n, n_heads,
                 n_kv, hd, kernel_label(tensor_cores, simt, got, sn));
        expect_close(what, sc, got, sn, tensor_cores ? TC_SCORE_BOUND : SIMT_BOUND);
        /* Again: the same bits, whatever order the blocks ran in (a GPU's
         * differs run to run; the emulation's with KVZ_CUDASIM_ORDER=shuffle),
         * so that compiling twice gives the same artifacts. */
        CHECK_OK(gpu->ops->upload(gpu, dsc, zero, sn * 4));
        CHECK_OK(gpu->ops->synchronize(gpu));
        CHECK_OK(both[k]->ops->attention_scores(both[k], dsc, dq, dkc, &p));
        CHECK_OK(both[k]->ops->synchronize(both[k]));
        float *again = back(dsc, sn);
        if (memcmp(got, again, sn * 4) != 0)
            fail_msg("%s: a second run gives other bits", what);
        /* a third onto the second's scores adds to them (blocks of queries accumulate) */
        CHECK_OK(both[k]->ops->attention_scores(both[k], dsc, dq, dkc, &p));
        CHECK_OK(both[k]->ops->synchronize(both[k]));
        float *twice = back(dsc, sn);
        for (size_t i = 0; i < sn; i++)
            again[i] = reduce == KVZ_REDUCE_MAX ? sc[i] : 2 * sc[i];
        strcat(what, ", accumulated");
        expect_close(what, again, twice, sn, tensor_cores ? TC_SCORE_BOUND : SIMT_BOUND);
        free(twice);
        free(again);
        if (k == 0)
            simt = got;
        else
            free(got);
    }
    free(simt);
    free(kc), free(q), free(sc), free(zero);
    gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dq), gpu->ops->free(gpu, dsc);
}

static void test_attention_scores(void **state)
{
    /* KVzip: prefix, a 2048-token chunk, the repeat queries over themselves */
    const int32_t chunk = GPU_OR_EMULATED(2048, 400), doc = GPU_OR_EMULATED(3000, 600);
    int32_t kb[3] = {0, 40, doc}, ke[3] = {30, 40 + chunk, doc + chunk + 52};
    check_scores(KVZ_REDUCE_MAX, 9, 3, 64, chunk + 52, doc, doc + chunk + 152, 3, kb, ke);
    /* SnapKV window: 32 queries over the whole document */
    const int32_t window_doc = GPU_OR_EMULATED(4000, 800);
    int32_t wb[1] = {0}, we[1] = {window_doc};
    check_scores(KVZ_REDUCE_SUM, 32, 8, 128, 32, window_doc - 32, window_doc, 1, wb, we);
    /* a short block stays on CUDA cores; head size 96, no GQA */
    int32_t sb[1] = {0}, se[1] = {700};
    check_scores(KVZ_REDUCE_MAX, 12, 12, 96, 8, 692, 700, 1, sb, se);
    check_scores(KVZ_REDUCE_SUM, 12, 12, 96, 100, 600, 700, 1, sb, se);
    /* sums over more than two query tiles: a long question (SmolLM2 shape, 5
     * tiles of 21 queries) and a window over GQA groups of 8 (4 tiles) */
    check_scores(KVZ_REDUCE_SUM, 9, 3, 64, 100, 600, 700, 1, sb, se);
    check_scores(KVZ_REDUCE_SUM, 32, 4, 128, 32, 668, 700, 1, sb, se);
}

/* Greedy sampling of rows that start off a 16-byte boundary. The device takes
 * a row's floats before its first boundary one by one, then its float4s
 * (thread t: float4s t, t + 1024, ...; four in flight), then the floats after
 * its last whole float4 one by one. The largest value twice, at places that
 * put the tie across those parts and within one thread's share, and rows 0 to
 * 3 floats shorter so that the last part has 0 to 3 floats: the lower id must
 * win. dx is 16-byte aligned, so a row at dx + off has 4 - off floats before
 * its first boundary and float 4 of the buffer begins its float4s (float 24
 * its float4 5, which thread 5 takes in its first round of loads with 24 +
 * 4096 and in its second with 24 + 16384). x holds values under 7 but at n/3
 * and n - 1. */
static void check_argmax_rows(const float *x, float *dx, int32_t n)
{
    kvz_sample_params greedy = {.temperature = 0, .top_p = 1, .draw = 0};
    float *y = malloc((size_t)n * sizeof *y);
    assert_non_null(y);
    assert_true((uintptr_t)dx % 16 == 0);
    int rows = 0;
    for (int32_t off = 1; off < 4 && off < n; off++)
        for (int32_t k = 0; k < 4 && off + k < n; k++) {
            const int32_t len = n - off - k, end = off + len, head = 4 - off < len ? 4 - off : len;
            const int32_t tail = off + head + (len - head) / 4 * 4; /* the first float after the float4s */
            const int32_t ties[7][2] = {{off, end - 1}, {off, 4},          {end - 2, end - 1},  {4, tail},
                                        {n / 2 - 5, n / 2 + 7}, {24, 24 + 4096}, {24, 24 + 16384}};
            for (int t = 0; t < 7; t++) {
                const int32_t a = ties[t][0], b = ties[t][1];
                if (a < off || b >= end || a >= b)
                    continue; /* not in this row */
                memcpy(y, x, (size_t)n * sizeof *y);
                y[n / 3] = y[n - 1] = 0.0f;
                y[a] = y[b] = 7.0f;
                int32_t want, got;
                CHECK_OK(gpu->ops->upload(gpu, dx, y, (size_t)n * 4));
                CHECK_OK(cpu->ops->sample(cpu, &want, y + off, len, &greedy));
                CHECK_OK(gpu->ops->sample(gpu, &got, dx + off, len, &greedy));
                assert_int_equal(want, a - off);
                assert_int_equal(got, want);
                rows++;
            }
        }
    free(y);
    CHECK_OK(gpu->ops->upload(gpu, dx, x, (size_t)n * 4));
    print_message("sample n=%d: greedy over %d rows off a 16-byte boundary\n", n, rows);
}

/* Sampling on the device against the CPU twin, on the same logits and draws:
 * greedy exactly (ties to the lower id); top-p allowing a rare neighbour swap,
 * since the two expf differ in the last bit. */
static void test_sample(void **state)
{
    const int32_t sizes[] = {1, 3, 7, 1000, 49152, 128256};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int32_t n = sizes[si];
        float *x = host_random((size_t)n, 6.0f);
        x[n / 3] = 7.0f; /* the largest, twice: the lower id wins */
        x[n - 1] = 7.0f;
        float *dx = dev(x, (size_t)n * 4);
        kvz_sample_params greedy = {.temperature = 0, .top_p = 1, .draw = 0};
        int32_t want, got;
        CHECK_OK(cpu->ops->sample(cpu, &want, x, n, &greedy));
        CHECK_OK(gpu->ops->sample(gpu, &got, dx, n, &greedy));
        assert_int_equal(want, n / 3);
        assert_int_equal(got, want);
        check_argmax_rows(x, dx, n);
        if (n >= 1000) { /* a NaN first in a thread's share: it ranks lowest there too (the largest was lost) */
            float *y = malloc((size_t)n * sizeof *y);
            assert_non_null(y);
            memcpy(y, x, (size_t)n * sizeof *y);
            const int32_t largest = 4 + 4096 < n ? 4 + 4096 : n - 2; /* later in the same thread's share */
            y[4] = NAN;
            y[1] = NAN;
            y[largest] = 9.0f;
            CHECK_OK(gpu->ops->upload(gpu, dx, y, (size_t)n * 4));
            kvz_sample_params warm = {.temperature = 1, .top_p = 0.9f, .draw = 0.5}; /* no probability: the largest */
            const kvz_sample_params *ways[] = {&greedy, &warm};
            for (int w = 0; w < 2; w++) {
                CHECK_OK(cpu->ops->sample(cpu, &want, y, n, ways[w]));
                CHECK_OK(gpu->ops->sample(gpu, &got, dx, n, ways[w]));
                assert_int_equal(want, largest);
                assert_int_equal(got, want);
            }
            CHECK_OK(gpu->ops->upload(gpu, dx, x, (size_t)n * 4));
            free(y);
        }
        const float temps[] = {0.7f, 1.5f}, tops[] = {0.5f, 0.95f, 1.0f};
        const int n_draws = UNLESS_RACE_CHECK(25, 3);
        int draws = 0, differ = 0;
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < 3; k++)
                for (int d = 0; d < n_draws; d++, draws++) {
                    kvz_sample_params p = {.temperature = temps[t], .top_p = tops[k], .draw = (d + 0.5) / n_draws};
                    CHECK_OK(cpu->ops->sample(cpu, &want, x, n, &p));
                    CHECK_OK(gpu->ops->sample(gpu, &got, dx, n, &p));
                    differ += want != got;
                }
        print_message("sample n=%d: greedy %d, top-p %d of %d draws differ\n", n, got, differ, draws);
        assert_true(differ <= draws / 50);
        gpu->ops->free(gpu, dx);
        free(x);
    }
}

/* Radix select: the same mask bit for bit, ties and special values included,
 * over one tile and over many (the tile is 4,096 scores). */
static void test_top_k_mask(void **state)
{
    const int64_t counts[] = {1, 100, 4096, 4097, 70001, GPU_OR_EMULATED(3 * 1000 * 1000, 300 * 1000)};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        for (int kind = 0; kind < 3; kind++) {
            int64_t n = counts[ci];
            float *s = malloc((size_t)n * sizeof *s);
            for (int64_t i = 0; i < n; i++) {
                float r = test_frand();
                if (kind == 0)
                    s[i] = r * 1e3f;
                else if (kind == 1) /* heavy ties */
                    s[i] = (float)(int)(r * 4) * 0.5f;
                else /* ties, signed zeros, infinities, NaN */
                    s[i] = r < -0.9f ? NAN : r < -0.8f ? -0.0f : r < -0.7f ? 0.0f
                         : r < -0.6f ? INFINITY : r < -0.5f ? -INFINITY : (float)(int)(r * 3);
            }
            int64_t ks[] = {0, 1, n / 10, n * 3 / 10, n - 1, n};
            float *ds = dev(s, (size_t)n * sizeof *s);
            void *dm;
            CHECK_OK(gpu->ops->alloc(gpu, (size_t)n, &dm));
            uint8_t *want = malloc((size_t)n), *got = malloc((size_t)n);
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                CHECK_OK(cpu->ops->top_k_mask(cpu, want, s, n, ks[ki]));
                CHECK_OK(gpu->ops->top_k_mask(gpu, dm, ds, n, ks[ki]));
                CHECK_OK(gpu->ops->download(gpu, got, dm, (size_t)n));
                int64_t kept = 0, differ = 0;
                for (int64_t i = 0; i < n; i++)
                    kept += want[i], differ += want[i] != got[i];
                if (differ || kept != (ks[ki] < n ? ks[ki] : n))
                    fail_msg("top-k n=%lld k=%lld kind %d: %lld of %lld differ, cpu kept %lld", (long long)n,
                             (long long)ks[ki], kind, (long long)differ, (long long)n, (long long)kept);
            }
            free(s), free(want), free(got);
            gpu->ops->free(gpu, ds), gpu->ops->free(gpu, dm);
        }
    }
}

/* Top-k in many rows at once, one block a row: the same masks bit for bit for
 * rows of different candidate lengths and budgets (none, one, all, beyond),
 * ties and special values included, short rows and rows of many rounds. */
static void test_top_k_rows(void **state)
{
    const int32_t widths[] = {1, 37, 256, 1000, 40000};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        const int32_t n = widths[wi], rows = 40;
        size_t cells = (size_t)rows * n;
        float *s = malloc(cells * sizeof *s);
        int32_t length[40], k[40];
        for (int32_t r = 0; r < rows; r++) {
            for (int32_t t = 0; t < n; t++) {
                float x = test_frand();
                float *v = s + (size_t)r * n + t;
                if (r % 3 == 0)
                    *v = x * 1e3f;
                else if (r % 3 == 1) /* heavy ties */
                    *v = (float)(int)(x * 4) * 0.5f;
                else /* ties, signed zeros, infinities, NaN */
                    *v = x < -0.9f ? NAN : x < -0.8f ? -0.0f : x < -0.7f ? 0.0f
                       : x < -0.6f ? INFINITY : x < -0.5f ? -INFINITY : (float)(int)(x * 3);
            }
            length[r] = r % 4 == 0 ? n : (int32_t)((test_frand() * 0.5f + 0.5f) * n);
            const int32_t ks[] = {0, 1, length[r] / 10, length[r] * 3 / 10, length[r] - 1, length[r], length[r] + 5};
            k[r] = ks[r % 7];
        }
        uint8_t *want = malloc(cells), *got = malloc(cells);
        float *ds = dev(s, cells * sizeof *s);
        void *dm;
        CHECK_OK(gpu->ops->alloc(gpu, cells, &dm));
        CHECK_OK(cpu->ops->top_k_rows(cpu, want, s, rows, n, length, k));
        CHECK_OK(gpu->ops->top_k_rows(gpu, dm, ds, rows, n, length, k));
        CHECK_OK(gpu->ops->download(gpu, got, dm, cells));
        for (int32_t r = 0; r < rows; r++) {
            int32_t kept = 0, differ = 0;
            for (int32_t t = 0; t < n; t++)
                kept += want[(size_t)r * n + t], differ += want[(size_t)r * n + t] != got[(size_t)r * n + t];
            int32_t expect = k[r] < 0 ? 0 : k[r] < length[r] ? k[r] : length[r];
            if (differ || kept != expect)
                fail_msg("top-k rows n=%d row %d (length %d, k %d): %d differ, cpu kept %d", n, r, length[r],
                         k[r], differ, kept);
        }
        free(s), free(want), free(got);
        gpu->ops->free(gpu, ds), gpu->ops->free(gpu, dm);
    }
}

/* SnapKV's pooling from strided rows and ChunkKV's chunk sums: bit for bit. */
static void test_window_ops(void **state)
{
    const int32_t rows = 90, n = 3001, stride = 3200, kernels[] = {1, 2, 7, 31};
    float *in = host_random((size_t)rows * stride, 1.0f), *want = malloc((size_t)rows * n * sizeof(float));
    float *din = dev(in, (size_t)rows * stride * sizeof(float)), *dout;
    CHECK_OK(gpu->ops->alloc(gpu, (size_t)rows * n * sizeof(float), (void **)&dout));
    for (size_t ki = 0; ki < sizeof kernels / sizeof kernels[0]; ki++) {
        CHECK_OK(cpu->ops->max_pool(cpu, want, in + 5, rows, n, stride, kernels[ki]));
        CHECK_OK(gpu->ops->max_pool(gpu, dout, din + 5, rows, n, stride, kernels[ki]));
        float *got = back(dout, (size_t)rows * n);
        if (memcmp(want, got, (size_t)rows * n * sizeof(float)) != 0)
            fail_msg("max-pool kernel %d differs from the CPU", kernels[ki]);
        free(got);
    }
    const int32_t chunks[] = {1, 7, 10, 64, 5000};
    for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
        int32_t n_chunks = (n + chunks[ci] - 1) / chunks[ci];
        CHECK_OK(cpu->ops->chunk_sums(cpu, want, in, 8, n, chunks[ci]));
        CHECK_OK(gpu->ops->chunk_sums(gpu, dout, din, 8, n, chunks[ci]));
        float *got = back(dout, (size_t)n_chunks);
        if (memcmp(want, got, (size_t)n_chunks * sizeof(float)) != 0)
            fail_msg("chunk sums of %d differ from the CPU", chunks[ci]);
        free(got);
    }
    free(in), free(want);
    gpu->ops->free(gpu, din), gpu->ops->free(gpu, dout);
}

/* Key norms of strided heads: bit for bit (f64 sums in the same order). */
static void test_key_norms(void **state)
{
    const int32_t rows = 8, n = 1500, hd = 128, cap = 1700;
    const size_t floats = (size_t)rows * cap * hd;
    float *keys = host_random(floats, 3.0f), *want = malloc((size_t)rows * n * sizeof(float));
    float *dkeys = dev(keys, floats * sizeof(float)), *dout;
    CHECK_OK(gpu->ops->alloc(gpu, (size_t)rows * n * sizeof(float), (void **)&dout));
    CHECK_OK(cpu->ops->key_norms(cpu, want, keys + 37 * hd, rows, n, (int64_t)cap * hd, hd));
    CHECK_OK(gpu->ops->key_norms(gpu, dout, dkeys + 37 * hd, rows, n, (int64_t)cap * hd, hd));
    float *got = back(dout, (size_t)rows * n);
    if (memcmp(want, got, (size_t)rows * n * sizeof(float)) != 0)
        fail_msg("key norms differ from the CPU");
    free(keys), free(want), free(got);
    gpu->ops->free(gpu, dkeys), gpu->ops->free(gpu, dout);
}

/* Kept rows gathered out of a head's block, as compile reads them: exact. */
static void test_gather_rows(void **state)
{
    const int32_t rows = 3000, width = 128, count = 911;
    float *src = host_random((size_t)rows * width, 1.0f), *want = malloc((size_t)count * width * sizeof(float));
    int32_t *idx = malloc(count * sizeof *idx);
    for (int32_t i = 0; i < count; i++)
        idx[i] = i * 3 + (i % 2); /* increasing, uneven gaps */
    float *dsrc = dev(src, (size_t)rows * width * sizeof(float)), *dout;
    int32_t *didx = dev(idx, count * sizeof *idx);
    CHECK_OK(gpu->ops->alloc(gpu, (size_t)count * width * sizeof(float), (void **)&dout));
    CHECK_OK(cpu->ops->gather_rows(cpu, want, src, idx, count, width));
    CHECK_OK(gpu->ops->gather_rows(gpu, dout, dsrc, didx, count, width));
    float *got = back(dout, (size_t)count * width);
    assert_memory_equal(want, got, (size_t)count * width * sizeof(float));
    free(src), free(want), free(idx), free(got);
    gpu->ops->free(gpu, dsrc), gpu->ops->free(gpu, didx), gpu->ops->free(gpu, dout);
}

/* The compiler's selection on the GPU picks what the CPU picks in every case,
 * on random scores and on scores full of ties. */
static void test_select_on_gpu(void **state)
{
    const int32_t L = 30, H = 3, n = 5000;
    float *scores = host_random((size_t)L * H * n, 1.0f), *head_scores = host_random((size_t)L * H, 1.0f);
    test_select_same_on(cpu, gpu, scores, head_scores, L, H, n);
    for (size_t i = 0; i < (size_t)L * H * n; i++)
        scores[i] = floorf(scores[i] * 24) / 64;
    test_select_same_on(cpu, gpu, scores, head_scores, L, H, n);
    free(scores), free(head_scores);
}

/* One stored head laid out in a staging buffer at `at` (positions, payload,
 * scales, 8-byte aligned as the runtime lays them): its job, and the end. */
static size_t stage_head(uint8_t *staging, size_t at, float *dst, const kvz_quant_shape *q, int is_keys,
                         const uint8_t *payload, const uint16_t *scales, const int32_t *pos, kvz_kv_load_job *job)
{
    const size_t payload_bytes = kvz_quant_payload_bytes(q), scale_bytes = kvz_quant_scale_pairs(q, is_keys) * 4;
    *job = (kvz_kv_load_job){.dst = dst, .shape = *q, .is_keys = is_keys, .positions = at};
    at += is_keys ? ((size_t)q->n * 4 + 7) / 8 * 8 : 0;
    job->payload = at;
    at += (payload_bytes + 7) / 8 * 8;
    job->scales = at;
    if (staging) {
        if (is_keys)
            memcpy(staging + job->positions, pos, (size_t)q->n * 4);
        memcpy(staging + job->payload, payload, payload_bytes);
        memcpy(staging + job->scales, scales, scale_bytes);
    }
    return at + (scale_bytes + 7) / 8 * 8;
}

/* Stored heads into cache rows: every bit width, keys (RoPE, both modes, a
 * partial rotary dimension) and values (bit for bit), against the CPU twin. Four heads: the
 * first two each in its own load, the last two in one, so both staging
 * buffers are handed out, refilled and reused, and one copy carries two. */
static void test_kv_load(void **state)
{
    const uint32_t bits[] = {16, 8, 4, 2};
    const kvz_rope_mode modes[] = {KVZ_ROPE_NORMAL, KVZ_ROPE_NEOX, KVZ_ROPE_NORMAL};
    for (size_t bi = 0; bi < 4; bi++)
        for (int m = 0; m < 3; m++) /* 2: normal, with frequency factors */
            for (int is_keys = 0; is_keys < 2; is_keys++) {
                const uint32_t d = m == 1 ? 128 : 64, n = 300 + 97 * (uint32_t)bi;
                kvz_rope_params rp = {.head_dim = (int32_t)d, .rope_dim = m == 1 ? 96 : 64, .freq_base = 10000.0f,
                                      .mode = modes[m]};
                if (m == 2)
                    add_rope_factors(&rp);
                kvz_quant_shape q = {.n = n, .n16 = 4, .d = d, .bits = bits[bi], .group = is_keys ? 128 : 32};
                float *x = host_random((size_t)n * d, 3.0f), *want = malloc((size_t)n * d * 4);
                uint8_t *payload = malloc(kvz_quant_payload_bytes(&q));
                uint16_t *scales = malloc(kvz_quant_scale_pairs(&q, is_keys) * 4 + 4);
                int32_t *pos = malloc(n * 4);
                for (uint32_t t = 0; t < n; t++)
                    pos[t] = 31 + 57 * (int32_t)t; /* out to ~28K */
                CHECK_OK(kvz_quantize(x, &q, is_keys, payload, scales));
                kvz_kv_load_job job[2];
                const size_t one = stage_head(NULL, 0, NULL, &q, is_keys, NULL, NULL, NULL, job);
                uint8_t *cpu_staging, *staging;
                CHECK_OK(cpu->ops->kv_staging(cpu, one, (void **)&cpu_staging));
                stage_head(cpu_staging, 0, want, &q, is_keys, payload, scales, pos, job);
                CHECK_OK(cpu->ops->kv_load(cpu, cpu_staging, one, job, 1, &rp));
                float *dst;
                CHECK_OK(gpu->ops->alloc(gpu, (size_t)4 * n * d * 4, (void **)&dst));
                for (int load = 0; load < 3; load++) {
                    const int heads = load < 2 ? 1 : 2;
                    CHECK_OK(gpu->ops->kv_staging(gpu, heads * one, (void **)&staging));
                    for (int i = 0; i < heads; i++)
                        stage_head(staging, i * one, dst + (size_t)(load + i) * n * d, &q, is_keys, payload,
                                   scales, pos, &job[i]);
                    CHECK_OK(gpu->ops->kv_load(gpu, staging, heads * one, job, heads, &rp));
                }
                CHECK_OK(gpu->ops->synchronize(gpu));
                float *got = back(dst, (size_t)4 * n * d);
                char what[96];
                for (int rep = 0; rep < 4; rep++) {
                    const char *mode[] = {"normal", "neox", "normal with factors"};
                    snprintf(what, sizeof what, "kv_load %s %u-bit %s #%d", is_keys ? "keys" : "values", bits[bi],
                             mode[m], rep);
                    if (is_keys) /* RoPE's angles: the device's double sincos may differ in the last bit */
                        expect_close(what, want, got + (size_t)rep * n * d, (size_t)n * d, 1e-6);
                    else if (memcmp(want, got + (size_t)rep * n * d, (size_t)n * d * sizeof(float)) != 0)
                        fail_msg("%s: not the CPU's values bit for bit", what); /* each rounded as the host's */
                }
                /* a job reaching past the staged bytes is refused on both sides */
                job[0].scales += 8;
                assert_int_equal(cpu->ops->kv_load(cpu, cpu_staging, one, job, 1, &rp), KVZ_ERR_ARG);
                CHECK_OK(gpu->ops->kv_staging(gpu, one, (void **)&staging));
                assert_int_equal(gpu->ops->kv_load(gpu, staging, one, job, 1, &rp), KVZ_ERR_ARG);
                free(got), free(x), free(want), free(payload), free(scales), free(pos);
                gpu->ops->free(gpu, dst);
            }
}

/* A KV head quantized on the GPU gives the CPU's bytes exactly: every bit
 * width, keys (a last group shorter than the others) and values, f16 rows or
 * none, and data with ties on the rounding boundary, values beyond f16's range,
 * infinities and NaN. The GPU's payload and pairs come back, as the compiler
 * takes them, into pinned host buffers (host_alloc) that hold garbage before
 * the call, and are read after synchronize. */
static void test_kv_quantize(void **state)
{
    const uint32_t bits[] = {16, 8, 4, 2};
    for (size_t bi = 0; bi < 4; bi++)
        for (int is_keys = 0; is_keys < 2; is_keys++)
            for (int data = 0; data < 3; data++) {
                const uint32_t d = data == 1 ? 128 : 64, n = 301 + 97 * (uint32_t)bi, n16 = data == 2 ? 0 : 4;
                kvz_quant_shape q = {.n = n, .n16 = n16, .d = d, .bits = bits[bi], .group = is_keys ? 128 : 32};
                float *x = host_random((size_t)n * d, 3.0f);
                if (data == 1) /* quarter steps: many codes fall exactly half way */
                    for (size_t i = 0; i < (size_t)n * d; i++)
                        x[i] = floorf(x[i] * 4) / 4;
                if (data == 2) { /* the edges of f16 and of IEEE */
                    const float odd[] = {70000.0f, -70000.0f, INFINITY, -INFINITY, NAN, 65504.0f, 1e-8f, -0.0f};
                    for (size_t i = 0; i < (size_t)n * d; i += 37)
                        x[i] = odd[i / 37 % 8];
                }
                const size_t payload_bytes = kvz_quant_payload_bytes(&q), pairs = kvz_quant_scale_pairs(&q, is_keys);
                uint8_t *want = malloc(payload_bytes), *got;
                uint16_t *want_scales = malloc(pairs * 4 + 4), *got_scales;
                CHECK_OK(gpu->ops->host_alloc(gpu, payload_bytes, (void **)&got));
                CHECK_OK(gpu->ops->host_alloc(gpu, pairs * 4 + 4, (void **)&got_scales));
                memset(got, 0x5a, payload_bytes);
                memset(got_scales, 0x5a, pairs * 4 + 4);
                CHECK_OK(kvz_quantize(x, &q, is_keys, want, want_scales));
                float *dx = dev(x, (size_t)n * d * 4);
                CHECK_OK(gpu->ops->kv_quantize(gpu, dx, &q, is_keys, got, got_scales));
                CHECK_OK(gpu->ops->synchronize(gpu));
                size_t bad = 0, bad_pairs = 0;
                for (size_t i = 0; i < payload_bytes; i++)
                    bad += want[i] != got[i];
                for (size_t i = 0; i < pairs * 2; i++)
                    bad_pairs += want_scales[i] != got_scales[i];
                printf("kv_quantize %-6s %2u-bit %s: %zu payload bytes, %zu pairs, %zu and %zu differ\n",
                       is_keys ? "keys" : "values", bits[bi], data == 0 ? "random" : data == 1 ? "ties  " : "edges ",
                       payload_bytes, pairs, bad, bad_pairs);
                assert_int_equal(bad, 0);
                assert_int_equal(bad_pairs, 0);
                gpu->ops->free(gpu, dx);
                gpu->ops->host_free(gpu, got), gpu->ops->host_free(gpu, got_scales);
                free(x), free(want), free(want_scales);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_every_type),
        cmocka_unit_test(test_norm_matmul_many),
        cmocka_unit_test(test_swiglu_matmul),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_ragged),
        cmocka_unit_test(test_attention_misaligned),
        cmocka_unit_test(test_attention_beyond_half_range),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_attention_scores),
        cmocka_unit_test(test_top_k_mask),
        cmocka_unit_test(test_top_k_rows),
        cmocka_unit_test(test_window_ops),
        cmocka_unit_test(test_key_norms),
        cmocka_unit_test(test_gather_rows),
        cmocka_unit_test(test_select_on_gpu),
        cmocka_unit_test(test_kv_load),
        cmocka_unit_test(test_kv_quantize),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, setup, teardown);
}
