/*
 * attention.cu — causal GQA attention over the (n_kv_heads, capacity,
 * head_dim) cache, flash style: scores never leave the chip.
 *
 * A block serves one KV head and a tile of queries: the group's query heads
 * for `bq` consecutive positions (at most 64 rows), so each key and value
 * tile loaded into shared memory is used by every row of the group. A warp
 * owns up to 8 rows and keeps each row's running max, sum and output in
 * registers (online softmax); lane l scores key l of a 32-key tile. The
 * next tile's keys and values are loaded into registers (float4s) while the
 * block scores the current one: a tile's loads fly together, not in turn.
 *
 * Decode (few queries) would leave most of the GPU idle, so the key range is
 * split across blocks (flash-decoding): each split writes (max, sum, partial
 * output), at most MAX_SPLITS of them, and the block that finishes a query
 * tile's splits last merges them (attention_merge_if_last, attention.cuh: no
 * second launch; the tensor-core kernel merges its splits the same way). Twin
 * of kernels/cpu/attention.c.
 *
 * Chunks of at least TC_MIN_QUERIES queries go to the tensor-core kernel
 * (attention_tc.cu) instead, unless KVZ_CUDA_ATTENTION=simt asks for this one
 * (for comparing the two).
 */
#include "kernels/cuda/attention.cuh"

#include <math.h>

#define WARPS 8
#define ROWS_PER_WARP 8
#define MAX_ROWS (WARPS * ROWS_PER_WARP)
#define KEY_TILE 32
#define TC_MIN_QUERIES 16
#define TC_KEY_TILE 64

/* A key tile's keys and values, as float4s per thread of the block. */
template <int HD>
constexpr int TILE_VECS = KEY_TILE * HD / 4 / (WARPS * 32);

/* Thread t holds float4 number t + v * blockDim of the tile starting at key
 * t0 (zeros past k_end), in registers: the loads of a whole tile are in flight
 * at once, and while the block scores the tile before. */
template <int HD>
__device__ __forceinline__ void fetch_tile(float4 *k4, float4 *v4, const float *kh, const float *vh, int t0,
                                           int k_end)
{
    static_assert(KEY_TILE * HD / 4 % (WARPS * 32) == 0, "a tile is whole float4s per thread");
#pragma unroll
    for (int v = 0; v < TILE_VECS<HD>; v++) {
        int idx = threadIdx.x + v * WARPS * 32, j = idx / (HD / 4), d = idx % (HD / 4) * 4;
        if (t0 + j < k_end) {
            k4[v] = *(const float4 *)(kh + (size_t)(t0 + j) * HD + d);
            v4[v] = *(const float4 *)(vh + (size_t)(t0 + j) * HD + d);
        } else {
            k4[v] = v4[v] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
    }
}

/* The fetched tile into shared memory: keys padded to HD + 1 per row. */
template <int HD>
__device__ __forceinline__ void stash_tile(float *ks, float *vs, const float4 *k4, const float4 *v4)
{
#pragma unroll
    for (int v = 0; v < TILE_VECS<HD>; v++) {
        int idx = threadIdx.x + v * WARPS * 32, j = idx / (HD / 4), d = idx % (HD / 4) * 4;
        float *kd = ks + j * (HD + 1) + d, *vd = vs + j * HD + d;
        kd[0] = k4[v].x, kd[1] = k4[v].y, kd[2] = k4[v].z, kd[3] = k4[v].w;
        vd[0] = v4[v].x, vd[1] = v4[v].y, vd[2] = v4[v].z, vd[3] = v4[v].w;
    }
}

template <int HD>
__global__ void __launch_bounds__(WARPS * 32) attention_kernel(attn_args a)
{
    constexpr int DPL = HD / 32; /* output dims per lane */
    extern __shared__ float smem[];
    const int group = a.n_heads / a.n_kv;
    const int rows = a.bq * group;
    float *qs = smem;                      /* (MAX_ROWS, HD) */
    float *ks = qs + rows * HD;            /* (KEY_TILE, HD + 1): padded, conflict-free */
    float *vs = ks + KEY_TILE * (HD + 1);  /* (KEY_TILE, HD) */
    const int g = blockIdx.y, split = blockIdx.z;
    const int i0 = blockIdx.x * a.bq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t base = a.head_base ? (size_t)a.head_base[g] : (size_t)g * a.capacity;
    const int first = a.head_base ? a.head_rows[g] : a.pos0; /* rows before the first query */
    const float *kh = a.kc + base * HD;
    const float *vh = a.vc + base * HD;

    /* rows: r = t * group + j -> query i0 + t, head g * group + j */
    for (int idx = threadIdx.x; idx < rows * HD; idx += blockDim.x) {
        int r = idx / HD, d = idx % HD, i = i0 + r / group, h = g * group + r % group;
        qs[idx] = i < a.n ? a.q[((size_t)i * a.n_heads + h) * HD + d] : 0.0f;
    }
    int last = min(a.n, i0 + a.bq) - 1;            /* last query of the tile */
    int kv_hi = first + last + 1;                   /* keys any row may see */
    int k_begin = split * a.split_len, k_end = min(kv_hi, k_begin + a.split_len);

    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][DPL];
#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++) {
        m[k] = -INFINITY;
        l[k] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++)
            acc[k][c] = 0.0f;
    }

    float4 k_next[TILE_VECS<HD>], v_next[TILE_VECS<HD>];
    if (k_begin < k_end)
        fetch_tile<HD>(k_next, v_next, kh, vh, k_begin, k_end);
    for (int t0 = k_begin; t0 < k_end; t0 += KEY_TILE) {
        int tn = min(KEY_TILE, k_end - t0);
        __syncthreads(); /* every warp is done with the previous tile */
        stash_tile<HD>(ks, vs, k_next, v_next);
        __syncthreads();
        if (t0 + KEY_TILE < k_end) /* the next tile's loads fly while this one is scored */
            fetch_tile<HD>(k_next, v_next, kh, vh, t0 + KEY_TILE, k_end);
#pragma unroll
        for (int k = 0; k < ROWS_PER_WARP; k++) {
            int r = warp + WARPS * k;
            int i = i0 + r / group;
            if (r >= rows || i >= a.n) /* uniform across the warp */
                continue;
            int key = t0 + lane;
            bool valid = lane < tn && key <= first + i;
            float s = -INFINITY;
            if (valid) {
                const float *qr = qs + r * HD, *kr = ks + lane * (HD + 1);
                float dot = 0.0f;
#pragma unroll 16
                for (int d = 0; d < HD; d++)
                    dot = fmaf(qr[d], kr[d], dot);
                s = dot * a.scale;
            }
            float tmax = s;
            for (int off = 16; off > 0; off >>= 1)
                tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
            if (tmax == -INFINITY)
                continue; /* nothing visible to this row in this tile */
            float m_new = fmaxf(m[k], tmax);
            float corr = __expf(m[k] - m_new);
            float p = valid ? __expf(s - m_new) : 0.0f;
            float psum = p;
            for (int off = 16; off > 0; off >>= 1)
                psum += __shfl_xor_sync(0xffffffffu, psum, off);
            l[k] = l[k] * corr + psum;
#pragma unroll
            for (int c = 0; c < DPL; c++)
                acc[k][c] *= corr;
            for (int jj = 0; jj < tn; jj++) {
                float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
                for (int c = 0; c < DPL; c++)
                    acc[k][c] = fmaf(pj, vs[jj * HD + lane + 32 * c], acc[k][c]);
            }
            m[k] = m_new;
        }
    }

#pragma unroll
    for (int k = 0; k < ROWS_PER_WARP; k++) {
        int r = warp + WARPS * k;
        int i = i0 + r / group, h = g * group + r % group;
        if (r >= rows || i >= a.n)
            continue;
        if (a.splits == 1) {
            float inv = 1.0f / l[k];
#pragma unroll
            for (int c = 0; c < DPL; c++)
                a.out[((size_t)i * a.n_heads + h) * HD + lane + 32 * c] = acc[k][c] * inv;
        } else {
            float *pr = a.partials + (((size_t)split * a.n + i) * a.n_heads + h) * (HD + 2);
#pragma unroll
            for (int c = 0; c < DPL; c++)
                pr[lane + 32 * c] = acc[k][c];
            if (lane == 0) {
                pr[HD] = m[k];
                pr[HD + 1] = l[k];
            }
        }
    }
    if (a.splits > 1)
        attention_merge_if_last<HD, WARPS>(a, i0, g, rows, group);
}

#define MAX_SPLITS 1024 /* bounds the partials: a split is at least ceil(keys / MAX_SPLITS) keys */

/* *done = c->split_done, `count` counters at 0 (attention_merge_if_last leaves them
 * at 0 after each launch; grown ones are zeroed on the stream). */
static int split_counters(cuda_impl *c, size_t count, unsigned int **done)
{
    const size_t bytes = count * sizeof(unsigned int), had = c->split_done_bytes;
    KVZ_TRY(cuda_ensure(c, (void **)&c->split_done, &c->split_done_bytes, bytes, "split-key attention counters"));
    if (c->split_done_bytes != had)
        CUDA_TRY(cudaMemsetAsync(c->split_done, 0, c->split_done_bytes, c->stream));
    *done = c->split_done;
    return KVZ_OK;
}

/* A block's dynamic shared memory: its rows' queries, a key tile (padded) and a value tile. */
static size_t attention_smem(int rows, int hd)
{
    return ((size_t)rows * hd + KEY_TILE * (hd + 1) + KEY_TILE * hd) * sizeof(float);
}

template <int HD>
static int configure(cuda_impl *c)
{
    return cuda_allow_smem(c, attention_kernel<HD>, "attention_kernel", HD, attention_smem(MAX_ROWS, HD),
                           &c->attention_room[cuda_head_slot(HD)]);
}

int cuda_attention_configure(cuda_impl *c)
{
    KVZ_TRY(configure<64>(c));
    KVZ_TRY(configure<96>(c));
    KVZ_TRY(configure<128>(c));
    return cuda_attention_tc_configure(c);
}

template <int HD>
static int launch(cuda_impl *c, attn_args a, dim3 grid, size_t smem)
{
    attention_kernel<HD><<<grid, WARPS * 32, smem, c->stream>>>(a);
    CUDA_LAUNCHED("attention");
    return KVZ_OK;
}

int cuda_attention(kvz_backend *b, float *out, const float *q, const float *k_cache,
                   const float *v_cache, const kvz_attention_params *p, const kvz_score_params *score,
                   float *scores)
{
    cuda_impl *c = cuda_of(b);
    if (p->n <= 0) /* no queries: nothing to launch (a grid of 0 blocks is an error) */
        return KVZ_OK;
    if (score) /* flash attention keeps no probabilities: score in its own two passes */
        KVZ_TRY(cuda_attention_scores(b, scores, q, k_cache, score));
    const int hd = p->head_dim, group = p->n_heads / p->n_kv_heads;
    if ((hd != 64 && hd != 96 && hd != 128) || group > MAX_ROWS)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED,
                          "cuda: attention supports head sizes 64, 96 and 128 and GQA groups up to "
                          "%d (got %d and %d)", MAX_ROWS, hd, group);
    KVZ_TRY(cuda_check_float4_caches(k_cache, v_cache, "attention"));
    attn_args a;
    a.out = out;
    a.q = q;
    a.kc = k_cache;
    a.vc = v_cache;
    a.n = p->n;
    a.pos0 = p->pos0;
    a.n_heads = p->n_heads;
    a.n_kv = p->n_kv_heads;
    a.capacity = p->capacity;
    a.scale = p->scale;
    a.head_base = p->head_base;
    a.head_rows = p->head_rows;
    const int tensor_cores = p->n >= TC_MIN_QUERIES && !c->attention_simt &&
                             cuda_attention_tc_smem(hd) <= c->attention_tc_room[cuda_head_slot(hd)];
    const int key_tile = tensor_cores ? TC_KEY_TILE : KEY_TILE;
    a.bq = (tensor_cores ? TC_ROWS : MAX_ROWS) / group;
    if (a.bq > p->n)
        a.bq = p->n;
    int tiles = ceil_div(p->n, a.bq);
    int kv_max = (p->head_base ? p->max_head_rows : p->pos0) + p->n;
    /* keys over all heads: a loaded cache's heads differ in length */
    int64_t kv_total = p->head_base && p->total_head_rows > 0 ? p->total_head_rows + (int64_t)p->n_kv_heads * p->n
                                                              : (int64_t)kv_max * p->n_kv_heads;
    /* Split the keys when too few blocks would run (decode, short chunks):
     * into pieces of one length for every head, about two blocks' worth per
     * SM over all heads' keys, so that a short head takes fewer blocks, not
     * shorter ones. Sized by the longest head instead, a compressed cache's
     * blocks would be as long as its longest head allows and its shorter heads
     * would leave SMs idle: a decode step would cost the longest head's time. */
    int base = tiles * p->n_kv_heads;
    a.split_len = kv_max;
    if (base < 2 * c->sm_count && kv_max > 4 * key_tile) {
        int64_t len = ((int64_t)tiles * kv_total + 2 * c->sm_count - 1) / (2 * c->sm_count);
        a.split_len = (int)(len < 2 * key_tile ? 2 * key_tile : len < kv_max ? len : kv_max);
    }
    if (a.split_len < ceil_div(kv_max, MAX_SPLITS))
        a.split_len = ceil_div(kv_max, MAX_SPLITS);
    a.split_len = ceil_div(a.split_len, key_tile) * key_tile;
    a.splits = ceil_div(kv_max, a.split_len);
    a.partials = NULL;
    a.split_done = NULL;
    if (a.splits > 1) {
        size_t bytes = (size_t)a.splits * p->n * p->n_heads * (hd + 2) * sizeof(float);
        KVZ_TRY(cuda_ensure(c, (void **)&c->partials, &c->partial_bytes, bytes,
                            "split-key attention partials"));
        a.partials = c->partials;
    }
    dim3 grid(tiles, p->n_kv_heads, a.splits);
    if (a.splits > 1)
        KVZ_TRY(split_counters(c, (size_t)tiles * p->n_kv_heads, &a.split_done));
    if (tensor_cores)
        return cuda_attention_tc_launch(c, &a, hd, grid);
    int rows = a.bq * group;
    size_t smem = attention_smem(rows, hd);
    if (smem > c->attention_room[cuda_head_slot(hd)])
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: attention needs %zu bytes of shared memory, "
                          "the device offers %zu", smem, c->attention_room[cuda_head_slot(hd)]);
    return hd == 64 ? launch<64>(c, a, grid, smem)
           : hd == 96 ? launch<96>(c, a, grid, smem)
                      : launch<128>(c, a, grid, smem);
}
