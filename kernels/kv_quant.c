/* kv_quant.c — per-channel key and per-token value quantization, bit packing
 * (the host reference; kernels/cuda/kv_quant.cu is its twin). */
#include "kernels/kv_quant.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

/* Codes of a run of elements x[i·stride], i < count, sharing one pair. */
static void quantize_run(const float *x, size_t stride, size_t count, uint32_t bits, uint16_t *pair,
                         uint32_t *codes, size_t code_stride)
{
    kvz_kv_pair(x, stride, count, bits, pair);
    const float scale = kvz_kv_half(pair[0]), min = kvz_kv_half(pair[1]);
    for (size_t i = 0; i < count; i++)
        codes[i * code_stride] = kvz_kv_code_of(x[i * stride], scale, min, bits);
}

static void pack(const uint32_t *codes, size_t count, uint32_t bits, uint8_t *out)
{
    memset(out, 0, (count * bits + 7) / 8);
    for (size_t i = 0; i < count; i++) {
        size_t bit = i * bits;
        out[bit / 8] |= (uint8_t)(codes[i] << (bit % 8));
    }
}

int kvz_quantize(const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload, uint16_t *scales)
{
    const size_t d = s->d, n16 = s->n16, m = s->n - s->n16;
    for (size_t i = 0; i < n16 * d; i++) {
        uint16_t h = kvz_kv_to_half(x[i]);
        memcpy(payload + 2 * i, &h, 2);
    }
    uint8_t *body = payload + n16 * d * 2;
    const float *xq = x + n16 * d;
    if (s->bits == 16) {
        for (size_t i = 0; i < m * d; i++) {
            uint16_t h = kvz_kv_to_half(xq[i]);
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
                quantize_run(xq + t0 * d + c, d, rows, s->bits, scales + 2 * (gi * d + c), codes + t0 * d + c, d);
        }
    } else {
        size_t g = s->group, per_row = d / g;
        for (size_t t = 0; t < m; t++)
            for (size_t c0 = 0; c0 < d; c0 += g)
                quantize_run(xq + t * d + c0, 1, g, s->bits, scales + 2 * (t * per_row + c0 / g), codes + t * d + c0,
                             1);
    }
    pack(codes, m * d, s->bits, body);
    free(codes);
    return KVZ_OK;
}
