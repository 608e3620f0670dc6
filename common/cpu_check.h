/* cpu_check.h — whether this CPU has every instruction set this build was
 * compiled for. MARCH (default native) lets the compiler use any instruction
 * of the build machine's CPU anywhere; on a CPU without one, its first use is
 * a SIGILL, without a word. Checked where a command starts and where a model
 * loads, so that a binary copied to an older machine says what it needs. */
#ifndef KVZ_COMMON_CPU_CHECK_H
#define KVZ_COMMON_CPU_CHECK_H

#include <stddef.h>

/* A function compiled for the baseline x86-64 whatever MARCH says: the check
 * and what it calls to report (kvz_errorf) run on any x86-64 (clang keeps
 * -march's features under arch=x86-64 alone: each is turned off by name). */
#if defined(__x86_64__) && defined(__GNUC__)
#define KVZ_BASELINE                                                                                             \
    __attribute__((target("arch=x86-64,no-avx,no-sse4.2,no-sse4.1,no-ssse3,no-sse3,no-popcnt,no-bmi,no-bmi2,"  \
                          "no-lzcnt,no-movbe,no-f16c,no-fma")))
#else
#define KVZ_BASELINE
#endif

/* KVZ_OK, or KVZ_ERR_UNSUPPORTED naming what this CPU lacks and how to build
 * for it. The function is compiled for the baseline x86-64, so that the check
 * itself runs anywhere. */
int kvz_cpu_check(void);

/* The instruction sets this build may use beyond the baseline, as names
 * separated by spaces ("" for the baseline or another architecture). */
void kvz_cpu_built_for(char *out, size_t n);

#endif
