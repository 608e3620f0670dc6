/* store_collect.c — the collection behind gc, rm and compile --prune. */
#include "tools/store_collect.h"
#include "common/buffer.h"
#include "common/error.h"
#include "format/artifact.h"
#include "format/transfer.h"

#include <stdlib.h>
#include <string.h>

static int by_id16(const void *a, const void *b) { return memcmp(a, b, 16); }

int id_set_add(id_set *set, const uint8_t id[16])
{
    void *grown = kvz_grow(set->ids, &set->cap, set->n, sizeof *set->ids);
    if (!grown)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    set->ids = grown;
    memcpy(set->ids[set->n++], id, 16);
    return KVZ_OK;
}

int id_set_add_record(id_set *set, const kvz_doc_record *rec)
{
    for (uint32_t i = 0; i < rec->n_entries; i++)
        for (uint32_t s = 0; s < rec->entries[i].n_segments; s++)
            KVZ_TRY(id_set_add(set, rec->entries[i].artifact_ids[s]));
    return KVZ_OK;
}

void id_set_sort(id_set *set)
{
    if (set->n) /* qsort's base must not be NULL */
        qsort(set->ids, set->n, 16, by_id16);
}

int id_set_has(const id_set *set, const void *key, size_t len)
{
    return len == 16 && set->n && bsearch(key, set->ids, set->n, 16, by_id16);
}

int name_set_add(name_set *set, const char *name)
{
    void *grown = kvz_grow(set->names, &set->cap, set->n, sizeof *set->names);
    if (!grown)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    set->names = grown;
    if (!(set->names[set->n] = strdup(name)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    set->n++;
    return KVZ_OK;
}

static int by_name(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return kvz_store_key_order(x, strlen(x), y, strlen(y));
}

void name_set_sort(name_set *set)
{
    if (set->n)
        qsort(set->names, set->n, sizeof *set->names, by_name);
}

typedef struct name_key {
    const void *name;
    size_t len;
} name_key;

static int key_vs_name(const void *key, const void *item)
{
    const name_key *k = key;
    const char *name = *(const char *const *)item;
    return kvz_store_key_order(k->name, k->len, name, strlen(name));
}

int name_set_has(const name_set *set, const void *name, size_t len)
{
    const name_key key = {name, len};
    return set->n && bsearch(&key, set->names, set->n, sizeof *set->names, key_vs_name);
}

void name_set_free(name_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        free(set->names[i]);
    free(set->names);
    *set = (name_set){0};
}

typedef struct store_key {
    kvz_store_db db;
    uint8_t *key;
    size_t len;
} store_key;

typedef struct key_list {
    store_key *items;
    size_t n, cap;
} key_list;

typedef struct rewrite {
    char *name;
    kvz_buffer record;
} rewrite;

typedef struct collection {
    const store_collect_opts *o;
    key_list removed;            /* documents going, in the store's (LMDB's) key order */
    key_list drop;               /* artifacts and prefixes going */
    id_set live;                 /* artifact ids remaining documents reference */
    char (*live_prefixes)[64];   /* meta keys of prefixes live artifacts need */
    size_t n_prefixes, cap_prefixes;
    rewrite *rewrites;           /* documents whose older configurations go */
    size_t n_rewrites, cap_rewrites;
    store_collect_report report;
} collection;

static void reset(collection *c)
{
    for (size_t i = 0; i < c->removed.n; i++)
        free(c->removed.items[i].key);
    for (size_t i = 0; i < c->drop.n; i++)
        free(c->drop.items[i].key);
    for (size_t i = 0; i < c->n_rewrites; i++) {
        kvz_buffer_free(&c->rewrites[i].record);
        free(c->rewrites[i].name);
    }
    c->removed.n = c->drop.n = c->live.n = c->n_prefixes = c->n_rewrites = 0;
    memset(&c->report, 0, sizeof c->report);
}

static int add_key(key_list *l, kvz_store_db db, const void *key, size_t len)
{
    void *grown = kvz_grow(l->items, &l->cap, l->n, sizeof *l->items);
    if (!grown)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    l->items = grown; /* before anything else can fail: the old block is gone */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    memcpy(copy, key, len);
    l->items[l->n++] = (store_key){db, copy, len};
    return KVZ_OK;
}

static int by_key(const void *a, const void *b)
{
    const store_key *x = a, *y = b;
    return kvz_store_key_order(x->key, x->len, y->key, y->len);
}

static int choose_document(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    (void)val, (void)val_len;
    collection *c = ctx;
    return c->o->remove(c->o->ctx, key, key_len) ? add_key(&c->removed, KVZ_DB_DOCS, key, key_len) : KVZ_OK;
}

static int is_removed(void *ctx, const void *name, size_t len)
{
    const key_list *l = &((const collection *)ctx)->removed;
    const store_key probe = {KVZ_DB_DOCS, (uint8_t *)name, len}; /* chosen in key order: sorted */
    return l->n && bsearch(&probe, l->items, l->n, sizeof *l->items, by_key);
}

/* Keep, per model, only the newest configuration of a document (the one
 * query loads: kvz_doc_entry_newer). Entries kept are moved down over those
 * seen: the model's newest is never dropped nor overwritten (the order is
 * strict and total), and an entry is never newer than its own copy. */
static uint32_t drop_older(kvz_doc_record *rec)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < rec->n_entries; i++) {
        int newest = 1;
        for (uint32_t j = 0; j < rec->n_entries && newest; j++)
            if (j != i && rec->entries[j].model_fingerprint == rec->entries[i].model_fingerprint &&
                kvz_doc_entry_newer(&rec->entries[j], &rec->entries[i]))
                newest = 0;
        if (newest)
            rec->entries[kept++] = rec->entries[i];
        else
            free(rec->entries[i].artifact_ids);
    }
    uint32_t dropped = rec->n_entries - kept;
    rec->n_entries = kept;
    return dropped;
}

static int keep_document(void *ctx, const char *name, kvz_doc_record *rec)
{
    collection *c = ctx;
    uint32_t dropped = c->o->older_configs ? drop_older(rec) : 0;
    if (dropped) {
        c->report.older_configs += dropped;
        void *grown = kvz_grow(c->rewrites, &c->cap_rewrites, c->n_rewrites, sizeof *c->rewrites);
        if (!grown)
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        c->rewrites = grown;
        rewrite *w = &c->rewrites[c->n_rewrites++];
        memset(w, 0, sizeof *w);
        kvz_doc_record_encode(rec, &w->record);
        w->name = strdup(name);
        if (w->record.failed || !w->name)
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    return id_set_add_record(&c->live, rec);
}

static int drop(collection *c, kvz_store_db db, const void *key, size_t key_len, uint64_t bytes)
{
    KVZ_TRY(add_key(&c->drop, db, key, key_len));
    db == KVZ_DB_ARTIFACTS ? c->report.artifacts++ : c->report.prefixes++;
    c->report.bytes += bytes;
    return KVZ_OK;
}

static int visit_artifact(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    collection *c = ctx;
    if (!id_set_has(&c->live, key, key_len))
        return drop(c, KVZ_DB_ARTIFACTS, key, key_len, val_len);
    kvz_artifact a; /* live: remember the prefix it needs (its manifest only: not the whole store read inside the
                     * write lock; a damaged one keeps its prefix for the compile that mends it) */
    if (kvz_artifact_open_manifest(&a, val, val_len) != KVZ_OK) {
        kvz_error_clear();
        return KVZ_OK;
    }
    char needed[64];
    kvz_prefix_key(a.manifest.model.fingerprint, a.manifest.prefix_hash, needed);
    for (size_t i = 0; i < c->n_prefixes; i++) /* a handful: one per model and template */
        if (strcmp(c->live_prefixes[i], needed) == 0)
            return KVZ_OK;
    void *grown = kvz_grow(c->live_prefixes, &c->cap_prefixes, c->n_prefixes, sizeof *c->live_prefixes);
    if (!grown)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    c->live_prefixes = grown;
    memcpy(c->live_prefixes[c->n_prefixes++], needed, sizeof needed);
    return KVZ_OK;
}

static int visit_meta(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    collection *c = ctx;
    if (key_len <= 7 || memcmp(key, "prefix/", 7) != 0)
        return KVZ_OK; /* version, head scores: kept */
    for (size_t i = 0; i < c->n_prefixes; i++)
        if (strlen(c->live_prefixes[i]) == key_len && memcmp(c->live_prefixes[i], key, key_len) == 0)
            return KVZ_OK;
    return drop(c, KVZ_DB_META, key, key_len, val_len);
}

/* One attempt, run again from the start when the map grew. */
static int collect_in(kvz_store_txn *t, void *ctx)
{
    collection *c = ctx;
    const store_collect_opts *o = c->o;
    reset(c);
    if (o->remove)
        KVZ_TRY(kvz_store_scan(t, KVZ_DB_DOCS, choose_document, c));
    c->report.documents = c->removed.n;
    if (o->chosen)
        KVZ_TRY(o->chosen(o->ctx, t));
    int rc = kvz_scan_documents_but(t, is_removed, keep_document, c);
    if (rc != KVZ_OK) /* never drop what a damaged record might reference */
        return kvz_error_context(rc, "run kvz verify; %s changed nothing", o->what);
    id_set_sort(&c->live);
    KVZ_TRY(kvz_store_scan(t, KVZ_DB_ARTIFACTS, visit_artifact, c));
    KVZ_TRY(kvz_store_scan(t, KVZ_DB_META, visit_meta, c));
    if (o->dry_run)
        return KVZ_OK;
    for (size_t i = 0; i < c->n_rewrites; i++)
        KVZ_TRY(kvz_store_put(t, KVZ_DB_DOCS, c->rewrites[i].name, strlen(c->rewrites[i].name),
                              c->rewrites[i].record.data, c->rewrites[i].record.len));
    for (size_t i = 0; i < c->removed.n; i++)
        KVZ_TRY(kvz_store_del(t, KVZ_DB_DOCS, c->removed.items[i].key, c->removed.items[i].len));
    for (size_t i = 0; i < c->drop.n; i++)
        KVZ_TRY(kvz_store_del(t, c->drop.items[i].db, c->drop.items[i].key, c->drop.items[i].len));
    return KVZ_OK;
}

int store_collect(kvz_store *s, const store_collect_opts *o, store_collect_report *report)
{
    collection c = {.o = o};
    int rc;
    if (o->dry_run) {
        kvz_store_txn *t = NULL;
        rc = kvz_store_read_begin(s, &t);
        if (rc == KVZ_OK)
            rc = collect_in(t, &c);
        kvz_store_read_end(t);
    } else {
        rc = kvz_store_write(s, collect_in, &c);
    }
    *report = c.report;
    for (size_t i = 0; rc == KVZ_OK && o->removed && i < c.removed.n; i++)
        o->removed(o->ctx, c.removed.items[i].key, c.removed.items[i].len);
    reset(&c);
    free(c.removed.items), free(c.drop.items), free(c.live.ids), free(c.live_prefixes), free(c.rewrites);
    return rc;
}
