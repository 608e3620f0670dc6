/*
 * rope.c — rotary position embedding on the CPU.
 *
 * Pair j of a head rotates by angle pos · base^(-2j/rope_dim). Angles are
 * computed in double: at positions of tens of thousands an f32 angle is off by
 * ~1e-3 rad, and RoPE at load must reproduce prefill exactly.
 */
#include "kernels/cpu/cpu_kernels.h"
#include "common/error.h"

#include <math.h>

void kvz_cpu_rope(float *x, const int32_t *positions, int32_t n, int32_t n_heads,
                  const kvz_rope_params *p, int inverse, int n_threads)
{
    int32_t half = p->rope_dim / 2;
    double freq[KVZ_CPU_ROPE_MAX_DIM / 2]; /* base^(-2j/rope_dim), once per call, not per row */
    KVZ_ASSERT(half <= KVZ_CPU_ROPE_MAX_DIM / 2); /* models beyond it are refused at load */
    for (int32_t j = 0; j < half; j++)
        freq[j] = pow((double)p->freq_base, -2.0 * j / p->rope_dim);
#pragma omp parallel for num_threads(n_threads) if (n > 8)
    for (int32_t i = 0; i < n; i++) {
        double pos = positions[i];
        for (int32_t j = 0; j < half; j++) {
            double theta = pos * freq[j];
            float c = (float)cos(theta), s = (float)sin(theta);
            if (inverse)
                s = -s;
            for (int32_t h = 0; h < n_heads; h++) {
                float *v = x + ((size_t)i * n_heads + h) * p->head_dim;
                int32_t a = p->mode == KVZ_ROPE_NEOX ? j : 2 * j;
                int32_t b = p->mode == KVZ_ROPE_NEOX ? j + half : 2 * j + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}
