/*
 * half_range.cuh — f32 values made f16 for the tensor cores and cuBLAS.
 *
 * f16 ends at 65504: a key, value, scaled query or activation beyond it would
 * become an infinity, and one infinity makes a whole softmax row (or a
 * product's output) NaN. Such values are held at the largest f16 of their
 * sign instead: they differ from the CPU path (f32 throughout) but stay
 * finite, as the f32 CUDA-core kernels would. NaN stays NaN.
 */
#ifndef KVZ_KERNELS_CUDA_HALF_RANGE_CUH
#define KVZ_KERNELS_CUDA_HALF_RANGE_CUH

#include <cuda_fp16.h>

#define KVZ_HALF_MAX 65504.0f

__device__ __forceinline__ float kvz_half_clamp(float x)
{
    return x > KVZ_HALF_MAX ? KVZ_HALF_MAX : x < -KVZ_HALF_MAX ? -KVZ_HALF_MAX : x; /* NaN compares false */
}

__device__ __forceinline__ __half kvz_half_sat(float x) { return __float2half(kvz_half_clamp(x)); }

__device__ __forceinline__ __half2 kvz_half2_sat(float a, float b)
{
    return __floats2half2_rn(kvz_half_clamp(a), kvz_half_clamp(b));
}

#endif
