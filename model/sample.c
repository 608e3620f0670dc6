/* sample.c — greedy and nucleus sampling. */
#include "model/sample.h"
#include "common/splitmix.h"

#include <math.h>
#include <stdlib.h>

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
    s->order = NULL;
    s->probs = NULL;
    s->cap = 0;
}

void kvz_sampler_free(kvz_sampler *s)
{
    free(s->order);
    free(s->probs);
    s->order = NULL;
    s->probs = NULL;
    s->cap = 0;
}

int32_t kvz_argmax(const float *logits, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

static int by_prob_desc(const void *a, const void *b, void *ctx)
{
    const float *p = ctx;
    float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t kvz_sample(kvz_sampler *s, const float *logits, int32_t n)
{
    if (s->temperature <= 0)
        return kvz_argmax(logits, n);
    if (n > s->cap) {
        int32_t *o = realloc(s->order, (size_t)n * sizeof *o);
        if (o)
            s->order = o;
        float *p = realloc(s->probs, (size_t)n * sizeof *p);
        if (p)
            s->probs = p;
        if (!o || !p)
            return -1;
        s->cap = n;
    }
    float max = logits[kvz_argmax(logits, n)];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        s->probs[i] = expf((logits[i] - max) / s->temperature);
        sum += s->probs[i];
    }
    /* candidates: tokens above a tiny fraction of the best, sorted by probability */
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (s->probs[i] / sum > 1e-9) /* always true for the best token */
            s->order[m++] = i;
    qsort_r(s->order, (size_t)m, sizeof *s->order, by_prob_desc, s->probs);
    double kept = 0;
    int32_t k = 0;
    while (k < m) {
        kept += s->probs[s->order[k]];
        k++;
        if (kept / sum >= s->top_p)
            break;
    }
    double r = next_unit(s) * kept, acc = 0;
    for (int32_t i = 0; i < k; i++) {
        acc += s->probs[s->order[i]];
        if (r < acc)
            return s->order[i];
    }
    return s->order[k - 1];
}
