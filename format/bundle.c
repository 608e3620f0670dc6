/* bundle.c — writing and reading `.kvz` bundles (format/BUNDLE.md). */
#include "format/bundle.h"
#include "common/buffer.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/timer.h"
#include "format/transfer.h"

#include <archive.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <archive_entry.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define DEFAULT_MAX_ENTRY (4ull << 30)
#define DEFAULT_MAX_MANIFEST (256ull << 20)

void kvz_bundle_manifest_free(kvz_bundle_manifest *m)
{
    for (size_t i = 0; i < m->n_docs; i++) {
        free(m->docs[i].name);
        kvz_doc_record_free(&m->docs[i].record);
    }
    free(m->docs);
    free(m->prefixes);
    free(m->artifacts);
    memset(m, 0, sizeof *m);
}

const kvz_bundle_file *kvz_bundle_find_artifact(const kvz_bundle_manifest *m, const uint8_t id[16])
{
    size_t lo = 0, hi = m->n_artifacts; /* sorted by id (checked when read) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(m->artifacts[mid].id, id, 16);
        if (c == 0)
            return &m->artifacts[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void artifact_path(const uint8_t id[16], char out[96])
{
    char hex[33];
    kvz_hex(id, 16, hex);
    snprintf(out, 96, "artifacts/%s.kvz", hex);
}

static void prefix_path(uint64_t model, uint64_t prefix_hash, char out[96])
{
    snprintf(out, 96, "prefixes/%016llx-%016llx.kvz", (unsigned long long)model, (unsigned long long)prefix_hash);
}

static void hex64(uint64_t v, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

/* ---- writing --------------------------------------------------------------- */

typedef struct pending {
    kvz_bundle_file file;
    kvz_artifact a;
    /* a document's artifact: the first document of the bundle that uses it, and whether one that uses it is
     * the document its manifest names (else it is written with the first's name, name_artifacts) */
    const char *user;
    int named;
} pending;

struct kvz_bundle_writer {
    pending *prefixes, *artifacts;
    size_t n_prefixes, n_artifacts, cap_prefixes, cap_artifacts;
    kvz_bundle_manifest m; /* documents only */
    size_t cap_docs;
};

int kvz_bundle_writer_new(kvz_bundle_writer **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
}

void kvz_bundle_writer_free(kvz_bundle_writer *w)
{
    if (!w)
        return;
    free(w->prefixes);
    free(w->artifacts);
    kvz_bundle_manifest_free(&w->m);
    free(w);
}

static pending make_pending(const kvz_artifact *a)
{
    pending p;
    memset(&p, 0, sizeof p);
    p.a = *a;
    p.file.model = a->manifest.model.fingerprint;
    p.file.bytes = a->size;
    p.file.xxh3 = XXH3_64bits(a->data, a->size);
    return p;
}

int kvz_bundle_add_prefix(kvz_bundle_writer *w, const kvz_artifact *prefix)
{
    pending p = make_pending(prefix);
    memcpy(&p.file.prefix_hash, prefix->manifest.doc_hash, 8);
    prefix_path(p.file.model, p.file.prefix_hash, p.file.path);
    for (size_t i = 0; i < w->n_prefixes; i++)
        if (strcmp(w->prefixes[i].file.path, p.file.path) == 0)
            return KVZ_OK;
    void *grown = kvz_grow(w->prefixes, &w->cap_prefixes, w->n_prefixes, sizeof *w->prefixes);
    if (!grown)
        return KVZ_ERR_NOMEM;
    w->prefixes = grown;
    w->prefixes[w->n_prefixes++] = p;
    return KVZ_OK;
}

int kvz_bundle_add_artifact(kvz_bundle_writer *w, const uint8_t id[16], const kvz_artifact *a)
{
    pending p = make_pending(a);
    memcpy(p.file.id, id, 16);
    artifact_path(id, p.file.path);
    void *grown = kvz_grow(w->artifacts, &w->cap_artifacts, w->n_artifacts, sizeof *w->artifacts);
    if (!grown)
        return KVZ_ERR_NOMEM;
    w->artifacts = grown;
    w->artifacts[w->n_artifacts++] = p; /* duplicates are dropped when written */
    return KVZ_OK;
}

int kvz_bundle_add_entry(kvz_bundle_writer *w, const char *name, const uint8_t doc_hash[16],
                         const kvz_doc_entry *e)
{
    kvz_bundle_manifest *m = &w->m;
    kvz_bundle_doc *d = m->n_docs ? &m->docs[m->n_docs - 1] : NULL;
    if (!d || strcmp(d->name, name) != 0) { /* a document's entries arrive together */
        void *grown = kvz_grow(m->docs, &w->cap_docs, m->n_docs, sizeof *m->docs);
        if (!grown)
            return KVZ_ERR_NOMEM;
        m->docs = grown;
        d = &m->docs[m->n_docs];
        memset(d, 0, sizeof *d);
        if (!(d->name = strdup(name)))
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        memcpy(d->hash, doc_hash, 16);
        memcpy(d->record.doc_hash, doc_hash, 16);
        m->n_docs++;
    }
    return kvz_doc_record_set(&d->record, e);
}

static int by_id(const void *a, const void *b)
{
    return memcmp(((const pending *)a)->file.id, ((const pending *)b)->file.id, 16);
}

static json_t *hex_string(const uint8_t *bytes, size_t n)
{
    char hex[65];
    kvz_hex(bytes, n, hex);
    return json_string(hex);
}

static json_t *hex64_string(uint64_t v)
{
    char hex[17];
    hex64(v, hex);
    return json_string(hex);
}

static json_t *file_json(const kvz_bundle_file *f, int is_prefix)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(f->path));
    if (is_prefix)
        json_object_set_new(o, "prefix_hash", hex64_string(f->prefix_hash));
    else
        json_object_set_new(o, "id", hex_string(f->id, 16));
    json_object_set_new(o, "model", hex64_string(f->model));
    json_object_set_new(o, "bytes", json_integer((json_int_t)f->bytes));
    json_object_set_new(o, "xxh3", hex64_string(f->xxh3));
    return o;
}

/* The manifest's own checksum (BUNDLE.md §2): xxh3-64 of its bytes with the
 * 16 digits of its "manifest_xxh3" value read as '0's. The tar and zstd
 * layers check nothing, and only the manifest says which document a file is
 * and how new: without it a flipped bit could rename a document. */
#define CHECKSUM_KEY "manifest_xxh3"

static int json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Where the 16 digits of the one "manifest_xxh3" member's value begin; -1:
 * no such member; -2: more than one, or its value is not 16 characters. A
 * document name cannot look like it: a '"' inside a string is escaped. */
static long checksum_digits_at(const char *json, size_t len)
{
    static const char key[] = "\"" CHECKSUM_KEY "\"";
    const char *end = json + len;
    long at = -1;
    for (const char *p = json; (p = memmem(p, (size_t)(end - p), key, sizeof key - 1)); p += sizeof key - 1) {
        const char *q = p + sizeof key - 1;
        while (q < end && json_space(*q))
            q++;
        if (q == end || *q != ':')
            continue; /* the string as a value, not as a key */
        for (q++; q < end && json_space(*q);)
            q++;
        if (at != -1 || end - q < 18 || q[0] != '"' || q[17] != '"')
            return -2;
        at = (long)(q + 1 - json);
    }
    return at;
}

static int manifest_checksum(const char *json, size_t len, size_t at, uint64_t *sum)
{
    XXH3_state_t *state = XXH3_createState(); /* streamed: the manifest is not copied to zero its digits */
    if (!state)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    XXH3_64bits_reset(state);
    XXH3_64bits_update(state, json, at);
    XXH3_64bits_update(state, "0000000000000000", 16);
    XXH3_64bits_update(state, json + at + 16, len - at - 16);
    *sum = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return KVZ_OK;
}

static int manifest_json(const kvz_bundle_writer *w, char **out, size_t *len)
{
    json_t *root = json_object(), *prefixes = json_array(), *artifacts = json_array(), *docs = json_array();
    json_object_set_new(root, "format", json_string("kvz-bundle"));
    json_object_set_new(root, "version", json_integer(KVZ_BUNDLE_VERSION));
    json_object_set_new(root, "compiler", json_string("kvz " KVZ_VERSION_STRING));
    json_object_set_new(root, "created", json_integer((json_int_t)kvz_created_time()));
    for (size_t i = 0; i < w->n_prefixes; i++)
        json_array_append_new(prefixes, file_json(&w->prefixes[i].file, 1));
    for (size_t i = 0; i < w->n_artifacts; i++)
        json_array_append_new(artifacts, file_json(&w->artifacts[i].file, 0));
    int rc = KVZ_OK;
    for (size_t i = 0; i < w->m.n_docs && rc == KVZ_OK; i++) {
        const kvz_bundle_doc *d = &w->m.docs[i];
        json_t *doc = json_object(), *configs = json_array(), *name = json_string(d->name);
        if (!name) {
            rc = kvz_errorf(KVZ_ERR_UNSUPPORTED, "document name '%s' is not UTF-8; a bundle's manifest cannot name it",
                            d->name);
            json_decref(doc), json_decref(configs);
            break;
        }
        json_object_set_new(doc, "name", name);
        json_object_set_new(doc, "hash", hex_string(d->hash, 16));
        for (uint32_t k = 0; k < d->record.n_entries; k++) {
            const kvz_doc_entry *e = &d->record.entries[k];
            json_t *c = json_object(), *ids = json_array();
            json_object_set_new(c, "config", hex64_string(e->config_id));
            json_object_set_new(c, "model", hex64_string(e->model_fingerprint));
            json_object_set_new(c, "summary", json_string(e->summary));
            json_object_set_new(c, "created", json_integer((json_int_t)e->created));
            json_object_set_new(c, "tokens", json_integer(e->n_tokens));
            json_object_set_new(c, "bytes", json_integer((json_int_t)e->stored_bytes));
            for (uint32_t s = 0; s < e->n_segments; s++)
                json_array_append_new(ids, hex_string(e->artifact_ids[s], 16));
            json_object_set_new(c, "artifacts", ids);
            json_array_append_new(configs, c);
        }
        json_object_set_new(doc, "configs", configs);
        json_array_append_new(docs, doc);
    }
    json_object_set_new(root, "prefixes", prefixes);
    json_object_set_new(root, "artifacts", artifacts);
    json_object_set_new(root, "documents", docs);
    json_object_set_new(root, CHECKSUM_KEY, json_string("0000000000000000")); /* filled in below */
    *out = rc == KVZ_OK ? json_dumps(root, JSON_INDENT(1) | JSON_ENSURE_ASCII) : NULL;
    json_decref(root);
    if (rc == KVZ_OK && !*out)
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory writing the bundle manifest");
    *len = *out ? strlen(*out) : 0;
    long at = *out ? checksum_digits_at(*out, *len) : -1;
    uint64_t sum = 0;
    if (rc == KVZ_OK && at < 0)
        rc = kvz_errorf(KVZ_ERR_INTERNAL, "bundle manifest: its checksum member is not where it was put");
    if (rc == KVZ_OK)
        rc = manifest_checksum(*out, *len, (size_t)at, &sum);
    if (rc == KVZ_OK) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sum);
        memcpy(*out + at, hex, 16);
    } else {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* The artifact of this id the writer holds (sorted by id, without repeats), or NULL. */
static pending *find_pending(kvz_bundle_writer *w, const uint8_t id[16])
{
    pending key;
    memcpy(key.file.id, id, 16);
    return bsearch(&key, w->artifacts, w->n_artifacts, sizeof *w->artifacts, by_id);
}

/* Each artifact's users, in the bundle's document order (that of the
 * manifest's `documents`: the same on every run, for byte-equal bundles). */
static void find_users(kvz_bundle_writer *w)
{
    for (size_t d = 0; d < w->m.n_docs; d++) {
        const kvz_bundle_doc *doc = &w->m.docs[d];
        for (uint32_t k = 0; k < doc->record.n_entries; k++)
            for (uint32_t s = 0; s < doc->record.entries[k].n_segments; s++) {
                pending *p = find_pending(w, doc->record.entries[k].artifact_ids[s]);
                if (!p) /* never: kvz_bundle_add_entry's contract */
                    continue;
                p->user = p->user ? p->user : doc->name;
                p->named = p->named || strcmp(p->a.manifest.doc_name, doc->name) == 0;
            }
    }
}

/* Whether artifact p is written with its first user's name (find_users). */
static int renamed_in_bundle(const pending *p)
{
    return p->user && !p->named;
}

/* The bytes the bundle holds of artifact p: as stored, or written again with
 * its first user's name (*renamed, freed by the caller). */
static int pending_bytes(const pending *p, const void **data, size_t *size, uint8_t **renamed)
{
    const char *name = renamed_in_bundle(p) ? p->user : p->a.manifest.doc_name;
    return kvz_artifact_for_document(&p->a, name, data, size, renamed);
}

/* A document's artifact whose manifest names none of the bundle's documents
 * that use it (documents of one content share an artifact, which names the
 * first compiled: another document, maybe removed or private) is written with
 * the name of the first of them: its size and checksum here, and the sizes of
 * the configurations holding it. Its bytes are made again when written, not
 * kept: a store of moved documents would otherwise be copied into memory. */
static int name_artifacts(kvz_bundle_writer *w)
{
    find_users(w);
    for (size_t i = 0; i < w->n_artifacts; i++) {
        pending *p = &w->artifacts[i];
        const void *data;
        size_t size;
        uint8_t *renamed;
        if (!renamed_in_bundle(p))
            continue;
        KVZ_TRY(pending_bytes(p, &data, &size, &renamed));
        p->file.bytes = size;
        p->file.xxh3 = XXH3_64bits(data, size);
        free(renamed);
    }
    for (size_t d = 0; d < w->m.n_docs; d++) /* as the reader records them: the sum of its artifacts' sizes */
        for (uint32_t k = 0; k < w->m.docs[d].record.n_entries; k++) {
            kvz_doc_entry *e = &w->m.docs[d].record.entries[k];
            uint64_t sum = 0;
            int renamed = 0;
            for (uint32_t s = 0; s < e->n_segments; s++) {
                const pending *p = find_pending(w, e->artifact_ids[s]);
                sum += p ? p->file.bytes : 0;
                renamed = renamed || (p && renamed_in_bundle(p));
            }
            if (renamed) /* else the store's figure, as before */
                e->stored_bytes = sum;
        }
    return KVZ_OK;
}

static int write_entry(struct archive *ar, const char *path, const void *data, size_t size, const char *out)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    archive_entry_set_pathname(e, path);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, (time_t)kvz_created_time(), 0);
    int rc = archive_write_header(ar, e) == ARCHIVE_OK ? KVZ_OK
             : kvz_errorf(KVZ_ERR_IO, "bundle '%s': %s: %s", out, path, archive_error_string(ar));
    archive_entry_free(e);
    if (rc == KVZ_OK && size && archive_write_data(ar, data, size) != (la_ssize_t)size)
        rc = kvz_errorf(KVZ_ERR_IO, "bundle '%s': writing %s: %s", out, path, archive_error_string(ar));
    return rc;
}

/* Artifact p into the archive, its bytes as name_artifacts measured them. */
static int write_artifact(struct archive *ar, const pending *p, const char *out)
{
    const void *data;
    size_t size;
    uint8_t *renamed;
    KVZ_TRY(pending_bytes(p, &data, &size, &renamed));
    int rc = size == p->file.bytes && XXH3_64bits(data, size) == p->file.xxh3
                 ? write_entry(ar, p->file.path, data, size, out)
                 : kvz_errorf(KVZ_ERR_INTERNAL, "bundle '%s': %s came out other than the manifest says", out,
                              p->file.path);
    free(renamed);
    return rc;
}

int kvz_bundle_write(kvz_bundle_writer *w, const char *path, uint64_t *bytes)
{
    if (w->n_artifacts) /* qsort's base must not be NULL */
        qsort(w->artifacts, w->n_artifacts, sizeof *w->artifacts, by_id);
    size_t kept = 0;
    for (size_t i = 0; i < w->n_artifacts; i++)
        if (!kept || memcmp(w->artifacts[kept - 1].file.id, w->artifacts[i].file.id, 16) != 0)
            w->artifacts[kept++] = w->artifacts[i];
    w->n_artifacts = kept;

    KVZ_TRY(name_artifacts(w));
    char *json = NULL;
    size_t json_len = 0;
    KVZ_TRY(manifest_json(w, &json, &json_len));
    kvz_atomic_file f;
    int rc = kvz_atomic_file_open(&f, path);
    if (rc != KVZ_OK) {
        free(json);
        return rc;
    }
    struct archive *ar = archive_write_new();
    /* bytes_in_last_block 1: no zero padding after the zstd stream, which zstd itself would refuse */
    if (!ar || archive_write_add_filter_zstd(ar) != ARCHIVE_OK || archive_write_set_bytes_in_last_block(ar, 1) != ARCHIVE_OK ||
        archive_write_set_format_pax_restricted(ar) != ARCHIVE_OK || archive_write_open_FILE(ar, f.fp) != ARCHIVE_OK)
        rc = kvz_errorf(KVZ_ERR_IO, "bundle '%s': cannot start a tar.zst archive: %s", path,
                        ar ? archive_error_string(ar) : "out of memory");
    if (rc == KVZ_OK)
        rc = write_entry(ar, KVZ_BUNDLE_MANIFEST, json, json_len, path);
    for (size_t i = 0; i < w->n_prefixes && rc == KVZ_OK; i++)
        rc = write_entry(ar, w->prefixes[i].file.path, w->prefixes[i].a.data, w->prefixes[i].a.size, path);
    for (size_t i = 0; i < w->n_artifacts && rc == KVZ_OK; i++)
        rc = write_artifact(ar, &w->artifacts[i], path);
    int64_t size = 0;
    if (ar) {
        if (rc == KVZ_OK && archive_write_close(ar) != ARCHIVE_OK)
            rc = kvz_errorf(KVZ_ERR_IO, "bundle '%s': %s", path, archive_error_string(ar));
        size = archive_filter_bytes(ar, -1); /* what reached the file: a pipe has no size to ask */
        archive_write_free(ar);
    }
    free(json);
    if (rc != KVZ_OK) {
        kvz_atomic_file_abort(&f);
        return rc;
    }
    KVZ_TRY(kvz_atomic_file_commit(&f));
    if (bytes)
        *bytes = size > 0 ? (uint64_t)size : 0;
    return KVZ_OK;
}

/* ---- reading --------------------------------------------------------------- */

static int bad(const char *what, const char *detail)
{
    return kvz_errorf(KVZ_ERR_FORMAT, "bundle manifest: %s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

static int get_hex(json_t *o, const char *key, uint8_t *out, size_t n)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || kvz_unhex(s, out, n) != 0)
        return bad("a field is missing or not hex", key);
    return KVZ_OK;
}

static int get_hex64(json_t *o, const char *key, uint64_t *out)
{
    uint8_t b[8];
    KVZ_TRY(get_hex(o, key, b, 8));
    *out = 0;
    for (int i = 0; i < 8; i++)
        *out = *out << 8 | b[i];
    return KVZ_OK;
}

static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return bad("a count is missing or out of range", key);
    *out = (uint64_t)json_integer_value(v);
    return KVZ_OK;
}

static int parse_file(json_t *o, int is_prefix, kvz_bundle_file *f)
{
    if (!json_is_object(o))
        return bad("a file entry is not an object", NULL);
    memset(f, 0, sizeof *f);
    char expect[96];
    if (is_prefix) {
        KVZ_TRY(get_hex64(o, "prefix_hash", &f->prefix_hash));
        KVZ_TRY(get_hex64(o, "model", &f->model));
        prefix_path(f->model, f->prefix_hash, expect);
    } else {
        KVZ_TRY(get_hex(o, "id", f->id, 16));
        KVZ_TRY(get_hex64(o, "model", &f->model));
        artifact_path(f->id, expect);
    }
    const char *path = json_string_value(json_object_get(o, "path"));
    if (!path || strcmp(path, expect) != 0)
        return bad("a file's path is not the one its id names", path ? path : "(none)");
    snprintf(f->path, sizeof f->path, "%s", expect);
    KVZ_TRY(get_uint(o, "bytes", UINT64_MAX >> 1, &f->bytes));
    return get_hex64(o, "xxh3", &f->xxh3);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A name listed twice would have its second document written over the first. */
static int check_names_once(const kvz_bundle_manifest *m)
{
    if (m->n_docs < 2)
        return KVZ_OK;
    char **names = malloc(m->n_docs * sizeof *names);
    if (!names)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_docs; i++)
        names[i] = m->docs[i].name;
    qsort(names, m->n_docs, sizeof *names, compare_names);
    int rc = KVZ_OK;
    for (size_t i = 1; i < m->n_docs && rc == KVZ_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = bad("a document is listed twice", names[i]);
    free(names);
    return rc;
}

static int parse_entry(json_t *c, kvz_doc_entry *e, const kvz_bundle_manifest *m)
{
    if (!json_is_object(c))
        return bad("a configuration is not an object", NULL);
    memset(e, 0, sizeof *e);
    uint64_t v = 0;
    KVZ_TRY(get_hex64(c, "config", &e->config_id));
    KVZ_TRY(get_hex64(c, "model", &e->model_fingerprint));
    KVZ_TRY(get_uint(c, "created", UINT64_MAX >> 1, &e->created));
    KVZ_TRY(get_uint(c, "tokens", UINT32_MAX, &v));
    e->n_tokens = (uint32_t)v;
    KVZ_TRY(get_uint(c, "bytes", UINT64_MAX >> 1, &e->stored_bytes));
    const char *summary = json_string_value(json_object_get(c, "summary"));
    if (!summary || strlen(summary) >= sizeof e->summary)
        return bad("a configuration's summary is missing or too long", NULL);
    snprintf(e->summary, sizeof e->summary, "%s", summary);
    json_t *ids = json_object_get(c, "artifacts");
    size_t n = json_array_size(ids);
    if (!json_is_array(ids) || n == 0 || n > 1u << 20)
        return bad("a configuration has no artifacts", NULL);
    e->n_segments = (uint32_t)n;
    if (!(e->artifact_ids = calloc(n, 16)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(ids, i));
        if (!s || kvz_unhex(s, e->artifact_ids[i], 16) != 0)
            return bad("an artifact id is not 32 hex digits", NULL);
        const kvz_bundle_file *f = kvz_bundle_find_artifact(m, e->artifact_ids[i]);
        if (!f)
            return bad("a document names an artifact the bundle does not list", s);
        if (f->model != e->model_fingerprint)
            return bad("an artifact's model differs from its document configuration's", s);
    }
    return KVZ_OK;
}

static int parse_manifest(const char *json, size_t len, kvz_bundle_manifest *m)
{
    memset(m, 0, sizeof *m);
    /* the checksum first, on the bytes: damage is told as damage, whatever it hit */
    long at = checksum_digits_at(json, len);
    if (at == -2)
        return bad("its \"" CHECKSUM_KEY "\" member is malformed or repeated", NULL);
    if (at >= 0) {
        uint64_t have = 0;
        char hex[17];
        KVZ_TRY(manifest_checksum(json, len, (size_t)at, &have));
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)have);
        if (strncmp(hex, json + at, 16) != 0)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle manifest: damaged (changed since kvz pack wrote it): its "
                              "bytes hash to %s, its " CHECKSUM_KEY " says %.16s", hex, json + at);
        m->checksummed = 1;
    }
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return kvz_errorf(KVZ_ERR_FORMAT, "bundle manifest: not JSON (line %d: %s)", err.line, err.text);
    int rc = KVZ_OK;
    /* a kvz that writes the checksum and a manifest without it: the member lost to damage */
    const char *writer = json_string_value(json_object_get(root, "compiler"));
    unsigned major, minor, patch;
    if (at < 0 && writer && sscanf(writer, "kvz %u.%u.%u", &major, &minor, &patch) == 3 &&
        (major > 0 || minor > 2 || (minor == 2 && patch >= 2)))
        rc = kvz_errorf(KVZ_ERR_FORMAT, "bundle manifest: damaged: written by %.32s, which writes "
                        CHECKSUM_KEY ", and it has none", writer);
    /* the member found in the bytes must be the top level's, as parsed */
    json_t *sum = json_object_get(root, CHECKSUM_KEY);
    const char *digits = json_string_value(sum);
    if (rc == KVZ_OK && ((at >= 0) != (sum != NULL) ||
                         (at >= 0 && (!digits || strlen(digits) != 16 || strncmp(digits, json + at, 16) != 0))))
        rc = bad("its \"" CHECKSUM_KEY "\" member is malformed or repeated", NULL);
    const char *format = json_string_value(json_object_get(root, "format"));
    json_t *version = json_object_get(root, "version");
    json_t *prefixes = json_object_get(root, "prefixes"), *artifacts = json_object_get(root, "artifacts"),
           *docs = json_object_get(root, "documents");
    if (rc == KVZ_OK && (!format || strcmp(format, "kvz-bundle") != 0))
        rc = bad("not a kvz bundle (\"format\" is not \"kvz-bundle\")", NULL);
    else if (rc == KVZ_OK && (!json_is_integer(version) || json_integer_value(version) != KVZ_BUNDLE_VERSION))
        rc = kvz_errorf(KVZ_ERR_UNSUPPORTED, "bundle version %lld; this kvz reads version %d",
                        json_is_integer(version) ? (long long)json_integer_value(version) : -1LL, KVZ_BUNDLE_VERSION);
    else if (rc == KVZ_OK && (!json_is_array(prefixes) || !json_is_array(artifacts) || !json_is_array(docs)))
        rc = bad("prefixes, artifacts or documents is missing", NULL);
    if (rc == KVZ_OK) {
        const char *compiler = json_string_value(json_object_get(root, "compiler"));
        snprintf(m->compiler, sizeof m->compiler, "%s", compiler ? compiler : "");
        json_t *created = json_object_get(root, "created");
        m->created = json_is_integer(created) ? (uint64_t)json_integer_value(created) : 0;
        m->n_prefixes = json_array_size(prefixes);
        m->n_artifacts = json_array_size(artifacts);
        m->n_docs = json_array_size(docs);
        m->prefixes = calloc(m->n_prefixes + 1, sizeof *m->prefixes);
        m->artifacts = calloc(m->n_artifacts + 1, sizeof *m->artifacts);
        m->docs = calloc(m->n_docs + 1, sizeof *m->docs);
        if (!m->prefixes || !m->artifacts || !m->docs)
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->n_prefixes && rc == KVZ_OK; i++) {
        rc = parse_file(json_array_get(prefixes, i), 1, &m->prefixes[i]);
        for (size_t j = 0; j < i && rc == KVZ_OK; j++)
            if (strcmp(m->prefixes[j].path, m->prefixes[i].path) == 0)
                rc = bad("a prefix is listed twice", m->prefixes[i].path);
    }
    for (size_t i = 0; i < m->n_artifacts && rc == KVZ_OK; i++) {
        rc = parse_file(json_array_get(artifacts, i), 0, &m->artifacts[i]);
        if (rc == KVZ_OK && i && memcmp(m->artifacts[i - 1].id, m->artifacts[i].id, 16) >= 0)
            rc = bad("artifacts are not listed once each in id order", m->artifacts[i].path);
    }
    for (size_t i = 0; i < m->n_docs && rc == KVZ_OK; i++) {
        json_t *d = json_array_get(docs, i), *configs = json_object_get(d, "configs");
        kvz_bundle_doc *doc = &m->docs[i];
        json_t *name = json_object_get(d, "name");
        const char *s = json_string_value(name);
        if (!s || !*s || strlen(s) != json_string_length(name) || strlen(s) > KVZ_STORE_KEY_MAX)
            rc = bad("a document name is missing, empty, too long or holds NUL", NULL);
        else if (!(doc->name = strdup(s)))
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        if (rc == KVZ_OK)
            rc = get_hex(d, "hash", doc->hash, 16);
        if (rc == KVZ_OK && (!json_is_array(configs) || json_array_size(configs) == 0))
            rc = bad("a document has no configurations", s);
        memcpy(doc->record.doc_hash, doc->hash, 16);
        for (size_t k = 0; rc == KVZ_OK && k < json_array_size(configs); k++) {
            kvz_doc_entry e;
            rc = parse_entry(json_array_get(configs, k), &e, m);
            if (rc == KVZ_OK && kvz_doc_record_find(&doc->record, e.config_id))
                rc = bad("a document lists one configuration twice", s);
            if (rc == KVZ_OK)
                rc = kvz_doc_record_set(&doc->record, &e);
            free(e.artifact_ids);
        }
    }
    if (rc == KVZ_OK)
        rc = check_names_once(m);
    if (rc != KVZ_OK)
        kvz_bundle_manifest_free(m); /* the arrays were zeroed: partly filled entries free cleanly */
    json_decref(root);
    return rc;
}

typedef struct reading {
    struct archive *ar;
    const char *source;
    kvz_bundle_limits lim;
    const kvz_bundle_visitor *v;
    kvz_bundle_manifest m;
    int have_manifest;
} reading;

static int archive_failed(reading *r, const char *what)
{
    return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': %s: %s (truncated or corrupt?)", r->source, what,
                      archive_error_string(r->ar) ? archive_error_string(r->ar) : "unknown error");
}

/* The reason a path may not be extracted anywhere, or NULL. */
static const char *hostile_path(const char *p)
{
    if (!p || !*p)
        return "an empty path";
    if (p[0] == '/')
        return "an absolute path";
    for (const char *s = p; *s; s++)
        if (s[0] == '.' && s[1] == '.' && (s == p || s[-1] == '/') && (s[2] == '/' || s[2] == '\0'))
            return "a path that climbs out with '..'";
    return NULL;
}

static const char *entry_kind(mode_t type)
{
    switch (type) {
    case AE_IFLNK: return "a symbolic link";
    case AE_IFDIR: return "a directory";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO";
    case AE_IFSOCK: return "a socket";
    default: return "not a regular file";
    }
}

static int read_body(reading *r, struct archive_entry *e, const char *path, uint64_t limit, uint8_t **out,
                     size_t *len)
{
    if (!archive_entry_size_is_set(e))
        return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': entry '%s' declares no size", r->source, path);
    la_int64_t size = archive_entry_size(e);
    if (size < 0 || (uint64_t)size > limit)
        return kvz_errorf(KVZ_ERR_RANGE, "bundle '%s': entry '%s' declares %lld bytes, over the limit of %llu",
                          r->source, path, (long long)size, (unsigned long long)limit);
    /* grown as the data comes: a header may declare far more than follows it */
    size_t cap = (size_t)size < (1u << 20) ? (size_t)size : (1u << 20), got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    while (buf && got < (size_t)size) {
        if (got == cap) {
            size_t grown = cap * 2 < (size_t)size ? cap * 2 : (size_t)size;
            uint8_t *more = realloc(buf, grown);
            if (!more) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = more, cap = grown;
        }
        la_ssize_t n = archive_read_data(r->ar, buf + got, cap - got);
        if (n < 0) {
            free(buf);
            return archive_failed(r, path);
        }
        if (n == 0) {
            free(buf);
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': entry '%s' ends after %zu of %lld bytes (truncated)",
                              r->source, path, got, (long long)size);
        }
        got += (size_t)n;
    }
    if (!buf)
        return kvz_errorf(KVZ_ERR_NOMEM, "bundle '%s': no memory for entry '%s' (%lld bytes)", r->source, path,
                          (long long)size);
    *out = buf;
    *len = got;
    return KVZ_OK;
}

static kvz_bundle_file *find_file(kvz_bundle_manifest *m, const char *path, int *is_prefix)
{
    for (size_t i = 0; i < m->n_prefixes; i++)
        if (strcmp(m->prefixes[i].path, path) == 0) {
            *is_prefix = 1;
            return &m->prefixes[i];
        }
    uint8_t id[16];
    char hex[33];
    if (strncmp(path, "artifacts/", 10) != 0 || strlen(path) != 10 + 32 + 4 || strcmp(path + 42, ".kvz") != 0)
        return NULL;
    memcpy(hex, path + 10, 32);
    hex[32] = '\0';
    if (kvz_unhex(hex, id, 16) != 0)
        return NULL;
    *is_prefix = 0;
    return (kvz_bundle_file *)kvz_bundle_find_artifact(m, id);
}

/* Check one listed file's bytes: size, checksum, a verified artifact of the stated
 * model; note what an artifact's manifest says for check_configurations. */
static int check_file(reading *r, kvz_bundle_file *f, int is_prefix, const uint8_t *bytes, size_t len,
                      kvz_artifact *a)
{
    if (XXH3_64bits(bytes, len) != f->xxh3)
        return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': '%s' does not match its checksum in the manifest",
                          r->source, f->path);
    int rc = kvz_transfer_check(bytes, len, a);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "bundle '%s': '%s'", r->source, f->path);
    const kvz_manifest *man = &a->manifest;
    if (man->model.fingerprint != f->model)
        return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': '%s' was compiled by model %016llx, the manifest says %016llx",
                          r->source, f->path, (unsigned long long)man->model.fingerprint,
                          (unsigned long long)f->model);
    char prefix_key[64];
    if (is_prefix)
        kvz_prefix_key(f->model, f->prefix_hash, prefix_key);
    rc = is_prefix ? kvz_transfer_check_key(a, 1, prefix_key, strlen(prefix_key))
                   : kvz_transfer_check_key(a, 0, f->id, 16);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "bundle '%s': '%s'", r->source, f->path);
    if (!is_prefix) {
        int listed = man->prefix_tokens == 0; /* the shared prefix it is answered after travels with it */
        for (size_t i = 0; i < r->m.n_prefixes && !listed; i++)
            listed = r->m.prefixes[i].model == man->model.fingerprint && r->m.prefixes[i].prefix_hash == man->prefix_hash;
        if (!listed)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': '%s' needs the shared prefix %016llx of model %016llx, "
                              "which the bundle does not hold", r->source, f->path,
                              (unsigned long long)man->prefix_hash, (unsigned long long)man->model.fingerprint);
        memcpy(f->doc_hash, man->doc_hash, 16);
        f->config_id = man->config[0] ? kvz_config_id(man->config) : 0;
        f->tokens = man->n_tokens;
        f->segment = man->segment;
        f->n_segments = man->n_segments;
    }
    return KVZ_OK;
}

/* Every document configuration the manifest lists says what its artifacts
 * say: the document's content, the configuration, the segments in order and
 * the tokens. Its bytes are set to its artifacts' sizes: a store's record can
 * hold a stale figure legitimately (an artifact shared by two names was
 * written under the other name, whose bytes differ), so it is not trusted. */
static int check_configurations(reading *r)
{
    for (size_t d = 0; d < r->m.n_docs; d++) {
        kvz_bundle_doc *doc = &r->m.docs[d];
        for (uint32_t c = 0; c < doc->record.n_entries; c++) {
            kvz_doc_entry *e = &doc->record.entries[c];
            uint64_t tokens = 0, bytes = 0;
            for (uint32_t s = 0; s < e->n_segments; s++) {
                const kvz_bundle_file *f = kvz_bundle_find_artifact(&r->m, e->artifact_ids[s]);
                const char *why = memcmp(f->doc_hash, doc->hash, 16) != 0 ? "another document's content"
                                  : f->config_id && f->config_id != e->config_id ? "another configuration"
                                  : f->segment != s || f->n_segments != e->n_segments ? "another segment"
                                                                                       : NULL;
                if (why)
                    return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': document '%s': '%s' holds %s than the "
                                      "manifest lists", r->source, doc->name, f->path, why);
                tokens += f->tokens;
                bytes += f->bytes;
            }
            if (tokens != e->n_tokens)
                return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': document '%s': the manifest says %u tokens, its "
                                  "artifacts hold %llu", r->source, doc->name, e->n_tokens, (unsigned long long)tokens);
            e->stored_bytes = bytes;
        }
    }
    return KVZ_OK;
}

static int read_entries(reading *r)
{
    struct archive_entry *e;
    int rc = KVZ_OK;
    for (;;) {
        int ar = archive_read_next_header(r->ar, &e);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
            return archive_failed(r, "reading the next entry");
        const char *path = archive_entry_pathname(e);
        const char *why = hostile_path(path);
        if (why)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': refusing entry '%s': %s", r->source, path ? path : "",
                              why);
        if (archive_entry_hardlink(e))
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': refusing entry '%s': a hard link", r->source, path);
        if (archive_entry_filetype(e) != AE_IFREG)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': refusing entry '%s': %s", r->source, path,
                              entry_kind(archive_entry_filetype(e)));
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (!r->have_manifest) {
            if (strcmp(path, KVZ_BUNDLE_MANIFEST) != 0)
                return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': the first entry is '%s', not %s: not a kvz bundle",
                                  r->source, path, KVZ_BUNDLE_MANIFEST);
            KVZ_TRY(read_body(r, e, path, r->lim.max_manifest_bytes, &bytes, &len));
            rc = parse_manifest((const char *)bytes, len, &r->m);
            free(bytes);
            if (rc != KVZ_OK)
                return kvz_error_context(rc, "bundle '%s'", r->source);
            r->have_manifest = 1;
            if (r->v && r->v->manifest)
                KVZ_TRY(r->v->manifest(r->v->ctx, &r->m));
            continue;
        }
        int is_prefix = 0;
        kvz_bundle_file *f = find_file(&r->m, path, &is_prefix);
        if (!f)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': refusing entry '%s': the manifest does not list it",
                              r->source, path);
        if (f->seen)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': entry '%s' appears twice", r->source, path);
        f->seen = 1;
        /* before reading (read_body reads exactly what the header declares): a header may declare gigabytes */
        if (archive_entry_size_is_set(e) && archive_entry_size(e) >= 0 && (uint64_t)archive_entry_size(e) != f->bytes)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s': '%s' declares %lld bytes, the manifest says %llu", r->source,
                              path, (long long)archive_entry_size(e), (unsigned long long)f->bytes);
        KVZ_TRY(read_body(r, e, path, r->lim.max_entry_bytes, &bytes, &len));
        kvz_artifact a;
        rc = check_file(r, f, is_prefix, bytes, len, &a);
        if (rc == KVZ_OK && r->v) {
            if (is_prefix && r->v->prefix)
                rc = r->v->prefix(r->v->ctx, f, &a);
            else if (!is_prefix && r->v->artifact)
                rc = r->v->artifact(r->v->ctx, f, &a);
        }
        free(bytes);
        KVZ_TRY(rc);
    }
    if (!r->have_manifest)
        return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s' is empty: no %s", r->source, KVZ_BUNDLE_MANIFEST);
    for (size_t i = 0; i < r->m.n_prefixes; i++)
        if (!r->m.prefixes[i].seen)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s' lacks '%s' (truncated?)", r->source, r->m.prefixes[i].path);
    for (size_t i = 0; i < r->m.n_artifacts; i++)
        if (!r->m.artifacts[i].seen)
            return kvz_errorf(KVZ_ERR_FORMAT, "bundle '%s' lacks '%s' (truncated?)", r->source,
                              r->m.artifacts[i].path);
    return check_configurations(r);
}

static int read_bundle(const char *path, const void *data, size_t size, const kvz_bundle_limits *limits,
                       const kvz_bundle_visitor *v, kvz_bundle_manifest *manifest)
{
    reading r;
    memset(&r, 0, sizeof r);
    r.source = path ? path : "(memory)";
    r.v = v;
    r.lim.max_entry_bytes = limits && limits->max_entry_bytes ? limits->max_entry_bytes : DEFAULT_MAX_ENTRY;
    r.lim.max_manifest_bytes = limits && limits->max_manifest_bytes ? limits->max_manifest_bytes
                                                                    : DEFAULT_MAX_MANIFEST;
    if (!(r.ar = archive_read_new()))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    /* only what kvz writes: tar (pax/ustar), zstd or uncompressed */
    archive_read_support_filter_zstd(r.ar);
    archive_read_support_filter_none(r.ar);
    archive_read_support_format_tar(r.ar);
    int ar = path ? archive_read_open_filename(r.ar, path, 1 << 16) : archive_read_open_memory(r.ar, data, size);
    int err = archive_errno(r.ar);
    /* libarchive refusing what it read has its own codes (ARCHIVE_ERRNO_MISC
     * -1: truncated zstd input; EILSEQ: not a format it knows; EINVAL); any
     * other errno is the file's own failure */
    int refused = !path || err <= 0 || err == EILSEQ || err == EINVAL;
    int rc = ar == ARCHIVE_OK ? read_entries(&r)
             : kvz_errorf(refused ? KVZ_ERR_FORMAT : err == ENOENT ? KVZ_ERR_NOT_FOUND
                                                  : err == ENOMEM ? KVZ_ERR_NOMEM
                                                                  : KVZ_ERR_IO,
                          "bundle '%s': cannot open: %s", r.source, archive_error_string(r.ar));
    archive_read_free(r.ar);
    if (rc == KVZ_OK && manifest)
        *manifest = r.m; /* the caller owns it now */
    else
        kvz_bundle_manifest_free(&r.m);
    return rc;
}

int kvz_bundle_read(const char *path, const kvz_bundle_limits *limits, const kvz_bundle_visitor *v,
                    kvz_bundle_manifest *manifest)
{
    return read_bundle(path, NULL, 0, limits, v, manifest);
}

int kvz_bundle_read_memory(const void *data, size_t size, const kvz_bundle_limits *limits,
                           const kvz_bundle_visitor *v, kvz_bundle_manifest *manifest)
{
    return read_bundle(NULL, data, size, limits, v, manifest);
}
