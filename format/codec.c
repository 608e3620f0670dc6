/* codec.c — shuffles, delta-varint and bitmap positions, zstd. */
#include "format/codec.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

const char *kvz_transform_name(uint8_t t)
{
    switch (t) {
    case KVZ_TRANSFORM_NONE: return "none";
    case KVZ_TRANSFORM_SHUFFLE2: return "shuffle2";
    case KVZ_TRANSFORM_SHUFFLE4: return "shuffle4";
    case KVZ_TRANSFORM_DELTA_VARINT: return "delta-varint";
    case KVZ_TRANSFORM_BITMAP: return "bitmap";
    default: return "unknown";
    }
}

/* Byte planes: element i's byte k goes to k * (n / w) + i. A tail shorter than
 * an element stays at the end unchanged. */
static void shuffle(const uint8_t *src, uint8_t *dst, size_t size, int w)
{
    size_t n = size / (size_t)w;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < w; k++)
            dst[(size_t)k * n + i] = src[i * (size_t)w + (size_t)k];
    memcpy(dst + n * (size_t)w, src + n * (size_t)w, size - n * (size_t)w);
}

static void unshuffle(const uint8_t *src, uint8_t *dst, size_t size, int w)
{
    size_t n = size / (size_t)w;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < w; k++)
            dst[i * (size_t)w + (size_t)k] = src[(size_t)k * n + i];
    memcpy(dst + n * (size_t)w, src + n * (size_t)w, size - n * (size_t)w);
}

/* Keep `candidate` in `best` if it is smaller (takes ownership). */
static void keep_smaller(kvz_encoded *best, uint8_t *data, size_t size, uint8_t transform,
                         uint8_t compressor)
{
    if (!best->data || size < best->size) {
        free(best->data);
        *best = (kvz_encoded){data, size, transform, compressor};
    } else {
        free(data);
    }
}

/* Offer `bytes` as is and zstd-compressed. `bytes` is copied. */
static int offer(kvz_encoded *best, const uint8_t *bytes, size_t size, uint8_t transform, int level)
{
    uint8_t *plain = malloc(size ? size : 1);
    if (!plain)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding a section");
    memcpy(plain, bytes, size);
    keep_smaller(best, plain, size, transform, KVZ_COMPRESSOR_NONE);
    size_t bound = ZSTD_compressBound(size);
    uint8_t *z = malloc(bound);
    if (!z)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding a section");
    size_t zs = ZSTD_compress(z, bound, bytes, size, level);
    if (ZSTD_isError(zs)) {
        free(z);
        return kvz_errorf(KVZ_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(zs));
    }
    keep_smaller(best, z, zs, transform, KVZ_COMPRESSOR_ZSTD);
    return KVZ_OK;
}

int kvz_encode_bytes(const void *raw, size_t size, int elem_size, int level, kvz_encoded *out)
{
    memset(out, 0, sizeof *out);
    int rc = offer(out, raw, size, KVZ_TRANSFORM_NONE, level);
    if (rc == KVZ_OK && (elem_size == 2 || elem_size == 4) && size >= (size_t)elem_size * 2) {
        uint8_t *sh = malloc(size);
        if (!sh)
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding a section");
        else {
            shuffle(raw, sh, size, elem_size);
            rc = offer(out, sh, size, elem_size == 2 ? KVZ_TRANSFORM_SHUFFLE2 : KVZ_TRANSFORM_SHUFFLE4,
                       level);
            free(sh);
        }
    }
    if (rc != KVZ_OK) {
        free(out->data);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int kvz_encode_positions(const uint32_t *pos, uint32_t count, uint32_t n_tokens, int level,
                         kvz_encoded *out)
{
    memset(out, 0, sizeof *out);
    kvz_buffer varint = {0};
    for (uint32_t i = 0; i < count; i++) {
        uint32_t v = i ? pos[i] - pos[i - 1] : pos[0];
        do {
            uint8_t byte = (uint8_t)(v & 0x7f);
            v >>= 7;
            if (v)
                byte |= 0x80;
            kvz_buffer_append(&varint, &byte, 1);
        } while (v);
    }
    size_t bm_size = ((size_t)n_tokens + 7) / 8;
    uint8_t *bitmap = calloc(bm_size ? bm_size : 1, 1);
    int rc = varint.failed || !bitmap ? kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding positions")
                                      : KVZ_OK;
    if (rc == KVZ_OK) {
        for (uint32_t i = 0; i < count; i++)
            bitmap[pos[i] / 8] |= (uint8_t)(1u << (pos[i] % 8));
        rc = offer(out, varint.data, varint.len, KVZ_TRANSFORM_DELTA_VARINT, level);
    }
    if (rc == KVZ_OK)
        rc = offer(out, bitmap, bm_size, KVZ_TRANSFORM_BITMAP, level);
    free(bitmap);
    kvz_buffer_free(&varint);
    if (rc != KVZ_OK) {
        free(out->data);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

/* Undo the compressor into a buffer of exactly `want` bytes (malloc'ed). */
static int decompress(const uint8_t *stored, size_t stored_size, uint8_t compressor, size_t want,
                      uint8_t **out)
{
    *out = NULL;
    if (compressor == KVZ_COMPRESSOR_NONE) {
        if (stored_size != want)
            return kvz_errorf(KVZ_ERR_FORMAT, "section holds %zu bytes, expected %zu", stored_size,
                              want);
        *out = malloc(want ? want : 1);
        if (!*out)
            return kvz_errorf(KVZ_ERR_NOMEM, "out of memory decoding a section");
        memcpy(*out, stored, want);
        return KVZ_OK;
    }
    if (compressor != KVZ_COMPRESSOR_ZSTD)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "unknown compressor %u", compressor);
    /* one frame, nothing after it (SPEC §4.2): ZSTD_decompress would also decode more frames */
    size_t frame = ZSTD_findFrameCompressedSize(stored, stored_size);
    if (ZSTD_isError(frame) || frame != stored_size)
        return kvz_errorf(KVZ_ERR_FORMAT, "section is not one whole zstd frame (%zu stored bytes)", stored_size);
    unsigned long long content = ZSTD_getFrameContentSize(stored, stored_size);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != want)
        return kvz_errorf(KVZ_ERR_FORMAT, "zstd frame declares %lld bytes, expected %zu",
                          content >= ZSTD_CONTENTSIZE_ERROR ? -1LL : (long long)content, want);
    *out = malloc(want ? want : 1);
    if (!*out)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory decoding a section");
    size_t got = ZSTD_decompress(*out, want, stored, stored_size);
    if (ZSTD_isError(got) || got != want) {
        free(*out);
        *out = NULL;
        return kvz_errorf(KVZ_ERR_FORMAT, "zstd: %s",
                          ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
    }
    return KVZ_OK;
}

int kvz_decode_bytes(const uint8_t *stored, size_t stored_size, uint8_t transform,
                     uint8_t compressor, void *raw, size_t raw_size)
{
    if (transform != KVZ_TRANSFORM_NONE && transform != KVZ_TRANSFORM_SHUFFLE2 &&
        transform != KVZ_TRANSFORM_SHUFFLE4)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "transform %u (%s) is not valid for this section",
                          transform, kvz_transform_name(transform));
    uint8_t *plain;
    KVZ_TRY(decompress(stored, stored_size, compressor, raw_size, &plain));
    if (transform == KVZ_TRANSFORM_NONE)
        memcpy(raw, plain, raw_size);
    else
        unshuffle(plain, raw, raw_size, transform == KVZ_TRANSFORM_SHUFFLE2 ? 2 : 4);
    free(plain);
    return KVZ_OK;
}

static int positions_invalid(uint32_t i, uint32_t v, uint32_t prev, uint32_t n_tokens)
{
    if (v >= n_tokens)
        return kvz_errorf(KVZ_ERR_FORMAT, "position %u of entry %u is beyond the document (%u tokens)",
                          v, i, n_tokens);
    return kvz_errorf(KVZ_ERR_FORMAT, "positions are not increasing at entry %u (%u after %u)", i, v,
                      prev);
}

int kvz_decode_positions(const uint8_t *stored, size_t stored_size, uint8_t transform,
                         uint8_t compressor, uint32_t count, uint32_t n_tokens, uint32_t *pos)
{
    if (transform == KVZ_TRANSFORM_BITMAP) {
        size_t bm_size = ((size_t)n_tokens + 7) / 8;
        uint8_t *bm;
        KVZ_TRY(decompress(stored, stored_size, compressor, bm_size, &bm));
        uint32_t k = 0;
        for (uint32_t i = 0; i < n_tokens; i++)
            if (bm[i / 8] >> (i % 8) & 1) {
                if (k == count) {
                    free(bm);
                    return kvz_errorf(KVZ_ERR_FORMAT, "position bitmap has more than %u entries", count);
                }
                pos[k++] = i;
            }
        int stray = n_tokens % 8 && bm_size && (bm[bm_size - 1] >> (n_tokens % 8));
        free(bm);
        if (k != count || stray)
            return kvz_errorf(KVZ_ERR_FORMAT, "position bitmap has %u entries (%s), expected %u", k,
                              stray ? "and bits past the end" : "exactly", count);
        return KVZ_OK;
    }
    if (transform != KVZ_TRANSFORM_DELTA_VARINT)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "transform %u (%s) is not valid for positions",
                          transform, kvz_transform_name(transform));
    /* the varint stream's length is not recorded: a compressed one is bounded
     * by 5 bytes per entry */
    uint8_t *bytes;
    size_t len;
    if (compressor == KVZ_COMPRESSOR_NONE) {
        bytes = (uint8_t *)stored;
        len = stored_size;
    } else {
        if (compressor != KVZ_COMPRESSOR_ZSTD)
            return kvz_errorf(KVZ_ERR_UNSUPPORTED, "unknown compressor %u", compressor);
        unsigned long long content = ZSTD_getFrameContentSize(stored, stored_size);
        if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN ||
            content > (unsigned long long)count * 5)
            return kvz_errorf(KVZ_ERR_FORMAT, "positions: bad zstd frame size");
        KVZ_TRY(decompress(stored, stored_size, compressor, (size_t)content, &bytes));
        len = (size_t)content;
    }
    int rc = KVZ_OK;
    size_t at = 0;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < count && rc == KVZ_OK; i++) {
        uint64_t v = 0;
        int shift = 0;
        for (;;) {
            if (at >= len || shift > 28) {
                rc = kvz_errorf(KVZ_ERR_FORMAT, "positions: truncated or overlong varint at entry %u", i);
                break;
            }
            uint8_t byte = bytes[at++];
            v |= (uint64_t)(byte & 0x7f) << shift;
            shift += 7;
            if (!(byte & 0x80))
                break;
        }
        if (rc != KVZ_OK)
            break;
        uint64_t p = i ? prev + v : v;
        if (p >= n_tokens || (i && v == 0)) {
            rc = positions_invalid(i, (uint32_t)(p > UINT32_MAX ? UINT32_MAX : p), prev, n_tokens);
            break;
        }
        pos[i] = prev = (uint32_t)p;
    }
    if (rc == KVZ_OK && at != len)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "positions: %zu bytes left after %u entries", len - at, count);
    if (bytes != stored)
        free(bytes);
    return rc;
}
