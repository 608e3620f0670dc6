/*
 * file_util.h — files that appear whole or not at all.
 *
 * kvz_atomic_file writes to a temporary file beside the target, then fsyncs
 * it, renames it into place (or links it there, where the target does not
 * exist) and fsyncs the folder on commit; abort (or a crash) leaves the target
 * untouched. A target that is a link (or a chain of them) is followed: the
 * file it names is replaced, the link stays; but not a link that the kernel's
 * protected_symlinks rule would refuse (another user's, in a sticky folder
 * anyone may write to, even where it names a device): KVZ_ERR_ARG. A file
 * replaced keeps its permission bits (its group's only where it keeps its
 * group), and its owner and group where this user may give them. A target
 * that cannot be replaced is written directly, and what a reader took from
 * it cannot be taken back:
 * a pipe or a device, and stdout or stderr (/dev/stdout, /dev/fd/1, or the
 * file stdout is redirected to), written through a copy of the descriptor so
 * that a file opened for appending keeps what it held.
 * A folder is refused. The temporary file is created exclusively, never
 * through a link; where the file system allows (O_TMPFILE), it has no name
 * until commit, so that a process killed while writing (SIGKILL, the
 * out-of-memory killer, a power cut) leaves nothing behind. Elsewhere (NFS,
 * many FUSE file systems) it is PATH.tmp.PID.N from the start: a signal
 * handler removes it (kvz_atomic_file_remove_in_progress), a SIGKILL leaves it.
 */
#ifndef KVZ_COMMON_FILE_UTIL_H
#define KVZ_COMMON_FILE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct kvz_atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path; /* NULL when written directly */
    int unnamed;    /* the temporary has no name yet (O_TMPFILE): tmp_path is the one commit gives it */
} kvz_atomic_file;

int kvz_atomic_file_open(kvz_atomic_file *f, const char *path);
int kvz_atomic_file_write(kvz_atomic_file *f, const void *data, uint64_t n);
int kvz_atomic_file_commit(kvz_atomic_file *f); /* closes f */
void kvz_atomic_file_abort(kvz_atomic_file *f); /* closes f, removes the temporary */
/* All of data[0..n) as the file at path, as above: open, write, commit (or abort). */
int kvz_atomic_file_put(const char *path, const void *data, uint64_t n);
/* Remove the temporary file of the atomic file being written, if any (the
 * latest opened): async-signal-safe, for a handler of SIGINT or SIGTERM. */
void kvz_atomic_file_remove_in_progress(void);

/* fsync the folder `dir` (or the one holding `path`), so that what was created,
 * linked or renamed in it survives a power cut: KVZ_ERR_IO if that failed; a
 * file system that has nothing to sync for a folder (EINVAL) is no failure. */
int kvz_sync_folder(const char *dir);
int kvz_sync_folder_of(const char *path);

/* 1 or 2 when `path` names stdout or stderr ("-" and /dev/stdout, /dev/fd/2, or the
 * file one of them is redirected to: kvz_atomic_file writes it through the
 * descriptor), else -1. */
int kvz_standard_descriptor(const char *path);

/* Read a whole file into a NUL-terminated malloc'ed buffer (KVZ_ERR_NOT_FOUND
 * when there is no such file, KVZ_ERR_IO for other failures). */
int kvz_read_file(const char *path, char **data, size_t *size);
/* The same, stopping once more than `limit` bytes were read: *size > limit
 * then says the file is larger (a pipe that never ends is not read whole). */
int kvz_read_file_at_most(const char *path, size_t limit, char **data, size_t *size);
/* The same for a file that must be a regular one (a document listed as one):
 * anything else found at `path` now, a FIFO swapped in that would block the
 * open until a writer came included, is KVZ_ERR_IO, at once. */
int kvz_read_regular_file_at_most(const char *path, size_t limit, char **data, size_t *size);

struct stat;
/* Open `path` for reading only if it is a regular file now: *fd (O_CLOEXEC)
 * and its *st on KVZ_OK; KVZ_ERR_NOT_FOUND when there is none, KVZ_ERR_IO
 * ("not a regular file") for anything else, without waiting for a FIFO's
 * writer. The descriptor is blocking again once returned. */
int kvz_open_regular_file(const char *path, int *fd, struct stat *st);

#endif
