/*
 * matmul.cu — out (n, rows) = x (n, cols) · Wᵀ, f16 weights, f32 accumulation
 * and output. Twin of kernels/cpu/matmul.c.
 *
 * A product of few rows (a decode step: n = 1) streams the weights once, so it
 * is bound by their bandwidth: its own kernel (gemv_kernel) reads them 16 bytes
 * a lane with many loads in flight and the f32 input as it is, with no
 * conversion, and takes the products of one input by up to 3 weights (q, k
 * and v) in one launch. Where the weights are small (SmolLM2), it also
 * applies the RMSNorm or SwiGLU before the product to its input as it reads
 * it, so a layer's decode step saves those launches too. Larger ones go to
 * cuBLAS with f16 activations:
 * matmul converts its input in a launch of its own; norm_matmul_many and
 * swiglu_matmul have the norm's or SwiGLU's launch write it (one launch for the
 * input of q, k and v, one for gate and up, none for down).
 * KVZ_CUDA_GEMV=0 sends every product to cuBLAS, for comparison.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/row_ops.cuh"
#include "kernels/cuda/half_range.cuh"

extern "C" {
#include "kernels/ggml_types.h"
}

/* Input rows the own kernel takes; more go to cuBLAS. Each lane reads 32
 * bytes of input (from L1) per 16 of weights and input row: with more rows
 * than this, L1 rather than memory would bound it. */
#define GEMV_MAX_ROWS 4
#define GEMV_WARPS 8    /* weight rows per block: one a warp */
#define GEMV_VEC 8      /* halves a lane reads at once (16 bytes) */

/* Eight halves: one 16-byte load. */
struct __align__(16) half8 {
    __half h[GEMV_VEC];
};

/* Up to this many products of one input, each by its own weight, in one
 * launch: q, k and v; gate and up. */
#define GEMV_MAX_WEIGHTS 3

/* The products of one launch: weight k (rows[k] rows) into out[k], by the
 * blocks from first_block[k] to the next product's first (or to `blocks`). */
struct gemv_batch {
    float *out[GEMV_MAX_WEIGHTS];
    const __half *w[GEMV_MAX_WEIGHTS];
    int64_t rows[GEMV_MAX_WEIGHTS];
    int64_t first_block[GEMV_MAX_WEIGHTS];
    int64_t blocks;
};

/* Element k of a 3-array, chosen without an index (a dynamic index into a
 * kernel's parameters would copy them to local memory). */
template <typename T>
__device__ inline T pick(const T (&a)[GEMV_MAX_WEIGHTS], int k)
{
    return k == 0 ? a[0] : k == 1 ? a[1] : a[2];
}

/* What the product kernel reads as its input: the rows x as they are, or
 * RMSNorm of x (aux: the norm's weights; block 0 also writes the normalised
 * rows to `normalised`), or SwiGLU of gate x and up aux. */
enum gemv_input_kind { GEMV_PLAIN, GEMV_RMSNORM, GEMV_SWIGLU };
struct gemv_input {
    const float *x, *aux;
    float *normalised;
    float eps;
};

/* The input's 8 floats of row i at columns c.. (inv: row i's RMSNorm scale). */
template <int KIND>
__device__ inline void gemv_input8(const gemv_input &in, int i, int32_t c, int32_t cols, float inv,
                                   float v[GEMV_VEC])
{
    const float *xr = in.x + (size_t)i * cols + c;
    const float4 a = *(const float4 *)xr, b = *(const float4 *)(xr + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    if (KIND == GEMV_PLAIN)
        return;
    const float *ar = KIND == GEMV_RMSNORM ? in.aux + c : in.aux + (size_t)i * cols + c;
    const float4 p = *(const float4 *)ar, q = *(const float4 *)(ar + 4);
    const float u[GEMV_VEC] = {p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w};
#pragma unroll
    for (int e = 0; e < GEMV_VEC; e++)
        v[e] = KIND == GEMV_RMSNORM ? rms_scaled(v[e], inv, u[e]) : swiglu_value(v[e], u[e]);
}

/* Warp v of block b works for the product whose blocks hold b: it makes
 * out[i][row] for that product's row = (b - its first block) * GEMV_WARPS + v
 * and every input row i < N. Its lanes walk the weight row 8 halves at a
 * time, each with the input's 8 floats at the same columns, and the warp
 * sums the lanes. With RMSNorm, each block first finds the N rows' scales
 * (the rows are short next to the block's weights; see GEMV_FUSE_MAX_BYTES). */
template <int N, int KIND>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(gemv_batch p, gemv_input in, int32_t cols, int accumulate)
{
    float inv[N];
#pragma unroll
    for (int i = 0; i < N; i++)
        inv[i] = 1.0f;
    if (KIND == GEMV_RMSNORM) {
        __shared__ float partial[32];
#pragma unroll
        for (int i = 0; i < N; i++)
            inv[i] = block_inv_rms(in.x + (size_t)i * cols, cols, in.eps, partial);
        if (blockIdx.x == 0)
            for (int64_t j = threadIdx.x; j < (int64_t)N * cols; j += blockDim.x) {
                const int i = (int)(j / cols);
                float s = inv[0];
#pragma unroll
                for (int r = 1; r < N; r++)
                    s = i == r ? inv[r] : s;
                in.normalised[j] = rms_scaled(in.x[j], s, in.aux[j % cols]);
            }
    }
    const int64_t block = blockIdx.x;
    const int k = block >= p.first_block[2] ? 2 : block >= p.first_block[1] ? 1 : 0;
    const int64_t rows = pick(p.rows, k);
    const int64_t row = (block - pick(p.first_block, k)) * GEMV_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) /* the whole warp */
        return;
    const __half *wr = pick(p.w, k) + row * cols;
    float acc[N];
#pragma unroll
    for (int i = 0; i < N; i++)
        acc[i] = 0.0f;
#pragma unroll 4
    for (int32_t c = lane * GEMV_VEC; c < cols; c += 32 * GEMV_VEC) {
        half8 wv = *(const half8 *)(wr + c);
        float wf[GEMV_VEC];
#pragma unroll
        for (int e = 0; e < GEMV_VEC; e++)
            wf[e] = __half2float(wv.h[e]);
#pragma unroll
        for (int i = 0; i < N; i++) {
            float v[GEMV_VEC];
            gemv_input8<KIND>(in, i, c, cols, inv[i], v);
            float s = acc[i];
#pragma unroll
            for (int e = 0; e < GEMV_VEC; e++)
                s = fmaf(wf[e], v[e], s);
            acc[i] = s;
        }
    }
#pragma unroll
    for (int i = 0; i < N; i++)
        for (int off = 16; off > 0; off >>= 1)
            acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
    if (lane == 0) {
        float *const out = pick(p.out, k);
#pragma unroll
        for (int i = 0; i < N; i++) {
            float *o = out + (size_t)i * rows + row;
            *o = accumulate ? *o + acc[i] : acc[i];
        }
    }
}

/* Whether out = x · wᵀ goes to gemv_kernel: few input rows, and the 16-byte
 * loads it makes aligned. */
static int gemv_takes(const cuda_impl *c, const float *x, const kvz_weight *w, int32_t n)
{
    return c->gemv && n >= 1 && n <= GEMV_MAX_ROWS && w->cols % GEMV_VEC == 0 &&
           ((uintptr_t)x | (uintptr_t)w->data) % 16 == 0;
}

/* One launch's products apply RMSNorm or SwiGLU to their input as they read
 * it, instead of after a launch of its own, when its weights total at most
 * this. Each block then also reads the input rows and the norm's weights (or
 * up): half again the bytes of its 8 weight rows, from L2. Against the launch
 * saved (some microseconds), that pays while the weights are small (SmolLM2's
 * q/k/v: 1.1 MB, gate/up: 3.5 MB, down: 1.7 MB), not where a product streams
 * them at full bandwidth for longer than a launch takes (Llama-3-8B's q/k/v:
 * 50 MB). */
#define GEMV_FUSE_MAX_BYTES ((size_t)8 << 20)

/* Whether the products of x by w[0 .. count) (each of which gemv_takes) go to
 * one launch of gemv_kernel that reads aux too (the norm's weights or up). */
static int gemv_fuses(const float *x, const float *aux, const kvz_weight *const *w, int32_t count)
{
    size_t bytes = 0;
    for (int32_t i = 0; i < count; i++)
        bytes += (size_t)w[i]->rows * (size_t)w[i]->cols * sizeof(__half);
    return count <= GEMV_MAX_WEIGHTS && bytes <= GEMV_FUSE_MAX_BYTES && ((uintptr_t)x | (uintptr_t)aux) % 16 == 0;
}

template <int N>
static void gemv_launch(cuda_impl *c, gemv_input_kind kind, const gemv_batch &p, const gemv_input &in,
                        int32_t cols, int accumulate)
{
    const int64_t blocks = p.blocks;
    if (kind == GEMV_RMSNORM)
        gemv_kernel<N, GEMV_RMSNORM><<<blocks, GEMV_WARPS * 32, 0, c->stream>>>(p, in, cols, accumulate);
    else if (kind == GEMV_SWIGLU)
        gemv_kernel<N, GEMV_SWIGLU><<<blocks, GEMV_WARPS * 32, 0, c->stream>>>(p, in, cols, accumulate);
    else
        gemv_kernel<N, GEMV_PLAIN><<<blocks, GEMV_WARPS * 32, 0, c->stream>>>(p, in, cols, accumulate);
}

/* out[k] (n, w[k].rows) = input (n, cols) · w[k]ᵀ (or += when accumulate)
 * for k < count, GEMV_MAX_WEIGHTS products a launch; gemv_takes holds for
 * each. An input that applies RMSNorm or SwiGLU (gemv_fuses) takes one launch. */
static int gemv(cuda_impl *c, gemv_input_kind kind, int32_t count, float *const *out, const gemv_input &in,
                const kvz_weight *const *w, int32_t n, int accumulate)
{
    for (int32_t first = 0; first < count; first += GEMV_MAX_WEIGHTS) {
        gemv_batch p = {};
        for (int k = 0; k < GEMV_MAX_WEIGHTS; k++) {
            const int32_t i = first + k;
            p.first_block[k] = p.blocks; /* past the last product: no block reaches it */
            if (i >= count)
                continue;
            if (w[i]->type != KVZ_GGML_F16)
                return kvz_errorf(KVZ_ERR_INTERNAL, "cuda: matmul expects f16 weights");
            p.out[k] = out[i], p.w[k] = (const __half *)w[i]->data, p.rows[k] = w[i]->rows;
            p.blocks += ceil_div(w[i]->rows, GEMV_WARPS);
        }
        const int32_t cols = (int32_t)w[first]->cols;
        switch (n) {
        case 1: gemv_launch<1>(c, kind, p, in, cols, accumulate); break;
        case 2: gemv_launch<2>(c, kind, p, in, cols, accumulate); break;
        case 3: gemv_launch<3>(c, kind, p, in, cols, accumulate); break;
        default: gemv_launch<GEMV_MAX_ROWS>(c, kind, p, in, cols, accumulate); break;
        }
        CUDA_LAUNCHED(kind == GEMV_RMSNORM  ? "rmsnorm + matmul (few rows)"
                      : kind == GEMV_SWIGLU ? "swiglu + matmul (few rows)"
                                            : "matmul (few rows)");
    }
    return KVZ_OK;
}

__global__ static void to_half_kernel(__half *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = kvz_half_sat(src[i]);
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
    if (gemv_takes(c, x, w, n))
        return gemv(c, GEMV_PLAIN, 1, &out, gemv_input{x, NULL, NULL, 0.0f}, &w, n, accumulate);
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
    const int32_t dim = (int32_t)w[0]->cols;
    int own = 1;
    for (int32_t i = 0; i < count; i++)
        own = own && gemv_takes(c, h, w[i], n);
    if (own && gemv_fuses(x, norm, w, count))
        return gemv(c, GEMV_RMSNORM, count, out, gemv_input{x, norm, h, eps}, w, n, 0);
    if (own) {
        KVZ_TRY(cuda_rmsnorm_f16(c, h, NULL, x, norm, n, dim, eps));
        return gemv(c, GEMV_PLAIN, count, out, gemv_input{h, NULL, NULL, 0.0f}, w, n, 0);
    }
    KVZ_TRY(half_input(c, (int64_t)n * dim));
    KVZ_TRY(cuda_rmsnorm_f16(c, h, c->x_half, x, norm, n, dim, eps));
    for (int32_t i = 0; i < count; i++)
        KVZ_TRY(gemm(c, out[i], w[i], n, 0));
    return KVZ_OK;
}

int cuda_swiglu_matmul(kvz_backend *b, float *out, float *gate, const float *up, const kvz_weight *w, int32_t n,
                       int accumulate)
{
    cuda_impl *c = cuda_of(b);
    const int64_t elems = (int64_t)n * w->cols;
    const int own = gemv_takes(c, gate, w, n);
    if (own && gemv_fuses(gate, up, &w, 1))
        return gemv(c, GEMV_SWIGLU, 1, &out, gemv_input{gate, up, NULL, 0.0f}, &w, n, accumulate);
    if (own) {
        KVZ_TRY(cuda_swiglu_f16(c, gate, NULL, up, elems));
        return gemv(c, GEMV_PLAIN, 1, &out, gemv_input{gate, NULL, NULL, 0.0f}, &w, n, accumulate);
    }
    KVZ_TRY(half_input(c, elems));
    KVZ_TRY(cuda_swiglu_f16(c, gate, c->x_half, up, elems));
    return gemm(c, out, w, n, accumulate);
}
