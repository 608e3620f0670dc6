/*
 * scores_tc.cu — the two scoring passes of scores.cu with the query-key
 * products on tensor cores (WMMA, f16 inputs scaled before rounding, f32
 * accumulation), for blocks of many queries (KVzip's reconstruction chunks,
 * SnapKV's window):
 *
 *  1. row statistics: a block serves one KV head and up to 64 rows of
 *     (query, group head), walks the scored keys 64 at a time, S = Q·Kᵀ per
 *     tile (tc_tile.cuh), and each warp keeps 8 rows' running max and sum;
 *  2. column reduction: a block serves 64 keys of one KV head and one tile of
 *     query rows, computes the same S tile (the same tiles in the same order,
 *     so probabilities never exceed 1), and reduces each key's probabilities
 *     over the rows: four row groups per key, then one atomic per key.
 */
#include "kernels/cuda/scores.cuh"

#include <math.h>

template <int HD>
struct score_layout {
    static constexpr int QLD = tc_dims<HD>::QLD, SLD = tc_dims<HD>::SLD;
    static constexpr size_t q_off = 0;
    static constexpr size_t k_off = q_off + (size_t)TC_TILE * QLD * 2;
    static constexpr size_t s_off = k_off + (size_t)TC_TILE * QLD * 2;
    static constexpr size_t bytes = s_off + (size_t)TC_TILE * SLD * 4;
};

/* Keys [t0, t0 + 64) of the support as f16 rows; rows_of[j] = cache row, or -1. */
template <int HD>
__device__ static void load_key_tile(const score_args &a, __half *ks, int *rows_of, int t0, int g)
{
    constexpr int QLD = tc_dims<HD>::QLD;
    const float *kh = a.kc + (size_t)g * a.capacity * HD;
    if (threadIdx.x < TC_TILE) {
        int t = t0 + threadIdx.x;
        rows_of[threadIdx.x] = t < a.support ? support_row(a, t) : -1;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < TC_TILE * HD / 4; idx += blockDim.x) {
        int j = idx / (HD / 4), d = idx % (HD / 4) * 4, row = rows_of[j];
        float4 k4 = row >= 0 ? *(const float4 *)(kh + (size_t)row * HD + d) : make_float4(0.f, 0.f, 0.f, 0.f);
        __half2 *kd = (__half2 *)(ks + j * QLD + d);
        kd[0] = kvz_half2_sat(k4.x, k4.y);
        kd[1] = kvz_half2_sat(k4.z, k4.w);
    }
}

template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32) row_stats_tc_kernel(score_args a)
{
    using L = score_layout<HD>;
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ int rows_of[TC_TILE];
    __half *qs = (__half *)(smem + L::q_off), *ks = (__half *)(smem + L::k_off);
    float *ss = (float *)(smem + L::s_off);
    const int group = a.n_heads / a.n_kv, rows = a.bq * group;
    const int g = blockIdx.y, i0 = blockIdx.x * a.bq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    constexpr int ROWS_PER_WARP = TC_TILE / TC_WARPS;
    tc_load_queries<HD>(qs, a.q, a.scale, a.n, a.n_heads, i0, g, group, rows);
    float m[ROWS_PER_WARP], l[ROWS_PER_WARP];
#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++)
        m[k] = -INFINITY, l[k] = 0.0f;
    for (int t0 = 0; t0 < a.support; t0 += TC_TILE) {
        __syncthreads(); /* the previous tile's S and keys are read */
        load_key_tile<HD>(a, ks, rows_of, t0, g);
        __syncthreads();
        tc_qk_tile<HD>(qs, ks, ss);
        __syncthreads();
#pragma unroll
        for (int k = 0; k < ROWS_PER_WARP; k++) {
            int r = warp * ROWS_PER_WARP + k, i = i0 + r / group;
            if (r >= rows || i >= a.n) /* uniform across the warp */
                continue;
            int row0 = rows_of[lane], row1 = rows_of[lane + 32];
            float s0 = row0 >= 0 && row0 <= a.q_pos0 + i ? ss[r * L::SLD + lane] : -INFINITY;
            float s1 = row1 >= 0 && row1 <= a.q_pos0 + i ? ss[r * L::SLD + lane + 32] : -INFINITY;
            row_stats_step(s0, s1, m[k], l[k]);
        }
    }
#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++)
        row_stats_store(a, warp * ROWS_PER_WARP + k, rows, i0, g, group, m[k], l[k]);
}

template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32) column_reduce_tc_kernel(score_args a)
{
    using L = score_layout<HD>;
    constexpr int GROUPS = TC_WARPS * 32 / TC_TILE; /* row groups per key */
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ int rows_of[TC_TILE];
    __shared__ float row_m[TC_TILE], row_l[TC_TILE];
    __shared__ int row_last[TC_TILE]; /* last cache row the query row sees; -1: no row */
    __shared__ float partial[GROUPS][TC_TILE];
    __half *qs = (__half *)(smem + L::q_off), *ks = (__half *)(smem + L::k_off);
    float *ss = (float *)(smem + L::s_off);
    const int group = a.n_heads / a.n_kv, rows = a.bq * group;
    const int t0 = blockIdx.x * TC_TILE, g = blockIdx.y, i0 = blockIdx.z * a.bq;
    tc_load_queries<HD>(qs, a.q, a.scale, a.n, a.n_heads, i0, g, group, rows);
    if (threadIdx.x < TC_TILE) {
        int r = threadIdx.x, i = i0 + r / group, h = g * group + r % group;
        bool ok = r < rows && i < a.n;
        const float *st = a.stats + 2 * ((size_t)(ok ? i : 0) * a.n_heads + h);
        row_m[r] = ok ? st[0] : 0.0f;
        row_l[r] = ok ? st[1] : 1.0f;
        row_last[r] = ok ? a.q_pos0 + i : -1;
    }
    load_key_tile<HD>(a, ks, rows_of, t0, g); /* synchronises after the rows above */
    __syncthreads();
    tc_qk_tile<HD>(qs, ks, ss);
    __syncthreads();
    const int j = threadIdx.x % TC_TILE, rg = threadIdx.x / TC_TILE, row = rows_of[j];
    float acc = 0.0f;
    for (int r = rg * (TC_TILE / GROUPS); r < (rg + 1) * (TC_TILE / GROUPS); r++) {
        if (row < 0 || row > row_last[r])
            continue;
        float p = __expf(ss[r * L::SLD + j] - row_m[r]) / row_l[r];
        acc = score_fold(a, acc, p);
    }
    partial[rg][j] = acc;
    __syncthreads();
    if (rg == 0)
        score_commit_partials(a, g, row, t0 + j, &partial[0][j], TC_TILE, GROUPS);
}

size_t cuda_scores_tc_smem(int hd)
{
    return hd == 64 ? score_layout<64>::bytes : hd == 96 ? score_layout<96>::bytes : score_layout<128>::bytes;
}

template <int HD>
static int configure_tc(cuda_impl *c)
{
    size_t *room = &c->scores_tc_room[cuda_head_slot(HD)];
    KVZ_TRY(cuda_allow_smem(c, row_stats_tc_kernel<HD>, "row_stats_tc_kernel", HD, score_layout<HD>::bytes, room));
    return cuda_allow_smem(c, column_reduce_tc_kernel<HD>, "column_reduce_tc_kernel", HD, score_layout<HD>::bytes,
                           room);
}

int cuda_scores_tc_configure(cuda_impl *c)
{
    KVZ_TRY(configure_tc<64>(c));
    KVZ_TRY(configure_tc<96>(c));
    return configure_tc<128>(c);
}

template <int HD>
static int launch_tc(cuda_impl *c, const score_args *a)
{
    size_t smem = score_layout<HD>::bytes;
    row_stats_tc_kernel<HD><<<dim3(a->tiles, a->n_kv), TC_WARPS * 32, smem, c->stream>>>(*a);
    CUDA_LAUNCHED("tensor-core attention scores (row statistics)");
    column_reduce_tc_kernel<HD><<<dim3(ceil_div(a->support, TC_TILE), a->n_kv, a->tiles), TC_WARPS * 32, smem,
                                  c->stream>>>(*a);
    CUDA_LAUNCHED("tensor-core attention scores (column reduction)");
    return KVZ_OK;
}

int cuda_scores_tc_launch(cuda_impl *c, const score_args *a, int hd)
{
    return hd == 64 ? launch_tc<64>(c, a) : hd == 96 ? launch_tc<96>(c, a) : launch_tc<128>(c, a);
}
