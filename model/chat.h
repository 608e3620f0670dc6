/*
 * chat.h — chat templates, chosen from a GGUF file's `tokenizer.chat_template`.
 *
 * kvz does not run Jinja: it recognises the template families it knows by
 * their markers and renders them in C. ChatML (SmolLM2, Qwen2) and Llama-3
 * (3.0, and 3.1+ with its dated system turn) are known; the rendered text
 * contains control-token texts and is tokenized with parse_special on.
 */
#ifndef KVZ_MODEL_CHAT_H
#define KVZ_MODEL_CHAT_H

#include "model/gguf.h"

typedef enum kvz_chat_kind {
    KVZ_CHAT_CHATML = 1,
    KVZ_CHAT_LLAMA3 = 2,
} kvz_chat_kind;

typedef struct kvz_chat {
    kvz_chat_kind kind;
    char *default_system; /* system prompt the template adds when none is given, or NULL */
    /* Llama 3.1 and later: the text that opens a system turn the template
     * always writes, before the (trimmed) system message if any ("Cutting
     * Knowledge Date: ...\nToday Date: ...\n\n"); NULL for Llama 3.0. */
    char *system_preamble;
    /* the template is of no family kvz knows (kind 0), or a Llama-3 one whose
     * system turn kvz cannot write: what rendering says (the model still
     * loads: a raw prompt needs no template) */
    char *unknown;
} kvz_chat;

typedef struct kvz_chat_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} kvz_chat_message;

/* Detect the template. A file without a template gets ChatML if its
 * vocabulary has <|im_start|> (has_im_start). A template of an unknown family
 * (or none, without <|im_start|>), or a Llama-3 one whose dated system turn
 * kvz cannot read, is not an error here: rendering fails with
 * KVZ_ERR_UNSUPPORTED saying why. */
int kvz_chat_init(kvz_chat *c, const kvz_gguf *g, int has_im_start);
void kvz_chat_free(kvz_chat *c);

/* Render messages; a conversation not opening with a system message gets the
 * template's default one. With add_generation_prompt the assistant header
 * follows. `*out` is malloc'ed. */
int kvz_chat_render(const kvz_chat *c, const kvz_chat_message *msgs, size_t n,
                    int add_generation_prompt, char **out);

const char *kvz_chat_kind_name(kvz_chat_kind kind);

/* The length of a message's content (s, len bytes) without what the template
 * trims from its end: Llama-3 trims whitespace as Jinja's `trim` does (every
 * Unicode space, Python's str.isspace); ChatML keeps it all. */
size_t kvz_chat_content_end(const kvz_chat *c, const char *s, size_t len);

/* The text that opens a user turn, after the system turn (`system`, or the
 * template's default when NULL), and the text that closes a user turn and
 * opens the assistant's. A prompt is open + content + close. malloc'ed. */
int kvz_chat_open_user_turn(const kvz_chat *c, const char *system, char **out);
int kvz_chat_close_user_turn(const kvz_chat *c, char **out);

#endif
