/*
 * quant.h — the key/value quantizers of .kvz artifacts (SPEC §6).
 *
 * Keys are quantized per channel over groups of kept tokens, values per token
 * over groups of channels (the KIVI/KVQuant findings: key outliers live in
 * channels, value outliers in tokens). Asymmetric: x ≈ min + code · scale with
 * (scale, min) in f16. The minimum is rounded down and the scale up to f16, so
 * every element is within scale/2 of its dequantized value.
 *
 * A payload is the n16 leading rows in f16, then the other m = n - n16 rows as
 * b-bit codes packed LSB first (or f16 when bits = 16).
 */
#ifndef KVZ_FORMAT_QUANT_H
#define KVZ_FORMAT_QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_quant_shape {
    uint32_t n;      /* kept rows (tokens) */
    uint32_t n16;    /* leading rows kept in f16 */
    uint32_t d;      /* channels */
    uint32_t bits;   /* 16, 8, 4, 2 */
    uint32_t group;  /* keys: tokens per group; values: channels per group (d % group == 0) */
} kvz_quant_shape;

/* 1 if the shape is one kvz can encode. */
int kvz_quant_shape_valid(const kvz_quant_shape *s, int is_keys);

size_t kvz_quant_payload_bytes(const kvz_quant_shape *s);
/* Scale pairs (scale, min): keys ceil(m/group)·d, values m·d/group; 0 at 16 bits. */
size_t kvz_quant_scale_pairs(const kvz_quant_shape *s, int is_keys);

/* x: (n, d) f32. payload: kvz_quant_payload_bytes; scales: 2 · pairs u16.
 * KVZ_ERR_NOMEM is the only failure. */
int kvz_quantize(const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload,
                 uint16_t *scales);
void kvz_dequantize(const uint8_t *payload, const uint16_t *scales, const kvz_quant_shape *s,
                    int is_keys, float *x);

#endif
