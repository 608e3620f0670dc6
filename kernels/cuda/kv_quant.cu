/*
 * kv_quant.cu — one KV head's kept rows quantized on the device, so that
 * only the stored bytes (a quarter of f16 at 4 bits, an eighth of the f32
 * rows) cross to the host for coding. Bit for bit kernels/kv_quant.c: both
 * take the group's pair and each code from kernels/kv_codes.h.
 *
 * Three launches in stream order: the f16 rows; a thread per group for its
 * (scale, min) pair (for keys, consecutive threads take consecutive channels
 * of the same rows); then a thread per byte of packed codes, so no two
 * threads write one byte. The bytes are copied to the host in stream order
 * and nothing waits: into pinned memory the copies run while the host goes
 * on (the compiler quantizes a batch of heads, then waits once).
 */
#include "kernels/cuda/cuda_common.cuh"

extern "C" {
#include "kernels/kv_codes.h"
}

struct kv_quant_args {
    const float *x; /* (n, d) */
    uint8_t *payload;
    uint16_t *scales;
    kvz_quant_shape shape;
    int is_keys;
};

__global__ static void kv_half_rows_kernel(const float *x, uint16_t *out, int64_t count)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
        out[i] = kvz_kv_to_half(x[i]);
}

/* Group r's pair, where kvz_quantize's quantize_run puts it. */
__global__ static void kv_pairs_kernel(kv_quant_args a, int64_t pairs)
{
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= pairs)
        return;
    const size_t d = a.shape.d, g = a.shape.group, m = a.shape.n - a.shape.n16;
    const float *xq = a.x + (size_t)a.shape.n16 * d, *p;
    size_t stride, count;
    if (a.is_keys) { /* channel r % d over the rows of group r / d */
        const size_t t0 = (size_t)r / d * g;
        p = xq + t0 * d + (size_t)r % d;
        stride = d;
        count = m - t0 < g ? m - t0 : g;
    } else { /* `group` channels of one row */
        p = xq + (size_t)r * g;
        stride = 1;
        count = g;
    }
    kvz_kv_pair(p, stride, count, a.shape.bits, a.scales + 2 * r);
}

/* Byte j of the packed body: codes j·(8/bits) .. +8/bits, LSB first. */
__global__ static void kv_codes_kernel(kv_quant_args a, int64_t body_bytes)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= body_bytes)
        return;
    const uint32_t bits = a.shape.bits, per_byte = 8 / bits;
    const size_t d = a.shape.d, codes = (size_t)(a.shape.n - a.shape.n16) * d;
    const float *xq = a.x + (size_t)a.shape.n16 * d;
    uint32_t byte = 0;
    for (uint32_t k = 0; k < per_byte; k++) {
        const size_t i = (size_t)j * per_byte + k, t = i / d, c = i % d;
        if (i >= codes)
            break;
        const uint16_t *pair =
            kvz_kv_row_pairs(a.scales, &a.shape, a.is_keys, t) + 2 * (a.is_keys ? c : c / a.shape.group);
        byte |= kvz_kv_code_of(xq[i], kvz_kv_half(pair[0]), kvz_kv_half(pair[1]), bits) << (k * bits);
    }
    a.payload[(size_t)a.shape.n16 * d * 2 + j] = (uint8_t)byte;
}

int cuda_kv_quantize(kvz_backend *b, const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload,
                     uint16_t *scales)
{
    cuda_impl *c = cuda_of(b);
    const size_t payload_bytes = kvz_quant_payload_bytes(s), pairs = kvz_quant_scale_pairs(s, is_keys);
    const size_t at_scales = cuda_align256(payload_bytes);
    KVZ_TRY(cuda_ensure(c, &c->quant_scratch, &c->quant_bytes, at_scales + pairs * 4, "quantized KV rows"));
    kv_quant_args a;
    a.x = x;
    a.payload = (uint8_t *)c->quant_scratch;
    a.scales = (uint16_t *)(a.payload + at_scales);
    a.shape = *s;
    a.is_keys = is_keys;
    const int64_t half_count = (int64_t)(s->bits == 16 ? s->n : s->n16) * s->d;
    if (half_count > 0) {
        kv_half_rows_kernel<<<ceil_div(half_count, 256), 256, 0, c->stream>>>(x, (uint16_t *)a.payload, half_count);
        CUDA_LAUNCHED("kv f16 rows");
    }
    const int64_t body_bytes = (int64_t)(payload_bytes - (size_t)s->n16 * s->d * 2);
    if (s->bits != 16 && body_bytes > 0) {
        kv_pairs_kernel<<<ceil_div((int64_t)pairs, 256), 256, 0, c->stream>>>(a, (int64_t)pairs);
        CUDA_LAUNCHED("kv quantization pairs");
        kv_codes_kernel<<<ceil_div(body_bytes, 256), 256, 0, c->stream>>>(a, body_bytes);
        CUDA_LAUNCHED("kv quantization codes");
    }
    CUDA_TRY(cudaMemcpyAsync(payload, a.payload, payload_bytes, cudaMemcpyDeviceToHost, c->stream));
    if (pairs)
        CUDA_TRY(cudaMemcpyAsync(scales, a.scales, pairs * 4, cudaMemcpyDeviceToHost, c->stream));
    return KVZ_OK; /* the scratch is read by these copies before the stream's next work rewrites it */
}
