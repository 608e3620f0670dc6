/*
 * scores.cu — attention probabilities reduced onto cached keys, on the device,
 * in two passes that never hold more than a row of scores: first each
 * (query, head) row's softmax statistics (max, sum) over the key ranges, then
 * each key's probabilities recomputed and reduced over queries and the GQA
 * group. Twin of kernels/cpu/scores.c.
 */
#include "kernels/cuda/cuda_common.cuh"

#include <math.h>

struct score_args {
    float *scores;
    float *stats; /* (n, n_heads, 2): max, sum */
    const float *q, *kc;
    int n, q_pos0, n_heads, n_kv, hd, capacity, n_ranges, reduce;
    int begin[KVZ_SCORE_MAX_RANGES], end[KVZ_SCORE_MAX_RANGES];
    float scale;
};

__device__ static float dot_row(const float *a, const float *b, int hd)
{
    float s = 0.0f;
    for (int d = 0; d < hd; d++)
        s = fmaf(a[d], b[d], s);
    return s;
}

/* Pass 1: a warp per (query, head); lanes stride over the visible keys. */
__global__ static void row_stats_kernel(score_args a)
{
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= a.n * a.n_heads)
        return;
    int i = warp / a.n_heads, h = warp % a.n_heads, g = h / (a.n_heads / a.n_kv);
    const float *qr = a.q + ((size_t)i * a.n_heads + h) * a.hd;
    const float *kh = a.kc + (size_t)g * a.capacity * a.hd;
    int last = a.q_pos0 + i;
    float m = -INFINITY, l = 0.0f;
    for (int r = 0; r < a.n_ranges; r++)
        for (int j = a.begin[r] + lane; j < a.end[r] && j <= last; j += 32) {
            float s = dot_row(qr, kh + (size_t)j * a.hd, a.hd) * a.scale;
            float mn = fmaxf(m, s);
            l = l * __expf(m - mn) + __expf(s - mn);
            m = mn;
        }
    for (int off = 16; off > 0; off >>= 1) { /* merge (m, l) across lanes */
        float mo = __shfl_xor_sync(0xffffffffu, m, off), lo = __shfl_xor_sync(0xffffffffu, l, off);
        float mn = fmaxf(m, mo);
        l = (m == -INFINITY ? 0.0f : l * __expf(m - mn)) + (mo == -INFINITY ? 0.0f : lo * __expf(mo - mn));
        m = mn;
    }
    if (lane == 0) {
        a.stats[2 * (size_t)warp] = m;
        a.stats[2 * (size_t)warp + 1] = l;
    }
}

#define QUERY_CHUNK 64

/* Pass 2: a thread per (key of the support, KV group, chunk of queries). */
__global__ static void column_reduce_kernel(score_args a, int support)
{
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    int g = blockIdx.y, chunk = blockIdx.z;
    if (idx >= support)
        return;
    int j = -1;
    for (int r = 0, off = 0; r < a.n_ranges; off += a.end[r] - a.begin[r], r++)
        if (idx < off + a.end[r] - a.begin[r]) {
            j = a.begin[r] + idx - off;
            break;
        }
    int group = a.n_heads / a.n_kv;
    const float *kj = a.kc + ((size_t)g * a.capacity + j) * a.hd;
    float acc = 0.0f;
    int i_end = min(a.n, (chunk + 1) * QUERY_CHUNK);
    for (int i = max(chunk * QUERY_CHUNK, j - a.q_pos0); i < i_end; i++) /* causal: j <= q_pos0 + i */
        for (int hh = 0; hh < group; hh++) {
            int h = g * group + hh;
            const float *st = a.stats + 2 * ((size_t)i * a.n_heads + h);
            float s = dot_row(a.q + ((size_t)i * a.n_heads + h) * a.hd, kj, a.hd) * a.scale;
            float p = __expf(s - st[0]) / st[1];
            acc = a.reduce == KVZ_REDUCE_MAX ? fmaxf(acc, p) : acc + p;
        }
    float *o = a.scores + (size_t)g * a.capacity + j;
    if (a.reduce == KVZ_REDUCE_MAX) /* probabilities are >= 0: int order is float order */
        atomicMax((int *)o, __float_as_int(acc));
    else
        atomicAdd(o, acc);
}

int cuda_attention_scores(kvz_backend *b, float *scores, const float *q, const float *k_cache,
                          const kvz_score_params *p)
{
    cuda_impl *c = cuda_of(b);
    score_args a;
    a.scores = scores;
    a.q = q;
    a.kc = k_cache;
    a.n = p->n, a.q_pos0 = p->q_pos0, a.n_heads = p->n_heads, a.n_kv = p->n_kv_heads;
    a.hd = p->head_dim, a.capacity = p->capacity, a.n_ranges = p->n_ranges, a.reduce = p->reduce;
    a.scale = p->scale;
    int support = 0;
    for (int r = 0; r < p->n_ranges; r++) {
        a.begin[r] = p->range_begin[r];
        a.end[r] = p->range_end[r];
        support += p->range_end[r] - p->range_begin[r];
    }
    if (support <= 0 || p->n <= 0)
        return KVZ_OK;
    size_t stats_bytes = (size_t)p->n * p->n_heads * 2 * sizeof(float);
    KVZ_TRY(cuda_ensure((void **)&c->partials, &c->partial_bytes, stats_bytes));
    a.stats = c->partials;
    int rows = p->n * p->n_heads;
    row_stats_kernel<<<ceil_div((int64_t)rows * 32, 256), 256, 0, c->stream>>>(a);
    CUDA_LAUNCHED("attention scores (row statistics)");
    dim3 grid(ceil_div(support, 128), p->n_kv_heads, ceil_div(p->n, QUERY_CHUNK));
    column_reduce_kernel<<<grid, 128, 0, c->stream>>>(a, support);
    CUDA_LAUNCHED("attention scores (column reduction)");
    return KVZ_OK;
}
