/* CUB's DeviceRadixSort, emulated on the CPU (tests/cudasim/cudasim.h):
 * stable, on the same bit-flipped keys, so ties keep CUB's order. */
#ifndef KVZ_TESTS_CUDASIM_CUB_SORT_H
#define KVZ_TESTS_CUDASIM_CUB_SORT_H
#include "../../../cudasim.h"

#include <algorithm>
#include <vector>

namespace cub {
struct DeviceRadixSort {
    static uint32_t radix_key(float f, int begin_bit, int end_bit)
    {
        uint32_t u = __float_as_uint(f);
        u ^= (u & 0x80000000u) ? 0xffffffffu : 0x80000000u; /* order-preserving */
        uint32_t width = (uint32_t)(end_bit - begin_bit);
        return width >= 32 ? u >> begin_bit : (u >> begin_bit) & ((1u << width) - 1u);
    }
    template <class V>
    static cudaError_t SortPairsDescending(void *tmp, size_t &tmp_bytes, const float *keys_in, float *keys_out,
                                           const V *values_in, V *values_out, int n, int begin_bit = 0,
                                           int end_bit = 32, cudaStream_t s = 0)
    {
        if (!tmp) {
            tmp_bytes = 16;
            return cudaSuccess;
        }
        const size_t tmp_size = tmp_bytes;
        kvz_sim::tally("launch cub::DeviceRadixSort::SortPairsDescending");
        kvz_sim::enqueue(s, [=]() {
            memset(tmp, 0xa5, tmp_size); /* as CUB uses its temporary storage: it must live until the sort has run */
            std::vector<int> order((size_t)n);
            for (int i = 0; i < n; i++)
                order[(size_t)i] = i;
            std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
                return radix_key(keys_in[a], begin_bit, end_bit) > radix_key(keys_in[b], begin_bit, end_bit);
            });
            std::vector<float> k((size_t)n);
            std::vector<V> v((size_t)n);
            for (int i = 0; i < n; i++) {
                k[(size_t)i] = keys_in[order[(size_t)i]];
                v[(size_t)i] = values_in[order[(size_t)i]];
            }
            std::copy(k.begin(), k.end(), keys_out);
            std::copy(v.begin(), v.end(), values_out);
        });
        return cudaSuccess;
    }
};
} // namespace cub
#endif
