/* transfer.c — verified artifacts and document records into a store. */
#include "format/transfer.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kvz_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int kvz_unhex(const char *hex, uint8_t *bytes, size_t n)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int kvz_transfer_check(const void *bytes, size_t len, kvz_artifact *out)
{
    KVZ_TRY(kvz_artifact_open(out, bytes, len));
    return kvz_artifact_verify(out);
}

void kvz_prefix_key(uint64_t model_fingerprint, uint64_t prefix_hash, char out[64])
{
    snprintf(out, 64, "prefix/%016llx/%016llx", (unsigned long long)model_fingerprint,
             (unsigned long long)prefix_hash);
}

int kvz_transfer_check_key(const kvz_artifact *a, int is_prefix, const void *key, size_t key_len)
{
    const kvz_manifest *m = &a->manifest;
    int prefix = strcmp(m->method, "prefix") == 0;
    if (prefix != is_prefix)
        return kvz_errorf(KVZ_ERR_FORMAT, is_prefix ? "holds a document's artifact, not a shared prefix"
                                                    : "holds a shared prefix, not a document's artifact");
    if (is_prefix) {
        uint64_t hash;
        char named[64];
        memcpy(&hash, m->doc_hash, 8);
        kvz_prefix_key(m->model.fingerprint, hash, named);
        if (key_len != strlen(named) || memcmp(key, named, key_len) != 0)
            return kvz_errorf(KVZ_ERR_FORMAT, "holds another shared prefix (%s)", named);
        return KVZ_OK;
    }
    uint8_t id[16];
    if (!m->config[0])
        return KVZ_OK;
    kvz_artifact_id(m->config, m->doc_hash, m->segment, m->n_segments, id);
    if (key_len != 16 || memcmp(id, key, 16) != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "holds another artifact than its id names");
    return KVZ_OK;
}

typedef struct put_if_absent {
    kvz_store_db db;
    const void *key;
    size_t key_len;
    const void *val;
    size_t val_len;
    kvz_artifact_outcome outcome;
    int how; /* KVZ_TRANSFER_HELD_ONLY, KVZ_TRANSFER_WHOLE_FORM */
} put_if_absent;

typedef enum stored_copy {
    STORED_SAME,
    STORED_OTHER_BYTES,
    STORED_DAMAGED,
    STORED_OTHER_CUT,      /* another cut, compiled earlier than the incoming one */
    STORED_NEWER_OTHER_CUT /* another cut, compiled later */
} stored_copy;

/* Of two cuts of one segment, whether the stored one stays: the later way of
 * cutting (SPEC.md §8: two cuts of one form come from kvz of two ways, so
 * every segment of a form is decided alike), then the later compile (the
 * manifests' times), then the larger bytes, so that the order two copies
 * arrive in never decides. */
static int stored_cut_is_later(const kvz_artifact *stored, const kvz_artifact *incoming)
{
    const kvz_manifest *s = &stored->manifest, *i = &incoming->manifest;
    if (kvz_manifest_cut_era(s) != kvz_manifest_cut_era(i))
        return kvz_manifest_cut_era(s) > kvz_manifest_cut_era(i);
    if (s->created != i->created)
        return s->created > i->created;
    size_t n = stored->size < incoming->size ? stored->size : incoming->size;
    int order = memcmp(stored->data, incoming->data, n);
    return order != 0 ? order > 0 : stored->size > incoming->size;
}

/* What the stored copy is beside the incoming one (verified), opened once:
 * with the same bytes, or sound, it is kept. With other bytes, failing its
 * checks: damaged, which would otherwise stay for good (the id says the store
 * has it); opening checks the whole file's checksum, which damage on disk
 * breaks (a full verify, every section decoded, would cost each copy compiled
 * elsewhere that much inside the write transaction); one of a format this
 * build cannot read stays. Sound, with other tokens (asked with `cuts`, of a
 * document's artifact): another cut of its document, under the same id (kvz
 * before 0.3.3 or 0.3.11 cut some documents otherwise, SPEC §8), which mixed with this
 * cut would miss or repeat text. */
static stored_copy classify_stored(const void *val, size_t len, const put_if_absent *p, int cuts)
{
    if (len == p->val_len && memcmp(val, p->val, len) == 0)
        return STORED_SAME;
    kvz_artifact stored, incoming;
    int rc = kvz_artifact_open(&stored, val, len);
    stored_copy what = rc == KVZ_ERR_FORMAT ? STORED_DAMAGED : STORED_OTHER_BYTES;
    if (rc == KVZ_OK && cuts && p->db == KVZ_DB_ARTIFACTS &&
        kvz_artifact_open(&incoming, p->val, p->val_len) == KVZ_OK) {
        uint32_t n = incoming.manifest.n_tokens;
        int32_t *tokens = malloc((n ? n : 1) * sizeof *tokens);
        if (tokens && kvz_artifact_read_tokens(&incoming, tokens) == KVZ_OK &&
            !kvz_artifact_holds_tokens(&stored, tokens, n))
            what = stored_cut_is_later(&stored, &incoming) ? STORED_NEWER_OTHER_CUT : STORED_OTHER_CUT;
        free(tokens);
    }
    kvz_error_clear();
    return what;
}

static int put_if_absent_fn(kvz_store_txn *t, void *ctx)
{
    put_if_absent *p = ctx;
    const void *v;
    size_t n;
    p->outcome = KVZ_ARTIFACT_PRESENT;
    int rc = kvz_store_get(t, p->db, p->key, p->key_len, &v, &n);
    stored_copy stored = rc == KVZ_OK ? classify_stored(v, n, p, !(p->how & KVZ_TRANSFER_HELD_ONLY)) : STORED_SAME;
    if (rc == KVZ_OK && stored == STORED_OTHER_BYTES)
        return p->outcome = KVZ_ARTIFACT_OTHER_BYTES, KVZ_OK;
    if (rc == KVZ_OK && stored == STORED_NEWER_OTHER_CUT)
        return p->outcome = KVZ_ARTIFACT_NEWER_CUT, KVZ_OK;
    if (rc == KVZ_OK && stored == STORED_DAMAGED)
        p->outcome = KVZ_ARTIFACT_REPAIRED;
    else if (rc == KVZ_OK && stored == STORED_OTHER_CUT) {
        if (!(p->how & KVZ_TRANSFER_WHOLE_FORM))
            return kvz_errorf(KVZ_ERR_FORMAT, "the store holds this segment of the document cut otherwise, under "
                              "the same id (a kvz before 0.3.3, or before 0.3.11, cut some documents into other "
                              "segments): bring every "
                              "segment of the document at once (one kvz import of all of them, a bundle), or kvz rm "
                              "the store's documents of this content first (and kvz gc, if none uses it)");
        p->outcome = KVZ_ARTIFACT_RECUT;
    } else if (rc == KVZ_ERR_NOT_FOUND && (p->how & KVZ_TRANSFER_HELD_ONLY))
        return p->outcome = KVZ_ARTIFACT_ABSENT, KVZ_OK;
    else if (rc == KVZ_ERR_NOT_FOUND)
        p->outcome = KVZ_ARTIFACT_ADDED;
    else
        return rc; /* present (content addressing: the same thing), or a read error */
    return kvz_store_put(t, p->db, p->key, p->key_len, p->val, p->val_len);
}

int kvz_transfer_artifact(kvz_store *s, const uint8_t id[16], const void *bytes, size_t len, int how,
                          kvz_artifact_outcome *outcome)
{
    put_if_absent p = {KVZ_DB_ARTIFACTS, id, 16, bytes, len, KVZ_ARTIFACT_PRESENT, how};
    int rc = kvz_store_write(s, put_if_absent_fn, &p);
    if (outcome)
        *outcome = rc == KVZ_OK ? p.outcome : KVZ_ARTIFACT_PRESENT;
    return rc;
}

int kvz_transfer_prefix(kvz_store *s, const kvz_artifact *prefix, int held_only, kvz_artifact_outcome *outcome)
{
    const kvz_manifest *m = &prefix->manifest;
    if (strcmp(m->method, "prefix") != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "a shared prefix must be an artifact of method 'prefix', not '%s'",
                          m->method);
    uint64_t prefix_hash;
    memcpy(&prefix_hash, m->doc_hash, 8); /* a prefix artifact names itself by its hash */
    char key[64];
    kvz_prefix_key(m->model.fingerprint, prefix_hash, key);
    put_if_absent p = {KVZ_DB_META, key, strlen(key), prefix->data, prefix->size, KVZ_ARTIFACT_PRESENT,
                       held_only ? KVZ_TRANSFER_HELD_ONLY : 0};
    int rc = kvz_store_write(s, put_if_absent_fn, &p);
    if (outcome)
        *outcome = rc == KVZ_OK ? p.outcome : KVZ_ARTIFACT_PRESENT;
    return rc;
}

void kvz_content_stamp_of(const kvz_doc_record *r, kvz_content_stamp *out)
{
    const kvz_doc_entry *e = kvz_doc_record_newest(r, NULL);
    out->newest = e ? e->created : 0;
    memcpy(out->doc_hash, r->doc_hash, 16);
}

/* The newer compile wins, decided once for the whole document (its newest
 * configuration), so that no configuration is lost to the order they arrive
 * in; at equal times the larger content hash, so that merging A into B and B
 * into A give the same store. */
int kvz_content_wins(const kvz_content_stamp *a, const kvz_content_stamp *b)
{
    return a->newest != b->newest ? a->newest > b->newest : memcmp(a->doc_hash, b->doc_hash, 16) > 0;
}

/* 0: incoming wins; KVZ_STAYS_NEWER or KVZ_STAYS_SAME_TIME: stored stays. */
static int stored_content_stays(const kvz_doc_record *stored, const kvz_doc_record *incoming)
{
    kvz_content_stamp s, i;
    kvz_content_stamp_of(stored, &s);
    kvz_content_stamp_of(incoming, &i);
    return !kvz_content_wins(&s, &i) ? 0 : s.newest == i.newest ? KVZ_STAYS_SAME_TIME : KVZ_STAYS_NEWER;
}

/* Whether the record of `name` holds other content that stays against `incoming`. */
static int record_stays(kvz_store_txn *t, const char *name, const kvz_doc_record *incoming, int *stays)
{
    *stays = 0;
    const void *val;
    size_t len;
    kvz_doc_record rec = {0};
    int rc = kvz_store_get(t, KVZ_DB_DOCS, name, strlen(name), &val, &len);
    if (rc == KVZ_ERR_NOT_FOUND)
        return KVZ_OK;
    if (rc == KVZ_OK)
        rc = kvz_doc_record_decode(val, len, &rec);
    if (rc == KVZ_OK)
        *stays = memcmp(rec.doc_hash, incoming->doc_hash, 16) != 0 ? stored_content_stays(&rec, incoming) : 0;
    kvz_doc_record_free(&rec);
    return rc == KVZ_OK ? KVZ_OK : kvz_error_context(rc, "document record of '%s'", name);
}

int kvz_transfer_loses(kvz_store *s, const char *name, const kvz_doc_record *incoming, int *loses)
{
    kvz_store_txn *t = NULL;
    *loses = 0;
    KVZ_TRY(kvz_store_read_begin(s, &t));
    int rc = incoming->n_entries ? record_stays(t, name, incoming, loses) : KVZ_OK;
    kvz_store_read_end(t);
    return rc;
}

/* Of two forms of one configuration of one content with other artifacts
 * (segments cut otherwise, SPEC.md §8), whether the stored one stays: the
 * later compile; at equal times the one whose ids compare larger, so that
 * the order two stores or bundles arrive in does not decide. */
static int entry_stays(const kvz_doc_entry *have, const kvz_doc_entry *e)
{
    if (have->created != e->created)
        return have->created > e->created;
    uint32_t n = have->n_segments < e->n_segments ? have->n_segments : e->n_segments;
    int order = memcmp(have->artifact_ids, e->artifact_ids, (size_t)n * 16);
    return order != 0 ? order > 0 : have->n_segments > e->n_segments;
}

int kvz_doc_record_put(kvz_store_txn *t, const char *name, const kvz_doc_record *incoming,
                       int replace_other_content, kvz_entry_outcome *outcomes, uint32_t *dropped)
{
    if (dropped)
        *dropped = 0;
    const void *val;
    size_t len;
    kvz_doc_record rec = {0};
    kvz_entry_outcome fresh = KVZ_ENTRY_ADDED;
    int rc = kvz_store_get(t, KVZ_DB_DOCS, name, strlen(name), &val, &len);
    if (rc == KVZ_OK) {
        rc = kvz_doc_record_decode(val, len, &rec);
        if (rc == KVZ_OK && memcmp(rec.doc_hash, incoming->doc_hash, 16) != 0) {
            int stays = !replace_other_content && stored_content_stays(&rec, incoming);
            for (uint32_t i = 0; dropped && !stays && i < rec.n_entries; i++)
                *dropped += !kvz_doc_record_find(incoming, rec.entries[i].config_id);
            kvz_doc_record_free(&rec); /* replaced: other content's configs no longer apply */
            if (stays) {
                for (uint32_t i = 0; i < incoming->n_entries; i++)
                    outcomes[i] = KVZ_ENTRY_KEPT_NEWER;
                return KVZ_OK;
            }
            fresh = KVZ_ENTRY_REPLACED;
        }
    } else if (rc == KVZ_ERR_NOT_FOUND) {
        rc = KVZ_OK;
    }
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "document record of '%s'", name);
    int changed = 0;
    for (uint32_t i = 0; i < incoming->n_entries && rc == KVZ_OK; i++) {
        const kvz_doc_entry *e = &incoming->entries[i], *have = kvz_doc_record_find(&rec, e->config_id);
        if (have && !replace_other_content && have->n_segments == e->n_segments &&
            memcmp(have->artifact_ids, e->artifact_ids, (size_t)e->n_segments * 16) == 0) {
            outcomes[i] = KVZ_ENTRY_PRESENT;
            kvz_doc_entry *kept = &rec.entries[have - rec.entries];
            /* compiled again elsewhere: the later time, so that which form is a
             * document's newest does not hang on the order stores and bundles arrive */
            if (e->created > kept->created) {
                kept->created = e->created;
                changed = 1;
            }
            if (e->stored_bytes != kept->stored_bytes) { /* what the store holds, as the transfer counted it */
                kept->stored_bytes = e->stored_bytes;
                changed = 1;
            }
            continue;
        }
        if (have && !replace_other_content && entry_stays(have, e)) {
            outcomes[i] = KVZ_ENTRY_CUT_KEPT; /* another cut of this form, compiled later: kept */
            continue;
        }
        outcomes[i] = have && !replace_other_content ? KVZ_ENTRY_CUT_REPLACED : fresh;
        rc = kvz_doc_record_set(&rec, e);
        changed = 1;
    }
    memcpy(rec.doc_hash, incoming->doc_hash, 16);
    kvz_buffer b = {0};
    if (rc == KVZ_OK && changed)
        kvz_doc_record_encode(&rec, &b);
    if (rc == KVZ_OK && changed)
        rc = b.failed ? kvz_errorf(KVZ_ERR_NOMEM, "out of memory")
                      : kvz_store_put(t, KVZ_DB_DOCS, name, strlen(name), b.data, b.len);
    kvz_buffer_free(&b);
    kvz_doc_record_free(&rec);
    return rc;
}

/* One configuration as a record of one entry (its arrays stay the caller's). */
static kvz_doc_record one_entry(const uint8_t doc_hash[16], const kvz_doc_entry *e)
{
    kvz_doc_record r = {.n_entries = 1, .entries = (kvz_doc_entry *)e};
    memcpy(r.doc_hash, doc_hash, 16);
    return r;
}

int kvz_doc_record_put_entry(kvz_store_txn *t, const char *name, const uint8_t doc_hash[16],
                             const kvz_doc_entry *e, int replace_other_content, kvz_entry_outcome *outcome,
                             uint32_t *dropped)
{
    kvz_doc_record r = one_entry(doc_hash, e);
    return kvz_doc_record_put(t, name, &r, replace_other_content, outcome, dropped);
}

int kvz_transfer_check_cut(const char *name, const kvz_doc_entry *e, uint64_t held_tokens)
{
    if (held_tokens == e->n_tokens)
        return KVZ_OK;
    return kvz_errorf(KVZ_ERR_FORMAT, "'%s': the segments of its form %016llx hold %llu tokens, its record %u: "
                      "segments of two different cuts of the document (a kvz before 0.3.3, or before 0.3.11, cut "
                      "some otherwise); kvz "
                      "compile --force of it, with the options it was compiled with, makes them whole", name,
                      (unsigned long long)e->config_id, (unsigned long long)held_tokens, e->n_tokens);
}

int kvz_manifest_cut_era(const kvz_manifest *m)
{
    unsigned major = 0, minor = 0, patch = 0;
    if (sscanf(m->compiler, "kvz %u.%u.%u", &major, &minor, &patch) != 3)
        return KVZ_CUT_ERAS - 1; /* not kvz's own form: taken as the current cut */
    if (major > 0 || minor > 3 || (minor == 3 && patch >= 11))
        return 2;
    return minor == 3 && patch >= 3 ? 1 : 0;
}

typedef struct document_put {
    const char *name;
    const kvz_doc_record *incoming;
    kvz_entry_outcome *outcomes;
} document_put;

static int document_put_fn(kvz_store_txn *t, void *ctx)
{
    document_put *p = ctx;
    int stays;
    KVZ_TRY(record_stays(t, p->name, p->incoming, &stays));
    if (stays) { /* decided before the artifacts: a caller that asked kvz_transfer_loses wrote none */
        for (uint32_t i = 0; i < p->incoming->n_entries; i++)
            p->outcomes[i] = KVZ_ENTRY_KEPT_NEWER;
        return KVZ_OK;
    }
    /* the entries as the store holds them: each form's bytes those of the
     * artifacts stored under its ids (a copy with other bytes may have been
     * kept, SPEC.md §7) */
    kvz_doc_entry *entries = malloc(p->incoming->n_entries * sizeof *entries);
    if (!entries)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int rc = KVZ_OK;
    for (uint32_t k = 0; k < p->incoming->n_entries && rc == KVZ_OK; k++) {
        const kvz_doc_entry *e = &p->incoming->entries[k];
        entries[k] = *e;
        entries[k].stored_bytes = 0;
        for (uint32_t i = 0; i < e->n_segments && rc == KVZ_OK; i++) {
            const void *v;
            size_t n = 0;
            rc = kvz_store_get(t, KVZ_DB_ARTIFACTS, e->artifact_ids[i], 16, &v, &n);
            if (rc == KVZ_ERR_NOT_FOUND) {
                char id[33];
                kvz_hex(e->artifact_ids[i], 16, id);
                rc = kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s': artifact %s (segment %u of %u) is not in the store",
                                p->name, id, i + 1, e->n_segments);
            }
            entries[k].stored_bytes += n;
        }
    }
    kvz_doc_record held = *p->incoming;
    held.entries = entries;
    if (rc == KVZ_OK)
        rc = kvz_doc_record_put(t, p->name, &held, 0, p->outcomes, NULL);
    free(entries);
    return rc;
}

typedef struct documents_put {
    size_t n;
    const char *const *names;
    const kvz_doc_record *const *incoming;
    kvz_entry_outcome *const *outcomes;
} documents_put;

static int documents_put_fn(kvz_store_txn *t, void *ctx)
{
    const documents_put *d = ctx;
    for (size_t i = 0; i < d->n; i++) {
        document_put p = {d->names[i], d->incoming[i], d->outcomes[i]};
        if (d->incoming[i]->n_entries)
            KVZ_TRY(document_put_fn(t, &p));
    }
    return KVZ_OK;
}

int kvz_transfer_documents(kvz_store *s, size_t n, const char *const *names, const kvz_doc_record *const *incoming,
                           kvz_entry_outcome *const *outcomes)
{
    documents_put d = {n, names, incoming, outcomes};
    return n ? kvz_store_write(s, documents_put_fn, &d) : KVZ_OK;
}

int kvz_transfer_document(kvz_store *s, const char *name, const kvz_doc_record *incoming,
                          kvz_entry_outcome *outcomes)
{
    /* no configurations: nothing to write, no transaction opened */
    return incoming->n_entries ? kvz_transfer_documents(s, 1, &name, &incoming, &outcomes) : KVZ_OK;
}

int kvz_transfer_entry(kvz_store *s, const char *name, const uint8_t doc_hash[16], const kvz_doc_entry *e,
                       kvz_entry_outcome *outcome)
{
    kvz_doc_record r = one_entry(doc_hash, e);
    kvz_entry_outcome o = KVZ_ENTRY_ADDED;
    int rc = kvz_transfer_document(s, name, &r, &o);
    if (outcome)
        *outcome = o;
    return rc;
}

typedef struct doc_scan {
    int (*skip)(void *ctx, const void *name, size_t len);
    kvz_doc_visit_fn fn;
    void *ctx;
} doc_scan;

static int doc_scan_visit(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    doc_scan *d = ctx;
    if (d->skip && d->skip(d->ctx, key, key_len))
        return KVZ_OK;
    kvz_doc_record rec;
    int rc = kvz_doc_record_decode(val, val_len, &rec);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "document '%.*s'", (int)key_len, (const char *)key);
    char *name = strndup(key, key_len);
    rc = name ? d->fn(d->ctx, name, &rec) : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    free(name);
    kvz_doc_record_free(&rec);
    return rc;
}

/* A path as the file system reads it, for comparing spellings: "./"
 * components and repeated slashes dropped (".." kept: it may pass a link). */
static size_t path_spelt_plainly(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && s[end] != '/')
            end++;
        int dot = end - i == 1 && s[i] == '.';
        if (end > i && !dot) {
            if (o > 0 || s[0] == '/')
                out[o++] = '/';
            memcpy(out + o, s + i, end - i);
            o += end - i;
        }
        i = end + 1;
    }
    if (o == 0 && n > 0 && s[0] == '/')
        out[o++] = '/';
    return o;
}

/* The last component of a name: after its last '/' or, in an archive
 * member's "ARCHIVE:MEMBER", its last ':' (whichever comes later). */
static const char *file_part(const char *s, size_t n, size_t *len)
{
    size_t i = n;
    while (i > 0 && s[i - 1] != '/' && s[i - 1] != ':')
        i--;
    *len = n - i;
    return s + i;
}

typedef struct near_names {
    const char *name; /* asked for */
    char *plain;      /* its plain spelling */
    size_t plain_len;
    char *buf; /* a stored name's plain spelling */
    char list[1400];
    size_t listed, more, seen;
} near_names;

#define NEAR_NAMES_LOOKED_AT 100000 /* a service asked for unknown names: a bounded hint */

static int note_near_name(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    near_names *nn = ctx;
    if (++nn->seen > NEAR_NAMES_LOOKED_AT)
        return KVZ_ERR_RANGE; /* stops the scan: the names so far are the hint */
    size_t want_len, have_len;
    const char *want = file_part(nn->name, strlen(nn->name), &want_len);
    const char *have = file_part(key, key_len, &have_len);
    int near = have_len == want_len && memcmp(want, have, want_len) == 0 && want_len > 0;
    if (!near && key_len < 4096) {
        size_t plain_len = path_spelt_plainly(key, key_len, nn->buf);
        near = plain_len == nn->plain_len && memcmp(nn->buf, nn->plain, plain_len) == 0;
        /* a folder or an archive given for a document (`--doc notes`): the documents in it */
        near = near || (nn->plain_len > 0 && plain_len > nn->plain_len &&
                        memcmp(nn->buf, nn->plain, nn->plain_len) == 0 &&
                        (nn->buf[nn->plain_len] == '/' || nn->buf[nn->plain_len] == ':'));
    }
    if (!near)
        return KVZ_OK;
    size_t used = strlen(nn->list);
    if (nn->listed < 3 && used + key_len + 8 < sizeof nn->list) {
        snprintf(nn->list + used, sizeof nn->list - used, "%s'%.*s'", nn->listed ? ", " : "", (int)key_len,
                 (const char *)key);
        nn->listed++;
    } else {
        nn->more++;
    }
    return KVZ_OK;
}

int kvz_document_missing(kvz_store_txn *t, const char *name, const char *store_path, const char *tail)
{
    char where[1100] = "";
    if (store_path)
        snprintf(where, sizeof where, " '%s'", store_path);
    size_t n = strlen(name);
    near_names nn = {.name = name};
    nn.plain = malloc(n + 1);
    nn.buf = malloc(4096);
    if (nn.plain && nn.buf) {
        nn.plain_len = path_spelt_plainly(name, n, nn.plain);
        int rc = kvz_store_scan(t, KVZ_DB_DOCS, note_near_name, &nn);
        if (rc != KVZ_OK && rc != KVZ_ERR_RANGE)
            nn.listed = 0; /* only a hint: the error stays "not found" */
    }
    free(nn.plain);
    free(nn.buf);
    if (nn.listed == 0)
        return kvz_errorf(KVZ_ERR_NOT_FOUND, "no document '%s' in the store%s (see kvz ls)%s", name, where, tail);
    char more[64] = "";
    if (nn.more)
        snprintf(more, sizeof more, " and %zu more", nn.more);
    return kvz_errorf(KVZ_ERR_NOT_FOUND,
                      "no document '%s' in the store%s; it has %s%s (a document's name is the path compile "
                      "was given)%s",
                      name, where, nn.list, more, tail);
}

int kvz_scan_documents(kvz_store_txn *t, kvz_doc_visit_fn fn, void *ctx)
{
    return kvz_scan_documents_but(t, NULL, fn, ctx);
}

int kvz_scan_documents_but(kvz_store_txn *t, int (*skip)(void *ctx, const void *name, size_t len),
                           kvz_doc_visit_fn fn, void *ctx)
{
    doc_scan d = {skip, fn, ctx};
    return kvz_store_scan(t, KVZ_DB_DOCS, doc_scan_visit, &d);
}
