/* store.c — the LMDB environment behind a kvz store. */
#include "format/store.h"
#include "common/error.h"
#include "common/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* LMDB calls made by this thread and not yet returned: LMDB trusts its
 * file's pages, so a fault inside one is a damaged data.mdb (store.h). */
static _Thread_local volatile int lmdb_calls;
#define LMDB_CALL(call) (lmdb_calls++, lmdb_call_returned(call))

static int lmdb_call_returned(int rc)
{
    lmdb_calls--;
    return rc;
}

int kvz_store_in_lmdb_call(void)
{
    return lmdb_calls > 0;
}

/* mdb_txn_begin; a read that finds every reader slot taken frees the slots
 * of killed processes (a reader killed mid-read keeps its slot until some
 * process clears it) and tries once more. */
static int txn_begin(MDB_env *env, unsigned flags, MDB_txn **txn)
{
    int rc = LMDB_CALL(mdb_txn_begin(env, NULL, flags, txn));
    int dead = 0; /* 0 too: another process may have freed them just now */
    if (rc == MDB_READERS_FULL && (flags & MDB_RDONLY) && LMDB_CALL(mdb_reader_check(env, &dead)) == 0)
        rc = LMDB_CALL(mdb_txn_begin(env, NULL, flags, txn));
    return rc;
}

#define INITIAL_MAP_BYTES (1ull << 30)
#define MIN_MAP_BYTES (64ull << 10) /* KVZ_STORE_MAP_BYTES floor: room for the databases and the version */
#define MAX_MAP_BYTES (1ull << 44) /* 16 TiB: a guard against runaway growth */
#define LOCK_RESERVE_BYTES (32 << 10) /* more than LMDB's lock file for 256 readers (16.5 KiB) */

static const char *const DB_NAMES[] = {"artifacts", "docs", "meta"};

struct kvz_store {
    MDB_env *env;
    MDB_dbi dbi[3];
    char *path;
    int readonly;
    /* Read-only view of a store whose creation was interrupted (kill -9 before
     * its first commit): no databases yet, so it reads as empty. */
    int empty;
    /* A failed remap leaves LMDB without a map: nothing may touch env again. */
    int broken;
    /* Read transactions open in this process. Remapping (after another process
     * grew the map) moves every view, so it happens only when there are none:
     * a thread that needs it waits (reads_or_remap) for the others' reads to
     * end, or for another waiter's remap (remaps counts them). */
    pthread_mutex_t lock;
    pthread_cond_t reads_or_remap; /* CLOCK_MONOTONIC */
    int open_reads;
    unsigned remaps;
    /* lock.mdb, flock'ed: shared by every writer, exclusive for gc (KVZ_STORE_EXCLUSIVE) */
    int gate_fd;
    /* Where the map lies in this process (found from /proc/self/maps; 0: not
     * yet): the bounds of every read (outside_file). */
    uintptr_t map_lo, map_hi;
    /* Opens of this store in the process share this one (see open_stores). */
    dev_t dev;
    ino_t ino;
    int refs, exclusive;
    kvz_store *next_open;
    pid_t opener;         /* for messages */
    unsigned generation;  /* fork_generation at the open: a child of fork may not use it */
};

/* One LMDB environment per store per process. LMDB's locks on lock.mdb are
 * POSIX record locks, which a process loses all of when it closes any
 * descriptor of the file: with a second environment on the same store (an
 * engine opened before the old one is closed, say), closing either would
 * leave the other's reads unlocked, and a writer elsewhere could take their
 * reader slots for a dead process's and reuse the pages they read. So an
 * open of a store this process has open already shares it (counted; the
 * path of the first open names it in messages). */
static pthread_mutex_t open_stores_lock = PTHREAD_MUTEX_INITIALIZER;
static kvz_store *open_stores;
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
/* Reads this thread has open, of any store: a thread that waits for a store's
 * reads to end must hold none itself, or it would wait for itself. */
static _Thread_local int reads_of_this_thread;

/* A child of fork may use none of its parent's environments (LMDB), and its
 * parent's locks are not its own: it starts with none open, and with the
 * registry's lock free whatever another thread of the parent held. */
static atomic_uint fork_generation; /* forks this process is a child of, since the first open */

static void forget_open_stores(void)
{
    atomic_fetch_add(&fork_generation, 1);
    pthread_mutex_init(&open_stores_lock, NULL);
    open_stores = NULL;
    reads_of_this_thread = 0; /* those were of the parent's stores */
}

static void install_fork_handler(void)
{
    pthread_atfork(NULL, NULL, forget_open_stores);
}

int kvz_store_opened_here(const kvz_store *s) { return !s || s->generation == atomic_load(&fork_generation); }

/* A store its parent opened, used in a child of fork: its LMDB environment
 * would record the child's reads as the parent's (reused pages under them
 * once the parent ends its own, slots no check frees), and its locks may be
 * held by threads the child does not have. */
static int fork_child_refused(const kvz_store *s)
{
    if (kvz_store_opened_here(s))
        return KVZ_OK;
    return kvz_errorf(KVZ_ERR_ARG, "store '%s' was opened by process %ld, and this is a child of fork (%ld): an "
                      "LMDB environment does not cross fork; open the store (the engine) again in the child",
                      s->path, (long)s->opener, (long)getpid());
}

struct kvz_store_txn {
    kvz_store *store;
    MDB_txn *txn;
    int map_full; /* a put hit MDB_MAP_FULL: the write is retried on a bigger map */
    /* A read's bounds: the pages of the file its commit can see. NULL in a
     * write, whose new pages live in memory LMDB allocated. */
    const char *file_lo, *file_hi;
    pthread_t reader; /* the thread that began a read (reads_of_this_thread) */
};

/* LMDB trusts its pages: a key or value of a damaged page (its size or its
 * place) can lie past the end of the file, a fault in whoever reads it. A
 * read checks each before anything reads it. */
static int outside_file(const kvz_store_txn *t, const void *p, size_t len)
{
    const char *c = p;
    return t->file_hi && (c < t->file_lo || c > t->file_hi || len > (size_t)(t->file_hi - c));
}

/* A value that lies past the file is cut to what lies inside it (nothing,
 * when it starts outside): every value kvz stores is checked by its reader
 * (an artifact's size and checksums, a record's layout), so it reads as that
 * one entry damaged, which a good copy mends, instead of failing the store. */
static void within_file(const kvz_store_txn *t, MDB_val *v)
{
    if (!outside_file(t, v->mv_data, v->mv_size))
        return;
    const char *c = v->mv_data;
    if (c < t->file_lo || c > t->file_hi)
        v->mv_data = (void *)t->file_lo, v->mv_size = 0;
    else
        v->mv_size = (size_t)(t->file_hi - c);
}

static int damaged_page(const kvz_store_txn *t)
{
    return kvz_errorf(KVZ_ERR_FORMAT, "store '%s' is damaged: a key lies outside its file (restore the store from a "
                      "backup or a bundle, or compile the documents again)", t->store->path);
}

/* What a failed write of the store's files most likely ran into, or NULL when
 * rc is no such failure. LMDB reports a short write (the file system filled up,
 * or RLIMIT_FSIZE cut the write at the limit) as EIO, so EIO is judged from the
 * limit and the free space. */
static const char *write_failure(int rc, const char *path, int writing)
{
    if (rc == ENOSPC)
        return "the disk is full";
    if (rc == EDQUOT)
        return "the disk quota is used up";
    if (rc == EFBIG)
        return "a file size limit was reached (ulimit -f, or the file system's largest file)";
    if (rc != EIO || !writing)
        return NULL;
    struct rlimit lim;
    char data_path[4096];
    struct stat st;
    snprintf(data_path, sizeof data_path, "%s/data.mdb", path);
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && stat(data_path, &st) == 0 &&
        (unsigned long long)st.st_size + (1u << 20) >= (unsigned long long)lim.rlim_cur)
        return "a file size limit was reached (ulimit -f)";
    struct statvfs fs;
    if (statvfs(path, &fs) == 0 && (unsigned long long)fs.f_bavail * fs.f_frsize < (16ull << 20))
        return "the disk is full";
    return "an input/output error (the disk may be full or failing)";
}

static int lmdb_error_at(int rc, const char *what, const char *path, int writing)
{
    int status = rc == ENOENT ? KVZ_ERR_NOT_FOUND
                 : rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
                           rc == MDB_PAGE_NOTFOUND /* a damaged page names one that is not there */
                     ? KVZ_ERR_FORMAT
                 : rc == ENOMEM ? KVZ_ERR_NOMEM
                 : rc == MDB_MAP_FULL ? KVZ_ERR_RANGE
                                      : KVZ_ERR_IO;
    const char *why = write_failure(rc, path, writing);
    if (why)
        return kvz_errorf(status, "store '%s': %s while %s (%s%s); nothing of this write was stored and the "
                          "store is intact — free space (or raise the limit) and run the same command again",
                          path, why, what, rc == EIO ? "a short write: " : "", mdb_strerror(rc));
    if (rc == MDB_MAP_FULL)
        return kvz_errorf(status, "store '%s': its map is full while %s (%s); nothing of this write was "
                          "stored and the store is intact", path, what, mdb_strerror(rc));
    if (rc == MDB_READERS_FULL)
        return kvz_errorf(status, "store '%s': %s: every reader slot is taken (%s); close some readers of the "
                          "store and try again", path, what, mdb_strerror(rc));
    if (rc == ENOMEM) /* the map is reserved whole: address space, under ulimit -v */
        return kvz_errorf(status, "store '%s': %s: %s (its map takes address space: under ulimit -v, "
                          "KVZ_STORE_MAP_BYTES sets a smaller first map for a new store)", path, what,
                          mdb_strerror(rc));
    return kvz_errorf(status, "store '%s': %s: %s", path, what, mdb_strerror(rc));
}

static int lmdb_error(int rc, const char *what, const char *path) { return lmdb_error_at(rc, what, path, 0); }

/* A failure of a put, delete or commit: LMDB's EIO there is a failed or short write. */
static int lmdb_write_error(int rc, const char *what, const char *path) { return lmdb_error_at(rc, what, path, 1); }

/* The map could not be set to `bytes` (mmap failed): LMDB has dropped its map.
 * Every later use of the store fails with this message instead of crashing. */
static int remap_failed(kvz_store *s, int rc, const char *what)
{
    s->broken = 1;
    int status = rc == ENOMEM ? KVZ_ERR_NOMEM : KVZ_ERR_IO;
    return kvz_errorf(status, "store '%s': cannot map the store while %s (%s): the address space is limited "
                      "(ulimit -v) or memory is short; nothing of an unfinished write was stored and the store "
                      "is intact — raise the limit or free memory and run the same command again",
                      s->path, what, mdb_strerror(rc));
}

static int unusable(const kvz_store *s)
{
    return kvz_errorf(KVZ_ERR_IO, "store '%s' cannot be used after a failed remap in this process; the store "
                      "itself is intact — run the command again", s->path);
}

enum { REMAP_WAIT_SECONDS = 60 }; /* a read is a load or a listing: milliseconds to seconds */

/* Adopt the map size another process grew the store to (MDB_MAP_RESIZED),
 * under s->lock; `seen` is s->remaps as it was before the transaction that
 * met MDB_MAP_RESIZED began. It moves the map, so only with no read of the
 * store open in this process: a thread that holds none waits (up to
 * REMAP_WAIT_SECONDS) for the other threads' reads to end, or for another
 * thread to have remapped since `seen` (then nothing is left to do: the
 * caller begins again). A service's requests on other threads see a moment's
 * wait while the store grows under them, not an error. A thread that began a
 * read (of any store: the count is per thread) cannot wait, for itself
 * perhaps: an error at once. */
static int adopt_map_size(kvz_store *s, unsigned seen)
{
    if (s->open_reads > 0 && reads_of_this_thread == 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += REMAP_WAIT_SECONDS;
        while (s->open_reads > 0 && s->remaps == seen &&
               pthread_cond_timedwait(&s->reads_or_remap, &s->lock, &until) == 0)
            ;
    }
    if (s->broken) /* another thread's remap failed while this one waited */
        return unusable(s);
    if (s->remaps != seen)
        return KVZ_OK;
    if (s->open_reads > 0)
        return kvz_errorf(KVZ_ERR_IO, "store '%s' grew beyond this process's map while %d read(s) of it are "
                          "open here (%s); end them and try again", s->path, s->open_reads,
                          reads_of_this_thread ? "this thread began one, of this store or another, and cannot wait"
                                               : "for a minute");
    int rc = mdb_env_set_mapsize(s->env, 0);
    s->map_lo = s->map_hi = 0; /* moved: found again at the next read */
    s->remaps++;
    pthread_cond_broadcast(&s->reads_or_remap);
    return rc ? remap_failed(s, rc, "following its growth by another process") : KVZ_OK;
}

/* KVZ_STORE_MAP_BYTES: the map a new store starts with (tests, small machines). */
static int map_bytes_from_env(size_t *out)
{
    const char *v = getenv("KVZ_STORE_MAP_BYTES");
    *out = INITIAL_MAP_BYTES;
    if (!v || !v[0])
        return KVZ_OK;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10, end++; break;
    case 'm': case 'M': shift = 20, end++; break;
    case 'g': case 'G': shift = 30, end++; break;
    case 't': case 'T': shift = 40, end++; break;
    default: break;
    }
    if (errno || end == v || v[0] == '-' || *end || n > (MAX_MAP_BYTES >> shift) ||
        (n << shift) < MIN_MAP_BYTES || (n << shift) > MAX_MAP_BYTES)
        return kvz_errorf(KVZ_ERR_ARG, "KVZ_STORE_MAP_BYTES='%.64s' is not a map size: give bytes, or a number "
                          "with K, M, G or T (powers of 1024), from 64K to 16T", v);
    *out = (size_t)(n << shift);
    return KVZ_OK;
}

const char *kvz_store_path(const kvz_store *s) { return s->path; }

static int check_version(kvz_store *s, MDB_txn *txn, int create)
{
    MDB_val key = {13, "store_version"}, val;
    int rc = LMDB_CALL(mdb_get(txn, s->dbi[KVZ_DB_META], &key, &val));
    if (rc == MDB_NOTFOUND && create) {
        MDB_val v = {strlen(KVZ_STORE_VERSION), KVZ_STORE_VERSION};
        rc = LMDB_CALL(mdb_put(txn, s->dbi[KVZ_DB_META], &key, &v, 0));
        return rc ? lmdb_write_error(rc, "writing the version", s->path) : KVZ_OK;
    }
    if (rc == MDB_NOTFOUND)
        return kvz_errorf(KVZ_ERR_FORMAT, "'%s' is an LMDB environment but not a kvz store", s->path);
    if (rc)
        return lmdb_error(rc, "reading the version", s->path);
    if (val.mv_size != strlen(KVZ_STORE_VERSION) || memcmp(val.mv_data, KVZ_STORE_VERSION, val.mv_size))
        return kvz_errorf(KVZ_ERR_FORMAT, "store '%s' has version '%.*s'; this kvz reads version %s",
                          s->path, (int)(val.mv_size > 16 ? 16 : val.mv_size), (const char *)val.mv_data,
                          KVZ_STORE_VERSION);
    return KVZ_OK;
}

static int open_dbs(kvz_store *s, int create)
{
    MDB_txn *txn;
    unsigned seen = s->remaps; /* at an open, or under s->lock (open_late) */
    int rc = txn_begin(s->env, s->readonly ? MDB_RDONLY : 0, &txn);
    /* grown by a writer since mdb_env_open mapped it: adopt the new size */
    for (int tries = 0; rc == MDB_MAP_RESIZED && tries < 32; tries++) {
        KVZ_TRY(adopt_map_size(s, seen));
        seen = s->remaps;
        rc = txn_begin(s->env, s->readonly ? MDB_RDONLY : 0, &txn);
    }
    if (rc)
        return lmdb_error(rc, "starting a transaction", s->path);
    /* No database at all: the run that created the store was killed before its
     * first commit. A writer finishes creating it; a reader sees it empty. */
    MDB_dbi main_dbi;
    MDB_stat ms;
    rc = LMDB_CALL(mdb_dbi_open(txn, NULL, 0, &main_dbi));
    if (rc == 0)
        rc = LMDB_CALL(mdb_stat(txn, main_dbi, &ms));
    if (rc == 0 && ms.ms_entries == 0) {
        if (s->readonly) {
            mdb_txn_abort(txn);
            s->empty = 1;
            return KVZ_OK;
        }
        create = 1;
    }
    for (int i = 0; i < 3 && rc == 0; i++) {
        /* only a new store gets its databases: an existing one without them is
         * damaged, and LMDB asserts when it writes into damaged pages */
        rc = LMDB_CALL(mdb_dbi_open(txn, DB_NAMES[i], create && !s->readonly ? MDB_CREATE : 0, &s->dbi[i]));
        if (rc == MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            return kvz_errorf(KVZ_ERR_FORMAT, "'%s' is not a kvz store (no '%s' database)", s->path,
                              DB_NAMES[i]);
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return s->readonly ? lmdb_error(rc, "opening the databases", s->path)
                           : lmdb_write_error(rc, "opening the databases", s->path);
    }
    int st = check_version(s, txn, create && !s->readonly);
    if (st != KVZ_OK) {
        mdb_txn_abort(txn);
        return st;
    }
    rc = LMDB_CALL(mdb_txn_commit(txn));
    return rc ? lmdb_write_error(rc, "committing", s->path) : KVZ_OK;
}

/* A write open refused (EACCES): which file this user may not use, said. */
static int access_refused(const char *dir, const char *data_path, const char *lock_path, int readonly)
{
    if (faccessat(AT_FDCWD, data_path, readonly ? R_OK : R_OK | W_OK, AT_EACCESS) != 0 && errno == EACCES)
        return kvz_errorf(KVZ_ERR_IO, "store '%s': this user may not %s its data.mdb (%s)", dir,
                          readonly ? "read" : "read and write", strerror(EACCES));
    if (!readonly && faccessat(AT_FDCWD, data_path, F_OK, AT_EACCESS) != 0 && errno == ENOENT)
        return kvz_errorf(KVZ_ERR_IO, "cannot create a store in '%s': %s", dir, strerror(EACCES));
    if (faccessat(AT_FDCWD, lock_path, F_OK, AT_EACCESS) != 0 && errno == ENOENT)
        return kvz_errorf(KVZ_ERR_IO, "store '%s' has no lock.mdb and this user may not create one in its "
                          "folder (%s): LMDB records its readers there, so reading needs it; create it as "
                          "the store's owner (any kvz command does)", dir, strerror(EACCES));
    return kvz_errorf(KVZ_ERR_IO, "store '%s': opening: %s (this user must be able to write its lock.mdb%s)", dir,
                      strerror(EACCES), readonly ? ", even to read" : " and its data.mdb");
}

/* LMDB maps lock.mdb and writes into it. On a full disk, a page of that sparse
 * file that cannot be allocated is a SIGBUS, not an error; allocating its blocks
 * first (beyond its end too: LMDB sets its size) makes it an error here. */
static int reserve_lock_file(const char *dir, const char *lock_path, int create)
{
    int fd = open(lock_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0666);
    if (fd < 0)
        return KVZ_OK; /* LMDB says what is wrong */
    struct stat st;
    off_t len = fstat(fd, &st) == 0 && st.st_size > LOCK_RESERVE_BYTES ? st.st_size : LOCK_RESERVE_BYTES;
    int rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, len) == 0 ? 0 : errno;
    close(fd);
    if (rc == ENOSPC || rc == EDQUOT)
        return kvz_errorf(KVZ_ERR_IO, "store '%s': %s while reserving its lock file (%s); nothing was written — "
                          "free space and run the same command again", dir,
                          rc == ENOSPC ? "the disk is full" : "the disk quota is used up", strerror(rc));
    return KVZ_OK; /* not supported here (EOPNOTSUPP...): as before */
}

/* Writers stage what no document references yet (unpack and import write
 * artifacts and prefixes before the records naming them), which gc would
 * drop: every writer holds lock.mdb shared (waiting while gc runs), and gc
 * holds it exclusively, refusing to start while a writer is at work. flock
 * and LMDB's own fcntl locks on that file are independent; the kernel drops
 * a killed process's lock. */
static int take_gate(kvz_store *s, const char *data_path, const char *lock_path, int exclusive)
{
    const char *dir = s->path;
    s->gate_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (s->gate_fd < 0) {
        int why = errno;
        return why == EACCES ? access_refused(dir, data_path, lock_path, 0)
                             : kvz_errorf(KVZ_ERR_IO, "store '%s': cannot open its lock file %s: %s", dir,
                                          lock_path, strerror(why));
    }
    int rc;
    while ((rc = flock(s->gate_fd, exclusive ? LOCK_EX | LOCK_NB : LOCK_SH | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (rc != 0 && !exclusive && errno == EWOULDBLOCK) { /* a gc is running: wait, and say so */
        fprintf(stderr, "kvz: store '%s' is being garbage-collected (kvz gc, rm or compile --prune); waiting for that to end\n", dir);
        while ((rc = flock(s->gate_fd, LOCK_SH)) != 0 && errno == EINTR)
            ;
    }
    if (rc != 0 && exclusive && errno == EWOULDBLOCK)
        return kvz_errorf(KVZ_ERR_IO, "store '%s' has another kvz process writing to it (compile, unpack, "
                          "import, merge, eval, gc or rm), whose artifacts no document may name yet; run this "
                          "again when it has ended", dir);
    if (rc != 0)
        return kvz_errorf(KVZ_ERR_IO, "store '%s': cannot lock its lock file: %s", dir, strerror(errno));
    return KVZ_OK;
}

int kvz_store_open(kvz_store **out, const char *dir, int flags)
{
    return kvz_store_open_sized(out, dir, flags, 0);
}

/* Pages from `first` to `last` that LMDB's free list (its database 0: per
 * transaction, a count then the page numbers) holds in the snapshot `txn`. */
static int free_pages_in(MDB_txn *txn, uint64_t first, uint64_t last, uint64_t *count)
{
    *count = 0;
    MDB_cursor *cur;
    int rc = LMDB_CALL(mdb_cursor_open(txn, 0, &cur));
    if (rc)
        return rc;
    MDB_val key, val;
    while ((rc = LMDB_CALL(mdb_cursor_get(cur, &key, &val, MDB_NEXT))) == 0) {
        const size_t *ids = val.mv_data; /* pgno_t: size_t in LMDB's 64-bit build */
        size_t n = val.mv_size >= sizeof *ids ? ids[0] : 0;
        for (size_t i = 1; i <= n && i * sizeof *ids < val.mv_size; i++)
            *count += ids[i] >= first && ids[i] <= last;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A read of the newest commit, and *info of that same commit (a writer
 * elsewhere may commit between the two: then again). At an open. */
static int newest_snapshot(kvz_store *s, MDB_txn **txn, MDB_envinfo *info)
{
    for (int tries = 0;; tries++) {
        unsigned seen = s->remaps;
        int rc = txn_begin(s->env, MDB_RDONLY, txn);
        if (rc == MDB_MAP_RESIZED && tries < 100) { /* grown since this open mapped it */
            KVZ_TRY(adopt_map_size(s, seen));
            continue;
        }
        if (rc)
            return lmdb_error(rc, "reading its free pages", s->path);
        if ((rc = mdb_env_info(s->env, info)) == 0 && info->me_last_txnid == mdb_txn_id(*txn))
            return KVZ_OK;
        mdb_txn_abort(*txn);
        *txn = NULL;
        if (rc || tries >= 100) /* EAGAIN: a writer committing all the while */
            return lmdb_error(rc ? rc : EAGAIN, "reading its free pages", s->path);
    }
}

/* A data.mdb shorter than the pages a commit numbered. LMDB leaves it so
 * when a transaction frees pages it allocated (they are never written):
 * sound. An interrupted copy (or a disk that filled under cp) leaves it so
 * too: then reading a missing page would fault (SIGBUS) in every command,
 * verify included. So the file is extended to its full size (fallocate never
 * shrinks it, nor touches what a writer elsewhere wrote), after which
 * nothing can fault, and the store is refused unless every page it lacked is
 * free in that commit. One snapshot throughout: its size and its free list
 * (what a writer elsewhere commits meanwhile, into pages free in it, is not
 * what the check asks about). */
static int check_short_file(kvz_store *s, const char *data_path, uint64_t page)
{
    const char *dir = s->path;
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    struct stat st;
    KVZ_TRY(newest_snapshot(s, &txn, &info));
    uint64_t needed = ((uint64_t)info.me_last_pgno + 1) * page;
    int status = KVZ_OK;
    if (stat(data_path, &st) != 0)
        status = kvz_errorf(KVZ_ERR_IO, "store '%s': cannot read its size: %s", dir, strerror(errno));
    else if ((uint64_t)st.st_size < needed) {
        int fd = open(data_path, O_RDWR | O_CLOEXEC);
        int grown = fd >= 0 && fallocate(fd, 0, st.st_size, (off_t)(needed - st.st_size)) == 0;
        int why = errno;
        if (fd >= 0)
            close(fd);
        uint64_t first = (uint64_t)st.st_size / page, free = 0;
        if (!grown && (why == EACCES || why == EPERM || why == EROFS)) /* LMDB leaves it so too: maybe sound */
            status = kvz_errorf(KVZ_ERR_IO, "store '%s': data.mdb has %llu bytes, its last commit numbered %llu "
                                "(as LMDB leaves it after some writes, or an interrupted copy), and this user may "
                                "not extend it to read it safely (%s): run any kvz command on it as a user who "
                                "may write it, or, if it was cut short, copy it again", dir,
                                (unsigned long long)st.st_size, (unsigned long long)needed, strerror(why));
        else if (!grown)
            status = kvz_errorf(KVZ_ERR_FORMAT, "store '%s': data.mdb has %llu bytes, its last commit numbered "
                                "%llu, and it cannot be extended to read it safely (%s); if it was cut short (an "
                                "interrupted copy?), copy it again", dir, (unsigned long long)st.st_size,
                                (unsigned long long)needed, strerror(why));
        /* a free list that does not read (its pages among those lost) says the same as one that lacks them */
        else if (free_pages_in(txn, first, info.me_last_pgno, &free) != 0 || free < info.me_last_pgno + 1 - first) {
            /* back as it was (unless a writer grew it or committed since: pages
             * past the old end may be its own): the next open says the same */
            MDB_envinfo later;
            struct stat now;
            if (stat(data_path, &now) == 0 && (uint64_t)now.st_size == needed && mdb_env_info(s->env, &later) == 0 &&
                later.me_last_txnid == info.me_last_txnid)
                if (truncate(data_path, st.st_size) != 0) { /* left as it is: the next open says the same */ }
            status = kvz_errorf(KVZ_ERR_FORMAT, "store '%s' is cut short: data.mdb had %llu bytes, its last "
                                "commit wrote %llu (an interrupted copy?); copy it again, or restore it", dir,
                                (unsigned long long)st.st_size, (unsigned long long)needed);
        }
    }
    mdb_txn_abort(txn);
    return status;
}

static int check_whole(kvz_store *s, const char *data_path)
{
    MDB_env *env = s->env;
    const char *dir = s->path;
    MDB_envinfo info;
    MDB_stat stat_of_env;
    struct stat st;
    int rc = mdb_env_info(env, &info);
    if (rc == 0)
        rc = mdb_env_stat(env, &stat_of_env);
    if (rc)
        return lmdb_error(rc, "reading its size", dir);
    if (stat(data_path, &st) != 0)
        return kvz_errorf(KVZ_ERR_IO, "store '%s': cannot read its size: %s", dir, strerror(errno));
    uint64_t page = stat_of_env.ms_psize;
    if ((uint64_t)st.st_size < ((uint64_t)info.me_last_pgno + 1) * page) /* rare: looked at closely */
        KVZ_TRY(check_short_file(s, data_path, page));
    if (mdb_env_get_maxkeysize(env) < KVZ_STORE_KEY_MAX)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "this LMDB takes keys of %d bytes at most; kvz needs %d",
                          mdb_env_get_maxkeysize(env), KVZ_STORE_KEY_MAX);
    return KVZ_OK;
}

/* The store of data.mdb `st` this process has open, or NULL; refused when
 * it cannot serve `flags` (under open_stores_lock). */
static int find_open_store(const struct stat *st, const char *dir, int flags, kvz_store **found)
{
    *found = NULL;
    for (kvz_store *s = open_stores; s; s = s->next_open)
        if (s->dev == st->st_dev && s->ino == st->st_ino) {
            if (s->exclusive || (flags & KVZ_STORE_EXCLUSIVE))
                return kvz_errorf(KVZ_ERR_IO, "store '%s' is open in this process already, and %s needs it alone",
                                  dir, s->exclusive ? "that open (gc, rm or a prune)" : "this one (gc, rm or a prune)");
            if (s->readonly && !(flags & KVZ_STORE_READONLY))
                return kvz_errorf(KVZ_ERR_ARG, "store '%s' is open read-only in this process (an engine?): close "
                                  "it before writing to the store", dir);
            *found = s;
            return KVZ_OK;
        }
    return KVZ_OK;
}

static int store_open_alone(kvz_store **out, const char *dir, int flags, size_t initial_map_bytes);

int kvz_store_open_sized(kvz_store **out, const char *dir, int flags, size_t initial_map_bytes)
{
    *out = NULL;
    char data_path[4096];
    snprintf(data_path, sizeof data_path, "%s/data.mdb", dir);
    struct stat st;
    pthread_once(&fork_handler_once, install_fork_handler);
    pthread_mutex_lock(&open_stores_lock);
    kvz_store *s = NULL;
    int rc = stat(data_path, &st) == 0 ? find_open_store(&st, dir, flags, &s) : KVZ_OK;
    if (rc == KVZ_OK && s) {
        s->refs++;
        *out = s;
    } else if (rc == KVZ_OK && (rc = store_open_alone(&s, dir, flags, initial_map_bytes)) == KVZ_OK) {
        /* every open store, an empty one too: its first read after a commit opens the environment
         * (open_late), and later opens of the store in the process must share that one */
        if (stat(data_path, &st) == 0) {
            s->dev = st.st_dev, s->ino = st.st_ino;
            s->exclusive = (flags & KVZ_STORE_EXCLUSIVE) != 0;
            s->next_open = open_stores;
            open_stores = s;
        }
        s->refs = 1;
        *out = s;
    }
    pthread_mutex_unlock(&open_stores_lock);
    return rc;
}

static void store_close_alone(kvz_store *s);

void kvz_store_close(kvz_store *s)
{
    if (!s)
        return;
    /* its parent's, in a child of fork: closing its descriptors of lock.mdb would
     * drop this process's own POSIX locks on that file (those of a store it
     * opened itself), and its locks may be held by threads it lacks; the
     * child's copy goes when it ends */
    if (!kvz_store_opened_here(s))
        return;
    pthread_mutex_lock(&open_stores_lock);
    int last = --s->refs <= 0;
    for (kvz_store **at = &open_stores; last && *at; at = &(*at)->next_open)
        if (*at == s) {
            *at = s->next_open;
            break;
        }
    if (last) /* inside the lock: an open of the store waits for the close of its descriptors */
        store_close_alone(s);
    pthread_mutex_unlock(&open_stores_lock);
}

/* data.mdb and lock.mdb are plain files of the store's folder: LMDB writes
 * both, and through a link planted under either name it would write over
 * whatever file the link names. */
static int check_plain_files(const char *dir)
{
    static const char *const names[] = {"data.mdb", "lock.mdb"};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
            return kvz_errorf(KVZ_ERR_FORMAT, "store '%s': its %s is %s, not a plain file; kvz writes neither "
                              "through it nor over it (a store's folder may be a link, its files not)", dir,
                              names[i], S_ISLNK(st.st_mode) ? "a symbolic link" : "something else");
    }
    return KVZ_OK;
}

/* LMDB takes data.mdb's two meta pages on trust: a page size changed in one
 * maps past the file's end, and the first read of it is a SIGBUS in every
 * command. Both are checked first, and must agree (LMDB never changes a
 * store's page size). The layout is mdb.c's (not in lmdb.h): a page header
 * (a page number, size_t, and four 16-bit fields), then MDB_meta: the magic,
 * the version, an address, the map size, then the free-page database whose
 * first field holds the page size. */
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_DATA_VERSION 1u
#define META_AT (sizeof(size_t) + 8)
#define PAGE_SIZE_AT (META_AT + 8 + sizeof(void *) + sizeof(size_t))
static int check_meta_pages(const char *dir, const char *data_path)
{
    int fd = open(data_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return KVZ_OK; /* LMDB says what is wrong */
    uint8_t meta[2][PAGE_SIZE_AT + 4];
    uint32_t page_size = 0;
    int rc = KVZ_OK;
    for (int i = 0; i < 2 && rc == KVZ_OK; i++) {
        if (pread(fd, meta[i], sizeof meta[i], (off_t)i * page_size) != (ssize_t)sizeof meta[i])
            break; /* a file shorter than its meta pages: LMDB refuses it */
        uint32_t magic, version, psize;
        memcpy(&magic, meta[i] + META_AT, 4);
        memcpy(&version, meta[i] + META_AT + 4, 4);
        memcpy(&psize, meta[i] + PAGE_SIZE_AT, 4);
        if (magic != LMDB_MAGIC || version != LMDB_DATA_VERSION || psize < 512 || psize > 65536 ||
            (psize & (psize - 1)) || (i == 1 && psize != page_size))
            rc = kvz_errorf(KVZ_ERR_FORMAT, "store '%s' is damaged: meta page %d of its data.mdb is not LMDB's "
                            "(magic %08x, version %u, page size %u); nothing was read or changed", dir, i, magic,
                            version, psize);
        page_size = psize;
    }
    close(fd);
    return rc;
}

static int open_environment(kvz_store *s, const char *data_path, int flags, int fresh, size_t initial_map_bytes);

static int store_open_alone(kvz_store **out, const char *dir, int flags, size_t initial_map_bytes)
{
    *out = NULL;
    int readonly = (flags & KVZ_STORE_READONLY) != 0;
    struct stat st;
    int exists = stat(dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return kvz_errorf(KVZ_ERR_IO, "store '%s' is not a directory", dir);
    if (!exists && (!(flags & KVZ_STORE_CREATE) || readonly))
        return kvz_errorf(KVZ_ERR_NOT_FOUND, "no store at '%s'", dir);
    char data_path[4096];
    snprintf(data_path, sizeof data_path, "%s/data.mdb", dir);
    if (exists)
        KVZ_TRY(check_plain_files(dir));
    int has_data = exists && stat(data_path, &st) == 0;
    if (exists && !has_data && errno != ENOENT) /* EACCES: the folder is not ours to read */
        return kvz_errorf(KVZ_ERR_IO, "store '%s': cannot read its data.mdb: %s", dir, strerror(errno));
    /* an empty data.mdb: killed between creating the file and writing its first pages */
    int fresh = !has_data || st.st_size == 0;
    if (!has_data && (!(flags & KVZ_STORE_CREATE) || readonly))
        return kvz_errorf(KVZ_ERR_NOT_FOUND, "no store at '%s' (no data.mdb)", dir);
    if (fresh && !readonly && initial_map_bytes == 0)
        KVZ_TRY(map_bytes_from_env(&initial_map_bytes));
    if (!exists && mkdir(dir, 0777) != 0) {
        int why = errno; /* EEXIST: another writer made it first, or a dangling link names it */
        if (why == EEXIST && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode) && stat(dir, &st) != 0)
            return kvz_errorf(KVZ_ERR_IO, "cannot create store directory '%s': it is a symbolic link whose "
                              "target cannot be reached (%s); make the folder it names, or give another", dir,
                              strerror(errno));
        if (why != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return kvz_errorf(KVZ_ERR_IO, "cannot create store directory '%s': %s", dir, strerror(why));
    }

    kvz_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(dir))) {
        free(s);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    s->opener = getpid();
    s->generation = atomic_load(&fork_generation);
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t monotonic; /* a wait's minute, whatever the wall clock does meanwhile */
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&s->reads_or_remap, &monotonic);
    pthread_condattr_destroy(&monotonic);
    s->gate_fd = -1;
    s->readonly = readonly;
    if (readonly && fresh) { /* nothing to open: an empty store (open_late) */
        s->empty = 1;
        *out = s;
        return KVZ_OK;
    }
    int status = open_environment(s, data_path, flags, fresh, initial_map_bytes);
    /* LMDB syncs a store's data, not the names of its files: a new store's
     * files, and a new store's folder, survive a power cut once synced too */
    if (status == KVZ_OK && fresh && !readonly)
        status = kvz_sync_folder(dir);
    if (status == KVZ_OK && !exists)
        status = kvz_sync_folder_of(dir);
    if (status != KVZ_OK) {
        store_close_alone(s);
        return status;
    }
    *out = s;
    return KVZ_OK;
}

/* s->env, created and set up, not yet opened. */
static int create_env(kvz_store *s, int fresh, size_t initial_map_bytes)
{
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, 8);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, 256);
    if (rc == 0 && fresh)
        rc = mdb_env_set_mapsize(s->env, initial_map_bytes);
    return rc;
}

/* Whether the folder is on a file system mounted read-only (a read-only bind
 * mount too, which answers a write open with EACCES before EROFS). */
static int on_read_only_mount(const char *dir)
{
    struct statvfs fs;
    return statvfs(dir, &fs) == 0 && (fs.f_flag & ST_RDONLY);
}

/* Whether lock.mdb (else, where it is missing, the folder) is on a read-only
 * mount: LMDB reads without the lock there (a writable lock.mdb bound over
 * a read-only store keeps it). */
static int lock_on_read_only_mount(const char *dir, const char *lock_path)
{
    struct statvfs fs;
    if (statvfs(lock_path, &fs) == 0)
        return (fs.f_flag & ST_RDONLY) != 0;
    return on_read_only_mount(dir);
}

/* Whether a process holds LMDB's lock on lock.mdb (every process with the
 * store open does, reader or writer, in any pid namespace): read without the
 * lock file then, a reader could read pages a writer reuses. */
static int lock_held_elsewhere(const char *lock_path)
{
    int fd = open(lock_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int held = fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
    close(fd);
    return held;
}

/* A lock.mdb that root's open would make for an existing store (LMDB makes
 * one for a reader too) is made first, with data.mdb's owner and group,
 * read-write wherever data.mdb is readable (every reader writes lock.mdb):
 * root's own would lock the store's users out. Before LMDB opens it, never
 * after: closing any descriptor of lock.mdb drops every POSIX lock the process
 * holds on it, LMDB's among them, and without its "in use" lock the next
 * process to open the store finds itself alone and wipes the reader table,
 * this process's open reads with it (a writer may then reuse their pages).
 * O_EXCL: whatever another process put there first is not changed here (a
 * link there is LMDB's to follow, as it was before this). */
static void make_lock_file_as_data(const char *lock_path, const char *data_path)
{
    struct stat data;
    if (geteuid() != 0 || stat(data_path, &data) != 0)
        return;
    int fd = open(lock_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0)
        return; /* there already, or not to be made here: LMDB says what is wrong */
    mode_t readable = data.st_mode & 0444;
    if (fchown(fd, data.st_uid, data.st_gid) == 0)
        (void)fchmod(fd, readable | readable >> 1);
    close(fd);
}

/* The LMDB environment of s (its folder s->path), and its databases. */
static int open_environment(kvz_store *s, const char *data_path, int flags, int fresh, size_t initial_map_bytes)
{
    const char *dir = s->path;
    int readonly = s->readonly;
    char lock_path[4096];
    snprintf(lock_path, sizeof lock_path, "%s/lock.mdb", dir);
    int status = fresh ? KVZ_OK : check_meta_pages(dir, data_path);
    if (status == KVZ_OK && !fresh)
        make_lock_file_as_data(lock_path, data_path);
    if (status == KVZ_OK)
        status = reserve_lock_file(dir, lock_path, !readonly);
    if (status == KVZ_OK && !readonly)
        status = take_gate(s, data_path, lock_path, (flags & KVZ_STORE_EXCLUSIVE) != 0);
    if (status != KVZ_OK)
        return status;
    /* On a read-only file system LMDB reads without lock.mdb (EROFS, what
     * root gets); a read-only bind mount (a container's :ro volume) says
     * EACCES first when lock.mdb is not this user's to write: read it the
     * same way there. Either way no reader there holds the lock: not while
     * another process has the store open (a writer elsewhere may reuse pages). */
    int busy = readonly && lock_on_read_only_mount(dir, lock_path) && lock_held_elsewhere(lock_path);
    int rc = busy ? EACCES : create_env(s, fresh, initial_map_bytes);
    /* MDB_NOTLS: read transactions may move between threads of a server */
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | (readonly ? MDB_RDONLY : 0), 0666);
    if (rc == EACCES && !busy && readonly && on_read_only_mount(dir) && !(busy = lock_held_elsewhere(lock_path))) {
        mdb_env_close(s->env);
        s->env = NULL;
        if ((rc = create_env(s, fresh, initial_map_bytes)) == 0)
            rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_RDONLY | MDB_NOLOCK, 0666);
    }
    if (busy)
        status = kvz_errorf(KVZ_ERR_IO, "store '%s' is on a read-only mount, where a reader cannot write its "
                            "lock.mdb, and another process has it open (a writer elsewhere may reuse pages a "
                            "reader without the lock would read): mount it read-write where it is shared with "
                            "a writer, or read it while no other process has it open", dir);
    else if (rc == EACCES) /* LMDB records its readers in lock.mdb: reading needs it writable */
        status = access_refused(dir, data_path, lock_path, readonly);
    else
        status = rc ? lmdb_error_at(rc, "opening", dir, fresh && !readonly) : KVZ_OK; /* a new one writes */
    if (status == KVZ_OK && !fresh)
        status = check_whole(s, data_path);
    /* Every open frees the reader slots of killed readers: left alone, they
     * pin old pages (the file keeps growing) and, 256 of them, refuse every
     * read. (The writer lock of a killed writer is a robust mutex that LMDB
     * recovers by itself.) */
    int dead = 0;
    if (status == KVZ_OK && (rc = mdb_reader_check(s->env, &dead)) != 0)
        status = lmdb_error(rc, "clearing the reader slots of killed processes", dir);
    if (status == KVZ_OK)
        status = open_dbs(s, fresh);
    return status;
}

/* A store opened read-only before anything was committed to it (its creator
 * still at work, or killed before its first commit) reads as empty; once a
 * writer has committed, the next read opens what it wrote, so that an engine
 * started beside the first compile sees that compile's documents. Under
 * s->lock with no read open; a store still empty, or not yet whole, stays
 * empty until the next read tries again. */
static void open_late(kvz_store *s)
{
    s->empty = 0; /* open_dbs sets it again where the writer has committed nothing yet */
    if (s->env) {
        if (open_dbs(s, 0) != KVZ_OK)
            s->empty = 1;
        return;
    }
    char data_path[4096];
    struct stat st;
    snprintf(data_path, sizeof data_path, "%s/data.mdb", s->path);
    if (stat(data_path, &st) != 0 || st.st_size == 0 ||
        open_environment(s, data_path, KVZ_STORE_READONLY, 0, 0) != KVZ_OK) {
        if (s->env)
            mdb_env_close(s->env);
        s->env = NULL;
        s->empty = 1;
    }
}

static void store_close_alone(kvz_store *s)
{
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    if (s->gate_fd >= 0)
        close(s->gate_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->reads_or_remap);
    free(s->path);
    free(s);
}

static int grow_map(kvz_store *s)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    size_t next = info.me_mapsize * 2;
    if (next > MAX_MAP_BYTES)
        return kvz_errorf(KVZ_ERR_RANGE, "store '%s' is full: its map would grow beyond %llu bytes, the most "
                          "kvz allows; nothing of this write was stored and the store is intact — put the rest "
                          "into another store", s->path, (unsigned long long)MAX_MAP_BYTES);
    pthread_mutex_lock(&s->lock);
    int st = KVZ_OK;
    if (s->open_reads > 0) {
        st = kvz_errorf(KVZ_ERR_IO, "store '%s' is full and cannot grow while %d read(s) of it are open in this "
                        "process; nothing of this write was stored", s->path, s->open_reads);
    } else if (s->broken) {
        st = unusable(s);
    } else {
        int rc = mdb_env_set_mapsize(s->env, next);
        s->map_lo = s->map_hi = 0;
        s->remaps += rc == 0; /* moved: a waiter to adopt a size goes on with this map */
        if (rc == EINVAL) /* a write is open in another thread: the map was not touched */
            st = kvz_errorf(KVZ_ERR_IO, "store '%s' is full and cannot grow while another thread of this "
                            "process writes to it; nothing of this write was stored", s->path);
        else if (rc) {
            char what[64];
            snprintf(what, sizeof what, "growing its map to %zu bytes", next);
            st = remap_failed(s, rc, what);
        }
        pthread_cond_broadcast(&s->reads_or_remap); /* remapped, or broken: waiters see which */
    }
    pthread_mutex_unlock(&s->lock);
    return st;
}

int kvz_store_write(kvz_store *s, kvz_store_write_fn fn, void *ctx)
{
    KVZ_TRY(fork_child_refused(s));
    if (s->readonly)
        return kvz_errorf(KVZ_ERR_ARG, "store '%s' is open read-only", s->path);
    for (;;) {
        if (s->broken)
            return unusable(s);
        kvz_store_txn t = {.store = s};
        pthread_mutex_lock(&s->lock);
        unsigned seen = s->remaps; /* before the begin: a remap by another thread since is not redone */
        pthread_mutex_unlock(&s->lock);
        int rc = LMDB_CALL(mdb_txn_begin(s->env, NULL, 0, &t.txn));
        if (rc == MDB_MAP_RESIZED) { /* another process grew it: adopt the new size */
            pthread_mutex_lock(&s->lock);
            int st = adopt_map_size(s, seen);
            pthread_mutex_unlock(&s->lock);
            if (st != KVZ_OK)
                return st;
            continue;
        }
        if (rc)
            return lmdb_error(rc, "starting a write", s->path);
        int st = fn(&t, ctx);
        if (st == KVZ_OK) {
            rc = LMDB_CALL(mdb_txn_commit(t.txn)); /* on failure LMDB has aborted it: nothing was stored */
            if (rc == 0)
                return KVZ_OK;
            if (rc != MDB_MAP_FULL)
                return lmdb_write_error(rc, "committing", s->path);
        } else {
            mdb_txn_abort(t.txn);
            if (!t.map_full)
                return st;
        }
        KVZ_TRY(grow_map(s)); /* full: nothing was written; grow and run fn again */
    }
}

/* The mapping of this process that holds `inside`, from /proc/self/maps. */
static int mapping_holding(uintptr_t inside, uintptr_t *lo, uintptr_t *hi)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int found = 0, line_start = 1;
    while (f && !found && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (line_start && sscanf(line, "%lx-%lx", &a, &b) == 2 && inside >= a && inside < b)
            *lo = a, *hi = b, found = 1;
        line_start = strchr(line, '\n') != NULL; /* a long path's rest is no line of its own */
    }
    if (f)
        fclose(f);
    return found;
}

/* A read's bounds (under the store's lock): the map is where the store's
 * version, read through this transaction, lies; the file's pages are those
 * up to the last one the latest commit numbered (check_whole made sure the
 * file holds them). No bounds, and no check, where they cannot be found. */
static void read_bounds(kvz_store_txn *t)
{
    kvz_store *s = t->store;
    MDB_val key = {13, "store_version"}, val;
    MDB_envinfo info;
    MDB_stat env_stat;
    if (LMDB_CALL(mdb_env_info(s->env, &info)) != 0 || LMDB_CALL(mdb_env_stat(s->env, &env_stat)) != 0)
        return;
    /* found once: the map stays where it is until a remap, which forgets it */
    if (!s->map_hi && (LMDB_CALL(mdb_get(t->txn, s->dbi[KVZ_DB_META], &key, &val)) != 0 ||
                       !mapping_holding((uintptr_t)val.mv_data, &s->map_lo, &s->map_hi))) {
        s->map_lo = s->map_hi = 0;
        return;
    }
    uint64_t used = ((uint64_t)info.me_last_pgno + 1) * env_stat.ms_psize;
    t->file_lo = (const char *)s->map_lo;
    t->file_hi = t->file_lo + (used < s->map_hi - s->map_lo ? used : s->map_hi - s->map_lo);
}

int kvz_store_read_begin(kvz_store *s, kvz_store_txn **out)
{
    *out = NULL;
    KVZ_TRY(fork_child_refused(s));
    kvz_store_txn *t = calloc(1, sizeof *t);
    if (!t)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    t->store = s;
    pthread_mutex_lock(&s->lock);
    int st = s->broken ? unusable(s) : KVZ_OK;
    if (st == KVZ_OK && s->empty && s->open_reads == 0)
        open_late(s);
    int rc = st == KVZ_OK && s->env ? txn_begin(s->env, MDB_RDONLY, &t->txn) : 0;
    /* MDB_MAP_RESIZED: a writer grew the store past our map; remap (LMDB's
     * mdb_env_set_mapsize(env, 0)) and begin again. A busy writer may grow it
     * again in between, hence the loop. */
    for (int tries = 0; rc == MDB_MAP_RESIZED && st == KVZ_OK && tries < 32; tries++) {
        st = adopt_map_size(s, s->remaps); /* the lock held since the begin: no remap since */
        if (st == KVZ_OK)
            rc = txn_begin(s->env, MDB_RDONLY, &t->txn);
    }
    if (st == KVZ_OK && rc)
        st = lmdb_error(rc, "starting a read", s->path);
    if (st == KVZ_OK && s->env)
        read_bounds(t);
    if (st == KVZ_OK)
        s->open_reads++, reads_of_this_thread++, t->reader = pthread_self();
    pthread_mutex_unlock(&s->lock);
    if (st != KVZ_OK) {
        free(t);
        return st;
    }
    *out = t;
    return KVZ_OK;
}

void kvz_store_read_end(kvz_store_txn *t)
{
    if (!t)
        return;
    kvz_store *s = t->store;
    pthread_mutex_lock(&s->lock);
    if (t->txn)
        mdb_txn_abort(t->txn);
    if (--s->open_reads == 0)
        pthread_cond_broadcast(&s->reads_or_remap);
    /* a read ended on another thread than began it (MDB_NOTLS allows it) leaves its
     * thread's count up: that thread no longer waits to remap (an error at once instead) */
    if (pthread_equal(t->reader, pthread_self()))
        reads_of_this_thread--;
    pthread_mutex_unlock(&s->lock);
    free(t);
}

int kvz_store_get(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len,
                  const void **val, size_t *val_len)
{
    if (t->store->empty || key_len == 0 || key_len > KVZ_STORE_KEY_MAX) /* no such key can be stored */
        return KVZ_ERR_NOT_FOUND;
    MDB_val k = {key_len, (void *)key}, v;
    int rc = LMDB_CALL(mdb_get(t->txn, t->store->dbi[db], &k, &v));
    if (rc == MDB_NOTFOUND)
        return KVZ_ERR_NOT_FOUND; /* callers word the message: they know what was sought */
    if (rc)
        return lmdb_error(rc, "reading", t->store->path);
    within_file(t, &v);
    *val = v.mv_data;
    *val_len = v.mv_size;
    return KVZ_OK;
}

int kvz_store_put(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len,
                  const void *val, size_t val_len)
{
    if (key_len == 0 || key_len > KVZ_STORE_KEY_MAX)
        return kvz_errorf(KVZ_ERR_ARG, "a key (document name) of %zu bytes: the store takes 1 to %d", key_len,
                          KVZ_STORE_KEY_MAX);
    MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
    int rc = LMDB_CALL(mdb_put(t->txn, t->store->dbi[db], &k, &v, 0));
    if (rc == MDB_MAP_FULL)
        t->map_full = 1;
    return rc ? lmdb_write_error(rc, "writing", t->store->path) : KVZ_OK;
}

int kvz_store_key_order(const void *a, size_t a_len, const void *b, size_t b_len)
{
    int d = memcmp(a, b, a_len < b_len ? a_len : b_len);
    return d ? d : (a_len > b_len) - (a_len < b_len);
}

int kvz_store_del(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len)
{
    MDB_val k = {key_len, (void *)key};
    int rc = LMDB_CALL(mdb_del(t->txn, t->store->dbi[db], &k, NULL));
    if (rc == MDB_MAP_FULL)
        t->map_full = 1;
    if (rc == MDB_NOTFOUND)
        return KVZ_ERR_NOT_FOUND;
    return rc ? lmdb_write_error(rc, "deleting", t->store->path) : KVZ_OK;
}

int kvz_store_scan(kvz_store_txn *t, kvz_store_db db, kvz_store_visit_fn fn, void *ctx)
{
    if (t->store->empty)
        return KVZ_OK;
    MDB_cursor *cur;
    int rc = LMDB_CALL(mdb_cursor_open(t->txn, t->store->dbi[db], &cur));
    if (rc)
        return lmdb_error(rc, "scanning", t->store->path);
    MDB_val k, v;
    int st = KVZ_OK;
    for (rc = LMDB_CALL(mdb_cursor_get(cur, &k, &v, MDB_FIRST)); rc == 0 && st == KVZ_OK;
         rc = LMDB_CALL(mdb_cursor_get(cur, &k, &v, MDB_NEXT))) {
        within_file(t, &v);
        if (k.mv_size == 0 || k.mv_size > KVZ_STORE_KEY_MAX || outside_file(t, k.mv_data, k.mv_size))
            st = damaged_page(t); /* a key names its entry: without it the scan cannot go on */
        else
            st = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    if (st != KVZ_OK)
        return st;
    return rc == MDB_NOTFOUND ? KVZ_OK : lmdb_error(rc, "scanning", t->store->path);
}

int kvz_store_free_bytes(kvz_store_txn *t, uint64_t *bytes)
{
    *bytes = 0;
    if (t->store->empty)
        return KVZ_OK;
    MDB_stat st;
    uint64_t pages = 0;
    int rc = LMDB_CALL(mdb_env_stat(t->store->env, &st));
    if (rc == 0)
        rc = free_pages_in(t->txn, 0, UINT64_MAX, &pages);
    if (rc)
        return lmdb_error(rc, "reading its free pages", t->store->path);
    *bytes = pages * st.ms_psize;
    return KVZ_OK;
}

int kvz_store_count(kvz_store_txn *t, kvz_store_db db, size_t *entries)
{
    *entries = 0;
    if (t->store->empty)
        return KVZ_OK;
    MDB_stat st;
    int rc = LMDB_CALL(mdb_stat(t->txn, t->store->dbi[db], &st));
    if (rc)
        return lmdb_error(rc, "counting", t->store->path);
    *entries = st.ms_entries;
    return KVZ_OK;
}
