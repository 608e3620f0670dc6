/*
 * rope.cu — rotary position embedding on the device, angles in double as on
 * the CPU (kernels/cpu/rope.c) so RoPE at load reproduces prefill.
 */
#include "kernels/cuda/cuda_common.cuh"

/* Thread per (token, head, pair). */
__global__ static void rope_kernel(float *x, const int32_t *positions, int32_t n, int32_t n_heads,
                                   int32_t head_dim, int32_t rope_dim, double log_base, int neox,
                                   int inverse)
{
    int32_t half = rope_dim / 2;
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * n_heads * half)
        return;
    int32_t j = (int32_t)(idx % half);
    int64_t row = idx / half; /* token * n_heads + head */
    int32_t i = (int32_t)(row / n_heads);
    double theta = (double)positions[i] * exp(-2.0 * j / rope_dim * log_base);
    double sn, cs;
    sincos(theta, &sn, &cs);
    float c = (float)cs, s = inverse ? -(float)sn : (float)sn;
    float *v = x + row * head_dim;
    int32_t a = neox ? j : 2 * j, b = neox ? j + half : 2 * j + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
}

int cuda_rope(kvz_backend *b, float *x, const int32_t *positions, int32_t n, int32_t n_heads,
              const kvz_rope_params *p, int inverse)
{
    int64_t total = (int64_t)n * n_heads * (p->rope_dim / 2);
    rope_kernel<<<ceil_div(total, 256), 256, 0, cuda_of(b)->stream>>>(
        x, positions, n, n_heads, p->head_dim, p->rope_dim, log((double)p->freq_base),
        p->mode == KVZ_ROPE_NEOX, inverse);
    CUDA_LAUNCHED("rope");
    return KVZ_OK;
}
