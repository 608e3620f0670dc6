/* sample.c — the sampler's generator (the choice: kernels/cpu/sample.c and its CUDA twin). */
#include "model/sample.h"
#include "common/splitmix.h"
#include "kernels/cpu/cpu_kernels.h"

/* xorshift128+ */
static uint64_t next_u64(kvz_sampler *s)
{
    uint64_t a = s->state, b = s->state2;
    s->state = b;
    a ^= a << 23;
    s->state2 = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s->state2 + b;
}

static double next_unit(kvz_sampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

void kvz_sampler_init(kvz_sampler *s, float temperature, float top_p, uint64_t seed)
{
    s->temperature = temperature;
    s->top_p = top_p > 0 && top_p <= 1 ? top_p : 1.0f;
    uint64_t x = seed;
    s->state = kvz_splitmix64(&x);
    s->state2 = kvz_splitmix64(&x);
}

kvz_sample_params kvz_sampler_next(kvz_sampler *s)
{
    kvz_sample_params p = {.temperature = 0, .top_p = 1, .draw = 0};
    if (s && s->temperature > 0) {
        p.temperature = s->temperature;
        p.top_p = s->top_p;
        p.draw = next_unit(s);
    }
    return p;
}

int32_t kvz_argmax(const float *logits, int32_t n) { return kvz_cpu_argmax(logits, n); }
