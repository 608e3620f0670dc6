/*
 * tc_tile.cuh — the tensor-core step the attention and scoring kernels share:
 * S (64 x 64, f32) = Q (64 x HD, f16) · Kᵀ (64 keys x HD, f16) in shared
 * memory, as 16 WMMA tiles of 16 x 16 spread over the block's 8 warps.
 * Leading dimensions keep WMMA's 32-byte row alignment.
 */
#ifndef KVZ_KERNELS_CUDA_TC_TILE_CUH
#define KVZ_KERNELS_CUDA_TC_TILE_CUH

#include <cuda_fp16.h>
#include <mma.h>
#include "kernels/cuda/half_range.cuh"

#define TC_TILE 64 /* query rows and keys of one S tile */
#define TC_WARPS 8

template <int HD>
struct tc_dims {
    static constexpr int QLD = HD + 8;      /* f16 rows of Q, K, V */
    static constexpr int SLD = TC_TILE + 4; /* f32 scores */
};

/* Every warp of the block calls it; the caller synchronises before and after. */
template <int HD>
__device__ inline void tc_qk_tile(const __half *qs, const __half *ks, float *ss)
{
    using namespace nvcuda;
    constexpr int QLD = tc_dims<HD>::QLD, SLD = tc_dims<HD>::SLD;
    const int warp = threadIdx.x / 32;
    for (int t = warp; t < (TC_TILE / 16) * (TC_TILE / 16); t += TC_WARPS) {
        int tr = t / (TC_TILE / 16), tc = t % (TC_TILE / 16);
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kb;
            wmma::load_matrix_sync(qa, qs + 16 * tr * QLD + 16 * kk, QLD);
            wmma::load_matrix_sync(kb, ks + 16 * tc * QLD + 16 * kk, QLD);
            wmma::mma_sync(acc, qa, kb, acc);
        }
        wmma::store_matrix_sync(ss + 16 * tr * SLD + 16 * tc, acc, SLD, wmma::mem_row_major);
    }
}

/* Query rows r = t * group + j (query i0 + t, head g * group + j) of q (n,
 * n_heads, HD), times `scale`, as f16; rows past `rows` or queries past n are zero. */
template <int HD>
__device__ inline void tc_load_queries(__half *qs, const float *q, float scale, int n, int n_heads, int i0,
                                       int g, int group, int rows)
{
    constexpr int QLD = tc_dims<HD>::QLD;
    for (int idx = threadIdx.x; idx < TC_TILE * HD; idx += blockDim.x) {
        int r = idx / HD, d = idx % HD, i = i0 + r / group, h = g * group + r % group;
        float x = r < rows && i < n ? q[((size_t)i * n_heads + h) * HD + d] * scale : 0.0f;
        qs[r * QLD + d] = kvz_half_sat(x);
    }
}

#endif
