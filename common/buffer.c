/* buffer.c — growable byte buffer; out-of-memory is sticky and checked once at the end. */
#include "common/buffer.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

void kvz_buffer_append(kvz_buffer *b, const void *src, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

void kvz_buffer_append_u32(kvz_buffer *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    kvz_buffer_append(b, le, 4);
}

void kvz_buffer_append_u64(kvz_buffer *b, uint64_t v)
{
    kvz_buffer_append_u32(b, (uint32_t)v);
    kvz_buffer_append_u32(b, (uint32_t)(v >> 32));
}

void kvz_buffer_free(kvz_buffer *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void *kvz_grow(void *items, size_t *cap, size_t len, size_t elem_size)
{
    if (len < *cap)
        return items;
    size_t new_cap = *cap ? *cap * 2 : 16;
    void *p = new_cap < SIZE_MAX / elem_size ? realloc(items, new_cap * elem_size) : NULL;
    if (!p) {
        kvz_errorf(KVZ_ERR_NOMEM, "out of memory growing an array to %zu elements", new_cap);
        return NULL;
    }
    *cap = new_cap;
    return p;
}
