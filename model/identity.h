/*
 * identity.h — the fingerprint of a loaded model, recorded in every artifact
 * it compiles and checked by every runtime that loads one.
 */
#ifndef KVZ_MODEL_IDENTITY_H
#define KVZ_MODEL_IDENTITY_H

#include "format/manifest.h"
#include "model/model.h"

/* Shapes, RoPE, tokenizer hash and an xxh3 of every tensor's bytes (one pass
 * over the mapped file: ~10 ms per 100 MB). */
void kvz_model_identity_of(const kvz_model *m, kvz_model_identity *id);

#endif
