/* quant.c — per-channel key and per-token value quantization, bit packing. */
#include "format/quant.h"
#include "common/error.h"
#include "common/half.h"

#include <stdlib.h>

#include <math.h>
#include <string.h>

int kvz_quant_shape_valid(const kvz_quant_shape *s, int is_keys)
{
    if (s->n == 0 || s->n16 > s->n || s->d == 0 || s->d > 4096)
        return 0;
    if (s->bits != 16 && s->bits != 8 && s->bits != 4 && s->bits != 2)
        return 0;
    if (s->bits == 16)
        return 1;
    if (s->group == 0 || s->group > 65536)
        return 0;
    return is_keys || s->d % s->group == 0;
}

/* f16 no larger (down) / no smaller (up) than x, finite. */
static uint16_t fp16_down(float x)
{
    if (x < -65504.0f)
        x = -65504.0f;
    uint16_t h = kvz_f32_to_fp16(x);
    if (kvz_fp16_to_f32(h) > x)
        h = (h & 0x8000) ? (uint16_t)(h + 1) : (h == 0 ? 0x8001 : (uint16_t)(h - 1));
    return h;
}

static uint16_t fp16_up(float x)
{
    if (x > 65504.0f)
        x = 65504.0f;
    uint16_t h = kvz_f32_to_fp16(x);
    if (kvz_fp16_to_f32(h) < x)
        h = (h & 0x8000) ? (h == 0x8000 ? 0x0001 : (uint16_t)(h - 1)) : (uint16_t)(h + 1);
    return h;
}

/* Codes of a run of elements x[i·stride], i < count, sharing (scale, min). */
static void quantize_run(const float *x, size_t stride, size_t count, uint32_t bits, uint16_t *pair,
                         uint32_t *codes, size_t code_stride)
{
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        float v = x[i * stride];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    uint16_t min_h = fp16_down(lo);
    float min = kvz_fp16_to_f32(min_h);
    float levels = (float)((1u << bits) - 1);
    uint16_t scale_h = fp16_up((hi - min) / levels);
    float scale = kvz_fp16_to_f32(scale_h);
    pair[0] = scale_h;
    pair[1] = min_h;
    for (size_t i = 0; i < count; i++) {
        float q = scale > 0 ? rintf((x[i * stride] - min) / scale) : 0.0f;
        q = q < 0 ? 0 : (q > levels ? levels : q);
        codes[i * code_stride] = (uint32_t)q;
    }
}

static void pack(const uint32_t *codes, size_t count, uint32_t bits, uint8_t *out)
{
    memset(out, 0, (count * bits + 7) / 8);
    for (size_t i = 0; i < count; i++) {
        size_t bit = i * bits;
        out[bit / 8] |= (uint8_t)(codes[i] << (bit % 8));
    }
}

int kvz_quantize(const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload,
                 uint16_t *scales)
{
    const size_t d = s->d, n16 = s->n16, m = s->n - s->n16;
    for (size_t i = 0; i < n16 * d; i++) {
        uint16_t h = kvz_f32_to_fp16(x[i]);
        memcpy(payload + 2 * i, &h, 2);
    }
    uint8_t *body = payload + n16 * d * 2;
    const float *xq = x + n16 * d;
    if (s->bits == 16) {
        for (size_t i = 0; i < m * d; i++) {
            uint16_t h = kvz_f32_to_fp16(xq[i]);
            memcpy(body + 2 * i, &h, 2);
        }
        return KVZ_OK;
    }
    /* codes in a temporary (m, d) grid, then packed */
    uint32_t *codes = malloc((m * d > 0 ? m * d : 1) * sizeof *codes);
    if (!codes)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory quantizing %zu x %zu", m, d);
    if (is_keys) {
        size_t g = s->group;
        for (size_t t0 = 0, gi = 0; t0 < m; t0 += g, gi++) {
            size_t rows = m - t0 < g ? m - t0 : g;
            for (size_t c = 0; c < d; c++)
                quantize_run(xq + t0 * d + c, d, rows, s->bits, scales + 2 * (gi * d + c),
                             codes + t0 * d + c, d);
        }
    } else {
        size_t g = s->group, per_row = d / g;
        for (size_t t = 0; t < m; t++)
            for (size_t c0 = 0; c0 < d; c0 += g)
                quantize_run(xq + t * d + c0, 1, g, s->bits, scales + 2 * (t * per_row + c0 / g),
                             codes + t * d + c0, 1);
    }
    pack(codes, m * d, s->bits, body);
    free(codes);
    return KVZ_OK;
}

void kvz_dequantize(const uint8_t *payload, const uint16_t *scales, const kvz_quant_shape *s,
                    int is_keys, float *x)
{
    for (size_t t = 0; t < s->n; t++)
        kvz_kv_row(payload, scales, s, is_keys, t, x + t * s->d);
}
