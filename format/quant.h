/*
 * quant.h — the key/value quantizers of .kvz artifacts (SPEC §6).
 *
 * Keys are quantized per channel over groups of kept tokens, values per token
 * over groups of channels (the KIVI/KVQuant findings: key outliers live in
 * channels, value outliers in tokens). Asymmetric: x ≈ min + code · scale with
 * (scale, min) in f16. The minimum is rounded down and the scale up to f16, so
 * every element is within scale/2 of its dequantized value (plus the f32
 * rounding of its magnitude).
 *
 * A payload is the n16 leading rows in f16, then the other m = n - n16 rows as
 * b-bit codes packed LSB first (or f16 when bits = 16).
 */
#ifndef KVZ_FORMAT_QUANT_H
#define KVZ_FORMAT_QUANT_H

#include "kernels/kv_codes.h" /* kvz_quant_shape, payload and scale sizes, reading one element */
#include "kernels/kv_quant.h" /* kvz_quantize */

#include <stddef.h>
#include <stdint.h>

/* 1 if the shape is one kvz can encode. */
int kvz_quant_shape_valid(const kvz_quant_shape *s, int is_keys);

void kvz_dequantize(const uint8_t *payload, const uint16_t *scales, const kvz_quant_shape *s,
                    int is_keys, float *x);

#endif
