/*
 * hash_map.h — two small open-addressing maps the tokenizer needs:
 * byte strings -> int32 and u64 -> int64. Fixed capacity chosen at creation
 * (power of two, at most half full); no deletion.
 */
#ifndef KVZ_COMMON_HASH_MAP_H
#define KVZ_COMMON_HASH_MAP_H

#include <stddef.h>
#include <stdint.h>

/* Maps a byte string to a value; keys are views the caller keeps alive. */
typedef struct kvz_str_map {
    const char **keys;
    uint32_t *key_lens;
    int32_t *values;
    size_t mask; /* capacity - 1 */
} kvz_str_map;

int kvz_str_map_init(kvz_str_map *m, size_t max_entries);
void kvz_str_map_free(kvz_str_map *m);
/* Insert; returns 0 if inserted, 1 if the key was present (value unchanged). */
int kvz_str_map_put(kvz_str_map *m, const char *key, uint32_t len, int32_t value);
/* The value, or -1 if absent. */
int32_t kvz_str_map_get(const kvz_str_map *m, const char *key, size_t len);

typedef struct kvz_u64_map {
    uint64_t *keys;
    int64_t *values;
    uint8_t *used;
    size_t mask;
} kvz_u64_map;

int kvz_u64_map_init(kvz_u64_map *m, size_t max_entries);
void kvz_u64_map_free(kvz_u64_map *m);
int kvz_u64_map_put(kvz_u64_map *m, uint64_t key, int64_t value);
/* 1 and *value if present, else 0. */
int kvz_u64_map_get(const kvz_u64_map *m, uint64_t key, int64_t *value);

#endif
