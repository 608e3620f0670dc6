/*
 * tokenizer.h — byte-level BPE read from a GGUF file's `tokenizer.ggml.*`.
 *
 * Encoding: control tokens are split out first (when asked to parse them),
 * then each remaining run is pre-split by the model's regexes
 * (pretokenize.h), mapped byte by byte onto GPT-2's printable alphabet and
 * merged by rank. Decoding maps back to the exact original bytes.
 */
#ifndef KVZ_MODEL_TOKENIZER_H
#define KVZ_MODEL_TOKENIZER_H

#include "model/gguf.h"

#include <stddef.h>
#include <stdint.h>

typedef enum kvz_token_type {
    KVZ_TOKEN_NORMAL = 1,
    KVZ_TOKEN_UNKNOWN = 2,
    KVZ_TOKEN_CONTROL = 3,
    KVZ_TOKEN_USER_DEFINED = 4,
    KVZ_TOKEN_UNUSED = 5,
    KVZ_TOKEN_BYTE = 6,
} kvz_token_type;

typedef struct kvz_tokenizer kvz_tokenizer;

/* A growable list of token ids, and the bytes of the text tokenized into it
 * that the vocabulary had no token for (left out: see kvz_tokenize). */
typedef struct kvz_tokens {
    int32_t *ids;
    size_t len, cap;
    size_t dropped;        /* bytes left out */
    uint8_t first_dropped; /* the first of them, where dropped > 0 */
} kvz_tokens;

int kvz_tokens_push(kvz_tokens *t, int32_t id);
void kvz_tokens_free(kvz_tokens *t);

/* Load from GGUF metadata. Errors: KVZ_ERR_NOT_FOUND (missing key),
 * KVZ_ERR_UNSUPPORTED (tokenizer model other than "gpt2", unknown
 * pre-tokenizer), KVZ_ERR_FORMAT (inconsistent vocabulary). */
int kvz_tokenizer_load(kvz_tokenizer **out, const kvz_gguf *g);
void kvz_tokenizer_free(kvz_tokenizer *t);

int32_t kvz_tokenizer_vocab_size(const kvz_tokenizer *t);
int32_t kvz_tokenizer_bos(const kvz_tokenizer *t); /* -1 if none */
int32_t kvz_tokenizer_eos(const kvz_tokenizer *t);
int kvz_tokenizer_adds_bos(const kvz_tokenizer *t);
/* Whether generation should stop at `id` (eos, end-of-turn tokens). */
int kvz_tokenizer_is_end_of_generation(const kvz_tokenizer *t, int32_t id);
kvz_token_type kvz_tokenizer_token_type(const kvz_tokenizer *t, int32_t id);
/* Id of the token whose vocabulary text is exactly `text`, or -1. */
int32_t kvz_tokenizer_find(const kvz_tokenizer *t, const char *text);
/* A fingerprint of the vocabulary and merges (xxh3-64). */
uint64_t kvz_tokenizer_hash(const kvz_tokenizer *t);

/* Append the tokens of text[0..n) to `out`. With parse_special, control-token
 * texts in the input become those tokens; otherwise they are plain text.
 * Never adds BOS. Any byte sequence is accepted: invalid UTF-8 is encoded
 * byte by byte (the reference, llama.cpp, reads each bad byte as U+FFFD:
 * callers that must agree with it refuse such text); a byte the vocabulary
 * has no token for is dropped, as the reference drops it, so such input does
 * not round-trip (counted in out->dropped). The pre-split's letters, digits and spaces are the
 * reference's (pretokenize.c), whatever Unicode the system's PCRE2 knows. */
int kvz_tokenize(const kvz_tokenizer *t, const char *text, size_t n, int parse_special,
                 kvz_tokens *out);

/* How many bytes of text[0..n) kvz_tokenize leaves out (no token in the
 * vocabulary) and, where *count > 0, the first of them. */
int kvz_tokenizer_untokenized(const kvz_tokenizer *t, const char *text, size_t n, size_t *count, uint8_t *first);

/* The bytes of token `id` (control tokens render as their text only with
 * render_special). Returns the length; *bytes points into the tokenizer. */
size_t kvz_token_bytes(const kvz_tokenizer *t, int32_t id, int render_special, const char **bytes);

/* Concatenated bytes of `ids`, NUL-terminated, malloc'ed. Ids out of range
 * give KVZ_ERR_ARG naming the position. */
int kvz_detokenize(const kvz_tokenizer *t, const int32_t *ids, size_t n, int render_special,
                   char **text, size_t *len);

#endif
