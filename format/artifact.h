/*
 * artifact.h — encode and decode .kvz artifacts (format/SPEC.md).
 *
 * Writing: fill a manifest, add the token ids, then each (layer, KV head)'s kept
 * positions, keys (before RoPE) and values; finish() quantizes nothing more, it
 * lays out the sections and checksums.
 *
 * Reading: kvz_artifact_open() checks the header, the trailer checksum over
 * the whole artifact, the table and the manifest, without copying: the
 * artifact stays a view (an LMDB value, a mapped file). Sections are decoded
 * on demand and their own checksums verified then; kvz_artifact_verify()
 * decodes everything.
 */
#ifndef KVZ_FORMAT_ARTIFACT_H
#define KVZ_FORMAT_ARTIFACT_H

#include "format/codec.h"
#include "format/manifest.h"
#include "format/quant.h"

#include <stddef.h>
#include <stdint.h>

#define KVZ_FORMAT_VERSION_MAJOR 1
#define KVZ_FORMAT_VERSION_MINOR 0

typedef enum kvz_section_kind {
    KVZ_SECTION_MANIFEST = 1,
    KVZ_SECTION_TOKENS = 2,
    KVZ_SECTION_POSITIONS = 3,
    KVZ_SECTION_KEYS = 4,
    KVZ_SECTION_VALUES = 5,
    KVZ_SECTION_KEY_SCALES = 6,
    KVZ_SECTION_VALUE_SCALES = 7,
} kvz_section_kind;

/* Kinds of format 1.0. A later minor may add kinds, which this reader skips
 * (their checksums still checked); in a 1.0 artifact another kind is damage. */
static inline int kvz_section_kind_known(uint16_t kind)
{
    return kind >= KVZ_SECTION_MANIFEST && kind <= KVZ_SECTION_VALUE_SCALES;
}

#define KVZ_SECTION_WHOLE 0xffff /* layer/head of whole-artifact sections */

typedef struct kvz_section {
    uint16_t kind, layer, head;
    uint8_t transform, compressor;
    uint64_t offset, stored_bytes, raw_bytes;
    uint32_t count, aux;
    uint64_t checksum;
} kvz_section;

/* ---- writing ------------------------------------------------------------ */

typedef struct kvz_artifact_writer kvz_artifact_writer;

/* zstd_level: 1..19. The manifest is copied at finish(). */
kvz_artifact_writer *kvz_artifact_writer_new(int zstd_level);
void kvz_artifact_writer_free(kvz_artifact_writer *w);

int kvz_artifact_add_tokens(kvz_artifact_writer *w, const int32_t *tokens, uint32_t n);

/* One (layer, head): `n` kept document indices (increasing), their keys and
 * values (n, head_dim) f32. The first n16 rows stay f16; the rest are
 * quantized to `bits` with the manifest's group sizes. */
int kvz_artifact_add_head(kvz_artifact_writer *w, const kvz_manifest *m, uint16_t layer,
                          uint16_t head, const uint32_t *positions, uint32_t n, uint32_t n16,
                          const float *keys, const float *values);

/* The same in two steps, so heads can be encoded in parallel: encoding is
 * pure (thread-safe); adding takes ownership of the encoded sections. */
typedef struct kvz_head_sections {
    uint32_t n, n16, key_pairs, value_pairs;
    uint64_t raw_keys, raw_values;
    kvz_encoded positions, keys, values, key_scales, value_scales;
} kvz_head_sections;

int kvz_artifact_encode_head(const kvz_manifest *m, int zstd_level, const uint32_t *positions,
                             uint32_t n, uint32_t n16, const float *keys, const float *values,
                             kvz_head_sections *hs);

/* The shapes one (layer, head) of n kept rows (the first n16 in f16) takes
 * under the manifest's bits and groups; KVZ_ERR_ARG when it cannot be encoded. */
typedef struct kvz_head_codes {
    uint32_t n;                    /* kept rows */
    kvz_quant_shape keys, values;
    size_t key_bytes, value_bytes; /* payloads */
    size_t key_pairs, value_pairs; /* (scale, min) f16 pairs: 2 u16 each */
} kvz_head_codes;
int kvz_artifact_head_shape(const kvz_manifest *m, uint32_t n, uint32_t n16, kvz_head_codes *hc);
/* kvz_artifact_encode_head from payloads and pairs already quantized
 * (kernels/kv_quant.h, or a backend's kv_quantize): only the coding is left. */
int kvz_artifact_encode_codes(const kvz_manifest *m, int zstd_level, const uint32_t *positions,
                              const kvz_head_codes *hc, const uint8_t *key_payload, const uint16_t *key_scales,
                              const uint8_t *value_payload, const uint16_t *value_scales, kvz_head_sections *hs);
int kvz_artifact_add_encoded(kvz_artifact_writer *w, uint16_t layer, uint16_t head, kvz_head_sections *hs);
void kvz_head_sections_free(kvz_head_sections *hs);

/* Lay out header, table, sections and trailer: *out is malloc'ed. Fails with
 * KVZ_ERR_ARG if some (layer, head) of the model was not added. */
int kvz_artifact_writer_finish(kvz_artifact_writer *w, const kvz_manifest *m, uint8_t **out,
                               size_t *size);

/* ---- reading -------------------------------------------------------------- */

typedef struct kvz_artifact {
    const uint8_t *data;
    size_t size;
    uint32_t n_sections;
    kvz_manifest manifest;
} kvz_artifact;

/* Check and index an artifact held in memory (not copied). Errors:
 * KVZ_ERR_FORMAT (truncated, corrupt, inconsistent: the message says which
 * check failed and where), KVZ_ERR_UNSUPPORTED (a newer major version). */
int kvz_artifact_open(kvz_artifact *a, const void *data, size_t size);

/* The same checks but the whole-file checksum: the header, the table and the
 * manifest (its section's checksum) are read, the other sections' bytes not
 * touched (pages of a store's map not faulted in). For what needs only the
 * manifest of an artifact that its reader checks when it loads it (gc's
 * prefixes); not for answering from it. */
int kvz_artifact_open_manifest(kvz_artifact *a, const void *data, size_t size);

/* Read an artifact file (a pipe or device too: "/dev/stdin") into *data
 * (freed by the caller), no further than the size its header states, so
 * that an endless or oversized input takes no more memory than the artifact
 * it claims to be. Not checked beyond the magic and that size: open it.
 * KVZ_ERR_FORMAT for what is no artifact or ends early, KVZ_ERR_IO,
 * KVZ_ERR_NOMEM. */
int kvz_artifact_read(const char *path, uint8_t **data, size_t *size);

/* Section i (< n_sections) as stored in the table. */
void kvz_artifact_section_at(const kvz_artifact *a, uint32_t i, kvz_section *s);
/* The section of (kind, layer, head); KVZ_ERR_NOT_FOUND if absent. */
int kvz_artifact_find(const kvz_artifact *a, uint16_t kind, uint16_t layer, uint16_t head,
                      kvz_section *s);

/* Decode into caller buffers. Token ids: manifest.n_tokens entries. */
int kvz_artifact_read_tokens(const kvz_artifact *a, int32_t *tokens);
/* 1 when the artifact holds exactly these n tokens, else 0 (also where they
 * cannot be decoded, or memory runs out: the error is cleared). Two artifacts
 * of one id may differ in them: a kvz before 0.3.3, or before 0.3.11, cut
 * some documents into segments otherwise, under the same ids (SPEC §8). */
int kvz_artifact_holds_tokens(const kvz_artifact *a, const int32_t *tokens, uint32_t n);
/* Kept pairs of (layer, head). */
int kvz_artifact_kept(const kvz_artifact *a, uint16_t layer, uint16_t head, uint32_t *n);
/* positions: n entries; keys, values: (n, head_dim) f32, keys before RoPE. */
int kvz_artifact_read_head(const kvz_artifact *a, uint16_t layer, uint16_t head,
                           uint32_t *positions, float *keys, float *values);

/* The stored form of (layer, head) before dequantization, for loaders that
 * dequantize elsewhere (the GPU): shapes (SPEC §6, kernels/kv_codes.h) and
 * the buffer sizes kvz_artifact_read_codes fills. */
int kvz_artifact_head_codes(const kvz_artifact *a, uint16_t layer, uint16_t head, kvz_head_codes *hc);
/* Positions (n) and both payloads with their scale pairs, decompressed and
 * checked, not dequantized. */
int kvz_artifact_read_codes(const kvz_artifact *a, uint16_t layer, uint16_t head, uint32_t *positions,
                            uint8_t *key_payload, uint16_t *key_scales, uint8_t *value_payload,
                            uint16_t *value_scales);

/* Decode and check every section (a skipped kind: its checksum). */
int kvz_artifact_verify(const kvz_artifact *a);

/* The opened artifact `a` written again with the manifest's doc_name `name`
 * (*out malloc'ed): every other manifest record and every other section byte
 * for byte (not decoded again), in the table's order, the table, header and
 * trailer laid out and checksummed anew, so that kvz_artifact_open and
 * kvz_artifact_verify pass on it as on `a`. The artifact id (SPEC §8) does not
 * cover the name: the result is the same artifact under another name, which
 * an artifact shared by several documents (content addressing) holds only
 * for the first. KVZ_ERR_ARG for a name longer than a manifest holds (1023
 * bytes), KVZ_ERR_NOMEM. */
int kvz_artifact_with_name(const kvz_artifact *a, const char *name, uint8_t **out, size_t *size);

/* The bytes of artifact `a` written for document `name` (kvz export, kvz
 * pack): a's own where its manifest names that document, else a copy written
 * again with that name (kvz_artifact_with_name, and its errors), which
 * *renamed holds (malloc'ed, to free after *bytes; else NULL). */
int kvz_artifact_for_document(const kvz_artifact *a, const char *name, const void **bytes, size_t *size,
                              uint8_t **renamed);

/* Refuse an artifact compiled by another model, naming both and the document
 * `doc` asked for (NULL: the manifest's doc_name, which for an artifact that
 * documents of the same content share names the first compiled). */
int kvz_artifact_check_model(const kvz_artifact *a, const char *doc, const kvz_model_identity *model);

#endif
