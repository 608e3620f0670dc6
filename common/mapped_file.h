/*
 * mapped_file.h — a whole file mapped read-only into memory.
 */
#ifndef KVZ_COMMON_MAPPED_FILE_H
#define KVZ_COMMON_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
} kvz_mapped_file;

/* Map `path`; on failure returns KVZ_ERR_NOT_FOUND (no such file) or
 * KVZ_ERR_IO with a message naming the path. */
int kvz_mapped_file_open(kvz_mapped_file *file, const char *path);
void kvz_mapped_file_close(kvz_mapped_file *file);

#endif
