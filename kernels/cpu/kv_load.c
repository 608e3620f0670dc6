/* kv_load.c — a stored KV head into cache rows on the CPU: every element
 * read back (kernels/kv_codes.h), then keys rotated to their positions. */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/kv_codes.h"

void kvz_cpu_kv_load(float *dst, const kvz_quant_shape *s, int is_keys, const uint8_t *payload,
                     const uint16_t *scales, const int32_t *positions, const kvz_rope_params *rope,
                     const kvz_cpu_rope_table *table, int n_threads)
{
    const int32_t n = (int32_t)s->n;
#pragma omp parallel for num_threads(n_threads) if (n > 64)
    for (int32_t t = 0; t < n; t++)
        kvz_kv_row(payload, scales, s, is_keys, (size_t)t, dst + (size_t)t * s->d);
    if (positions)
        kvz_cpu_rope(dst, positions, n, 1, rope, 0, table, n_threads);
}
