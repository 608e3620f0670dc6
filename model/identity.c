/* identity.c — model fingerprints. */
#include "model/identity.h"
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
        for (uint64_t i = 0; i < kvz_gguf_tensor_count(m->gguf); i++) {
            const kvz_gguf_tensor *t = kvz_gguf_tensor_at(m->gguf, i);
            XXH3_64bits_update(st, t->data, (size_t)t->size);
        }
        id->weights_hash = XXH3_64bits_digest(st);
        XXH3_freeState(st);
    }
    id->fingerprint = kvz_model_identity_fingerprint(id);
}
