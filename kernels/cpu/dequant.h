/*
 * dequant.h — GGUF weight rows to f32 on the CPU (the reference for the CUDA
 * dequantizer).
 */
#ifndef KVZ_KERNELS_CPU_DEQUANT_H
#define KVZ_KERNELS_CPU_DEQUANT_H

#include <stdint.h>

/* Decode `n` elements of `type` from `src` into `dst`. The caller guarantees
 * that the type is supported (kvz_ggml_row_bytes(type, n) != 0) and that `src`
 * holds that many bytes. */
void kvz_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

#endif
