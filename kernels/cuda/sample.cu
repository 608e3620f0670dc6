/*
 * sample.cu — choosing the next token on the device, so a decode step brings
 * back 4 bytes instead of a row of logits. Twin of kernels/cpu/sample.c
 * (semantics: kvz_sample_params in kernels/backend.h).
 *
 * Greedy: one block reduces (value, id) pairs to the largest logit, lowest id
 * first. Top-p: the same block finds the maximum, a grid computes the
 * probability numerators, the block sums them in double, tokens under the
 * minimum share get key -1, CUB's stable radix sort orders (key, id) pairs by
 * key descending (equal keys keep ascending ids, as the CPU's comparison
 * does), a device scan sums the sorted candidates' masses in double, and one
 * thread finds by binary search where they reach top_p and where the draw
 * falls (walking the candidates on one thread took a step per candidate: tens
 * of thousands over a large vocabulary at top_p near 1). The scan's order of
 * additions is not the CPU's: a draw within a few ulps of a boundary may fall
 * on the other side.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/order_key.h"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <math.h>

#define SAMPLE_THREADS 1024

struct sample_state {
    int32_t best;
    float max;
    double sum;
    int32_t token;
};

/* Logits ranked as the CPU's argmax ranks them (order_key.h: NaN lowest) */
__device__ static inline void argmax_take(float v, int32_t i, int32_t n, float &best, int32_t &at)
{
    if (at == n || kvz_order_key(v) > kvz_order_key(best)) { /* a thread's ids rise: the first of equal ones stays */
        best = v;
        at = i;
    }
}

__device__ static inline void argmax_take4(float4 v, int32_t i, int32_t n, float &best, int32_t &at)
{
    argmax_take(v.x, i, n, best, at);
    argmax_take(v.y, i + 1, n, best, at);
    argmax_take(v.z, i + 2, n, best, at);
    argmax_take(v.w, i + 3, n, best, at);
}

/* The largest logit and its id (the first of equal ones): one block. The row
 * (200-500 KB for a decode step) is read as float4s, four in flight per
 * thread: with one scalar load in flight per thread, one block's reading is
 * bound by the memory's latency. Each thread takes the floats before the first
 * 16-byte boundary, then its float4s, then the floats after the last, so its
 * ids rise. */
__global__ void __launch_bounds__(SAMPLE_THREADS) sample_argmax(const float *x, int32_t n, sample_state *st)
{
    __shared__ float sv[SAMPLE_THREADS];
    __shared__ int32_t si[SAMPLE_THREADS];
    const int32_t step = blockDim.x;
    float best = -INFINITY;
    int32_t at = n; /* none yet */
    const int32_t misaligned = (int32_t)(((uintptr_t)x / sizeof(float)) % 4);
    const int32_t head = misaligned ? (4 - misaligned < n ? 4 - misaligned : n) : 0;
    if ((int32_t)threadIdx.x < head)
        argmax_take(x[threadIdx.x], threadIdx.x, n, best, at);
    const float4 *v = (const float4 *)(x + head);
    const int32_t n4 = (n - head) / 4;
    int32_t i = threadIdx.x;
    for (; i + 3 * step < n4; i += 4 * step) {
        float4 a = v[i], b = v[i + step], c = v[i + 2 * step], d = v[i + 3 * step];
        argmax_take4(a, head + 4 * i, n, best, at);
        argmax_take4(b, head + 4 * (i + step), n, best, at);
        argmax_take4(c, head + 4 * (i + 2 * step), n, best, at);
        argmax_take4(d, head + 4 * (i + 3 * step), n, best, at);
    }
    for (; i < n4; i += step)
        argmax_take4(v[i], head + 4 * i, n, best, at);
    for (int32_t j = head + 4 * n4 + threadIdx.x; j < n; j += step)
        argmax_take(x[j], j, n, best, at);
    sv[threadIdx.x] = best;
    si[threadIdx.x] = at;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            float ov = sv[threadIdx.x + half];
            int32_t oi = si[threadIdx.x + half];
            int32_t mi = si[threadIdx.x];
            uint32_t ok = kvz_order_key(ov), mk = kvz_order_key(sv[threadIdx.x]);
            if (oi < n && (mi == n || ok > mk || (ok == mk && oi < mi))) {
                sv[threadIdx.x] = ov;
                si[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        st->best = si[0];
        st->max = sv[0];
        st->token = si[0];
    }
}

__global__ void sample_numerators(const float *x, int32_t n, float temperature, const sample_state *st, float *probs,
                                  int32_t *ids)
{
    int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        probs[i] = expf((x[i] - st->max) / temperature);
        ids[i] = i;
    }
}

/* The sum of the numerators in double, then keys: the probability, or -1 under the minimum share. */
__global__ void __launch_bounds__(SAMPLE_THREADS) sample_sum_and_keys(float *probs, int32_t n, sample_state *st)
{
    __shared__ double part[SAMPLE_THREADS];
    double s = 0;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x)
        s += probs[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    double sum = part[0];
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x)
        if (!(probs[i] / sum > KVZ_SAMPLE_MIN_SHARE))
            probs[i] = -1.0f;
    if (threadIdx.x == 0)
        st->sum = sum;
}

/* The sorted keys as masses to add up: a candidate's numerator, 0 past them (key -1). */
__global__ void sample_masses(const float *sorted, int32_t n, double *mass)
{
    int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        mass[i] = sorted[i] >= 0.0f ? (double)sorted[i] : 0.0;
}

/* Cut the sorted candidates at top_p and find the draw's token, as the CPU
 * does (kvz_cpu_sample), by binary search over the masses' running sums
 * (`before`: the sum of the candidates before each): one thread. */
__global__ void sample_pick(const float *sorted, const int32_t *ids, const double *before, int32_t n, float top_p,
                            double draw, sample_state *st)
{
    int32_t lo = 0, hi = n; /* the candidates: the leading keys that are not -1 */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] >= 0.0f)
            lo = mid + 1;
        else
            hi = mid;
    }
    const int32_t m = lo;
    lo = 0, hi = m; /* the first candidate through which the mass reaches top_p */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if ((before[mid] + (double)sorted[mid]) / st->sum >= top_p)
            hi = mid;
        else
            lo = mid + 1;
    }
    const int32_t k = lo < m ? lo + 1 : m; /* the candidates kept */
    if (k == 0) { /* none: a sum that is not a number */
        st->token = st->best;
        return;
    }
    const double r = draw * (before[k - 1] + (double)sorted[k - 1]);
    lo = 0, hi = k - 1; /* the first whose running sum passes the draw; else the last kept */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (r < before[mid] + (double)sorted[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    st->token = ids[lo];
}

int cuda_sample(kvz_backend *b, int32_t *token, const float *logits, int32_t n, const kvz_sample_params *p)
{
    cuda_impl *c = cuda_of(b);
    if (n <= 0)
        return kvz_errorf(KVZ_ERR_ARG, "cuda: sampling from %d logits", n);
    size_t sort_bytes = 0, scan_bytes = 0;
    if (p->temperature > 0) {
        CUDA_TRY(cub::DeviceRadixSort::SortPairsDescending(NULL, sort_bytes, (const float *)NULL, (float *)NULL,
                                                           (const int32_t *)NULL, (int32_t *)NULL, n, 0, 32,
                                                           c->stream));
        CUDA_TRY(cub::DeviceScan::ExclusiveSum(NULL, scan_bytes, (const double *)NULL, (double *)NULL, n,
                                               c->stream));
    }
    /* scratch: state | probs | sorted probs | ids | sorted ids | masses | their sums before | CUB's (the
     * sort's, then the scan's) */
    const size_t state_bytes = 256, row = ((size_t)n * 4 + 255) / 256 * 256, row8 = 2 * row;
    const size_t cub_bytes = sort_bytes > scan_bytes ? sort_bytes : scan_bytes;
    KVZ_TRY(cuda_ensure(c, &c->sample_scratch, &c->sample_bytes,
                        state_bytes + (p->temperature > 0 ? 4 * row + 2 * row8 + cub_bytes : 0), "sampling scratch"));
    char *at = (char *)c->sample_scratch;
    sample_state *st = (sample_state *)at;
    sample_argmax<<<1, SAMPLE_THREADS, 0, c->stream>>>(logits, n, st);
    CUDA_LAUNCHED("sampling (argmax)");
    if (p->temperature > 0) {
        float *probs = (float *)(at + state_bytes), *sorted = (float *)(at + state_bytes + row);
        int32_t *ids = (int32_t *)(at + state_bytes + 2 * row), *sorted_ids = (int32_t *)(at + state_bytes + 3 * row);
        double *mass = (double *)(at + state_bytes + 4 * row), *before = (double *)(at + state_bytes + 4 * row + row8);
        void *cub_tmp = at + state_bytes + 4 * row + 2 * row8;
        sample_numerators<<<ceil_div(n, 256), 256, 0, c->stream>>>(logits, n, p->temperature, st, probs, ids);
        CUDA_LAUNCHED("sampling (probabilities)");
        sample_sum_and_keys<<<1, SAMPLE_THREADS, 0, c->stream>>>(probs, n, st);
        CUDA_LAUNCHED("sampling (sum)");
        CUDA_TRY(cub::DeviceRadixSort::SortPairsDescending(cub_tmp, sort_bytes, probs, sorted, ids, sorted_ids, n,
                                                           0, 32, c->stream));
        sample_masses<<<ceil_div(n, 256), 256, 0, c->stream>>>(sorted, n, mass);
        CUDA_LAUNCHED("sampling (masses)");
        CUDA_TRY(cub::DeviceScan::ExclusiveSum(cub_tmp, scan_bytes, (const double *)mass, before, n, c->stream));
        sample_pick<<<1, 1, 0, c->stream>>>(sorted, sorted_ids, before, n, p->top_p, p->draw, st);
        CUDA_LAUNCHED("sampling (pick)");
    }
    if (!c->sample_token)
        KVZ_TRY(cuda_malloc_host((void **)&c->sample_token, sizeof *c->sample_token, "the sampled token"));
    CUDA_TRY(cudaMemcpyAsync(c->sample_token, &st->token, sizeof *token, cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    *token = *c->sample_token;
    return KVZ_OK;
}
