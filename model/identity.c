/* identity.c — model fingerprints. */
#include "model/identity.h"
#include "common/error.h"
#include "model/utf8.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

void kvz_model_identity_of(const kvz_model *m, kvz_model_identity *id)
{
    memset(id, 0, sizeof *id);
    const kvz_hparams *hp = &m->hp;
    snprintf(id->arch, sizeof id->arch, "%s", hp->arch);
    kvz_gguf_str name;
    if (kvz_gguf_find_key(m->gguf, "general.name") >= 0 &&
        kvz_gguf_get_str(m->gguf, "general.name", &name) == 0) {
        size_t len = name.len < 127 ? (size_t)name.len : 127; /* cut between characters, not inside one */
        len = kvz_utf8_complete_length((const uint8_t *)name.ptr, len);
        snprintf(id->name, sizeof id->name, "%.*s", (int)len, name.ptr);
    }
    id->n_layers = (uint32_t)hp->n_layers;
    id->n_heads = (uint32_t)hp->n_heads;
    id->n_kv_heads = (uint32_t)hp->n_kv_heads;
    id->head_dim = (uint32_t)hp->head_dim;
    id->dim = (uint32_t)hp->dim;
    id->vocab = (uint32_t)hp->vocab;
    id->rope_dim = (uint32_t)hp->rope.rope_dim;
    id->rope_mode = (uint32_t)hp->rope.mode;
    id->rope_base = hp->rope.freq_base;
    id->tokenizer_hash = kvz_tokenizer_hash(m->tokenizer);
    XXH3_state_t *st = XXH3_createState();
    if (st) {
        XXH3_64bits_reset(st);
        /* A model without its weights reads no tensor again: the file's pages
         * are given back every few MB hashed, not held to the end */
        const uint64_t every = (uint64_t)16 << 20;
        uint64_t since = 0;
        for (uint64_t i = 0; i < kvz_gguf_tensor_count(m->gguf); i++) {
            const kvz_gguf_tensor *t = kvz_gguf_tensor_at(m->gguf, i);
            for (uint64_t at = 0; at < t->size; at += every) {
                size_t n = (size_t)(t->size - at < every ? t->size - at : every);
                XXH3_64bits_update(st, (const uint8_t *)t->data + at, n);
                if (!m->backend && (since += n) >= every) {
                    kvz_gguf_release(m->gguf);
                    since = 0;
                }
            }
        }
        id->weights_hash = XXH3_64bits_digest(st);
        XXH3_freeState(st);
    }
    id->fingerprint = kvz_model_identity_fingerprint(id);
}

int kvz_model_identity_read(const char *path, kvz_model_identity *id)
{
    memset(id, 0, sizeof *id);
    kvz_model *m;
    KVZ_TRY(kvz_model_open(&m, path));
    kvz_model_identity_of(m, id);
    kvz_model_free(m);
    return KVZ_OK;
}
