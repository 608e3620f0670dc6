/* backend.c — choose and create a backend. */
#include "kernels/backend.h"
#include "common/cpu_quota.h"
#include "common/error.h"
#include "kernels/ggml_types.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* libgomp keeps the threads of a parallel region for the next one; a child
 * of fork has none of them, and its first region of more than one thread
 * waits for them forever. So a backend of several threads marks the process,
 * and in a child of such a process every backend has one thread. */
static atomic_int several_threads_made, one_thread_only;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void in_fork_child(void)
{
    if (atomic_load(&several_threads_made))
        atomic_store(&one_thread_only, 1);
}

static void watch_forks(void) { pthread_atfork(NULL, NULL, in_fork_child); }

int kvz_backend_threads(const kvz_backend_config *cfg)
{
    int threads = cfg->n_threads;
    if (threads <= 0) {
        /* OMP_NUM_THREADS, as OpenMP read it (its first number), where given: a
         * shared machine's way to bound every OpenMP program alike */
        const char *env = getenv("OMP_NUM_THREADS");
        threads = env && *env ? omp_get_max_threads() : kvz_backend_cpus();
        threads = threads < 1 ? 1 : threads > KVZ_MAX_THREADS ? KVZ_MAX_THREADS : threads;
    }
    if (atomic_load(&one_thread_only))
        return 1;
    if (threads > 1) {
        pthread_once(&fork_watch, watch_forks);
        atomic_store(&several_threads_made, 1);
    }
    return threads;
}

int kvz_backend_cpus(void)
{
    int cpus = omp_get_num_procs(), quota = kvz_cpu_quota();
    return quota > 0 && quota < cpus ? quota : cpus;
}

int kvz_backend_has_cuda(void)
{
#ifdef KVZ_WITH_CUDA
    return 1;
#else
    return 0;
#endif
}

kvz_device kvz_backend_auto_device(void)
{
#ifdef KVZ_WITH_CUDA
    if (kvz_backend_cuda_available())
        return KVZ_DEVICE_CUDA;
#endif
    return KVZ_DEVICE_CPU;
}

int kvz_backend_create(kvz_backend **out, const kvz_backend_config *cfg)
{
    switch (cfg->device) {
    case KVZ_DEVICE_CPU:
        return kvz_backend_cpu_create(out, cfg);
    case KVZ_DEVICE_CUDA:
#ifdef KVZ_WITH_CUDA
        return kvz_backend_cuda_create(out, cfg);
#else
        *out = NULL;
        return kvz_errorf(KVZ_ERR_UNSUPPORTED,
                          "this kvz was built without CUDA (build it with 'make cuda')");
#endif
    case KVZ_DEVICE_AUTO: {
        kvz_backend_config picked = *cfg;
        picked.device = kvz_backend_auto_device();
        return kvz_backend_create(out, &picked);
    }
    }
    return kvz_errorf(KVZ_ERR_ARG, "unknown device %d", (int)cfg->device);
}

void kvz_backend_destroy(kvz_backend *b)
{
    if (b)
        b->ops->destroy(b);
}

int kvz_weight_init(kvz_weight *w, const char *backend, uint32_t type, const void *src,
                    int64_t rows, int64_t cols, size_t *row_bytes)
{
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    w->native = src;
    w->native_type = type;
    *row_bytes = kvz_ggml_row_bytes(type, (uint64_t)cols);
    if (*row_bytes == 0)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "%s: cannot use a %s matrix with rows of %lld",
                          backend, kvz_ggml_type_info_of(type).name, (long long)cols);
    return KVZ_OK;
}

/* A part of `size` bytes at `at` fits in `bytes` and is `align`-aligned. */
static int part_fits(size_t at, size_t size, size_t align, size_t bytes)
{
    return at % align == 0 && at <= bytes && size <= bytes - at;
}

int kvz_kv_load_job_check(const kvz_kv_load_job *job, size_t bytes, const kvz_rope_params *rope)
{
    const kvz_quant_shape *s = &job->shape;
    if (!part_fits(job->payload, kvz_quant_payload_bytes(s), 1, bytes) ||
        !part_fits(job->scales, kvz_quant_scale_pairs(s, job->is_keys) * 4, 2, bytes) ||
        (job->is_keys && !part_fits(job->positions, (size_t)s->n * 4, 4, bytes)))
        return kvz_errorf(KVZ_ERR_ARG, "kv_load: a head of %u rows lies outside the %zu staged bytes", s->n,
                          bytes);
    if (job->is_keys && !rope)
        return kvz_errorf(KVZ_ERR_ARG, "kv_load: keys need RoPE parameters");
    return job->is_keys ? kvz_rope_params_check(rope) : KVZ_OK;
}

int kvz_rope_params_check(const kvz_rope_params *p)
{
    if (p->rope_dim < 0 || p->rope_dim % 2 != 0 || p->rope_dim > p->head_dim)
        return kvz_errorf(KVZ_ERR_ARG, "rope: a rotary width of %d in heads of %d", p->rope_dim, p->head_dim);
    if (p->n_factors != 0 && (p->n_factors != p->rope_dim / 2 || p->n_factors > KVZ_ROPE_MAX_FACTORS))
        return kvz_errorf(KVZ_ERR_ARG, "rope: %d frequency factors for a rotary width of %d", p->n_factors,
                          p->rope_dim);
    return KVZ_OK;
}

int kvz_weights_same_cols(const kvz_weight *const *w, int32_t count)
{
    for (int32_t i = 1; i < count; i++)
        if (w[i]->cols != w[0]->cols)
            return kvz_errorf(KVZ_ERR_INTERNAL, "one input for weights of %lld and %lld columns",
                              (long long)w[0]->cols, (long long)w[i]->cols);
    return KVZ_OK;
}
