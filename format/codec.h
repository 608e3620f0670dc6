/*
 * codec.h — the byte transforms and compressor of .kvz sections (SPEC §4).
 *
 * Encoding picks, per section, the smallest of the candidate encodings; decoding
 * trusts nothing: every length is checked against what the table promised.
 */
#ifndef KVZ_FORMAT_CODEC_H
#define KVZ_FORMAT_CODEC_H

#include "common/buffer.h"

#include <stddef.h>
#include <stdint.h>

typedef enum kvz_transform {
    KVZ_TRANSFORM_NONE = 0,
    KVZ_TRANSFORM_SHUFFLE2 = 1,
    KVZ_TRANSFORM_SHUFFLE4 = 2,
    KVZ_TRANSFORM_DELTA_VARINT = 3,
    KVZ_TRANSFORM_BITMAP = 4,
} kvz_transform;

typedef enum kvz_compressor {
    KVZ_COMPRESSOR_NONE = 0,
    KVZ_COMPRESSOR_ZSTD = 1,
} kvz_compressor;

/* A section ready to store. `data` is malloc'ed. */
typedef struct kvz_encoded {
    uint8_t *data;
    size_t size;
    uint8_t transform, compressor;
} kvz_encoded;

/* Encode `raw` whose elements are `elem_size` bytes (1, 2 or 4): tries no
 * transform and the matching shuffle, each with and without zstd at `level`,
 * and keeps the smallest. */
int kvz_encode_bytes(const void *raw, size_t size, int elem_size, int level, kvz_encoded *out);

/* Encode strictly increasing positions (< n_tokens): delta-varint or bitmap,
 * whichever is smaller, then zstd if that is smaller still. */
int kvz_encode_positions(const uint32_t *pos, uint32_t count, uint32_t n_tokens, int level,
                         kvz_encoded *out);

/* Decode a stored payload into `raw` (exactly raw_size bytes, caller-owned).
 * POSITIONS also need count and n_tokens to check the result. Errors:
 * KVZ_ERR_FORMAT naming what did not match, KVZ_ERR_UNSUPPORTED for an
 * unknown transform or compressor. */
int kvz_decode_bytes(const uint8_t *stored, size_t stored_size, uint8_t transform,
                     uint8_t compressor, void *raw, size_t raw_size);
int kvz_decode_positions(const uint8_t *stored, size_t stored_size, uint8_t transform,
                         uint8_t compressor, uint32_t count, uint32_t n_tokens, uint32_t *pos);

const char *kvz_transform_name(uint8_t t);

#endif
