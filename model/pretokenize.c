/*
 * pretokenize.c — PCRE2 (UTF + UCP) implementation of the pre-split.
 *
 * The regexes are those llama.cpp associates with each `tokenizer.ggml.pre`
 * value (src/llama-vocab.cpp); a final `|\s+` alternative is added to the GPT-2
 * pattern so trailing whitespace forms one piece, as the reference's
 * hand-written splitter does.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/pretokenize.h"
#include "common/buffer.h"
#include "common/error.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REGEXES 4

/* The character classes as llama.cpp's own tables have them (its
 * unicode-data.cpp, Unicode 15.1), not as the system's PCRE2 does: a letter or
 * digit that Unicode added after PCRE2's tables (Debian 12's 10.42 has 14.0)
 * is added to \p{L} or \p{N} here, and whitespace is llama.cpp's list, which
 * leaves out U+180E (PCRE2's \s holds it). Class items, without brackets.
 * (A differential test over every code point found no other difference.) */
#define LETTER "\\p{L}\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}" \
    "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}" \
    "\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define DIGIT "\\p{N}\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"
#define SPACE "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Every pattern ends in runs of spaces; llama.cpp's Llama 3 and Qwen2 ones
 * differ only in how many digits a piece takes (up to three, one). */
#define SPACE_RUNS "|[" SPACE "]+(?![^" SPACE "])|[" SPACE "]+"
#define LLAMA3_STYLE(DIGITS)                                                                                      \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n" LETTER DIGIT "]?[" LETTER "]+|"          \
    "[" DIGIT "]" DIGITS "| ?[^" SPACE LETTER DIGIT "]+[\\r\\n]*|[" SPACE "]*[\\r\\n]+" SPACE_RUNS

static const char RE_DIGIT[] = "[" DIGIT "]";
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?[" LETTER "]+| ?[" DIGIT "]+| ?[^" SPACE LETTER DIGIT "]+" SPACE_RUNS;
static const char RE_LLAMA3[] = LLAMA3_STYLE("{1,3}");
static const char RE_QWEN2[] = LLAMA3_STYLE("");

typedef struct pre_kind {
    const char *name;
    const char *regexes[MAX_REGEXES];
    int ignore_merges;
} pre_kind;

static const pre_kind KINDS[] = {
    {"smollm", {RE_DIGIT, RE_GPT2}, 0},
    {"starcoder", {RE_DIGIT, RE_GPT2}, 0},
    {"refact", {RE_DIGIT, RE_GPT2}, 0},
    {"codeshell", {RE_DIGIT, RE_GPT2}, 0},
    {"gpt-2", {RE_GPT2}, 0},
    {"gpt2", {RE_GPT2}, 0},
    {"default", {RE_GPT2}, 0},
    {"llama-bpe", {RE_LLAMA3}, 1},
    {"llama3", {RE_LLAMA3}, 1},
    {"qwen2", {RE_QWEN2}, 0},
};

struct kvz_pretokenizer {
    const pre_kind *kind;
    pcre2_code *code[MAX_REGEXES];
    int n_code;
};

int kvz_span_list_push(kvz_span_list *l, size_t start, size_t len)
{
    kvz_span *grown = kvz_grow(l->items, &l->cap, l->len, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    l->items = grown;
    l->items[l->len++] = (kvz_span){start, len};
    return KVZ_OK;
}

void kvz_span_list_free(kvz_span_list *l)
{
    free(l->items);
    memset(l, 0, sizeof *l);
}

int kvz_pretokenizer_new(kvz_pretokenizer **out, const char *name)
{
    *out = NULL;
    const pre_kind *kind = NULL;
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        if (strcmp(KINDS[i].name, name) == 0)
            kind = &KINDS[i];
    if (!kind)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported", name);
    kvz_pretokenizer *p = calloc(1, sizeof *p);
    if (!p)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    p->kind = kind;
    for (int i = 0; i < MAX_REGEXES && kind->regexes[i]; i++) {
        int err;
        PCRE2_SIZE at;
        p->code[i] = pcre2_compile((PCRE2_SPTR)kind->regexes[i], PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
        if (!p->code[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            kvz_pretokenizer_free(p);
            return kvz_errorf(KVZ_ERR_INTERNAL, "pre-tokenizer regex %d: %s at %zu", i,
                              (const char *)msg, (size_t)at);
        }
        pcre2_jit_compile(p->code[i], PCRE2_JIT_COMPLETE); /* interpreter if JIT is unavailable */
        p->n_code++;
    }
    *out = p;
    return KVZ_OK;
}

void kvz_pretokenizer_free(kvz_pretokenizer *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_code; i++)
        pcre2_code_free(p->code[i]);
    free(p);
}

int kvz_pretokenizer_ignores_merges(const kvz_pretokenizer *p) { return p->kind->ignore_merges; }

/* Split one piece by one regex, appending matches and gaps to `out`. */
static int split_piece(pcre2_code *code, pcre2_match_data *md, const char *text, kvz_span piece,
                       kvz_span_list *out)
{
    PCRE2_SPTR subject = (PCRE2_SPTR)(text + piece.start);
    size_t pos = 0, gap_start = 0;
    while (pos < piece.len) {
        int rc = pcre2_match(code, subject, piece.len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return kvz_errorf(KVZ_ERR_INTERNAL, "pre-tokenizer: regex match failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* cannot happen with these patterns; never loop forever */
            pos = ms + 1;
            continue;
        }
        if (ms > gap_start)
            KVZ_TRY(kvz_span_list_push(out, piece.start + gap_start, ms - gap_start));
        KVZ_TRY(kvz_span_list_push(out, piece.start + ms, me - ms));
        pos = gap_start = me;
    }
    if (piece.len > gap_start)
        KVZ_TRY(kvz_span_list_push(out, piece.start + gap_start, piece.len - gap_start));
    return KVZ_OK;
}

int kvz_pretokenize(const kvz_pretokenizer *p, const char *text, size_t n, kvz_span_list *out)
{
    if (n == 0)
        return KVZ_OK;
    kvz_span_list cur = {0}, next = {0};
    int rc = kvz_span_list_push(&cur, 0, n);
    for (int i = 0; i < p->n_code && rc == KVZ_OK; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->code[i], NULL);
        if (!md) {
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory splitting text");
            break;
        }
        next.len = 0;
        for (size_t j = 0; j < cur.len && rc == KVZ_OK; j++)
            rc = split_piece(p->code[i], md, text, cur.items[j], &next);
        pcre2_match_data_free(md);
        kvz_span_list tmp = cur;
        cur = next;
        next = tmp;
    }
    for (size_t j = 0; j < cur.len && rc == KVZ_OK; j++)
        rc = kvz_span_list_push(out, cur.items[j].start, cur.items[j].len);
    kvz_span_list_free(&cur);
    kvz_span_list_free(&next);
    return rc;
}
