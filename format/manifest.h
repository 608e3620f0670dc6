/*
 * manifest.h — what an artifact says about itself (SPEC §5): the model it was
 * compiled by, the document, and the compile parameters.
 */
#ifndef KVZ_FORMAT_MANIFEST_H
#define KVZ_FORMAT_MANIFEST_H

#include "common/buffer.h"

#include <stddef.h>
#include <stdint.h>

/* The identity of a model: two models with the same fingerprint compute the
 * same keys and values for the same tokens. */
typedef struct kvz_model_identity {
    char arch[32];
    char name[128];
    uint32_t n_layers, n_heads, n_kv_heads, head_dim, dim, vocab, rope_dim, rope_mode;
    float rope_base;
    uint64_t tokenizer_hash, weights_hash;
    uint64_t fingerprint; /* kvz_model_identity_fingerprint() */
} kvz_model_identity;

/* xxh3 of the identity fields as the manifest encodes them (SPEC key 14). */
uint64_t kvz_model_identity_fingerprint(const kvz_model_identity *id);

/* "llama 30x9/3x64 (SmolLM2 ...) fingerprint 0123abcd..." for messages. */
void kvz_model_identity_describe(const kvz_model_identity *id, char *out, size_t size);

typedef struct kvz_manifest {
    kvz_model_identity model;
    char template_name[16];
    uint64_t prefix_hash;
    uint32_t prefix_tokens;
    char doc_name[1024];
    uint8_t doc_hash[16];
    uint32_t n_tokens, segment, n_segments;
    char method[16], level[16], budget_shape[16];
    float ratio;
    uint32_t budget, bits, key_group, value_group, fp16_tokens;
    char options[256];
    char compiler[32];
    uint64_t created;
    /* Optional (SPEC keys 52, 53; empty when an older writer left them out):
     * the canonical compile configuration the store's ids are derived from,
     * and a one-line description of it. */
    char config[512];
    char summary[128];
} kvz_manifest;

/* Append the encoded records to `out`. */
void kvz_manifest_encode(const kvz_manifest *m, kvz_buffer *out);

/* Parse records; every required key must be present and well-typed.
 * KVZ_ERR_FORMAT naming the key otherwise. */
int kvz_manifest_decode(const uint8_t *data, size_t size, kvz_manifest *m);

/* The records of an encoded manifest (data, size) with doc_name (key 30) set
 * to `name`, appended to `out`: every other record kept as it is, in its
 * place, unknown keys too (a later writer's, which decoding and encoding again
 * would lose). The input is one a decode accepted (it names the document
 * once). KVZ_ERR_ARG for a name longer than a manifest holds (1023 bytes),
 * KVZ_ERR_FORMAT for records cut short, KVZ_ERR_NOMEM. */
int kvz_manifest_renamed(const uint8_t *data, size_t size, const char *name, kvz_buffer *out);

/* The store's ids (SPEC.md §8), derived from the configuration string: a
 * configuration's id, and the content id of one segment's artifact. Equal
 * inputs give equal ids on every machine, which makes compile, merge, unpack
 * and import idempotent. */
uint64_t kvz_config_id(const char *config);
void kvz_artifact_id(const char *config, const uint8_t doc_hash[16], uint32_t segment, uint32_t n_segments,
                     uint8_t id[16]);

#endif
