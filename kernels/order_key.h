/*
 * order_key.h — a float score as an unsigned key in the same order, so top-k
 * selection can count digits instead of sorting (kernels/cpu/topk.c and its
 * twin kernels/cuda/topk.cu share it; it compiles as C and as CUDA).
 *
 * Larger score, larger key. -0 and +0 are one key (they compare equal); NaN
 * sorts below every number, -inf included.
 */
#ifndef KVZ_KERNELS_ORDER_KEY_H
#define KVZ_KERNELS_ORDER_KEY_H

#include "kernels/host_device.h"

#include <stdint.h>
#include <string.h>

static inline KVZ_HOST_DEVICE uint32_t kvz_order_key(float score)
{
    if (score != score)
        return 0; /* NaN */
    if (score == 0.0f)
        score = 0.0f; /* -0 -> +0 */
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    /* negative: flip all bits (more negative, smaller); positive: set the top bit */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

#endif
