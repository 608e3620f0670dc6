/*
 * bench_cache.h — what a compressed cache saves at decode time (`kvz bench
 * --ratio`): the same model decoding over a loaded cache that keeps every row
 * and over one that keeps a fraction of them.
 */
#ifndef KVZ_TOOLS_BENCH_CACHE_H
#define KVZ_TOOLS_BENCH_CACHE_H

#include "model/model.h"

#include <stdint.h>

typedef struct kvz_cache_timing {
    int64_t rows;        /* cached rows over all KV heads of one layer */
    double attention_us; /* one decode step's attention over one layer (of all layers' caches in turn) */
    double decode_tok_s; /* greedy decode over a loaded cache of this shape */
} kvz_cache_timing;

/* Rows each of the model's KV heads keeps of an n-token document at keep
 * ratio `ratio` (1: all n). Compressed heads are uneven, as KVzip's global
 * threshold leaves them: head h of H keeps ratio·n·(0.5 + h/(H-1)) rows,
 * at least 1 and at most n, mean ratio·n. */
void kvz_bench_head_rows(const kvz_hparams *hp, int32_t n, double ratio, int32_t *rows);

/* Time one query's attention over one layer whose KV heads hold rows[h]
 * cached rows of an n-token document (the ragged layout the runtime gives
 * loaded caches; random values), per call over as many such caches as the
 * model has layers, read in turn as a decode step reads them (not one cache
 * again and again: it would stay in the processor's caches), best of
 * `repeat` passes; and `decode`
 * greedy tokens after position n over a loaded context of every layer shaped
 * so, best of `repeat` runs. */
int kvz_bench_cache(kvz_model *m, int32_t n, const int32_t *rows, int32_t decode, int32_t repeat,
                    kvz_cache_timing *out);

#endif
