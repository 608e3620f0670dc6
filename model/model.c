/* model.c — hyper-parameters, tensor checks and weight upload. */
#include "model/model.h"
#include "common/cpu_check.h"
#include "common/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int key_u32(const kvz_gguf *g, const char *arch, const char *name, int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    uint32_t v;
    KVZ_TRY(kvz_gguf_get_u32(g, key, &v));
    if (v == 0 || v > (1u << 30))
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: %s = %u is out of range", kvz_gguf_path(g), key, v);
    *out = (int32_t)v;
    return KVZ_OK;
}

/* What llama.cpp would apply and kvz does not: refused, so that such a model
 * is never computed wrongly without a word. */
static int refuse_what_changes_the_math(const kvz_gguf *g, const char *arch)
{
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    kvz_gguf_str type;
    if (kvz_gguf_find_key(g, key) >= 0 && kvz_gguf_get_str(g, key, &type) == KVZ_OK &&
        !(type.len == 4 && memcmp(type.ptr, "none", 4) == 0))
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: RoPE scaling '%.*s' (%s) is not supported",
                          kvz_gguf_path(g), (int)(type.len > 32 ? 32 : type.len), type.ptr, key);
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    float factor = 0;
    if (kvz_gguf_find_key(g, key) >= 0 && kvz_gguf_get_f32(g, key, &factor) == KVZ_OK && factor != 0 &&
        factor != 1)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: RoPE scaling by %g (%s) is not supported", kvz_gguf_path(g),
                          factor, key);
    if (kvz_gguf_find_tensor(g, "output.bias"))
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: tensor 'output.bias' (a bias on the logits) is not supported",
                          kvz_gguf_path(g));
    return KVZ_OK;
}

/* RoPE frequency factors (tensor rope_freqs.weight, Llama 3.1 and later): one
 * f32 divisor per rotated pair, which llama.cpp applies to llama models. */
static int read_rope_factors(const kvz_gguf *g, kvz_hparams *hp)
{
    const kvz_gguf_tensor *t = kvz_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t)
        return KVZ_OK;
    const int32_t pairs = hp->rope.rope_dim / 2;
    if (strcmp(hp->arch, "llama") != 0)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: tensor 'rope_freqs.weight' in a '%s' model is not supported "
                          "(kvz applies RoPE frequency factors to 'llama' models, as llama.cpp does)",
                          kvz_gguf_path(g), hp->arch);
    if (t->type != KVZ_GGML_F32 || t->dims[0] != (uint64_t)pairs || t->n_elems != (uint64_t)pairs)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' is not %d f32 values (one per rotated "
                          "pair)", kvz_gguf_path(g), pairs);
    if (pairs > KVZ_ROPE_MAX_FACTORS)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: RoPE frequency factors for a rotary width of %d (kvz takes "
                          "them up to %d)", kvz_gguf_path(g), hp->rope.rope_dim, 2 * KVZ_ROPE_MAX_FACTORS);
    memcpy(hp->rope.factors, t->data, (size_t)pairs * sizeof(float));
    for (int32_t j = 0; j < pairs; j++)
        if (!(hp->rope.factors[j] > 0) || !isfinite(hp->rope.factors[j]))
            return kvz_errorf(KVZ_ERR_FORMAT, "%s: RoPE frequency factor %d is %g (must be positive)",
                              kvz_gguf_path(g), j, hp->rope.factors[j]);
    hp->rope.n_factors = pairs;
    return KVZ_OK;
}

int kvz_hparams_read(kvz_hparams *hp, const kvz_gguf *g)
{
    memset(hp, 0, sizeof *hp);
    /* one part of a split model (a later part has no architecture): said as such */
    uint32_t parts = 0;
    if (kvz_gguf_find_key(g, "split.count") >= 0 && kvz_gguf_get_u32(g, "split.count", &parts) == KVZ_OK &&
        parts > 1)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s is one part of a model split into %u files (split.count): kvz "
                          "reads a whole model from one file (llama-gguf-split --merge makes one)",
                          kvz_gguf_path(g), parts);
    kvz_error_clear();
    kvz_gguf_str arch;
    KVZ_TRY(kvz_gguf_get_str(g, "general.architecture", &arch));
    if (arch.len >= sizeof hp->arch)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: architecture name too long", kvz_gguf_path(g));
    memcpy(hp->arch, arch.ptr, (size_t)arch.len);
    hp->arch[arch.len] = '\0';
    int qwen2 = strcmp(hp->arch, "qwen2") == 0;
    if (strcmp(hp->arch, "llama") != 0 && !qwen2)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED,
                          "%s: architecture '%s' is not supported (kvz runs 'llama' and 'qwen2')",
                          kvz_gguf_path(g), hp->arch);
    hp->qkv_bias = qwen2;
    const char *a = hp->arch;
    /* said as what it is, not as the tensors it lacks */
    uint32_t experts = 0;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_count", a);
    if (kvz_gguf_find_key(g, key) >= 0 && kvz_gguf_get_u32(g, key, &experts) == KVZ_OK && experts > 0)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: a mixture of %u experts (%s) is not supported",
                          kvz_gguf_path(g), experts, key);
    kvz_error_clear();
    KVZ_TRY(key_u32(g, a, "block_count", &hp->n_layers));
    KVZ_TRY(key_u32(g, a, "embedding_length", &hp->dim));
    KVZ_TRY(key_u32(g, a, "attention.head_count", &hp->n_heads));
    KVZ_TRY(key_u32(g, a, "feed_forward_length", &hp->ff_dim));
    KVZ_TRY(key_u32(g, a, "context_length", &hp->ctx_train));
    snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
    if (kvz_gguf_find_key(g, key) >= 0)
        KVZ_TRY(key_u32(g, a, "attention.head_count_kv", &hp->n_kv_heads));
    else
        hp->n_kv_heads = hp->n_heads;
    if (hp->dim % hp->n_heads != 0 || hp->n_heads % hp->n_kv_heads != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: %d heads, %d KV heads and width %d do not fit",
                          kvz_gguf_path(g), hp->n_heads, hp->n_kv_heads, hp->dim);
    hp->head_dim = hp->dim / hp->n_heads;
    snprintf(key, sizeof key, "%s.attention.key_length", a);
    if (kvz_gguf_find_key(g, key) >= 0)
        KVZ_TRY(key_u32(g, a, "attention.key_length", &hp->head_dim));
    hp->rope.head_dim = hp->head_dim;
    hp->rope.rope_dim = hp->head_dim;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if (kvz_gguf_find_key(g, key) >= 0)
        KVZ_TRY(key_u32(g, a, "rope.dimension_count", &hp->rope.rope_dim));
    if (hp->rope.rope_dim > KVZ_CPU_ROPE_MAX_DIM)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: rope dimension %d is above the %d kvz supports",
                          kvz_gguf_path(g), hp->rope.rope_dim, KVZ_CPU_ROPE_MAX_DIM);
    if (hp->rope.rope_dim > hp->head_dim || hp->rope.rope_dim % 2 != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: rope dimension %d does not fit head size %d",
                          kvz_gguf_path(g), hp->rope.rope_dim, hp->head_dim);
    hp->rope.freq_base = 10000.0f;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if (kvz_gguf_find_key(g, key) >= 0)
        KVZ_TRY(kvz_gguf_get_f32(g, key, &hp->rope.freq_base));
    hp->rope.mode = qwen2 ? KVZ_ROPE_NEOX : KVZ_ROPE_NORMAL; /* as llama.cpp turns each */
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    KVZ_TRY(kvz_gguf_get_f32(g, key, &hp->rms_eps));
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope.freq_base > 1) ||
        !isfinite(hp->rope.freq_base))
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: rms epsilon %g or rope base %g is out of range",
                          kvz_gguf_path(g), hp->rms_eps, hp->rope.freq_base);
    KVZ_TRY(refuse_what_changes_the_math(g, a));
    KVZ_TRY(read_rope_factors(g, hp));
    const kvz_gguf_tensor *emb = kvz_gguf_find_tensor(g, "token_embd.weight");
    if (!emb)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing",
                          kvz_gguf_path(g));
    if (emb->n_dims != 2 || emb->dims[1] > INT32_MAX)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: token_embd.weight is not a matrix",
                          kvz_gguf_path(g));
    hp->vocab = (int32_t)emb->dims[1];
    /* block_count against the layers the file holds: before anything is sized by it */
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", hp->n_layers - 1);
    if (!kvz_gguf_find_tensor(g, name))
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: %s.block_count says %d layer(s), and tensor '%s' is missing",
                          kvz_gguf_path(g), a, hp->n_layers, name);
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", hp->n_layers);
    if (kvz_gguf_find_tensor(g, name))
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: %s.block_count says %d layer(s), and the file holds more (tensor "
                          "'%s')", kvz_gguf_path(g), a, hp->n_layers, name);
    return KVZ_OK;
}

/* The tensor `name`, checked to be a (rows, cols) matrix of a readable type. */
static int find_matrix(const kvz_gguf *g, const char *name, int64_t rows, int64_t cols,
                       const kvz_gguf_tensor **out)
{
    const kvz_gguf_tensor *t = kvz_gguf_find_tensor(g, name);
    if (!t)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: tensor '%s' is missing", kvz_gguf_path(g), name);
    /* dimensions past the tensor's own are 1: a vector stored as [n, 1] is one (llama.cpp takes it) */
    if ((int64_t)t->dims[0] != cols || (int64_t)t->dims[1] != rows || t->n_elems != (uint64_t)(rows * cols)) {
        char shape[128] = "";
        for (uint32_t d = 0, at = 0; d < t->n_dims && at < sizeof shape; d++)
            at += (uint32_t)snprintf(shape + at, sizeof shape - at, "%s%llu", d ? ", " : "",
                                     (unsigned long long)t->dims[d]);
        return kvz_errorf(KVZ_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]", kvz_gguf_path(g),
                          name, shape, (long long)cols, (long long)rows);
    }
    if (kvz_ggml_type_info_of(t->type).block_elems == 0)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which kvz cannot read",
                          kvz_gguf_path(g), name, kvz_ggml_type_info_of(t->type).name);
    *out = t;
    return KVZ_OK;
}

/* The loads below check each tensor, then hand it to the backend; a model
 * opened without its weights (m->backend NULL) has them checked only. */
static int load_matrix(kvz_model *m, const char *name, int64_t rows, int64_t cols, kvz_weight *w)
{
    const kvz_gguf_tensor *t = NULL;
    KVZ_TRY(find_matrix(m->gguf, name, rows, cols, &t));
    if (!m->backend)
        return KVZ_OK;
    int rc = m->backend->ops->weight_load(m->backend, w, t->type, t->data, rows, cols);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "loading '%s'", name);
    return KVZ_OK;
}

/* A norm vector: decoded to f32 on the host, uploaded to the backend. */
static int load_vector(kvz_model *m, const char *name, int64_t len, float **out)
{
    const kvz_gguf_tensor *t = NULL;
    KVZ_TRY(find_matrix(m->gguf, name, 1, len, &t));
    if (!m->backend)
        return KVZ_OK;
    float *host = malloc((size_t)len * sizeof(float));
    if (!host)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory loading '%s'", name);
    kvz_dequantize_row(t->type, t->data, host, len);
    kvz_backend *b = m->backend;
    int rc = b->ops->alloc(b, (size_t)len * sizeof(float), (void **)out);
    if (rc == KVZ_OK)
        rc = b->ops->upload(b, *out, host, (size_t)len * sizeof(float));
    free(host);
    return rc;
}

static int load_weights(kvz_model *m)
{
    const kvz_hparams *hp = &m->hp;
    int64_t q_rows = (int64_t)hp->n_heads * hp->head_dim;
    int64_t kv_rows = (int64_t)hp->n_kv_heads * hp->head_dim;
    KVZ_TRY(load_matrix(m, "token_embd.weight", hp->vocab, hp->dim, &m->tok_embd));
    KVZ_TRY(load_vector(m, "output_norm.weight", hp->dim, &m->output_norm));
    if (kvz_gguf_find_tensor(m->gguf, "output.weight")) {
        KVZ_TRY(load_matrix(m, "output.weight", hp->vocab, hp->dim, &m->output));
    } else {
        m->output = m->tok_embd;
        m->output_tied = 1;
    }
    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int32_t l = 0; l < hp->n_layers; l++) {
        kvz_layer *L = &m->layers[l];
        char name[96];
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        KVZ_TRY(load_vector(m, BLK("attn_norm.weight"), hp->dim, &L->attn_norm));
        KVZ_TRY(load_matrix(m, BLK("attn_q.weight"), q_rows, hp->dim, &L->wq));
        KVZ_TRY(load_matrix(m, BLK("attn_k.weight"), kv_rows, hp->dim, &L->wk));
        KVZ_TRY(load_matrix(m, BLK("attn_v.weight"), kv_rows, hp->dim, &L->wv));
        if (hp->qkv_bias) {
            KVZ_TRY(load_vector(m, BLK("attn_q.bias"), q_rows, &L->bq));
            KVZ_TRY(load_vector(m, BLK("attn_k.bias"), kv_rows, &L->bk));
            KVZ_TRY(load_vector(m, BLK("attn_v.bias"), kv_rows, &L->bv));
        }
        KVZ_TRY(load_matrix(m, BLK("attn_output.weight"), hp->dim, q_rows, &L->wo));
        KVZ_TRY(load_vector(m, BLK("ffn_norm.weight"), hp->dim, &L->ffn_norm));
        KVZ_TRY(load_matrix(m, BLK("ffn_gate.weight"), hp->ff_dim, hp->dim, &L->w_gate));
        KVZ_TRY(load_matrix(m, BLK("ffn_up.weight"), hp->ff_dim, hp->dim, &L->w_up));
        KVZ_TRY(load_matrix(m, BLK("ffn_down.weight"), hp->dim, hp->ff_dim, &L->w_down));
#undef BLK
    }
    return KVZ_OK;
}

static int64_t f32_weight_bytes(const kvz_gguf *g)
{
    int64_t total = 0;
    for (uint64_t i = 0; i < kvz_gguf_tensor_count(g); i++)
        total += (int64_t)kvz_gguf_tensor_at(g, i)->n_elems * 4;
    return total;
}

/* The backend and everything on it, as partly as load_weights got (the model
 * can take another backend after). */
static void free_weights(kvz_model *m)
{
    kvz_backend *b = m->backend;
    if (b) {
        if (m->layers) {
            for (int32_t l = 0; l < m->hp.n_layers; l++) {
                kvz_layer *L = &m->layers[l];
                b->ops->free(b, L->attn_norm);
                b->ops->free(b, L->ffn_norm);
                b->ops->free(b, L->bq), b->ops->free(b, L->bk), b->ops->free(b, L->bv);
                kvz_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
                for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
                    b->ops->weight_free(b, ws[i]);
            }
        }
        if (!m->output_tied)
            b->ops->weight_free(b, &m->output);
        b->ops->weight_free(b, &m->tok_embd);
        b->ops->free(b, m->output_norm);
        kvz_backend_destroy(b);
    }
    free(m->layers);
    m->layers = NULL;
    m->backend = NULL;
    memset(&m->tok_embd, 0, sizeof m->tok_embd);
    memset(&m->output, 0, sizeof m->output);
    m->output_tied = 0;
    m->output_norm = NULL;
}

/* A backend of `bc` (a device named, not auto) with the weights on it. */
static int start_backend(kvz_model *m, const kvz_backend_config *bc)
{
    int rc = kvz_backend_create(&m->backend, bc);
    if (rc == KVZ_OK)
        rc = load_weights(m);
    if (rc == KVZ_OK) /* the weights are in place for backends forked from this one (their own streams) */
        rc = m->backend->ops->synchronize(m->backend);
    return rc;
}

/* The backend and the weights on it. Under KVZ_DEVICE_AUTO a GPU that cannot
 * start or cannot hold the weights (another process's memory, exclusive mode)
 * gives way to the CPU: the reason is kept in m->device_note. Asked for by
 * name, the GPU's error stands. */
static int place_weights(kvz_model *m, const kvz_backend_config *cfg)
{
    kvz_backend_config bc = *cfg;
    bc.weight_bytes_hint = f32_weight_bytes(m->gguf);
    if (bc.device == KVZ_DEVICE_AUTO)
        bc.device = kvz_backend_auto_device();
    int rc = start_backend(m, &bc);
    if (rc == KVZ_OK || cfg->device != KVZ_DEVICE_AUTO || bc.device == KVZ_DEVICE_CPU ||
        (rc != KVZ_ERR_BACKEND && rc != KVZ_ERR_NOMEM))
        return rc;
    snprintf(m->device_note, sizeof m->device_note, "the GPU could not be used (%s): running on the CPU",
             kvz_last_error());
    free_weights(m);
    bc.device = KVZ_DEVICE_CPU;
    rc = start_backend(m, &bc);
    if (rc == KVZ_OK)
        kvz_error_clear(); /* the GPU's error is the note's, no longer the last */
    return rc;
}

int kvz_model_open(kvz_model **out, const char *path)
{
    *out = NULL;
    KVZ_TRY(kvz_cpu_check());
    kvz_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    int rc = kvz_gguf_open(&m->gguf, path);
    if (rc == KVZ_OK) {
        rc = kvz_hparams_read(&m->hp, m->gguf);
        if (rc == KVZ_OK)
            rc = kvz_tokenizer_load(&m->tokenizer, m->gguf);
        if (rc == KVZ_ERR_NOT_FOUND) /* a metadata key a model needs: not a whole model (exit 4, not 7) */
            rc = KVZ_ERR_FORMAT;
    }
    if (rc == KVZ_OK && kvz_tokenizer_vocab_size(m->tokenizer) != m->hp.vocab)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "%s: the tokenizer has %d tokens, the embedding %d rows",
                        path, kvz_tokenizer_vocab_size(m->tokenizer), m->hp.vocab);
    if (rc == KVZ_OK)
        rc = kvz_chat_init(&m->chat, m->gguf, kvz_tokenizer_find(m->tokenizer, "<|im_start|>") >= 0);
    if (rc == KVZ_OK) /* before any device is set up: a wrong file is said as such */
        rc = load_weights(m);
    if (rc != KVZ_OK) {
        kvz_model_free(m);
        return rc;
    }
    free_weights(m); /* the walk's layers, all unset (no backend): a load makes them anew */
    *out = m;
    return KVZ_OK;
}

int kvz_model_load(kvz_model **out, const char *path, const kvz_model_config *cfg)
{
    kvz_model *m;
    KVZ_TRY(kvz_model_open(&m, path));
    int rc = place_weights(m, &cfg->backend);
    if (rc != KVZ_OK) {
        kvz_model_free(m);
        return rc;
    }
    *out = m;
    return KVZ_OK;
}

void kvz_model_free(kvz_model *m)
{
    if (!m)
        return;
    free_weights(m);
    kvz_chat_free(&m->chat);
    kvz_tokenizer_free(m->tokenizer);
    kvz_gguf_close(m->gguf);
    free(m->path);
    free(m);
}
