/*
 * kv_load.cu — a stored KV head into cache rows on the device: the host
 * passes the head as stored (4-bit codes move 8x fewer bytes than f32 rows),
 * and one kernel dequantizes and, for keys, applies RoPE on the way into the
 * cache.
 *
 * The host decompresses a layer's heads straight into one of two pinned
 * staging buffers handed out in turn (kv_staging); kv_load copies the filled
 * part to the device in one transfer (async, on the backend's stream) and
 * launches a kernel per head, so the copy and kernels of one layer overlap
 * the host's work on the next. A buffer is handed out again only after the
 * event recorded behind its last kernel. Twin of kernels/cpu/kv_load.c.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/rope.cuh"

extern "C" {
#include "kernels/kv_codes.h"
}

struct kv_load_args {
    float *dst;
    const uint8_t *payload;
    const uint16_t *scales;
    const int32_t *positions; /* NULL: values, no rotation */
    kvz_quant_shape shape;
    int is_keys, neox;
    rope_angles angles; /* rope_dim 0 for values */
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
    const int32_t j = (int32_t)(idx % half_d), half = a.angles.rope_dim / 2;
    float *row = a.dst + t * a.shape.d;
    int32_t c0, c1;
    rope_pair_channels(j, a.positions ? half : 0, a.neox, &c0, &c1);
    float x0 = kvz_kv_element(a.payload, a.scales, &a.shape, a.is_keys, t, c0);
    float x1 = kvz_kv_element(a.payload, a.scales, &a.shape, a.is_keys, t, c1);
    if (a.positions && j < half)
        rope_rotate(&x0, &x1, a.positions[t], j, a.angles, false);
    row[c0] = x0;
    row[c1] = x1;
}

int cuda_kv_staging(kvz_backend *b, size_t bytes, void **host)
{
    cuda_impl *c = cuda_of(b);
    kv_stage *st = &c->stage[c->stage_next];
    c->stage_current = c->stage_next;
    c->stage_next ^= 1;
    if (!st->done)
        CUDA_TRY(cudaEventCreateWithFlags(&st->done, cudaEventDisableTiming));
    CUDA_TRY(cudaEventSynchronize(st->done)); /* the last copy out of this buffer has finished */
    if (bytes > st->host_bytes) {
        if (st->host)
            CUDA_TRY(cudaFreeHost(st->host));
        st->host = NULL, st->host_bytes = 0;
        KVZ_TRY(cuda_malloc_host(&st->host, bytes ? bytes : 1, "the KV load staging buffer"));
        st->host_bytes = bytes;
    }
    *host = st->host;
    return KVZ_OK;
}

int cuda_kv_load(kvz_backend *b, const void *staging, size_t bytes, const kvz_kv_load_job *jobs, int32_t n_jobs,
                 const kvz_rope_params *rope)
{
    cuda_impl *c = cuda_of(b);
    kv_stage *st = &c->stage[c->stage_current];
    if (!st->host || staging != st->host || bytes > st->host_bytes)
        return kvz_errorf(KVZ_ERR_ARG, "cuda: kv_load reads the staging buffer kv_staging gave last, %zu bytes "
                          "at most", st->host_bytes);
    for (int32_t i = 0; i < n_jobs; i++) {
        const kvz_kv_load_job *j = &jobs[i];
        KVZ_TRY(kvz_kv_load_job_check(j, bytes, rope));
        if (j->shape.d % 2 != 0 || (j->is_keys && rope->rope_dim > (int32_t)j->shape.d))
            return kvz_errorf(KVZ_ERR_UNSUPPORTED, "cuda: loading rows of %u channels with RoPE over %d",
                              j->shape.d, j->is_keys ? rope->rope_dim : 0);
    }
    if (bytes == 0 || n_jobs == 0)
        return KVZ_OK;
    KVZ_TRY(cuda_ensure(c, &st->dev, &st->dev_bytes, bytes, "the KV load staging buffer"));
    const uint8_t *d = (const uint8_t *)st->dev;
    CUDA_TRY(cudaMemcpyAsync(st->dev, staging, bytes, cudaMemcpyHostToDevice, c->stream));
    /* the host may refill `staging` once the copy is done: recorded before the
     * launches, so a launch that fails still leaves it recorded */
    CUDA_TRY(cudaEventRecord(st->done, c->stream));
    const rope_angles key_angles = rope_angles_of(rope), no_angles = rope_angles_of(NULL);
    for (int32_t i = 0; i < n_jobs; i++) {
        const kvz_kv_load_job *j = &jobs[i];
        if (j->shape.n == 0)
            continue;
        kv_load_args a;
        a.dst = j->dst;
        a.payload = d + j->payload;
        a.scales = (const uint16_t *)(d + j->scales);
        a.positions = j->is_keys ? (const int32_t *)(d + j->positions) : NULL;
        a.shape = j->shape;
        a.is_keys = j->is_keys;
        a.neox = j->is_keys && rope->mode == KVZ_ROPE_NEOX;
        a.angles = j->is_keys ? key_angles : no_angles;
        int64_t threads = (int64_t)j->shape.n * (j->shape.d / 2);
        kv_load_kernel<<<ceil_div(threads, 256), 256, 0, c->stream>>>(a);
        CUDA_LAUNCHED("kv load");
    }
    return KVZ_OK;
}
