/*
 * doc_list.h — the listing of compiled documents `kvz ls` prints, a row per
 * compiled form (this listing's number, the id's first 8 hex digits, the
 * parameters, tokens, segments, bytes, date, and where forms of more than
 * one model are listed, the model's fingerprint) or with --json an object per
 * form: a store's documents for ls, a bundle's for `kvz unpack --check`.
 */
#ifndef KVZ_TOOLS_DOC_LIST_H
#define KVZ_TOOLS_DOC_LIST_H

#include "format/doc_record.h"

#include <stddef.h>
#include <stdint.h>

typedef struct doc_list {
    int json;
    size_t docs, configs;
    uint64_t bytes, tokens; /* tokens: each document once (its newest form's count) */
    int name_width, summary_width; /* text columns: the longest seen by doc_list_measure */
    uint64_t model;                 /* the first model fingerprint doc_list_measure saw */
    int model_seen, several_models; /* it saw another: text rows then end with their model's */
} doc_list;

void doc_list_init(doc_list *l, int json);

/* Visitors of kvz_scan_documents (ctx: the doc_list). Text rows line up when
 * every document went through doc_list_measure before the first row. */
int doc_list_measure(void *ctx, const char *name, kvz_doc_record *rec);
int doc_list_row(void *ctx, const char *name, kvz_doc_record *rec);

/* The text listing's last line: documents, tokens, forms and bytes, then
 * `note` in parentheses (NULL: none). */
void doc_list_totals(const doc_list *l, const char *note);

#endif
