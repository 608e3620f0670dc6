/* cudasim.cpp — the CPU emulation of CUDA declared in cudasim.h: the block
 * scheduler (fibers), the runtime API, cuBLAS's GEMM. */
#include "cudasim.h"
#include "common/splitmix.h"
#include "include/cublas_v2.h"
#include "include/cuda_fp16.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

/* Under ASan, stack switches are announced to it (cudasim.h). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define KVZ_SIM_ASAN 1
#endif

/* The race check (make test-cudasim-race): the kernels are built with
 * -fsanitize=thread, this file without it (the scheduler's own state is shared
 * by the fibers with nothing ThreadSanitizer would see ordering it) but with
 * KVZ_SIM_TSAN, so that each thread of a block is a fiber to ThreadSanitizer
 * and only the kernel's barriers order its threads (cudasim.h). */
#if defined(KVZ_SIM_TSAN)
#include <sanitizer/tsan_interface.h>
extern "C" void __tsan_ignore_thread_begin(void); /* exported, not declared by GCC 12's header */
extern "C" void __tsan_ignore_thread_end(void);
#define TSAN_ONLY(x) x
#else
#define TSAN_ONLY(x)
#endif

thread_local uint3 kvz_sim_threadIdx, kvz_sim_blockIdx;
thread_local dim3 kvz_sim_blockDim, kvz_sim_gridDim;

namespace kvz_sim {
namespace {

[[noreturn]] void die(const char *what)
{
    fprintf(stderr, "cudasim: %s\n", what);
    abort();
}

const size_t STACK_BYTES = 256 * 1024;
const int MAX_THREADS = 1024;
const size_t DEFAULT_SMEM = 48 * 1024;
size_t smem_optin_limit(); /* KVZ_CUDASIM_SMEM_OPTIN */
size_t static_smem();      /* KVZ_CUDASIM_STATIC_SMEM */

/* Switch stacks: save the callee-saved registers on the current stack and its
 * pointer in *save, then continue on `next` (x86-64 System V; what ucontext's
 * swapcontext does without its signal-mask system call, which dominated). */
#if !defined(__x86_64__)
#error "cudasim's fiber switch is written for x86-64"
#endif
extern "C" void kvz_sim_switch(void **save, void *next);
asm(R"(
    .text
    .globl kvz_sim_switch
    .type kvz_sim_switch, @function
kvz_sim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size kvz_sim_switch, .-kvz_sim_switch
)");

struct fiber {
    void *sp; /* saved stack pointer while switched out */
    unsigned char *stack; /* usable part: STACK_BYTES less the guard page */
    uint3 tid;
    int linear;
    bool done;
};

/* Threads that wait for each other: the block's, or one warp's. */
struct barrier {
    int live, arrived; /* threads that have not ended; of them, those waiting */
    unsigned gen;      /* bumped when the last of them arrives */
    /* for the race check: what the threads arriving in generation g publish,
     * at sync[g % 2], for those leaving it (never the next generation's) */
    char sync[2];
};

struct warp_state {
    barrier bar;
    unsigned char slot[32][16];
    float scratch[256];
};

/* The block being run: its fibers and barriers. */
struct block_state {
    int n_threads;
    barrier bar;
    unsigned long events; /* barriers released and threads ended: progress */
    std::vector<warp_state> warps;
    std::vector<fiber> threads;
    std::vector<uint32_t> order; /* the threads' order in a round, reused across the grid's blocks */
    int current;
    void *scheduler_sp;
    void (*body)(void *);
    void *ctx;
    unsigned char *smem;
};

std::mutex launch_lock;
thread_local block_state *blk;
thread_local cudaError_t last_error = cudaSuccess;
unsigned char *stacks; /* MAX_THREADS stacks, mapped once */
const size_t GUARD_BYTES = 4096;
std::map<const void *, int> smem_optin;
/* the launching thread's stack, as ASan reports it when a fiber first runs */
thread_local const void *host_stack;
thread_local size_t host_stack_bytes;
#if defined(KVZ_SIM_TSAN)
void *tsan_fibers[MAX_THREADS]; /* thread t of every block, as ThreadSanitizer knows it; made once */
thread_local void *tsan_host;   /* the launching thread */
/* A block's threads start after everything the launching thread did, and it
 * continues after all of them ended: blocks are ordered one after the other,
 * so the check covers the threads of a block (the reverse and shuffled block
 * orders remain for races between blocks). */
char tsan_block_start, tsan_block_end;
#endif

/* Save the running stack in *save_sp and continue on next_sp, whose stack is
 * [next_stack, +next_bytes); `leaving` if the running fiber never resumes.
 * Returns when something switches back. */
void switch_stacks(void **save_sp, void *next_sp, const void *next_stack, size_t next_bytes, bool leaving)
{
#ifdef KVZ_SIM_ASAN
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(leaving ? nullptr : &fake_stack, next_stack, next_bytes);
#endif
    kvz_sim_switch(save_sp, next_sp);
#ifdef KVZ_SIM_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

void to_scheduler(bool leaving)
{
    fiber &f = blk->threads[(size_t)blk->current];
    TSAN_ONLY(__tsan_switch_to_fiber(tsan_host, __tsan_switch_to_fiber_no_sync));
    switch_stacks(&f.sp, blk->scheduler_sp, host_stack, host_stack_bytes, leaving);
}

void yield()
{
    to_scheduler(false);
}

/* Release the waiting threads once every live thread has arrived. */
bool release_if_all_arrived(barrier &b)
{
    if (b.arrived == 0 || b.arrived < b.live)
        return false;
    b.arrived = 0;
    b.gen++;
    blk->events++;
    return true;
}

/* The calling thread arrives, and waits for the others (other threads run
 * meanwhile). For the race check, a barrier that `orders` memory makes what
 * each thread did before it happen before what every thread does after it
 * (__syncthreads, __syncwarp); a shuffle or ballot only meets the warp. */
void arrive_and_wait(barrier &b, bool orders = true)
{
    unsigned g = b.gen;
    TSAN_ONLY(if (orders) __tsan_release(&b.sync[g % 2]));
    b.arrived++;
    if (!release_if_all_arrived(b))
        while (b.gen == g)
            yield();
    TSAN_ONLY(if (orders) __tsan_acquire(&b.sync[g % 2]));
}

void fiber_main()
{
    block_state *b = blk;
    TSAN_ONLY(__tsan_acquire(&tsan_block_start));
    b->body(b->ctx);
    TSAN_ONLY(__tsan_release(&tsan_block_end));
    fiber &f = b->threads[(size_t)b->current];
    f.done = true;
    b->events++;
    barrier &wb = b->warps[(size_t)(f.linear / 32)].bar;
    b->bar.live--, wb.live--; /* the others no longer wait for it */
    release_if_all_arrived(b->bar);
    release_if_all_arrived(wb);
}

/* A fiber's first frame: run the thread, then return to the scheduler for good. */
void fiber_entry()
{
#ifdef KVZ_SIM_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &host_stack, &host_stack_bytes);
#endif
    fiber_main();
    to_scheduler(true);
    die("a finished thread was resumed");
}

void set_thread(const fiber &f)
{
    kvz_sim_threadIdx = f.tid;
}

warp_state &my_warp()
{
    if (!blk)
        die("a barrier or warp operation outside a kernel");
    return blk->warps[(size_t)(blk->threads[(size_t)blk->current].linear / 32)];
}

/* The order in which the blocks of a grid, and the threads of a block between
 * two barriers, run: KVZ_CUDASIM_ORDER=forward (0, 1, ...; the default),
 * reverse, or shuffle (a new permutation each time, from a fixed seed). A
 * kernel whose result changes with it has a race: a thread reads what another
 * thread, or another block, writes with nothing ordering the two. */
enum class run_order { forward, reverse, shuffle };

run_order order_from_env()
{
    const char *v = getenv("KVZ_CUDASIM_ORDER");
    if (!v || !*v || !strcmp(v, "forward"))
        return run_order::forward;
    if (!strcmp(v, "reverse"))
        return run_order::reverse;
    if (!strcmp(v, "shuffle"))
        return run_order::shuffle;
    die("KVZ_CUDASIM_ORDER must be forward, reverse or shuffle");
}

const run_order order = order_from_env();
uint64_t shuffle_state = 0x6b767a; /* launches are serialised: one stream for all */

/* seq: 0 .. size-1 in the order asked for */
void order_sequence(std::vector<uint32_t> &seq)
{
    size_t n = seq.size();
    for (size_t i = 0; i < n; i++)
        seq[i] = (uint32_t)(order == run_order::reverse ? n - 1 - i : i);
    if (order == run_order::shuffle)
        for (size_t i = n - 1; i > 0 && i < n; i--)
            std::swap(seq[i], seq[(size_t)(kvz_splitmix64(&shuffle_state) % (uint64_t)(i + 1))]);
}

void run_block(block_state &b)
{
    int n = b.n_threads;
    b.bar.live = n;
    b.bar.arrived = 0;
    for (size_t i = 0; i < b.warps.size(); i++) {
        b.warps[i].bar.live = (int)(n - 32 * (int)i < 32 ? n - 32 * (int)i : 32);
        b.warps[i].bar.arrived = 0;
    }
    for (int t = 0; t < n; t++) {
        fiber &f = b.threads[(size_t)t];
        f.done = false;
        /* a fresh stack as kvz_sim_switch leaves one: six registers, then the
         * return address, 16-byte aligned as a call would leave it */
        f.stack = stacks + (size_t)t * STACK_BYTES + GUARD_BYTES;
        uintptr_t top = ((uintptr_t)(f.stack + STACK_BYTES - GUARD_BYTES)) & ~(uintptr_t)15;
        void **sp = (void **)(top - 16);
        sp[0] = (void *)fiber_entry;
        sp -= 6;
        memset(sp, 0, 6 * sizeof *sp);
        f.sp = sp;
    }
    int remaining = n;
    while (remaining > 0) {
        unsigned long events_before = b.events;
        order_sequence(b.order);
        for (uint32_t t : b.order) {
            fiber &f = b.threads[(size_t)t];
            if (f.done)
                continue;
            b.current = t;
            set_thread(f);
            TSAN_ONLY(__tsan_switch_to_fiber(tsan_fibers[t], __tsan_switch_to_fiber_no_sync));
            switch_stacks(&b.scheduler_sp, f.sp, f.stack, STACK_BYTES - GUARD_BYTES, false);
            remaining -= f.done;
        }
        if (remaining > 0 && b.events == events_before)
            die("deadlock: every live thread of the block waits at a barrier that the others never reach "
                "(__syncthreads or a warp operation under a condition that differs between threads)");
    }
}

} // namespace

int lane(void)
{
    return blk->threads[(size_t)blk->current].linear % 32;
}

void warp_exchange(const void *mine, void *out, size_t bytes, int src_lane, unsigned mask)
{
    warp_state &w = my_warp();
    int l = lane();
    if (bytes > sizeof w.slot[0])
        die("a shuffle of more than 16 bytes");
    if (!(mask >> l & 1u))
        die("a lane calls a shuffle whose mask leaves it out (undefined on the GPU)");
    /* registers on the GPU: the race check does not see these copies */
    TSAN_ONLY(__tsan_ignore_thread_begin());
    memcpy(w.slot[l], mine, bytes);
    TSAN_ONLY(__tsan_ignore_thread_end());
    arrive_and_wait(w.bar, false);
    int warp_base = blk->threads[(size_t)blk->current].linear - l;
    /* the GPU gives an undefined value for a lane that has left the kernel or is not in the mask */
    if (warp_base + src_lane >= blk->n_threads || blk->threads[(size_t)(warp_base + src_lane)].done ||
        !(mask >> src_lane & 1u)) {
        static char message[160];
        snprintf(message, sizeof message, "thread %d shuffles from thread %d, which %s", warp_base + l,
                 warp_base + src_lane,
                 warp_base + src_lane >= blk->n_threads ? "the block does not have"
                 : !(mask >> src_lane & 1u)             ? "the shuffle's mask leaves out"
                                                        : "has left the kernel");
        die(message);
    }
    TSAN_ONLY(__tsan_ignore_thread_begin());
    memcpy(out, w.slot[src_lane], bytes);
    TSAN_ONLY(__tsan_ignore_thread_end());
    arrive_and_wait(w.bar, false);
}

unsigned warp_ballot(int pred)
{
    warp_state &w = my_warp();
    int l = lane();
    w.slot[l][0] = pred != 0;
    arrive_and_wait(w.bar, false);
    int warp_base = blk->threads[(size_t)blk->current].linear - l;
    unsigned bits = 0;
    for (int i = 0; i < 32 && warp_base + i < blk->n_threads; i++)
        if (!blk->threads[(size_t)(warp_base + i)].done && w.slot[i][0])
            bits |= 1u << i;
    arrive_and_wait(w.bar, false);
    return bits;
}

void warp_converge(void)
{
    arrive_and_wait(my_warp().bar, false);
}

void launch_bounds(long max_threads, int, int)
{
    long threads = (long)kvz_sim_blockDim.x * kvz_sim_blockDim.y * kvz_sim_blockDim.z;
    if (threads > max_threads) {
        char what[160];
        snprintf(what, sizeof what, "a block of %ld threads launches a kernel whose __launch_bounds__ is %ld threads",
                 threads, max_threads);
        die(what);
    }
}

void wmma_check_tile(const void *p, unsigned ldm, size_t element_bytes, const char *op)
{
    char what[160];
    if ((uintptr_t)p % 32 != 0) {
        snprintf(what, sizeof what, "%s: the tile at %p is not 256-bit aligned", op, p);
        die(what);
    }
    if ((size_t)ldm * element_bytes % 16 != 0) {
        snprintf(what, sizeof what, "%s: a leading dimension of %u elements of %zu bytes is not a multiple of 16 "
                 "bytes", op, ldm, element_bytes);
        die(what);
    }
}

void *warp_scratch(void)
{
    return my_warp().scratch;
}

void *dynamic_smem(void)
{
    if (!blk)
        die("dynamic shared memory outside a kernel");
    return blk->smem;
}

cudaError_t set_max_dynamic_smem(const void *kernel, int bytes)
{
    if (bytes < 0 || (size_t)bytes + static_smem() > smem_optin_limit())
        return cudaErrorInvalidValue; /* as the GPU: the limit and the static shared memory within the opt-in */
    std::lock_guard<std::mutex> g(launch_lock);
    auto it = smem_optin.find(kernel);
    /* The limit is one per kernel for the whole process: a kernel whose
     * launches set different values can have another thread lower it between
     * one thread's set and its launch, which then fails on a GPU. */
    if (it != smem_optin.end() && it->second != bytes) {
        char what[200];
        snprintf(what, sizeof what, "a kernel's dynamic shared-memory limit set to %d bytes after %d: sessions "
                 "on other threads race on it (set the most any launch needs, always)", bytes, it->second);
        die(what);
    }
    smem_optin[kernel] = bytes;
    return cudaSuccess;
}

cudaError_t check_launch(const void *kernel, dim3 grid, dim3 block, size_t smem)
{
    long threads = (long)block.x * block.y * block.z;
    cudaError_t err = cudaSuccess;
    if (threads < 1 || threads > MAX_THREADS || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
        grid.y > 65535 || grid.z > 65535)
        err = cudaErrorInvalidConfiguration;
    if (err == cudaSuccess && smem + static_smem() > DEFAULT_SMEM) {
        std::lock_guard<std::mutex> g(launch_lock);
        auto it = smem_optin.find(kernel);
        if (it == smem_optin.end() || (size_t)it->second < smem)
            err = cudaErrorInvalidValue; /* as the GPU: more than 48 KB needs cudaFuncSetAttribute */
    }
    if (err != cudaSuccess)
        last_error = err;
    return err;
}

void run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *ctx)
{
    long threads = (long)block.x * block.y * block.z;
    std::lock_guard<std::mutex> g(launch_lock);
    if (!stacks) {
        stacks = (unsigned char *)mmap(NULL, STACK_BYTES * MAX_THREADS, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (stacks == MAP_FAILED)
            die("cannot map the fibers' stacks");
        /* a page at the bottom of each stack faults instead of overflowing into the next */
        for (int t = 0; t < MAX_THREADS; t++)
            if (mprotect(stacks + (size_t)t * STACK_BYTES, GUARD_BYTES, PROT_NONE) != 0)
                die("cannot protect the fibers' stacks");
    }
#if defined(KVZ_SIM_TSAN)
    for (long t = 0; t < threads; t++)
        if (!tsan_fibers[t])
            tsan_fibers[t] = __tsan_create_fiber(0);
    tsan_host = __tsan_get_current_fiber();
#endif
    block_state b;
    b.n_threads = (int)threads;
    b.bar.gen = 0;
    b.events = 0;
    b.current = 0;
    b.body = body;
    b.ctx = ctx;
    b.warps.resize((size_t)((threads + 31) / 32));
    b.threads.resize((size_t)threads);
    b.order.resize((size_t)threads);
    for (unsigned z = 0, t = 0; z < block.z; z++)
        for (unsigned y = 0; y < block.y; y++)
            for (unsigned x = 0; x < block.x; x++, t++)
                b.threads[t].tid = uint3{x, y, z}, b.threads[t].linear = (int)t;
    /* exactly the bytes asked for, so that ASan sees a read past them */
    size_t smem_bytes = smem > 0 ? smem : 1;
    void *smem_block = nullptr;
    if (posix_memalign(&smem_block, 128, smem_bytes) != 0)
        die("out of memory for shared memory");
    b.smem = (unsigned char *)smem_block;
    block_state *outer = blk;
    blk = &b;
    kvz_sim_blockDim = block;
    kvz_sim_gridDim = grid;
    uint64_t n_blocks = (uint64_t)grid.x * grid.y * grid.z;
    if (n_blocks > UINT32_MAX)
        die("a grid of more than 2^32 blocks");
    std::vector<uint32_t> blocks((size_t)n_blocks);
    order_sequence(blocks);
    for (uint32_t i : blocks) {
        kvz_sim_blockIdx = uint3{i % grid.x, i / grid.x % grid.y, (unsigned)(i / ((uint64_t)grid.x * grid.y))};
        /* shared memory starts each block as garbage, as on the GPU: NaN bytes show reads of it */
        memset(b.smem, 0xff, smem_bytes);
        TSAN_ONLY(__tsan_release(&tsan_block_start));
        run_block(b);
        TSAN_ONLY(__tsan_acquire(&tsan_block_end));
    }
    blk = outer;
    free(b.smem);
}

} // namespace kvz_sim

void __syncthreads(void)
{
    kvz_sim::my_warp(); /* checks that barriers are possible here */
    kvz_sim::arrive_and_wait(kvz_sim::blk->bar);
}

void __syncwarp(unsigned mask)
{
    kvz_sim::arrive_and_wait(kvz_sim::my_warp().bar);
}

/* Device and pinned host memory in use, and their limits (cudaMalloc, cudaMallocHost below). */
namespace kvz_sim {
namespace {
/* Memory counted against a limit: device memory, and pinned host memory apart. */
struct counted_block {
    size_t bytes;
    cudaStream_t stream; /* cudaMallocAsync's stream; NULL for cudaMalloc and cudaMallocHost */
    bool stream_ordered;
    bool pending;        /* stream-ordered, and its stream not synchronised since: other streams may not use it */
    uint64_t generation; /* the how-manieth stream-ordered allocation of its stream */
};
struct counted_memory {
    std::map<void *, counted_block> blocks;
    size_t used, peak;
};
std::mutex memory_lock;
counted_memory device_memory, pinned_memory;
std::map<cudaStream_t, uint64_t> stream_allocations; /* each stream's stream-ordered allocations so far */

/* The block of m that holds address p, or NULL (the caller holds memory_lock). */
const counted_block *block_containing(const counted_memory &m, const void *p)
{
    auto it = m.blocks.upper_bound((void *)p);
    if (it == m.blocks.begin())
        return nullptr;
    --it;
    return (const char *)p < (const char *)it->first + it->second.bytes ? &it->second : nullptr;
}

/* The stream-ordered allocations of stream s numbered below `before` become usable everywhere. */
void make_visible(cudaStream_t s, uint64_t before)
{
    for (auto &b : device_memory.blocks)
        if (b.second.pending && b.second.stream == s && b.second.generation < before)
            b.second.pending = false;
}

/* 256-byte aligned, exactly `bytes` long (ASan sees a read past them) */
cudaError_t counted_alloc(counted_memory &m, size_t limit, void **p, size_t bytes, bool stream_ordered = false,
                          cudaStream_t stream = nullptr)
{
    *p = nullptr;
    std::lock_guard<std::mutex> g(memory_lock);
    if (bytes > limit - m.used || posix_memalign(p, 256, bytes > 0 ? bytes : 1) != 0)
        return last_error = cudaErrorMemoryAllocation;
    m.blocks[*p] = counted_block{bytes, stream, stream_ordered, stream_ordered,
                                 stream_ordered ? ++stream_allocations[stream] : 0};
    m.used += bytes;
    if (m.used > m.peak)
        m.peak = m.used;
    return cudaSuccess;
}

/* freeing a pointer that the matching allocation did not return fails, as on
 * the GPU; freeing stream-ordered memory with cudaFree, memory from cudaMalloc
 * with cudaFreeAsync, or with cudaFreeAsync on another stream than the
 * allocation's stops the run (kvz frees memory as and where it allocated it,
 * whatever the GPU would take) */
cudaError_t counted_free(counted_memory &m, void *p, bool stream_ordered = false, cudaStream_t stream = nullptr,
                         bool release = true)
{
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::mutex> g(memory_lock);
    auto it = m.blocks.find(p);
    if (it == m.blocks.end())
        return last_error = cudaErrorInvalidValue;
    if (it->second.stream_ordered != stream_ordered)
        die(stream_ordered ? "cudaFreeAsync of memory from cudaMalloc" : "cudaFree of memory from cudaMallocAsync");
    if (it->second.stream != stream)
        die("cudaFreeAsync on another stream than the cudaMallocAsync of the memory");
    m.used -= it->second.bytes;
    m.blocks.erase(it);
    if (release) /* else the caller does, in stream order */
        free(p);
    return cudaSuccess;
}

/* KVZ_CUDASIM_PEAK_FILE: where the most device memory in use at once is written at exit */
void write_peak()
{
    const char *path = getenv("KVZ_CUDASIM_PEAK_FILE");
    FILE *f = path && *path ? fopen(path, "w") : nullptr;
    if (f) {
        fprintf(f, "%zu\n", device_memory.peak);
        fclose(f);
    }
}

/* The profile (cudasim.h): what -> (count, bytes), written at exit. */
struct profile_entry {
    uint64_t count, bytes;
};
std::mutex profile_lock;
std::map<std::string, profile_entry> profile;

const char *profile_path()
{
    static const char *path = getenv("KVZ_CUDASIM_PROFILE");
    return path && *path ? path : nullptr;
}

void write_profile()
{
    std::lock_guard<std::mutex> g(profile_lock);
    FILE *f = fopen(profile_path(), "w");
    if (!f) {
        fprintf(stderr, "cudasim: cannot write the profile to %s\n", profile_path());
        return;
    }
    for (const auto &e : profile)
        fprintf(f, "%llu %llu %s\n", (unsigned long long)e.second.count, (unsigned long long)e.second.bytes,
                e.first.c_str());
    fclose(f);
}

/* A byte count from the environment (a number, K/M/G suffixes), or `fallback`. */
size_t bytes_from_env(const char *name, size_t fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (end == v || (shift && *++end) || *end || n == 0 || n > (1ull << (63 - shift))) {
        static char message[128];
        snprintf(message, sizeof message, "%s must be a positive number of bytes, K, M or G", name);
        die(message);
    }
    return (size_t)(n << shift);
}

/* KVZ_CUDASIM_CC: the emulated device's compute capability, "9.0" (an
 * H100's) by default: an older one tests kvz's refusal of a GPU its build has
 * no code for. */
void compute_capability(int *major, int *minor)
{
    const char *v = getenv("KVZ_CUDASIM_CC");
    *major = 9;
    *minor = 0;
    if (v && *v && (sscanf(v, "%d.%d", major, minor) != 2 || *major < 1 || *minor < 0 || *minor > 9))
        die("KVZ_CUDASIM_CC must be a compute capability such as 9.0");
}

/* KVZ_CUDASIM_SMS: the emulated device's multiprocessors (4 by default; an
 * H100 has 132): how many blocks kvz's launches plan to keep busy, and so how
 * they split work, not how the emulation runs them. */
int sm_count()
{
    static const int count = [] {
        const char *v = getenv("KVZ_CUDASIM_SMS");
        if (!v || !*v)
            return 4;
        char *end;
        long n = strtol(v, &end, 10);
        if (end == v || *end || n < 1 || n > 1024)
            die("KVZ_CUDASIM_SMS must be a number of multiprocessors, 1 to 1024");
        return (int)n;
    }();
    return count;
}

/* KVZ_CUDASIM_STATIC_SMEM: the static shared memory every kernel is taken to
 * have (0 by default; the emulation does not size a kernel's own), which a GPU
 * counts against the block's shared memory with the dynamic: set to at least
 * what any kernel declares, it checks that limits and launches leave room for it. */
size_t static_smem()
{
    static const size_t bytes = [] {
        size_t n = bytes_from_env("KVZ_CUDASIM_STATIC_SMEM", 0);
        if (n >= DEFAULT_SMEM)
            die("KVZ_CUDASIM_STATIC_SMEM must be under 48K bytes");
        return n;
    }();
    return bytes;
}

/* KVZ_CUDASIM_SMEM_OPTIN: the most shared memory a block may have (an H100's
 * 227 KB by default; 99 KB on the sm_86 and sm_89 GPUs, 163 KB on an A100). */
size_t smem_optin_limit()
{
    static const size_t limit = [] {
        size_t bytes = bytes_from_env("KVZ_CUDASIM_SMEM_OPTIN", 227 * 1024);
        if (bytes < DEFAULT_SMEM || bytes > 1024 * 1024)
            die("KVZ_CUDASIM_SMEM_OPTIN must be 48K to 1M bytes");
        return bytes;
    }();
    return limit;
}

size_t device_limit()
{
    static const size_t limit = bytes_from_env("KVZ_CUDASIM_DEVICE_BYTES", (size_t)16 << 30);
    return limit;
}

size_t pinned_limit()
{
    static const size_t limit = bytes_from_env("KVZ_CUDASIM_PINNED_BYTES", SIZE_MAX);
    return limit;
}
} // namespace
} // namespace kvz_sim

namespace kvz_sim {

cudaError_t func_attributes(cudaFuncAttributes *attr, const void *kernel)
{
    std::lock_guard<std::mutex> g(launch_lock);
    auto it = smem_optin.find(kernel);
    attr->sharedSizeBytes = static_smem();
    attr->maxDynamicSharedSizeBytes = it != smem_optin.end() ? it->second : (int)DEFAULT_SMEM;
    attr->maxThreadsPerBlock = MAX_THREADS;
    return cudaSuccess;
}

void check_stream_use(const void *p, size_t bytes, cudaStream_t s, const char *what)
{
    std::lock_guard<std::mutex> g(memory_lock);
    for (size_t at = 0; at + sizeof(uintptr_t) <= bytes; at += sizeof(uintptr_t)) {
        uintptr_t word;
        memcpy(&word, (const char *)p + at, sizeof word);
        const counted_block *b = block_containing(device_memory, (const void *)word);
        if (b && b->pending && b->stream != s) {
            char message[192];
            snprintf(message, sizeof message,
                     "%s: memory from cudaMallocAsync on another stream, which was not synchronised since", what);
            die(message);
        }
    }
}
/* Stream work (cudasim.h): each stream's queue, run by whichever host thread
 * waits for the stream, under the queue's lock (so a thread that waits for a
 * stream another thread is running returns only when that work is done). */
namespace {
struct stream_queue {
    std::mutex lock; /* taken before launch_lock and memory_lock, never inside them */
    std::deque<std::function<void()>> work;
    uint64_t queued = 0, done = 0; /* work ever queued, and run */
};
std::mutex queues_lock;
std::map<cudaStream_t, std::unique_ptr<stream_queue>> queues;

bool defer_from_env()
{
    const char *v = getenv("KVZ_CUDASIM_DEFER");
    if (!v || !*v || !strcmp(v, "1"))
        return true;
    if (!strcmp(v, "0"))
        return false;
    die("KVZ_CUDASIM_DEFER must be 1 (stream work waits for the host to wait for it) or 0 (it runs at once)");
}
const bool deferring = defer_from_env();

stream_queue *queue_of(cudaStream_t s)
{
    std::lock_guard<std::mutex> g(queues_lock);
    std::unique_ptr<stream_queue> &q = queues[s];
    if (!q)
        q.reset(new stream_queue);
    return q.get();
}

void run_all_queues();

/* Run stream s's work up to the `until`-th queued; for the legacy stream
 * (NULL), which waits for every other, all work. */
void run_queue(cudaStream_t s, uint64_t until = UINT64_MAX)
{
    if (!s) {
        run_all_queues();
        return;
    }
    stream_queue *q = queue_of(s);
    std::lock_guard<std::mutex> g(q->lock);
    while (!q->work.empty() && q->done < until) {
        std::function<void()> w = std::move(q->work.front());
        q->work.pop_front();
        w();
        q->done++;
    }
}

void run_all_queues()
{
    std::vector<cudaStream_t> streams;
    {
        std::lock_guard<std::mutex> g(queues_lock);
        for (const auto &q : queues)
            streams.push_back(q.first);
    }
    for (cudaStream_t s : streams)
        run_queue(s);
}

/* How many pieces of work stream s has had queued so far (an event's place in it). */
uint64_t queued_so_far(cudaStream_t s)
{
    stream_queue *q = queue_of(s);
    std::lock_guard<std::mutex> g(q->lock);
    return q->queued;
}

bool is_pinned(const void *p)
{
    std::lock_guard<std::mutex> g(memory_lock);
    return block_containing(pinned_memory, p) != nullptr;
}
} // namespace

void tally(const char *what, uint64_t bytes)
{
    if (!profile_path())
        return;
    std::lock_guard<std::mutex> g(profile_lock);
    static bool registered = atexit(write_profile) == 0;
    (void)registered;
    profile_entry &e = profile[what];
    e.count++;
    e.bytes += bytes;
}

void tally_launch(const char *kernel)
{
    if (profile_path())
        tally(("launch " + std::string(kernel)).c_str());
}

void enqueue(cudaStream_t s, std::function<void()> work)
{
    if (!deferring || !s) {
        if (deferring)
            run_queue(s);
        work();
        return;
    }
    stream_queue *q = queue_of(s);
    std::lock_guard<std::mutex> g(q->lock);
    q->work.push_back(std::move(work));
    q->queued++;
}
} // namespace kvz_sim

/* ---- runtime API ---------------------------------------------------------------- */
const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = kvz_sim::last_error;
    kvz_sim::last_error = cudaSuccess;
    return e;
}

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cudasim (CUDA emulated on the CPU)");
    p->totalGlobalMem = kvz_sim::device_limit();
    p->sharedMemPerBlock = kvz_sim::DEFAULT_SMEM;
    p->sharedMemPerBlockOptin = kvz_sim::smem_optin_limit();
    p->multiProcessorCount = kvz_sim::sm_count();
    kvz_sim::compute_capability(&p->major, &p->minor);
    p->warpSize = 32;
    p->maxThreadsPerBlock = kvz_sim::MAX_THREADS;
    return cudaSuccess;
}

/* Device memory is host memory, counted against KVZ_CUDASIM_DEVICE_BYTES
 * (a number, K/M/G suffixes; 16G by default), so that running out of it can be
 * tested. Fresh allocations hold garbage, as on the GPU (whose pools hand
 * back what an earlier allocation left): every 32-bit word 0x7fffffff, a NaN
 * read as an f32, f16 or f64 and INT_MAX as an int, so that a kernel or a
 * product that reads memory nothing wrote gives NaN or a huge count instead of
 * a value near 0 (0xa5 bytes, the fill before, are -2.9e-16 as an f32: added
 * to a sum or taken as a score, they passed every tolerance). Freeing a
 * pointer cudaMalloc did not return fails, as on the GPU. */
namespace kvz_sim {
namespace {
void fill_garbage(void *p, size_t bytes)
{
    uint32_t *w = (uint32_t *)p; /* 256-byte aligned (counted_alloc) */
    for (size_t i = 0; i < bytes / 4; i++)
        w[i] = 0x7fffffffu;
    static const unsigned char tail[3] = {0xff, 0xff, 0xff}; /* the word's low bytes, little-endian */
    memcpy((unsigned char *)p + bytes / 4 * 4, tail, bytes % 4);
}

cudaError_t device_alloc(void **p, size_t bytes, bool stream_ordered, cudaStream_t s)
{
    cudaError_t e = counted_alloc(device_memory, device_limit(), p, bytes, stream_ordered, s);
    if (e != cudaSuccess)
        return e;
    fill_garbage(*p, bytes);
    static bool peak_registered = atexit(write_peak) == 0;
    (void)peak_registered;
    return cudaSuccess;
}
} // namespace
} // namespace kvz_sim

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    kvz_sim::tally("alloc cudaMalloc", bytes);
    return kvz_sim::device_alloc(p, bytes, false, nullptr);
}

/* waits for all work on the device first, as the GPU's does */
cudaError_t cudaFree(void *p)
{
    kvz_sim::tally("wait (implicit) cudaFree");
    kvz_sim::run_all_queues();
    return counted_free(kvz_sim::device_memory, p);
}

/* Stream-ordered memory: the emulated device has memory pools */
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s)
{
    kvz_sim::tally("alloc cudaMallocAsync", bytes);
    return kvz_sim::device_alloc(p, bytes, true, s);
}

/* The memory is no longer counted at once, and released when the stream reaches the free. */
cudaError_t cudaFreeAsync(void *p, cudaStream_t s)
{
    kvz_sim::tally("free cudaFreeAsync");
    cudaError_t e = counted_free(kvz_sim::device_memory, p, true, s, false);
    if (e == cudaSuccess && p)
        kvz_sim::enqueue(s, [p]() { free(p); });
    return e;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int d)
{
    if (d != 0 || attr != cudaDevAttrMemoryPoolsSupported)
        return kvz_sim::last_error = cudaErrorInvalidValue;
    *value = 1;
    return cudaSuccess;
}

struct kvz_sim_mem_pool {
    std::atomic<uint64_t> release_threshold{0};
};
static kvz_sim_mem_pool the_pool;

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int d)
{
    if (d != 0)
        return kvz_sim::last_error = cudaErrorInvalidValue;
    *pool = &the_pool;
    return cudaSuccess;
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value)
{
    if (pool != &the_pool || attr != cudaMemPoolAttrReleaseThreshold)
        return kvz_sim::last_error = cudaErrorInvalidValue;
    *(uint64_t *)value = pool->release_threshold.load();
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value)
{
    if (pool != &the_pool || attr != cudaMemPoolAttrReleaseThreshold)
        return kvz_sim::last_error = cudaErrorInvalidValue;
    pool->release_threshold.store(*(const uint64_t *)value);
    return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t)
{
    if (pool != &the_pool)
        return kvz_sim::last_error = cudaErrorInvalidValue;
    kvz_sim::tally("trim cudaMemPoolTrimTo");
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    using namespace kvz_sim;
    std::lock_guard<std::mutex> g(memory_lock);
    *free_bytes = device_limit() - device_memory.used;
    *total_bytes = device_limit();
    return cudaSuccess;
}

/* Pinned host memory: host memory counted apart from device memory, against
 * KVZ_CUDASIM_PINNED_BYTES (no limit by default), so that running out of it can
 * be tested too. It starts as device memory does (fill_garbage): host code
 * that reads a pinned buffer before the copy into it has landed sees NaN, not
 * the zeros of a fresh page (a buffer kept and reused holds the last copy's
 * bytes on a GPU). */
cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    kvz_sim::tally("alloc cudaMallocHost", bytes);
    cudaError_t e = counted_alloc(kvz_sim::pinned_memory, kvz_sim::pinned_limit(), p, bytes);
    if (e == cudaSuccess)
        kvz_sim::fill_garbage(*p, bytes);
    return e;
}

cudaError_t cudaFreeHost(void *p)
{
    kvz_sim::tally("wait (implicit) cudaFreeHost");
    kvz_sim::run_all_queues();
    return counted_free(kvz_sim::pinned_memory, p);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s)
{
    kvz_sim::check_stream_use(&dst, sizeof dst, s, "cudaMemcpyAsync's destination");
    kvz_sim::check_stream_use(&src, sizeof src, s, "cudaMemcpyAsync's source");
    if (!bytes)
        return cudaSuccess;
    const bool host_pinned = kvz_sim::is_pinned(kind == cudaMemcpyHostToDevice ? src : dst);
    if (kind == cudaMemcpyHostToDevice)
        kvz_sim::tally(host_pinned ? "copy to device from pinned" : "copy to device from pageable", bytes);
    else if (kind == cudaMemcpyDeviceToHost)
        kvz_sim::tally(host_pinned ? "copy to pinned host" : "copy to pageable host", bytes);
    else
        kvz_sim::tally("copy device to device", bytes);
    if (!s)
        kvz_sim::tally("wait (implicit) legacy stream");
    else if (kind == cudaMemcpyDeviceToHost && !host_pinned) /* CUDA may return once it is done, and does */
        kvz_sim::tally("wait (implicit) copy to pageable host");
    if (kind == cudaMemcpyHostToDevice && !host_pinned) { /* staged by the driver at the call */
        auto staged = std::make_shared<std::vector<unsigned char>>((const unsigned char *)src,
                                                                   (const unsigned char *)src + bytes);
        kvz_sim::enqueue(s, [dst, staged]() { memcpy(dst, staged->data(), staged->size()); });
    } else {
        kvz_sim::enqueue(s, [dst, src, bytes]() { memmove(dst, src, bytes); });
    }
    return cudaSuccess;
}

/* on the legacy default stream */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s)
{
    kvz_sim::tally("memset", bytes);
    kvz_sim::check_stream_use(&dst, sizeof dst, s, "cudaMemsetAsync");
    kvz_sim::enqueue(s, [dst, value, bytes]() { memset(dst, value, bytes); });
    return cudaSuccess;
}

/* Streams are only told apart: their work is ordered by their queues (kvz_sim::enqueue). */
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    *s = (cudaStream_t)malloc(1);
    return *s ? cudaSuccess : cudaErrorMemoryAllocation;
}

/* A stream that still has stream-ordered memory stops the run: kvz frees
 * memory on the stream that allocated it, which must then still exist. */
cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    using namespace kvz_sim;
    {
        std::lock_guard<std::mutex> g(memory_lock);
        for (const auto &b : device_memory.blocks)
            if (b.second.stream_ordered && b.second.stream == s)
                die("a stream destroyed while memory it allocated with cudaMallocAsync is still in use");
        stream_allocations.erase(s);
    }
    /* the GPU finishes a destroyed stream's work; its queue stays, empty (another thread
     * waiting for the whole device may hold it), for a stream that gets the same address */
    run_queue(s);
    free(s);
    return cudaSuccess;
}

/* Synchronising makes a stream's allocations so far usable on every stream. */
cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    kvz_sim::tally("wait cudaStreamSynchronize");
    kvz_sim::run_queue(s);
    std::lock_guard<std::mutex> g(kvz_sim::memory_lock);
    kvz_sim::make_visible(s, UINT64_MAX);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    kvz_sim::tally("wait cudaDeviceSynchronize");
    kvz_sim::run_all_queues();
    std::lock_guard<std::mutex> g(kvz_sim::memory_lock);
    for (auto &b : kvz_sim::device_memory.blocks)
        b.second.pending = false;
    return cudaSuccess;
}

/* An event knows its stream's allocations and queued work when it was recorded. */
struct kvz_sim_event {
    cudaStream_t stream;
    uint64_t allocations, work;
    bool recorded;
};

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    *e = new (std::nothrow) kvz_sim_event{nullptr, 0, 0, false};
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    const uint64_t work = s ? kvz_sim::queued_so_far(s) : 0;
    std::lock_guard<std::mutex> g(kvz_sim::memory_lock);
    *e = kvz_sim_event{s, kvz_sim::stream_allocations[s], work, true};
    return cudaSuccess;
}

/* Runs the event's stream up to the event, no further. */
cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    kvz_sim::tally("wait cudaEventSynchronize");
    if (!e->recorded)
        return cudaSuccess;
    kvz_sim::run_queue(e->stream, e->work);
    std::lock_guard<std::mutex> g(kvz_sim::memory_lock);
    kvz_sim::make_visible(e->stream, e->allocations + 1);
    return cudaSuccess;
}

/* ---- cuBLAS ------------------------------------------------------------------------ */
struct kvz_sim_cublas {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new (std::nothrow) kvz_sim_cublas{nullptr};
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

/* An f32 copy of a column-major operand (rows x cols, leading dimension ld). */
static std::vector<float> as_f32(const void *p, cudaDataType_t t, int ld, int rows, int cols)
{
    std::vector<float> out(cols > 0 ? (size_t)ld * (size_t)(cols - 1) + (size_t)rows : 0);
    for (size_t i = 0; i < out.size(); i++)
        out[i] = t == CUDA_R_16F ? __half2float(((const __half *)p)[i]) : ((const float *)p)[i];
    return out;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                            cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    if (ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F || m < 0 || n < 0 || k < 0)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m)
        return CUBLAS_STATUS_INVALID_VALUE;
    const void *operands[3] = {A, B, C};
    kvz_sim::check_stream_use(operands, sizeof operands, h->stream, "cublasGemmEx");
    /* alpha and beta are host scalars, read at the call; the operands when the stream reaches it */
    const float a_scale = *(const float *)alpha, b_scale = *(const float *)beta;
    kvz_sim::tally("launch cublasGemmEx");
    kvz_sim::enqueue(h->stream, [=]() {
        std::vector<float> a = ta == CUBLAS_OP_N ? as_f32(A, at, lda, m, k) : as_f32(A, at, lda, k, m);
        std::vector<float> b = tb == CUBLAS_OP_N ? as_f32(B, bt, ldb, k, n) : as_f32(B, bt, ldb, n, k);
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, a_scale, a.data(), lda, b.data(), ldb,
                    b_scale, (float *)C, ldc);
    });
    return CUBLAS_STATUS_SUCCESS;
}
