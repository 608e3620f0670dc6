/* hash_map.c — linear probing over xxh3 hashes. */
#include "common/hash_map.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static size_t capacity_for(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

int kvz_str_map_init(kvz_str_map *m, size_t max_entries)
{
    size_t cap = capacity_for(max_entries);
    m->keys = calloc(cap, sizeof *m->keys);
    m->key_lens = calloc(cap, sizeof *m->key_lens);
    m->values = malloc(cap * sizeof *m->values);
    m->mask = cap - 1;
    if (!m->keys || !m->key_lens || !m->values) {
        kvz_str_map_free(m);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory for a hash map of %zu entries", max_entries);
    }
    return KVZ_OK;
}

void kvz_str_map_free(kvz_str_map *m)
{
    free(m->keys);
    free(m->key_lens);
    free(m->values);
    memset(m, 0, sizeof *m);
}

int kvz_str_map_put(kvz_str_map *m, const char *key, uint32_t len, int32_t value)
{
    size_t i = (size_t)XXH3_64bits(key, len) & m->mask;
    while (m->keys[i]) {
        if (m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            return 1;
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->key_lens[i] = len;
    m->values[i] = value;
    return 0;
}

int32_t kvz_str_map_get(const kvz_str_map *m, const char *key, size_t len)
{
    size_t i = (size_t)XXH3_64bits(key, len) & m->mask;
    while (m->keys[i]) {
        if (m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            return m->values[i];
        i = (i + 1) & m->mask;
    }
    return -1;
}

int kvz_u64_map_init(kvz_u64_map *m, size_t max_entries)
{
    size_t cap = capacity_for(max_entries);
    m->keys = malloc(cap * sizeof *m->keys);
    m->values = malloc(cap * sizeof *m->values);
    m->used = calloc(cap, 1);
    m->mask = cap - 1;
    if (!m->keys || !m->values || !m->used) {
        kvz_u64_map_free(m);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory for a hash map of %zu entries", max_entries);
    }
    return KVZ_OK;
}

void kvz_u64_map_free(kvz_u64_map *m)
{
    free(m->keys);
    free(m->values);
    free(m->used);
    memset(m, 0, sizeof *m);
}

static size_t u64_slot(uint64_t key, size_t mask) { return (size_t)XXH3_64bits(&key, sizeof key) & mask; }

int kvz_u64_map_put(kvz_u64_map *m, uint64_t key, int64_t value)
{
    size_t i = u64_slot(key, m->mask);
    while (m->used[i]) {
        if (m->keys[i] == key)
            return 1;
        i = (i + 1) & m->mask;
    }
    m->used[i] = 1;
    m->keys[i] = key;
    m->values[i] = value;
    return 0;
}

int kvz_u64_map_get(const kvz_u64_map *m, uint64_t key, int64_t *value)
{
    size_t i = u64_slot(key, m->mask);
    while (m->used[i]) {
        if (m->keys[i] == key) {
            *value = m->values[i];
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}
