/* topk.c — the k best of a set of scores by radix select (no sort): four
 * passes find the k-th largest key an 8-bit digit at a time, a fifth marks. */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/order_key.h"

#include <string.h>

void kvz_cpu_top_k_mask(const float *scores, const uint32_t *idx, size_t count, size_t k,
                        uint8_t *mask, uint32_t *keys)
{
    if (k == 0 || count == 0)
        return;
    if (k >= count) {
        for (size_t i = 0; i < count; i++)
            mask[idx ? idx[i] : i] = 1;
        return;
    }
    for (size_t i = 0; i < count; i++)
        keys[i] = kvz_order_key(scores[idx ? idx[i] : i]);
    /* Invariant: `want` of the keys that share `prefix` on the bits of `high`
     * belong to the k best (1 <= want <= their count). */
    uint32_t prefix = 0, high = 0;
    size_t want = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        size_t hist[256] = {0};
        for (size_t i = 0; i < count; i++)
            if ((keys[i] & high) == prefix)
                hist[(keys[i] >> shift) & 0xffu]++;
        int digit = 255;
        while (hist[digit] < want) /* terminates: the bins sum to >= want */
            want -= hist[digit--];
        prefix |= (uint32_t)digit << shift;
        high |= 0xffu << shift;
    }
    /* prefix is now the k-th largest key: take everything above it and the
     * first `want` equal to it, in candidate order */
    for (size_t i = 0; i < count; i++) {
        if (keys[i] > prefix || (keys[i] == prefix && want > 0)) {
            want -= keys[i] == prefix;
            mask[idx ? idx[i] : i] = 1;
        }
    }
}

void kvz_cpu_top_k_rows(uint8_t *mask, const float *scores, int32_t rows, int32_t n, const int32_t *length,
                        const int32_t *k, uint32_t *keys)
{
    memset(mask, 0, (size_t)rows * (size_t)n);
    for (int32_t r = 0; r < rows; r++)
        kvz_cpu_top_k_mask(scores + (size_t)r * n, NULL, (size_t)length[r], k[r] > 0 ? (size_t)k[r] : 0,
                           mask + (size_t)r * n, keys);
}
