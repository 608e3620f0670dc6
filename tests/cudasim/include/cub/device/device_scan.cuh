/* CUB's DeviceScan, emulated on the CPU (tests/cudasim/cudasim.h). */
#ifndef KVZ_TESTS_CUDASIM_CUB_SCAN_H
#define KVZ_TESTS_CUDASIM_CUB_SCAN_H
#include "../../../cudasim.h"

namespace cub {
struct DeviceScan {
    /* the temporary storage protocol of CUB: a first call with NULL asks its size */
    template <class In, class Out>
    static cudaError_t ExclusiveSum(void *tmp, size_t &tmp_bytes, In in, Out out, int n, cudaStream_t s = 0)
    {
        if (!tmp) {
            tmp_bytes = 16;
            return cudaSuccess;
        }
        const size_t tmp_size = tmp_bytes;
        kvz_sim::tally("launch cub::DeviceScan::ExclusiveSum");
        kvz_sim::enqueue(s, [=]() {
            memset(tmp, 0xa5, tmp_size); /* as CUB uses its temporary storage: it must live until the scan has run */
            typename std::decay<decltype(*out)>::type sum = 0;
            for (int i = 0; i < n; i++) {
                auto v = in[i];
                out[i] = sum;
                sum += v;
            }
        });
        return cudaSuccess;
    }
};
} // namespace cub
#endif
