/* cuda_fp16.h, emulated on the CPU (tests/cudasim/cudasim.h): IEEE half
 * precision storage with round-to-nearest-even conversions. */
#ifndef KVZ_TESTS_CUDASIM_FP16_H
#define KVZ_TESTS_CUDASIM_FP16_H
#include "../cudasim.h"

#include <immintrin.h> /* F16C: the conversions in hardware, round to nearest even */

namespace kvz_sim {
static inline unsigned short float_to_half_bits(float f)
{
    return (unsigned short)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
static inline float half_bits_to_float(unsigned short h) { return _cvtsh_ss(h); }
} // namespace kvz_sim

struct __half {
    unsigned short x;
    __half() = default;
    __half(float f) : x(kvz_sim::float_to_half_bits(f)) {}
    operator float() const { return kvz_sim::half_bits_to_float(x); }
};
struct __align__(4) __half2 {
    __half x, y;
};
static inline __half __float2half(float f) { return __half(f); }
static inline __half __float2half_rn(float f) { return __half(f); }
static inline float __half2float(__half h) { return kvz_sim::half_bits_to_float(h.x); }
static inline __half2 __floats2half2_rn(float a, float b) { return __half2{__half(a), __half(b)}; }
static inline __half __ushort_as_half(unsigned short u)
{
    __half h;
    h.x = u;
    return h;
}
static inline unsigned short __half_as_ushort(__half h) { return h.x; }
#endif
