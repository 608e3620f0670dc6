/* prompt.c — prefix and question suffix tokens. */
#include "model/prompt.h"
#include "common/error.h"
#include "model/utf8.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int kvz_prompt_prefix(const kvz_model *m, kvz_tokens *out, uint64_t *hash)
{
    char *open;
    KVZ_TRY(kvz_chat_open_user_turn(&m->chat, NULL, &open));
    int rc = kvz_tokenize(m->tokenizer, open, strlen(open), 1, out);
    if (rc == KVZ_OK)
        rc = kvz_tokenize(m->tokenizer, KVZ_PROMPT_INSTRUCTION, strlen(KVZ_PROMPT_INSTRUCTION), 0, out);
    free(open);
    if (rc == KVZ_OK && hash)
        *hash = XXH3_64bits(out->ids, out->len * sizeof *out->ids);
    return rc;
}

int kvz_prompt_question(const kvz_model *m, const char *question, kvz_tokens *out)
{
    return kvz_prompt_question_quoting(m, question, NULL, 0, out);
}

int kvz_prompt_question_quoting(const kvz_model *m, const char *question, const int32_t *quoted,
                                size_t n_quoted, kvz_tokens *out)
{
    /* "\n\n" and the question are one string to the tokenizer, as they are in
     * the user's turn the template renders: before a word, a BPE pre-split
     * makes the blank line two "\n" tokens, never the "\n\n" token it
     * gives alone. The question ends the content the template may trim,
     * unless token ids are quoted after it. */
    KVZ_TRY(kvz_utf8_require(question, "the question"));
    size_t len = n_quoted ? strlen(question) : kvz_chat_content_end(&m->chat, question, strlen(question));
    char *text = malloc(len + 3);
    if (!text)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    memcpy(text, "\n\n", 2);
    memcpy(text + 2, question, len);
    text[len + 2] = '\0';
    char *close = NULL;
    int rc = kvz_chat_close_user_turn(&m->chat, &close);
    if (rc == KVZ_OK)
        rc = kvz_tokenize(m->tokenizer, text, len + 2, 0, out);
    for (size_t i = 0; i < n_quoted && rc == KVZ_OK; i++)
        rc = kvz_tokens_push(out, quoted[i]);
    if (rc == KVZ_OK)
        rc = kvz_tokenize(m->tokenizer, close, strlen(close), 1, out);
    free(close);
    free(text);
    return rc;
}
