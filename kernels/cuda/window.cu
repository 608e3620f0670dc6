/*
 * window.cu — what the window methods do to scores before choosing: SnapKV's
 * max-pooling along the document and ChunkKV's chunk sums.
 *
 * Twin of kernels/cpu/window.c, equal bit for bit: a max is exact, and each
 * chunk's sum is taken by one thread in the CPU's order (row by row, columns
 * in order), which also keeps the chunks chosen from it the same.
 */
#include "kernels/cuda/cuda_common.cuh"

#define WINDOW_THREADS 256

__global__ static void max_pool_rows(float *out, const float *in, int32_t rows, int32_t n, int64_t stride,
                                     int32_t radius)
{
    const int32_t t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n)
        return;
    const int32_t j0 = t - radius < 0 ? 0 : t - radius, j1 = t + radius < n - 1 ? t + radius : n - 1;
    for (int32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float *s = in + (int64_t)r * stride;
        float best = s[t];
        for (int32_t j = j0; j <= j1; j++)
            best = s[j] > best ? s[j] : best;
        out[(int64_t)r * n + t] = best;
    }
}

/* One thread per chunk: its sum in the CPU twin's order. */
__global__ static void chunk_sum(float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk,
                                 int32_t n_chunks)
{
    const int32_t c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n_chunks)
        return;
    const int32_t t0 = c * chunk, t1 = t0 + chunk < n ? t0 + chunk : n;
    float sum = 0.0f;
    for (int32_t r = 0; r < rows; r++)
        for (int32_t t = t0; t < t1; t++)
            sum = __fadd_rn(sum, scores[(int64_t)r * n + t]); /* never fused or reordered */
    out[c] = sum;
}

int cuda_max_pool(kvz_backend *b, float *out, const float *in, int32_t rows, int32_t n, int64_t stride,
                  int32_t kernel)
{
    if (rows <= 0 || n <= 0)
        return KVZ_OK;
    dim3 grid(ceil_div(n, WINDOW_THREADS), rows < 65535 ? rows : 65535); /* rows beyond: a stride loop */
    max_pool_rows<<<grid, WINDOW_THREADS, 0, cuda_of(b)->stream>>>(out, in, rows, n, stride, kernel / 2);
    CUDA_LAUNCHED("max-pool");
    return KVZ_OK;
}

int cuda_chunk_sums(kvz_backend *b, float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk)
{
    if (n <= 0 || chunk <= 0)
        return KVZ_OK;
    const int32_t n_chunks = (int32_t)(((int64_t)n + chunk - 1) / chunk);
    chunk_sum<<<ceil_div(n_chunks, WINDOW_THREADS), WINDOW_THREADS, 0, cuda_of(b)->stream>>>(out, scores, rows, n,
                                                                                          chunk, n_chunks);
    CUDA_LAUNCHED("chunk sums");
    return KVZ_OK;
}
