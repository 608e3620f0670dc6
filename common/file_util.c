/* file_util.c — atomic file replacement and whole-file reads. */
#include "common/file_util.h"
#include "common/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where a write to `path`, which does not exist, lands: the path a dangling
 * link names (relative to the link's folder), else path itself. */
static char *link_target(const char *path)
{
    struct stat lst;
    char target[4096];
    ssize_t n;
    if (lstat(path, &lst) != 0 || !S_ISLNK(lst.st_mode) || (n = readlink(path, target, sizeof target - 1)) <= 0)
        return strdup(path);
    target[n] = '\0';
    const char *slash = strrchr(path, '/');
    size_t dir = target[0] == '/' || !slash ? 0 : (size_t)(slash - path) + 1;
    char *out = malloc(dir + (size_t)n + 1);
    if (out) {
        memcpy(out, path, dir);
        memcpy(out + dir, target, (size_t)n + 1);
    }
    return out;
}

int kvz_atomic_file_open(kvz_atomic_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    struct stat st;
    int exists = stat(path, &st) == 0; /* follows a link */
    if (exists && S_ISDIR(st.st_mode))
        return kvz_errorf(KVZ_ERR_ARG, "cannot write '%s': it is a folder", path);
    if (exists && !S_ISREG(st.st_mode)) { /* a pipe or a device: nothing to rename over */
        f->path = strdup(path);
        if (!f->path)
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        f->fp = fopen(path, "wb");
        if (!f->fp) {
            int e = errno;
            kvz_atomic_file_abort(f);
            return kvz_errorf(KVZ_ERR_IO, "cannot open '%s': %s", path, strerror(e));
        }
        return KVZ_OK;
    }
    /* a link is replaced at the file it names, not by a file of its own */
    f->path = exists ? realpath(path, NULL) : link_target(path);
    size_t n = (f->path ? strlen(f->path) : 0) + 32;
    f->tmp_path = malloc(n);
    if (!f->path || !f->tmp_path) {
        int e = errno;
        kvz_atomic_file_abort(f);
        return e == ENOMEM || !exists ? kvz_errorf(KVZ_ERR_NOMEM, "out of memory")
                                      : kvz_errorf(KVZ_ERR_IO, "cannot resolve '%s': %s", path, strerror(e));
    }
    snprintf(f->tmp_path, n, "%s.tmp.%ld", f->path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        int e = errno;
        kvz_atomic_file_abort(f);
        return kvz_errorf(KVZ_ERR_IO, "cannot create '%s': %s", path, strerror(e));
    }
    return KVZ_OK;
}

int kvz_atomic_file_write(kvz_atomic_file *f, const void *data, uint64_t n)
{
    if (n && fwrite(data, 1, (size_t)n, f->fp) != n)
        return kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    return KVZ_OK;
}

int kvz_atomic_file_commit(kvz_atomic_file *f)
{
    int rc = KVZ_OK;
    /* a pipe or a device has nothing to fsync (and may refuse it) */
    if (fflush(f->fp) != 0 || (f->tmp_path && fsync(fileno(f->fp)) != 0))
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && rc == KVZ_OK)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    f->fp = NULL;
    if (rc == KVZ_OK && f->tmp_path && rename(f->tmp_path, f->path) != 0)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot rename into '%s': %s", f->path, strerror(errno));
    if (rc != KVZ_OK && f->tmp_path)
        remove(f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
    return rc;
}

void kvz_atomic_file_abort(kvz_atomic_file *f)
{
    if (f->fp) {
        fclose(f->fp);
        if (f->tmp_path)
            remove(f->tmp_path);
    }
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

int kvz_read_file(const char *path, char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kvz_errorf(errno == ENOENT ? KVZ_ERR_NOT_FOUND : KVZ_ERR_IO, "cannot open '%s': %s", path,
                          strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!buf)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading '%s'", path);
    if (err) {
        free(buf);
        return kvz_errorf(KVZ_ERR_IO, "cannot read '%s'", path);
    }
    buf[len] = '\0';
    *data = buf;
    *size = len;
    return KVZ_OK;
}
