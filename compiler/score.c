/* score.c — KVzip, window (SnapKV/ChunkKV) and key-norm scores. */
#include "compiler/score.h"
#include "common/error.h"
#include "model/prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KVZIP_FIRST "Repeat the previous context exactly."
#define KVZIP_NEXT "Repeat the part of the previous context exactly, starting with"

/* Device scores (n_layers, n_kv_heads, capacity) that the forward pass fills
 * inside attention (kvz_eval_opts.score). */
typedef struct score_hook {
    kvz_backend *b;
    float *dev;
    int32_t n_kv, capacity;
    kvz_score_params p; /* ranges and reduction; the rest comes per layer */
} score_hook;

static kvz_eval_opts scoring(score_hook *h)
{
    return (kvz_eval_opts){.score = &h->p, .scores = h->dev};
}

static int hook_begin(score_hook *h, kvz_context *c)
{
    kvz_model *m = kvz_context_model(c);
    memset(h, 0, sizeof *h);
    h->b = kvz_context_backend(c); /* the stream the forward pass that scores runs on */
    h->n_kv = m->hp.n_kv_heads;
    h->capacity = kvz_context_capacity(c);
    size_t bytes = (size_t)m->hp.n_layers * h->n_kv * h->capacity * sizeof(float);
    KVZ_TRY(h->b->ops->alloc(h->b, bytes, (void **)&h->dev));
    int rc = h->b->ops->memset_zero(h->b, h->dev, bytes);
    if (rc != KVZ_OK)
        h->b->ops->free(h->b, h->dev);
    return rc;
}

/* Bring the document rows [P, P+n) of every (layer, head) to the host (with
 * pool > 1 max-pooled on the backend first), then free. A backend with its
 * own memory packs them together first (a pool of 1 is a copy), so that one
 * download brings them all: a download waits for the device, and an 8B
 * model has 256 rows. */
static int hook_end(score_hook *h, int32_t L, int32_t P, int32_t n, int32_t pool, float *scores, float scale)
{
    int rc = KVZ_OK;
    const int32_t rows = L * h->n_kv;
    if (pool > 1 || !h->b->ops->host_memory) {
        float *pooled = NULL;
        rc = h->b->ops->alloc(h->b, (size_t)rows * n * sizeof(float), (void **)&pooled);
        if (rc == KVZ_OK)
            rc = h->b->ops->max_pool(h->b, pooled, h->dev + P, rows, n, h->capacity, pool > 1 ? pool : 1);
        if (rc == KVZ_OK)
            rc = h->b->ops->download(h->b, scores, pooled, (size_t)rows * n * sizeof(float));
        if (pooled)
            h->b->ops->free(h->b, pooled);
    } else {
        for (int32_t r = 0; r < rows && rc == KVZ_OK; r++)
            rc = h->b->ops->download(h->b, scores + (size_t)r * n, h->dev + (size_t)r * h->capacity + P,
                                     (size_t)n * sizeof(float));
    }
    h->b->ops->free(h->b, h->dev);
    h->dev = NULL;
    /* after pooling: a positive scale keeps every max (rounding is monotone) */
    if (rc == KVZ_OK && scale != 1.0f)
        for (size_t i = 0; i < (size_t)rows * n; i++)
            scores[i] *= scale;
    return rc;
}

static void hook_abort(score_hook *h)
{
    if (h->dev)
        h->b->ops->free(h->b, h->dev);
    h->dev = NULL;
}

int kvz_prefill_document(kvz_context *c, const int32_t *doc, int32_t n, int32_t window, int32_t pool,
                         float *scores, kvz_score_progress_fn progress, void *progress_ctx)
{
    kvz_model *m = kvz_context_model(c);
    int32_t P = kvz_context_len(c), w = window < n ? window : n;
    int32_t step = 512;
    for (int32_t done = 0; done < n - w;) {
        int32_t k = n - w - done < step ? n - w - done : step;
        KVZ_TRY(kvz_context_eval(c, doc + done, k, NULL, NULL));
        done += k;
        if (progress)
            progress(progress_ctx, done);
    }
    if (w == 0)
        return KVZ_OK;
    score_hook h;
    KVZ_TRY(hook_begin(&h, c));
    h.p.n_ranges = 1;
    h.p.range_begin[0] = 0;
    h.p.range_end[0] = P + n;
    h.p.reduce = KVZ_REDUCE_SUM;
    kvz_eval_opts opts = scoring(&h);
    int rc = kvz_context_eval(c, doc + n - w, w, &opts, NULL);
    if (rc != KVZ_OK) {
        hook_abort(&h);
        return rc;
    }
    if (progress)
        progress(progress_ctx, n);
    /* the group sum becomes a mean (SnapKV averages over the GQA group) */
    return hook_end(&h, m->hp.n_layers, P, n, pool, scores, (float)m->hp.n_kv_heads / (float)m->hp.n_heads);
}

int32_t kvz_kvzip_pass_tokens(const kvz_model *m, int32_t chunk)
{
    kvz_tokens t = {0};
    int32_t quoted[KVZ_KVZIP_OVERLAP] = {0};
    int32_t extra = kvz_prompt_question_quoting(m, KVZIP_NEXT, quoted, KVZ_KVZIP_OVERLAP, &t) == KVZ_OK
                        ? (int32_t)t.len
                        : 64;
    kvz_tokens_free(&t);
    return extra + chunk + 8;
}

int kvz_score_kvzip(kvz_context *c, int32_t P, const int32_t *doc, int32_t n, int32_t chunk,
                    float *scores, kvz_score_progress_fn progress, void *progress_ctx)
{
    kvz_model *m = kvz_context_model(c);
    KVZ_ASSERT(kvz_context_len(c) == P + n && chunk > 0);
    score_hook h;
    KVZ_TRY(hook_begin(&h, c));
    kvz_tokens pass = {0};
    int rc = KVZ_OK;
    for (int32_t c0 = 0; c0 < n && rc == KVZ_OK; c0 += chunk) {
        int32_t c1 = c0 + chunk < n ? c0 + chunk : n;
        pass.len = 0;
        if (c0 == 0)
            rc = kvz_prompt_question(m, KVZIP_FIRST, &pass);
        else
            rc = kvz_prompt_question_quoting(m, KVZIP_NEXT, doc + c0 - KVZ_KVZIP_OVERLAP,
                                             KVZ_KVZIP_OVERLAP, &pass);
        for (int32_t t = c0; t < c1 && rc == KVZ_OK; t++) /* the chunk, as the answer */
            rc = kvz_tokens_push(&pass, doc[t]);
        if (rc != KVZ_OK)
            break;
        if ((int64_t)P + n + (int64_t)pass.len > kvz_context_capacity(c)) {
            rc = kvz_errorf(KVZ_ERR_RANGE, "a KVzip pass of %zu tokens does not fit after %d tokens "
                            "(capacity %d)", pass.len, P + n, kvz_context_capacity(c));
            break;
        }
        /* softmax over [prefix | this chunk | the pass itself (causal)] */
        h.p.n_ranges = 3;
        h.p.range_begin[0] = 0, h.p.range_end[0] = P;
        h.p.range_begin[1] = P + c0, h.p.range_end[1] = P + c1;
        h.p.range_begin[2] = P + n, h.p.range_end[2] = P + n + (int32_t)pass.len;
        h.p.reduce = KVZ_REDUCE_MAX;
        kvz_eval_opts opts = scoring(&h);
        rc = kvz_context_eval(c, pass.ids, (int32_t)pass.len, &opts, NULL);
        kvz_context_truncate(c, P + n); /* the pass leaves no KV behind */
        if (progress)
            progress(progress_ctx, c1);
    }
    kvz_tokens_free(&pass);
    if (rc != KVZ_OK) {
        hook_abort(&h);
        return rc;
    }
    return hook_end(&h, m->hp.n_layers, P, n, 0, scores, 1.0f);
}

int kvz_score_question(kvz_context *c, int32_t P, int32_t n, const int32_t *question, int32_t nq,
                       int32_t pool, float *scores)
{
    kvz_model *m = kvz_context_model(c);
    KVZ_ASSERT(kvz_context_len(c) == P + n);
    score_hook h;
    KVZ_TRY(hook_begin(&h, c));
    h.p.n_ranges = 1;
    h.p.range_begin[0] = 0;
    h.p.range_end[0] = P + n + nq;
    h.p.reduce = KVZ_REDUCE_SUM;
    kvz_eval_opts opts = scoring(&h);
    int rc = kvz_context_eval(c, question, nq, &opts, NULL);
    kvz_context_truncate(c, P + n);
    if (rc != KVZ_OK) {
        hook_abort(&h);
        return rc;
    }
    return hook_end(&h, m->hp.n_layers, P, n, pool, scores, (float)m->hp.n_kv_heads / (float)m->hp.n_heads);
}

int kvz_score_knorm(kvz_context *c, int32_t P, int32_t n, float *scores)
{
    kvz_model *m = kvz_context_model(c);
    kvz_backend *b = kvz_context_backend(c);
    const int32_t hd = m->hp.head_dim, H = m->hp.n_kv_heads, L = m->hp.n_layers, cap = kvz_context_capacity(c);
    const size_t count = (size_t)L * H * n;
    float *norms = NULL;
    KVZ_TRY(b->ops->alloc(b, count * sizeof(float), (void **)&norms));
    int rc = KVZ_OK;
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++) {
        float *k, *v;
        kvz_context_layer_cache(c, l, &k, &v);
        rc = b->ops->key_norms(b, norms + (size_t)l * H * n, k + (size_t)P * hd, H, n, (int64_t)cap * hd, hd);
    }
    if (rc == KVZ_OK)
        rc = b->ops->download(b, scores, norms, count * sizeof(float));
    b->ops->free(b, norms);
    for (size_t i = 0; i < count && rc == KVZ_OK; i++)
        scores[i] = -scores[i]; /* RoPE keeps norms: smaller keys matter more */
    return rc;
}
