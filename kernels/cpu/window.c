/* window.c — what the window methods do to scores before choosing:
 * SnapKV's max-pooling along the document and ChunkKV's chunk sums. */
#include "kernels/cpu/cpu_kernels.h"

void kvz_cpu_max_pool(float *out, const float *in, int32_t rows, int32_t n, int64_t stride, int32_t kernel)
{
    const int32_t r = kernel / 2;
    for (int32_t i = 0; i < rows; i++) {
        const float *s = in + (size_t)i * (size_t)stride;
        float *o = out + (size_t)i * (size_t)n;
        for (int32_t t = 0; t < n; t++) {
            int32_t j0 = t - r < 0 ? 0 : t - r, j1 = t + r < n - 1 ? t + r : n - 1;
            float best = s[t];
            for (int32_t j = j0; j <= j1; j++)
                best = s[j] > best ? s[j] : best;
            o[t] = best;
        }
    }
}

void kvz_cpu_chunk_sums(float *out, const float *scores, int32_t rows, int32_t n, int32_t chunk)
{
    const int32_t n_chunks = (n + chunk - 1) / chunk;
    for (int32_t c = 0; c < n_chunks; c++)
        out[c] = 0.0f;
    for (int32_t i = 0; i < rows; i++)
        for (int32_t t = 0; t < n; t++)
            out[t / chunk] += scores[(size_t)i * n + t];
}
