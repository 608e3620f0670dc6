/* manifest.c — typed records: u16 key, u8 type, u8 0, u32 length, value. */
#include "format/manifest.h"
#include "common/error.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

enum { T_U32 = 1, T_U64 = 2, T_F32 = 3, T_STR = 4, T_BYTES = 5 };

enum {
    K_ARCH = 1, K_NAME = 2, K_LAYERS = 3, K_HEADS = 4, K_KV_HEADS = 5, K_HEAD_DIM = 6, K_DIM = 7,
    K_VOCAB = 8, K_ROPE_BASE = 9, K_ROPE_DIM = 10, K_ROPE_MODE = 11, K_TOK_HASH = 12,
    K_WEIGHTS_HASH = 13, K_FINGERPRINT = 14,
    K_TEMPLATE = 20, K_PREFIX_HASH = 21, K_PREFIX_TOKENS = 22,
    K_DOC_NAME = 30, K_DOC_HASH = 31, K_N_TOKENS = 32, K_SEGMENT = 33, K_N_SEGMENTS = 34,
    K_METHOD = 40, K_LEVEL = 41, K_RATIO = 42, K_BUDGET = 43, K_SHAPE = 44, K_BITS = 45,
    K_KEY_GROUP = 46, K_VALUE_GROUP = 47, K_FP16_TOKENS = 48, K_OPTIONS = 49, K_COMPILER = 50,
    K_CREATED = 51, K_CONFIG = 52, K_SUMMARY = 53,
};

static void record(kvz_buffer *b, uint16_t key, uint8_t type, const void *v, uint32_t len)
{
    uint8_t head[8] = {(uint8_t)key, (uint8_t)(key >> 8), type, 0,
                       (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    kvz_buffer_append(b, head, 8);
    kvz_buffer_append(b, v, len);
}

static void r_u32(kvz_buffer *b, uint16_t k, uint32_t v) { record(b, k, T_U32, &v, 4); }
static void r_u64(kvz_buffer *b, uint16_t k, uint64_t v) { record(b, k, T_U64, &v, 8); }
static void r_f32(kvz_buffer *b, uint16_t k, float v) { record(b, k, T_F32, &v, 4); }
static void r_str(kvz_buffer *b, uint16_t k, const char *s) { record(b, k, T_STR, s, (uint32_t)strlen(s)); }

/* The identity records that the fingerprint covers (keys 1, 3..13). */
static void encode_identity(const kvz_model_identity *id, kvz_buffer *b)
{
    r_str(b, K_ARCH, id->arch);
    r_u32(b, K_LAYERS, id->n_layers);
    r_u32(b, K_HEADS, id->n_heads);
    r_u32(b, K_KV_HEADS, id->n_kv_heads);
    r_u32(b, K_HEAD_DIM, id->head_dim);
    r_u32(b, K_DIM, id->dim);
    r_u32(b, K_VOCAB, id->vocab);
    r_f32(b, K_ROPE_BASE, id->rope_base);
    r_u32(b, K_ROPE_DIM, id->rope_dim);
    r_u32(b, K_ROPE_MODE, id->rope_mode);
    r_u64(b, K_TOK_HASH, id->tokenizer_hash);
    r_u64(b, K_WEIGHTS_HASH, id->weights_hash);
}

uint64_t kvz_model_identity_fingerprint(const kvz_model_identity *id)
{
    kvz_buffer b = {0};
    encode_identity(id, &b);
    uint64_t h = b.failed ? 0 : XXH3_64bits(b.data, b.len);
    kvz_buffer_free(&b);
    return h;
}

void kvz_model_identity_describe(const kvz_model_identity *id, char *out, size_t size)
{
    snprintf(out, size, "%s%s%s%s %u layers, %u/%u heads of %u, fingerprint %016llx", id->arch,
             id->name[0] ? " (" : "", id->name, id->name[0] ? ")" : "", id->n_layers, id->n_heads,
             id->n_kv_heads, id->head_dim, (unsigned long long)id->fingerprint);
}

void kvz_manifest_encode(const kvz_manifest *m, kvz_buffer *b)
{
    encode_identity(&m->model, b);
    r_str(b, K_NAME, m->model.name);
    r_u64(b, K_FINGERPRINT, m->model.fingerprint);
    r_str(b, K_TEMPLATE, m->template_name);
    r_u64(b, K_PREFIX_HASH, m->prefix_hash);
    r_u32(b, K_PREFIX_TOKENS, m->prefix_tokens);
    r_str(b, K_DOC_NAME, m->doc_name);
    record(b, K_DOC_HASH, T_BYTES, m->doc_hash, 16);
    r_u32(b, K_N_TOKENS, m->n_tokens);
    r_u32(b, K_SEGMENT, m->segment);
    r_u32(b, K_N_SEGMENTS, m->n_segments);
    r_str(b, K_METHOD, m->method);
    r_str(b, K_LEVEL, m->level);
    r_f32(b, K_RATIO, m->ratio);
    r_u32(b, K_BUDGET, m->budget);
    r_str(b, K_SHAPE, m->budget_shape);
    r_u32(b, K_BITS, m->bits);
    r_u32(b, K_KEY_GROUP, m->key_group);
    r_u32(b, K_VALUE_GROUP, m->value_group);
    r_u32(b, K_FP16_TOKENS, m->fp16_tokens);
    r_str(b, K_OPTIONS, m->options);
    r_str(b, K_COMPILER, m->compiler);
    r_u64(b, K_CREATED, m->created);
    r_str(b, K_CONFIG, m->config);
    r_str(b, K_SUMMARY, m->summary);
}

uint64_t kvz_config_id(const char *config) { return XXH3_64bits(config, strlen(config)); }

void kvz_artifact_id(const char *config, const uint8_t doc_hash[16], uint32_t segment, uint32_t n_segments,
                     uint8_t id[16])
{
    XXH3_state_t *st = XXH3_createState();
    KVZ_ASSERT(st);
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, config, strlen(config));
    XXH3_128bits_update(st, doc_hash, 16);
    uint8_t le[8];
    for (int k = 0; k < 4; k++) {
        le[k] = (uint8_t)(segment >> (8 * k));
        le[4 + k] = (uint8_t)(n_segments >> (8 * k));
    }
    XXH3_128bits_update(st, le, 4);
    XXH3_128bits_update(st, le + 4, 4);
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    for (int k = 0; k < 8; k++) {
        id[k] = (uint8_t)(h.low64 >> (8 * k));
        id[8 + k] = (uint8_t)(h.high64 >> (8 * k));
    }
}

typedef struct field {
    uint16_t key;
    uint8_t type;
    void *dst;
    size_t cap; /* strings: buffer size; bytes: exact length */
    const char *name;
} field;

/* The record at data[*at]: its key, type and value length; *at moves past its
 * value (which ends there). KVZ_ERR_FORMAT for a record cut short. */
static int next_record(const uint8_t *data, size_t size, size_t *at, uint16_t *key, uint8_t *type, uint32_t *len)
{
    *key = 0, *type = 0, *len = 0;
    if (size - *at < 8)
        return kvz_errorf(KVZ_ERR_FORMAT, "manifest: truncated record header at byte %zu", *at);
    const uint8_t *p = data + *at;
    *key = (uint16_t)(p[0] | p[1] << 8);
    *type = p[2];
    memcpy(len, p + 4, 4);
    *at += 8;
    if (*len > size - *at)
        return kvz_errorf(KVZ_ERR_FORMAT, "manifest: record %u runs past the end", *key);
    *at += *len;
    return KVZ_OK;
}

int kvz_manifest_decode(const uint8_t *data, size_t size, kvz_manifest *m)
{
    memset(m, 0, sizeof *m);
    field fields[] = {
        {K_ARCH, T_STR, m->model.arch, sizeof m->model.arch, "model_arch"},
        {K_NAME, T_STR, m->model.name, sizeof m->model.name, "model_name"},
        {K_LAYERS, T_U32, &m->model.n_layers, 4, "n_layers"},
        {K_HEADS, T_U32, &m->model.n_heads, 4, "n_heads"},
        {K_KV_HEADS, T_U32, &m->model.n_kv_heads, 4, "n_kv_heads"},
        {K_HEAD_DIM, T_U32, &m->model.head_dim, 4, "head_dim"},
        {K_DIM, T_U32, &m->model.dim, 4, "embedding_dim"},
        {K_VOCAB, T_U32, &m->model.vocab, 4, "vocab"},
        {K_ROPE_BASE, T_F32, &m->model.rope_base, 4, "rope_base"},
        {K_ROPE_DIM, T_U32, &m->model.rope_dim, 4, "rope_dim"},
        {K_ROPE_MODE, T_U32, &m->model.rope_mode, 4, "rope_mode"},
        {K_TOK_HASH, T_U64, &m->model.tokenizer_hash, 8, "tokenizer_hash"},
        {K_WEIGHTS_HASH, T_U64, &m->model.weights_hash, 8, "weights_hash"},
        {K_FINGERPRINT, T_U64, &m->model.fingerprint, 8, "model_fingerprint"},
        {K_TEMPLATE, T_STR, m->template_name, sizeof m->template_name, "template"},
        {K_PREFIX_HASH, T_U64, &m->prefix_hash, 8, "prefix_hash"},
        {K_PREFIX_TOKENS, T_U32, &m->prefix_tokens, 4, "prefix_tokens"},
        {K_DOC_NAME, T_STR, m->doc_name, sizeof m->doc_name, "doc_name"},
        {K_DOC_HASH, T_BYTES, m->doc_hash, 16, "doc_hash"},
        {K_N_TOKENS, T_U32, &m->n_tokens, 4, "n_tokens"},
        {K_SEGMENT, T_U32, &m->segment, 4, "segment"},
        {K_N_SEGMENTS, T_U32, &m->n_segments, 4, "n_segments"},
        {K_METHOD, T_STR, m->method, sizeof m->method, "method"},
        {K_LEVEL, T_STR, m->level, sizeof m->level, "level"},
        {K_RATIO, T_F32, &m->ratio, 4, "ratio"},
        {K_BUDGET, T_U32, &m->budget, 4, "budget"},
        {K_SHAPE, T_STR, m->budget_shape, sizeof m->budget_shape, "budget_shape"},
        {K_BITS, T_U32, &m->bits, 4, "bits"},
        {K_KEY_GROUP, T_U32, &m->key_group, 4, "key_group"},
        {K_VALUE_GROUP, T_U32, &m->value_group, 4, "value_group"},
        {K_FP16_TOKENS, T_U32, &m->fp16_tokens, 4, "fp16_tokens"},
        {K_OPTIONS, T_STR, m->options, sizeof m->options, "options"},
        {K_COMPILER, T_STR, m->compiler, sizeof m->compiler, "compiler"},
        {K_CREATED, T_U64, &m->created, 8, "created"},
        {K_CONFIG, T_STR, m->config, sizeof m->config, "config"},
        {K_SUMMARY, T_STR, m->summary, sizeof m->summary, "summary"},
    };
    const size_t n_fields = sizeof fields / sizeof fields[0];
    uint8_t seen[sizeof fields / sizeof fields[0]] = {0};
    size_t at = 0;
    while (at < size) {
        uint16_t key;
        uint8_t type;
        uint32_t len;
        KVZ_TRY(next_record(data, size, &at, &key, &type, &len));
        const uint8_t *value = data + at - len;
        for (size_t f = 0; f < n_fields; f++) {
            if (fields[f].key != key)
                continue;
            if (seen[f])
                return kvz_errorf(KVZ_ERR_FORMAT, "manifest: %s appears twice", fields[f].name);
            seen[f] = 1;
            int ok = type == fields[f].type;
            if (type == T_STR)
                ok = ok && len < fields[f].cap && !memchr(value, '\0', len);
            else
                ok = ok && len == fields[f].cap;
            if (!ok)
                return kvz_errorf(KVZ_ERR_FORMAT, "manifest: %s has type %u and length %u", fields[f].name,
                                  type, len);
            memcpy(fields[f].dst, value, len);
            if (type == T_STR)
                ((char *)fields[f].dst)[len] = '\0';
        }
        /* unknown keys are skipped */
    }
    for (size_t f = 0; f < n_fields; f++)
        if (!seen[f] && fields[f].key != K_CONFIG && fields[f].key != K_SUMMARY) /* optional keys */
            return kvz_errorf(KVZ_ERR_FORMAT, "manifest: %s is missing", fields[f].name);
    return KVZ_OK;
}

int kvz_manifest_renamed(const uint8_t *data, size_t size, const char *name, kvz_buffer *out)
{
    size_t name_len = strlen(name), most = sizeof ((kvz_manifest *)0)->doc_name - 1;
    if (name_len > most)
        return kvz_errorf(KVZ_ERR_ARG, "a document name of %zu bytes is longer than a manifest holds (%zu)",
                          name_len, most);
    size_t at = 0;
    while (at < size) {
        size_t start = at;
        uint16_t key;
        uint8_t type;
        uint32_t len;
        KVZ_TRY(next_record(data, size, &at, &key, &type, &len));
        if (key == K_DOC_NAME)
            r_str(out, K_DOC_NAME, name);
        else /* as it was: a key this reader does not know too (a later writer's) */
            kvz_buffer_append(out, data + start, at - start);
    }
    return out->failed ? kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding the manifest") : KVZ_OK;
}
