/*
 * cuda_common.cuh — what the CUDA backend's files share: the backend state,
 * error checks, launch helpers, and the entry points of each kernel file
 * (one file per operation, each the twin of a kernels/cpu/ file).
 */
#ifndef KVZ_KERNELS_CUDA_COMMON_CUH
#define KVZ_KERNELS_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "common/error.h"
#include "kernels/backend.h"
}

/* A pinned host buffer and its device copy for kv_load (kv_load.cu). */
typedef struct kv_stage {
    void *host, *dev;
    size_t host_bytes, dev_bytes;
    cudaEvent_t done; /* recorded behind the copy out of host: then host may be refilled (dev is stream-ordered) */
} kv_stage;

typedef struct cuda_impl {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    int sm_count;
    int stream_ordered_memory; /* the device has memory pools: cudaMallocAsync (cuda_malloc) */
    int root; /* made by kvz_backend_cuda_create, not forked: its destroy gives the pool's memory back */
    int attention_simt; /* KVZ_CUDA_ATTENTION=simt: no tensor-core attention */
    int gemv;           /* products of few rows by matmul.cu's own kernel (KVZ_CUDA_GEMV=0: cuBLAS) */
    size_t smem_optin; /* the most shared memory a block may have, static and dynamic together */
    /* The most dynamic shared memory the attention and scoring kernels may ask
     * for on this device, by head size (cuda_head_slot), after their static
     * shared memory: SIZE_MAX at the start, the *_configure functions lower them */
    size_t attention_room[3], attention_tc_room[3], scores_room[3], scores_tc_room[3];
    /* scratch, grown on demand */
    __half *x_half;    /* activations converted for cuBLAS */
    size_t x_half_bytes;
    float *partials;   /* split-K attention partial results */
    size_t partial_bytes;
    float *tile_sums;  /* scoring: each query tile's sums, added in order */
    size_t tile_sum_bytes;
    unsigned int *split_done; /* per (query tile, KV head): key splits finished, 0 between launches */
    size_t split_done_bytes;
    void *topk_scratch; /* top-k state, histogram, tile counts */
    size_t topk_bytes;
    void *rows_scratch; /* top_k_rows: each row's length and k */
    size_t rows_bytes;
    void *sample_scratch; /* sampling state, probabilities, sort buffers */
    size_t sample_bytes;
    int32_t *sample_token; /* pinned: the sampled token's copy back is one wait, not a staged copy and a wait */
    kv_stage stage[2]; /* handed out in turn by kv_staging */
    int stage_next, stage_current;
    void *quant_scratch; /* kv_quantize: one side's payload and pairs */
    size_t quant_bytes;
} cuda_impl;

/* The backend's state, its device made the calling thread's current one: a
 * thread of an application that uses another GPU (cudaSetDevice) would
 * otherwise launch onto this backend's stream from the wrong device, which
 * CUDA refuses. Every op takes its state through here first; the call costs
 * next to nothing where the device is current already. */
static inline cuda_impl *cuda_of(kvz_backend *b)
{
    cuda_impl *c = (cuda_impl *)b->impl;
    if (cudaSetDevice(c->device) != cudaSuccess)
        cudaGetLastError(); /* the op's own calls fail and say so; a launch check must not take this for its own */
    return c;
}

static inline int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }
/* Offsets of the parts of one scratch buffer keep them 256-byte aligned. */
static inline size_t cuda_align256(size_t x) { return (x + 255) & ~(size_t)255; }
/* KVZ_ERR_INTERNAL unless the key (and value) caches are 16-byte aligned:
 * the attention and scoring kernels read them as float4s, and a misaligned
 * float4 load faults on a GPU where the CUDA emulation would not notice. */
int cuda_check_float4_caches(const float *k_cache, const float *v_cache, const char *what);

/* Any CUDA failure becomes KVZ_ERR_BACKEND with the call named. */
#define CUDA_TRY(call)                                                                         \
    do {                                                                                       \
        cudaError_t cuda_try_err_ = (call);                                                    \
        if (cuda_try_err_ != cudaSuccess)                                                      \
            return kvz_errorf(KVZ_ERR_BACKEND, "cuda: %s failed: %s", #call,                   \
                              cudaGetErrorString(cuda_try_err_));                              \
    } while (0)

#define CUDA_LAUNCHED(what)                                                                    \
    do {                                                                                       \
        cudaError_t cuda_launch_err_ = cudaGetLastError();                                     \
        if (cuda_launch_err_ != cudaSuccess)                                                   \
            return kvz_errorf(KVZ_ERR_BACKEND, "cuda: launching %s failed: %s", what,          \
                              cudaGetErrorString(cuda_launch_err_));                           \
    } while (0)

/* A kernel's dynamic shared-memory limit (cudaFuncSetAttribute) is one value
 * for the whole process, so it is set to `most`, the most any of its launches
 * asks, once as each backend starts (the *_configure functions below): a value
 * per launch could be lowered by another thread's session between that call
 * and the launch, and a call per launch would cost the host time in every
 * decode step. Launches of up to 48 KB with the static need no attribute. The limit stays
 * within the device's room beside the kernel's static shared memory, which
 * lowers *room to it: a launch asking more than *room must not be made (a
 * tensor-core kernel is then not taken). */
template <class Kernel>
static inline int cuda_allow_smem(const cuda_impl *c, Kernel *kernel, const char *name, int hd, size_t most,
                                  size_t *room)
{
    /* what the device leaves beside the kernel's static shared memory: a limit
     * that would make the two exceed smem_optin is refused */
    cudaFuncAttributes attr;
    cudaError_t err = cudaFuncGetAttributes(&attr, kernel);
    if (err != cudaSuccess)
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: cudaFuncGetAttributes(%s, head size %d) failed: %s", name, hd,
                          cudaGetErrorString(err));
    const size_t mine = c->smem_optin > attr.sharedSizeBytes ? c->smem_optin - attr.sharedSizeBytes : 0;
    if (*room > mine)
        *room = mine; /* kernels that share launch sizes share the least room */
    const size_t limit = most < mine ? most : mine;
    if (limit + attr.sharedSizeBytes > 48 * 1024) { /* without the attribute: 48 KB with the static */
        err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)limit);
        if (err != cudaSuccess)
            return kvz_errorf(KVZ_ERR_BACKEND,
                              "cuda: allowing %s (head size %d) %zu bytes of dynamic shared memory beside %zu static "
                              "(of %zu a block may have) failed: %s",
                              name, hd, limit, (size_t)attr.sharedSizeBytes, c->smem_optin,
                              cudaGetErrorString(err));
    }
    return KVZ_OK;
}
/* The index of head size 64, 96 or 128 in the room arrays of cuda_impl. */
static inline int cuda_head_slot(int hd) { return hd == 64 ? 0 : hd == 96 ? 1 : 2; }

/* Device memory of backend c, with kvz's error: KVZ_ERR_NOMEM when the device
 * is out of memory, naming the size, `what` it was for (may be NULL) and the
 * device's free memory. Stream-ordered (cudaMallocAsync/cudaFreeAsync on c's
 * stream) where the device has memory pools: cudaMalloc and cudaFree wait for
 * the whole device, so one session opening or closing, or a scratch buffer
 * growing, would hold up every other session's stream. Memory is freed with
 * cuda_free of the backend that allocated it, and another backend's stream may
 * use it only after that backend synchronised (the weights: the model load). */
int cuda_malloc(cuda_impl *c, void **ptr, size_t bytes, const char *what);
int cuda_free(cuda_impl *c, void *ptr); /* KVZ_ERR_BACKEND naming the call when it fails */
/* cudaMallocHost (page-locked host memory) with the same errors, less the
 * device's free memory. */
int cuda_malloc_host(void **ptr, size_t bytes, const char *what);
/* Grow a device scratch buffer of c to at least `bytes` (cuda_malloc's
 * errors); the old one is freed in stream order, after the work that reads it. */
int cuda_ensure(cuda_impl *c, void **buf, size_t *have, size_t bytes, const char *what);

/* dequant.cu: decode `rows` rows of GGUF `type` (device src) into f16 dst. */
int cuda_dequantize_f16(cuda_impl *c, __half *dst, const void *src, uint32_t type, int64_t rows,
                        int64_t cols);
/* matmul.cu */
int cuda_matmul(kvz_backend *b, float *out, const float *x, const kvz_weight *w, int32_t n,
                int accumulate);
int cuda_norm_matmul_many(kvz_backend *b, int32_t count, float *const *out, float *h, const float *x,
                          const float *norm, float eps, const kvz_weight *const *w, int32_t n);
int cuda_swiglu_matmul(kvz_backend *b, float *out, float *gate, const float *up, const kvz_weight *w, int32_t n,
                       int accumulate);
/* elementwise.cu */
int cuda_embed(kvz_backend *b, float *out, const kvz_weight *table, const int32_t *tokens, int32_t n);
/* RMSNorm of x (n, dim) into out and, unless out_half is NULL, its f16 copy */
int cuda_rmsnorm_f16(cuda_impl *c, float *out, __half *out_half, const float *x, const float *weight, int32_t n,
                     int32_t dim, float eps);
int cuda_gather_rows(kvz_backend *b, float *dst, const float *src, const int32_t *idx, int32_t count,
                     int32_t width);
/* gate = silu(gate) * up for `count` elements and, unless gate_half is NULL, its f16 copy */
int cuda_swiglu_f16(cuda_impl *c, float *gate, __half *gate_half, const float *up, int64_t count);
/* rope.cu */
int cuda_rope(kvz_backend *b, float *x, const int32_t *positions, int32_t n, int32_t n_heads,
              const kvz_rope_params *p, int inverse);
int cuda_rope_kv_append(kvz_backend *b, float *k_cache, float *v_cache, float *q, float *k, float *v,
                        const kvz_qkv_bias *bias, const int32_t *positions, const kvz_attention_params *p,
                        const kvz_rope_params *rope);
/* attention.cu; configure: the shared-memory limits of its kernels and the
 * tensor-core ones (cuda_allow_smem), and c's rooms for them, once per backend */
int cuda_attention_configure(cuda_impl *c);
int cuda_attention(kvz_backend *b, float *out, const float *q, const float *k_cache,
                   const float *v_cache, const kvz_attention_params *p, const kvz_score_params *score,
                   float *scores);

/* scores.cu; configure as attention.cu's */
int cuda_scores_configure(cuda_impl *c);
int cuda_attention_scores(kvz_backend *b, float *scores, const float *q, const float *k_cache,
                          const kvz_score_params *p);
/* kv_load.cu */
int cuda_kv_staging(kvz_backend *b, size_t bytes, void **host);
int cuda_kv_load(kvz_backend *b, const void *staging, size_t bytes, const kvz_kv_load_job *jobs, int32_t n_jobs,
                 const kvz_rope_params *rope);
/* kv_quant.cu */
int cuda_kv_quantize(kvz_backend *b, const float *x, const kvz_quant_shape *s, int is_keys, uint8_t *payload,
                     uint16_t *scales);
/* sample.cu */
int cuda_sample(kvz_backend *b, int32_t *token, const float *logits, int32_t n, const kvz_sample_params *p);
/* topk.cu */
int cuda_top_k_mask(kvz_backend *b, uint8_t *mask, const float *scores, int64_t count, int64_t k);
int cuda_top_k_rows(kvz_backend *b, uint8_t *mask, const float *scores, int32_t rows, int32_t n,
                    const int32_t *length, const int32_t *k);
/* window.cu */
int cuda_max_pool(kvz_backend *b, float *out, const float *in, int32_t rows, int32_t n, int64_t stride,
                  int32_t kernel);
int cuda_chunk_sums(kvz_backend *b, float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk);
/* norms.cu */
int cuda_key_norms(kvz_backend *b, float *out, const float *keys, int32_t rows, int32_t n, int64_t stride,
                   int32_t head_dim);

#endif
