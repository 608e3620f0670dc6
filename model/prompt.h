/*
 * prompt.h — the prompt around a document (DESIGN §3), shared by the compiler
 * and the runtime so both build exactly the same tokens:
 *
 *   [ prefix | document | question suffix ]
 *   prefix   = chat template's system turn + the opening of the user turn +
 *              KVZ_PROMPT_INSTRUCTION
 *   suffix   = "\n\n" + question (tokenized as one string, as in the rendered
 *              turn) + end of the user turn + assistant header
 *              (the question's end trimmed as the template trims a message)
 *
 * The prefix is the same for every document of a (model, template).
 */
#ifndef KVZ_MODEL_PROMPT_H
#define KVZ_MODEL_PROMPT_H

#include "model/model.h"

#define KVZ_PROMPT_INSTRUCTION \
    "Answer the question that follows the context, using only the context.\n\nContext:\n"

/* The prefix tokens and their hash (xxh3 of the ids). */
int kvz_prompt_prefix(const kvz_model *m, kvz_tokens *out, uint64_t *hash);

/* The suffix that asks `question` after a document. */
int kvz_prompt_question(const kvz_model *m, const char *question, kvz_tokens *out);

/* The same with token ids quoted verbatim right after the question text
 * (KVzip's "repeat from <these tokens>"). */
int kvz_prompt_question_quoting(const kvz_model *m, const char *question, const int32_t *quoted,
                                size_t n_quoted, kvz_tokens *out);

#endif
