/* file_util.c — atomic file replacement and whole-file reads. */
#include "common/file_util.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the link `at` (lst: its lstat) is one the kernel's
 * protected_symlinks rule would not follow: in a folder anyone may write to
 * with the sticky bit (/tmp), owned neither by this user nor by the folder's
 * owner. Following a link planted there, a writer (root, say) would replace
 * a file of its own that the planter chose. */
static int planted_link(const char *at, const struct stat *lst)
{
    struct stat dir;
    const char *slash = strrchr(at, '/');
    char *folder = slash ? strndup(at, slash == at ? 1 : (size_t)(slash - at)) : strdup(".");
    int planted = folder && stat(folder, &dir) == 0 && (dir.st_mode & S_ISVTX) && (dir.st_mode & S_IWOTH) &&
                  lst->st_uid != geteuid() && lst->st_uid != dir.st_uid;
    free(folder);
    return planted;
}

/* Where a write to `path` lands: the path the last of a chain of links names
 * (each relative to its link's folder), else path itself; one walk, each
 * link checked as it is followed. NULL with errno set when the chain loops
 * or a target is too long; NULL with *planted (malloc'ed) naming a link
 * planted_link refuses. */
static char *link_target(const char *path, char **planted)
{
    *planted = NULL;
    char *at = strdup(path);
    for (int depth = 0; at && depth < 40; depth++) {
        struct stat lst;
        char target[4096];
        ssize_t n;
        if (lstat(at, &lst) != 0 || !S_ISLNK(lst.st_mode))
            return at;
        if (planted_link(at, &lst)) {
            *planted = at;
            return NULL;
        }
        if ((n = readlink(at, target, sizeof target)) <= 0 || (size_t)n == sizeof target) {
            int e = n < 0 ? errno : ENAMETOOLONG;
            free(at);
            errno = e;
            return NULL;
        }
        const char *slash = strrchr(at, '/');
        size_t dir = target[0] == '/' || !slash ? 0 : (size_t)(slash - at) + 1;
        char *next = malloc(dir + (size_t)n + 1);
        if (next) {
            memcpy(next, at, dir);
            memcpy(next + dir, target, (size_t)n);
            next[dir + (size_t)n] = '\0';
        }
        free(at);
        at = next;
    }
    if (at) {
        free(at);
        errno = ELOOP;
    }
    return NULL;
}

/* The standard descriptor `path` names ("-" and /dev/stdout, /dev/stderr, their
 * /dev/fd and /proc/self/fd names, or the file one of them is redirected
 * to), else -1. Such a file is written through a copy of the descriptor, as
 * the shell opened it (appending, say): renamed over, a file redirected to
 * would lose what it held. Other descriptors' names are not trusted: the
 * process's own files (LMDB's) have them too. */
static int standard_descriptor_of(const char *path, const struct stat *st, int exists)
{
    static const char *const names[2][3] = {{"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"},
                                            {"/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"}};
    if (strcmp(path, "-") == 0) /* as unpack reads "-" as stdin */
        return STDOUT_FILENO;
    for (int i = 0; i < 2; i++) {
        int fd = i + 1;
        struct stat out;
        for (int k = 0; k < 3; k++)
            if (strcmp(path, names[i][k]) == 0)
                return fd;
        if (exists && fstat(fd, &out) == 0 && out.st_dev == st->st_dev && out.st_ino == st->st_ino)
            return fd;
    }
    return -1;
}

int kvz_standard_descriptor(const char *path)
{
    struct stat st;
    int exists = stat(path, &st) == 0;
    return standard_descriptor_of(path, &st, exists);
}

/* Written as it goes: a pipe, a device or a standard descriptor. */
static int open_direct(kvz_atomic_file *f, const char *path, int fd)
{
    f->path = strdup(path);
    if (!f->path)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int copy = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    f->fp = fd >= 0 ? (copy >= 0 ? fdopen(copy, "wb") : NULL) : fopen(path, "wbe");
    if (!f->fp) {
        int e = errno;
        if (copy >= 0)
            close(copy);
        kvz_atomic_file_abort(f);
        return kvz_errorf(KVZ_ERR_IO, "cannot open '%s': %s", path, strerror(e));
    }
    return KVZ_OK;
}

/* The temporary file being written, for a signal handler to remove. */
static const char *_Atomic in_progress;

void kvz_atomic_file_remove_in_progress(void)
{
    const char *tmp = in_progress;
    if (tmp)
        unlink(tmp);
}

/* A file without a name in the folder of `path` (O_TMPFILE), or -1 where the
 * file system cannot make one or /proc cannot name it at commit. */
static int open_unnamed(const char *path)
{
    if (access("/proc/self/fd", X_OK) != 0)
        return -1;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666) : -1;
    free(dir);
    return fd;
}

/* The unnamed temporary given its name. Where the target does not exist, it
 * is linked as the target itself (*in_place): whole from the moment it has a
 * name, and no temporary that a kill before the rename would leave behind.
 * Else it is linked under a fresh name beside the target, for the rename: from
 * here it is named, and removed on failure or by a signal. */
static int name_unnamed(kvz_atomic_file *f, int *in_place)
{
    char proc[64];
    size_t n = strlen(f->path) + 48;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fileno(f->fp));
    *in_place = linkat(AT_FDCWD, proc, AT_FDCWD, f->path, AT_SYMLINK_FOLLOW) == 0;
    if (*in_place)
        return KVZ_OK;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(f->tmp_path, n, "%s.tmp.%ld.%d", f->path, (long)getpid(), attempt);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp_path, AT_SYMLINK_FOLLOW) == 0) {
            f->unnamed = 0;
            in_progress = f->tmp_path;
            return KVZ_OK;
        }
        if (errno != EEXIST)
            break;
    }
    return kvz_errorf(KVZ_ERR_IO, "cannot name the temporary file of '%s': %s", f->path, strerror(errno));
}

/* data.mdb or lock.mdb beside an LMDB data.mdb (its meta page's magic): a
 * store's (an output named so would be renamed over the store's data while
 * it may be open). A data.mdb an earlier export wrote is no store. */
static int is_store_file(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (strcmp(base, "data.mdb") != 0 && strcmp(base, "lock.mdb") != 0)
        return 0;
    char data[4096];
    snprintf(data, sizeof data, "%.*sdata.mdb", (int)(base - path), path);
    int fd = open(data, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    uint32_t magic = 0;
    /* the magic follows a page header of a page number and four 16-bit fields */
    int lmdb = fd >= 0 && pread(fd, &magic, 4, (off_t)(sizeof(size_t) + 8)) == 4 && magic == 0xBEEFC0DEu;
    if (fd >= 0)
        close(fd);
    return lmdb;
}

int kvz_atomic_file_open(kvz_atomic_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    struct stat st;
    int exists = stat(path, &st) == 0; /* follows a link */
    /* a link is replaced at the file it names, not by a file of its own; the
     * walk that finds that file checks each link it follows (a device or a
     * FIFO's too, written directly) */
    char *planted = NULL;
    char *target = link_target(path, &planted);
    if (planted) {
        int rc = kvz_errorf(KVZ_ERR_ARG, "cannot write '%s': the link '%s' is another user's, in a folder anyone "
                            "may write to (sticky, as /tmp is): this would replace the file it names with this "
                            "user's rights (the kernel's protected_symlinks rule); give the file's own path",
                            path, planted);
        free(planted);
        return rc;
    }
    int fd = standard_descriptor_of(path, &st, exists);
    if (fd >= 0 || (exists && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
        free(target);
        return open_direct(f, path, fd); /* nothing to rename over */
    }
    if (exists && (strncmp(path, "/dev/fd/", 8) == 0 || strncmp(path, "/proc/self/fd/", 14) == 0)) {
        free(target);
        return kvz_errorf(KVZ_ERR_ARG, "cannot write '%s': a file is written by descriptor only through stdout or "
                          "stderr (a pipe, such as >(command), through any)", path);
    }
    if (exists && S_ISDIR(st.st_mode)) {
        free(target);
        return kvz_errorf(KVZ_ERR_ARG, "cannot write '%s': it is a folder", path);
    }
    f->path = target;
    if (!f->path) {
        int e = errno;
        return e == ENOMEM ? kvz_errorf(KVZ_ERR_NOMEM, "out of memory")
                           : kvz_errorf(KVZ_ERR_IO, "cannot resolve '%s': %s", path, strerror(e));
    }
    if (is_store_file(f->path)) {
        kvz_atomic_file_abort(f);
        return kvz_errorf(KVZ_ERR_ARG, "cannot write '%s': it is a file of an LMDB store (a data.mdb is beside "
                          "it), which this would destroy; give another name", path);
    }
    size_t n = strlen(f->path) + 48;
    f->tmp_path = malloc(n);
    if (!f->tmp_path) {
        kvz_atomic_file_abort(f);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    /* a name of its own, created here and not through a link: another writer's
     * temporary, or a link planted under the name, is never written through */
    int tmp = open_unnamed(f->path);
    f->unnamed = tmp >= 0;
    for (int attempt = 0; tmp < 0 && attempt < 100; attempt++) {
        snprintf(f->tmp_path, n, "%s.tmp.%ld.%d", f->path, (long)getpid(), attempt);
        tmp = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (tmp < 0 && errno != EEXIST)
            break;
    }
    f->fp = tmp >= 0 ? fdopen(tmp, "wb") : NULL;
    if (!f->fp) {
        int e = errno;
        if (tmp >= 0) {
            close(tmp);
            if (!f->unnamed)
                remove(f->tmp_path);
        }
        free(f->tmp_path); /* not ours to remove when it was not created */
        f->tmp_path = NULL;
        kvz_atomic_file_abort(f);
        return kvz_errorf(KVZ_ERR_IO, "cannot create '%s': %s", path, strerror(e));
    }
    if (!f->unnamed)
        in_progress = f->tmp_path;
    if (exists) { /* a file replaced keeps its mode (a bundle made private stays so), owner and group where it may */
        struct stat made;
        mode_t mode = st.st_mode & 0777;
        if (fchown(tmp, geteuid() == 0 ? st.st_uid : (uid_t)-1, st.st_gid) != 0 || fstat(tmp, &made) != 0 ||
            made.st_gid != st.st_gid)
            mode &= ~(mode_t)070; /* another group than the file's: not its rights */
        (void)fchmod(tmp, mode);
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
    /* a pipe or a device has nothing to fsync (and may refuse it); a file
     * written directly (stdout redirected to it) has */
    struct stat st;
    int durable = f->tmp_path || (fstat(fileno(f->fp), &st) == 0 && S_ISREG(st.st_mode));
    if (fflush(f->fp) != 0 || (durable && fsync(fileno(f->fp)) != 0))
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    int in_place = 0; /* linked as the target: complete, no rename */
    if (rc == KVZ_OK && f->unnamed)
        rc = name_unnamed(f, &in_place);
    if (fclose(f->fp) != 0 && rc == KVZ_OK)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    f->fp = NULL;
    if (rc == KVZ_OK && f->tmp_path && !in_place && rename(f->tmp_path, f->path) != 0)
        rc = kvz_errorf(KVZ_ERR_IO, "cannot rename into '%s': %s", f->path, strerror(errno));
    /* the new name itself survives a power cut only once its folder is synced */
    if (rc == KVZ_OK && f->tmp_path)
        rc = kvz_sync_folder_of(f->path);
    if (rc != KVZ_OK && f->tmp_path && !f->unnamed && !in_place)
        remove(f->tmp_path);
    if (f->tmp_path && in_progress == f->tmp_path)
        in_progress = NULL;
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
    return rc;
}

void kvz_atomic_file_abort(kvz_atomic_file *f)
{
    if (f->fp) {
        if (!f->tmp_path)
            __fpurge(f->fp); /* written directly: what is still buffered goes nowhere */
        fclose(f->fp);
        if (f->tmp_path && !f->unnamed) /* an unnamed one is gone with its descriptor */
            remove(f->tmp_path);
    }
    if (f->tmp_path && in_progress == f->tmp_path)
        in_progress = NULL;
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

int kvz_sync_folder(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EPERM))
        return KVZ_OK; /* a folder this user may write in but not list: nothing to sync through */
    int rc = fd < 0 ? -1 : fsync(fd);
    int e = errno;
    if (fd >= 0)
        close(fd);
    /* some file systems have nothing to sync for a folder, and say so */
    if (rc != 0 && e != EINVAL && e != ENOTSUP && e != EROFS && e != EBADF)
        return kvz_errorf(KVZ_ERR_IO, "cannot sync the folder '%s' (what was just written there may not survive a "
                          "power cut): %s", dir, strerror(e));
    return KVZ_OK;
}

int kvz_sync_folder_of(const char *path)
{
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') /* "store/" is held by the folder holding "store" */
        end--;
    while (end > 0 && path[end - 1] != '/')
        end--;
    if (end == 0)
        return kvz_sync_folder(".");
    char *dir = strndup(path, end == 1 ? 1 : end - 1);
    if (!dir)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int rc = kvz_sync_folder(dir);
    free(dir);
    return rc;
}

int kvz_atomic_file_put(const char *path, const void *data, uint64_t n)
{
    kvz_atomic_file f;
    KVZ_TRY(kvz_atomic_file_open(&f, path));
    int rc = kvz_atomic_file_write(&f, data, n);
    if (rc != KVZ_OK) {
        kvz_atomic_file_abort(&f);
        return rc;
    }
    return kvz_atomic_file_commit(&f);
}

int kvz_read_file(const char *path, char **data, size_t *size)
{
    return kvz_read_file_at_most(path, SIZE_MAX - 1, data, size);
}

static int read_stream_at_most(FILE *fp, const char *path, size_t limit, char **data, size_t *size);

int kvz_read_file_at_most(const char *path, size_t limit, char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kvz_errorf(errno == ENOENT ? KVZ_ERR_NOT_FOUND : KVZ_ERR_IO, "cannot open '%s': %s", path,
                          strerror(errno));
    return read_stream_at_most(fp, path, limit, data, size);
}

int kvz_open_regular_file(const char *path, int *fd, struct stat *st)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO's open would wait for a writer */
    if (*fd < 0)
        return kvz_errorf(errno == ENOENT ? KVZ_ERR_NOT_FOUND : KVZ_ERR_IO, "cannot open '%s': %s", path,
                          strerror(errno));
    if (fstat(*fd, st) != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return kvz_errorf(KVZ_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(*fd);
        *fd = -1;
        return kvz_errorf(KVZ_ERR_IO, "'%s' is not a regular file (a FIFO, socket, device or folder)", path);
    }
    int flags = fcntl(*fd, F_GETFL);
    if (flags >= 0)
        fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK);
    return KVZ_OK;
}

int kvz_read_regular_file_at_most(const char *path, size_t limit, char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    int fd;
    struct stat st;
    KVZ_TRY(kvz_open_regular_file(path, &fd, &st));
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    return read_stream_at_most(fp, path, limit, data, size);
}

/* Reads fp to its end or past limit, and closes it. */
static int read_stream_at_most(FILE *fp, const char *path, size_t limit, char **data, size_t *size)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    errno = 0;
    while (buf) {
        if (len > limit)
            break;
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
        size_t want = cap - len - 1, room = limit + 1 - len; /* len <= limit here */
        size_t got = fread(buf + len, 1, want < room ? want : room, fp);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(fp) ? (errno ? errno : EIO) : 0; /* before fclose may change errno */
    fclose(fp);
    if (!buf)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading '%s'", path);
    if (err) {
        free(buf);
        return kvz_errorf(KVZ_ERR_IO, "cannot read '%s': %s", path, strerror(err));
    }
    buf[len] = '\0';
    *data = buf;
    *size = len;
    return KVZ_OK;
}
