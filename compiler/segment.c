/*
 * segment.c — greedy packing of paragraphs into segments.
 *
 * The text is cut into pieces (paragraphs; over-long paragraphs into lines;
 * over-long lines are left whole and cut by tokens, after a sentence where
 * one ends near the limit, else between characters). Pieces are packed in order
 * while the sum of their token counts stays within the limit; a segment is then
 * tokenized on its own, and if the seams made it longer than the limit (about
 * a token per paragraph) its last pieces move to the next segment, as many as
 * it takes: no segment exceeds the limit.
 */
#include "compiler/segment.h"
#include "common/buffer.h"
#include "common/error.h"
#include "model/utf8.h"

#include <stdlib.h>
#include <string.h>

void kvz_segments_free(kvz_segments *s)
{
    for (size_t i = 0; i < s->len; i++)
        kvz_tokens_free(&s->items[i].tokens);
    free(s->items);
    memset(s, 0, sizeof *s);
}

static int add_segment(kvz_segments *s, size_t start, size_t len, kvz_tokens *tokens)
{
    kvz_segment *grown = kvz_grow(s->items, &s->cap, s->len, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    s->items = grown;
    s->items[s->len++] = (kvz_segment){start, len, *tokens};
    memset(tokens, 0, sizeof *tokens);
    return KVZ_OK;
}

static int count_tokens(const kvz_tokenizer *t, const char *text, size_t len, kvz_tokens *out, size_t *work)
{
    *work += len;
    out->len = 0;
    out->dropped = 0;
    return kvz_tokenize(t, text, len, 0, out);
}

/* A line's end: LF, or a lone CR (a classic Mac text; CRLF is LF by now). */
static int line_break(char c) { return c == '\n' || c == '\r'; }

/* End of the piece starting at `at`: after the next blank line, or with
 * by_line after the next line's end; the text's end otherwise. */
static size_t piece_end(const char *text, size_t len, size_t at, int by_line)
{
    for (size_t i = at; i < len; i++) {
        if (!line_break(text[i]))
            continue;
        if (by_line)
            return i + 1;
        if (i + 1 < len && line_break(text[i + 1])) {
            size_t e = i + 2;
            while (e < len && line_break(text[e]))
                e++; /* keep runs of blank lines with the paragraph they close */
            return e;
        }
    }
    return len;
}

/* A mark that belongs to the character before it: a segment does not begin
 * with one. The combining marks of the scripts most written (Latin's accents,
 * Hebrew's points, Arabic's harakat, the vowel signs of the Indic scripts,
 * which share one layout from Devanagari to Malayalam, Sinhala's, Thai's and Lao's, Hangul's
 * vowel and final jamo), variation selectors, an emoji's skin tone, a flag's
 * tag, the joiner of a ZWJ sequence. Not every mark of Unicode: a segment may
 * still open with a rarer one. */
static int joins_previous(uint32_t cp)
{
    uint32_t indic = cp & 0x7F; /* the Indic blocks, U+0900..U+0D7F, 128 code points each */
    return (cp >= 0x300 && cp <= 0x36F) || (cp >= 0x591 && cp <= 0x5C7 && cp != 0x5BE && cp != 0x5C0 &&
                                            cp != 0x5C3 && cp != 0x5C6) ||
           (cp >= 0x610 && cp <= 0x61A) || (cp >= 0x64B && cp <= 0x65F) || cp == 0x670 ||
           (cp >= 0x6D6 && cp <= 0x6ED && cp != 0x6DD && cp != 0x6DE && cp != 0x6E5 && cp != 0x6E6 && cp != 0x6E9) ||
           (cp >= 0x900 && cp <= 0xD7F && (indic <= 0x03 || (indic >= 0x3A && indic <= 0x4F && indic != 0x3D) ||
                                           (indic >= 0x51 && indic <= 0x57) || indic == 0x62 || indic == 0x63)) ||
           (cp >= 0xD81 && cp <= 0xD83) || cp == 0xDCA || (cp >= 0xDCF && cp <= 0xDDF) || cp == 0xDF2 ||
           cp == 0xDF3 || /* Sinhala's, laid out otherwise */
           cp == 0xE31 || (cp >= 0xE34 && cp <= 0xE3A) || (cp >= 0xE47 && cp <= 0xE4E) || cp == 0xEB1 ||
           (cp >= 0xEB4 && cp <= 0xEBC) || (cp >= 0xEC8 && cp <= 0xECE) || (cp >= 0x1160 && cp <= 0x11FF) ||
           (cp >= 0x1AB0 && cp <= 0x1AFF) || (cp >= 0x1DC0 && cp <= 0x1DFF) || cp == 0x200D ||
           (cp >= 0x20D0 && cp <= 0x20FF) || (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0xFE20 && cp <= 0xFE2F) ||
           (cp >= 0x1F3FB && cp <= 0x1F3FF) || (cp >= 0xE0020 && cp <= 0xE007F) || (cp >= 0xE0100 && cp <= 0xE01EF);
}

/* A regional indicator: two make a flag, and a cut between them halves it. */
static int regional_indicator(uint32_t cp) { return cp >= 0x1F1E6 && cp <= 0x1F1FF; }

/* A line's tokens and the bytes they stand for: at[k] is where token k's
 * begin (at[n] the end). Cut points are judged on these bytes, as a character
 * may span tokens (SmolLM2 holds half a flag in three). */
typedef struct token_bytes {
    char *bytes;
    size_t *at;
    size_t n;
} token_bytes;

static int token_bytes_of(const kvz_tokenizer *t, const kvz_tokens *toks, token_bytes *tb)
{
    kvz_buffer b = {0};
    tb->n = toks->len;
    tb->at = malloc((toks->len + 1) * sizeof *tb->at);
    for (size_t k = 0; tb->at && k < toks->len; k++) {
        const char *piece;
        size_t len = kvz_token_bytes(t, toks->ids[k], 0, &piece);
        tb->at[k] = b.len;
        kvz_buffer_append(&b, piece, len);
    }
    kvz_buffer_append(&b, "", 1); /* a NUL past the end: reads of a character's bytes stop there */
    if (!tb->at || b.failed) {
        free(tb->at);
        tb->at = NULL;
        kvz_buffer_free(&b);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory cutting a line into segments");
    }
    tb->at[toks->len] = b.len - 1;
    tb->bytes = (char *)b.data;
    return KVZ_OK;
}

/* Whether a segment may begin at token k (0 < k < n): on a character's first
 * byte; with whole_graphemes, also not on a mark joining the character before,
 * nor after a zero-width joiner, nor between the two halves of a flag. */
static int may_begin_at(const token_bytes *tb, size_t k, int whole_graphemes)
{
    const unsigned char *s = (const unsigned char *)tb->bytes + tb->at[k];
    size_t o = tb->at[k], rest = tb->at[tb->n] - o;
    if (rest == 0 || (s[0] & 0xC0) == 0x80)
        return rest == 0;
    if (!whole_graphemes)
        return 1;
    uint32_t first = kvz_utf8_decode(s, rest, NULL);
    if (joins_previous(first) || (o >= 3 && memcmp(s - 3, "\xe2\x80\x8d", 3) == 0))
        return 0;
    size_t indicators = 0; /* the regional indicators just before: an odd count ends half a flag */
    while (regional_indicator(first) && o >= 4 * (indicators + 1) &&
           regional_indicator(kvz_utf8_decode(s - 4 * (indicators + 1), 4, NULL)))
        indicators++;
    return indicators % 2 == 0;
}

/* Whether token k ends a sentence: a CJK or Devanagari full stop, or . ! ?
 * before a space or a line end (not "3.14" nor "example.com"). */
static int ends_sentence(const token_bytes *tb, size_t k)
{
    const char *end = tb->bytes + tb->at[k + 1];
    size_t n = tb->at[k + 1];
    static const char *const stops[] = {"\xe3\x80\x82", "\xef\xbc\x81", "\xef\xbc\x9f", "\xef\xbc\x8e",
                                        "\xe0\xa5\xa4"}; /* 。！？．। */
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        size_t sn = strlen(stops[i]);
        if (n >= sn && memcmp(end - sn, stops[i], sn) == 0)
            return 1;
    }
    return n && (end[-1] == '.' || end[-1] == '!' || end[-1] == '?') &&
           (end[0] == ' ' || end[0] == '\t' || end[0] == '\n');
}

/* Where the part of a line over the limit that starts at token `from` ends,
 * `end` (< n) at most: after a sentence in its last quarter (256 tokens at
 * most), else between graphemes, else between characters (a run of 64 tokens
 * without either: a flag after flag), else at `end`. */
static size_t cut_point(const token_bytes *tb, size_t from, size_t end)
{
    size_t span = end - from, low = end - (span / 4 < 256 ? span / 4 : 256);
    for (size_t k = end; k > low && k > from + 1; k--)
        if (ends_sentence(tb, k - 1) && may_begin_at(tb, k, 1))
            return k;
    for (int whole = 1; whole >= 0; whole--)
        for (size_t k = end; k + 64 > end && k > from + 1; k--)
            if (may_begin_at(tb, k, whole))
                return k;
    return end;
}

/* A piece alone over the limit: its tokens are cut into segments of the limit
 * at most, between sentences or at least characters (byte offsets are then
 * those of the whole piece). */
static int cut_by_tokens(const kvz_tokenizer *t, const kvz_tokens *toks, size_t start, size_t len, int32_t max,
                         kvz_segments *out)
{
    token_bytes tb = {0};
    int rc = token_bytes_of(t, toks, &tb);
    for (size_t i = 0, n; rc == KVZ_OK && i < toks->len; i += n) {
        size_t end = toks->len - i <= (size_t)max ? toks->len : cut_point(&tb, i, i + (size_t)max);
        n = end - i;
        kvz_tokens part = {0};
        for (size_t k = 0; k < n && rc == KVZ_OK; k++)
            rc = kvz_tokens_push(&part, toks->ids[i + k]);
        if (rc == KVZ_OK)
            rc = add_segment(out, start, len, &part);
        if (rc != KVZ_OK)
            kvz_tokens_free(&part);
    }
    free(tb.bytes);
    free(tb.at);
    return rc;
}

/* The pieces of the segment being packed: where each starts, and its tokens
 * counted alone. */
typedef struct packed_piece {
    size_t start, tokens;
} packed_piece;
typedef struct pieces {
    packed_piece *items;
    size_t len, cap;
} pieces;

static int pieces_push(pieces *p, size_t start, size_t tokens)
{
    packed_piece *grown = kvz_grow(p->items, &p->cap, p->len, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    p->items = grown;
    p->items[p->len++] = (packed_piece){start, tokens};
    return KVZ_OK;
}

/* Close the segment [seg_start, end) of the pieces p: tokenized whole, its
 * count may exceed the sum of its pieces' (a blank line ending a paragraph is
 * one token alone, two before a word), so pieces are given back from its end
 * until it fits: one first (the segments of earlier versions, which stopped
 * there), then as many as the excess asks, a seam's token counted with each.
 * A single piece fits (counted alone). *cut is where the segment ends; one
 * the tokenizer drops whole (control bytes at the text's end) is no segment. */
static int close_segment(const kvz_tokenizer *t, const char *text, size_t seg_start, size_t end,
                         const pieces *p, int32_t max, kvz_tokens *toks, kvz_segments *out, size_t *cut)
{
    size_t n = p->len;
    KVZ_TRY(count_tokens(t, text + seg_start, end - seg_start, toks, &out->tokenized));
    for (int tries = 0; toks->len > (size_t)max && n > 1; tries++) {
        size_t excess = tries ? toks->len - (size_t)max : 1, given = 0;
        while (n > 1 && given < excess)
            given += p->items[--n].tokens + 1;
        end = p->items[n].start;
        KVZ_TRY(count_tokens(t, text + seg_start, end - seg_start, toks, &out->tokenized));
    }
    *cut = end;
    return toks->len ? add_segment(out, seg_start, end - seg_start, toks) : KVZ_OK;
}

/* The rest of a paragraph over the limit, from `at` to `end`: its tokens, or
 * an estimate of them from below. A paragraph's lines are pieces while the rest
 * of it is over the limit, and the rest is one piece once it fits; the rest was
 * tokenized again at every line, which made a paragraph of many lines (a log
 * without blank lines: the whole file) quadratic. Now it is tokenized once, and
 * each line taken off lowers the count by the line's tokens and SEAM_SLACK (the
 * tokens a seam can add or take: a run of spaces around a line end pre-splits
 * across it); it is tokenized again only when that estimate fits. A position
 * before `at` in the same paragraph (a segment closed, its last lines given
 * back) has more to its end and is over the limit too. */
typedef struct long_paragraph {
    size_t start, at, end;
    size_t tokens;
} long_paragraph;
enum { SEAM_SLACK = 8 };

/* The piece starting at `at`: the rest of its paragraph where that fits in
 * max tokens, else its line. *end is where the piece ends, toks its tokens. */
static int next_piece(const kvz_tokenizer *t, const char *text, size_t len, size_t at, int32_t max,
                      long_paragraph *lp, kvz_tokens *toks, size_t *end, size_t *work)
{
    int known_over = at >= lp->start && at < lp->end && (at < lp->at || (at == lp->at && lp->tokens > (size_t)max));
    if (!known_over) {
        *end = piece_end(text, len, at, 0);
        KVZ_TRY(count_tokens(t, text + at, *end - at, toks, work));
        if (toks->len <= (size_t)max)
            return KVZ_OK;
        *lp = (long_paragraph){at, at, *end, toks->len};
    }
    *end = piece_end(text, len, at, 1);
    KVZ_TRY(count_tokens(t, text + at, *end - at, toks, work));
    if (at == lp->at) { /* the estimate moves on past this line */
        size_t less = toks->len + SEAM_SLACK;
        lp->tokens = lp->tokens > less ? lp->tokens - less : 0;
        lp->at = *end;
    }
    return KVZ_OK;
}

int kvz_segment_text(const kvz_tokenizer *t, const char *text, size_t len, int32_t max_tokens,
                     kvz_segments *out)
{
    memset(out, 0, sizeof *out);
    if (max_tokens < 16)
        return kvz_errorf(KVZ_ERR_ARG, "segment limit of %d tokens is too small", max_tokens);
    kvz_tokens toks = {0}, piece = {0};
    int rc = count_tokens(t, text, len, &toks, &out->tokenized);
    out->dropped = toks.dropped; /* the pieces below leave out the same bytes */
    out->first_dropped = toks.first_dropped;
    if (rc == KVZ_OK && toks.len <= (size_t)max_tokens) {
        rc = add_segment(out, 0, len, &toks);
        kvz_tokens_free(&toks);
        if (rc != KVZ_OK)
            kvz_segments_free(out);
        return rc;
    }
    /* pieces are packed by the sum of their own token counts, then the
     * segment is tokenized whole and gives back what does not fit (the next
     * segment reads those pieces again) */
    pieces p = {0};
    size_t seg_start = 0, at = 0, estimate = 0, cut;
    long_paragraph lp = {0};
    while (rc == KVZ_OK && seg_start < len) {
        if (at < len) {
            size_t end;
            rc = next_piece(t, text, len, at, max_tokens, &lp, &piece, &end, &out->tokenized);
            if (rc != KVZ_OK)
                break;
            if (piece.len > (size_t)max_tokens) { /* a single line over the limit */
                if (at > seg_start) {
                    rc = close_segment(t, text, seg_start, at, &p, max_tokens, &toks, out, &cut);
                    seg_start = at = cut, estimate = 0, p.len = 0;
                    continue; /* the line comes again, alone in its segment */
                }
                rc = cut_by_tokens(t, &piece, at, end - at, max_tokens, out);
                seg_start = at = end;
                continue;
            }
            if (estimate + piece.len <= (size_t)max_tokens) {
                rc = pieces_push(&p, at, piece.len);
                estimate += piece.len;
                at = end;
                continue;
            }
        }
        /* this piece does not fit, or the text ended: close [seg_start, at) */
        rc = close_segment(t, text, seg_start, at, &p, max_tokens, &toks, out, &cut);
        seg_start = at = cut, estimate = 0, p.len = 0;
    }
    free(p.items);
    kvz_tokens_free(&toks);
    kvz_tokens_free(&piece);
    if (rc != KVZ_OK)
        kvz_segments_free(out);
    return rc;
}
