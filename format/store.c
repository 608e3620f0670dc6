/* store.c — the LMDB environment behind a kvz store. */
#include "format/store.h"
#include "common/error.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INITIAL_MAP_BYTES (1ull << 30)
#define MAX_MAP_BYTES (1ull << 44) /* 16 TiB: a guard against runaway growth */

static const char *const DB_NAMES[] = {"artifacts", "docs", "meta"};

struct kvz_store {
    MDB_env *env;
    MDB_dbi dbi[3];
    char *path;
    int readonly;
};

struct kvz_store_txn {
    kvz_store *store;
    MDB_txn *txn;
    int map_full; /* a put hit MDB_MAP_FULL: the write is retried on a bigger map */
};

static int lmdb_error(int rc, const char *what, const char *path)
{
    int status = rc == ENOENT ? KVZ_ERR_NOT_FOUND
                 : rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH
                     ? KVZ_ERR_FORMAT
                 : rc == ENOMEM ? KVZ_ERR_NOMEM
                 : rc == MDB_MAP_FULL ? KVZ_ERR_RANGE
                                      : KVZ_ERR_IO;
    return kvz_errorf(status, "store '%s': %s: %s", path, what, mdb_strerror(rc));
}

const char *kvz_store_path(const kvz_store *s) { return s->path; }

static int check_version(kvz_store *s, MDB_txn *txn, int create)
{
    MDB_val key = {13, "store_version"}, val;
    int rc = mdb_get(txn, s->dbi[KVZ_DB_META], &key, &val);
    if (rc == MDB_NOTFOUND && create) {
        MDB_val v = {strlen(KVZ_STORE_VERSION), KVZ_STORE_VERSION};
        rc = mdb_put(txn, s->dbi[KVZ_DB_META], &key, &v, 0);
        return rc ? lmdb_error(rc, "writing the version", s->path) : KVZ_OK;
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
    int rc = mdb_txn_begin(s->env, NULL, s->readonly ? MDB_RDONLY : 0, &txn);
    if (rc)
        return lmdb_error(rc, "starting a transaction", s->path);
    for (int i = 0; i < 3 && rc == 0; i++) {
        rc = mdb_dbi_open(txn, DB_NAMES[i], s->readonly ? 0 : MDB_CREATE, &s->dbi[i]);
        if (rc == MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            return kvz_errorf(KVZ_ERR_FORMAT, "'%s' is not a kvz store (no '%s' database)", s->path,
                              DB_NAMES[i]);
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return lmdb_error(rc, "opening the databases", s->path);
    }
    int st = check_version(s, txn, create && !s->readonly);
    if (st != KVZ_OK) {
        mdb_txn_abort(txn);
        return st;
    }
    rc = mdb_txn_commit(txn);
    return rc ? lmdb_error(rc, "committing", s->path) : KVZ_OK;
}

int kvz_store_open(kvz_store **out, const char *dir, int flags)
{
    return kvz_store_open_sized(out, dir, flags, INITIAL_MAP_BYTES);
}

int kvz_store_open_sized(kvz_store **out, const char *dir, int flags, size_t initial_map_bytes)
{
    *out = NULL;
    struct stat st;
    int exists = stat(dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return kvz_errorf(KVZ_ERR_IO, "store '%s' is not a directory", dir);
    if (!exists) {
        if (!(flags & KVZ_STORE_CREATE) || (flags & KVZ_STORE_READONLY))
            return kvz_errorf(KVZ_ERR_NOT_FOUND, "no store at '%s'", dir);
        if (mkdir(dir, 0777) != 0)
            return kvz_errorf(KVZ_ERR_IO, "cannot create store directory '%s': %s", dir, strerror(errno));
    }
    char data_path[4096];
    snprintf(data_path, sizeof data_path, "%s/data.mdb", dir);
    int fresh = access(data_path, F_OK) != 0;
    if (fresh && !(flags & KVZ_STORE_CREATE))
        return kvz_errorf(KVZ_ERR_NOT_FOUND, "no store at '%s' (no data.mdb)", dir);

    kvz_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(dir))) {
        free(s);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    s->readonly = (flags & KVZ_STORE_READONLY) != 0;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, 8);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, 256);
    if (rc == 0 && fresh)
        rc = mdb_env_set_mapsize(s->env, initial_map_bytes);
    /* MDB_NOTLS: read transactions may move between threads of a server */
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, MDB_NOTLS | (s->readonly ? MDB_RDONLY : 0), 0666);
    int status = rc ? lmdb_error(rc, "opening", dir) : open_dbs(s, fresh);
    if (status != KVZ_OK) {
        kvz_store_close(s);
        return status;
    }
    *out = s;
    return KVZ_OK;
}

void kvz_store_close(kvz_store *s)
{
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    free(s->path);
    free(s);
}

static int grow_map(kvz_store *s)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    size_t next = info.me_mapsize * 2;
    if (next > MAX_MAP_BYTES)
        return kvz_errorf(KVZ_ERR_RANGE, "store '%s' would grow beyond %llu bytes", s->path,
                          (unsigned long long)MAX_MAP_BYTES);
    int rc = mdb_env_set_mapsize(s->env, next);
    return rc ? lmdb_error(rc, "growing the map", s->path) : KVZ_OK;
}

int kvz_store_write(kvz_store *s, kvz_store_write_fn fn, void *ctx)
{
    if (s->readonly)
        return kvz_errorf(KVZ_ERR_ARG, "store '%s' is open read-only", s->path);
    for (;;) {
        kvz_store_txn t = {s, NULL, 0};
        int rc = mdb_txn_begin(s->env, NULL, 0, &t.txn);
        if (rc == MDB_MAP_RESIZED) { /* another process grew it: adopt the new size */
            mdb_env_set_mapsize(s->env, 0);
            continue;
        }
        if (rc)
            return lmdb_error(rc, "starting a write", s->path);
        int st = fn(&t, ctx);
        if (st == KVZ_OK) {
            rc = mdb_txn_commit(t.txn);
            if (rc == 0)
                return KVZ_OK;
            if (rc != MDB_MAP_FULL)
                return lmdb_error(rc, "committing", s->path);
        } else {
            mdb_txn_abort(t.txn);
            if (!t.map_full)
                return st;
        }
        KVZ_TRY(grow_map(s)); /* full: nothing was written; grow and run fn again */
    }
}

int kvz_store_read_begin(kvz_store *s, kvz_store_txn **out)
{
    *out = NULL;
    kvz_store_txn *t = calloc(1, sizeof *t);
    if (!t)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    t->store = s;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(s->env, 0);
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
    }
    if (rc) {
        free(t);
        return lmdb_error(rc, "starting a read", s->path);
    }
    *out = t;
    return KVZ_OK;
}

void kvz_store_read_end(kvz_store_txn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

int kvz_store_get(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len,
                  const void **val, size_t *val_len)
{
    MDB_val k = {key_len, (void *)key}, v;
    int rc = mdb_get(t->txn, t->store->dbi[db], &k, &v);
    if (rc == MDB_NOTFOUND)
        return KVZ_ERR_NOT_FOUND; /* callers word the message: they know what was sought */
    if (rc)
        return lmdb_error(rc, "reading", t->store->path);
    *val = v.mv_data;
    *val_len = v.mv_size;
    return KVZ_OK;
}

int kvz_store_put(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len,
                  const void *val, size_t val_len)
{
    MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
    int rc = mdb_put(t->txn, t->store->dbi[db], &k, &v, 0);
    if (rc == MDB_MAP_FULL)
        t->map_full = 1;
    return rc ? lmdb_error(rc, "writing", t->store->path) : KVZ_OK;
}

int kvz_store_del(kvz_store_txn *t, kvz_store_db db, const void *key, size_t key_len)
{
    MDB_val k = {key_len, (void *)key};
    int rc = mdb_del(t->txn, t->store->dbi[db], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return KVZ_ERR_NOT_FOUND;
    return rc ? lmdb_error(rc, "deleting", t->store->path) : KVZ_OK;
}

int kvz_store_scan(kvz_store_txn *t, kvz_store_db db, kvz_store_visit_fn fn, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->store->dbi[db], &cur);
    if (rc)
        return lmdb_error(rc, "scanning", t->store->path);
    MDB_val k, v;
    int st = KVZ_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && st == KVZ_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        st = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
    mdb_cursor_close(cur);
    if (st != KVZ_OK)
        return st;
    return rc == MDB_NOTFOUND ? KVZ_OK : lmdb_error(rc, "scanning", t->store->path);
}

int kvz_store_count(kvz_store_txn *t, kvz_store_db db, size_t *entries)
{
    MDB_stat st;
    int rc = mdb_stat(t->txn, t->store->dbi[db], &st);
    if (rc)
        return lmdb_error(rc, "counting", t->store->path);
    *entries = st.ms_entries;
    return KVZ_OK;
}
