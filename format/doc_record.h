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
    char summary[128];          /* "kvzip pair ratio 0.30, 4-bit" */
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

/* Whether entry a is newer than b: the later `created`; of equals, the larger
 * config_id, so that stores filled in any order, or by compiles in any order
 * under one SOURCE_DATE_EPOCH, agree on which form is a document's newest. */
int kvz_doc_entry_newer(const kvz_doc_entry *a, const kvz_doc_entry *b);

/* The newest entry (kvz_doc_entry_newer) compiled by the model of
 * `fingerprint`, or by any model when fingerprint is NULL; NULL if none. */
const kvz_doc_entry *kvz_doc_record_newest(const kvz_doc_record *r, const uint64_t *fingerprint);

/* Which of a document's configurations: `number` (counted from 1 in the
 * order they arrived in this store, as `kvz ls` lists them), or `id` (a
 * config_id, the same in every store: its leading id_digits hex digits, 1 to
 * 16), or, with neither, the newest made by the model asked for. */
typedef struct kvz_config_pick {
    uint32_t number;    /* 0: not by number */
    uint64_t id;        /* the id's leading id_digits hex digits, as a number */
    uint32_t id_digits; /* 0: not by id; 16: the whole id */
} kvz_config_pick;

/* The entry `pick` names in the record of document `doc` (named in messages).
 * With neither number nor id: the newest by the model of `fingerprint` (any
 * model's when NULL), and *out NULL (KVZ_OK) when that model made none.
 * Errors: KVZ_ERR_NOT_FOUND (no such number or id), KVZ_ERR_ARG (an id's
 * digits that two entries begin with). */
int kvz_doc_record_pick(const kvz_doc_record *r, const kvz_config_pick *pick, const uint64_t *fingerprint,
                        const char *doc, const kvz_doc_entry **out);

/* Whether `pick`'s id digits are those config_id begins with. */
int kvz_config_pick_matches(const kvz_config_pick *pick, uint64_t config_id);

/* config_id as `kvz ls` shows it: its leading hex digits that name it among
 * the record's entries, 8 unless another entry's id begins with the same ones
 * (up to all 16). Returns `out`. */
const char *kvz_doc_record_short_id(const kvz_doc_record *r, uint64_t config_id, char out[17]);

/* `pick` in words for messages: "configuration 2", "configuration 1a2b3c4d"
 * (the digits given), "" with neither. */
const char *kvz_config_pick_name(const kvz_config_pick *pick, char name[40]);

/* Replace or add `e` (its ids are copied). */
int kvz_doc_record_set(kvz_doc_record *r, const kvz_doc_entry *e);

#endif
