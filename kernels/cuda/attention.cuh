/*
 * attention.cuh — what the two attention kernels share: their arguments and
 * the merge of key-range splits. attention.cu holds the CUDA-core kernel
 * (decode, short chunks) and picks; attention_tc.cu the tensor-core one
 * (prefill chunks). Both write, per split, the same partial results and
 * merge them with attention_merge_if_last.
 */
#ifndef KVZ_KERNELS_CUDA_ATTENTION_CUH
#define KVZ_KERNELS_CUDA_ATTENTION_CUH

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/tc_tile.cuh"

#include <math.h>

struct attn_args {
    float *out;
    float *partials; /* (splits, n, n_heads, head_dim + 2) when splits > 1 */
    unsigned int *split_done; /* per (query tile, KV head), at 0 between launches, when splits > 1 */
    const float *q, *kc, *vc;
    const int64_t *head_base; /* ragged layout, or NULL (see kvz_attention_params) */
    const int32_t *head_rows;
    int n, pos0, n_heads, n_kv, capacity, bq, split_len, splits;
    float scale;
};

/* The split merge at the end of either attention kernel, instead of a
 * launch of its own: the block that finishes a (query tile, KV head) last
 * merges the splits of its rows (r -> query i0 + r / group, head
 * g * group + r % group). Every thread makes its partials visible to the
 * device (the fence) before its block counts itself done (the barrier, then
 * one atomic on a.split_done), and the last block, which resets the counter
 * for the next launch, reads them from L2 (__ldcg), not from a stale L1. A
 * warp merges a row: lanes over output dimensions, each split weighted by
 * exp(split max - max). No block waits for another. */
template <int HD, int WARPS_PER_BLOCK>
__device__ __forceinline__ void attention_merge_if_last(const attn_args &a, int i0, int g, int rows, int group)
{
    constexpr int DPL = HD / 32;
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int *done = a.split_done + (size_t)g * gridDim.x + blockIdx.x;
        last = atomicAdd(done, 1u) == (unsigned int)a.splits - 1;
        if (last)
            *done = 0; /* every split of this tile has counted: ready for the next launch */
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t stride = (size_t)a.n * a.n_heads * (HD + 2); /* from one split to the next */
    for (int r = warp; r < rows; r += WARPS_PER_BLOCK) {
        const int i = i0 + r / group, h = g * group + r % group;
        if (i >= a.n) /* uniform across the warp */
            continue;
        const float *p0 = a.partials + ((size_t)i * a.n_heads + h) * (HD + 2);
        float mx = -INFINITY;
        for (int s = lane; s < a.splits; s += 32)
            mx = fmaxf(mx, __ldcg(p0 + s * stride + HD));
        for (int off = 16; off > 0; off >>= 1)
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        float sum = 0.0f, o[DPL];
#pragma unroll
        for (int c = 0; c < DPL; c++)
            o[c] = 0.0f;
#pragma unroll 4
        for (int s = 0; s < a.splits; s++) {
            const float *ps = p0 + s * stride;
            const float w = __expf(__ldcg(ps + HD) - mx);
            sum += __ldcg(ps + HD + 1) * w;
#pragma unroll
            for (int c = 0; c < DPL; c++)
                o[c] += __ldcg(ps + lane + 32 * c) * w;
        }
#pragma unroll
        for (int c = 0; c < DPL; c++)
            a.out[((size_t)i * a.n_heads + h) * HD + lane + 32 * c] = o[c] / sum;
    }
}

/* Queries per block of the tensor-core kernel, as rows of (query, group head). */
#define TC_ROWS TC_TILE
/* A block of the tensor-core kernel for head size hd: its dynamic shared memory. */
size_t cuda_attention_tc_smem(int hd);
/* Its shared-memory limits (cuda_allow_smem; a head size whose block asks
 * more than the device offers never takes the kernel), and its launch on grid
 * (query tiles, KV heads, splits); hd is 64, 96 or 128. */
int cuda_attention_tc_configure(cuda_impl *c);
int cuda_attention_tc_launch(cuda_impl *c, const attn_args *a, int hd, dim3 grid);

#endif
