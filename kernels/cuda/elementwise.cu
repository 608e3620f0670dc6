/*
 * elementwise.cu — embedding gather, row gather, RMSNorm and SwiGLU on the
 * device. Twin of kernels/cpu/elementwise.c, whose bias add and KV-cache
 * append are part of rope.cu's rope_kv_append here. RMSNorm and SwiGLU can
 * also write their output in f16, for the cuBLAS products that read it
 * (matmul.cu).
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/row_ops.cuh"
#include "kernels/cuda/half_range.cuh"

extern "C" {
#include "kernels/ggml_types.h"
}

__global__ static void embed_kernel(float *out, const __half *table, const int32_t *tokens,
                                    int64_t cols)
{
    const __half *row = table + (int64_t)tokens[blockIdx.x] * cols;
    float *o = out + (int64_t)blockIdx.x * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        o[c] = __half2float(row[c]);
}

int cuda_embed(kvz_backend *b, float *out, const kvz_weight *table, const int32_t *tokens, int32_t n)
{
    if (table->type != KVZ_GGML_F16)
        return kvz_errorf(KVZ_ERR_INTERNAL, "cuda: embedding table must be f16");
    embed_kernel<<<n, 256, 0, cuda_of(b)->stream>>>(out, (const __half *)table->data, tokens, table->cols);
    CUDA_LAUNCHED("embed");
    return KVZ_OK;
}

__global__ static void gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int32_t width)
{
    const float *row = src + (int64_t)idx[blockIdx.x] * width;
    float *o = dst + (int64_t)blockIdx.x * width;
    for (int32_t c = threadIdx.x; c < width; c += blockDim.x)
        o[c] = row[c];
}

int cuda_gather_rows(kvz_backend *b, float *dst, const float *src, const int32_t *idx, int32_t count,
                     int32_t width)
{
    if (count <= 0)
        return KVZ_OK;
    gather_rows_kernel<<<count, 128, 0, cuda_of(b)->stream>>>(dst, src, idx, width);
    CUDA_LAUNCHED("gather rows");
    return KVZ_OK;
}

/* One block per row; the sum of squares reduces through shared memory. The
 * row goes out in f32 and, when out_half is given, in f16 too: the input of
 * the cuBLAS products that follow. */
__global__ static void rmsnorm_kernel(float *out, __half *out_half, const float *x, const float *w, int32_t dim,
                                      float eps)
{
    __shared__ float partial[32];
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *orow = out + (int64_t)blockIdx.x * dim;
    __half *hrow = out_half ? out_half + (int64_t)blockIdx.x * dim : NULL;
    const float inv = block_inv_rms(xr, dim, eps, partial);
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float y = rms_scaled(xr[j], inv, w[j]);
        orow[j] = y;
        if (hrow)
            hrow[j] = kvz_half_sat(y);
    }
}

int cuda_rmsnorm_f16(cuda_impl *c, float *out, __half *out_half, const float *x, const float *weight, int32_t n,
                     int32_t dim, float eps)
{
    rmsnorm_kernel<<<n, 256, 0, c->stream>>>(out, out_half, x, weight, dim, eps);
    CUDA_LAUNCHED("rmsnorm");
    return KVZ_OK;
}

__global__ static void swiglu_kernel(float *gate, __half *gate_half, const float *up, int64_t count)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        float y = swiglu_value(gate[i], up[i]);
        gate[i] = y;
        if (gate_half)
            gate_half[i] = kvz_half_sat(y);
    }
}

int cuda_swiglu_f16(cuda_impl *c, float *gate, __half *gate_half, const float *up, int64_t count)
{
    swiglu_kernel<<<ceil_div(count, 256), 256, 0, c->stream>>>(gate, gate_half, up, count);
    CUDA_LAUNCHED("swiglu");
    return KVZ_OK;
}
