/* backend.c — choose and create a backend. */
#include "kernels/backend.h"
#include "common/error.h"

int kvz_backend_has_cuda(void)
{
#ifdef KVZ_WITH_CUDA
    return 1;
#else
    return 0;
#endif
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
    case KVZ_DEVICE_AUTO:
#ifdef KVZ_WITH_CUDA
        if (kvz_backend_cuda_available())
            return kvz_backend_cuda_create(out, cfg);
#endif
        return kvz_backend_cpu_create(out, cfg);
    }
    return kvz_errorf(KVZ_ERR_ARG, "unknown device %d", (int)cfg->device);
}

void kvz_backend_destroy(kvz_backend *b)
{
    if (b)
        b->ops->destroy(b);
}
