/*
 * scores.cu — attention probabilities reduced onto cached keys, on the device,
 * in two tiled passes that never hold more than a tile of the score matrix:
 *
 *  1. row statistics: a block serves one KV head and up to 64 query rows (the
 *     GQA group of consecutive queries), walks the scored key ranges in tiles
 *     of 32 keys held in shared memory and keeps each row's running max and
 *     sum (online softmax) in registers;
 *  2. column reduction: a block serves 32 keys of one KV head and up to 64
 *     query rows, both in shared memory; each key's probabilities are
 *     recomputed and reduced over the rows, then over the block's warps, and
 *     leave with one atomic per key.
 *
 * Twin of kernels/cpu/scores.c; the layout mirrors attention.cu. Blocks of at
 * least TC_MIN_QUERIES queries take the tensor-core passes of scores_tc.cu
 * instead, unless KVZ_CUDA_ATTENTION=simt.
 */
#include "kernels/cuda/scores.cuh"

#include <math.h>

#define WARPS 8
#define ROWS_PER_WARP 8
#define MAX_ROWS (WARPS * ROWS_PER_WARP)
#define KEY_TILE 32
#define TC_MIN_QUERIES 16

/* Query rows of the block into shared memory: row r = query i0 + r / group,
 * head g * group + r % group. */
template <int HD>
__device__ static void load_queries(const score_args &a, float *qs, int i0, int g, int rows, int group)
{
    for (int idx = threadIdx.x; idx < rows * HD; idx += blockDim.x) {
        int r = idx / HD, d = idx % HD, i = i0 + r / group, h = g * group + r % group;
        qs[idx] = i < a.n ? a.q[((size_t)i * a.n_heads + h) * HD + d] : 0.0f;
    }
}

/* Keys [t0, t0 + 32) of the support into shared memory (padded rows): each
 * key's cache row found once (not once per channel), then the rows copied.
 * Every thread of the block calls it (a barrier inside). */
template <int HD>
__device__ static void load_keys(const score_args &a, float *ks, int *rows_of, int t0, int g)
{
    const float *kh = a.kc + (size_t)g * a.capacity * HD;
    if (threadIdx.x < KEY_TILE) {
        int t = t0 + threadIdx.x;
        rows_of[threadIdx.x] = t < a.support ? support_row(a, t) : -1;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < KEY_TILE * HD; idx += blockDim.x) {
        int j = idx / HD, d = idx % HD, row = rows_of[j];
        ks[j * (HD + 1) + d] = row >= 0 ? kh[(size_t)row * HD + d] : 0.0f;
    }
}

template <int HD>
__global__ void __launch_bounds__(WARPS * 32) row_stats_kernel(score_args a)
{
    extern __shared__ float smem[];
    __shared__ int rows_of[KEY_TILE];
    const int group = a.n_heads / a.n_kv, rows = a.bq * group;
    float *qs = smem, *ks = qs + rows * HD;
    const int g = blockIdx.y, i0 = blockIdx.x * a.bq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_queries<HD>(a, qs, i0, g, rows, group);
    float m[ROWS_PER_WARP], l[ROWS_PER_WARP];
#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++)
        m[k] = -INFINITY, l[k] = 0.0f;
    for (int t0 = 0; t0 < a.support; t0 += KEY_TILE) {
        __syncthreads();
        load_keys<HD>(a, ks, rows_of, t0, g);
        __syncthreads();
#pragma unroll
        for (int k = 0; k < ROWS_PER_WARP; k++) {
            int r = warp + WARPS * k, i = i0 + r / group;
            if (r >= rows || i >= a.n)
                continue;
            int row = rows_of[lane];
            float s = -INFINITY;
            if (row >= 0 && row <= a.q_pos0 + i) {
                const float *qr = qs + r * HD, *kr = ks + lane * (HD + 1);
                float dot = 0.0f;
#pragma unroll 16
                for (int d = 0; d < HD; d++)
                    dot = fmaf(qr[d], kr[d], dot);
                s = __fmul_rn(dot, a.scale); /* rounded as column_reduce_kernel rounds it (no FMA into exp's argument) */
            }
            row_stats_step(s, -INFINITY, m[k], l[k]);
        }
    }
#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++)
        row_stats_store(a, warp + WARPS * k, rows, i0, g, group, m[k], l[k]);
}

template <int HD>
__global__ void __launch_bounds__(WARPS * 32) column_reduce_kernel(score_args a)
{
    extern __shared__ float smem[];
    __shared__ int rows_of[KEY_TILE];
    __shared__ float partial[WARPS][KEY_TILE];
    const int group = a.n_heads / a.n_kv, rows = a.bq * group;
    float *qs = smem, *ks = qs + rows * HD;
    const int t0 = blockIdx.x * KEY_TILE, g = blockIdx.y, i0 = blockIdx.z * a.bq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_queries<HD>(a, qs, i0, g, rows, group);
    load_keys<HD>(a, ks, rows_of, t0, g);
    __syncthreads();
    int row = rows_of[lane];
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++) {
        int r = warp + WARPS * k, i = i0 + r / group, h = g * group + r % group;
        if (r >= rows || i >= a.n || row < 0 || row > a.q_pos0 + i)
            continue;
        const float *qr = qs + r * HD, *kr = ks + lane * (HD + 1);
        float dot = 0.0f;
#pragma unroll 16
        for (int d = 0; d < HD; d++)
            dot = fmaf(qr[d], kr[d], dot);
        const float *st = a.stats + 2 * ((size_t)i * a.n_heads + h);
        /* the score rounded before the max is taken off, as row_stats_kernel
         * rounds it: nvcc would otherwise fuse dot * scale - max into one FMA
         * here and not there (or the other way), and the row's largest
         * probability could come out above 1 / sum (above 1 for a row that
         * sees one key); the CPU emulation never fuses, so its tests cannot tell */
        float p = __expf(__fmul_rn(dot, a.scale) - st[0]) / st[1];
        acc = score_fold(a, acc, p);
    }
    partial[warp][lane] = acc;
    __syncthreads();
    if (warp == 0)
        score_commit_partials(a, g, row, t0 + lane, &partial[0][lane], KEY_TILE, WARPS);
}

/* The tiles' sums of each key added to its score in tile order. */
__global__ static void score_add_tiles(score_args a)
{
    const int64_t at = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (at >= (int64_t)a.n_kv * a.support)
        return;
    const int g = (int)(at / a.support), idx = (int)(at % a.support), row = support_row(a, idx);
    if (row < 0)
        return;
    float v = 0.0f;
    for (int t = 0; t < a.tiles; t++)
        v += a.tile_sums[((size_t)t * a.n_kv + g) * a.support + idx];
    a.scores[(size_t)g * a.capacity + row] += v;
}

/* A block's dynamic shared memory: its rows' queries and a key tile (padded). */
static size_t score_smem(int rows, int hd)
{
    return ((size_t)rows * hd + KEY_TILE * (hd + 1)) * sizeof(float);
}

template <int HD>
static int configure(cuda_impl *c)
{
    size_t *room = &c->scores_room[cuda_head_slot(HD)];
    KVZ_TRY(cuda_allow_smem(c, row_stats_kernel<HD>, "row_stats_kernel", HD, score_smem(MAX_ROWS, HD), room));
    return cuda_allow_smem(c, column_reduce_kernel<HD>, "column_reduce_kernel", HD, score_smem(MAX_ROWS, HD), room);
}

int cuda_scores_configure(cuda_impl *c)
{
    KVZ_TRY(configure<64>(c));
    KVZ_TRY(configure<96>(c));
    KVZ_TRY(configure<128>(c));
    return cuda_scores_tc_configure(c);
}

template <int HD>
static int launch(cuda_impl *c, const score_args &a)
{
    int group = a.n_heads / a.n_kv, rows = a.bq * group;
    size_t smem = score_smem(rows, HD);
    if (smem > c->scores_room[cuda_head_slot(HD)])
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: scoring needs %zu bytes of shared memory, "
                          "the device offers %zu", smem, c->scores_room[cuda_head_slot(HD)]);
    row_stats_kernel<HD><<<dim3(a.tiles, a.n_kv), WARPS * 32, smem, c->stream>>>(a);
    CUDA_LAUNCHED("attention scores (row statistics)");
    column_reduce_kernel<HD><<<dim3(ceil_div(a.support, KEY_TILE), a.n_kv, a.tiles), WARPS * 32, smem,
                               c->stream>>>(a);
    CUDA_LAUNCHED("attention scores (column reduction)");
    return KVZ_OK;
}

int cuda_attention_scores(kvz_backend *b, float *scores, const float *q, const float *k_cache,
                          const kvz_score_params *p)
{
    cuda_impl *c = cuda_of(b);
    const int hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    if ((hd != 64 && hd != 96 && hd != 128) || group > MAX_ROWS)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: scores support head sizes 64, 96 and 128 and "
                          "GQA groups up to %d (got %d and %d)", MAX_ROWS, hd, group);
    KVZ_TRY(cuda_check_float4_caches(k_cache, k_cache, "scoring"));
    score_args a;
    a.scores = scores;
    a.q = q;
    a.kc = k_cache;
    a.n = p->n, a.q_pos0 = p->q_pos0, a.n_heads = p->n_heads, a.n_kv = p->n_kv_heads;
    a.capacity = p->capacity, a.n_ranges = p->n_ranges, a.reduce = p->reduce, a.scale = p->scale;
    a.support = 0;
    for (int r = 0; r < p->n_ranges; r++) {
        a.begin[r] = p->range_begin[r];
        a.end[r] = p->range_end[r];
        a.support += p->range_end[r] - p->range_begin[r];
    }
    if (a.support <= 0 || p->n <= 0)
        return KVZ_OK;
    const int tensor_cores = p->n >= TC_MIN_QUERIES && !c->attention_simt &&
                             cuda_scores_tc_smem(hd) <= c->scores_tc_room[cuda_head_slot(hd)];
    const int max_rows = tensor_cores ? SCORE_TC_ROWS : MAX_ROWS;
    a.bq = max_rows / group < p->n ? max_rows / group : p->n;
    size_t stats_bytes = (size_t)p->n * p->n_heads * 2 * sizeof(float);
    KVZ_TRY(cuda_ensure(c, (void **)&c->partials, &c->partial_bytes, stats_bytes, "scoring row statistics"));
    a.stats = c->partials;
    a.tiles = ceil_div(p->n, a.bq);
    if (a.tiles > 65535) /* the column pass's grid z; compile scores a chunk (2K queries) at a time */
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: scores of %d queries in one call (at most %lld)", p->n,
                          65535LL * a.bq);
    a.tile_sums = NULL;
    if (a.reduce != KVZ_REDUCE_MAX && a.tiles > 1) {
        size_t bytes = (size_t)a.tiles * a.n_kv * a.support * sizeof(float);
        KVZ_TRY(cuda_ensure(c, (void **)&c->tile_sums, &c->tile_sum_bytes, bytes, "scoring tile sums"));
        a.tile_sums = c->tile_sums;
    }
    KVZ_TRY(tensor_cores ? cuda_scores_tc_launch(c, &a, hd)
            : hd == 64   ? launch<64>(c, a)
            : hd == 96   ? launch<96>(c, a)
                         : launch<128>(c, a));
    if (!a.tile_sums)
        return KVZ_OK;
    score_add_tiles<<<ceil_div((int64_t)a.n_kv * a.support, 256), 256, 0, c->stream>>>(a);
    CUDA_LAUNCHED("attention scores (tile sums)");
    return KVZ_OK;
}
