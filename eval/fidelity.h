/*
 * fidelity.h — how close a compressed cache's predictions stay to the full
 * cache's, and how much of a document a reconstruction got back.
 */
#ifndef KVZ_EVAL_FIDELITY_H
#define KVZ_EVAL_FIDELITY_H

#include <stdint.h>

/* KL(P || Q) in nats between the softmaxes of two logit rows of n entries:
 * P from the full cache (reference), Q from the compressed one. */
double kvz_kl_divergence(const float *reference_logits, const float *logits, int32_t n);

/* Length of the longest common subsequence of two token sequences (O(na·nb)
 * time, O(nb) memory); -1 when out of memory. */
int64_t kvz_lcs_length(const int32_t *a, int32_t na, const int32_t *b, int32_t nb);

#endif
