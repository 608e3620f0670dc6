/*
 * backend_cuda.cu — the CUDA backend: device memory, one stream, cuBLAS,
 * weights dequantized to f16 on the GPU at load.
 */
#include "kernels/cuda/cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/ggml_types.h"
}

/* kvz's error for a failed allocation of `bytes` of `kind` memory (device
 * memory also says how much the device has free). */
static int allocation_failed(cudaError_t e, size_t bytes, const char *kind, const char *what, int device)
{
    cudaGetLastError(); /* a later launch check must not see this failure again */
    size_t free_bytes = 0, total_bytes = 0;
    char room[96] = "";
    if (device && e == cudaErrorMemoryAllocation && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
        snprintf(room, sizeof room, " (%.1f MiB free of %.1f MiB)", free_bytes / 1048576.0,
                 total_bytes / 1048576.0);
    /* a KV load's staging may be a few KiB, the sampled token 4 bytes */
    char size[32];
    if (bytes >= ((size_t)1 << 20))
        snprintf(size, sizeof size, "%.1f MiB", bytes / 1048576.0);
    else if (bytes >= 1024)
        snprintf(size, sizeof size, "%.1f KiB", bytes / 1024.0);
    else
        snprintf(size, sizeof size, "%zu bytes", bytes);
    return kvz_errorf(e == cudaErrorMemoryAllocation ? KVZ_ERR_NOMEM : KVZ_ERR_BACKEND,
                      "cuda: cannot allocate %s of %s memory%s%s: %s%s", size, kind, what ? " for " : "",
                      what ? what : "", cudaGetErrorString(e), room);
}

/* The default pool hands memory freed with cudaFreeAsync back to the device
 * at each synchronisation while its release threshold is 0 (the default), so
 * each session's cache and scratch would be mapped afresh. Let it keep them
 * (an allocation that fails trims it), unless the application has set a
 * threshold of its own. */
static void keep_freed_memory(int device)
{
    cudaMemPool_t pool;
    uint64_t threshold = 0;
    if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess ||
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) != cudaSuccess) {
        cudaGetLastError(); /* an optimisation only */
        return;
    }
    if (threshold != 0)
        return;
    threshold = UINT64_MAX;
    if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) != cudaSuccess)
        cudaGetLastError();
}

/* Memory the default pool keeps (what sessions freed, perhaps still awaited
 * by their streams) handed back to the device, once their work is done: before
 * a failed allocation's retry, the pool's or another's (cuBLAS's workspace).
 * 0 when the device could be waited for. */
static int trim_pool(int device)
{
    if (cudaDeviceSynchronize() != cudaSuccess)
        return -1;
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess || cudaMemPoolTrimTo(pool, 0) != cudaSuccess)
        cudaGetLastError(); /* nothing more to give back */
    return 0;
}

static cudaError_t device_alloc(cuda_impl *c, void **ptr, size_t bytes)
{
    return c->stream_ordered_memory ? cudaMallocAsync(ptr, bytes, c->stream) : cudaMalloc(ptr, bytes);
}

int cuda_malloc(cuda_impl *c, void **ptr, size_t bytes, const char *what)
{
    *ptr = NULL;
    if (!bytes)
        bytes = 16;
    cudaError_t e = device_alloc(c, ptr, bytes);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        if (trim_pool(c->device) == 0)
            e = device_alloc(c, ptr, bytes);
    }
    if (e == cudaSuccess)
        return KVZ_OK;
    *ptr = NULL;
    return allocation_failed(e, bytes, "device", what, 1);
}

int cuda_free(cuda_impl *c, void *ptr)
{
    if (ptr)
        CUDA_TRY(c->stream_ordered_memory ? cudaFreeAsync(ptr, c->stream) : cudaFree(ptr));
    return KVZ_OK;
}

int cuda_malloc_host(void **ptr, size_t bytes, const char *what)
{
    *ptr = NULL;
    cudaError_t e = cudaMallocHost(ptr, bytes ? bytes : 16);
    if (e == cudaSuccess)
        return KVZ_OK;
    *ptr = NULL;
    return allocation_failed(e, bytes, "pinned host", what, 0);
}

int cuda_ensure(cuda_impl *c, void **buf, size_t *have, size_t bytes, const char *what)
{
    if (bytes <= *have)
        return KVZ_OK;
    KVZ_TRY(cuda_free(c, *buf));
    *buf = NULL;
    *have = 0;
    KVZ_TRY(cuda_malloc(c, buf, bytes, what));
    *have = bytes;
    return KVZ_OK;
}

int cuda_check_float4_caches(const float *k_cache, const float *v_cache, const char *what)
{
    if (((uintptr_t)k_cache | (uintptr_t)v_cache) % 16 != 0)
        return kvz_errorf(KVZ_ERR_INTERNAL, "cuda: %s reads its cache as float4s, and the cache at %p/%p is not "
                          "16-byte aligned", what, (const void *)k_cache, (const void *)v_cache);
    return KVZ_OK;
}

static int cu_alloc(kvz_backend *b, size_t bytes, void **ptr)
{
    return cuda_malloc(cuda_of(b), ptr, bytes, NULL);
}

static void cu_free(kvz_backend *b, void *ptr)
{
    if (cuda_free(cuda_of(b), ptr) != KVZ_OK)
        cudaGetLastError(); /* free has no status: a later launch check must not take this failure for its own */
}

static int cu_host_alloc(kvz_backend *b, size_t bytes, void **ptr)
{
    cuda_of(b); /* its device current */
    return cuda_malloc_host(ptr, bytes, "host buffers for the device's copies");
}

static void cu_host_free(kvz_backend *b, void *ptr)
{
    cuda_of(b);
    if (ptr && cudaFreeHost(ptr) != cudaSuccess)
        cudaGetLastError(); /* as cu_free: a later launch check must not take this failure for its own */
}

static int cu_upload(kvz_backend *b, void *dst, const void *src, size_t bytes)
{
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_of(b)->stream));
    return KVZ_OK;
}

static int cu_download(kvz_backend *b, void *dst, const void *src, size_t bytes)
{
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_of(b)->stream));
    CUDA_TRY(cudaStreamSynchronize(cuda_of(b)->stream));
    return KVZ_OK;
}

static int cu_memset_zero(kvz_backend *b, void *dst, size_t bytes)
{
    CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, cuda_of(b)->stream));
    return KVZ_OK;
}

static int cu_synchronize(kvz_backend *b)
{
    CUDA_TRY(cudaStreamSynchronize(cuda_of(b)->stream));
    return KVZ_OK;
}

/* Upload the file's blocks a slice of rows at a time and decode each slice
 * to f16 on the device: the staging buffer stays small for any model size. */
static int cu_weight_load(kvz_backend *b, kvz_weight *w, uint32_t type, const void *src,
                          int64_t rows, int64_t cols)
{
    cuda_impl *c = cuda_of(b);
    size_t row_bytes;
    KVZ_TRY(kvz_weight_init(w, "cuda", type, src, rows, cols, &row_bytes));
    __half *dst = NULL;
    KVZ_TRY(cu_alloc(b, (size_t)rows * (size_t)cols * sizeof(__half), (void **)&dst));
    const size_t staging_bytes = 64u << 20;
    int64_t slice = (int64_t)(staging_bytes / row_bytes);
    if (slice < 1)
        slice = 1;
    if (slice > rows)
        slice = rows;
    void *staging = NULL;
    int rc = cu_alloc(b, (size_t)slice * row_bytes, &staging);
    for (int64_t r0 = 0; r0 < rows && rc == KVZ_OK; r0 += slice) {
        int64_t nr = rows - r0 < slice ? rows - r0 : slice;
        rc = cu_upload(b, staging, (const uint8_t *)src + (size_t)r0 * row_bytes, (size_t)nr * row_bytes);
        if (rc == KVZ_OK)
            rc = cuda_dequantize_f16(c, dst + (size_t)r0 * (size_t)cols, staging, type, nr, cols);
    }
    if (rc == KVZ_OK)
        rc = cu_synchronize(b); /* the staging buffer is reused or freed next */
    cu_free(b, staging);
    if (rc != KVZ_OK) {
        cu_free(b, dst);
        return rc;
    }
    w->type = KVZ_GGML_F16;
    w->data = dst;
    w->owned = 1;
    return KVZ_OK;
}

static void cu_weight_free(kvz_backend *b, kvz_weight *w)
{
    if (w->owned)
        cu_free(b, w->data);
    memset(w, 0, sizeof *w);
}

static void cu_destroy(kvz_backend *b)
{
    cuda_impl *c = cuda_of(b);
    void *scratch[] = {c->x_half, c->partials, c->tile_sums, c->split_done, c->topk_scratch, c->rows_scratch, c->sample_scratch,
                       c->quant_scratch, c->stage[0].dev, c->stage[1].dev};
    for (size_t i = 0; i < sizeof scratch / sizeof *scratch; i++)
        cu_free(b, scratch[i]);
    cudaStreamSynchronize(c->stream); /* the frees, and any work still reading what they free */
    cudaMemPool_t pool; /* the pool keeps what is freed (keep_freed_memory): a model left for the CPU
                         * (--device auto) would hold it from other processes. Not trim_pool: its device-wide
                         * wait would stall on other engines' work, and the trim keeps what backs their memory */
    if (c->root && c->stream_ordered_memory &&
        (cudaDeviceGetDefaultMemPool(&pool, c->device) != cudaSuccess || cudaMemPoolTrimTo(pool, 0) != cudaSuccess))
        cudaGetLastError();
    if (c->sample_token)
        cudaFreeHost(c->sample_token);
    for (int i = 0; i < 2; i++) {
        if (c->stage[i].host)
            cudaFreeHost(c->stage[i].host);
        if (c->stage[i].done)
            cudaEventDestroy(c->stage[i].done);
    }
    cublasDestroy(c->cublas);
    cudaStreamDestroy(c->stream);
    free(c);
    free(b);
}

static int cu_fork(kvz_backend *b, kvz_backend **out);

/* Positional: the order of kvz_backend_ops (C++ before C++20 has no designated initialisers). */
static const kvz_backend_ops CUDA_OPS = {
    "cuda",
    0, /* host_memory */
    cu_alloc,
    cu_free,
    cu_host_alloc,
    cu_host_free,
    cu_upload,
    cu_download,
    cu_memset_zero,
    cu_synchronize,
    cu_destroy,
    cu_fork,
    cu_weight_load,
    cu_weight_free,
    cuda_matmul,
    cuda_norm_matmul_many,
    cuda_embed,
    cuda_rope,
    cuda_gather_rows,
    cuda_swiglu_matmul,
    cuda_rope_kv_append,
    NULL, /* layer: a layer's ops one by one */
    cuda_attention,
    cuda_attention_scores,
    cuda_top_k_mask,
    cuda_top_k_rows,
    cuda_max_pool,
    cuda_chunk_sums,
    cuda_key_norms,
    cuda_kv_staging,
    cuda_kv_load,
    cuda_kv_quantize,
    cuda_sample,
};

/* The oldest compute capability this build has code for: the smallest of
 * the architectures nvcc built (the Makefile's CUDA_ARCHS, which
 * __CUDA_ARCH_LIST__ names as 800 for 8.0; SASS for 8.0 runs on 8.6 and 8.9
 * too). An older GPU (Volta, Turing) would fail at the first launch. The CPU
 * emulation builds no device code and takes the Makefile's default, 8.0. */
#ifdef __CUDA_ARCH_LIST__
static const int BUILT_ARCHS[] = {__CUDA_ARCH_LIST__};
#else
static const int BUILT_ARCHS[] = {800};
#endif

static int oldest_built_arch(void)
{
    int oldest = BUILT_ARCHS[0];
    for (size_t i = 1; i < sizeof BUILT_ARCHS / sizeof BUILT_ARCHS[0]; i++)
        oldest = BUILT_ARCHS[i] < oldest ? BUILT_ARCHS[i] : oldest;
    return oldest;
}

static int device_runs_this_build(const cudaDeviceProp *prop)
{
    return prop->major * 100 + prop->minor * 10 >= oldest_built_arch();
}

/* A GPU this build's code runs on: AUTO uses the CPU otherwise. */
extern "C" int kvz_backend_cuda_available(void)
{
    int n = 0;
    cudaDeviceProp prop;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0 && cudaGetDeviceProperties(&prop, 0) == cudaSuccess &&
           device_runs_this_build(&prop);
}

/* A backend on device 0 with its own stream, cuBLAS handle and scratch. */
static int cuda_start(kvz_backend **out, int n_threads)
{
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: no usable GPU (%s)",
                          e != cudaSuccess ? cudaGetErrorString(e) : "no device");
    kvz_backend *b = (kvz_backend *)calloc(1, sizeof *b);
    cuda_impl *c = (cuda_impl *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return kvz_errorf(KVZ_ERR_NOMEM, "cuda: out of memory");
    }
    b->ops = &CUDA_OPS;
    b->impl = c;
    b->n_threads = n_threads;
    c->device = 0;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        free(b);
        free(c);
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: cannot start the device: %s", cudaGetErrorString(e));
    }
    if (!device_runs_this_build(&prop)) {
        cudaStreamDestroy(c->stream);
        free(b);
        free(c);
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: the GPU '%s' has compute capability %d.%d; this kvz has code for "
                          "%d.%d and later (build it with another CUDA_ARCHS, or use --device cpu)", prop.name,
                          prop.major, prop.minor, oldest_built_arch() / 100, oldest_built_arch() / 10 % 10);
    }
    c->sm_count = prop.multiProcessorCount;
    int pools = 0; /* KVZ_CUDA_MEMORY_POOLS=0: cudaMalloc even where the device has pools */
    const char *use_pools = getenv("KVZ_CUDA_MEMORY_POOLS");
    c->stream_ordered_memory = !(use_pools && strcmp(use_pools, "0") == 0) &&
                               cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, 0) == cudaSuccess &&
                               pools;
    if (c->stream_ordered_memory)
        keep_freed_memory(c->device);
    c->smem_optin = prop.sharedMemPerBlockOptin;
    const char *attention = getenv("KVZ_CUDA_ATTENTION");
    c->attention_simt = attention && strcmp(attention, "simt") == 0;
    const char *gemv = getenv("KVZ_CUDA_GEMV");
    c->gemv = !(gemv && strcmp(gemv, "0") == 0);
    cublasStatus_t made = cublasCreate(&c->cublas); /* its workspace comes from outside the pool */
    if (made != CUBLAS_STATUS_SUCCESS && trim_pool(c->device) == 0)
        made = cublasCreate(&c->cublas);
    if (made != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(c->stream);
        free(b);
        free(c);
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: cannot create a cuBLAS handle");
    }
    if (cublasSetStream(c->cublas, c->stream) != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(c->cublas);
        cudaStreamDestroy(c->stream);
        free(b);
        free(c);
        return kvz_errorf(KVZ_ERR_BACKEND, "cuda: cannot give the cuBLAS handle its stream");
    }
    for (int i = 0; i < 3; i++) /* lowered by each kernel's configuration (cuda_allow_smem) */
        c->attention_room[i] = c->attention_tc_room[i] = c->scores_room[i] = c->scores_tc_room[i] = SIZE_MAX;
    int rc = cuda_attention_configure(c);
    if (rc == KVZ_OK)
        rc = cuda_scores_configure(c);
    if (rc != KVZ_OK) {
        cublasDestroy(c->cublas);
        cudaStreamDestroy(c->stream);
        free(b);
        free(c);
        return rc;
    }
    *out = b;
    return KVZ_OK;
}

extern "C" int kvz_backend_cuda_create(kvz_backend **out, const kvz_backend_config *cfg)
{
    /* host threads around the GPU work (artifact encoding and decoding): the CPUs this process may use unless told */
    int rc = cuda_start(out, kvz_backend_threads(cfg));
    if (rc == KVZ_OK)
        cuda_of(*out)->root = 1;
    return rc;
}

static int cu_fork(kvz_backend *b, kvz_backend **out)
{
    return cuda_start(out, b->n_threads);
}
