/* cpu_check.c — the check itself is compiled for the baseline x86-64. */
/* (no _FORTIFY_SOURCE here, as a distribution's flags or Ubuntu's compiler set
 * it: its snprintf is an always-inline wrapper built for MARCH, which GCC
 * refuses to inline into a baseline function, and the build stops) */
#undef _FORTIFY_SOURCE
#include "common/cpu_check.h"
#include "common/error.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
/* What the compiler was told it may use (its predefined macros), and whether
 * this CPU has it. (clang's __builtin_cpu_supports lacks f16c and a few more: the
 * CPUs with what it checks have them.) */
#define FEATURE(name) {name, __builtin_cpu_supports(name)},
#define HAVE_FEATURES 1
#endif
/* the build's macros name what it was compiled for; the functions themselves
 * use none of it, so that they run on any x86-64 to say so */
#define BASELINE KVZ_BASELINE

BASELINE static void features(char *built_for_out, size_t built_for_n, char *missing, size_t missing_n)
{
    built_for_out[0] = missing[0] = '\0';
#ifdef HAVE_FEATURES
    __builtin_cpu_init();
    const struct {
        const char *name;
        int present;
    } built_for[] = {
#ifdef __SSE4_2__
        FEATURE("sse4.2")
#endif
#ifdef __POPCNT__
        FEATURE("popcnt")
#endif
#ifdef __AVX__
        FEATURE("avx")
#endif
#ifdef __AVX2__
        FEATURE("avx2")
#endif
#ifdef __FMA__
        FEATURE("fma")
#endif
#if defined(__F16C__) && !defined(__clang__)
        FEATURE("f16c")
#endif
#ifdef __BMI__
        FEATURE("bmi")
#endif
#ifdef __BMI2__
        FEATURE("bmi2")
#endif
#ifdef __AVX512F__
        FEATURE("avx512f")
#endif
#ifdef __AVX512BW__
        FEATURE("avx512bw")
#endif
#ifdef __AVX512VL__
        FEATURE("avx512vl")
#endif
#ifdef __AVX512DQ__
        FEATURE("avx512dq")
#endif
#ifdef __AVX512CD__
        FEATURE("avx512cd")
#endif
#ifdef __AVX512VNNI__
        FEATURE("avx512vnni")
#endif
#ifdef __AVX512BF16__
        FEATURE("avx512bf16")
#endif
#ifdef __AVX512IFMA__
        FEATURE("avx512ifma")
#endif
#ifdef __AVX512VBMI__
        FEATURE("avx512vbmi")
#endif
#ifdef __AVX512VBMI2__
        FEATURE("avx512vbmi2")
#endif
#ifdef __AVX512BITALG__
        FEATURE("avx512bitalg")
#endif
#ifdef __AVX512VPOPCNTDQ__
        FEATURE("avx512vpopcntdq")
#endif
#ifdef __GFNI__
        FEATURE("gfni")
#endif
#ifdef __VPCLMULQDQ__
        FEATURE("vpclmulqdq")
#endif
#ifndef __clang__ /* names clang's __builtin_cpu_supports lacks */
#ifdef __AVXVNNI__
        FEATURE("avxvnni")
#endif
#ifdef __AVX512FP16__
        FEATURE("avx512fp16")
#endif
#ifdef __VAES__
        FEATURE("vaes")
#endif
#ifdef __SHA__
        FEATURE("sha")
#endif
#ifdef __MOVBE__
        FEATURE("movbe")
#endif
#ifdef __LZCNT__
        FEATURE("lzcnt")
#endif
#endif
        {NULL, 1},
    };
    for (size_t i = 0; built_for[i].name; i++) {
        size_t used = strlen(built_for_out);
        snprintf(built_for_out + used, built_for_n - used, "%s%s", used ? " " : "", built_for[i].name);
        used = strlen(missing);
        if (!built_for[i].present)
            snprintf(missing + used, missing_n - used, "%s%s", used ? " " : "", built_for[i].name);
    }
#endif
}

BASELINE int kvz_cpu_check(void)
{
    char built_for[320], missing[320];
    features(built_for, sizeof built_for, missing, sizeof missing);
    if (missing[0])
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "this kvz was built for another CPU (MARCH, by default the build "
                          "machine's own): this one lacks %s. Build it here, or for any machine of a kind: make "
                          "MARCH=x86-64-v3 (AVX2 CPUs, the fast kernels) or MARCH=x86-64 (every x86-64)", missing);
    return KVZ_OK;
}

BASELINE void kvz_cpu_built_for(char *out, size_t n)
{
    char missing[320];
    features(out, n, missing, sizeof missing);
}
