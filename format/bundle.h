/*
 * bundle.h — `.kvz` bundles: a tar archive compressed with zstd (libarchive)
 * that `tar -tf` lists, holding compiled documents to move between machines
 * (format/BUNDLE.md is the specification):
 *
 *   kvz-bundle.json              the manifest, always the first entry
 *   prefixes/<fp>-<hash>.kvz     shared prompt prefixes the documents need
 *   artifacts/<id>.kvz           one artifact per document segment
 *
 * The reader trusts nothing: it refuses entries that are not regular files,
 * absolute paths, `..`, names the manifest does not list, entries listed
 * twice or missing, sizes over a limit or different from the manifest's,
 * checksums that differ, and artifacts that do not verify or were not made by
 * the model the manifest says. The callbacks see only entries that passed.
 */
#ifndef KVZ_FORMAT_BUNDLE_H
#define KVZ_FORMAT_BUNDLE_H

#include "format/artifact.h"
#include "format/doc_record.h"

#include <stddef.h>
#include <stdint.h>

#define KVZ_BUNDLE_MANIFEST "kvz-bundle.json"
#define KVZ_BUNDLE_VERSION 1

typedef struct kvz_bundle_file {
    char path[96];       /* "artifacts/<32 hex>.kvz" or "prefixes/<16 hex>-<16 hex>.kvz" */
    uint8_t id[16];      /* artifacts */
    uint64_t prefix_hash; /* prefixes */
    uint64_t model;      /* fingerprint of the model that compiled it */
    uint64_t bytes;
    uint64_t xxh3;       /* xxh3-64 of the file's bytes */
    int seen;
    /* artifacts, once read: what its manifest says, checked against the
     * document configurations that name it */
    uint8_t doc_hash[16];
    uint64_t config_id;
    uint32_t tokens, segment, n_segments;
} kvz_bundle_file;

typedef struct kvz_bundle_doc {
    char *name;
    uint8_t hash[16];
    kvz_doc_record record; /* the configurations carried for this document */
} kvz_bundle_doc;

typedef struct kvz_bundle_manifest {
    uint64_t created;
    char compiler[64];
    int checksummed; /* the manifest carried its own checksum (kvz 0.2.2 on), and it held */
    size_t n_prefixes, n_artifacts, n_docs;
    kvz_bundle_file *prefixes, *artifacts;
    kvz_bundle_doc *docs;
} kvz_bundle_manifest;

void kvz_bundle_manifest_free(kvz_bundle_manifest *m);

/* The listed artifact with this id, or NULL. */
const kvz_bundle_file *kvz_bundle_find_artifact(const kvz_bundle_manifest *m, const uint8_t id[16]);

/* ---- writing --------------------------------------------------------------- */

typedef struct kvz_bundle_writer kvz_bundle_writer;

/* Collects what the bundle holds; nothing is written until finish. The bytes
 * given must stay valid until then (views into a store's read transaction). */
int kvz_bundle_writer_new(kvz_bundle_writer **out);
void kvz_bundle_writer_free(kvz_bundle_writer *w);
int kvz_bundle_add_prefix(kvz_bundle_writer *w, const kvz_artifact *prefix);
/* Artifacts already added (by id) are skipped. */
int kvz_bundle_add_artifact(kvz_bundle_writer *w, const uint8_t id[16], const kvz_artifact *a);
/* One configuration of a document; its artifacts must have been added. */
int kvz_bundle_add_entry(kvz_bundle_writer *w, const char *name, const uint8_t doc_hash[16],
                         const kvz_doc_entry *e);
/* Write the archive to `path` (through `path`.tmp, renamed when complete, so
 * a failed pack never leaves a partial bundle under the name). *bytes: its size.
 * Artifacts are written as given, except one whose manifest names none of the
 * documents that use it in the bundle (an artifact documents of one content
 * share names the first compiled): written with the name of the first of them
 * in the order the documents were added (kvz_artifact_for_document), the
 * manifest's sizes and checksums those of the bytes written. */
int kvz_bundle_write(kvz_bundle_writer *w, const char *path, uint64_t *bytes);

/* ---- reading --------------------------------------------------------------- */

typedef struct kvz_bundle_limits {
    uint64_t max_entry_bytes;    /* largest artifact (default 4 GiB) */
    uint64_t max_manifest_bytes; /* default 256 MiB */
} kvz_bundle_limits;

typedef struct kvz_bundle_visitor {
    /* Called once, after the manifest parsed and before any other entry. */
    int (*manifest)(void *ctx, const kvz_bundle_manifest *m);
    /* A verified artifact or prefix; `a` views bytes valid during the call. */
    int (*prefix)(void *ctx, const kvz_bundle_file *f, const kvz_artifact *a);
    int (*artifact)(void *ctx, const kvz_bundle_file *f, const kvz_artifact *a);
    void *ctx;
} kvz_bundle_visitor;

/* Read and check a whole bundle from a file, or from memory. Any callback may
 * be NULL. A non-OK status from a callback stops the read and is returned.
 * When the whole bundle passed and `manifest` is not NULL, it receives the
 * manifest (free with kvz_bundle_manifest_free). Errors: KVZ_ERR_FORMAT
 * (malformed, hostile or corrupt: the message names the entry and the
 * reason), KVZ_ERR_UNSUPPORTED (a newer bundle version), KVZ_ERR_RANGE (over
 * a limit), KVZ_ERR_NOT_FOUND, KVZ_ERR_IO. */
int kvz_bundle_read(const char *path, const kvz_bundle_limits *limits, const kvz_bundle_visitor *v,
                    kvz_bundle_manifest *manifest);
int kvz_bundle_read_memory(const void *data, size_t size, const kvz_bundle_limits *limits,
                           const kvz_bundle_visitor *v, kvz_bundle_manifest *manifest);

#endif
