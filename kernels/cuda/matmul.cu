/*
 * matmul.cu — out (n, rows) = x (n, cols) · Wᵀ with cuBLAS: f16 weights and
 * f16 activations, f32 accumulation and output. Twin of kernels/cpu/matmul.c.
 * matmul converts its input to f16 in a launch of its own; norm_matmul_many
 * and swiglu_matmul have the norm's or SwiGLU's launch write it (one launch
 * for the input of q, k and v, one for gate and up, none for down).
 */
#include "kernels/cuda/cuda_common.cuh"

extern "C" {
#include "kernels/ggml_types.h"
}

__global__ static void to_half_kernel(__half *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __float2half(src[i]);
}

/* c->x_half, the f16 activations the GEMMs read, for `elems` of them. */
static int half_input(cuda_impl *c, int64_t elems)
{
    return cuda_ensure(c, (void **)&c->x_half, &c->x_half_bytes, (size_t)elems * sizeof(__half),
                       "f16 activations");
}

/* out (n, w.rows) = c->x_half (n, w.cols) · wᵀ, or += when accumulate. */
static int gemm(cuda_impl *c, float *out, const kvz_weight *w, int32_t n, int accumulate)
{
    if (w->type != KVZ_GGML_F16)
        return kvz_errorf(KVZ_ERR_INTERNAL, "cuda: matmul expects f16 weights");
    /* row-major out (n, rows) is column-major (rows, n) = Wᵀ-view · x-view */
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t st = cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n,
                                     (int)w->cols, &alpha, w->data, CUDA_R_16F, (int)w->cols,
                                     c->x_half, CUDA_R_16F, (int)w->cols, &beta, out, CUDA_R_32F,
                                     (int)w->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: cublasGemmEx (%lld x %lld, n %d) failed: %d",
                          (long long)w->rows, (long long)w->cols, n, (int)st);
    return KVZ_OK;
}

int cuda_matmul(kvz_backend *b, float *out, const float *x, const kvz_weight *w, int32_t n,
                int accumulate)
{
    cuda_impl *c = cuda_of(b);
    const int64_t elems = (int64_t)n * w->cols;
    KVZ_TRY(half_input(c, elems));
    to_half_kernel<<<ceil_div(elems, 256), 256, 0, c->stream>>>(c->x_half, x, elems);
    CUDA_LAUNCHED("matmul input conversion");
    return gemm(c, out, w, n, accumulate);
}

int cuda_norm_matmul_many(kvz_backend *b, int32_t count, float *const *out, float *h, const float *x,
                          const float *norm, float eps, const kvz_weight *const *w, int32_t n)
{
    cuda_impl *c = cuda_of(b);
    if (count <= 0)
        return KVZ_OK;
    KVZ_TRY(kvz_weights_same_cols(w, count));
    KVZ_TRY(half_input(c, (int64_t)n * w[0]->cols));
    KVZ_TRY(cuda_rmsnorm_f16(c, h, c->x_half, x, norm, n, (int32_t)w[0]->cols, eps));
    for (int32_t i = 0; i < count; i++)
        KVZ_TRY(gemm(c, out[i], w[i], n, 0));
    return KVZ_OK;
}

int cuda_swiglu_matmul(kvz_backend *b, float *out, float *gate, const float *up, const kvz_weight *w, int32_t n,
                       int accumulate)
{
    cuda_impl *c = cuda_of(b);
    const int64_t elems = (int64_t)n * w->cols;
    KVZ_TRY(half_input(c, elems));
    KVZ_TRY(cuda_swiglu_f16(c, gate, c->x_half, up, elems));
    return gemm(c, out, w, n, accumulate);
}
