/* bench_cache.c — decode over a full and a compressed loaded cache (bench_cache.h). */
#include "tools/bench_cache.h"

#include "common/error.h"
#include "common/splitmix.h"
#include "common/timer.h"
#include "model/context.h"

#include <math.h>
#include <stdlib.h>

void kvz_bench_head_rows(const kvz_hparams *hp, int32_t n, double ratio, int32_t *rows)
{
    const int32_t H = hp->n_kv_heads;
    for (int32_t h = 0; h < H; h++) {
        double weight = H > 1 ? 0.5 + (double)h / (H - 1) : 1.0;
        long r = ratio >= 1.0 ? n : lround(ratio * n * weight);
        rows[h] = (int32_t)(r < 1 ? 1 : r > n ? n : r);
    }
}

/* Backend buffers of one layer's ragged cache and one decode step's query. */
typedef struct attention_case {
    float *k, *v, *q, *out;
    int64_t *head_base;
    int32_t *head_rows;
    kvz_attention_params p;
} attention_case;

static void case_free(kvz_backend *b, attention_case *a)
{
    void *bufs[] = {a->k, a->v, a->q, a->out, a->head_base, a->head_rows};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i])
            b->ops->free(b, bufs[i]);
}

/* One block of random values, uniform in [-1, 1), copied again and again into
 * every buffer: made once, since the time of a step does not depend on the
 * values and a benchmark's caches (a model's worth of layers) can hold billions. */
enum { RANDOM_BLOCK = 1 << 20 };

static float *random_block_new(void)
{
    float *block = malloc((size_t)RANDOM_BLOCK * sizeof *block);
    uint64_t seed = 1;
    for (size_t i = 0; block && i < RANDOM_BLOCK; i++)
        block[i] = (float)((double)(kvz_splitmix64(&seed) >> 11) * 0x1p-52 - 1.0);
    return block;
}

static int upload_random(kvz_backend *b, float *dst, size_t count, const float *block)
{
    int rc = KVZ_OK;
    for (size_t at = 0; at < count && rc == KVZ_OK; at += RANDOM_BLOCK) {
        size_t len = count - at < RANDOM_BLOCK ? count - at : RANDOM_BLOCK;
        rc = b->ops->upload(b, dst + at, block, len * sizeof *block);
    }
    return rc;
}

/* Each head's block holds its cached rows and then the step's own row. */
static int case_init(kvz_backend *b, const kvz_hparams *hp, const int32_t *rows, const float *random,
                     attention_case *a, int64_t *total)
{
    const int32_t H = hp->n_kv_heads, d = hp->head_dim;
    int64_t *base = malloc((size_t)H * sizeof *base);
    if (!base)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int64_t sum = 0;
    int32_t max_rows = 0;
    for (int32_t h = 0; h < H; h++) {
        base[h] = sum;
        sum += rows[h] + 1;
        max_rows = rows[h] > max_rows ? rows[h] : max_rows;
    }
    *total = sum - H;
    size_t cache = (size_t)sum * d * sizeof(float), heads = (size_t)hp->n_heads * d * sizeof(float);
    int rc = b->ops->alloc(b, cache, (void **)&a->k);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, cache, (void **)&a->v);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, heads, (void **)&a->q);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, heads, (void **)&a->out);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, (size_t)H * sizeof *base, (void **)&a->head_base);
    if (rc == KVZ_OK)
        rc = b->ops->alloc(b, (size_t)H * sizeof *rows, (void **)&a->head_rows);
    if (rc == KVZ_OK)
        rc = b->ops->upload(b, a->head_base, base, (size_t)H * sizeof *base);
    if (rc == KVZ_OK)
        rc = b->ops->upload(b, a->head_rows, rows, (size_t)H * sizeof *rows);
    if (rc == KVZ_OK)
        rc = upload_random(b, a->k, (size_t)sum * d, random);
    if (rc == KVZ_OK)
        rc = upload_random(b, a->v, (size_t)sum * d, random);
    if (rc == KVZ_OK)
        rc = upload_random(b, a->q, (size_t)hp->n_heads * d, random);
    free(base);
    a->p = (kvz_attention_params){
        .n = 1,
        .n_heads = hp->n_heads,
        .n_kv_heads = H,
        .head_dim = d,
        .scale = 1.0f / sqrtf((float)d),
        .head_base = a->head_base,
        .head_rows = a->head_rows,
        .max_head_rows = max_rows,
        .total_head_rows = *total,
    };
    return rc;
}

/* A decode step reads each layer's cache once, so the attention is timed the
 * same way: over as many caches as the model has layers, one call each in
 * turn, where timing one layer's cache again and again would find it in the
 * CPU's (or GPU's L2) cache, left there by the call before. Where all the
 * layers' caches together fit in that cache (short or strongly compressed
 * ones), they still partly come from it. The figure is the mean per call,
 * best of `repeat` passes (each of BATCH calls or more). */
static int time_attention(kvz_backend *b, const kvz_hparams *hp, const int32_t *rows, int32_t repeat,
                          kvz_cache_timing *out)
{
    enum { BATCH = 20 };
    const int32_t L = hp->n_layers;
    const int32_t rounds = (BATCH + L - 1) / L;
    attention_case *a = calloc((size_t)L, sizeof *a);
    float *random = random_block_new();
    int rc = a && random ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++)
        rc = case_init(b, hp, rows, random, &a[l], &out->rows);
    free(random);
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++) /* warm-up: a pass, not timed */
        rc = b->ops->attention(b, a[l].out, a[l].q, a[l].k, a[l].v, &a[l].p, NULL, NULL);
    if (rc == KVZ_OK)
        rc = b->ops->synchronize(b);
    out->attention_us = INFINITY;
    for (int32_t r = 0; r < repeat && rc == KVZ_OK; r++) {
        double t0 = kvz_now_seconds();
        for (int32_t i = 0; i < rounds * L && rc == KVZ_OK; i++) {
            const attention_case *c = &a[i % L];
            rc = b->ops->attention(b, c->out, c->q, c->k, c->v, &c->p, NULL, NULL);
        }
        if (rc == KVZ_OK)
            rc = b->ops->synchronize(b);
        double us = (kvz_now_seconds() - t0) * 1e6 / (rounds * L);
        out->attention_us = us < out->attention_us ? us : out->attention_us;
    }
    for (int32_t l = 0; a && l < L; l++)
        case_free(b, &a[l]);
    free(a);
    return rc;
}

/* A loaded context of every layer shaped like `rows` (zeroed rows: the time
 * of a step does not depend on them), decoding after position n. */
static int time_decode(kvz_model *m, int32_t n, const int32_t *rows, int32_t decode, int32_t repeat,
                       kvz_cache_timing *out)
{
    const int32_t L = m->hp.n_layers, H = m->hp.n_kv_heads;
    kvz_backend *b = m->backend;
    int32_t *loaded = malloc((size_t)L * H * sizeof *loaded);
    kvz_context *c = NULL;
    int rc = loaded ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < L * H && rc == KVZ_OK; i++)
        loaded[i] = rows[i % H];
    if (rc == KVZ_OK)
        rc = kvz_context_new_ragged(&c, m, NULL, loaded, decode + 1, 1, n);
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++)
        for (int32_t h = 0; h < H && rc == KVZ_OK; h++) {
            float *k, *v;
            size_t bytes = (size_t)rows[h] * m->hp.head_dim * sizeof(float);
            rc = kvz_context_ragged_rows(c, l, h, 0, rows[h], &k, &v);
            if (rc == KVZ_OK)
                rc = b->ops->memset_zero(b, k, bytes);
            if (rc == KVZ_OK)
                rc = b->ops->memset_zero(b, v, bytes);
        }
    kvz_eval_opts opts = {.logits = KVZ_LOGITS_KEEP}; /* greedy on the backend, as kvz_generate does */
    double best = INFINITY;
    for (int32_t r = 0; r < repeat && rc == KVZ_OK; r++) {
        int32_t token = 1;
        kvz_context_truncate(c, 0);
        rc = kvz_context_eval(c, &token, 1, &opts, NULL); /* warm-up, not timed */
        if (rc == KVZ_OK)
            rc = kvz_context_finish(c);
        double t0 = kvz_now_seconds();
        for (int32_t i = 0; i < decode && rc == KVZ_OK; i++) {
            rc = kvz_context_sample(c, NULL, &token);
            if (rc == KVZ_OK)
                rc = kvz_context_eval(c, &token, 1, &opts, NULL);
        }
        if (rc == KVZ_OK)
            rc = kvz_context_finish(c);
        double s = kvz_now_seconds() - t0;
        best = s < best ? s : best;
    }
    out->decode_tok_s = decode > 0 && rc == KVZ_OK ? decode / best : 0;
    kvz_context_free(c);
    free(loaded);
    return rc;
}

int kvz_bench_cache(kvz_model *m, int32_t n, const int32_t *rows, int32_t decode, int32_t repeat,
                    kvz_cache_timing *out)
{
    out->decode_tok_s = 0;
    KVZ_TRY(time_attention(m->backend, &m->hp, rows, repeat, out));
    return decode > 0 ? time_decode(m, n, rows, decode, repeat, out) : KVZ_OK;
}
