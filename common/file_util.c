/* file_util.c — atomic file replacement and whole-file reads. */
#include "common/file_util.h"
#include "common/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int kvz_atomic_file_open(kvz_atomic_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    size_t n = strlen(path) + 32;
    f->path = strdup(path);
    f->tmp_path = malloc(n);
    if (!f->path || !f->tmp_path) {
        kvz_atomic_file_abort(f);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
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
    if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && rc == KVZ_OK)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    f->fp = NULL;
    if (rc == KVZ_OK && rename(f->tmp_path, f->path) != 0)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot rename into '%s': %s", f->path, strerror(errno));
    if (rc != KVZ_OK)
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
        return kvz_errorf(KVZ_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
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
