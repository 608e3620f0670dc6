/*
 * tasks.h — evaluation documents with questions and expected answers, made
 * by the project and deterministic by seed (DESIGN §10).
 *
 *  passkey   a five-digit pass key hidden at a random depth in filler text;
 *            one question.
 *  needle    several "special magic number for <word>" lines spread through
 *            filler; one question per needle.
 *  facts     a sheet of invented people (city, profession, year, pet); several
 *            questions per sheet.
 *  repeat    a short invented story; the question asks to repeat the context
 *            and the answer is scored by token overlap with the document.
 *
 * Documents are about `target_words` words long (filler pads the retrieval
 * tasks; fact sheets and stories grow by entries or sentences).
 */
#ifndef KVZ_EVAL_TASKS_H
#define KVZ_EVAL_TASKS_H

#include <stddef.h>
#include <stdint.h>

typedef enum kvz_task_kind {
    KVZ_TASK_PASSKEY = 0,
    KVZ_TASK_NEEDLE,
    KVZ_TASK_FACTS,
    KVZ_TASK_REPEAT,
    KVZ_TASK_COUNT
} kvz_task_kind;

typedef struct kvz_task_question {
    char *question;
    char *answer; /* expected: a short string found in a correct answer; for
                     repeat, the whole document */
} kvz_task_question;

typedef struct kvz_task_doc {
    kvz_task_kind kind;
    char name[64];           /* "passkey-3" */
    char *text;
    size_t len;
    kvz_task_question *questions;
    int32_t n_questions;
} kvz_task_doc;

const char *kvz_task_name(kvz_task_kind k);
int kvz_task_from_name(const char *name); /* -1 if unknown */

/* Document `index` of task `kind` for `seed` (the same inputs give the same
 * document on every machine). Free with kvz_task_doc_free. */
int kvz_task_make(kvz_task_kind kind, int32_t index, uint64_t seed, int32_t target_words, kvz_task_doc *out);
void kvz_task_doc_free(kvz_task_doc *d);

/* Whether `answer` contains `expected` as whole words (case-insensitive,
 * punctuation ignored; spaces and commas inside numbers too, so "71 432" and
 * "71,432" match "71432", but "19045" does not match "1904"). */
int kvz_answer_matches(const char *answer, const char *expected);

#endif
