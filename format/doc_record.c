/* doc_record.c — encode, decode and update document records. */
#include "format/doc_record.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kvz_doc_record_encode(const kvz_doc_record *r, kvz_buffer *b)
{
    kvz_buffer_append_u32(b, 1);
    kvz_buffer_append(b, r->doc_hash, 16);
    kvz_buffer_append_u32(b, r->n_entries);
    for (uint32_t i = 0; i < r->n_entries; i++) {
        const kvz_doc_entry *e = &r->entries[i];
        kvz_buffer_append_u64(b, e->config_id);
        kvz_buffer_append_u64(b, e->model_fingerprint);
        kvz_buffer_append_u64(b, e->created);
        kvz_buffer_append_u64(b, e->stored_bytes);
        kvz_buffer_append_u32(b, e->n_tokens);
        kvz_buffer_append_u32(b, e->n_segments);
        uint16_t len = (uint16_t)strnlen(e->summary, sizeof e->summary - 1);
        uint8_t le[2] = {(uint8_t)len, (uint8_t)(len >> 8)};
        kvz_buffer_append(b, le, 2);
        kvz_buffer_append(b, e->summary, len);
        kvz_buffer_append(b, e->artifact_ids, (size_t)e->n_segments * 16);
    }
}

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static int take(reader *r, void *dst, size_t n)
{
    if (n > r->left)
        return kvz_errorf(KVZ_ERR_FORMAT, "document record is truncated");
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return KVZ_OK;
}

int kvz_doc_record_decode(const void *data, size_t size, kvz_doc_record *rec)
{
    memset(rec, 0, sizeof *rec);
    reader r = {data, size};
    uint32_t version = 0, n = 0;
    KVZ_TRY(take(&r, &version, 4));
    if (version != 1)
        return kvz_errorf(KVZ_ERR_FORMAT, "document record version %u is not supported", version);
    KVZ_TRY(take(&r, rec->doc_hash, 16));
    KVZ_TRY(take(&r, &n, 4));
    if (n == 0 || n > size / 42) /* kvz files a document with its first entry; each takes 42 bytes or more */
        return kvz_errorf(KVZ_ERR_FORMAT, "document record claims %u entries", n);
    rec->entries = calloc(n, sizeof *rec->entries);
    if (!rec->entries)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        kvz_doc_entry *e = &rec->entries[i];
        uint16_t len = 0;
        int rc = take(&r, &e->config_id, 8);
        if (rc == KVZ_OK) rc = take(&r, &e->model_fingerprint, 8);
        if (rc == KVZ_OK) rc = take(&r, &e->created, 8);
        if (rc == KVZ_OK) rc = take(&r, &e->stored_bytes, 8);
        if (rc == KVZ_OK) rc = take(&r, &e->n_tokens, 4);
        if (rc == KVZ_OK) rc = take(&r, &e->n_segments, 4);
        if (rc == KVZ_OK) rc = take(&r, &len, 2);
        if (rc == KVZ_OK && len >= sizeof e->summary)
            rc = kvz_errorf(KVZ_ERR_FORMAT, "document record summary of %u bytes", len);
        if (rc == KVZ_OK) rc = take(&r, e->summary, len);
        /* encode writes the summary up to its first NUL: one inside would not round-trip */
        if (rc == KVZ_OK && memchr(e->summary, '\0', len))
            rc = kvz_errorf(KVZ_ERR_FORMAT, "document record entry %u: summary holds a NUL byte", i);
        if (rc == KVZ_OK && (e->n_segments == 0 || e->n_segments > r.left / 16))
            rc = kvz_errorf(KVZ_ERR_FORMAT, "document record entry %u has %u segments", i, e->n_segments);
        if (rc == KVZ_OK && !(e->artifact_ids = malloc((size_t)e->n_segments * 16)))
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        if (rc == KVZ_OK) rc = take(&r, e->artifact_ids, (size_t)e->n_segments * 16);
        rec->n_entries = i + 1;
        if (rc != KVZ_OK) {
            kvz_doc_record_free(rec);
            return rc;
        }
    }
    if (r.left != 0) {
        kvz_doc_record_free(rec);
        return kvz_errorf(KVZ_ERR_FORMAT, "document record has %zu stray bytes", r.left);
    }
    return KVZ_OK;
}

void kvz_doc_record_free(kvz_doc_record *r)
{
    for (uint32_t i = 0; r->entries && i < r->n_entries; i++)
        free(r->entries[i].artifact_ids);
    free(r->entries);
    memset(r, 0, sizeof *r);
}

const kvz_doc_entry *kvz_doc_record_find(const kvz_doc_record *r, uint64_t config_id)
{
    for (uint32_t i = 0; i < r->n_entries; i++)
        if (r->entries[i].config_id == config_id)
            return &r->entries[i];
    return NULL;
}

int kvz_doc_entry_newer(const kvz_doc_entry *a, const kvz_doc_entry *b)
{
    return a->created != b->created ? a->created > b->created : a->config_id > b->config_id;
}

const kvz_doc_entry *kvz_doc_record_newest(const kvz_doc_record *r, const uint64_t *fingerprint)
{
    const kvz_doc_entry *best = NULL;
    for (uint32_t i = 0; i < r->n_entries; i++)
        if ((!fingerprint || r->entries[i].model_fingerprint == *fingerprint) &&
            (!best || kvz_doc_entry_newer(&r->entries[i], best)))
            best = &r->entries[i];
    return best;
}

int kvz_config_pick_matches(const kvz_config_pick *pick, uint64_t config_id)
{
    if (!pick->id_digits)
        return 0;
    return pick->id_digits >= 16 ? config_id == pick->id : config_id >> (64 - 4 * pick->id_digits) == pick->id;
}

int kvz_doc_record_pick(const kvz_doc_record *r, const kvz_config_pick *pick, const uint64_t *fingerprint,
                        const char *doc, const kvz_doc_entry **out)
{
    char name[40];
    *out = NULL;
    if (pick->number) {
        if (pick->number > r->n_entries)
            return kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s' has %u configuration(s); there is no %s (see kvz ls)", doc,
                              r->n_entries, kvz_config_pick_name(pick, name));
        *out = &r->entries[pick->number - 1];
        return KVZ_OK;
    }
    if (!pick->id_digits) {
        *out = kvz_doc_record_newest(r, fingerprint);
        return KVZ_OK;
    }
    for (uint32_t i = 0; i < r->n_entries; i++) {
        if (!kvz_config_pick_matches(pick, r->entries[i].config_id))
            continue;
        if (*out) {
            *out = NULL;
            return kvz_errorf(KVZ_ERR_ARG, "two configurations of '%s' have ids beginning %0*llx: give more digits "
                              "(kvz ls --json lists whole ids)", doc, (int)pick->id_digits,
                              (unsigned long long)pick->id);
        }
        *out = &r->entries[i];
    }
    return *out ? KVZ_OK
                : kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s' has no %s (see kvz ls%s)", doc, kvz_config_pick_name(pick, name),
                             pick->id_digits == 16 && pick->id >> 32 == 0
                                 ? "; a whole id has 16 hex digits: kvz ls --json lists them" : "");
}

const char *kvz_doc_record_short_id(const kvz_doc_record *r, uint64_t config_id, char out[17])
{
    int digits = 8;
    for (uint32_t i = 0; i < r->n_entries; i++) {
        uint64_t other = r->entries[i].config_id;
        while (other != config_id && digits < 16 && other >> (64 - 4 * digits) == config_id >> (64 - 4 * digits))
            digits++;
    }
    snprintf(out, 17, "%0*llx", digits, (unsigned long long)(config_id >> (64 - 4 * digits)));
    return out;
}

const char *kvz_config_pick_name(const kvz_config_pick *pick, char name[40])
{
    if (pick->number)
        snprintf(name, 40, "configuration %u", pick->number);
    else if (pick->id_digits)
        snprintf(name, 40, "configuration %0*llx", (int)pick->id_digits, (unsigned long long)pick->id);
    else
        name[0] = 0;
    return name;
}

int kvz_doc_record_set(kvz_doc_record *r, const kvz_doc_entry *e)
{
    uint8_t (*ids)[16] = malloc((size_t)e->n_segments * 16);
    if (!ids)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    memcpy(ids, e->artifact_ids, (size_t)e->n_segments * 16);
    for (uint32_t i = 0; i < r->n_entries; i++)
        if (r->entries[i].config_id == e->config_id) {
            free(r->entries[i].artifact_ids);
            r->entries[i] = *e;
            r->entries[i].artifact_ids = ids;
            return KVZ_OK;
        }
    kvz_doc_entry *grown = realloc(r->entries, (r->n_entries + 1) * sizeof *grown);
    if (!grown) {
        free(ids);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    r->entries = grown;
    r->entries[r->n_entries] = *e;
    r->entries[r->n_entries].artifact_ids = ids;
    r->n_entries++;
    return KVZ_OK;
}
