/*
 * segment.c — greedy packing of paragraphs into segments.
 *
 * The text is cut into pieces (paragraphs; over-long paragraphs into lines;
 * over-long lines are left whole and cut by tokens). Pieces are packed in order
 * while the sum of their token counts stays within the limit; a segment is then
 * tokenized on its own, and if the seams made it longer than the limit (about
 * a token per paragraph) its last pieces move to the next segment, as many as
 * it takes: no segment exceeds the limit.
 */
#include "compiler/segment.h"
#include "common/buffer.h"
#include "common/error.h"

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

static int count_tokens(const kvz_tokenizer *t, const char *text, size_t len, kvz_tokens *out)
{
    out->len = 0;
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

/* A piece alone over the limit: its tokens are cut into full-size segments
 * (byte offsets are then those of the whole piece). */
static int cut_by_tokens(const kvz_tokens *toks, size_t start, size_t len, int32_t max, kvz_segments *out)
{
    for (size_t i = 0; i < toks->len; i += (size_t)max) {
        size_t n = toks->len - i < (size_t)max ? toks->len - i : (size_t)max;
        kvz_tokens part = {0};
        for (size_t k = 0; k < n; k++)
            KVZ_TRY(kvz_tokens_push(&part, toks->ids[i + k]));
        int rc = add_segment(out, start, len, &part);
        if (rc != KVZ_OK) {
            kvz_tokens_free(&part);
            return rc;
        }
    }
    return KVZ_OK;
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
    KVZ_TRY(count_tokens(t, text + seg_start, end - seg_start, toks));
    for (int tries = 0; toks->len > (size_t)max && n > 1; tries++) {
        size_t excess = tries ? toks->len - (size_t)max : 1, given = 0;
        while (n > 1 && given < excess)
            given += p->items[--n].tokens + 1;
        end = p->items[n].start;
        KVZ_TRY(count_tokens(t, text + seg_start, end - seg_start, toks));
    }
    *cut = end;
    return toks->len ? add_segment(out, seg_start, end - seg_start, toks) : KVZ_OK;
}

int kvz_segment_text(const kvz_tokenizer *t, const char *text, size_t len, int32_t max_tokens,
                     kvz_segments *out)
{
    memset(out, 0, sizeof *out);
    if (max_tokens < 16)
        return kvz_errorf(KVZ_ERR_ARG, "segment limit of %d tokens is too small", max_tokens);
    kvz_tokens toks = {0}, piece = {0};
    int rc = count_tokens(t, text, len, &toks);
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
    while (rc == KVZ_OK && seg_start < len) {
        if (at < len) {
            size_t end = piece_end(text, len, at, 0);
            rc = count_tokens(t, text + at, end - at, &piece);
            if (rc == KVZ_OK && piece.len > (size_t)max_tokens) {
                end = piece_end(text, len, at, 1);
                rc = count_tokens(t, text + at, end - at, &piece);
            }
            if (rc != KVZ_OK)
                break;
            if (piece.len > (size_t)max_tokens) { /* a single line over the limit */
                if (at > seg_start) {
                    rc = close_segment(t, text, seg_start, at, &p, max_tokens, &toks, out, &cut);
                    seg_start = at = cut, estimate = 0, p.len = 0;
                    continue; /* the line comes again, alone in its segment */
                }
                rc = cut_by_tokens(&piece, at, end - at, max_tokens, out);
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
