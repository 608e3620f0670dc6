/*
 * row_ops.cuh — RMSNorm's scale and SwiGLU's value, shared by the kernels
 * that apply them on their own (elementwise.cu) and the product kernel that
 * applies them to its input as it reads it (matmul.cu). One definition, so
 * both give the same bits.
 */
#ifndef KVZ_KERNELS_CUDA_ROW_OPS_CUH
#define KVZ_KERNELS_CUDA_ROW_OPS_CUH

#include <stdint.h>

/* 1 / sqrt(mean(x²) + eps) of row x (dim floats), returned to every thread
 * of the block; every thread must call it. `partial` is 32 floats of shared
 * memory. The sum runs in one order for a given block size, so kernels of the
 * same block size get the same bits. */
__device__ inline float block_inv_rms(const float *x, int32_t dim, float eps, float *partial)
{
    float s = 0.0f;
    for (int32_t j = threadIdx.x; j < dim; j += blockDim.x)
        s += x[j] * x[j];
    for (int off = 16; off > 0; off >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, off);
    if ((threadIdx.x & 31) == 0)
        partial[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < (blockDim.x + 31) / 32 ? partial[threadIdx.x] : 0.0f;
        for (int off = 16; off > 0; off >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, off);
        if (threadIdx.x == 0)
            partial[0] = rsqrtf(s / dim + eps);
    }
    __syncthreads();
    const float inv = partial[0];
    __syncthreads(); /* a next call writes partial again */
    return inv;
}

/* Element j of a normalised row: x[j] · inv · weight[j]. */
__device__ inline float rms_scaled(float x, float inv, float weight)
{
    return x * inv * weight;
}

/* SwiGLU: silu(gate) · up. */
__device__ inline float swiglu_value(float gate, float up)
{
    return gate / (1.0f + expf(-gate)) * up;
}

#endif
