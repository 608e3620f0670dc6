/*
 * kv_codes.h — how one stored KV head reads back (format/SPEC.md §6), as
 * inline functions the artifact decoder (format/quant.c), the CPU load kernel
 * and its CUDA twin all use.
 *
 * A head's payload is its n16 leading rows in f16, then the other m = n - n16
 * rows (each d channels) as b-bit codes packed LSB first, or f16 when b = 16.
 * Code x stands for min + x · scale, the f16 (scale, min) pair of its group:
 * for keys a channel over `group` consecutive rows, for values `group`
 * consecutive channels of a row.
 *
 * The writing side (kvz_kv_pair, kvz_kv_code_of) is here too, shared by the
 * host quantizer (kernels/kv_quant.c) and its CUDA twin, which agree bit for bit.
 */
#ifndef KVZ_KERNELS_KV_CODES_H
#define KVZ_KERNELS_KV_CODES_H

#include "kernels/host_device.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef KVZ_DEVICE_CODE
#include "common/half.h"
#endif

typedef struct kvz_quant_shape {
    uint32_t n;      /* kept rows (tokens) */
    uint32_t n16;    /* leading rows kept in f16 */
    uint32_t d;      /* channels */
    uint32_t bits;   /* 16, 8, 4, 2 */
    uint32_t group;  /* keys: tokens per group; values: channels per group (d % group == 0) */
} kvz_quant_shape;

/* Bytes of the payload. */
static inline KVZ_HOST_DEVICE size_t kvz_quant_payload_bytes(const kvz_quant_shape *s)
{
    size_t m = s->n - s->n16;
    size_t codes = s->bits == 16 ? m * s->d * 2 : (m * s->d * s->bits + 7) / 8;
    return (size_t)s->n16 * s->d * 2 + codes;
}

/* Scale pairs (scale, min): keys ceil(m/group)·d, values m·d/group; 0 at 16 bits. */
static inline KVZ_HOST_DEVICE size_t kvz_quant_scale_pairs(const kvz_quant_shape *s, int is_keys)
{
    if (s->bits == 16)
        return 0;
    size_t m = s->n - s->n16;
    return is_keys ? (m + s->group - 1) / s->group * s->d : m * (s->d / s->group);
}

static inline KVZ_HOST_DEVICE float kvz_kv_half(uint16_t h)
{
#ifdef KVZ_DEVICE_CODE
    return __half2float(__ushort_as_half(h));
#else
    return kvz_fp16_to_f32(h);
#endif
}

/* Code i (row-major over the quantized rows) of a packed body. */
static inline KVZ_HOST_DEVICE uint32_t kvz_kv_code(const uint8_t *body, size_t i, uint32_t bits)
{
    const size_t bit = i * bits;
    return (uint32_t)(body[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

/* The scale pairs of quantized row tq: pair of channel c is [c] for keys,
 * [c / group] for values. */
static inline KVZ_HOST_DEVICE const uint16_t *kvz_kv_row_pairs(const uint16_t *scales, const kvz_quant_shape *s,
                                                               int is_keys, size_t tq)
{
    return scales + 2 * (is_keys ? (tq / s->group) * s->d : tq * (s->d / s->group));
}

/* Element (row t < n, channel c < d) of a payload and its scale pairs: what
 * a GPU thread reads. */
static inline KVZ_HOST_DEVICE float kvz_kv_element(const uint8_t *payload, const uint16_t *scales,
                                                   const kvz_quant_shape *s, int is_keys, size_t t,
                                                   size_t c)
{
    const size_t d = s->d;
    if (t < s->n16 || s->bits == 16) { /* the f16 rows come first either way */
        uint16_t h;
        memcpy(&h, payload + 2 * (t * d + c), 2);
        return kvz_kv_half(h);
    }
    const size_t tq = t - s->n16;
    const uint16_t *pair = kvz_kv_row_pairs(scales, s, is_keys, tq) + 2 * (is_keys ? c : c / s->group);
    const uint32_t code = kvz_kv_code(payload + (size_t)s->n16 * d * 2, tq * d + c, s->bits);
    return kvz_mul_add((float)code, kvz_kv_half(pair[0]), kvz_kv_half(pair[1]));
}

/* Row t into out[0 .. d): the same values as kvz_kv_element, a row at a time
 * (what a CPU thread reads: the per-row work done once loads a 7K-token
 * document about 15% faster than calling kvz_kv_element per channel). */
static inline KVZ_HOST_DEVICE void kvz_kv_row(const uint8_t *payload, const uint16_t *scales,
                                              const kvz_quant_shape *s, int is_keys, size_t t, float *out)
{
    const size_t d = s->d;
    if (t < s->n16 || s->bits == 16) {
        const uint8_t *p = payload + 2 * t * d;
        for (size_t c = 0; c < d; c++) {
            uint16_t h;
            memcpy(&h, p + 2 * c, 2);
            out[c] = kvz_kv_half(h);
        }
        return;
    }
    const size_t tq = t - s->n16;
    const uint16_t *pairs = kvz_kv_row_pairs(scales, s, is_keys, tq);
    const uint8_t *body = payload + (size_t)s->n16 * d * 2;
    for (size_t c = 0; c < d; c++) {
        const uint16_t *pair = pairs + 2 * (is_keys ? c : c / s->group);
        out[c] = kvz_mul_add((float)kvz_kv_code(body, tq * d + c, s->bits), kvz_kv_half(pair[0]),
                             kvz_kv_half(pair[1]));
    }
}

/* ---- writing ------------------------------------------------------------ */

/* f32 to f16 bits: nearest even, overflow to infinity, NaN to 0x7e00 with its
 * sign (common/half.h's conversion, which the GPU's matches but for NaN). */
static inline KVZ_HOST_DEVICE uint16_t kvz_kv_to_half(float x)
{
#ifdef KVZ_DEVICE_CODE
    if (isnan(x))
        return (uint16_t)(((__float_as_uint(x) >> 16) & 0x8000u) | 0x7e00u);
    return __half_as_ushort(__float2half_rn(x));
#else
    return kvz_f32_to_fp16(x);
#endif
}

/* The f16 no larger than x (down) and no smaller than x (up), finite. */
static inline KVZ_HOST_DEVICE uint16_t kvz_kv_half_down(float x)
{
    if (x < -65504.0f)
        x = -65504.0f;
    uint16_t h = kvz_kv_to_half(x);
    if (kvz_kv_half(h) > x)
        h = (h & 0x8000) ? (uint16_t)(h + 1) : (h == 0 ? 0x8001 : (uint16_t)(h - 1));
    return h;
}

static inline KVZ_HOST_DEVICE uint16_t kvz_kv_half_up(float x)
{
    if (x > 65504.0f)
        x = 65504.0f;
    uint16_t h = kvz_kv_to_half(x);
    if (kvz_kv_half(h) < x)
        h = (h & 0x8000) ? (h == 0x8000 ? 0x0001 : (uint16_t)(h - 1)) : (uint16_t)(h + 1);
    return h;
}

/* The (scale, min) pair of the group x[i·stride], i < count: the minimum
 * rounded down and the scale up to f16, so every element is within scale/2 of
 * its dequantized value (plus f32 rounding of the element's magnitude). The range comes from comparisons, not fminf/fmaxf, so
 * NaN elements are left out the same way on the host and the GPU. */
static inline KVZ_HOST_DEVICE void kvz_kv_pair(const float *x, size_t stride, size_t count, uint32_t bits,
                                               uint16_t pair[2])
{
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        const float v = x[i * stride];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    uint16_t min_h = kvz_kv_half_down(lo);
    pair[0] = kvz_kv_half_up((hi - kvz_kv_half(min_h)) / (float)((1u << bits) - 1));
    pair[1] = min_h;
}

/* The code of x under (scale, min) as floats: the nearest of the 2^bits
 * levels (ties to even), clamped; NaN codes 0. No multiply, so no fused
 * multiply-add can make the GPU round differently. */
static inline KVZ_HOST_DEVICE uint32_t kvz_kv_code_of(float x, float scale, float min, uint32_t bits)
{
    const float levels = (float)((1u << bits) - 1);
    float q = scale > 0 ? rintf((x - min) / scale) : 0.0f;
    return q > 0 ? (q < levels ? (uint32_t)q : (uint32_t)levels) : 0u;
}

#endif
