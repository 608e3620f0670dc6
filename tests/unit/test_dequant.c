/*
 * test_dequant.c — every block type decodes as ggml's own Python package
 * (gguf-py) decodes it: tests/golden/dequant.gguf holds random blocks of each
 * type ("<type>.src") and gguf-py's f32 result ("<type>.ref").
 */
#include "test_util.h"

#include <math.h>

#include "common/half.h"
#include "kernels/cpu/dequant.h"
#include "kernels/ggml_types.h"
#include "model/gguf.h"

static void test_golden_blocks(void **state)
{
    kvz_gguf *g;
    CHECK_OK(kvz_gguf_open(&g, "tests/golden/dequant.gguf"));
    const char *types[] = {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s.src", types[i]);
        const kvz_gguf_tensor *src = kvz_gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "%s.ref", types[i]);
        const kvz_gguf_tensor *ref = kvz_gguf_find_tensor(g, name);
        assert_non_null(src);
        assert_non_null(ref);
        assert_int_equal(src->n_elems, ref->n_elems);
        assert_int_equal(src->type, kvz_ggml_type_from_name(types[i]));
        float *out = malloc(src->n_elems * sizeof(float));
        size_t row_bytes = kvz_ggml_row_bytes(src->type, src->dims[0]);
        for (uint64_t r = 0; r < src->dims[1]; r++)
            kvz_dequantize_row(src->type, (const uint8_t *)src->data + r * row_bytes,
                               out + r * src->dims[0], (int64_t)src->dims[0]);
        const float *want = ref->data;
        for (uint64_t e = 0; e < src->n_elems; e++) {
            float tol = 1e-6f * fabsf(want[e]) + 1e-9f;
            if (!(fabsf(out[e] - want[e]) <= tol)) /* NaN too */
                fail_msg("%s element %llu: %g, gguf-py %g", types[i], (unsigned long long)e,
                         out[e], want[e]);
        }
        free(out);
    }
    kvz_gguf_close(g);
}

/* The reference: the compiler's _Float16 where it has one (GCC 12 on x86-64,
 * clang 15+), else IEEE's definition in double arithmetic (clang 14 on x86-64
 * has no _Float16): a half is r * 2^(e-10) with r an integer, rounded to even
 * by nearbyint (the default rounding mode), and its bits are the exponent's
 * field plus r - 1024, so a rounding up to 2048 carries into the exponent. */
#if defined(__FLT16_MAX__)
static float ref_half_to_float(uint16_t h)
{
    _Float16 v;
    memcpy(&v, &h, 2);
    return (float)v;
}
static uint16_t ref_float_to_half(float f)
{
    _Float16 v = (_Float16)f;
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
}
#else
static float ref_half_to_float(uint16_t h)
{
    const int exponent = h >> 10 & 31, mantissa = h & 1023;
    const double sign = h & 0x8000 ? -1.0 : 1.0;
    if (exponent == 31)
        return mantissa ? NAN : (float)(sign * INFINITY);
    if (exponent == 0)
        return (float)(sign * ldexp(mantissa, -24));
    return (float)(sign * ldexp(1024 + mantissa, exponent - 25));
}
static uint16_t ref_float_to_half(float f)
{
    const uint16_t sign = signbit(f) ? 0x8000 : 0;
    const double x = fabs((double)f);
    if (isinf(f))
        return sign | 0x7c00;
    int e;
    frexp(x, &e); /* x = m * 2^e, m in [0.5, 1): 2^(e-1) <= x */
    e = e - 1 < -14 ? -14 : e - 1;
    const double r = nearbyint(ldexp(x, 10 - e)); /* exact before rounding: a float has 24 bits */
    if (r < 1024) /* subnormal (or zero): the bits are r */
        return sign | (uint16_t)r;
    const long bits = ((long)(e + 15) << 10) + (long)r - 1024;
    return sign | (uint16_t)(bits >= 0x7c00 ? 0x7c00 : bits);
}
#endif

/* fp16 <-> f32 against an IEEE reference, over every half and many floats
 * (rounding to nearest even, subnormals, overflow). */
static void test_half_conversions(void **state)
{
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hh = (uint16_t)h;
        float want = ref_half_to_float(hh), got = kvz_fp16_to_f32(hh);
        if (isnan(want)) {
            assert_true(isnan(got));
            continue;
        }
        assert_memory_equal(&want, &got, 4);
        assert_int_equal(kvz_f32_to_fp16(got), hh);
    }
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t bits = (uint32_t)x;
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f))
            continue;
        uint16_t want = ref_float_to_half(f);
        if (kvz_f32_to_fp16(f) != want)
            fail_msg("f32 %a (0x%08x) -> fp16 0x%04x, expected 0x%04x", f, bits, kvz_f32_to_fp16(f), want);
    }
    /* Every float whose f16 is neither zero nor infinite by a wide margin: from
     * below half the smallest subnormal to past the overflow threshold, every
     * mantissa, so every tie and subnormal rounding is met. kernels/kv_codes.h
     * takes this conversion on the host and the GPU's IEEE round-to-nearest-even
     * (__float2half_rn) on the device; they agree where this one is IEEE. */
    uint64_t differ = 0;
    uint32_t first = 0;
#pragma omp parallel for reduction(+ : differ)
    for (uint32_t absx = 0x32000000u; absx < 0x48000000u; absx++) {
        const uint32_t bits = absx | (absx & 1u) << 31; /* both signs, alternately */
        float f;
        memcpy(&f, &bits, 4);
        uint16_t want = ref_float_to_half(f);
        if (kvz_f32_to_fp16(f) != want) {
            differ++;
#pragma omp critical
            first = first ? first : bits;
        }
    }
    if (differ)
        fail_msg("%llu floats convert unlike IEEE, e.g. 0x%08x", (unsigned long long)differ, first);
    assert_int_equal(kvz_f32_to_bf16(1.0f), 0x3f80);
    assert_true(kvz_bf16_to_f32(0x4049) == 3.140625f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_blocks),
        cmocka_unit_test(test_half_conversions),
    };
    test_filters_from_env(tests);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
