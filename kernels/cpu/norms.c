/* norms.c — key norms, the score of the knorm baseline. */
#include "kernels/cpu/cpu_kernels.h"

#include <math.h>

void kvz_cpu_key_norms(float *out, const float *keys, int32_t rows, int32_t n, int64_t stride, int32_t head_dim,
                       int n_threads)
{
#pragma omp parallel for collapse(2) num_threads(n_threads) schedule(static)
    for (int32_t r = 0; r < rows; r++)
        for (int32_t t = 0; t < n; t++) {
            const float *k = keys + (size_t)r * (size_t)stride + (size_t)t * head_dim;
            double ss = 0; /* in index order: the CUDA twin adds in the same order */
            for (int32_t e = 0; e < head_dim; e++)
                ss += (double)k[e] * k[e];
            out[(size_t)r * n + t] = (float)sqrt(ss);
        }
}
