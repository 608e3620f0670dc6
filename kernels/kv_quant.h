/*
 * kv_quant.h — writing one KV head's payload and (scale, min) pairs, the
 * inverse of kv_codes.h: the host reference that the CUDA backend's
 * kv_quantize (kernels/cuda/kv_quant.cu) matches bit for bit.
 */
#ifndef KVZ_KERNELS_KV_QUANT_H
#define KVZ_KERNELS_KV_QUANT_H

#include "kernels/kv_codes.h"

#include <stdint.h>

/* x: (s->n, s->d) f32 on the host. payload: kvz_quant_payload_bytes(s);
 * scales: 2 · kvz_quant_scale_pairs(s, is_keys) u16. The shape must be valid
 * (format/quant.h). KVZ_ERR_NOMEM is the only failure. */
int kvz_quantize(const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload, uint16_t *scales);

#endif
