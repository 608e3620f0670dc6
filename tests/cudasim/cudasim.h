/*
 * cudasim.h — the part of CUDA that kvz's kernels use, emulated on the CPU,
 * so that every CUDA kernel runs against its CPU twin where there is no GPU
 * (CI, and every machine without one). It checks the kernels' logic: indices,
 * bounds, block and warp synchronisation, shared memory, the reductions and
 * the host code around them. It says nothing of speed, and nothing of the
 * GPU's memory model beyond what barriers order; a real GPU run is still the
 * test of record (bench/gpu.sh).
 *
 * How a kernel runs: blocks one after another; the threads of a block as
 * fibers on the launching thread (a stack each, switched by a few lines of
 * x86-64 assembly), switching only at barriers (__syncthreads, __syncwarp,
 * shuffles, ballots, wmma calls), so atomics need no locking and __shared__
 * variables are plain statics. A barrier no thread can pass (one reached under
 * a condition that differs between threads) stops the run with a message, as
 * does a shuffle that reads a lane that has left the kernel or that its mask
 * leaves out (the GPU gives an undefined value).
 * Launches are serialised across host threads. KVZ_CUDASIM_ORDER=forward
 * (default), reverse or shuffle sets the order in which a grid's blocks run,
 * and a block's threads between barriers: a kernel whose results change with
 * it has a race. The device reports KVZ_CUDASIM_SMS multiprocessors (4 by
 * default; 132 is an H100): what launches that size themselves by the device
 * plan for, such as attention's key splits. A block may have
 * KVZ_CUDASIM_SMEM_OPTIN bytes of shared memory (227K by default, as an H100;
 * 99K as the sm_86 and sm_89 GPUs), static and dynamic together. The
 * emulation does not size a kernel's static shared memory: every kernel is
 * taken to have KVZ_CUDASIM_STATIC_SMEM bytes of it (0 by default), which
 * cudaFuncGetAttributes reports and which a dynamic limit, and a launch
 * without one past 48 KB less it, must leave room for.
 *
 * Device memory is counted: KVZ_CUDASIM_DEVICE_BYTES (16G by default) is how
 * much there is, so running out can be tested; KVZ_CUDASIM_PEAK_FILE names a
 * file that receives the most in use at once when the program exits.
 * Pinned host memory (cudaMallocHost) is counted apart, against
 * KVZ_CUDASIM_PINNED_BYTES (no limit by default). The device has memory
 * pools (stream-ordered cudaMallocAsync/cudaFreeAsync); memory is freed by
 * the call that matches its allocation (cudaFree after cudaMalloc,
 * cudaFreeAsync on the stream that allocated it after cudaMallocAsync) or the
 * run stops, whatever the GPU would take, so that kvz never mixes them by
 * accident. Stream-ordered memory is usable at once on the
 * stream that allocated it and on others only after that stream was
 * synchronised (cudaStreamSynchronize, cudaDeviceSynchronize, or
 * cudaEventSynchronize of an event recorded on it after the allocation): a
 * kernel, copy, memset or GEMM on another stream that is handed a pointer
 * into it before then stops the run.
 *
 * Stream work runs as late as a GPU may run it: a kernel, copy, memset,
 * GEMM, sort, scan or cudaFreeAsync waits in its stream's queue, in order,
 * until the host waits for that stream: cudaStreamSynchronize,
 * cudaEventSynchronize of an event recorded behind it, or a call that waits
 * for the whole device (cudaDeviceSynchronize, cudaFree, cudaFreeHost, work on
 * the legacy stream). Host code that reads what a copy brings back before it
 * waits, rewrites pinned memory a copy has yet to read, or hands one stream
 * what another stream's work writes without waiting for it, gets the stale
 * data a GPU may give it, and memory freed while work still uses it is freed
 * under that work (ASan names it). A copy from pageable host memory reads it
 * at the call, as the driver stages it; one to pageable memory waits, like
 * any other, for the host to wait. KVZ_CUDASIM_DEFER=0 runs all work at once
 * on the calling thread instead: a test that fails only deferred has its
 * host code's ordering at fault.
 *
 * Built with ASan (make test-cudasim-asan), the fiber switches are announced
 * to it, and device memory (cudaMalloc) and each launch's dynamic shared
 * memory are allocations of exactly the size asked for: a kernel's access past
 * a buffer is reported with its file and line, as compute-sanitizer would.
 *
 * The race check (make test-cudasim-race) builds the kernels with
 * ThreadSanitizer and tells it that each thread of a block is a fiber whose
 * only order with the block's other threads is the kernel's own barriers
 * (__syncthreads; for a warp __syncwarp, and a wmma load or store, which waits
 * for every lane): two threads of a block that touch the same byte, one
 * writing, with no barrier between them are reported, whatever the order they
 * ran in, as compute-sanitizer's racecheck would. Shuffles and ballots move
 * registers and order no memory. Blocks are ordered one after another for it
 * (races between blocks are left to the block orders above).
 *
 * A kernel's dynamic shared-memory limit (cudaFuncSetAttribute) is one value
 * for the process; setting it to a different value than before stops the run,
 * since a session on another thread could lower it between one thread's set
 * and its launch, which a GPU then refuses.
 *
 * Warp matrix operations (wmma) keep the whole 16x16 tile in every lane's
 * fragment: valid for kernels that treat fragments as opaque (load, mma,
 * store, fill, the same operation on every element), as kvz's do. Their
 * loads and stores are held to what the GPU requires and the emulation would
 * not notice: a 256-bit aligned tile and a leading dimension of a multiple of
 * 16 bytes.
 *
 * Profile: KVZ_CUDASIM_PROFILE names a file that receives, when the program
 * exits, what the host asked of the GPU: launches by kernel, GEMMs, sorts and
 * scans; the host's waits for the GPU, explicit (stream, event and device
 * synchronisation) and implicit (cudaMemcpy, a copy to pageable host memory,
 * cudaFree, cudaFreeHost); copies by direction with their bytes, pageable or
 * pinned; allocations. One "count bytes what" line each, sorted by `what`.
 * These are the GPU's fixed costs (a launch or a wait is microseconds on any
 * GPU), which the emulation can count exactly where it cannot time anything.
 *
 * The .cu files are compiled as C++ after tests/cudasim/cu2cpp.py rewrites
 * `k<<<grid, block, smem, stream>>>(args)` into kvz_sim_launch("k", k, grid, block,
 * smem, stream)(args) and `extern __shared__ T name[];` into a pointer to the
 * launch's dynamic shared memory. The headers in tests/cudasim/include stand
 * in for cuda_runtime.h, cuda_fp16.h, mma.h, cublas_v2.h and CUB's.
 */
#ifndef KVZ_TESTS_CUDASIM_H
#define KVZ_TESTS_CUDASIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- keywords ---------------------------------------------------------------- */
/* device code is compiled here: the device branches of shared inline
 * functions (kernels/host_device.h) run, as on the GPU */
#define KVZ_SIM_DEVICE 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static /* blocks run one at a time: one copy serves each block in turn */
#define __constant__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
/* cu2cpp.py rewrites a kernel's into kvz_sim::launch_bounds; one it left (in a
 * header it does not read) fails to compile instead of going unchecked */
#define __launch_bounds__(...) kvz_sim_launch_bounds_not_rewritten_by_cu2cpp

/* ---- runtime types --------------------------------------------------------- */
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct __align__(16) float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost,
    cudaMemcpyHostToDevice,
    cudaMemcpyDeviceToHost,
    cudaMemcpyDeviceToDevice,
    cudaMemcpyDefault
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMemoryPoolsSupported = 115 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
typedef struct kvz_sim_mem_pool *cudaMemPool_t;
typedef struct kvz_sim_stream *cudaStream_t;
typedef struct kvz_sim_event *cudaEvent_t;
#define cudaStreamNonBlocking 0x01
#define cudaEventDisableTiming 0x02

/* What cudaFuncGetAttributes reports of a kernel here: its static shared
 * memory is KVZ_CUDASIM_STATIC_SMEM (not sized by the emulation), its dynamic
 * limit is its own. */
struct cudaFuncAttributes {
    size_t sharedSizeBytes;
    int maxDynamicSharedSizeBytes, maxThreadsPerBlock;
};

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
    int multiProcessorCount, major, minor, warpSize, maxThreadsPerBlock;
};

const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int d);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaFreeAsync(void *p, cudaStream_t s);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
/* The device's one memory pool: its release threshold is kept and reported
 * (the emulation frees memory when its stream reaches the free, whatever the
 * threshold); trimming it waits for nothing and frees nothing more. */
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int d);
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t min_bytes_to_keep);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);

namespace kvz_sim {
cudaError_t set_max_dynamic_smem(const void *kernel, int bytes);
cudaError_t func_attributes(cudaFuncAttributes *attr, const void *kernel);
}
template <class F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, F *kernel)
{
    return kvz_sim::func_attributes(attr, (const void *)kernel);
}
template <class F> cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute attr, int value)
{
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return cudaErrorInvalidValue;
    return kvz_sim::set_max_dynamic_smem((const void *)kernel, value);
}

/* ---- inside a kernel ----------------------------------------------------------- */
extern thread_local uint3 kvz_sim_threadIdx, kvz_sim_blockIdx;
extern thread_local dim3 kvz_sim_blockDim, kvz_sim_gridDim;
#define threadIdx kvz_sim_threadIdx
#define blockIdx kvz_sim_blockIdx
#define blockDim kvz_sim_blockDim
#define gridDim kvz_sim_gridDim

void __syncthreads(void);
void __syncwarp(unsigned mask = 0xffffffffu);

namespace kvz_sim {
/* Lane exchange: publish `bytes` of this lane's value, wait for the warp, read lane `src`'s. */
void warp_exchange(const void *mine, void *out, size_t bytes, int src_lane, unsigned mask);
int lane(void);
unsigned warp_ballot(int pred);
void *warp_scratch(void); /* 1 KB of the calling warp's, for the emulation's own use */
void warp_converge(void);  /* the warp's lanes meet, as a shuffle does: no memory order for the race check */
/* The race check (ThreadSanitizer) told of an access the emulation made
 * without it seeing: kernel memory that a wmma call reads or writes. */
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_read_range(void *addr, unsigned long size);
extern "C" void __tsan_write_range(void *addr, unsigned long size);
static inline void race_read(const void *p, size_t bytes) { __tsan_read_range((void *)p, bytes); }
static inline void race_write(void *p, size_t bytes) { __tsan_write_range(p, bytes); }
#else
static inline void race_read(const void *, size_t) {}
static inline void race_write(void *, size_t) {}
#endif
void *dynamic_smem(void);
/* A kernel's __launch_bounds__, called first in its body: a block of more
 * threads ends the program, as a GPU refuses to launch it. */
void launch_bounds(long max_threads, int min_blocks = 0, int max_blocks_per_cluster = 0);
/* What the GPU requires of a WMMA load or store (the emulation would run it
 * anyway): a 256-bit aligned tile and a leading dimension of a multiple of 16
 * bytes. Ends the program otherwise. */
void wmma_check_tile(const void *p, unsigned ldm, size_t element_bytes, const char *op);
} // namespace kvz_sim

template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    int l = kvz_sim::lane();
    T r;
    kvz_sim::warp_exchange(&v, &r, sizeof v, (l & ~(width - 1)) + (src & (width - 1)), mask);
    return r;
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    int l = kvz_sim::lane(), s = l ^ lane_mask;
    T r;
    kvz_sim::warp_exchange(&v, &r, sizeof v, (s & ~(width - 1)) == (l & ~(width - 1)) ? s : l, mask);
    return r;
}
static inline unsigned __ballot_sync(unsigned mask, int pred) { return kvz_sim::warp_ballot(pred) & mask; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }

/* Fibers switch only at barriers, so a read-modify-write is never
 * interleaved; for the race check its load and store are atomic accesses,
 * which race with another thread's plain access to the same word but not with
 * another atomic. */
template <class T> T kvz_sim_atomic_load(T *p)
{
    T v;
    __atomic_load(p, &v, __ATOMIC_RELAXED);
    return v;
}
template <class T> void kvz_sim_atomic_store(T *p, T v) { __atomic_store(p, &v, __ATOMIC_RELAXED); }
template <class T> T atomicAdd(T *p, T v)
{
    T old = kvz_sim_atomic_load(p);
    kvz_sim_atomic_store(p, (T)(old + v));
    return old;
}
template <class T> T atomicMax(T *p, T v)
{
    T old = kvz_sim_atomic_load(p);
    kvz_sim_atomic_store(p, old > v ? old : v);
    return old;
}

/* Blocks run one after another, so what one block wrote is what the next
 * reads: a fence orders nothing more, and a load that skips L1 is a load. */
static inline void __threadfence(void) {}
template <class T> T __ldcg(const T *p) { return *p; }

/* glibc declares its own __expf */
static inline float kvz_sim_expf(float x) { return expf(x); }
#define __expf kvz_sim_expf
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
/* CUDA's min and max take mixed arithmetic types */
template <class A, class B> inline typename std::common_type<A, B>::type min(A a, B b)
{
    return b < a ? b : a;
}
template <class A, class B> inline typename std::common_type<A, B>::type max(A a, B b)
{
    return a < b ? b : a;
}
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
/* CUDA's reinterpretations of 32-bit values */
template <class To, class From> static inline To kvz_sim_bits_as(From v)
{
    static_assert(sizeof(To) == sizeof(From), "same size");
    To out;
    memcpy(&out, &v, sizeof out);
    return out;
}
static inline int __float_as_int(float f) { return kvz_sim_bits_as<int>(f); }
static inline float __int_as_float(int i) { return kvz_sim_bits_as<float>(i); }
static inline unsigned __float_as_uint(float f) { return kvz_sim_bits_as<unsigned>(f); }
static inline float __uint_as_float(unsigned u) { return kvz_sim_bits_as<float>(u); }

/* ---- launching ------------------------------------------------------------------ */
namespace kvz_sim {
/* Run `body` as every thread of the grid, a configuration check_launch passed. */
void run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *ctx);
/* The errors the GPU reports when a kernel is launched (also kept for cudaGetLastError). */
cudaError_t check_launch(const void *kernel, dim3 grid, dim3 block, size_t smem);
/* Work on stream s (a kernel, copy, memset, GEMM, sort, scan, stream-ordered
 * free): queued until the host waits for the stream, in stream order (see
 * "Stream work" above). On the legacy stream (NULL) it runs at once, after
 * every other stream's work. */
void enqueue(cudaStream_t s, std::function<void()> work);
/* Stop the run if a pointer among `bytes` bytes at `p` (any aligned 8-byte
 * word: a pointer argument or one inside a structure passed by value) points
 * into memory that cudaMallocAsync gave on another stream than `s`, before
 * that stream was synchronised: on the GPU the work on `s` might run before
 * the allocation exists. */
void check_stream_use(const void *p, size_t bytes, cudaStream_t s, const char *what);
/* One more `what` (and `bytes`) in the profile (KVZ_CUDASIM_PROFILE; see
 * "Profile" above); nothing when no profile is asked for. */
void tally(const char *what, uint64_t bytes = 0);
void tally_launch(const char *kernel); /* "launch <kernel>" */

template <class... P> struct launcher {
    const char *name;
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...args) const
    {
        std::tuple<typename std::decay<P>::type...> params(std::forward<A>(args)...);
        std::apply([&](auto &...p) { (check_stream_use(&p, sizeof p, stream, "a kernel's arguments"), ...); },
                   params);
        if (check_launch((const void *)kernel, grid, block, smem) != cudaSuccess)
            return;
        tally_launch(name);
        enqueue(stream, [k = kernel, g = grid, b = block, bytes = smem, params]() {
            auto call = [&]() { std::apply(k, params); };
            run_grid(g, b, bytes, [](void *c) { (*(decltype(call) *)c)(); }, &call);
        });
    }
};
} // namespace kvz_sim

template <class... P>
kvz_sim::launcher<P...> kvz_sim_launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block,
                                       size_t smem = 0, cudaStream_t stream = 0)
{
    return kvz_sim::launcher<P...>{name, kernel, grid, block, smem, stream};
}

#endif
