/*
 * norms.cu — key norms, the score of the knorm baseline.
 *
 * Twin of kernels/cpu/norms.c, equal bit for bit: one thread sums one key's
 * squares in f64 in index order with unfused multiplies and adds, as the CPU
 * does, and the root is correctly rounded on both.
 */
#include "kernels/cuda/cuda_common.cuh"

#define NORM_THREADS 128

__global__ static void key_norm(float *out, const float *keys, int32_t rows, int32_t n, int64_t stride,
                                int32_t head_dim)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)rows * n)
        return;
    const int64_t r = i / n, t = i % n;
    const float *k = keys + r * stride + t * head_dim;
    double ss = 0;
    for (int32_t e = 0; e < head_dim; e++)
        ss = __dadd_rn(ss, __dmul_rn((double)k[e], (double)k[e]));
    out[i] = (float)sqrt(ss);
}

int cuda_key_norms(kvz_backend *b, float *out, const float *keys, int32_t rows, int32_t n, int64_t stride,
                   int32_t head_dim)
{
    const int64_t count = (int64_t)rows * n;
    if (count <= 0)
        return KVZ_OK;
    if (count / NORM_THREADS >= INT32_MAX)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: norms of %lld keys at once", (long long)count);
    key_norm<<<ceil_div(count, NORM_THREADS), NORM_THREADS, 0, cuda_of(b)->stream>>>(out, keys, rows, n, stride,
                                                                                   head_dim);
    CUDA_LAUNCHED("key norms");
    return KVZ_OK;
}
