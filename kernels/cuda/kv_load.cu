/*
 * kv_load.cu — a stored KV head into cache rows on the device: the host
 * passes the head as stored (4-bit codes move 8x fewer bytes than f32 rows),
 * and one kernel dequantizes and, for keys, applies RoPE on the way into the
 * cache.
 *
 * The host bytes go through two pinned staging buffers used in turn: the copy
 * of one head (async, on the backend's stream) and its kernel overlap the
 * host's work on the next; a buffer is refilled only after the event
 * recorded behind its last kernel. Twin of kernels/cpu/kv_load.c.
 */
#include "kernels/cuda/cuda_common.cuh"

extern "C" {
#include "kernels/kv_codes.h"
}

struct kv_load_args {
    float *dst;
    const uint8_t *payload;
    const uint16_t *scales;
    const int32_t *positions; /* NULL: values, no rotation */
    kvz_quant_shape shape;
    int is_keys, rope_dim, neox;
    double log_base;
};

/* Thread per (row, channel pair): the pair RoPE rotates together when it is
 * rotated (j < rope_dim / 2), else channels (2j, 2j + 1) as they are. */
__global__ static void kv_load_kernel(kv_load_args a)
{
    const int64_t half_d = a.shape.d / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)a.shape.n * half_d)
        return;
    const int64_t t = idx / half_d;
    const int32_t j = (int32_t)(idx % half_d), half = a.rope_dim / 2;
    float *row = a.dst + t * a.shape.d;
    const bool rotate = a.positions && j < half;
    const int32_t c0 = rotate && a.neox ? j : 2 * j, c1 = rotate && a.neox ? j + half : 2 * j + 1;
    float x0 = kvz_kv_element(a.payload, a.scales, &a.shape, a.is_keys, t, c0);
    float x1 = kvz_kv_element(a.payload, a.scales, &a.shape, a.is_keys, t, c1);
    if (rotate) { /* angles in double, as kernels/cpu/rope.c and rope.cu */
        double theta = (double)a.positions[t] * exp(-2.0 * j / a.rope_dim * a.log_base), sn, cs;
        sincos(theta, &sn, &cs);
        float c = (float)cs, s = (float)sn, r0 = x0 * c - x1 * s, r1 = x0 * s + x1 * c;
        x0 = r0, x1 = r1;
    }
    row[c0] = x0;
    row[c1] = x1;
}

int cuda_kv_load(kvz_backend *b, float *dst, const kvz_quant_shape *s, int is_keys, const uint8_t *payload,
                 const uint16_t *scales, const int32_t *positions, const kvz_rope_params *rope)
{
    cuda_impl *c = cuda_of(b);
    if (s->n == 0)
        return KVZ_OK;
    if (s->d % 2 != 0 || (positions && (rope->rope_dim % 2 != 0 || rope->rope_dim > (int32_t)s->d)))
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: loading rows of %u channels with RoPE over %d", s->d,
                          positions ? rope->rope_dim : 0);
    const size_t payload_bytes = kvz_quant_payload_bytes(s), scale_bytes = kvz_quant_scale_pairs(s, is_keys) * 4,
                 position_bytes = positions ? (size_t)s->n * 4 : 0;
    const size_t at_scales = cuda_align256(payload_bytes), at_positions = at_scales + cuda_align256(scale_bytes),
                 total = at_positions + cuda_align256(position_bytes);

    kv_stage *st = &c->stage[c->stage_next];
    c->stage_next ^= 1;
    if (!st->done)
        CUDA_TRY(cudaEventCreateWithFlags(&st->done, cudaEventDisableTiming));
    CUDA_TRY(cudaEventSynchronize(st->done)); /* the last copy out of this buffer has finished */
    if (total > st->host_bytes) {
        if (st->host)
            CUDA_TRY(cudaFreeHost(st->host));
        st->host = NULL, st->host_bytes = 0;
        KVZ_TRY(cuda_malloc_host(&st->host, total, "the KV load staging buffer"));
        st->host_bytes = total;
    }
    KVZ_TRY(cuda_ensure(&st->dev, &st->dev_bytes, total, "the KV load staging buffer"));
    uint8_t *h = (uint8_t *)st->host, *d = (uint8_t *)st->dev;
    memcpy(h, payload, payload_bytes);
    if (scale_bytes)
        memcpy(h + at_scales, scales, scale_bytes);
    if (position_bytes)
        memcpy(h + at_positions, positions, position_bytes);
    CUDA_TRY(cudaMemcpyAsync(d, h, total, cudaMemcpyHostToDevice, c->stream));

    kv_load_args a;
    a.dst = dst;
    a.payload = d;
    a.scales = (const uint16_t *)(d + at_scales);
    a.positions = positions ? (const int32_t *)(d + at_positions) : NULL;
    a.shape = *s;
    a.is_keys = is_keys;
    a.rope_dim = positions ? rope->rope_dim : 0;
    a.neox = positions && rope->mode == KVZ_ROPE_NEOX;
    a.log_base = positions ? log((double)rope->freq_base) : 0.0;
    int64_t threads = (int64_t)s->n * (s->d / 2);
    kv_load_kernel<<<ceil_div(threads, 256), 256, 0, c->stream>>>(a);
    CUDA_LAUNCHED("kv load");
    CUDA_TRY(cudaEventRecord(st->done, c->stream));
    return KVZ_OK;
}
