/*
 * topk.cu — the k best of `count` device scores as a byte mask, by radix
 * select: no sort, a fixed number of passes over the scores.
 *
 *  1. four histogram passes find the k-th largest order key an 8-bit digit at
 *     a time (kernels/order_key.h); after each, one thread picks the digit and
 *     narrows (prefix, still wanted) in device memory, so the host never waits;
 *  2. the scores equal to that key are counted per tile of 4,096 and the
 *     counts scanned (CUB), so each tile knows how many equal scores come
 *     before it;
 *  3. each tile marks its scores above the key, and its equal ones in index
 *     order (warp ballots) while the running count is below what is wanted.
 *
 * Twin of kernels/cpu/topk.c: the same mask, ties to the lower index.
 */
#include "kernels/cuda/cuda_common.cuh"

#include <cub/device/device_scan.cuh>

extern "C" {
#include "kernels/order_key.h"
}

#define TOPK_THREADS 256
#define TOPK_TILE (TOPK_THREADS * 16)

struct topk_state {
    unsigned int prefix, high; /* the key's digits found so far, and their bits */
    unsigned long long want;   /* how many keys with that prefix are still to take */
};

__global__ static void topk_init(topk_state *st, unsigned long long k, unsigned long long *hist)
{
    st->prefix = 0, st->high = 0, st->want = k;
    for (int i = 0; i < 256; i++)
        hist[i] = 0;
}

__global__ static void topk_histogram(const float *s, int64_t count, const topk_state *st, int shift,
                                      unsigned long long *hist)
{
    __shared__ unsigned int h[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        h[i] = 0;
    __syncthreads();
    const unsigned int prefix = st->prefix, high = st->high;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t key = kvz_order_key(s[i]);
        if ((key & high) == prefix)
            atomicAdd(&h[(key >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        if (h[i])
            atomicAdd(&hist[i], (unsigned long long)h[i]);
}

/* One thread: the digit holding the want-th largest key; clears the bins. */
__global__ static void topk_pick(unsigned long long *hist, topk_state *st, int shift)
{
    unsigned long long want = st->want;
    int digit = 255;
    while (digit > 0 && hist[digit] < want)
        want -= hist[digit--];
    st->want = want;
    st->prefix |= (unsigned int)digit << shift;
    st->high |= 0xffu << shift;
    for (int i = 0; i < 256; i++)
        hist[i] = 0;
}

__global__ static void topk_tile_equal(const float *s, int64_t count, const topk_state *st,
                                       unsigned long long *equal)
{
    __shared__ unsigned int n;
    if (threadIdx.x == 0)
        n = 0;
    __syncthreads();
    const int64_t base = (int64_t)blockIdx.x * TOPK_TILE;
    const unsigned int key = st->prefix;
    unsigned int mine = 0;
    for (int j = threadIdx.x; j < TOPK_TILE; j += blockDim.x) {
        int64_t i = base + j;
        mine += i < count && kvz_order_key(s[i]) == key;
    }
    atomicAdd(&n, mine);
    __syncthreads();
    if (threadIdx.x == 0)
        equal[blockIdx.x] = n;
}

/* One round of the marking passes, TOPK_THREADS consecutive scores, one a
 * thread: how many of the round's keys equal to the threshold come before this
 * thread's (warp ballots), and in *round how many the round holds. Every thread
 * of the block calls it. */
__device__ static unsigned int equal_before_in_round(bool equal, unsigned int *round)
{
    __shared__ unsigned int warp_equal[TOPK_THREADS / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const unsigned int ballot = __ballot_sync(0xffffffffu, equal);
    if (lane == 0)
        warp_equal[warp] = __popc(ballot);
    __syncthreads();
    unsigned int before = __popc(ballot & ((1u << lane) - 1u)), total = 0;
    for (int w = 0; w < TOPK_THREADS / 32; w++) {
        before += w < warp ? warp_equal[w] : 0;
        total += warp_equal[w];
    }
    *round = total;
    __syncthreads(); /* warp_equal is rewritten next round */
    return before;
}

__global__ static void __launch_bounds__(TOPK_THREADS)
    topk_mark(const float *s, int64_t count, const topk_state *st, const unsigned long long *before,
              uint8_t *mask)
{
    const unsigned int key = st->prefix;
    const unsigned long long want = st->want;
    const int64_t base = (int64_t)blockIdx.x * TOPK_TILE;
    unsigned long long running = before[blockIdx.x]; /* equal keys before this round, in index order */
    for (int j0 = 0; j0 < TOPK_TILE; j0 += TOPK_THREADS) {
        int64_t i = base + j0 + threadIdx.x;
        uint32_t k = i < count ? kvz_order_key(s[i]) : 0;
        bool equal = i < count && k == key;
        unsigned int round;
        unsigned long long rank = running + equal_before_in_round(equal, &round);
        if (i < count)
            mask[i] = k > key || (equal && rank < want);
        running += round;
    }
}

int cuda_top_k_mask(kvz_backend *b, uint8_t *mask, const float *scores, int64_t count, int64_t k)
{
    cuda_impl *c = cuda_of(b);
    if (count <= 0)
        return KVZ_OK;
    if (k <= 0 || k >= count) {
        CUDA_TRY(cudaMemsetAsync(mask, k > 0, (size_t)count, c->stream));
        return KVZ_OK;
    }
    const int64_t tiles = (count + TOPK_TILE - 1) / TOPK_TILE;
    if (tiles > INT32_MAX)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: top-k over %lld scores", (long long)count);
    size_t scan_bytes = 0;
    CUDA_TRY(cub::DeviceScan::ExclusiveSum(NULL, scan_bytes, (unsigned long long *)NULL,
                                           (unsigned long long *)NULL, (int)tiles, c->stream));
    /* scratch: state | 256 bins | per-tile equal counts | their exclusive sums | CUB's */
    const size_t state_bytes = 256, hist_bytes = 256 * sizeof(unsigned long long),
                 tile_bytes = ((size_t)tiles * sizeof(unsigned long long) + 255) / 256 * 256;
    KVZ_TRY(cuda_ensure(c, &c->topk_scratch, &c->topk_bytes,
                        state_bytes + hist_bytes + 2 * tile_bytes + scan_bytes, "top-k selection scratch"));
    char *at = (char *)c->topk_scratch;
    topk_state *st = (topk_state *)at;
    unsigned long long *hist = (unsigned long long *)(at + state_bytes);
    unsigned long long *equal = (unsigned long long *)(at + state_bytes + hist_bytes);
    unsigned long long *before = (unsigned long long *)(at + state_bytes + hist_bytes + tile_bytes);
    void *scan_tmp = at + state_bytes + hist_bytes + 2 * tile_bytes;

    topk_init<<<1, 1, 0, c->stream>>>(st, (unsigned long long)k, hist);
    CUDA_LAUNCHED("top-k init");
    const int64_t covering = tiles * (TOPK_TILE / TOPK_THREADS), resident = (int64_t)c->sm_count * 8;
    const int hist_blocks = (int)(covering < resident ? covering : resident); /* grid-stride beyond */
    for (int shift = 24; shift >= 0; shift -= 8) {
        topk_histogram<<<hist_blocks, TOPK_THREADS, 0, c->stream>>>(scores, count, st, shift, hist);
        CUDA_LAUNCHED("top-k histogram");
        topk_pick<<<1, 1, 0, c->stream>>>(hist, st, shift);
        CUDA_LAUNCHED("top-k digit");
    }
    topk_tile_equal<<<(int)tiles, TOPK_THREADS, 0, c->stream>>>(scores, count, st, equal);
    CUDA_LAUNCHED("top-k tile counts");
    CUDA_TRY(cub::DeviceScan::ExclusiveSum(scan_tmp, scan_bytes, equal, before, (int)tiles, c->stream));
    topk_mark<<<(int)tiles, TOPK_THREADS, 0, c->stream>>>(scores, count, st, before, mask);
    CUDA_LAUNCHED("top-k mark");
    return KVZ_OK;
}

/* ---- many rows at once: a block selects in each row ------------------------ */

/* The same radix select inside one block: four histogram passes over the row's
 * candidates in shared memory, then a marking pass in index order. */
__global__ static void __launch_bounds__(TOPK_THREADS)
    topk_rows(uint8_t *mask, const float *scores, int32_t n, const int32_t *length, const int32_t *k_of)
{
    __shared__ unsigned int hist[256];
    __shared__ unsigned int prefix_s, high_s, want_s;
    const float *s = scores + (int64_t)blockIdx.x * n;
    uint8_t *m = mask + (int64_t)blockIdx.x * n;
    const int32_t len = length[blockIdx.x], k = k_of[blockIdx.x];
    if (k <= 0 || k >= len) { /* nothing or everything: no select */
        for (int32_t t = threadIdx.x; t < n; t += blockDim.x)
            m[t] = k > 0 && t < len;
        return;
    }
    if (threadIdx.x == 0)
        prefix_s = 0, high_s = 0, want_s = (unsigned int)k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x)
            hist[i] = 0;
        __syncthreads(); /* also publishes the last pick */
        const unsigned int prefix = prefix_s, high = high_s;
        for (int32_t t = threadIdx.x; t < len; t += blockDim.x) {
            uint32_t key = kvz_order_key(s[t]);
            if ((key & high) == prefix)
                atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned int want = want_s;
            int digit = 255;
            while (digit > 0 && hist[digit] < want)
                want -= hist[digit--];
            want_s = want;
            prefix_s = prefix | (unsigned int)digit << shift;
            high_s = high | 0xffu << shift;
        }
        __syncthreads(); /* the bins are read before the next pass clears them */
    }
    const unsigned int key = prefix_s, want = want_s;
    unsigned int running = 0; /* equal keys in earlier rounds */
    for (int32_t t0 = 0; t0 < n; t0 += TOPK_THREADS) {
        const int32_t t = t0 + threadIdx.x;
        const uint32_t mine = t < len ? kvz_order_key(s[t]) : 0;
        const bool equal = t < len && mine == key;
        unsigned int round;
        const unsigned int rank = running + equal_before_in_round(equal, &round);
        if (t < n)
            m[t] = t < len && (mine > key || (equal && rank < want));
        running += round;
    }
}

int cuda_top_k_rows(kvz_backend *b, uint8_t *mask, const float *scores, int32_t rows, int32_t n,
                    const int32_t *length, const int32_t *k)
{
    cuda_impl *c = cuda_of(b);
    if (rows <= 0 || n <= 0)
        return KVZ_OK;
    const size_t bytes = (size_t)rows * sizeof(int32_t);
    KVZ_TRY(cuda_ensure(c, &c->rows_scratch, &c->rows_bytes, 2 * bytes, "per-head selection lengths"));
    int32_t *dev_length = (int32_t *)c->rows_scratch, *dev_k = dev_length + rows;
    /* from pageable memory: the copies have left length and k when these return */
    CUDA_TRY(cudaMemcpyAsync(dev_length, length, bytes, cudaMemcpyHostToDevice, c->stream));
    CUDA_TRY(cudaMemcpyAsync(dev_k, k, bytes, cudaMemcpyHostToDevice, c->stream));
    topk_rows<<<rows, TOPK_THREADS, 0, c->stream>>>(mask, scores, n, dev_length, dev_k);
    CUDA_LAUNCHED("top-k rows");
    return KVZ_OK;
}
