/*
 * content_winners.h — which content takes each name among the several
 * sources of one merge or import, decided before anything is written: with
 * the sources taken one after the other, content a later source replaces
 * would be copied first and left for `kvz gc`. The rule is the store's
 * (kvz_content_wins).
 */
#ifndef KVZ_TOOLS_CONTENT_WINNERS_H
#define KVZ_TOOLS_CONTENT_WINNERS_H

#include "format/transfer.h"

#include <stddef.h>

typedef struct content_claim {
    char *name;
    kvz_content_stamp stamp;
    const char *source; /* the caller's, shown in messages */
    int wins;           /* after settling: the winner under its name */
} content_claim;

typedef struct content_winners {
    content_claim *claims;
    size_t n, cap;
} content_winners;

/* A source holds `stamp`'s content under `name`; the same content offered
 * again counts at its newest. */
int content_winners_offer(content_winners *w, const char *name, const kvz_content_stamp *stamp, const char *source);
/* After every offer, before any lookup. */
void content_winners_settle(content_winners *w);
/* What the sources say of content `mine` under `name`: *claim is mine at
 * the newest time a source offered it, when later (*offered: some source
 * did); the return, the claim of other content that takes the name from it,
 * or NULL. */
const content_claim *content_winners_judge(const content_winners *w, const char *name,
                                           const kvz_content_stamp *mine, kvz_content_stamp *claim, int *offered);
void content_winners_free(content_winners *w);

#endif
