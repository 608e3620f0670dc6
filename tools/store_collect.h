/*
 * store_collect.h — deleting from a store what nothing needs any more, in one
 * write transaction (a reader sees the store before or after): documents
 * chosen by name, then every configuration of a document but its newest per
 * model if asked, then every artifact no remaining document references and
 * every shared prefix no remaining artifact needs. `kvz gc`, `kvz rm` and
 * `kvz compile --prune` are this with different choices.
 */
#ifndef KVZ_TOOLS_STORE_COLLECT_H
#define KVZ_TOOLS_STORE_COLLECT_H

#include "format/doc_record.h"
#include "format/store.h"

#include <stddef.h>
#include <stdint.h>

/* A set of artifact ids (those documents reference, for stats and the
 * collection; those verify found damaged): added, then sorted once before
 * lookups; free(ids) when done. */
typedef struct id_set {
    uint8_t (*ids)[16];
    size_t n, cap;
} id_set;

int id_set_add(id_set *set, const uint8_t id[16]);
int id_set_add_record(id_set *set, const kvz_doc_record *rec);
void id_set_sort(id_set *set);
int id_set_has(const id_set *set, const void *key, size_t len);

/* A set of document names (copies): added, then sorted once before lookups,
 * in the store's key order; name_set_free when done. */
typedef struct name_set {
    char **names;
    size_t n, cap;
} name_set;

int name_set_add(name_set *set, const char *name);
void name_set_sort(name_set *set);
int name_set_has(const name_set *set, const void *name, size_t len);
void name_set_free(name_set *set);

typedef struct store_collect_opts {
    /* Whether the document named by these bytes goes (its record undecoded:
     * a damaged one can go), or NULL: none goes. Called once per document of
     * the store in each attempt; an attempt is repeated when the map grows. */
    int (*remove)(void *ctx, const void *name, size_t len);
    /* Called once the documents are chosen, before anything changes; a non-OK
     * status stops the collection (nothing changed), or NULL. */
    int (*chosen)(void *ctx, kvz_store_txn *t);
    void *ctx;
    /* Told each document removed (dry: that would be), once the collection
     * has succeeded, in name order; or NULL. */
    void (*removed)(void *ctx, const void *name, size_t len);
    int older_configs; /* drop all configurations of a document but the newest per model */
    int dry_run;       /* choose and count, change nothing */
    const char *what;  /* the command, in errors ("gc", "rm", "compile --prune") */
} store_collect_opts;

typedef struct store_collect_report {
    size_t documents, artifacts, prefixes, older_configs; /* dropped (or, dry: would be) */
    uint64_t bytes;                                       /* of the artifacts and prefixes */
} store_collect_report;

/* Run the collection on `s`: opened KVZ_STORE_EXCLUSIVE (writers stage
 * artifacts no document names yet), or KVZ_STORE_READONLY for a dry run. A
 * remaining document whose record does not decode stops it (nothing it might
 * reference is dropped): KVZ_ERR_FORMAT. */
int store_collect(kvz_store *s, const store_collect_opts *o, store_collect_report *report);

#endif
