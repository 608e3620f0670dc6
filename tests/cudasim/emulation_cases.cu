/*
 * emulation_cases.cu — small CUDA programs that show the emulation's checks
 * at work (tests/cudasim/test_emulation.sh runs them and says what each must
 * print): stream work that waits for the host to wait for it, and the GPU's
 * undefined cases that stop the run. Each case is argv[1]; it prints what the
 * host saw. Built only against the emulation (make cudasim): on a GPU, the
 * stale reads below are races whose outcome is not fixed.
 */
#include <cuda_runtime.h>

#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess) {                                                                             \
            fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_));                                      \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

__global__ static void set_value(int *p, int v) { p[0] = v; }

__global__ static void __launch_bounds__(64) bounded_set_value(int *p, int v)
{
    if (threadIdx.x == 0)
        p[0] = v;
}

/* A warp's sum by shuffles, after `leaver` (if >= 0) has left the kernel; `mask` names the lanes. */
__global__ static void warp_sum(int *out, int leaver, unsigned mask)
{
    if ((int)threadIdx.x == leaver)
        return;
    int s = (int)threadIdx.x;
    for (int off = 16; off > 0; off >>= 1)
        s += __shfl_xor_sync(mask, s, off);
    if (threadIdx.x == 0)
        out[0] = s;
}

/* A copy back to pinned memory, read before and after waiting for it. */
static int read_before_wait(cudaStream_t s, int *dev)
{
    int *pinned;
    CHECK(cudaMallocHost((void **)&pinned, sizeof *pinned));
    pinned[0] = -1;
    set_value<<<1, 1, 0, s>>>(dev, 7);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(pinned, dev, sizeof *pinned, cudaMemcpyDeviceToHost, s));
    printf("before waiting: %d\n", pinned[0]);
    CHECK(cudaStreamSynchronize(s));
    printf("after waiting: %d\n", pinned[0]);
    CHECK(cudaFreeHost(pinned));
    return 0;
}

/* The host rewrites a copy's source before the copy has run: pinned memory is
 * read when the copy runs, pageable memory at the call (the driver stages it). */
static int source_rewritten(cudaStream_t s, int *dev, int pinned)
{
    int *src, pageable = 0, back = 0;
    if (pinned)
        CHECK(cudaMallocHost((void **)&src, sizeof *src));
    else
        src = &pageable;
    src[0] = 1;
    CHECK(cudaMemcpyAsync(dev, src, sizeof *src, cudaMemcpyHostToDevice, s));
    src[0] = 2;
    CHECK(cudaMemcpyAsync(&back, dev, sizeof back, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamSynchronize(s));
    printf("%s source: the device got %d\n", pinned ? "pinned" : "pageable", back);
    if (pinned)
        CHECK(cudaFreeHost(src));
    return 0;
}

/* Waiting for an event runs its stream up to the event, no further; device
 * memory is host memory in the emulation, so the host looks at it directly. */
static int event_wait(cudaStream_t s, int *dev)
{
    cudaEvent_t e;
    CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    set_value<<<1, 1, 0, s>>>(dev, 1);
    CHECK(cudaEventRecord(e, s));
    set_value<<<1, 1, 0, s>>>(dev, 2);
    CHECK(cudaEventSynchronize(e));
    printf("after the event: %d\n", dev[0]);
    CHECK(cudaStreamSynchronize(s));
    printf("after the stream: %d\n", dev[0]);
    CHECK(cudaEventDestroy(e));
    return 0;
}

/* One stream's result used by another that did not wait for it. */
static int other_stream(cudaStream_t s, int *dev)
{
    cudaStream_t t;
    int back = 0;
    CHECK(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking));
    CHECK(cudaMemsetAsync(dev, 0, sizeof *dev, s));
    CHECK(cudaStreamSynchronize(s));
    set_value<<<1, 1, 0, s>>>(dev, 5);
    CHECK(cudaMemcpyAsync(&back, dev, sizeof back, cudaMemcpyDeviceToHost, t));
    CHECK(cudaStreamSynchronize(t));
    printf("unsynchronised, the other stream read %d\n", back);
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaStreamDestroy(t));
    return 0;
}

/* A call that waits for the whole device runs every stream's work. */
static int device_wait(cudaStream_t s, int *dev)
{
    void *other;
    CHECK(cudaMalloc(&other, 16));
    set_value<<<1, 1, 0, s>>>(dev, 9);
    CHECK(cudaFree(other));
    printf("after cudaFree: %d\n", dev[0]);
    return 0;
}

static int shuffle(cudaStream_t s, int *dev, int leaver, unsigned mask)
{
    warp_sum<<<1, 32, 0, s>>>(dev, leaver, mask);
    CHECK(cudaGetLastError());
    CHECK(cudaStreamSynchronize(s));
    printf("warp sum: %d\n", dev[0]);
    return 0;
}

/* A kernel's shared-memory limit set once (it may be set again to the same
 * value), then, if `lower`, to less: what two threads' launches of different
 * sizes would race on. */
static int smem_limit(int lower)
{
    CHECK(cudaFuncSetAttribute(set_value, cudaFuncAttributeMaxDynamicSharedMemorySize, 60000));
    CHECK(cudaFuncSetAttribute(set_value, cudaFuncAttributeMaxDynamicSharedMemorySize, 60000));
    if (lower)
        CHECK(cudaFuncSetAttribute(set_value, cudaFuncAttributeMaxDynamicSharedMemorySize, 50000));
    printf("limit set\n");
    return 0;
}

/* A kernel bounded to 64 threads a block, launched with `threads`. */
static int launch_bounds(cudaStream_t s, int *dev, int threads)
{
    bounded_set_value<<<1, threads, 0, s>>>(dev, threads);
    CHECK(cudaGetLastError());
    CHECK(cudaStreamSynchronize(s));
    printf("launched %d threads\n", dev[0]);
    return 0;
}

/* A kernel that adds what nothing wrote (fresh device memory) to 1, and the
 * same of fresh pinned memory on the host: garbage that shows (NaN; INT_MAX as
 * an int), not a value near 0 that a sum or a tolerance would hide. */
__global__ static void add_one(float *out, const float *in) { out[0] = in[0] + 1.0f; }

static int fresh_memory(cudaStream_t s)
{
    float *in, *out, *pinned;
    CHECK(cudaMalloc((void **)&in, 2 * sizeof *in));
    CHECK(cudaMalloc((void **)&out, sizeof *out));
    CHECK(cudaMallocHost((void **)&pinned, sizeof *pinned));
    add_one<<<1, 1, 0, s>>>(out, in);
    CHECK(cudaGetLastError());
    float sum;
    int word;
    CHECK(cudaMemcpyAsync(&sum, out, sizeof sum, cudaMemcpyDeviceToHost, s));
    CHECK(cudaMemcpyAsync(&word, in + 1, sizeof word, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamSynchronize(s));
    printf("fresh device memory + 1: %g, as an int: %d\n", sum, word);
    printf("fresh pinned memory + 1: %g\n", pinned[0] + 1.0f);
    CHECK(cudaFreeHost(pinned));
    CHECK(cudaFree(out));
    CHECK(cudaFree(in));
    return 0;
}

int main(int argc, char **argv)
{
    const char *c = argc == 2 ? argv[1] : "";
    cudaStream_t s;
    int *dev;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK(cudaMalloc((void **)&dev, 16));
    int rc = !strcmp(c, "read-before-wait")    ? read_before_wait(s, dev)
             : !strcmp(c, "pinned-source")     ? source_rewritten(s, dev, 1)
             : !strcmp(c, "pageable-source")   ? source_rewritten(s, dev, 0)
             : !strcmp(c, "event-wait")        ? event_wait(s, dev)
             : !strcmp(c, "other-stream")      ? other_stream(s, dev)
             : !strcmp(c, "device-wait")       ? device_wait(s, dev)
             : !strcmp(c, "shuffle")           ? shuffle(s, dev, -1, 0xffffffffu)
             : !strcmp(c, "shuffle-left-lane") ? shuffle(s, dev, 5, 0xffffffffu)
             : !strcmp(c, "shuffle-mask")      ? shuffle(s, dev, -1, 0x7fffffffu)
             : !strcmp(c, "smem-limit")        ? smem_limit(0)
             : !strcmp(c, "smem-limit-lowered") ? smem_limit(1)
             : !strcmp(c, "launch-bounds")     ? launch_bounds(s, dev, 64)
             : !strcmp(c, "launch-bounds-over") ? launch_bounds(s, dev, 128)
             : !strcmp(c, "fresh-memory")      ? fresh_memory(s)
                                               : (fprintf(stderr, "usage: %s CASE (see test_emulation.sh)\n", argv[0]), 2);
    CHECK(cudaFree(dev));
    CHECK(cudaStreamDestroy(s));
    return rc;
}
