/*
 * file_util.h — files that appear whole or not at all.
 *
 * kvz_atomic_file writes to a temporary file beside the target, then fsyncs
 * and renames it into place on commit; abort (or a crash) leaves the target
 * untouched. A target that is a link is followed: the file it names is
 * replaced, the link stays. A target that is a pipe or a device (a FIFO,
 * /dev/stdout) cannot be replaced and is written directly: what a reader
 * takes from it cannot be taken back. A folder is refused.
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
} kvz_atomic_file;

int kvz_atomic_file_open(kvz_atomic_file *f, const char *path);
int kvz_atomic_file_write(kvz_atomic_file *f, const void *data, uint64_t n);
int kvz_atomic_file_commit(kvz_atomic_file *f); /* closes f */
void kvz_atomic_file_abort(kvz_atomic_file *f); /* closes f, removes the temporary */

/* Read a whole file into a NUL-terminated malloc'ed buffer (KVZ_ERR_NOT_FOUND
 * when there is no such file, KVZ_ERR_IO for other failures). */
int kvz_read_file(const char *path, char **data, size_t *size);

#endif
