/*
 * dequant.c — block decoders for every GGUF type kvz reads.
 *
 * Block layouts: kernels/ggml_types.h. Each decoder writes block_elems floats
 * per block in the element order ggml uses.
 */
#include "kernels/cpu/dequant.h"
#include "common/error.h"
#include "common/half.h"
#include "kernels/ggml_types.h"

#include <string.h>

static void dequant_q4_0(const kvz_block_q4_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += KVZ_QK) {
        float d = kvz_fp16_to_f32(b[i].d);
        for (int j = 0; j < KVZ_QK / 2; j++) {
            y[j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            y[j + KVZ_QK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const kvz_block_q4_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += KVZ_QK) {
        float d = kvz_fp16_to_f32(b[i].d), m = kvz_fp16_to_f32(b[i].m);
        for (int j = 0; j < KVZ_QK / 2; j++) {
            y[j] = (float)(b[i].qs[j] & 0x0f) * d + m;
            y[j + KVZ_QK / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static uint32_t load_u32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q5_0 and Q5_1: bit j of qh is the fifth bit of element j. */
static void dequant_q5_0(const kvz_block_q5_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += KVZ_QK) {
        float d = kvz_fp16_to_f32(b[i].d);
        uint32_t qh = load_u32_le(b[i].qh);
        for (int j = 0; j < KVZ_QK / 2; j++) {
            int lo = (b[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = (float)(lo - 16) * d;
            y[j + KVZ_QK / 2] = (float)(hi - 16) * d;
        }
    }
}

static void dequant_q5_1(const kvz_block_q5_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += KVZ_QK) {
        float d = kvz_fp16_to_f32(b[i].d), m = kvz_fp16_to_f32(b[i].m);
        uint32_t qh = load_u32_le(b[i].qh);
        for (int j = 0; j < KVZ_QK / 2; j++) {
            int lo = (b[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = (float)lo * d + m;
            y[j + KVZ_QK / 2] = (float)hi * d + m;
        }
    }
}

static void dequant_q8_0(const kvz_block_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += KVZ_QK) {
        float d = kvz_fp16_to_f32(b[i].d);
        for (int j = 0; j < KVZ_QK; j++)
            y[j] = (float)b[i].qs[j] * d;
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block:
 * sub-blocks 0-3 use the low 6 bits of bytes 0-3 / 4-7; sub-blocks 4-7 combine
 * a nibble of bytes 8-11 with the top 2 bits of bytes 0-3 / 4-7. */
static void k_scale_min(int j, const uint8_t *q, float *scale, float *min)
{
    uint8_t sc, m;
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
    *scale = sc;
    *min = m;
}

static void dequant_q4_k(const kvz_block_q4_k *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = kvz_fp16_to_f32(b[i].d), dmin = kvz_fp16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0, is = 0; j < KVZ_QK_K; j += 64, is += 2, q += 32) {
            float sc, m;
            k_scale_min(is, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k_scale_min(is + 1, b[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_k(const kvz_block_q5_k *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = kvz_fp16_to_f32(b[i].d), dmin = kvz_fp16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        unsigned u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < KVZ_QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            float sc, m;
            k_scale_min(is, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k_scale_min(is + 1, b[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

static void dequant_q6_k(const kvz_block_q6_k *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = kvz_fp16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int n = 0; n < KVZ_QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                int q2 = (int)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void kvz_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    switch (type) {
    case KVZ_GGML_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case KVZ_GGML_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = kvz_fp16_to_f32(h[i]);
        return;
    }
    case KVZ_GGML_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = kvz_bf16_to_f32(h[i]);
        return;
    }
    case KVZ_GGML_Q4_0: dequant_q4_0(src, dst, n / KVZ_QK); return;
    case KVZ_GGML_Q4_1: dequant_q4_1(src, dst, n / KVZ_QK); return;
    case KVZ_GGML_Q5_0: dequant_q5_0(src, dst, n / KVZ_QK); return;
    case KVZ_GGML_Q5_1: dequant_q5_1(src, dst, n / KVZ_QK); return;
    case KVZ_GGML_Q8_0: dequant_q8_0(src, dst, n / KVZ_QK); return;
    case KVZ_GGML_Q4_K: dequant_q4_k(src, dst, n / KVZ_QK_K); return;
    case KVZ_GGML_Q5_K: dequant_q5_k(src, dst, n / KVZ_QK_K); return;
    case KVZ_GGML_Q6_K: dequant_q6_k(src, dst, n / KVZ_QK_K); return;
    default: KVZ_ASSERT(!"dequantize: unsupported type reached the kernel");
    }
}
