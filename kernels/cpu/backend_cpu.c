/*
 * backend_cpu.c — the CPU backend: host memory, OpenMP threads, OpenBLAS.
 */
#include "common/cpu_quota.h"
#include "common/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"
#include "kernels/kv_quant.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cpu_impl {
    kvz_weight_policy weights;
    float *scratch;
    size_t scratch_floats;
    void *staging; /* kv_staging: loads run before they return, so one buffer */
    size_t staging_bytes;
    kvz_cpu_rope_table rope; /* RoPE's angles at the positions seen so far */
} cpu_impl;

static int cpu_alloc(kvz_backend *b, size_t bytes, void **ptr)
{
    /* 64-byte alignment: whole cache lines for every row block */
    *ptr = NULL;
    if (posix_memalign(ptr, 64, bytes ? bytes : 64) != 0)
        return kvz_errorf(KVZ_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
    return KVZ_OK;
}

static void cpu_free(kvz_backend *b, void *ptr) { free(ptr); }

static int cpu_copy(kvz_backend *b, void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(dst, src, bytes);
    return KVZ_OK;
}

static int cpu_memset_zero(kvz_backend *b, void *dst, size_t bytes)
{
    memset(dst, 0, bytes);
    return KVZ_OK;
}

static int cpu_synchronize(kvz_backend *b) { return KVZ_OK; }

static int ensure_scratch(kvz_backend *b, size_t floats)
{
    cpu_impl *impl = b->impl;
    if (floats <= impl->scratch_floats)
        return KVZ_OK;
    float *p = realloc(impl->scratch, floats * sizeof(float));
    if (!p)
        return kvz_errorf(KVZ_ERR_NOMEM, "cpu: cannot allocate %zu bytes of scratch",
                          floats * sizeof(float));
    impl->scratch = p;
    impl->scratch_floats = floats;
    return KVZ_OK;
}

static int cpu_weight_load(kvz_backend *b, kvz_weight *w, uint32_t type, const void *src,
                           int64_t rows, int64_t cols)
{
    cpu_impl *impl = b->impl;
    size_t row_bytes;
    KVZ_TRY(kvz_weight_init(w, "cpu", type, src, rows, cols, &row_bytes));
    if (type == KVZ_GGML_F32 || impl->weights == KVZ_WEIGHTS_NATIVE) {
        w->type = type;
        w->data = (void *)src;
        return KVZ_OK;
    }
    float *f = NULL;
    KVZ_TRY(cpu_alloc(b, (size_t)rows * (size_t)cols * sizeof(float), (void **)&f));
#pragma omp parallel for num_threads(b->n_threads)
    for (int64_t r = 0; r < rows; r++)
        kvz_dequantize_row(type, (const uint8_t *)src + (size_t)r * row_bytes, f + r * cols, cols);
    w->type = KVZ_GGML_F32;
    w->data = f;
    w->owned = 1;
    return KVZ_OK;
}

static void cpu_weight_free(kvz_backend *b, kvz_weight *w)
{
    if (w->owned)
        free(w->data);
    memset(w, 0, sizeof *w);
}

/* The most products cpu_matmul_many takes at once (norm_matmul_many's
 * largest count is 3: q, k and v); norm_matmul_many hands larger counts
 * over in parts. */
#define MATMUL_MANY_MAX 4

/* Whether a product of n rows of x by w streams the file's compact blocks
 * (decode) rather than the f32 copy; *view is then w over those blocks. */
static int native_decode_view(const kvz_weight *w, int32_t n, kvz_weight *view)
{
    if (n > KVZ_CPU_MATVEC_MAX_ROWS || w->native_type == KVZ_GGML_F32 ||
        (w->type == KVZ_GGML_F32 && !kvz_cpu_matvec_has_fast_path(w->native_type)))
        return 0;
    *view = *w;
    view->data = (void *)w->native;
    view->type = w->native_type;
    return 1;
}

/* The native-decode products among `count` (at most MATMUL_MANY_MAX) in
 * one parallel step, then the others one by one. */
static int cpu_matmul_many(kvz_backend *b, int32_t count, float *const *out, const float *x,
                           const kvz_weight *const *w, int32_t n, int accumulate)
{
    cpu_impl *impl = b->impl;
    if (count > MATMUL_MANY_MAX)
        return kvz_errorf(KVZ_ERR_INTERNAL, "cpu_matmul_many: %d products at once, at most %d", (int)count,
                          MATMUL_MANY_MAX);
    kvz_weight views[MATMUL_MANY_MAX];
    const kvz_weight *native[MATMUL_MANY_MAX];
    float *native_out[MATMUL_MANY_MAX];
    int32_t n_native = 0;
    for (int32_t i = 0; i < count; i++)
        if (native_decode_view(w[i], n, &views[n_native])) {
            native[n_native] = &views[n_native];
            native_out[n_native++] = out[i];
        } else {
            /* scratch is sized here, not at weight load: a forked backend (a
             * session's) loads no weights */
            KVZ_TRY(ensure_scratch(b, kvz_cpu_matmul_scratch_floats(w[i], b->n_threads)));
            kvz_cpu_matmul(out[i], x, w[i], n, accumulate, impl->scratch, b->n_threads);
        }
    if (n_native > 0) {
        KVZ_TRY(ensure_scratch(b, kvz_cpu_matvec_scratch_floats(native[0], n, b->n_threads)));
        kvz_cpu_matvec(n_native, native_out, x, native, n, accumulate, impl->scratch, b->n_threads);
    }
    return KVZ_OK;
}

static int cpu_matmul(kvz_backend *b, float *out, const float *x, const kvz_weight *w, int32_t n,
                      int accumulate)
{
    return cpu_matmul_many(b, 1, &out, x, &w, n, accumulate);
}

static int cpu_norm_matmul_many(kvz_backend *b, int32_t count, float *const *out, float *h, const float *x,
                                const float *norm, float eps, const kvz_weight *const *w, int32_t n)
{
    if (count <= 0)
        return KVZ_OK;
    KVZ_TRY(kvz_weights_same_cols(w, count));
    kvz_cpu_rmsnorm(h, x, norm, n, (int32_t)w[0]->cols, eps, b->n_threads);
    for (int32_t first = 0; first < count; first += MATMUL_MANY_MAX) {
        int32_t part = count - first < MATMUL_MANY_MAX ? count - first : MATMUL_MANY_MAX;
        KVZ_TRY(cpu_matmul_many(b, part, out + first, h, w + first, n, 0));
    }
    return KVZ_OK;
}

static int cpu_swiglu_matmul(kvz_backend *b, float *out, float *gate, const float *up, const kvz_weight *w,
                             int32_t n, int accumulate)
{
    kvz_cpu_swiglu(gate, gate, up, (int64_t)n * w->cols, b->n_threads);
    return cpu_matmul(b, out, gate, w, n, accumulate);
}

static int cpu_embed(kvz_backend *b, float *out, const kvz_weight *table, const int32_t *tokens,
                     int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= table->rows)
            return kvz_errorf(KVZ_ERR_ARG, "token id %d is outside the vocabulary (%lld)",
                              tokens[i], (long long)table->rows);
    kvz_cpu_embed(out, table, tokens, n, b->n_threads);
    return KVZ_OK;
}

static int cpu_rope(kvz_backend *b, float *x, const int32_t *positions, int32_t n, int32_t n_heads,
                    const kvz_rope_params *p, int inverse)
{
    cpu_impl *impl = b->impl;
    KVZ_TRY(kvz_rope_params_check(p));
    kvz_cpu_rope_table_cover(&impl->rope, p, positions, n, b->n_threads);
    kvz_cpu_rope(x, positions, n, n_heads, p, inverse, &impl->rope, b->n_threads);
    return KVZ_OK;
}

static int cpu_gather_rows(kvz_backend *b, float *dst, const float *src, const int32_t *idx, int32_t count,
                           int32_t width)
{
    kvz_cpu_gather_rows(dst, src, idx, count, width, b->n_threads);
    return KVZ_OK;
}

/* rope_kv_append's work once its RoPE parameters are checked and the table
 * covers the positions. */
static void rope_kv_append_rows(cpu_impl *impl, float *k_cache, float *v_cache, float *q, float *k, float *v,
                                const kvz_qkv_bias *bias, const int32_t *positions, const kvz_attention_params *p,
                                const kvz_rope_params *rope, int n_threads)
{
    if (bias) {
        int32_t q_cols = p->n_heads * p->head_dim, kv_cols = p->n_kv_heads * p->head_dim;
        kvz_cpu_add_bias(q, bias->q, p->n, q_cols, n_threads);
        kvz_cpu_add_bias(k, bias->k, p->n, kv_cols, n_threads);
        kvz_cpu_add_bias(v, bias->v, p->n, kv_cols, n_threads);
    }
    kvz_cpu_rope(q, positions, p->n, p->n_heads, rope, 0, &impl->rope, n_threads);
    kvz_cpu_rope(k, positions, p->n, p->n_kv_heads, rope, 0, &impl->rope, n_threads);
    kvz_cpu_kv_append(k_cache, v_cache, k, v, p);
}

static int cpu_rope_kv_append(kvz_backend *b, float *k_cache, float *v_cache, float *q, float *k, float *v,
                              const kvz_qkv_bias *bias, const int32_t *positions, const kvz_attention_params *p,
                              const kvz_rope_params *rope)
{
    cpu_impl *impl = b->impl;
    KVZ_TRY(kvz_rope_params_check(rope)); /* before q, k and v change, as on the GPU */
    kvz_cpu_rope_table_cover(&impl->rope, rope, positions, p->n, b->n_threads);
    rope_kv_append_rows(impl, k_cache, v_cache, q, k, v, bias, positions, p, rope, b->n_threads);
    return KVZ_OK;
}

static int cpu_attention(kvz_backend *b, float *out, const float *q, const float *k_cache,
                         const float *v_cache, const kvz_attention_params *p,
                         const kvz_score_params *score, float *scores)
{
    cpu_impl *impl = b->impl;
    KVZ_TRY(ensure_scratch(b, kvz_cpu_attention_scratch_floats(p, score, b->n_threads)));
    kvz_cpu_attention(out, q, k_cache, v_cache, p, score, scores, impl->scratch, b->n_threads);
    return KVZ_OK;
}

/* Where the layer op's scratch lies: the attention's, shared, then each
 * thread's own part, on whole 64-byte lines (no line written by two
 * threads): its normed rows (n, widest cols), its SwiGLU (n, ff) and its
 * matvec scratch. */
typedef struct layer_scratch {
    float *attention, *threads;
    size_t per_thread, act; /* act: where a thread's SwiGLU starts in its part */
} layer_scratch;

/* The floats the layer op's scratch takes; with `base`, *at placed in it. */
static size_t layer_scratch_at(const kvz_layer_step *s, const kvz_weight *const *w, int n_threads, float *base,
                               layer_scratch *at)
{
    int64_t widest = 0;
    for (int i = 0; i < 7; i++)
        widest = w[i]->cols > widest ? w[i]->cols : widest;
    const size_t attention = kvz_cpu_attention_scratch_floats(s->attn, NULL, n_threads);
    at->act = (size_t)s->n * (size_t)widest;
    at->per_thread = at->act + (size_t)s->n * (size_t)s->w_down->cols + kvz_cpu_matvec_thread_floats(widest, s->n);
    at->per_thread = (at->per_thread + 15) / 16 * 16;
    if (base) {
        at->attention = base;
        at->threads = base + attention;
        at->threads += (64 - (uintptr_t)at->threads % 64) % 64 / sizeof(float); /* it holds whole floats */
    }
    return attention + 16 /* to align the threads' parts */ + (size_t)n_threads * at->per_thread;
}

/* One thread's part of a decode layer, inside the region every thread of
 * which runs it: the steps' products and attention shared out (each waits
 * for all threads at its end), the norms and the SwiGLU each thread's own
 * (a few thousand floats: less than a wait), the RoPE and cache append on
 * one thread. Each step computes what its op would, the same way. */
static void layer_team(cpu_impl *impl, const kvz_layer_step *s, kvz_weight *const views, layer_scratch at,
                       int n_threads)
{
    const int32_t n = s->n, ff = (int32_t)s->w_down->cols;
    float *h = at.threads + (size_t)omp_get_thread_num() * at.per_thread, *act = h + at.act;
    float *mv = act + (size_t)n * ff;
    const kvz_weight *qkv_w[3] = {&views[0], &views[1], &views[2]}, *gate_up_w[2] = {&views[4], &views[5]};
    const kvz_weight *wo = &views[3], *down = &views[6];
    float *const qkv[3] = {s->q, s->k, s->v}, *const gate_up[2] = {s->gate, s->up};
    float *x = s->x;

    kvz_cpu_rmsnorm(h, x, s->attn_norm, n, (int32_t)s->wq->cols, s->eps, 1);
    kvz_cpu_matvec_team(3, qkv, h, qkv_w, n, 0, mv);
#pragma omp barrier
#pragma omp single
    rope_kv_append_rows(impl, s->k_cache, s->v_cache, s->q, s->k, s->v, s->bias, s->positions, s->attn, s->rope,
                        1);
    kvz_cpu_attention_decode_team(s->att, s->q, s->k_cache, s->v_cache, s->attn, at.attention, n_threads);
#pragma omp barrier
    kvz_cpu_matvec_team(1, &x, s->att, &wo, n, 1, mv);
#pragma omp barrier
    kvz_cpu_rmsnorm(h, x, s->ffn_norm, n, (int32_t)s->w_gate->cols, s->eps, 1);
    kvz_cpu_matvec_team(2, gate_up, h, gate_up_w, n, 0, mv);
#pragma omp barrier
    kvz_cpu_swiglu(act, s->gate, s->up, (int64_t)n * ff, 1);
    kvz_cpu_matvec_team(1, &x, act, &down, n, 1, mv); /* the region's end waits for it */
}

/* One region for a decode step's layer where every product reads the
 * file's blocks (matvec) and attention takes its decode path; otherwise
 * the ops one by one. */
static int cpu_layer(kvz_backend *b, const kvz_layer_step *s, int *done)
{
    cpu_impl *impl = b->impl;
    const kvz_weight *w[7] = {s->wq, s->wk, s->wv, s->wo, s->w_gate, s->w_up, s->w_down};
    kvz_weight views[7];
    *done = 0;
    for (int i = 0; i < 7; i++)
        if (!native_decode_view(w[i], s->n, &views[i]))
            return KVZ_OK;
    if (!kvz_cpu_attention_decodes(s->attn))
        return KVZ_OK;
    KVZ_TRY(kvz_weights_same_cols(w, 3));
    KVZ_TRY(kvz_weights_same_cols(w + 4, 2));
    KVZ_TRY(kvz_rope_params_check(s->rope));
    layer_scratch at;
    KVZ_TRY(ensure_scratch(b, layer_scratch_at(s, w, b->n_threads, NULL, &at)));
    layer_scratch_at(s, w, b->n_threads, impl->scratch, &at);
    kvz_cpu_rope_table_cover(&impl->rope, s->rope, s->positions, s->n, b->n_threads);
#pragma omp parallel num_threads(b->n_threads)
    layer_team(impl, s, views, at, b->n_threads);
    *done = 1;
    return KVZ_OK;
}

static int cpu_attention_scores(kvz_backend *b, float *scores, const float *q, const float *k_cache,
                                const kvz_score_params *p)
{
    cpu_impl *impl = b->impl;
    KVZ_TRY(ensure_scratch(b, kvz_cpu_scores_scratch_floats(p, b->n_threads)));
    kvz_cpu_attention_scores(scores, q, k_cache, p, impl->scratch, b->n_threads);
    return KVZ_OK;
}

static int cpu_top_k_mask(kvz_backend *b, uint8_t *mask, const float *scores, int64_t count, int64_t k)
{
    cpu_impl *impl = b->impl;
    if (count <= 0)
        return KVZ_OK;
    KVZ_TRY(ensure_scratch(b, (size_t)count)); /* a float per key: the same size */
    memset(mask, 0, (size_t)count);
    kvz_cpu_top_k_mask(scores, NULL, (size_t)count, k > 0 ? (size_t)k : 0, mask, (uint32_t *)impl->scratch);
    return KVZ_OK;
}

static int cpu_top_k_rows(kvz_backend *b, uint8_t *mask, const float *scores, int32_t rows, int32_t n,
                          const int32_t *length, const int32_t *k)
{
    cpu_impl *impl = b->impl;
    if (rows <= 0 || n <= 0)
        return KVZ_OK;
    KVZ_TRY(ensure_scratch(b, (size_t)n)); /* a key per score of a row */
    kvz_cpu_top_k_rows(mask, scores, rows, n, length, k, (uint32_t *)impl->scratch);
    return KVZ_OK;
}

static int cpu_max_pool(kvz_backend *b, float *out, const float *in, int32_t rows, int32_t n, int64_t stride,
                        int32_t kernel)
{
    kvz_cpu_max_pool(out, in, rows, n, stride, kernel);
    return KVZ_OK;
}

static int cpu_chunk_sums(kvz_backend *b, float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk)
{
    kvz_cpu_chunk_sums(out, scores, rows, n, chunk);
    return KVZ_OK;
}

static int cpu_key_norms(kvz_backend *b, float *out, const float *keys, int32_t rows, int32_t n, int64_t stride,
                         int32_t head_dim)
{
    kvz_cpu_key_norms(out, keys, rows, n, stride, head_dim, b->n_threads);
    return KVZ_OK;
}

static int cpu_sample(kvz_backend *b, int32_t *token, const float *logits, int32_t n, const kvz_sample_params *p)
{
    if (p->temperature <= 0) {
        *token = kvz_cpu_argmax(logits, n);
        return KVZ_OK;
    }
    cpu_impl *impl = b->impl;
    KVZ_TRY(ensure_scratch(b, 2 * (size_t)n)); /* ids then probabilities: a float each */
    *token = kvz_cpu_sample(logits, n, p, (int32_t *)impl->scratch, impl->scratch + n);
    return KVZ_OK;
}

static int cpu_kv_staging(kvz_backend *b, size_t bytes, void **host)
{
    cpu_impl *impl = b->impl;
    if (bytes > impl->staging_bytes) {
        void *grown = realloc(impl->staging, bytes);
        if (!grown)
            return kvz_errorf(KVZ_ERR_NOMEM, "cpu: cannot allocate %zu bytes for the KV load staging buffer", bytes);
        impl->staging = grown, impl->staging_bytes = bytes;
    }
    *host = impl->staging;
    return KVZ_OK;
}

static int cpu_kv_load(kvz_backend *b, const void *staging, size_t bytes, const kvz_kv_load_job *jobs,
                       int32_t n_jobs, const kvz_rope_params *rope)
{
    cpu_impl *impl = b->impl;
    const uint8_t *base = staging;
    for (int32_t i = 0; i < n_jobs; i++)
        KVZ_TRY(kvz_kv_load_job_check(&jobs[i], bytes, rope));
    for (int32_t i = 0; i < n_jobs; i++) {
        const kvz_kv_load_job *j = &jobs[i];
        const int32_t *positions = j->is_keys ? (const int32_t *)(base + j->positions) : NULL;
        if (positions)
            kvz_cpu_rope_table_cover(&impl->rope, rope, positions, (int32_t)j->shape.n, b->n_threads);
        kvz_cpu_kv_load(j->dst, &j->shape, j->is_keys, base + j->payload, (const uint16_t *)(base + j->scales),
                        positions, rope, &impl->rope, b->n_threads);
    }
    return KVZ_OK;
}

static int cpu_kv_quantize(kvz_backend *b, const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload,
                           uint16_t *scales)
{
    return kvz_quantize(x, s, is_keys, payload, scales);
}

static void cpu_destroy(kvz_backend *b)
{
    cpu_impl *impl = b->impl;
    free(impl->scratch);
    free(impl->staging);
    kvz_cpu_rope_table_free(&impl->rope);
    free(impl);
    free(b);
}

static int cpu_fork(kvz_backend *b, kvz_backend **out);

static const kvz_backend_ops CPU_OPS = {
    .name = "cpu",
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .memset_zero = cpu_memset_zero,
    .synchronize = cpu_synchronize,
    .destroy = cpu_destroy,
    .fork = cpu_fork,
    .weight_load = cpu_weight_load,
    .weight_free = cpu_weight_free,
    .matmul = cpu_matmul,
    .norm_matmul_many = cpu_norm_matmul_many,
    .embed = cpu_embed,
    .rope = cpu_rope,
    .gather_rows = cpu_gather_rows,
    .swiglu_matmul = cpu_swiglu_matmul,
    .rope_kv_append = cpu_rope_kv_append,
    .layer = cpu_layer,
    .attention = cpu_attention,
    .attention_scores = cpu_attention_scores,
    .top_k_mask = cpu_top_k_mask,
    .top_k_rows = cpu_top_k_rows,
    .max_pool = cpu_max_pool,
    .chunk_sums = cpu_chunk_sums,
    .key_norms = cpu_key_norms,
    .kv_staging = cpu_kv_staging,
    .kv_load = cpu_kv_load,
    .kv_quantize = cpu_kv_quantize,
    .sample = cpu_sample,
};

/* f32 weights when they take at most a third of memory (and 16 GiB): the
 * physical memory, or the cgroup's limit where lower (a container's: sized
 * by the node's, an f32 copy of 4 bytes a weight could outgrow the limit the
 * file's blocks fit, and the kernel ends the process). */
static kvz_weight_policy resolve_policy(const kvz_backend_config *cfg)
{
    if (cfg->weights != KVZ_WEIGHTS_AUTO)
        return cfg->weights;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double mem = pages > 0 && page > 0 ? (double)pages * (double)page : 8e9;
    double cgroup = kvz_memory_limit();
    if (cgroup > 0 && cgroup < mem)
        mem = cgroup;
    double limit = mem / 3 < 16e9 ? mem / 3 : 16e9;
    return (double)cfg->weight_bytes_hint <= limit ? KVZ_WEIGHTS_F32 : KVZ_WEIGHTS_NATIVE;
}

static int cpu_start(kvz_backend **out, int n_threads, kvz_weight_policy weights)
{
    *out = NULL;
    kvz_backend *b = calloc(1, sizeof *b);
    cpu_impl *impl = calloc(1, sizeof *impl);
    if (!b || !impl) {
        free(b);
        free(impl);
        return kvz_errorf(KVZ_ERR_NOMEM, "cpu: out of memory");
    }
    b->ops = &CPU_OPS;
    b->impl = impl;
    b->n_threads = n_threads;
    impl->weights = weights;
    *out = b;
    return KVZ_OK;
}

int kvz_backend_cpu_create(kvz_backend **out, const kvz_backend_config *cfg)
{
    /* all parallelism is ours (OpenMP); BLAS calls run single-threaded inside it */
    openblas_set_num_threads(1);
    return cpu_start(out, kvz_backend_threads(cfg), resolve_policy(cfg));
}

static int cpu_fork(kvz_backend *b, kvz_backend **out)
{
    return cpu_start(out, b->n_threads, ((cpu_impl *)b->impl)->weights);
}
