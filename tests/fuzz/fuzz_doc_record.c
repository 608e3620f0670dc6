/*
 * fuzz_doc_record.c — libFuzzer target for the store's document records
 * (format/doc_record.h). A record that decodes must encode back to exactly
 * the input (the layout has no slack: every byte is a field), and decode
 * again to an equal record; lookups and updates must work on it.
 */
#include "common/error.h"
#include "format/doc_record.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_doc_record: %s (%s)\n", what, kvz_last_error());
    abort();
}

static int entries_equal(const kvz_doc_entry *a, const kvz_doc_entry *b)
{
    return a->config_id == b->config_id && a->model_fingerprint == b->model_fingerprint &&
           a->created == b->created && a->stored_bytes == b->stored_bytes &&
           a->n_tokens == b->n_tokens && a->n_segments == b->n_segments &&
           strcmp(a->summary, b->summary) == 0 &&
           memcmp(a->artifact_ids, b->artifact_ids, (size_t)a->n_segments * 16) == 0;
}

static int records_equal(const kvz_doc_record *a, const kvz_doc_record *b)
{
    if (memcmp(a->doc_hash, b->doc_hash, 16) != 0 || a->n_entries != b->n_entries)
        return 0;
    for (uint32_t i = 0; i < a->n_entries; i++)
        if (!entries_equal(&a->entries[i], &b->entries[i]))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvz_doc_record r;
    int rc = kvz_doc_record_decode(data, size, &r);
    if (rc != KVZ_OK) {
        if (rc != KVZ_ERR_FORMAT && rc != KVZ_ERR_NOMEM)
            fail("decode failed with an unexpected status");
        if (r.entries || r.n_entries)
            fail("a failed decode left entries behind");
        kvz_error_clear();
        return 0;
    }
    for (uint32_t i = 0; i < r.n_entries; i++)
        if (r.entries[i].n_segments == 0 || memchr(r.entries[i].summary, '\0', sizeof r.entries[i].summary) == NULL)
            fail("decoded an entry without segments or an unterminated summary");

    kvz_buffer out = {0};
    kvz_doc_record_encode(&r, &out);
    if (out.failed)
        fail("out of memory encoding");
    kvz_doc_record back;
    if (kvz_doc_record_decode(out.data, out.len, &back) != KVZ_OK)
        fail("a decoded record, encoded again, does not decode");
    if (!records_equal(&r, &back))
        fail("decode -> encode -> decode changed the record");
    /* the layout has no slack: what decodes is what encode writes */
    if (out.len != size || memcmp(out.data, data, size) != 0)
        fail("encode(decode(x)) != x");

    /* lookups and updates */
    for (uint32_t i = 0; i < r.n_entries; i++) {
        const kvz_doc_entry *e = kvz_doc_record_find(&r, r.entries[i].config_id);
        if (!e || e->config_id != r.entries[i].config_id)
            fail("find misses an entry");
    }
    if (r.n_entries) {
        kvz_doc_entry e = back.entries[0];
        e.config_id ^= 0x5a5a5a5a5a5a5a5aull; /* a new configuration, maybe */
        uint32_t before = r.n_entries;
        if (kvz_doc_record_set(&r, &e) != KVZ_OK || kvz_doc_record_set(&r, &back.entries[0]) != KVZ_OK)
            fail("set failed");
        if (r.n_entries < before || r.n_entries > before + 1 || !kvz_doc_record_find(&r, e.config_id))
            fail("set did not add or replace");
    }
    kvz_doc_record_free(&back);
    kvz_doc_record_free(&r);
    kvz_buffer_free(&out);
    kvz_error_clear();
    return 0;
}
