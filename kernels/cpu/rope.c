/*
 * rope.c — rotary position embedding on the CPU.
 *
 * Pair j of a head rotates by angle pos · base^(-2j/rope_dim), divided by the
 * pair's frequency factor when the model has them (Llama 3.1+). Angles are
 * computed in double: at positions of tens of thousands an f32 angle is off by
 * ~1e-3 rad, and RoPE at load must reproduce prefill exactly. The (cos, sin)
 * of each (position, pair) can come from a table (kvz_cpu_rope_table): a
 * load rotates every layer's and head's kept keys to the same few thousand
 * positions, and the double cos and sin were half of its time. A table entry
 * is the very value computed per row, so rows come out the same bits either way.
 */
#include "kernels/cpu/cpu_kernels.h"
#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void rope_frequencies(const kvz_rope_params *p, double freq[KVZ_CPU_ROPE_MAX_DIM / 2])
{
    /* models beyond these are refused at load */
    KVZ_ASSERT(p->rope_dim / 2 <= KVZ_CPU_ROPE_MAX_DIM / 2);
    KVZ_ASSERT(p->n_factors == 0 || (p->n_factors == p->rope_dim / 2 && p->n_factors <= KVZ_ROPE_MAX_FACTORS));
    for (int32_t j = 0; j < p->rope_dim / 2; j++)
        freq[j] = pow((double)p->freq_base, -2.0 * j / p->rope_dim) / (p->n_factors ? p->factors[j] : 1.0);
}

/* cs[2j], cs[2j + 1] = cos, sin of pair j's angle at `pos`. */
static void rope_cos_sin(double pos, const double *freq, int32_t half, float *cs)
{
    for (int32_t j = 0; j < half; j++) {
        double theta = pos * freq[j];
        cs[2 * j] = (float)cos(theta);
        cs[2 * j + 1] = (float)sin(theta);
    }
}

/* t holds angles made for p's rotary width, base and frequency factors. */
static int rope_table_fits(const kvz_cpu_rope_table *t, const kvz_rope_params *p)
{
    return t->cs && t->half == p->rope_dim / 2 && t->freq_base == p->freq_base && t->n_factors == p->n_factors &&
           memcmp(t->factors, p->factors, (size_t)p->n_factors * sizeof *p->factors) == 0;
}

void kvz_cpu_rope_table_free(kvz_cpu_rope_table *t)
{
    free(t->cs);
    memset(t, 0, sizeof *t);
}

void kvz_cpu_rope_table_cover(kvz_cpu_rope_table *t, const kvz_rope_params *p, const int32_t *positions,
                              int32_t n, int n_threads)
{
    const int32_t half = p->rope_dim / 2;
    if (t->cs && !rope_table_fits(t, p))
        kvz_cpu_rope_table_free(t); /* made for other angles */
    int32_t need = 0;
    for (int32_t i = 0; i < n; i++)
        if (positions[i] >= need)
            need = positions[i] + 1;
    if (need <= t->n_positions || half == 0)
        return;
    /* grow by half again at least, so a decode step by step rebuilds rarely */
    int64_t grown = (int64_t)t->n_positions + t->n_positions / 2;
    grown = (grown > need ? grown : need) + 1023;
    grown -= grown % 1024;
    if (grown > INT32_MAX)
        grown = need;
    float *cs = realloc(t->cs, (size_t)grown * half * 2 * sizeof *cs);
    if (!cs)
        return; /* the rows are rotated without the table: slower, the same */
    double freq[KVZ_CPU_ROPE_MAX_DIM / 2];
    rope_frequencies(p, freq);
    const int32_t from = t->n_positions, to = (int32_t)grown;
#pragma omp parallel for num_threads(n_threads) if (to - from > 256)
    for (int32_t q = from; q < to; q++)
        rope_cos_sin(q, freq, half, cs + (size_t)q * half * 2);
    t->cs = cs, t->n_positions = to, t->half = half, t->freq_base = p->freq_base;
    t->n_factors = p->n_factors;
    memcpy(t->factors, p->factors, (size_t)p->n_factors * sizeof *p->factors);
}

/* Row x (n_heads heads) rotated by the angles cs (cos, sin per pair). */
static void rope_row(float *x, const float *cs, int32_t n_heads, const kvz_rope_params *p, int inverse)
{
    const int32_t half = p->rope_dim / 2;
    for (int32_t j = 0; j < half; j++) {
        const float c = cs[2 * j], s = inverse ? -cs[2 * j + 1] : cs[2 * j + 1];
        const int32_t a = p->mode == KVZ_ROPE_NEOX ? j : 2 * j;
        const int32_t b = p->mode == KVZ_ROPE_NEOX ? j + half : 2 * j + 1;
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * p->head_dim;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

/* Row i of x to its position, with the table's angles where it covers it. */
static void rope_position(float *x, const int32_t *positions, int32_t i, int32_t n_heads, const kvz_rope_params *p,
                          int inverse, const double *freq, const kvz_cpu_rope_table *table)
{
    const int32_t half = p->rope_dim / 2;
    float own[KVZ_CPU_ROPE_MAX_DIM];
    const float *cs = own;
    if (table && positions[i] >= 0 && positions[i] < table->n_positions)
        cs = table->cs + (size_t)positions[i] * half * 2;
    else
        rope_cos_sin(positions[i], freq, half, own);
    rope_row(x + (size_t)i * n_heads * p->head_dim, cs, n_heads, p, inverse);
}

void kvz_cpu_rope(float *x, const int32_t *positions, int32_t n, int32_t n_heads, const kvz_rope_params *p,
                  int inverse, const kvz_cpu_rope_table *table, int n_threads)
{
    double freq[KVZ_CPU_ROPE_MAX_DIM / 2]; /* once per call, not per row */
    rope_frequencies(p, freq);
    const kvz_cpu_rope_table *usable = table && rope_table_fits(table, p) ? table : NULL;
    if (!kvz_cpu_worth_threads(n > 8, n_threads)) {
        for (int32_t i = 0; i < n; i++)
            rope_position(x, positions, i, n_heads, p, inverse, freq, usable);
        return;
    }
#pragma omp parallel for num_threads(n_threads)
    for (int32_t i = 0; i < n; i++)
        rope_position(x, positions, i, n_heads, p, inverse, freq, usable);
}
