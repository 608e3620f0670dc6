/*
 * blas_room.h — address space kept for OpenBLAS's buffers under `ulimit -v`.
 *
 * OpenBLAS takes a buffer (128 MiB in Debian's build) for each thread that
 * calls it at once, keeps it, and where that allocation fails retries it for
 * ever: under a tight RLIMIT_AS a compile or query hung instead of failing.
 * With a finite RLIMIT_AS, the CPU backend's start takes that room (a clear
 * KVZ_ERR_NOMEM there when it is not to be had) and the first BLAS call hands
 * it back to OpenBLAS, so that what the process allocates in between (the
 * store's map, the KV cache) fails cleanly instead. Without a limit: nothing.
 */
#ifndef KVZ_KERNELS_CPU_BLAS_ROOM_H
#define KVZ_KERNELS_CPU_BLAS_ROOM_H

/* Takes room for `n_threads` callers (once a process: later calls return at
 * once). KVZ_OK, or KVZ_ERR_NOMEM saying how much address space is wanted. */
int kvz_blas_room_take(int n_threads);

/* Before a BLAS call: the room, if held, goes back (thread-safe, cheap). */
void kvz_blas_room_give(void);

#endif
