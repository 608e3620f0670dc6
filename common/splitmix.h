/*
 * splitmix.h — splitmix64, the one deterministic generator every layer uses
 * (synthetic weights, sampler seeding, evaluation documents): every seed gives
 * a full-period, well-mixed stream, the same on every machine.
 */
#ifndef KVZ_COMMON_SPLITMIX_H
#define KVZ_COMMON_SPLITMIX_H

#include <stdint.h>

static inline uint64_t kvz_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
