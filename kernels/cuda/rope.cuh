/*
 * rope.cuh — RoPE's rotation of one channel pair, shared by the kernels that
 * rotate (rope.cu: queries and new keys; kv_load.cu: stored keys at load).
 * Angles in double, as kernels/cpu/rope.c: RoPE at load must reproduce
 * prefill, and an f32 angle at tens of thousands of positions is ~1e-3 rad off.
 */
#ifndef KVZ_KERNELS_CUDA_ROPE_CUH
#define KVZ_KERNELS_CUDA_ROPE_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "kernels/backend.h"
}

/* RoPE's angles as kernels take them, by value: the log of the base, the
 * rotary width, and the per-pair frequency factors (Llama 3.1+; n_factors 0:
 * none). */
struct rope_angles {
    double log_base;
    int32_t rope_dim, n_factors;
    float factors[KVZ_ROPE_MAX_FACTORS];
};

/* p's angles; a zero width (no rotation: values at load) for p NULL. */
static inline rope_angles rope_angles_of(const kvz_rope_params *p)
{
    rope_angles a;
    memset(&a, 0, sizeof a);
    if (!p)
        return a;
    a.log_base = log((double)p->freq_base);
    a.rope_dim = p->rope_dim;
    a.n_factors = p->n_factors;
    memcpy(a.factors, p->factors, sizeof a.factors);
    return a;
}

/* The channels (c0, c1) of pair j of a head whose first 2 * half channels
 * rotate: for j < half, the two RoPE turns together (normal: 2j and 2j + 1;
 * neox: j and j + half); past them, channels 2j and 2j + 1, not rotated. */
__device__ inline void rope_pair_channels(int32_t j, int32_t half, bool neox, int32_t *c0, int32_t *c1)
{
    const bool rotated = j < half;
    *c0 = rotated && neox ? j : 2 * j;
    *c1 = rotated && neox ? j + half : 2 * j + 1;
}

/* (x0, x1) of rotated pair j turned by its angle at `position` (back when inverse). */
__device__ inline void rope_rotate(float *x0, float *x1, int32_t position, int32_t j, const rope_angles &a,
                                   bool inverse)
{
    double freq = exp(-2.0 * j / a.rope_dim * a.log_base), sn, cs;
    if (a.n_factors)
        freq /= (double)a.factors[j]; /* as kernels/cpu/rope.c: the factor divides the frequency */
    const double theta = (double)position * freq;
    sincos(theta, &sn, &cs);
    const float c = (float)cs, s = inverse ? -(float)sn : (float)sn;
    /* rounded as the CPU's rotation (kernels/cpu/rope.c), not fused */
    const float r0 = __fsub_rn(__fmul_rn(*x0, c), __fmul_rn(*x1, s));
    const float r1 = __fadd_rn(__fmul_rn(*x0, s), __fmul_rn(*x1, c));
    *x0 = r0, *x1 = r1;
}

#endif
