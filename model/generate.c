/* generate.c — the prefill-then-decode loop. */
#include "model/generate.h"
#include "common/error.h"
#include "common/timer.h"

#include <stdlib.h>
#include <string.h>

int kvz_generate(kvz_context *c, const int32_t *prompt, int32_t n_prompt,
                 const kvz_generate_opts *opts, kvz_tokens *out, kvz_generate_stats *stats)
{
    kvz_model *m = kvz_context_model(c);
    memset(stats, 0, sizeof *stats);
    stats->prompt_tokens = n_prompt;
    kvz_eval_opts eval = {.logits = KVZ_LOGITS_KEEP}; /* sampled where they are */
    double t0 = kvz_now_seconds();
    int rc = kvz_context_eval(c, prompt, n_prompt, &eval, NULL);
    if (rc == KVZ_OK)
        rc = kvz_context_finish(c); /* so that prefill_seconds holds the prefill */
    double t1 = kvz_now_seconds();
    stats->prefill_seconds = t1 - t0;
    stats->stopped_by = KVZ_GENERATE_MAX_TOKENS; /* unless something else ends it first */
    for (int32_t i = 0; i < opts->max_tokens && rc == KVZ_OK; i++) {
        int32_t next;
        rc = kvz_context_sample(c, opts->sampler, &next);
        if (rc != KVZ_OK)
            break;
        if (kvz_tokenizer_is_end_of_generation(m->tokenizer, next)) {
            stats->stopped_by = KVZ_GENERATE_END_OF_TURN;
            break;
        }
        rc = kvz_tokens_push(out, next);
        if (rc != KVZ_OK)
            break;
        stats->generated_tokens++;
        if (opts->on_token) {
            const char *bytes;
            size_t len = kvz_token_bytes(m->tokenizer, next, 0, &bytes);
            if (opts->on_token(opts->on_token_ctx, next, bytes, len)) {
                stats->stopped_by = KVZ_GENERATE_CALLBACK;
                break;
            }
        }
        if (i + 1 == opts->max_tokens)
            break; /* the last token needs no forward pass */
        if (kvz_context_len(c) >= kvz_context_capacity(c)) {
            stats->stopped_by = KVZ_GENERATE_CONTEXT_FULL;
            break;
        }
        rc = kvz_context_eval(c, &next, 1, &eval, NULL);
        stats->decode_steps++;
    }
    stats->decode_seconds = kvz_now_seconds() - t1;
    return rc;
}

double kvz_generate_decode_rate(const kvz_generate_stats *s)
{
    return s->decode_steps > 0 && s->decode_seconds > 0 ? s->decode_steps / s->decode_seconds : 0.0;
}
