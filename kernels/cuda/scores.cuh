/*
 * scores.cuh — what the two implementations of attention scoring share: their
 * arguments and the walk over the scored key ranges. scores.cu holds the
 * CUDA-core passes and picks; scores_tc.cu the tensor-core ones (blocks of
 * many queries). Both leave the same statistics and reductions.
 */
#ifndef KVZ_KERNELS_CUDA_SCORES_CUH
#define KVZ_KERNELS_CUDA_SCORES_CUH

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/tc_tile.cuh"

struct score_args {
    float *scores;
    /* Sums over several query tiles: each tile's, (tiles, n_kv, support), added
     * up in tile order by score_add_tiles (float atomics would add them in
     * whatever order the blocks finish: compiles that differ in last bits).
     * NULL for maxima (exact in any order) and for one tile. */
    float *tile_sums;
    float *stats; /* (n, n_heads, 2): max, sum */
    const float *q, *kc;
    int n, q_pos0, n_heads, n_kv, capacity, n_ranges, reduce, bq, support;
    int tiles; /* query tiles of bq queries: the passes' grid, tile_sums' first dimension */
    int begin[KVZ_SCORE_MAX_RANGES], end[KVZ_SCORE_MAX_RANGES];
    float scale;
};

/* The cache row of position `idx` in the ranges laid end to end. Unrolled
 * over the most ranges there can be: indexed by a loop variable, the
 * argument's arrays made the compiler copy the whole struct to local memory. */
__device__ static inline int support_row(const score_args &a, int idx)
{
#pragma unroll
    for (int r = 0; r < KVZ_SCORE_MAX_RANGES; r++) {
        if (r < a.n_ranges) {
            int len = a.end[r] - a.begin[r];
            if (idx < len)
                return a.begin[r] + idx;
            idx -= len;
        }
    }
    return -1;
}

/* One tile's step of a row's running max m and sum l, taken by a whole warp:
 * each lane brings two scores (-inf: not visible). */
__device__ static inline void row_stats_step(float s0, float s1, float &m, float &l)
{
    float tmax = fmaxf(s0, s1);
    for (int off = 16; off > 0; off >>= 1)
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
    if (tmax == -INFINITY) /* uniform across the warp */
        return;
    float mn = fmaxf(m, tmax);
    float p = (s0 == -INFINITY ? 0.0f : __expf(s0 - mn)) + (s1 == -INFINITY ? 0.0f : __expf(s1 - mn));
    for (int off = 16; off > 0; off >>= 1)
        p += __shfl_xor_sync(0xffffffffu, p, off);
    l = l * __expf(m - mn) + p;
    m = mn;
}

/* Row r of the block (query i0 + r / group, head g * group + r % group): its statistics, from lane 0. */
__device__ static inline void row_stats_store(const score_args &a, int r, int rows, int i0, int g, int group,
                                              float m, float l)
{
    int i = i0 + r / group, h = g * group + r % group;
    if (r < rows && i < a.n && threadIdx.x % 32 == 0) {
        a.stats[2 * ((size_t)i * a.n_heads + h)] = m;
        a.stats[2 * ((size_t)i * a.n_heads + h) + 1] = l;
    }
}

/* Two probabilities of one key folded as the reduction asks. */
__device__ static inline float score_fold(const score_args &a, float x, float y)
{
    return a.reduce == KVZ_REDUCE_MAX ? fmaxf(x, y) : x + y;
}

/* A block's reduction for key `idx` of the support (cache row `row`) of KV
 * head g: into the scores (one atomic: a maximum, or the only tile's sum), or
 * into its tile's slot of tile_sums. */
__device__ static inline void score_commit(const score_args &a, int g, int row, int idx, float v)
{
    float *o = a.scores + (size_t)g * a.capacity + row;
    if (a.reduce == KVZ_REDUCE_MAX) /* probabilities are >= 0: int order is float order */
        atomicMax((int *)o, __float_as_int(v));
    else if (a.tile_sums)
        a.tile_sums[((size_t)blockIdx.z * a.n_kv + g) * a.support + idx] = v;
    else
        atomicAdd(o, v); /* one tile: one addition per key, the same in any order */
}

/* Key `idx` of the support (cache row `row`, -1: none) folded over a block's
 * `parts` partial reductions, col[k * stride], then committed. */
__device__ static inline void score_commit_partials(const score_args &a, int g, int row, int idx, const float *col,
                                                    int stride, int parts)
{
    if (row < 0)
        return;
    float v = col[0];
    for (int k = 1; k < parts; k++)
        v = score_fold(a, v, col[k * stride]);
    score_commit(a, g, row, idx, v);
}

/* Query rows per block of the tensor-core passes. */
#define SCORE_TC_ROWS TC_TILE
/* Their dynamic shared memory for head size hd, and the launch of both passes
 * (a->bq queries per block, a->stats ready for n x n_heads pairs). */
size_t cuda_scores_tc_smem(int hd);
int cuda_scores_tc_configure(cuda_impl *c); /* as cuda_attention_tc_configure */
int cuda_scores_tc_launch(cuda_impl *c, const score_args *a, int hd);

#endif
