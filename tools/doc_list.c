/* doc_list.c — the rows of `kvz ls` and `kvz unpack --check`. */
#include "tools/doc_list.h"
#include "common/error.h"
#include "format/transfer.h"
#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

void doc_list_init(doc_list *l, int json)
{
    *l = (doc_list){.json = json, .name_width = 40, .summary_width = 36};
}

#define NAME_MAX_COLUMNS 100 /* a longer name pushes its own line's columns, not every line's */

/* The first pass: the columns' widths. */
int doc_list_measure(void *ctx, const char *name, kvz_doc_record *rec)
{
    doc_list *l = ctx;
    char shown[CLI_SHOWN_MAX];
    cli_shown(shown, name, strlen(name));
    int columns = (int)strlen(shown) - cli_pad_width(shown, 0);
    if (columns > l->name_width && columns <= NAME_MAX_COLUMNS)
        l->name_width = columns;
    for (uint32_t i = 0; i < rec->n_entries; i++) { /* a bundle's summary is untrusted text: shown escaped */
        if (!l->model_seen)
            l->model = rec->entries[i].model_fingerprint, l->model_seen = 1;
        l->several_models |= rec->entries[i].model_fingerprint != l->model;
        cli_shown(shown, rec->entries[i].summary, strlen(rec->entries[i].summary));
        columns = (int)strlen(shown) - cli_pad_width(shown, 0);
        if (columns > l->summary_width)
            l->summary_width = columns;
    }
    return KVZ_OK;
}

/* The columns' names, above the first row (times are local: TZ's). */
static void header(const doc_list *l)
{
    printf("%-*s %2s %-8s  %-*s %11s %8s %13s %14s  %s\n", l->name_width, "document", "#", "id",
           l->summary_width, "configuration", "tokens", "segments", "stored", "per token",
           l->several_models ? "created (local)   model" : "created (local)");
}

int doc_list_row(void *ctx, const char *name, kvz_doc_record *rec)
{
    doc_list *l = ctx;
    if (!l->json && l->docs == 0)
        header(l);
    l->docs++;
    l->tokens += kvz_doc_record_newest(rec, NULL)->n_tokens;
    for (uint32_t i = 0; i < rec->n_entries; i++) {
        const kvz_doc_entry *e = &rec->entries[i];
        l->configs++;
        l->bytes += e->stored_bytes;
        char when[32];
        cli_format_time(e->created, when);
        if (l->json) {
            printf("{\"document\":");
            cli_json_string(stdout, name, strlen(name));
            printf(",\"config\":%u,\"config_id\":\"%016llx\",\"model_fingerprint\":\"%016llx\",\"summary\":", i + 1,
                   (unsigned long long)e->config_id, (unsigned long long)e->model_fingerprint);
            cli_json_string(stdout, e->summary, strlen(e->summary));
            printf(",\"tokens\":%u,\"segments\":%u,\"bytes\":%llu,\"bytes_per_token\":%.2f,"
                   "\"created\":%llu,\"artifacts\":[", e->n_tokens, e->n_segments, (unsigned long long)e->stored_bytes,
                   e->n_tokens ? (double)e->stored_bytes / e->n_tokens : 0, (unsigned long long)e->created);
            for (uint32_t k = 0; k < e->n_segments; k++) {
                char id[33];
                kvz_hex(e->artifact_ids[k], 16, id);
                printf("%s\"%s\"", k ? "," : "", id);
            }
            printf("]}\n");
        } else {
            char shown[CLI_SHOWN_MAX], summary[CLI_SHOWN_MAX];
            cli_shown(shown, name, strlen(name));
            cli_shown(summary, e->summary, strlen(e->summary));
            char id[17], model[32] = ""; /* 8 digits, more where two begin alike */
            if (l->several_models) /* which forms a query with one model can use */
                snprintf(model, sizeof model, "  model %08llx", (unsigned long long)(e->model_fingerprint >> 32));
            printf("%-*s %2u %s  %-*s %7u tok %4u seg %10.1f KB %8.1f B/tok  %s%s\n",
                   cli_pad_width(shown, l->name_width), shown, i + 1, kvz_doc_record_short_id(rec, e->config_id, id),
                   cli_pad_width(summary, l->summary_width),
                   summary,
                   e->n_tokens, e->n_segments, e->stored_bytes / 1024.0,
                   e->n_tokens ? (double)e->stored_bytes / e->n_tokens : 0, when, model);
        }
    }
    return KVZ_OK;
}

void doc_list_totals(const doc_list *l, const char *note)
{
    printf("%zu document(s) of %llu tokens in %zu form(s), %.1f KB of artifacts%s%s%s\n", l->docs,
           (unsigned long long)l->tokens, l->configs, l->bytes / 1024.0, note ? " (" : "", note ? note : "",
           note ? ")" : "");
}
