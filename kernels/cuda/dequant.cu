/*
 * dequant.cu — GGUF blocks to f16 on the device, one thread per weight
 * (load time only: clarity over speed). Twin of kernels/cpu/dequant.c; the
 * element order and arithmetic follow it line for line.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/half_range.cuh"

extern "C" {
#include "kernels/ggml_types.h"
}

__device__ static float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__device__ static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Scale and min of sub-block j of a Q4_K / Q5_K super-block. */
__device__ static void k_scale_min(int j, const uint8_t *q, float *sc, float *m)
{
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *m = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Element e (< block_elems) of the block at p. */
__device__ static float block_value(uint32_t type, const uint8_t *p, int e)
{
    switch (type) {
    case KVZ_GGML_F32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case KVZ_GGML_F16: return h2f(ld16(p));
    case KVZ_GGML_BF16: return __uint_as_float((uint32_t)ld16(p) << 16);
    case KVZ_GGML_Q4_0: {
        int q = e < 16 ? (p[2 + e] & 0x0f) : (p[2 + e - 16] >> 4);
        return (float)(q - 8) * h2f(ld16(p));
    }
    case KVZ_GGML_Q4_1: {
        int q = e < 16 ? (p[4 + e] & 0x0f) : (p[4 + e - 16] >> 4);
        return (float)q * h2f(ld16(p)) + h2f(ld16(p + 2));
    }
    case KVZ_GGML_Q5_0:
    case KVZ_GGML_Q5_1: {
        int off = type == KVZ_GGML_Q5_0 ? 2 : 4;
        uint32_t qh = p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) | ((uint32_t)p[off + 3] << 24);
        const uint8_t *qs = p + off + 4;
        int q = e < 16 ? ((qs[e] & 0x0f) | (((qh >> e) & 1) << 4))
                       : ((qs[e - 16] >> 4) | (((qh >> e) & 1) << 4));
        return type == KVZ_GGML_Q5_0 ? (float)(q - 16) * h2f(ld16(p))
                                     : (float)q * h2f(ld16(p)) + h2f(ld16(p + 2));
    }
    case KVZ_GGML_Q8_0: return (float)(int8_t)p[2 + e] * h2f(ld16(p));
    case KVZ_GGML_Q4_K:
    case KVZ_GGML_Q5_K: {
        /* 4 groups of 64: sub-blocks 2g (low nibbles) and 2g+1 (high nibbles) */
        int g = e / 64, hi = (e % 64) / 32, l = e % 32, sub = 2 * g + hi;
        float sc, m;
        k_scale_min(sub, p + 4, &sc, &m);
        float d = h2f(ld16(p)) * sc, mn = h2f(ld16(p + 2)) * m;
        if (type == KVZ_GGML_Q4_K) {
            uint8_t byte = p[16 + 32 * g + l];
            return d * (float)(hi ? byte >> 4 : byte & 0x0f) - mn;
        }
        uint8_t byte = p[48 + 32 * g + l], qh = p[16 + l];
        int q = (hi ? byte >> 4 : byte & 0x0f) + ((qh >> sub) & 1 ? 16 : 0);
        return d * (float)q - mn;
    }
    case KVZ_GGML_Q6_K: {
        /* 2 halves of 128; within a half, 4 quarters of 32 */
        int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        const uint8_t *ql = p + 64 * half, *qh = p + 128 + 32 * half;
        const int8_t *sc = (const int8_t *)(p + 192) + 8 * half;
        int low = quarter & 1 ? ql[l + 32] : ql[l];
        low = quarter >= 2 ? low >> 4 : low & 0x0f;
        int q = (low | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
        return h2f(ld16(p + 208)) * (float)sc[l / 16 + 2 * quarter] * (float)q;
    }
    }
    return 0.0f;
}

__global__ static void dequant_kernel(__half *dst, const uint8_t *src, uint32_t type, int64_t rows,
                                      int64_t cols, size_t row_bytes, int block_elems, int block_bytes)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols)
        return;
    int64_t r = i / cols, c = i % cols;
    const uint8_t *blk = src + r * row_bytes + (c / block_elems) * block_bytes;
    dst[i] = kvz_half_sat(block_value(type, blk, (int)(c % block_elems)));
}

int cuda_dequantize_f16(cuda_impl *c, __half *dst, const void *src, uint32_t type, int64_t rows,
                        int64_t cols)
{
    kvz_ggml_type_info info = kvz_ggml_type_info_of(type);
    size_t row_bytes = kvz_ggml_row_bytes(type, (uint64_t)cols);
    int64_t total = rows * cols;
    dequant_kernel<<<ceil_div(total, 256), 256, 0, c->stream>>>(
        dst, (const uint8_t *)src, type, rows, cols, row_bytes, (int)info.block_elems,
        (int)info.block_bytes);
    CUDA_LAUNCHED("dequantize");
    return KVZ_OK;
}
