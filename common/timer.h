/* timer.h — monotonic wall-clock time for progress and benchmarks. */
#ifndef KVZ_COMMON_TIMER_H
#define KVZ_COMMON_TIMER_H

#include <time.h>

static inline double kvz_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
