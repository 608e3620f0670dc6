/*
 * pretokenize.h — the regex pre-split of byte-level BPE tokenizers.
 *
 * A pre-tokenizer is a list of regexes applied in order: each one splits every
 * current piece into its matches and the text between them (kept as pieces),
 * with the piece as the whole subject (lookaheads stop at its end). Which list
 * a model uses is named by `tokenizer.ggml.pre` in its GGUF file.
 */
#ifndef KVZ_MODEL_PRETOKENIZE_H
#define KVZ_MODEL_PRETOKENIZE_H

#include <stddef.h>

typedef struct kvz_span {
    size_t start;
    size_t len;
} kvz_span;

/* A growable list of spans. */
typedef struct kvz_span_list {
    kvz_span *items;
    size_t len, cap;
} kvz_span_list;

int kvz_span_list_push(kvz_span_list *l, size_t start, size_t len);
void kvz_span_list_free(kvz_span_list *l);

typedef struct kvz_pretokenizer kvz_pretokenizer;

/* Known names: "smollm", "gpt2", "starcoder", "refact", "codeshell" (digits,
 * then GPT-2), "gpt-2"/"default" (GPT-2), "llama-bpe"/"llama3" and "qwen2".
 * Unknown names give KVZ_ERR_UNSUPPORTED. */
int kvz_pretokenizer_new(kvz_pretokenizer **out, const char *name);
void kvz_pretokenizer_free(kvz_pretokenizer *p);

/* Whether BPE should emit a piece that is itself a vocabulary entry without
 * merging (Llama-3 tokenizers). */
int kvz_pretokenizer_ignores_merges(const kvz_pretokenizer *p);

/* Split text[0..n), which must be valid UTF-8, appending pieces (offsets into
 * text) to `out`. */
int kvz_pretokenize(const kvz_pretokenizer *p, const char *text, size_t n, kvz_span_list *out);

#endif
