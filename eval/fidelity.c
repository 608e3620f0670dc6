/* fidelity.c — KL divergence of next-token distributions, token LCS. */
#include "eval/fidelity.h"

#include <math.h>
#include <stdlib.h>

/* log-sum-exp of a row, in double: logits of a 50K vocabulary overflow float sums */
static double log_sum_exp(const float *x, int32_t n)
{
    double max = x[0];
    for (int32_t i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int32_t i = 0; i < n; i++)
        sum += exp((double)x[i] - max);
    return max + log(sum);
}

double kvz_kl_divergence(const float *reference_logits, const float *logits, int32_t n)
{
    double lp = log_sum_exp(reference_logits, n), lq = log_sum_exp(logits, n), kl = 0;
    for (int32_t i = 0; i < n; i++) {
        double log_p = reference_logits[i] - lp, log_q = logits[i] - lq;
        kl += exp(log_p) * (log_p - log_q);
    }
    return kl > 0 ? kl : 0; /* rounding can leave -1e-17 */
}

int64_t kvz_lcs_length(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    int64_t *row = calloc((size_t)nb + 1, sizeof *row);
    if (!row)
        return -1;
    for (int32_t i = 0; i < na; i++) {
        int64_t diagonal = 0; /* row[j] of the previous i, before it was overwritten */
        for (int32_t j = 1; j <= nb; j++) {
            int64_t up = row[j];
            row[j] = a[i] == b[j - 1] ? diagonal + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diagonal = up;
        }
    }
    int64_t n = row[nb];
    free(row);
    return n;
}
