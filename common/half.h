/*
 * half.h — IEEE binary16 (fp16) and bfloat16 conversions on the host.
 *
 * Exact: fp16 -> f32 is lossless; f32 -> fp16 rounds to nearest even, with
 * overflow to infinity and NaN kept NaN. Used by the GGUF dequantizers and the
 * artifact codecs, so the CPU results never depend on the compiler's _Float16.
 */
#ifndef KVZ_COMMON_HALF_H
#define KVZ_COMMON_HALF_H

#include <stdint.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

static inline uint32_t kvz_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float kvz_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float kvz_fp16_to_f32(uint16_t h)
{
#if defined(__F16C__)
    return _cvtsh_ss(h); /* the same exact conversion in one instruction */
#endif
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf / NaN */
        return kvz_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return kvz_bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return kvz_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t kvz_f32_to_fp16(float f)
{
    uint32_t x = kvz_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* below the smallest normal: subnormal or zero */
        if (absx < 0x33000000u) /* below half the smallest subnormal */
            return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))
        q++;
    return (uint16_t)(sign | q);
}

static inline float kvz_bf16_to_f32(uint16_t b) { return kvz_bits_f32((uint32_t)b << 16); }

static inline uint16_t kvz_f32_to_bf16(float f)
{
    uint32_t x = kvz_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN stays NaN */
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

#endif
