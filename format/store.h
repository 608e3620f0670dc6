/*
 * store.h — the artifact store: a directory holding one LMDB environment with
 * three databases (format/STORE.md says the keys and values):
 *
 *   artifacts   16-byte content id -> .kvz bytes
 *   docs        document name      -> doc record (doc_record.h)
 *   meta        text key           -> store version, shared prefixes, head scores
 *
 * One writer, many readers (LMDB). A write is a function run inside one write
 * transaction: when the map fills up, the transaction is aborted, the map
 * doubled and the function run again, so a reader never sees half of a
 * document and a full map never corrupts anything. Reads are zero-copy views
 * into the map, valid until the read transaction ends; a read that finds the
 * store grown by another process remaps first, which it can only do while no
 * other read of this kvz_store is open. `mdb_stat DIR` and
 * `mdb_dump -s artifacts DIR` work on a store.
 *
 * Reads check every key and value LMDB hands back against the pages of the
 * file (a damaged page can point past its end): a key outside fails a scan
 * with KVZ_ERR_FORMAT, a value outside is cut to what lies inside (its
 * reader's checks then find that entry damaged).
 *
 * Failures: a full disk, a quota or a file size limit (ENOSPC, EDQUOT, EFBIG,
 * and LMDB's EIO for a short write) fail the write with KVZ_ERR_IO and a
 * message that says so; a map that cannot grow any more fails it with
 * KVZ_ERR_RANGE; a map that cannot be mapped (ulimit -v) with KVZ_ERR_NOMEM,
 * after which this kvz_store refuses every use. In every case nothing of the
 * failed write is stored and the store stays intact.
 */
#ifndef KVZ_FORMAT_STORE_H
#define KVZ_FORMAT_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum kvz_store_db {
    KVZ_DB_ARTIFACTS = 0,
    KVZ_DB_DOCS = 1,
    KVZ_DB_META = 2,
} kvz_store_db;

#define KVZ_STORE_VERSION "1"
/* The longest key, so the longest document name, a store takes (LMDB's
 * MDB_MAXKEYSIZE as Debian builds it; checked at open). */
#define KVZ_STORE_KEY_MAX 511

/* Non-zero while the calling thread is inside one of LMDB's calls. LMDB
 * trusts the pages of its file: a damaged data.mdb can make it read through
 * a wild pointer, and a program's SIGSEGV/SIGBUS handler may then report a
 * damaged store instead of a crash (the kvz CLI does). Async-signal-safe. */
int kvz_store_in_lmdb_call(void);

typedef struct kvz_store kvz_store;
typedef struct kvz_store_txn kvz_store_txn;

enum {
    KVZ_STORE_READONLY = 1, /* never writes; the directory must exist */
    KVZ_STORE_CREATE = 2,   /* create the directory if missing */
    KVZ_STORE_EXCLUSIVE = 4 /* gc: no writer at work (KVZ_ERR_IO if one is); writers wait for it */
};

/* Open the store in `dir`. Errors: KVZ_ERR_NOT_FOUND (no store there and not
 * asked to create), KVZ_ERR_IO, KVZ_ERR_FORMAT (not a kvz store, or another
 * store version, or a data.mdb cut short), KVZ_ERR_ARG (a bad
 * KVZ_STORE_MAP_BYTES for a new store).
 * Opening for writing clears the reader slots left by killed readers. A store
 * whose creation was killed before its first commit opens as empty.
 * A store this process has open already is shared, counted, not opened
 * again (a second LMDB environment's close would drop the first one's locks
 * on lock.mdb): refused with KVZ_ERR_ARG where the open one is read-only and
 * this one would write, KVZ_ERR_IO where either needs the store alone. A
 * read-only open that shares a writer's keeps its writer's hold on the store
 * (gc elsewhere waits) until the last of them closes. A child of fork starts
 * with none open. */
int kvz_store_open(kvz_store **out, const char *dir, int flags);
/* The same with the map size a new store starts with; the map doubles
 * whenever a write fills it. 0: the environment variable KVZ_STORE_MAP_BYTES
 * (for tests and small machines: bytes, or a number with K, M, G or T, from
 * 64K to 16T), else 1 GiB. An existing store keeps its own map size. */
int kvz_store_open_sized(kvz_store **out, const char *dir, int flags, size_t initial_map_bytes);
/* In a child of fork, a store its parent opened is the parent's: every use
 * is refused (KVZ_ERR_ARG) and closing it does nothing (see the .c). */
void kvz_store_close(kvz_store *s);
/* Whether s was opened in this process (not inherited through fork). */
int kvz_store_opened_here(const kvz_store *s); /* NULL: 1 (no parent's store) */
const char *kvz_store_path(const kvz_store *s);

/* Run fn inside a write transaction and commit; retried after growing the
 * map when it fills. fn must only touch the store through `t` and be safe to
 * run again. A non-OK status from fn aborts and is returned. */
typedef int (*kvz_store_write_fn)(kvz_store_txn *t, void *ctx);
int kvz_store_write(kvz_store *s, kvz_store_write_fn fn, void *ctx);

/* A read transaction for zero-copy gets and scans. Where another process
 * grew the store past this process's map, the begin remaps it, after waiting
 * (up to a minute) for the reads other threads have open to end; a thread
 * that has one open itself gets KVZ_ERR_IO at once instead. End a read on the
 * thread that began it: one ended elsewhere leaves its first thread counted
 * as holding one (failing at once, never waiting, at a remap). */
int kvz_store_read_begin(kvz_store *s, kvz_store_txn **t);
void kvz_store_read_end(kvz_store_txn *t);

/* Get: KVZ_ERR_NOT_FOUND when absent. The view lives until the txn ends. */
int kvz_store_get(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len,
                  const void **val, size_t *val_len);
int kvz_store_put(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len,
                  const void *val, size_t val_len);
int kvz_store_del(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len);

/* The order of keys in every db (LMDB's default): bytes, then the shorter first. */
int kvz_store_key_order(const void *a, size_t a_len, const void *b, size_t b_len);

/* Visit every entry of db in key order; fn returning non-zero stops (and is returned). */
typedef int (*kvz_store_visit_fn)(void *ctx, const void *key, size_t key_len, const void *val,
                                  size_t val_len);
int kvz_store_scan(kvz_store_txn *t, kvz_store_db db, kvz_store_visit_fn fn, void *ctx);

/* Entries and bytes in use, for `kvz ls` and `kvz stats`. */
int kvz_store_count(kvz_store_txn *t, kvz_store_db db, size_t *entries);

/* The bytes of data.mdb's pages on LMDB's free list in the read `t` (freed by
 * earlier writes; later writes reuse them, the file never shrinks), for
 * `kvz stats`. */
int kvz_store_free_bytes(kvz_store_txn *t, uint64_t *bytes);

#endif
