/*
 * content_winners.h — which content takes each name among the several
 * sources of one merge, known before anything is written, so that the
 * content that wins is copied first and what it beats then loses unwritten
 * (taken one source after the other, content a later source replaces was
 * copied first and left for `kvz gc`). The rule is the store's
 * (kvz_content_wins).
 */
#ifndef KVZ_TOOLS_CONTENT_WINNERS_H
#define KVZ_TOOLS_CONTENT_WINNERS_H

#include "format/transfer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct content_claim {
    char *name;
    kvz_content_stamp stamp;
    int wins; /* after settling: the winner under its name */
} content_claim;

typedef struct content_winners {
    content_claim *claims;
    size_t n, cap;
} content_winners;

/* A source holds `stamp`'s content under `name` (the same content may be
 * offered by several sources, at different times). */
int content_winners_offer(content_winners *w, const char *name, const kvz_content_stamp *stamp);
/* After every offer, before any judgement. */
void content_winners_settle(content_winners *w);
/* 1 when other content takes `name` from content `mine` over the sources,
 * else 0; *newest: the newest time any source offered mine at (mine's own
 * when later, or when no source did). */
int content_winners_judge(const content_winners *w, const char *name, const kvz_content_stamp *mine,
                          uint64_t *newest);
void content_winners_free(content_winners *w);

#endif
