/*
 * identity.h — the fingerprint of a loaded model, recorded in every artifact
 * it compiles and checked by every runtime that loads one; read from a file
 * alone where nothing else is needed (pack, unpack, import).
 */
#ifndef KVZ_MODEL_IDENTITY_H
#define KVZ_MODEL_IDENTITY_H

#include "format/manifest.h"
#include "model/model.h"

/* Shapes, RoPE, tokenizer hash and an xxh3 of every tensor's bytes (one pass
 * over the mapped file: ~10 ms per 100 MB). */
void kvz_model_identity_of(const kvz_model *m, kvz_model_identity *id);

/* The identity of the model file at `path` without loading its weights
 * (kvz_model_open, then kvz_model_identity_of): the same as that of a full
 * load, and the same errors for a file a load refuses. */
int kvz_model_identity_read(const char *path, kvz_model_identity *id);

#endif
