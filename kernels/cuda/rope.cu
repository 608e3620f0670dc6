/*
 * rope.cu — rotary position embedding on the device (twin of
 * kernels/cpu/rope.c), and a layer's step between its q/k/v products and its
 * attention in one launch: biases added, q and k rotated, k and v appended to
 * the caches.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/rope.cuh"

/* Thread per (token, head, rotated pair). */
__global__ static void rope_kernel(float *x, const int32_t *positions, int32_t n, int32_t n_heads,
                                   int32_t head_dim, rope_angles angles, int neox, int inverse)
{
    const int32_t half = angles.rope_dim / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * n_heads * half)
        return;
    const int32_t j = (int32_t)(idx % half);
    const int64_t row = idx / half; /* token * n_heads + head */
    int32_t c0, c1;
    rope_pair_channels(j, half, neox, &c0, &c1);
    float *v = x + row * head_dim;
    float x0 = v[c0], x1 = v[c1];
    rope_rotate(&x0, &x1, positions[row / n_heads], j, angles, inverse);
    v[c0] = x0;
    v[c1] = x1;
}

int cuda_rope(kvz_backend *b, float *x, const int32_t *positions, int32_t n, int32_t n_heads,
              const kvz_rope_params *p, int inverse)
{
    KVZ_TRY(kvz_rope_params_check(p));
    int64_t total = (int64_t)n * n_heads * (p->rope_dim / 2);
    rope_kernel<<<ceil_div(total, 256), 256, 0, cuda_of(b)->stream>>>(
        x, positions, n, n_heads, p->head_dim, rope_angles_of(p), p->mode == KVZ_ROPE_NEOX, inverse);
    CUDA_LAUNCHED("rope");
    return KVZ_OK;
}

struct rope_kv_append_args {
    float *k_cache, *v_cache, *q, *k;
    const float *v;
    kvz_qkv_bias bias; /* members NULL: no biases */
    const int32_t *positions;
    const int64_t *head_base; /* NULL: dense caches, head h's rows from h * capacity */
    const int32_t *head_rows;
    int32_t n, pos0, n_heads, n_kv_heads, head_dim, capacity;
    bool neox;
    rope_angles angles;
};

/* Thread per (token i, head slot, channel pair j). Slots [0, n_heads) are
 * q's heads: their pairs take their biases and the rotated ones turn, in
 * place. Slot n_heads + h is k's and v's head h: k's pair takes its bias and
 * turns (when rotated) in place, and both land in the caches at the row after
 * head h's existing rows, as kvz_cpu_kv_append puts them (v with its bias). */
__global__ static void rope_kv_append_kernel(rope_kv_append_args a)
{
    const int32_t pairs = a.head_dim / 2, slots = a.n_heads + a.n_kv_heads, half = a.angles.rope_dim / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)a.n * slots * pairs)
        return;
    const int32_t j = (int32_t)(idx % pairs), slot = (int32_t)(idx / pairs % slots);
    const int32_t i = (int32_t)(idx / ((int64_t)pairs * slots));
    const bool is_q = slot < a.n_heads;
    if (is_q && j >= half && !a.bias.q)
        return; /* q's unrotated channels stay as they are */
    int32_t c0, c1;
    rope_pair_channels(j, half, a.neox, &c0, &c1);
    const int32_t h = is_q ? slot : slot - a.n_heads, heads = is_q ? a.n_heads : a.n_kv_heads;
    const int64_t src = ((int64_t)i * heads + h) * a.head_dim;
    float *row = (is_q ? a.q : a.k) + src;
    float x0 = row[c0], x1 = row[c1];
    const float *bias = is_q ? a.bias.q : a.bias.k;
    if (bias) { /* the bias row is one token's row: head h's channels from h * head_dim */
        x0 += bias[h * a.head_dim + c0];
        x1 += bias[h * a.head_dim + c1];
    }
    if (j < half)
        rope_rotate(&x0, &x1, a.positions[i], j, a.angles, false);
    if (j < half || bias) {
        row[c0] = x0;
        row[c1] = x1;
    }
    if (is_q)
        return;
    const int64_t first = a.head_base ? a.head_base[h] + a.head_rows[h] : (int64_t)h * a.capacity + a.pos0;
    const int64_t dst = (first + i) * a.head_dim;
    a.k_cache[dst + c0] = x0;
    a.k_cache[dst + c1] = x1;
    float v0 = a.v[src + c0], v1 = a.v[src + c1];
    if (a.bias.v) { /* not v + 0.0f without one: that would turn -0.0 into +0.0, where the CPU copies */
        v0 += a.bias.v[h * a.head_dim + c0];
        v1 += a.bias.v[h * a.head_dim + c1];
    }
    a.v_cache[dst + c0] = v0;
    a.v_cache[dst + c1] = v1;
}

int cuda_rope_kv_append(kvz_backend *b, float *k_cache, float *v_cache, float *q, float *k, float *v,
                        const kvz_qkv_bias *bias, const int32_t *positions, const kvz_attention_params *p,
                        const kvz_rope_params *rope)
{
    KVZ_TRY(kvz_rope_params_check(rope));
    const kvz_qkv_bias no_bias = {NULL, NULL, NULL};
    rope_kv_append_args a = {k_cache, v_cache, q, k, v, bias ? *bias : no_bias, positions, p->head_base, p->head_rows,
                             p->n, p->pos0, p->n_heads, p->n_kv_heads, p->head_dim, p->capacity,
                             rope->mode == KVZ_ROPE_NEOX, rope_angles_of(rope)};
    int64_t total = (int64_t)p->n * (p->n_heads + p->n_kv_heads) * (p->head_dim / 2);
    rope_kv_append_kernel<<<ceil_div(total, 256), 256, 0, cuda_of(b)->stream>>>(a);
    CUDA_LAUNCHED("rope_kv_append");
    return KVZ_OK;
}
