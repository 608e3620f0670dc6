/* timer.h — monotonic wall-clock time for progress and benchmarks, and the
 * time stamped on what kvz writes. */
#ifndef KVZ_COMMON_TIMER_H
#define KVZ_COMMON_TIMER_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline double kvz_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The last second of the year 9999: a later time has no four-digit year
 * (kvz ls shows dates as YYYY-MM-DD) and, past 2^53, no exact JSON number for
 * most readers. */
#define KVZ_LATEST_TIME 253402300799ull

/* $SOURCE_DATE_EPOCH (the reproducible-builds convention): 1 and the seconds
 * in *out where it is a decimal count of them up to KVZ_LATEST_TIME, 0 where
 * it is unset or empty, -1 where it holds anything else. */
static inline int kvz_source_date_epoch(uint64_t *out)
{
    const char *s = getenv("SOURCE_DATE_EPOCH");
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v > KVZ_LATEST_TIME)
        return -1;
    *out = v;
    return 1;
}

/* The `created` time of a manifest, a document record's form and a bundle:
 * $SOURCE_DATE_EPOCH where it is valid, so that the same compile or pack
 * writes the same bytes, else now. */
static inline uint64_t kvz_created_time(void)
{
    uint64_t t;
    return kvz_source_date_epoch(&t) == 1 ? t : (uint64_t)time(NULL);
}

#endif
