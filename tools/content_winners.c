/* content_winners.c — the names several sources of a merge contend for. */
#include "tools/content_winners.h"
#include "common/buffer.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

int content_winners_offer(content_winners *w, const char *name, const kvz_content_stamp *stamp)
{
    content_claim *grown = kvz_grow(w->claims, &w->cap, w->n, sizeof *grown);
    if (!grown)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    w->claims = grown;
    content_claim *c = &w->claims[w->n];
    if (!(c->name = strdup(name)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    c->stamp = *stamp;
    c->wins = 0;
    w->n++;
    return KVZ_OK;
}

/* By name, then the winner first (a content's newest offer first). */
static int by_name_winner_first(const void *a, const void *b)
{
    const content_claim *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return kvz_content_wins(&x->stamp, &y->stamp) ? -1 : kvz_content_wins(&y->stamp, &x->stamp) ? 1 : 0;
}

void content_winners_settle(content_winners *w)
{
    if (w->n)
        qsort(w->claims, w->n, sizeof *w->claims, by_name_winner_first);
    for (size_t i = 0; i < w->n; i++)
        w->claims[i].wins = i == 0 || strcmp(w->claims[i - 1].name, w->claims[i].name) != 0;
}

static int by_name(const void *key, const void *elem)
{
    return strcmp(key, ((const content_claim *)elem)->name);
}

int content_winners_judge(const content_winners *w, const char *name, const kvz_content_stamp *mine,
                          uint64_t *newest)
{
    *newest = mine->newest;
    const content_claim *hit = w->n ? bsearch(name, w->claims, w->n, sizeof *w->claims, by_name) : NULL;
    if (!hit)
        return 0;
    while (!hit->wins) /* any claim under the name: its first is the winner */
        hit--;
    for (const content_claim *c = hit; c < w->claims + w->n && strcmp(c->name, name) == 0; c++)
        if (memcmp(c->stamp.doc_hash, mine->doc_hash, 16) == 0) {
            *newest = c->stamp.newest > *newest ? c->stamp.newest : *newest;
            break; /* a content's claims come newest first */
        }
    kvz_content_stamp at = {.newest = *newest};
    memcpy(at.doc_hash, mine->doc_hash, 16);
    return memcmp(hit->stamp.doc_hash, mine->doc_hash, 16) != 0 && kvz_content_wins(&hit->stamp, &at);
}

void content_winners_free(content_winners *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->claims[i].name);
    free(w->claims);
    *w = (content_winners){0};
}
