/* blas_room.c — see blas_room.h. */
#include "kernels/cpu/blas_room.h"
#include "common/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* Debian's OpenBLAS buffer (128 MiB and a guard page, through malloc's mmap)
 * and an OpenMP thread's stack, with some slack. */
#define ROOM_PER_THREAD ((size_t)144 << 20)

static pthread_mutex_t room_lock = PTHREAD_MUTEX_INITIALIZER;
static int room_taken;          /* once a process */
static void *room;              /* held: PROT_NONE, nothing committed */
static size_t room_bytes;
static atomic_int room_held;    /* the first BLAS call's cheap test */

int kvz_blas_room_take(int n_threads)
{
    struct rlimit as;
    if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY)
        return KVZ_OK;
    pthread_mutex_lock(&room_lock);
    int rc = KVZ_OK;
    if (!room_taken) {
        size_t bytes = (size_t)(n_threads > 0 ? n_threads : 1) * ROOM_PER_THREAD;
        void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            rc = kvz_errorf(KVZ_ERR_NOMEM, "cpu: too little address space for OpenBLAS's buffers (%zu MiB for %d "
                            "thread(s): %s): raise `ulimit -v` (now %llu MiB) or give fewer --threads",
                            bytes >> 20, n_threads, strerror(errno), (unsigned long long)(as.rlim_cur >> 20));
        } else {
            room = p, room_bytes = bytes, room_taken = 1;
            atomic_store(&room_held, 1);
        }
    }
    pthread_mutex_unlock(&room_lock);
    return rc;
}

void kvz_blas_room_give(void)
{
    if (!atomic_load_explicit(&room_held, memory_order_acquire))
        return;
    pthread_mutex_lock(&room_lock);
    if (room) {
        munmap(room, room_bytes);
        room = NULL;
        atomic_store(&room_held, 0);
    }
    pthread_mutex_unlock(&room_lock);
}
