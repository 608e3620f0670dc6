/* sample.c — choosing a token from a row of logits (the sample op, kernels/backend.h). */
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/order_key.h"

#include <math.h>
#include <stdlib.h>

/* Ranked as top-k ranks scores (order_key.h): a NaN below every number, so a
 * broken logit is never the answer while a number is left. */
int32_t kvz_cpu_argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    uint32_t best_key = kvz_order_key(x[0]);
    for (int32_t i = 1; i < n; i++) {
        uint32_t key = kvz_order_key(x[i]);
        if (key > best_key) {
            best = i;
            best_key = key;
        }
    }
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

int32_t kvz_cpu_sample(const float *logits, int32_t n, const kvz_sample_params *p, int32_t *order, float *probs)
{
    int32_t best = kvz_cpu_argmax(logits, n);
    if (p->temperature <= 0)
        return best;
    float max = logits[best];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        probs[i] = expf((logits[i] - max) / p->temperature);
        sum += probs[i];
    }
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (probs[i] / sum > KVZ_SAMPLE_MIN_SHARE) /* true for the best token, unless the sum is not a number */
            order[m++] = i;
    if (m == 0) /* a NaN logit, or +inf (whose numerator is inf - inf): the largest, as the device does */
        return best;
    qsort_r(order, (size_t)m, sizeof *order, by_prob_desc, probs);
    double kept = 0;
    int32_t k = 0;
    while (k < m) {
        kept += probs[order[k]];
        k++;
        if (kept / sum >= p->top_p)
            break;
    }
    double r = p->draw * kept, acc = 0;
    for (int32_t i = 0; i < k; i++) {
        acc += probs[order[i]];
        if (r < acc)
            return order[i];
    }
    return order[k - 1];
}
