/*
 * doc_record.h — the value of a `docs` entry in the store: a document's content
 * hash and, for each compile configuration it was compiled with, the ids of its
 * segments' artifacts.
 *
 * Layout (little-endian): u32 version (1), u8 doc_hash[16], u32 n_entries (1 or
 * more: a document is filed with its first configuration), then
 * per entry: u64 config_id, u64 model_fingerprint, u64 created, u64 stored_bytes,
 * u32 n_tokens, u32 n_segments, u16 summary_len, summary bytes,
 * n_segments x u8 artifact_id[16].
 */
#ifndef KVZ_FORMAT_DOC_RECORD_H
#define KVZ_FORMAT_DOC_RECORD_H

#include "common/buffer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_doc_entry {
    uint64_t config_id;         /* compile parameters + model */
    uint64_t model_fingerprint;
    uint64_t created;           /* seconds since 1970 */
    uint64_t stored_bytes;      /* all segments' artifacts */
    uint32_t n_tokens;          /* the whole document */
    uint32_t n_segments;
    char summary[128];          /* "kvzip pair ratio 0.30, 4 bits" */
    uint8_t (*artifact_ids)[16]; /* n_segments */
} kvz_doc_entry;

typedef struct kvz_doc_record {
    uint8_t doc_hash[16];
    uint32_t n_entries;
    kvz_doc_entry *entries;
} kvz_doc_record;

void kvz_doc_record_encode(const kvz_doc_record *r, kvz_buffer *out);
/* Strict decode; the record owns its arrays (free with kvz_doc_record_free). */
int kvz_doc_record_decode(const void *data, size_t size, kvz_doc_record *r);
void kvz_doc_record_free(kvz_doc_record *r);

/* The entry for config_id, or NULL. */
const kvz_doc_entry *kvz_doc_record_find(const kvz_doc_record *r, uint64_t config_id);

/* The newest entry (latest `created`; of equals, the later) compiled by the
 * model of `fingerprint`, or by any model when fingerprint is NULL; NULL if none. */
const kvz_doc_entry *kvz_doc_record_newest(const kvz_doc_record *r, const uint64_t *fingerprint);

/* Replace or add `e` (its ids are copied). */
int kvz_doc_record_set(kvz_doc_record *r, const kvz_doc_entry *e);

#endif
