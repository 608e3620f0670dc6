/*
 * transfer.h — filing compiled documents that come from elsewhere (another
 * store, a bundle, a single .kvz file) into a store, and the one rule for
 * merging a document's record that compile shares.
 *
 * Order of visibility: artifacts first (one write transaction each, verified
 * before they are written), the document record last, after checking inside
 * its own transaction that every artifact it names is present. A reader that
 * finds a document therefore always finds all of it; a transfer killed part
 * way leaves at most unreferenced artifacts (`kvz gc` drops them, running it
 * again adopts them).
 */
#ifndef KVZ_FORMAT_TRANSFER_H
#define KVZ_FORMAT_TRANSFER_H

#include "format/artifact.h"
#include "format/doc_record.h"
#include "format/store.h"

#include <stddef.h>
#include <stdint.h>

/* Open and verify an artifact in memory (every section decoded, every
 * checksum). KVZ_ERR_FORMAT with the reason. */
int kvz_transfer_check(const void *bytes, size_t len, kvz_artifact *out);

/* The meta key of a model's shared prefix: "prefix/<fingerprint>/<prefix hash>". */
void kvz_prefix_key(uint64_t model_fingerprint, uint64_t prefix_hash, char out[64]);

/* Whether an opened artifact is the one its key names: with is_prefix, a
 * shared prefix under the prefix key of its model and hash; else a document's
 * artifact (not a prefix) under the 16-byte id its manifest derives (SPEC.md
 * §8; one without a configuration string, from before ids had one, under any).
 * KVZ_OK, or KVZ_ERR_FORMAT saying which it is instead. */
int kvz_transfer_check_key(const kvz_artifact *a, int is_prefix, const void *key, size_t key_len);

typedef enum kvz_artifact_outcome {
    KVZ_ARTIFACT_PRESENT = 0,  /* the store had it (content addressing: the same thing) */
    KVZ_ARTIFACT_ADDED = 1,    /* written */
    KVZ_ARTIFACT_REPAIRED = 2, /* the stored copy failed its checks: replaced */
    KVZ_ARTIFACT_ABSENT = 3,   /* KVZ_TRANSFER_HELD_ONLY: not in the store, not written */
    KVZ_ARTIFACT_RECUT = 4,    /* the stored copy held other tokens: its document cut into other
                                  segments under the same ids (kvz before 0.3.3 or 0.3.11), replaced */
    KVZ_ARTIFACT_OTHER_BYTES = 5, /* the store had it with other bytes, sound: kept. The same compile
                                     run twice (its time is in the manifest; another thread count or
                                     CPU rounds its sums otherwise), another name in its manifest, or a
                                     kvz of another encoder */
    KVZ_ARTIFACT_NEWER_CUT = 6    /* the stored copy held other tokens (another cut, as RECUT) and is
                                     the later cut (a kvz of the later way of cutting; of the same
                                     way, compiled later): kept, whatever order the two arrive in */
} kvz_artifact_outcome;
#define KVZ_ARTIFACT_OUTCOMES 7

/* How kvz_transfer_artifact writes. */
enum {
    /* only mend a damaged copy, add none: for an artifact only documents that
     * lose to the store's use (kvz_transfer_loses); another document of the
     * store may use the damaged copy, and a copy of another cut stays */
    KVZ_TRANSFER_HELD_ONLY = 1,
    /* every segment of the artifact's form comes in this transfer (a bundle, a
     * merge, an import of all of them): a stored copy of another cut of the
     * document is replaced, so that every record of the content reads one cut */
    KVZ_TRANSFER_WHOLE_FORM = 2
};

/* Write artifact `id` (already verified) unless the store has it. A stored
 * copy with other bytes that fails its checks (damaged on disk) is replaced:
 * bringing a good copy again is how a receiver without the sources mends it.
 * A stored copy, sound, whose tokens are not the incoming one's (SPEC.md §8:
 * two cuts of a document under the same ids) is kept where it is the later
 * cut (KVZ_ARTIFACT_NEWER_CUT); else replaced with KVZ_TRANSFER_WHOLE_FORM,
 * kept with KVZ_TRANSFER_HELD_ONLY, and otherwise refused (KVZ_ERR_FORMAT:
 * one segment of a cut among the other's would lose text). */
int kvz_transfer_artifact(kvz_store *s, const uint8_t id[16], const void *bytes, size_t len, int how,
                          kvz_artifact_outcome *outcome);

/* Write a shared prefix artifact (already verified) under its meta key, as
 * above (held_only: only documents that lose need it; a prefix is named by its
 * tokens' hash, so has no other cut). */
int kvz_transfer_prefix(kvz_store *s, const kvz_artifact *prefix, int held_only, kvz_artifact_outcome *outcome);

/* KVZ_OK when a form's segments, read, hold the tokens its record counts
 * (`held_tokens`, their manifests' n_tokens added); else KVZ_ERR_FORMAT
 * naming the document: segments of two cuts of it under the same ids (SPEC.md
 * §8), text missing or repeated that each artifact's own checks pass. */
int kvz_transfer_check_cut(const char *name, const kvz_doc_entry *e, uint64_t held_tokens);

/* How the kvz that wrote a manifest (its `compiler`) cut documents into
 * segments (SPEC.md §8): 0 before 0.3.3 (some runs of short paragraphs
 * otherwise), 1 from 0.3.3 to 0.3.10 (a line longer than a segment at a token
 * count), 2 from 0.3.11 (such a line after a sentence or between characters;
 * also a manifest of another writer). */
#define KVZ_CUT_ERAS 3
int kvz_manifest_cut_era(const kvz_manifest *m);

typedef enum kvz_entry_outcome {
    KVZ_ENTRY_ADDED = 0,     /* a new configuration of the document */
    KVZ_ENTRY_PRESENT = 1,   /* the store had this configuration already */
    KVZ_ENTRY_REPLACED = 2,  /* the name held other content, older: replaced */
    KVZ_ENTRY_KEPT_NEWER = 3, /* the name holds other content, newer: left alone */
    KVZ_ENTRY_CUT_REPLACED = 4, /* the store had this configuration of this content cut into other
                                   segments (another kvz's cut, SPEC.md §8), compiled earlier: replaced */
    KVZ_ENTRY_CUT_KEPT = 5      /* ... compiled later: the store's kept */
} kvz_entry_outcome;
#define KVZ_ENTRY_OUTCOMES 6

/* A content's claim to a name: the compile time of its newest configuration
 * and its content hash. */
typedef struct kvz_content_stamp {
    uint64_t newest;
    uint8_t doc_hash[16];
} kvz_content_stamp;

void kvz_content_stamp_of(const kvz_doc_record *r, kvz_content_stamp *out);
/* Whether content `a` takes the name from other content `b`: the newer
 * compile wins, at equal times the larger content hash (so that the order of
 * merges does not matter). */
int kvz_content_wins(const kvz_content_stamp *a, const kvz_content_stamp *b);

/* Inside a write transaction: add the configurations of `incoming` (a
 * document's content hash and one or more entries) to the record of `name`.
 * When the record holds other content, the whole document is decided at once:
 * the newer content wins (the newest entry's `created`; at equal times the
 * larger content hash, so that the order of merges does not matter), or
 * always the incoming one when `replace_other_content` (compile: the file on
 * disk is the truth). A configuration the store has already keeps the later
 * of the two `created` times (which form is newest must not hang on the order
 * of arrivals). outcomes[i]: what became of entry i; *dropped (NULL: not
 * asked): the replaced content's configurations that `incoming` does not have,
 * gone with it. */
int kvz_doc_record_put(kvz_store_txn *t, const char *name, const kvz_doc_record *incoming,
                       int replace_other_content, kvz_entry_outcome *outcomes, uint32_t *dropped);
/* The same for one configuration `e` of content `doc_hash`. */
int kvz_doc_record_put_entry(kvz_store_txn *t, const char *name, const uint8_t doc_hash[16],
                             const kvz_doc_entry *e, int replace_other_content, kvz_entry_outcome *outcome,
                             uint32_t *dropped);

/* Its own transaction: unless the store's other content stays (every outcome
 * KVZ_ENTRY_KEPT_NEWER, nothing checked or written), check every artifact of
 * every entry of `incoming` is in the store (KVZ_ERR_NOT_FOUND naming the
 * first missing one), then put the document as above with
 * replace_other_content = 0. A bundle's or another store's document goes in
 * whole this way: taken one configuration at a time, an older configuration of
 * content that then wins would be lost. */
int kvz_transfer_document(kvz_store *s, const char *name, const kvz_doc_record *incoming,
                          kvz_entry_outcome *outcomes);
/* The same for n documents in one transaction, all of them or none: a commit
 * syncs the disk twice, and a bundle of 100,000 documents put one a
 * transaction spent minutes waiting on syncs. */
int kvz_transfer_documents(kvz_store *s, size_t n, const char *const *names, const kvz_doc_record *const *incoming,
                           kvz_entry_outcome *const *outcomes);
/* The same for one configuration (import: artifacts arrive one by one). */
int kvz_transfer_entry(kvz_store *s, const char *name, const uint8_t doc_hash[16], const kvz_doc_entry *e,
                       kvz_entry_outcome *outcome);

/* Its own read transaction: *loses is non-zero when the store's record of
 * `name` holds other content that stays against `incoming` (the rule above):
 * KVZ_STAYS_NEWER, compiled later, or KVZ_STAYS_SAME_TIME, at the same time
 * and kept for its content hash; so
 * that a transfer writes none of the incoming artifacts (they would only wait
 * for `kvz gc`). The document put decides again, before it checks artifacts:
 * should the store change in between to let `incoming` win, it finds them
 * missing (KVZ_ERR_NOT_FOUND) and nothing is half written. */
enum { KVZ_STAYS_NEWER = 1, KVZ_STAYS_SAME_TIME = 2 };
int kvz_transfer_loses(kvz_store *s, const char *name, const kvz_doc_record *incoming, int *loses);

/* Visit every document of the store in name order, its record decoded; the
 * visitor may change the record (it is freed after the call). A record that
 * does not decode stops the scan: KVZ_ERR_FORMAT naming the document. */
typedef int (*kvz_doc_visit_fn)(void *ctx, const char *name, kvz_doc_record *rec);
int kvz_scan_documents(kvz_store_txn *t, kvz_doc_visit_fn fn, void *ctx);
/* The same, leaving out, undecoded, the documents for which skip(ctx, name
 * bytes, length) is non-zero (kvz rm: a damaged record can be removed). */
int kvz_scan_documents_but(kvz_store_txn *t, int (*skip)(void *ctx, const void *name, size_t len),
                           kvz_doc_visit_fn fn, void *ctx);

/* KVZ_ERR_NOT_FOUND for a document `name` the store lacks: "no document
 * 'NAME' in the store[ 'STORE'] (see kvz ls)" then `tail` (may be ""), naming
 * up to three stored documents the user likely meant: the same path spelt
 * otherwise ("./a.md", "docs//a.md" for "a.md", "docs/a.md"), the same file
 * name in another folder (a name is the path compile was given) or a document
 * in the folder or archive named ("docs/a.md", "x.zip:a.md" for "docs",
 * "x.zip"), among the first 100,000 names. */
int kvz_document_missing(kvz_store_txn *t, const char *name, const char *store_path, const char *tail);

/* Lower-case hex of n bytes into out (2n + 1 chars). */
void kvz_hex(const uint8_t *bytes, size_t n, char *out);
/* Parse exactly 2n hex digits; 0 on success. */
int kvz_unhex(const char *hex, uint8_t *bytes, size_t n);

#endif
