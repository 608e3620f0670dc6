/*
 * context.c — the KV cache of one sequence and the LLaMA forward pass over it.
 *
 * Per layer:  h = rmsnorm(x) · attn_norm
 *             q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ;  RoPE(q, k);  cache ← k, v
 *             x += attention(q, cache) · Woᵀ
 *             h = rmsnorm(x) · ffn_norm
 *             x += (silu(h·Wgateᵀ) ⊙ h·Wupᵀ) · Wdownᵀ
 * then logits = (rmsnorm(x) · output_norm) · Woutᵀ.
 */
#include "model/context.h"
#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct workspace {
    float *x, *h;          /* (chunk, dim) */
    float *q, *att;        /* (chunk, n_heads * head_dim) */
    float *k, *v;          /* (chunk, n_kv_heads * head_dim) */
    float *gate, *up;      /* (chunk, ff_dim) */
    float *logits;         /* (logit_rows, vocab) */
    int32_t logit_rows;
    /* A chunk's integers, uploaded in one copy: tokens (n), positions (n), then
     * for a ragged context each head's rows before the chunk (n_layers x
     * n_kv_heads). step holds room for a whole chunk; tokens and positions
     * (and ragged.rows) point into it, set for each chunk's n. */
    int32_t *step, *host_step;
    int32_t *tokens, *positions;
} workspace;

/* A loaded, compressed cache: KV head h of layer l holds loaded[l][h] rows
 * (positions arbitrary, RoPE already applied), then room for `extra` appended
 * rows shared by all heads. */
typedef struct ragged {
    int32_t *loaded;     /* host (n_layers, n_kv_heads) */
    int64_t *host_base;  /* host (n_layers, n_kv_heads): first row of each head's block */
    int64_t **base;      /* backend, per layer (n_kv_heads) */
    int32_t *rows;       /* backend (n_layers, n_kv_heads): loaded + len, in the chunk's workspace.step */
    int32_t max_loaded;
    int32_t first_position; /* position of the first appended token */
} ragged;

struct kvz_context {
    kvz_model *model;
    kvz_backend *backend; /* the model's, or one forked from it (kvz_context_new_ragged) */
    int32_t capacity, max_chunk, len;
    float **k_cache, **v_cache; /* per layer: dense (n_kv_heads, capacity, head_dim), or ragged */
    workspace ws;
    ragged *rg;                 /* NULL for a dense context */
    int logits_kept;            /* ws.logits holds the last evaluation's last row */
};

static int ws_alloc(kvz_backend *b, void **p, size_t bytes) { return b->ops->alloc(b, bytes, p); }

static int alloc_workspace(kvz_context *c)
{
    const kvz_hparams *hp = &c->model->hp;
    kvz_backend *b = c->backend;
    workspace *w = &c->ws;
    size_t C = (size_t)c->max_chunk, f = sizeof(float);
    size_t qd = (size_t)hp->n_heads * hp->head_dim, kvd = (size_t)hp->n_kv_heads * hp->head_dim;
    KVZ_TRY(ws_alloc(b, (void **)&w->x, C * hp->dim * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->h, C * hp->dim * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->q, C * qd * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->att, C * qd * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->k, C * kvd * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->v, C * kvd * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->gate, C * hp->ff_dim * f));
    KVZ_TRY(ws_alloc(b, (void **)&w->up, C * hp->ff_dim * f));
    size_t step = 2 * C + (c->rg ? (size_t)hp->n_layers * hp->n_kv_heads : 0);
    KVZ_TRY(ws_alloc(b, (void **)&w->step, step * sizeof(int32_t)));
    w->host_step = malloc(step * sizeof(int32_t));
    if (!w->host_step)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    return KVZ_OK;
}

/* Logit rows are allocated on first need: a full chunk of them is large. */
static int ensure_logit_rows(kvz_context *c, int32_t rows)
{
    workspace *w = &c->ws;
    if (rows <= w->logit_rows)
        return KVZ_OK;
    kvz_backend *b = c->backend;
    b->ops->free(b, w->logits);
    w->logits = NULL;
    w->logit_rows = 0;
    KVZ_TRY(ws_alloc(b, (void **)&w->logits, (size_t)rows * c->model->hp.vocab * sizeof(float)));
    w->logit_rows = rows;
    return KVZ_OK;
}

int kvz_context_new(kvz_context **out, kvz_model *m, int32_t capacity, int32_t max_chunk)
{
    *out = NULL;
    if (capacity <= 0 || max_chunk <= 0)
        return kvz_errorf(KVZ_ERR_ARG, "context: capacity %d and chunk %d must be positive",
                          capacity, max_chunk);
    if (capacity > m->hp.ctx_train)
        return kvz_errorf(KVZ_ERR_RANGE,
                          "context of %d tokens exceeds the model's trained context (%d)", capacity,
                          m->hp.ctx_train);
    kvz_context *c = calloc(1, sizeof *c);
    if (!c)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    c->model = m;
    c->backend = m->backend;
    c->capacity = capacity;
    c->max_chunk = max_chunk < capacity ? max_chunk : capacity;
    const kvz_hparams *hp = &m->hp;
    kvz_backend *b = c->backend;
    size_t cache_bytes = (size_t)hp->n_kv_heads * capacity * hp->head_dim * sizeof(float);
    int rc = KVZ_OK;
    c->k_cache = calloc((size_t)hp->n_layers, sizeof(float *));
    c->v_cache = calloc((size_t)hp->n_layers, sizeof(float *));
    if (!c->k_cache || !c->v_cache)
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t l = 0; l < hp->n_layers && rc == KVZ_OK; l++) {
        rc = ws_alloc(b, (void **)&c->k_cache[l], cache_bytes);
        if (rc == KVZ_OK)
            rc = ws_alloc(b, (void **)&c->v_cache[l], cache_bytes);
    }
    if (rc == KVZ_OK)
        rc = alloc_workspace(c);
    if (rc != KVZ_OK) {
        kvz_error_context(rc, "context for %d tokens", capacity);
        kvz_context_free(c);
        return rc;
    }
    *out = c;
    return KVZ_OK;
}

void kvz_context_free(kvz_context *c)
{
    if (!c)
        return;
    kvz_backend *b = c->backend;
    for (int32_t l = 0; l < c->model->hp.n_layers; l++) {
        if (c->k_cache)
            b->ops->free(b, c->k_cache[l]);
        if (c->v_cache)
            b->ops->free(b, c->v_cache[l]);
        if (c->rg && c->rg->base)
            b->ops->free(b, c->rg->base[l]);
    }
    if (c->rg) {
        free(c->rg->loaded);
        free(c->rg->host_base);
        free(c->rg->base);
        free(c->rg);
    }
    free(c->k_cache);
    free(c->v_cache);
    workspace *w = &c->ws;
    void *bufs[] = {w->x, w->h, w->q, w->att, w->k, w->v, w->gate, w->up, w->logits, w->step};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        b->ops->free(b, bufs[i]);
    free(w->host_step);
    free(c);
}

/* ---- ragged contexts ------------------------------------------------------ */

int kvz_context_new_ragged(kvz_context **out, kvz_model *m, kvz_backend *backend, const int32_t *loaded,
                           int32_t extra, int32_t max_chunk, int32_t first_position)
{
    *out = NULL;
    const kvz_hparams *hp = &m->hp;
    const int32_t L = hp->n_layers, H = hp->n_kv_heads;
    if (extra <= 0 || max_chunk <= 0 || first_position < 0)
        return kvz_errorf(KVZ_ERR_ARG, "ragged context: extra %d, chunk %d, position %d", extra, max_chunk,
                          first_position);
    if ((int64_t)first_position + extra > hp->ctx_train)
        return kvz_errorf(KVZ_ERR_RANGE, "positions up to %lld exceed the model's trained context (%d)",
                          (long long)first_position + extra, hp->ctx_train);
    kvz_context *c = calloc(1, sizeof *c);
    ragged *rg = calloc(1, sizeof *rg);
    if (!c || !rg) {
        free(c);
        free(rg);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    c->model = m;
    c->backend = backend ? backend : m->backend;
    c->rg = rg;
    c->capacity = extra;
    c->max_chunk = max_chunk < extra ? max_chunk : extra;
    rg->first_position = first_position;
    kvz_backend *b = c->backend;
    int rc = KVZ_OK;
    rg->loaded = malloc((size_t)L * H * sizeof *rg->loaded);
    rg->host_base = malloc((size_t)L * H * sizeof *rg->host_base);
    rg->base = calloc((size_t)L, sizeof *rg->base);
    c->k_cache = calloc((size_t)L, sizeof(float *));
    c->v_cache = calloc((size_t)L, sizeof(float *));
    if (!rg->loaded || !rg->host_base || !rg->base || !c->k_cache || !c->v_cache)
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t l = 0; l < L && rc == KVZ_OK; l++) {
        int64_t total = 0;
        for (int32_t h = 0; h < H; h++) {
            int32_t n = loaded[(size_t)l * H + h];
            if (n < 0 || (int64_t)n + extra > hp->ctx_train) {
                rc = kvz_errorf(KVZ_ERR_RANGE, "layer %d head %d: %d loaded rows do not fit", l, h, n);
                break;
            }
            rg->loaded[(size_t)l * H + h] = n;
            rg->host_base[(size_t)l * H + h] = total;
            rg->max_loaded = n > rg->max_loaded ? n : rg->max_loaded;
            total += n + extra;
        }
        size_t bytes = (size_t)total * hp->head_dim * sizeof(float);
        if (rc == KVZ_OK)
            rc = ws_alloc(b, (void **)&c->k_cache[l], bytes);
        if (rc == KVZ_OK)
            rc = ws_alloc(b, (void **)&c->v_cache[l], bytes);
        if (rc == KVZ_OK)
            rc = ws_alloc(b, (void **)&rg->base[l], (size_t)H * sizeof(int64_t));
        if (rc == KVZ_OK)
            rc = b->ops->upload(b, rg->base[l], rg->host_base + (size_t)l * H, (size_t)H * sizeof(int64_t));
    }
    if (rc == KVZ_OK)
        rc = alloc_workspace(c);
    if (rc != KVZ_OK) {
        kvz_error_context(rc, "loaded context");
        kvz_context_free(c);
        return rc;
    }
    *out = c;
    return KVZ_OK;
}

int kvz_context_ragged_rows(kvz_context *c, int32_t layer, int32_t head, int32_t row0, int32_t n, float **k,
                            float **v)
{
    KVZ_ASSERT(c->rg);
    const kvz_hparams *hp = &c->model->hp;
    size_t i = (size_t)layer * hp->n_kv_heads + head;
    if (row0 < 0 || n < 0 || row0 + n > c->rg->loaded[i])
        return kvz_errorf(KVZ_ERR_INTERNAL, "filling rows [%d, %d) of a head holding %d", row0, row0 + n,
                          c->rg->loaded[i]);
    size_t at = ((size_t)c->rg->host_base[i] + (size_t)row0) * hp->head_dim;
    *k = c->k_cache[layer] + at;
    *v = c->v_cache[layer] + at;
    return KVZ_OK;
}

int32_t kvz_context_len(const kvz_context *c) { return c->len; }
int32_t kvz_context_capacity(const kvz_context *c) { return c->capacity; }
kvz_model *kvz_context_model(const kvz_context *c) { return c->model; }
kvz_backend *kvz_context_backend(const kvz_context *c) { return c->backend; }

void kvz_context_truncate(kvz_context *c, int32_t len)
{
    KVZ_ASSERT(len >= 0 && len <= c->len);
    if (len != c->len)
        c->logits_kept = 0; /* they were the dropped tail's */
    c->len = len;
}

void kvz_context_layer_cache(const kvz_context *c, int32_t l, float **k, float **v)
{
    *k = c->k_cache[l];
    *v = c->v_cache[l];
}

static int run_layer(kvz_context *c, int32_t l, int32_t n, const kvz_eval_opts *opts)
{
    const kvz_hparams *hp = &c->model->hp;
    const kvz_layer *L = &c->model->layers[l];
    kvz_backend *b = c->backend;
    const kvz_backend_ops *ops = b->ops;
    workspace *w = &c->ws;
    kvz_attention_params ap = {
        .n = n,
        .pos0 = c->len,
        .n_heads = hp->n_heads,
        .n_kv_heads = hp->n_kv_heads,
        .head_dim = hp->head_dim,
        .capacity = c->capacity,
        .scale = 1.0f / sqrtf((float)hp->head_dim),
    };
    if (c->rg) {
        ap.head_base = c->rg->base[l];
        ap.head_rows = c->rg->rows + (size_t)l * hp->n_kv_heads;
        ap.max_head_rows = c->rg->max_loaded + c->len;
        for (int32_t h = 0; h < hp->n_kv_heads; h++)
            ap.total_head_rows += c->rg->loaded[(size_t)l * hp->n_kv_heads + h] + c->len;
    }
    const kvz_qkv_bias bias = {L->bq, L->bk, L->bv};
    /* without logits the last layer's output feeds nothing: only its KV (and
     * its scores, when asked for) matter */
    int output_unused = l == hp->n_layers - 1 && (!opts || opts->logits == KVZ_LOGITS_NONE);
    if (ops->layer && !output_unused && !(opts && (opts->hook || opts->score))) {
        const kvz_layer_step step = {
            .n = n, .x = w->x, .h = w->h, .q = w->q, .k = w->k, .v = w->v, .att = w->att,
            .gate = w->gate, .up = w->up, .attn_norm = L->attn_norm, .ffn_norm = L->ffn_norm,
            .eps = hp->rms_eps, .wq = &L->wq, .wk = &L->wk, .wv = &L->wv, .wo = &L->wo,
            .w_gate = &L->w_gate, .w_up = &L->w_up, .w_down = &L->w_down,
            .bias = hp->qkv_bias ? &bias : NULL, .k_cache = c->k_cache[l], .v_cache = c->v_cache[l],
            .positions = w->positions, .attn = &ap, .rope = &hp->rope,
        };
        int done = 0;
        KVZ_TRY(ops->layer(b, &step, &done));
        if (done)
            return KVZ_OK;
    }
    float *const qkv[3] = {w->q, w->k, w->v};
    const kvz_weight *const qkv_weights[3] = {&L->wq, &L->wk, &L->wv};
    KVZ_TRY(ops->norm_matmul_many(b, 3, qkv, w->h, w->x, L->attn_norm, hp->rms_eps, qkv_weights, n));
    KVZ_TRY(ops->rope_kv_append(b, c->k_cache[l], c->v_cache[l], w->q, w->k, w->v, hp->qkv_bias ? &bias : NULL,
                                w->positions, &ap, &hp->rope));
    if (opts && opts->hook) {
        kvz_layer_view view = {l, w->q, c->k_cache[l], c->v_cache[l], &ap, w->positions};
        KVZ_TRY(opts->hook(opts->hook_ctx, &view));
    }
    kvz_score_params sp = {0};
    float *layer_scores = NULL;
    if (opts && opts->score) {
        sp = *opts->score;
        sp.n = n, sp.q_pos0 = c->len, sp.n_heads = hp->n_heads, sp.n_kv_heads = hp->n_kv_heads;
        sp.head_dim = hp->head_dim, sp.capacity = c->capacity, sp.scale = ap.scale;
        layer_scores = opts->scores + (size_t)l * hp->n_kv_heads * c->capacity;
    }
    if (output_unused && !layer_scores)
        return KVZ_OK;
    KVZ_TRY(ops->attention(b, w->att, w->q, c->k_cache[l], c->v_cache[l], &ap,
                           opts && opts->score ? &sp : NULL, layer_scores));
    if (output_unused)
        return KVZ_OK;
    KVZ_TRY(ops->matmul(b, w->x, w->att, &L->wo, n, 1));
    float *const gate_up[2] = {w->gate, w->up};
    const kvz_weight *const gate_up_weights[2] = {&L->w_gate, &L->w_up};
    KVZ_TRY(ops->norm_matmul_many(b, 2, gate_up, w->h, w->x, L->ffn_norm, hp->rms_eps, gate_up_weights, n));
    KVZ_TRY(ops->swiglu_matmul(b, w->x, w->gate, w->up, &L->w_down, n, 1));
    return KVZ_OK;
}

/* Logits of rows [first, first + rows) of the chunk into ws.logits, then
 * into host `out` unless it is NULL. */
static int chunk_logits(kvz_context *c, int32_t first, int32_t rows, float *out)
{
    const kvz_hparams *hp = &c->model->hp;
    kvz_backend *b = c->backend;
    workspace *w = &c->ws;
    KVZ_TRY(ensure_logit_rows(c, rows));
    float *h = w->h + (size_t)first * hp->dim;
    float *const logits[1] = {w->logits};
    const kvz_weight *const output[1] = {&c->model->output};
    KVZ_TRY(b->ops->norm_matmul_many(b, 1, logits, h, w->x + (size_t)first * hp->dim, c->model->output_norm,
                                     hp->rms_eps, output, rows));
    return out ? b->ops->download(b, out, w->logits, (size_t)rows * hp->vocab * sizeof(float)) : KVZ_OK;
}

static int eval_chunk(kvz_context *c, const int32_t *tokens, int32_t n, const kvz_eval_opts *opts,
                      float *logits, int last_chunk)
{
    kvz_model *m = c->model;
    kvz_backend *b = c->backend;
    workspace *w = &c->ws;
    int32_t first_position = c->rg ? c->rg->first_position : 0;
    int32_t *host_tokens = w->host_step, *host_positions = host_tokens + n, *host_rows = host_positions + n;
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->hp.vocab)
            return kvz_errorf(KVZ_ERR_ARG, "token id %d is outside the vocabulary (0..%d)",
                              tokens[i], m->hp.vocab - 1);
        host_tokens[i] = tokens[i];
        host_positions[i] = first_position + c->len + i;
    }
    size_t ints = 2 * (size_t)n;
    w->tokens = w->step;
    w->positions = w->step + n;
    if (c->rg) { /* each head's queries come after its own rows */
        const size_t heads = (size_t)m->hp.n_layers * m->hp.n_kv_heads;
        for (size_t i = 0; i < heads; i++)
            host_rows[i] = c->rg->loaded[i] + c->len;
        c->rg->rows = w->step + ints;
        ints += heads;
    }
    KVZ_TRY(b->ops->upload(b, w->step, w->host_step, ints * sizeof(int32_t)));
    KVZ_TRY(b->ops->embed(b, w->x, &m->tok_embd, w->tokens, n));
    for (int32_t l = 0; l < m->hp.n_layers; l++)
        KVZ_TRY(run_layer(c, l, n, opts));
    kvz_logits_mode mode = opts ? opts->logits : KVZ_LOGITS_NONE;
    if (mode == KVZ_LOGITS_ALL)
        KVZ_TRY(chunk_logits(c, 0, n, logits));
    else if ((mode == KVZ_LOGITS_LAST || mode == KVZ_LOGITS_KEEP) && last_chunk)
        KVZ_TRY(chunk_logits(c, n - 1, 1, mode == KVZ_LOGITS_KEEP ? NULL : logits));
    return KVZ_OK;
}

int kvz_context_eval(kvz_context *c, const int32_t *tokens, int32_t n, const kvz_eval_opts *opts,
                     float *logits)
{
    if (n <= 0)
        return kvz_errorf(KVZ_ERR_ARG, "nothing to evaluate");
    if (n > c->capacity - c->len)
        return kvz_errorf(KVZ_ERR_RANGE,
                          "context full: %d tokens held, %d more do not fit in %d", c->len, n,
                          c->capacity);
    int32_t start = c->len;
    int all = opts && opts->logits == KVZ_LOGITS_ALL;
    c->logits_kept = 0;
    for (int32_t done = 0; done < n;) {
        int32_t k = n - done < c->max_chunk ? n - done : c->max_chunk;
        float *out = logits && all ? logits + (size_t)done * c->model->hp.vocab : logits;
        int rc = eval_chunk(c, tokens + done, k, opts, out, done + k == n);
        if (rc != KVZ_OK) {
            c->len = start; /* a failed evaluation appends nothing */
            return rc;
        }
        c->len += k;
        done += k;
    }
    c->logits_kept = opts && opts->logits == KVZ_LOGITS_KEEP;
    if (c->logits_kept) /* the sample that reads them waits; until then the device may still be working */
        return KVZ_OK;
    int rc = kvz_context_finish(c);
    if (rc != KVZ_OK)
        c->len = start;
    return rc;
}

int kvz_context_finish(kvz_context *c)
{
    return c->backend->ops->synchronize(c->backend);
}

int kvz_context_sample(kvz_context *c, kvz_sampler *s, int32_t *token)
{
    if (!c->logits_kept)
        return kvz_errorf(KVZ_ERR_INTERNAL, "sampling without logits kept by the last evaluation");
    kvz_backend *b = c->backend;
    kvz_sample_params p = kvz_sampler_next(s);
    return b->ops->sample(b, token, c->ws.logits, c->model->hp.vocab, &p);
}
