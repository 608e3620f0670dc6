/*
 * buffer.h — a growable byte buffer for serialisers.
 */
#ifndef KVZ_COMMON_BUFFER_H
#define KVZ_COMMON_BUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_buffer {
    uint8_t *data;
    size_t len;
    size_t cap;
    int failed; /* an append ran out of memory; later appends are ignored */
} kvz_buffer;

void kvz_buffer_append(kvz_buffer *b, const void *src, size_t n);
void kvz_buffer_append_u32(kvz_buffer *b, uint32_t v); /* little-endian */
void kvz_buffer_append_u64(kvz_buffer *b, uint64_t v);
void kvz_buffer_free(kvz_buffer *b);

/* Room for one more element in a growable array (items, len, *cap): returns
 * the array, reallocated to twice the capacity when full, or NULL with a
 * KVZ_ERR_NOMEM message recorded (the old array is untouched). */
void *kvz_grow(void *items, size_t *cap, size_t len, size_t elem_size);

#endif
