/* quant.c — which quantized shapes an artifact may hold, and decoding them
 * (the quantizer itself is kernels/kv_quant.c, beside its CUDA twin). */
#include "format/quant.h"

int kvz_quant_shape_valid(const kvz_quant_shape *s, int is_keys)
{
    if (s->n == 0 || s->n16 > s->n || s->d == 0 || s->d > 4096)
        return 0;
    if (s->bits != 16 && s->bits != 8 && s->bits != 4 && s->bits != 2)
        return 0;
    if (s->bits == 16)
        return 1;
    if (s->group == 0 || s->group > 65536)
        return 0;
    return is_keys || s->d % s->group == 0;
}

void kvz_dequantize(const uint8_t *payload, const uint16_t *scales, const kvz_quant_shape *s,
                    int is_keys, float *x)
{
    for (size_t t = 0; t < s->n; t++)
        kvz_kv_row(payload, scales, s, is_keys, t, x + t * s->d);
}
