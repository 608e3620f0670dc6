/* cmd_store.c — `kvz ls`, `kvz inspect`, `kvz verify`, `kvz stats`, `kvz gc` and `kvz rm`:
 * looking after a store. */
#include "common/buffer.h"
#include "common/error.h"
#include "common/file_util.h"
#include "compiler/select.h"
#include "format/artifact.h"
#include "format/doc_record.h"
#include "format/store.h"
#include "format/transfer.h"
#include "tools/cli.h"
#include "tools/doc_list.h"
#include "tools/store_collect.h"

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>


/* The f16 size of a full cache of n tokens (keys and values, every layer and head). */
static double full_cache_bytes(const kvz_manifest *m, uint64_t n)
{
    return (double)n * m->model.n_layers * m->model.n_kv_heads * m->model.head_dim * 2 * 2;
}

typedef struct store_args {
    const char *store;
    int json;
    const char *svg;
    kvz_config_pick config; /* inspect: which entry of the document */
    const char *doc;
    char **docs; /* rm: the documents named (want_doc 2), the arguments then --from's */
    int n_docs;
    int older_configs, dry_run; /* gc, rm */
    const char *names_from;     /* rm --from FILE ("-": stdin) */
    int names_only, null_sep;   /* ls --names; --null */
    char *names_text;           /* --from's content, which docs points into */
} store_args;

static void store_args_free(store_args *a)
{
    if (a->names_text) /* docs was made here */
        free(a->docs);
    free(a->names_text);
}

/* rm --from: the names in a->names_from (one per line, or NUL-terminated with
 * --null; empty ones passed over) after those given as arguments. */
static int read_names(const char *cmd, store_args *a)
{
    size_t len;
    int st = cli_read_input(a->names_from, &a->names_text, &len);
    if (st != KVZ_OK) /* nothing held */
        return cli_fail(cmd, kvz_error_context(st, "--from %s", a->names_from));
    char sep = a->null_sep ? '\0' : '\n';
    size_t n = (size_t)a->n_docs;
    for (size_t i = 0; i < len; i++)
        n += a->names_text[i] == sep;
    char **docs = malloc((n + 1) * sizeof *docs);
    if (!docs) {
        free(a->names_text), a->names_text = NULL;
        return cli_fail(cmd, kvz_errorf(KVZ_ERR_NOMEM, "out of memory"));
    }
    memcpy(docs, a->docs, (size_t)a->n_docs * sizeof *docs);
    size_t k = (size_t)a->n_docs;
    for (size_t start = 0; start < len;) {
        char *end = memchr(a->names_text + start, sep, len - start);
        size_t stop = end ? (size_t)(end - a->names_text) : len;
        if (!a->null_sep && memchr(a->names_text + start, '\0', stop - start)) {
            free(docs);
            free(a->names_text), a->names_text = NULL;
            return cli_fail(cmd, kvz_errorf(KVZ_ERR_FORMAT, "--from %s holds a NUL byte: names separated by NUL "
                                            "bytes (kvz ls --names --null) need --null", a->names_from));
        }
        a->names_text[stop] = '\0'; /* the terminator cli_read_input adds at len */
        if (stop > start && k < INT_MAX)
            docs[k++] = a->names_text + start;
        start = stop + 1;
    }
    a->docs = docs;
    a->n_docs = (int)k;
    return KVZ_EXIT_OK;
}

/* `takes`: the letters below of the options the command has (--json j,
 * --svg g, --config c, --older-configs o, --dry-run n); another is refused.
 * want_doc: 0 no document named, 1 exactly one, 2 one or more. */
static int parse_store_args(int argc, char **argv, const char *help, store_args *a, int want_doc, const char *takes)
{
    static const struct option options[] = {
        {"store", required_argument, 0, 's'}, {"json", no_argument, 0, 'j'},
        {"svg", required_argument, 0, 'g'},   {"config", required_argument, 0, 'c'},
        {"older-configs", no_argument, 0, 'o'}, {"dry-run", no_argument, 0, 'n'},
        {"from", required_argument, 0, 'f'},  {"names", no_argument, 0, 'N'},
        {"null", no_argument, 0, '0'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    int c, index = -1;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "h", options, &index)) != -1) {
        if (c != 's' && c != 'h' && c != '?' && !strchr(takes, c)) {
            fprintf(stderr, "kvz %s: --%s does not apply here\n", argv[0], options[index].name);
            return cli_bad_option(help, argv[0]);
        }
        switch (c) {
        case 's': a->store = optarg; break;
        case 'j': a->json = 1; break;
        case 'g': a->svg = optarg; break;
        case 'o': a->older_configs = 1; break;
        case 'n': a->dry_run = 1; break;
        case 'f':
            if (a->names_from) {
                fprintf(stderr, "kvz %s: --from once (concatenate the files: cat A B | kvz rm --from -)\n", argv[0]);
                return KVZ_EXIT_USAGE;
            }
            a->names_from = optarg;
            break;
        case 'N': a->names_only = 1; break;
        case '0': a->null_sep = 1; break;
        case 'c':
            if (cli_parse_config(argv[0], optarg, 1, &a->config))
                return KVZ_EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return -1;
        default: return cli_bad_option(help, argv[0]);
        }
    }
    if (!a->store) {
        fprintf(stderr, "kvz %s: --store DIR is required\n", argv[0]);
        return KVZ_EXIT_USAGE;
    }
    if (a->null_sep && !a->names_from && !a->names_only) {
        fprintf(stderr, "kvz %s: --null goes with %s\n", argv[0], want_doc == 2 ? "--from" : "--names");
        return KVZ_EXIT_USAGE;
    }
    if (a->names_only && a->json) {
        fprintf(stderr, "kvz %s: --names or --json, not both\n", argv[0]);
        return KVZ_EXIT_USAGE;
    }
    if (want_doc == 2) {
        if (optind == argc && !a->names_from) {
            fprintf(stderr, "kvz %s: name the documents (as kvz ls names them), or --from FILE\n", argv[0]);
            return KVZ_EXIT_USAGE;
        }
        a->docs = argv + optind;
        a->n_docs = argc - optind;
        if (a->names_from)
            return read_names(argv[0], a);
    } else if (want_doc) {
        if (optind != argc - 1) {
            fprintf(stderr, "kvz %s: name exactly one document\n", argv[0]);
            return KVZ_EXIT_USAGE;
        }
        a->doc = argv[optind];
    } else if (optind != argc) {
        fprintf(stderr, "kvz %s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return KVZ_EXIT_USAGE;
    }
    return a->svg ? cli_check_svg_path(argv[0], a->svg) : KVZ_EXIT_OK;
}

/* ---- ls -------------------------------------------------------------------- */

typedef struct name_lines {
    int null_sep;
    size_t left_out; /* names holding a newline, without --null */
} name_lines;

/* ls --names: a document's name as rm --from reads it back. */
static int print_name(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    name_lines *nl = ctx;
    if (!nl->null_sep && memchr(key, '\n', key_len)) {
        char shown[CLI_SHOWN_MAX];
        fprintf(stderr, "kvz ls: '%s' holds a newline: left out (--null lists every name)\n",
                cli_shown(shown, key, key_len));
        nl->left_out++;
        return KVZ_OK;
    }
    fwrite(key, 1, key_len, stdout);
    putchar(nl->null_sep ? '\0' : '\n');
    return KVZ_OK;
}

int cmd_ls(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz ls --store DIR [--json | --names [--null]]\n"
        "\n"
        "Lists the store's documents, a row per form (a document compiled under one\n"
        "configuration) below a header naming the columns: its number (per document,\n"
        "in the order they arrived in this store) and its configuration id's first\n"
        "8 hex digits (the same in every store), either of which `--config` of\n"
        "inspect, query, generate and export takes, the parameters, tokens, segments,\n"
        "artifact bytes, bytes per original token and when it was compiled (local\n"
        "time); where the store holds forms of more than one model (unpack\n"
        "--allow-model-mismatch), each row ends with its model's fingerprint (the\n"
        "first 8 hex digits; `kvz inspect` names the model). A last line gives the\n"
        "totals. --json: a line per form, no header or totals, with the whole id, the\n"
        "model's fingerprint and the artifact ids.\n"
        "--names: each document's name alone, one per line, as they are (bytes, not\n"
        "escaped; `kvz rm --from -` reads them); a name holding a newline is left out,\n"
        "said, exit 1, unless --null ends each name with a NUL byte instead (rm\n"
        "--from - --null). A damaged record does not stop --names.\n";
    store_args a;
    int rc = parse_store_args(argc, argv, help, &a, 0, "jN0");
    if (rc)
        return rc < 0 ? KVZ_EXIT_OK : rc;
    kvz_store *s = NULL;
    kvz_store_txn *t = NULL;
    doc_list l;
    doc_list_init(&l, a.json);
    int st = kvz_store_open(&s, a.store, KVZ_STORE_READONLY);
    if (st == KVZ_OK)
        st = kvz_store_read_begin(s, &t);
    if (a.names_only) {
        name_lines nl = {a.null_sep, 0};
        if (st == KVZ_OK)
            st = kvz_store_scan(t, KVZ_DB_DOCS, print_name, &nl);
        kvz_store_read_end(t);
        kvz_store_close(s);
        if (st != KVZ_OK)
            return cli_fail("ls", st);
        return nl.left_out ? KVZ_EXIT_FAILURE : KVZ_EXIT_OK;
    }
    /* one transaction: both passes see the same documents; a damaged one
     * stops the listing where it lies, after the documents before it */
    if (st == KVZ_OK && !a.json && kvz_scan_documents(t, doc_list_measure, &l) != KVZ_OK)
        kvz_error_clear();
    if (st == KVZ_OK)
        st = kvz_scan_documents(t, doc_list_row, &l);
    if (st == KVZ_OK && !a.json)
        doc_list_totals(&l, "an artifact two documents share counted for each: kvz stats counts it once");
    kvz_store_read_end(t);
    kvz_store_close(s);
    return st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("ls", st);
}

/* ---- inspect ------------------------------------------------------------------ */

/* Fraction of positions kept per (layer, head) row and per position bin, as
 * SVG, titled with the document's name as asked for (the artifact's own is
 * the first name its content was compiled under). */
static int write_svg(const char *path, const kvz_artifact *a, const char *doc)
{
    const kvz_manifest *m = &a->manifest;
    uint32_t L = m->model.n_layers, H = m->model.n_kv_heads, n = m->n_tokens;
    uint32_t bins = n < 512 ? n : 512, cell_w = bins < 256 ? 1024 / bins : 2, cell_h = 6;
    uint32_t *pos = malloc((size_t)n * sizeof *pos);
    float *frac = calloc((size_t)L * H * bins, sizeof *frac);
    char *svg = NULL; /* written whole, or not at all */
    size_t svg_len = 0;
    FILE *f = open_memstream(&svg, &svg_len);
    int rc = f && pos && frac ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (uint32_t l = 0; l < L && rc == KVZ_OK; l++)
        for (uint32_t h = 0; h < H && rc == KVZ_OK; h++) {
            uint32_t k;
            rc = kvz_artifact_kept(a, (uint16_t)l, (uint16_t)h, &k);
            if (rc == KVZ_OK)
                rc = kvz_artifact_read_head(a, (uint16_t)l, (uint16_t)h, pos, NULL, NULL);
            for (uint32_t i = 0; i < k && rc == KVZ_OK; i++)
                frac[((size_t)l * H + h) * bins + (uint64_t)pos[i] * bins / n] += 1.0f;
        }
    if (rc == KVZ_OK) {
        uint32_t left = 60, top = 40, width = bins * cell_w, height = L * H * cell_h;
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
                "font-family=\"sans-serif\" font-size=\"11\">\n", left + width + 20, top + height + 40);
        fprintf(f, "<text x=\"%u\" y=\"16\">", left);
        cli_xml_text(f, doc, strlen(doc)); /* a name is any bytes, and a bundle's are another's */
        fprintf(f, ": kept positions per layer/KV head (");
        cli_xml_text(f, m->method, strnlen(m->method, sizeof m->method));
        fprintf(f, ", %u tokens)</text>\n", n);
        fprintf(f, "<text x=\"%u\" y=\"32\" fill=\"#555\">dark = kept; rows: layer 0 at the top, %u heads "
                "per layer; columns: document position</text>\n", left, H);
        for (uint32_t r = 0; r < L * H; r++) {
            if (r % H == 0 && (r / H) % 5 == 0)
                fprintf(f, "<text x=\"4\" y=\"%u\">layer %u</text>\n", top + r * cell_h + cell_h, r / H);
            for (uint32_t b = 0; b < bins; b++) {
                /* the positions p with p * bins / n == b: a bin holds a whole number of them */
                uint64_t lo = ((uint64_t)b * n + bins - 1) / bins, hi = ((uint64_t)(b + 1) * n + bins - 1) / bins;
                double v = hi > lo ? frac[(size_t)r * bins + b] / (double)(hi - lo) : 0;
                int shade = (int)(255 - 235 * (v > 1 ? 1 : v));
                fprintf(f, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"rgb(%d,%d,255)\"/>\n",
                        left + b * cell_w, top + r * cell_h, cell_w, cell_h, shade, shade);
            }
        }
        fprintf(f, "<text x=\"%u\" y=\"%u\">0</text><text x=\"%u\" y=\"%u\" text-anchor=\"end\">%u</text>\n",
                left, top + height + 14, left + width, top + height + 14, n);
        fprintf(f, "</svg>\n");
    }
    rc = cli_svg_put(path, f, &svg, &svg_len, rc);
    free(pos);
    free(frac);
    return rc;
}

static int inspect_artifact(const kvz_artifact *a, const store_args *args, uint32_t segment)
{
    const kvz_manifest *m = &a->manifest;
    uint32_t L = m->model.n_layers, H = m->model.n_kv_heads;
    uint64_t by_kind[8] = {0}, kept_total = 0;
    if (args->svg && segment == 0) /* first: a heatmap that cannot be written stops before the report */
        KVZ_TRY(write_svg(args->svg, a, args->doc));
    for (uint32_t i = 0; i < a->n_sections; i++) {
        kvz_section s;
        kvz_artifact_section_at(a, i, &s);
        by_kind[kvz_section_kind_known(s.kind) ? s.kind : 0] += s.stored_bytes; /* 0: kinds skipped (SPEC §3) */
    }
    uint64_t framing = a->size; /* header, section table and trailer */
    for (int k = 0; k < 8; k++)
        framing -= by_kind[k];
    char model[256];
    kvz_model_identity_describe(&m->model, model, sizeof model);
    if (args->json) { /* the manifest's fields (format/SPEC.md), then what inspect works out */
        const char *text_keys[] = {"model",   "model_arch", "template", "method", "level",
                                   "budget_shape", "options", "compiler", "config", "summary"};
        const char *text_values[] = {model,          m->model.arch, m->template_name, m->method, m->level,
                                     m->budget_shape, m->options,    m->compiler,      m->config, m->summary};
        printf("{\"segment\":%u,\"n_segments\":%u,\"n_tokens\":%u,\"prefix_tokens\":%u,\"prefix_hash\":\"%016llx\","
               "\"model_fingerprint\":\"%016llx\",\"n_layers\":%u,\"n_heads\":%u,\"n_kv_heads\":%u,\"head_dim\":%u",
               segment, m->n_segments, m->n_tokens, m->prefix_tokens, (unsigned long long)m->prefix_hash,
               (unsigned long long)m->model.fingerprint, L, m->model.n_heads, H, m->model.head_dim);
        if (m->config[0]) /* the id kvz ls shows: what joins the two */
            printf(",\"config_id\":\"%016llx\"", (unsigned long long)kvz_config_id(m->config));
        else
            printf(",\"config_id\":null");
        for (size_t i = 0; i < sizeof text_keys / sizeof text_keys[0]; i++) {
            printf(",\"%s\":", text_keys[i]);
            cli_json_string(stdout, text_values[i], strlen(text_values[i]));
        }
        printf(",\"ratio\":%g,\"budget\":%u,\"bits\":%u,\"key_group\":%u,\"value_group\":%u,\"fp16_tokens\":%u,"
               "\"bytes\":%zu,\"section_bytes\":{\"keys\":%llu,\"values\":%llu,\"scales\":%llu,\"positions\":%llu,"
               "\"tokens\":%llu,\"manifest\":%llu,\"skipped\":%llu,\"table\":%llu},\"layers\":[", m->ratio, m->budget,
               m->bits, m->key_group, m->value_group, m->fp16_tokens, a->size, (unsigned long long)by_kind[4],
               (unsigned long long)by_kind[5], (unsigned long long)(by_kind[6] + by_kind[7]),
               (unsigned long long)by_kind[3], (unsigned long long)by_kind[2], (unsigned long long)by_kind[1],
               (unsigned long long)by_kind[0], (unsigned long long)framing);
    } else {
        printf("segment %u of %u: %u tokens (prefix of %u shared)\n", segment + 1, m->n_segments, m->n_tokens,
               m->prefix_tokens);
        char shown[CLI_SHOWN_MAX]; /* general.name is the file's: escape what a terminal would act on */
        printf("  model      %s\n  template   %s\n", cli_shown(shown, model, strlen(model)), m->template_name);
        printf("  method     %s%s%s, ratio %.3g, budget %u, shape %s\n", m->method, m->level[0] ? " " : "",
               m->level, m->ratio, m->budget, m->budget_shape);
        printf("  encoding   %u bits, key groups of %u tokens, value groups of %u channels, %u f16 tokens\n",
               m->bits, m->key_group, m->value_group, m->fp16_tokens);
        printf("  options    %s\n  compiler   %s\n", m->options, m->compiler);
        printf("  layer  kept/head (min  mean  max)\n");
    }
    for (uint32_t l = 0; l < L; l++) {
        uint32_t lo = UINT32_MAX, hi = 0;
        uint64_t sum = 0;
        for (uint32_t h = 0; h < H; h++) {
            uint32_t k = 0;
            KVZ_TRY(kvz_artifact_kept(a, (uint16_t)l, (uint16_t)h, &k));
            lo = k < lo ? k : lo;
            hi = k > hi ? k : hi;
            sum += k;
        }
        kept_total += sum;
        if (args->json)
            printf("%s{\"layer\":%u,\"kept\":%llu,\"min\":%u,\"mean\":%.1f,\"max\":%u}", l ? "," : "", l,
                   (unsigned long long)sum, lo, (double)sum / H, hi);
        else
            printf("  %5u  %6u %7.1f %6u\n", l, lo, (double)sum / H, hi);
    }
    double elements = (double)kept_total * m->model.head_dim * 2;
    double full = full_cache_bytes(m, m->n_tokens);
    if (args->json) {
        printf("],\"kept_fraction\":%.4f,\"bits_per_element\":%.3f,\"bytes_per_token\":%.2f,"
               "\"vs_f16_full\":%.2f}\n", (double)kept_total / ((double)m->n_tokens * L * H),
               (double)(by_kind[4] + by_kind[5] + by_kind[6] + by_kind[7]) * 8 / elements,
               (double)a->size / m->n_tokens, full / (double)a->size);
    } else {
        printf("  kept %.1f%% of %u pairs\n", 100.0 * (double)kept_total / ((double)m->n_tokens * L * H),
               m->n_tokens * L * H);
        char skipped[48] = "";
        if (by_kind[0])
            snprintf(skipped, sizeof skipped, ", skipped %llu", (unsigned long long)by_kind[0]);
        printf("  bytes      %zu in all: keys %llu, values %llu, scales %llu, positions %llu, tokens %llu, "
               "manifest %llu%s, table %llu\n", a->size, (unsigned long long)by_kind[4], (unsigned long long)by_kind[5],
               (unsigned long long)(by_kind[6] + by_kind[7]), (unsigned long long)by_kind[3],
               (unsigned long long)by_kind[2], (unsigned long long)by_kind[1], skipped, (unsigned long long)framing);
        printf("  size       %.3f bits per kept element (with scales), %.1f bytes per document token, "
               "%.1fx smaller than the f16 full cache\n",
               (double)(by_kind[4] + by_kind[5] + by_kind[6] + by_kind[7]) * 8 / elements,
               (double)a->size / m->n_tokens, full / (double)a->size);
    }
    if (args->svg && segment == 0 && !args->json)
        printf("  heatmap    %s\n", args->svg);
    return KVZ_OK;
}

int cmd_inspect(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz inspect --store DIR DOCUMENT [--config N|ID] [--svg FILE] [--json]\n"
        "\n"
        "Shows a compiled document: its manifest, the pairs kept per layer (min, mean\n"
        "and max over KV heads), bytes by section, bits per kept element and the size\n"
        "against the f16 full cache. --config picks one of the document's compile\n"
        "configurations by its number or id as `kvz ls` shows them (default: the\n"
        "newest, the one kvz query loads when one model compiled them all).\n"
        "--svg writes a heatmap of the kept positions per layer and head over the\n"
        "document (first segment).\n"
        "--json: one object per segment: the manifest's fields named as in\n"
        "format/SPEC.md (\"segment\" counted from 0, as there; \"model\" a description;\n"
        "not the document's name, its content hash or creation time: the model's\n"
        "fingerprint and shape are there), \"config_id\" (as kvz ls --json has it;\n"
        "null for an artifact written without its configuration) and the figures\n"
        "above: per layer the pairs \"kept\" over its KV heads, and their min, mean\n"
        "and max per head.\n";
    store_args a;
    int rc = parse_store_args(argc, argv, help, &a, 1, "jgc");
    if (rc)
        return rc < 0 ? KVZ_EXIT_OK : rc;
    kvz_store *s = NULL;
    kvz_store_txn *t = NULL;
    kvz_doc_record rec = {0};
    const void *val;
    size_t len;
    int st = kvz_store_open(&s, a.store, KVZ_STORE_READONLY);
    if (st == KVZ_OK)
        st = kvz_store_read_begin(s, &t);
    if (st == KVZ_OK && (st = kvz_store_get(t, KVZ_DB_DOCS, a.doc, strlen(a.doc), &val, &len)) == KVZ_ERR_NOT_FOUND)
        st = kvz_document_missing(t, a.doc, a.store, "");
    if (st == KVZ_OK)
        st = kvz_doc_record_decode(val, len, &rec);
    const kvz_doc_entry *e = NULL;
    if (st == KVZ_OK)
        st = kvz_doc_record_pick(&rec, &a.config, NULL, a.doc, &e);
    if (st == KVZ_OK) {
        char shown[CLI_SHOWN_MAX], summary[CLI_SHOWN_MAX];
        char which[128], short_id[17]; /* which configuration, and which of several */
        kvz_doc_record_short_id(&rec, e->config_id, short_id);
        if (rec.n_entries > 1)
            snprintf(which, sizeof which, ", configuration %u of %u, id %s (--config N or ID for another):\n  ",
                     (unsigned)(e - rec.entries) + 1, rec.n_entries, short_id);
        else
            snprintf(which, sizeof which, ", id %s: ", short_id);
        if (!a.json) /* the summary came with the record, from a bundle perhaps: shown escaped */
            printf("%s%s%s, %u tokens in %u segment(s), %.1f KB\n", cli_shown(shown, a.doc, strlen(a.doc)), which,
                   cli_shown(summary, e->summary, strlen(e->summary)), e->n_tokens, e->n_segments,
                   e->stored_bytes / 1024.0);
        for (uint32_t i = 0; i < e->n_segments && st == KVZ_OK; i++) {
            kvz_artifact art;
            st = kvz_store_get(t, KVZ_DB_ARTIFACTS, e->artifact_ids[i], 16, &val, &len);
            if (st == KVZ_ERR_NOT_FOUND) {
                char id[33];
                kvz_hex(e->artifact_ids[i], 16, id);
                st = kvz_errorf(KVZ_ERR_FORMAT, "artifact %s of '%s' is missing from the store", id, a.doc);
            }
            if (st == KVZ_OK)
                st = kvz_artifact_open(&art, val, len);
            if (st == KVZ_OK)
                st = inspect_artifact(&art, &a, i);
        }
    }
    kvz_doc_record_free(&rec);
    kvz_store_read_end(t);
    kvz_store_close(s);
    return st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("inspect", st);
}

/* ---- verify ------------------------------------------------------------------- */

typedef struct verify_ctx {
    kvz_store_txn *t;
    int json;
    size_t artifacts, prefixes, docs, bad;
    id_set damaged; /* the artifacts that failed, to name their documents (sorted after the scan) */
    char shown[CLI_SHOWN_MAX];
} verify_ctx;

enum { SUBJECT_ARTIFACT, SUBJECT_PREFIX, SUBJECT_DOCUMENT };

/* A problem with an artifact (its id), a shared prefix (its key) or a
 * document (its name): a line "artifact ID: ...", "shared prefix KEY: ...",
 * "document 'NAME': ..." on stderr, or with --json an object on stdout.
 * counted: it is one of the problems the summary counts (a hint is not). */
static void verify_say(verify_ctx *v, int subject, const char *name, size_t name_len, int counted, const char *fmt,
                       ...)
{
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    v->bad += counted != 0;
    static const char *const kinds[] = {"artifact", "shared_prefix", "document"};
    if (v->json) {
        printf("{\"%s\":", kinds[subject]);
        cli_json_string(stdout, name, name_len);
        printf(",\"%s\":", counted ? "problem" : "hint");
        cli_json_string(stdout, message, strlen(message));
        printf("}\n");
    } else if (subject == SUBJECT_DOCUMENT) {
        fprintf(stderr, "document '%s': ", cli_shown(v->shown, name, name_len));
        cli_put_shown(stderr, message);
        fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %.*s: %s\n", subject == SUBJECT_ARTIFACT ? "artifact" : "shared prefix", (int)name_len,
                name, message);
    }
}

/* An artifact stored under `key`: sound, and the one its key names (an
 * artifact swapped for another would answer for the wrong document). name:
 * how a problem names it (its id, or the prefix's key); 0 if it failed a
 * check. */
static int verify_one(verify_ctx *v, int subject, const char *name, const void *key, size_t key_len,
                      const void *val, size_t val_len)
{
    kvz_artifact a;
    int rc = kvz_transfer_check(val, val_len, &a);
    if (rc == KVZ_OK)
        rc = kvz_transfer_check_key(&a, subject == SUBJECT_PREFIX, key, key_len);
    if (rc != KVZ_OK)
        verify_say(v, subject, name, strlen(name), 1, "%s", kvz_last_error());
    kvz_error_clear();
    return rc == KVZ_OK;
}

static int verify_artifact(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    verify_ctx *v = ctx;
    char id[48]; /* a key of another size: its first 23 bytes */
    kvz_hex(key, key_len < 23 ? key_len : 23, id);
    v->artifacts++;
    if (!verify_one(v, SUBJECT_ARTIFACT, id, key, key_len, val, val_len) && key_len == 16 &&
        id_set_add(&v->damaged, key) != KVZ_OK)
        kvz_error_clear(); /* out of memory: its documents are not named, the problem is counted */
    return KVZ_OK;
}

static int verify_doc(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    verify_ctx *v = ctx;
    kvz_doc_record rec;
    v->docs++;
    if (kvz_doc_record_decode(val, val_len, &rec) != KVZ_OK) {
        verify_say(v, SUBJECT_DOCUMENT, key, key_len, 1, "%s", kvz_last_error());
        kvz_error_clear();
        return KVZ_OK;
    }
    for (uint32_t i = 0; i < rec.n_entries; i++) {
        uint64_t held_tokens = 0; /* the segments' own counts, where every one could be read */
        int all_read = 1;
        for (uint32_t sgm = 0; sgm < rec.entries[i].n_segments; sgm++) {
            const void *a;
            size_t alen;
            char id[33];
            kvz_hex(rec.entries[i].artifact_ids[sgm], 16, id);
            if (kvz_store_get(v->t, KVZ_DB_ARTIFACTS, rec.entries[i].artifact_ids[sgm], 16, &a, &alen) != KVZ_OK) {
                verify_say(v, SUBJECT_DOCUMENT, key, key_len, 1, "artifact %s is missing", id);
                kvz_error_clear();
                all_read = 0;
                continue;
            }
            if (id_set_has(&v->damaged, rec.entries[i].artifact_ids[sgm], 16)) { /* counted with the artifacts */
                verify_say(v, SUBJECT_DOCUMENT, key, key_len, 0, "its artifact %s is damaged (kvz compile --force of "
                           "the document, with the options it was compiled with, rebuilds it; kvz unpack or kvz "
                           "merge of a bundle or store holding it replaces it; kvz rm removes it)", id);
                all_read = 0;
                continue;
            }
            kvz_artifact art; /* checked whole in the artifacts' pass: its manifest is what is read now */
            if (kvz_artifact_open_manifest(&art, a, alen) != KVZ_OK) { /* reported with the artifacts */
                kvz_error_clear();
                all_read = 0;
                continue;
            }
            held_tokens += art.manifest.n_tokens;
            if (sgm > 0) /* the shared prefix it is answered after: the segments of a configuration share it */
                continue;
            char prefix[64];
            const void *p;
            size_t plen;
            kvz_prefix_key(art.manifest.model.fingerprint, art.manifest.prefix_hash, prefix);
            if (kvz_store_get(v->t, KVZ_DB_META, prefix, strlen(prefix), &p, &plen) != KVZ_OK) {
                verify_say(v, SUBJECT_DOCUMENT, key, key_len, 1, "its shared prefix %s is missing (compiling the "
                           "document again writes it, as do unpack and import)", prefix + 7);
                kvz_error_clear();
            }
        }
        /* segments of two cuts under the same ids (kvz before 0.3.3 or 0.3.11 cut some otherwise):
         * text missing or repeated, which every artifact's own checks pass */
        if (all_read && kvz_transfer_check_cut("", &rec.entries[i], held_tokens)) {
            const char *said = kvz_last_error(); /* "'': ...": the name is verify_say's */
            verify_say(v, SUBJECT_DOCUMENT, key, key_len, 1, "%s", strncmp(said, "'': ", 4) == 0 ? said + 4 : said);
            kvz_error_clear();
        }
    }
    kvz_doc_record_free(&rec);
    return KVZ_OK;
}

static int verify_meta(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    verify_ctx *v = ctx;
    if (key_len > 7 && memcmp(key, "prefix/", 7) == 0) {
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)(key_len - 7), (const char *)key + 7);
        v->prefixes++;
        if (!verify_one(v, SUBJECT_PREFIX, name, key, key_len, val, val_len))
            verify_say(v, SUBJECT_PREFIX, name, strlen(name), 0, "compiling any document of its model again (kvz "
                       "compile, as it was compiled) writes it again");
    }
    return KVZ_OK;
}

int cmd_verify(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz verify --store DIR [--json]\n"
        "\n"
        "Checks every artifact (header, table, every section's checksum, the whole-file\n"
        "checksum, bounds, counts; every section is decoded), that each is stored under\n"
        "the id its manifest derives (a shared prefix under its model and hash), and\n"
        "that every document's artifacts and shared prefix exist and its segments'\n"
        "tokens add up to its record's. Prints each problem; exit status 4 if any was\n"
        "found.\n"
        "--json: on stdout a line per problem, {\"artifact\": ID, \"problem\": TEXT}\n"
        "(\"shared_prefix\": KEY or \"document\": NAME in place of \"artifact\"; \"hint\"\n"
        "in place of \"problem\" for what mends one already counted), then\n"
        "{\"artifacts\":N,\"shared_prefixes\":N,\"documents\":N,\"problems\":N}.\n";
    store_args a;
    int rc = parse_store_args(argc, argv, help, &a, 0, "j");
    if (rc)
        return rc < 0 ? KVZ_EXIT_OK : rc;
    kvz_store *s = NULL;
    verify_ctx v = {.json = a.json};
    int st = kvz_store_open(&s, a.store, KVZ_STORE_READONLY);
    if (st == KVZ_OK)
        st = kvz_store_read_begin(s, &v.t);
    if (st == KVZ_OK)
        st = kvz_store_scan(v.t, KVZ_DB_ARTIFACTS, verify_artifact, &v);
    if (st == KVZ_OK)
        st = kvz_store_scan(v.t, KVZ_DB_META, verify_meta, &v);
    if (st == KVZ_OK) {
        id_set_sort(&v.damaged);
        st = kvz_store_scan(v.t, KVZ_DB_DOCS, verify_doc, &v);
    }
    kvz_store_read_end(v.t);
    free(v.damaged.ids);
    kvz_store_close(s);
    if (st != KVZ_OK)
        return cli_fail("verify", st);
    if (a.json)
        printf("{\"artifacts\":%zu,\"shared_prefixes\":%zu,\"documents\":%zu,\"problems\":%zu}\n", v.artifacts,
               v.prefixes, v.docs, v.bad);
    else
        printf("%zu artifact(s), %zu shared prefix(es) and %zu document(s) checked: %s\n", v.artifacts, v.prefixes,
               v.docs, v.bad ? "PROBLEMS FOUND" : "all good");
    if (v.bad) {
        fprintf(stderr, "kvz verify: %zu problem(s) in '%s'\n", v.bad, a.store);
        return cli_exit_code(KVZ_ERR_FORMAT);
    }
    return KVZ_EXIT_OK;
}

/* ---- stats -------------------------------------------------------------------- */

#define MAX_GROUPS 64

typedef struct stats_group {
    uint64_t config_id; /* a row per configuration (parameters and model) */
    uint64_t model_fingerprint; /* one a row: the configuration's id covers the model */
    char summary[128];
    char label[CLI_SHOWN_MAX + 32]; /* the summary (escaped), and the model or id where two rows' are alike */
    size_t configs;
    uint64_t tokens, bytes;
    double full_bytes;     /* the f16 full caches of the same documents */
    uint64_t sized_bytes;  /* the bytes of those whose artifact could be read: what full_bytes is set against */
    size_t unreadable;     /* its documents whose first artifact could not be read (damaged: kvz verify) */
} stats_group;

typedef struct stats_ctx {
    kvz_store_txn *t;
    size_t docs, configs, groups_used, other_groups, unreadable;
    uint64_t tokens;
    id_set referenced; /* an artifact two documents share counts once */
    stats_group groups[MAX_GROUPS];
} stats_ctx;

static int stats_visit(void *ctx, const char *name, kvz_doc_record *rec)
{
    stats_ctx *c = ctx;
    c->docs++;
    c->tokens += kvz_doc_record_newest(rec, NULL)->n_tokens; /* each document once */
    KVZ_TRY(id_set_add_record(&c->referenced, rec));
    int damaged = 0; /* a form of this document whose (first) artifact cannot be read */
    for (uint32_t i = 0; i < rec->n_entries; i++) {
        const kvz_doc_entry *e = &rec->entries[i];
        c->configs++;
        const void *a;
        size_t alen;
        kvz_artifact art;
        int readable = e->n_segments && kvz_store_get(c->t, KVZ_DB_ARTIFACTS, e->artifact_ids[0], 16, &a, &alen) ==
                                            KVZ_OK && kvz_artifact_open(&art, a, alen) == KVZ_OK;
        damaged |= e->n_segments && !readable;
        size_t g = 0;
        while (g < c->groups_used && c->groups[g].config_id != e->config_id)
            g++;
        if (g == MAX_GROUPS) {
            c->other_groups++;
            continue;
        }
        if (g == c->groups_used) {
            c->groups[g].config_id = e->config_id;
            c->groups[g].model_fingerprint = e->model_fingerprint;
            snprintf(c->groups[c->groups_used++].summary, sizeof c->groups[0].summary, "%s", e->summary);
        }
        stats_group *sg = &c->groups[g];
        sg->configs++;
        sg->tokens += e->n_tokens;
        sg->bytes += e->stored_bytes;
        if (readable) {
            sg->full_bytes += full_cache_bytes(&art.manifest, e->n_tokens);
            sg->sized_bytes += e->stored_bytes;
        } else if (e->n_segments) {
            sg->unreadable++;
        }
    }
    c->unreadable += (size_t)damaged;
    return KVZ_OK;
}

typedef struct size_sum {
    size_t n;
    uint64_t bytes;
    const id_set *referenced; /* artifacts: which documents reference */
    uint64_t referenced_bytes;
} size_sum;

static int sum_visit(void *ctx, const void *key, size_t key_len, const void *val, size_t val_len)
{
    size_sum *s = ctx;
    if (key_len == 16 || (key_len > 7 && memcmp(key, "prefix/", 7) == 0)) {
        s->n++;
        s->bytes += val_len;
        if (s->referenced && id_set_has(s->referenced, key, key_len))
            s->referenced_bytes += val_len;
    }
    return KVZ_OK;
}

static uint64_t file_bytes(const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int cmd_stats(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz stats --store DIR [--json]\n"
        "\n"
        "Totals of a store: documents, configurations, artifacts (their bytes, and the\n"
        "bytes documents reference: `kvz gc` drops the rest), shared prefixes, tokens\n"
        "(each document once, as its newest configuration counts them), and\n"
        "per compile configuration the bytes per original token and the size against\n"
        "the f16 full cache of the same documents; the size of data.mdb on disk and\n"
        "how much of it is free pages (\"free_bytes\", null where they cannot be read:\n"
        "left by removed or replaced artifacts; later writes reuse them, the file does\n"
        "not shrink: `mdb_copy -c DIR NEW` writes a compacted copy, which README's\n"
        "\"Compacting a store\" swaps in).\n"
        "\n"
        "--json: one object. \"configurations\" and \"forms\" count compiled forms (a\n"
        "document in two configurations counts 2); \"by_config\" has a row per\n"
        "configuration (the first 64; \"configurations_not_broken_out\" counts the forms\n"
        "of the rest) with its \"model_fingerprint\" (as kvz inspect names the model;\n"
        "the table names it where two rows' summaries are alike), \"documents\" (also\n"
        "as \"configurations\", the name it had before 0.3.6), sizes in bytes, and\n"
        "\"vs_f16_full\": null where no artifact of the row could be read. A document\n"
        "whose artifact cannot be read (damaged; the first of each form's is tried) is\n"
        "counted in \"unreadable\" (once in the totals, in each row it is in), left out\n"
        "of vs_f16_full, said on stderr, and the exit code is then 4 (kvz verify checks\n"
        "every artifact and names them).\n";
    store_args a;
    int rc = parse_store_args(argc, argv, help, &a, 0, "j");
    if (rc)
        return rc < 0 ? KVZ_EXIT_OK : rc;
    kvz_store *s = NULL;
    stats_ctx *c = calloc(1, sizeof *c);
    size_sum arts = {0}, prefixes = {0};
    int st = c ? kvz_store_open(&s, a.store, KVZ_STORE_READONLY) : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (st == KVZ_OK)
        st = kvz_store_read_begin(s, &c->t);
    if (st == KVZ_OK)
        st = kvz_scan_documents(c->t, stats_visit, c);
    if (st == KVZ_OK) {
        id_set_sort(&c->referenced);
        arts.referenced = &c->referenced;
        st = kvz_store_scan(c->t, KVZ_DB_ARTIFACTS, sum_visit, &arts);
    }
    if (st == KVZ_OK)
        st = kvz_store_scan(c->t, KVZ_DB_META, sum_visit, &prefixes);
    for (size_t g = 0; st == KVZ_OK && g < c->groups_used; g++) {
        stats_group *sg = &c->groups[g];
        /* alike: another model's (named by the model), another question's, or recorded before summaries
         * named every option (named by the id) */
        int alike = 0, same_model = 0;
        for (size_t h = 0; h < c->groups_used; h++) {
            int twin = h != g && strcmp(c->groups[h].summary, sg->summary) == 0;
            alike |= twin;
            same_model |= twin && c->groups[h].model_fingerprint == sg->model_fingerprint;
        }
        char shown[CLI_SHOWN_MAX]; /* the summary came with a record, from a bundle perhaps: shown escaped */
        cli_shown(shown, sg->summary, strlen(sg->summary));
        if (alike && !same_model)
            snprintf(sg->label, sizeof sg->label, "%s [model %016llx]", shown,
                     (unsigned long long)sg->model_fingerprint);
        else if (alike)
            snprintf(sg->label, sizeof sg->label, "%s [config %016llx]", shown, (unsigned long long)sg->config_id);
        else
            snprintf(sg->label, sizeof sg->label, "%s", shown);
    }
    uint64_t free_bytes = 0;
    int free_known = st == KVZ_OK && kvz_store_free_bytes(c->t, &free_bytes) == KVZ_OK; /* a hint: null if not */
    if (st == KVZ_OK && !free_known)
        kvz_error_clear();
    if (st == KVZ_OK) {
        uint64_t disk = file_bytes(a.store);
        if (a.json) {
            printf("{\"documents\":%zu,\"configurations\":%zu,\"forms\":%zu,\"artifacts\":%zu,\"artifact_bytes\":%llu,"
                   "\"referenced_bytes\":%llu,\"prefixes\":%zu,\"prefix_bytes\":%llu,\"tokens\":%llu,"
                   "\"file_bytes\":%llu,\"free_bytes\":",
                   c->docs, c->configs, c->configs, arts.n, (unsigned long long)arts.bytes,
                   (unsigned long long)arts.referenced_bytes, prefixes.n, (unsigned long long)prefixes.bytes,
                   (unsigned long long)c->tokens, (unsigned long long)disk);
            if (free_known)
                printf("%llu", (unsigned long long)free_bytes);
            else
                printf("null");
            printf(",\"unreadable\":%zu,\"by_config\":[", c->unreadable);
            for (size_t g = 0; g < c->groups_used; g++) {
                const stats_group *sg = &c->groups[g];
                printf("%s{\"summary\":", g ? "," : "");
                cli_json_string(stdout, sg->summary, strlen(sg->summary));
                printf(",\"config_id\":\"%016llx\",\"model_fingerprint\":\"%016llx\",\"documents\":%zu,"
                       "\"configurations\":%zu,\"tokens\":%llu,\"bytes\":%llu,\"bytes_per_token\":%.2f,"
                       "\"unreadable\":%zu,\"vs_f16_full\":",
                       (unsigned long long)sg->config_id, (unsigned long long)sg->model_fingerprint, sg->configs, sg->configs, (unsigned long long)sg->tokens,
                       (unsigned long long)sg->bytes, sg->tokens ? (double)sg->bytes / sg->tokens : 0, sg->unreadable);
                if (sg->sized_bytes)
                    printf("%.2f}", sg->full_bytes / sg->sized_bytes);
                else
                    printf("null}");
            }
            printf("],\"configurations_not_broken_out\":%zu}\n", c->other_groups); /* past the first 64 kinds */
        } else {
            printf("store %s: %.1f MB on disk", a.store, disk / 1048576.0);
            if (free_bytes >= disk / 4 && free_bytes >= (4u << 20)) /* worth a copy */
                printf(", %.1f MB of it free (later writes reuse it; mdb_copy -c writes a compacted copy: README)",
                       free_bytes / 1048576.0);
            else if (free_bytes >= (64u << 10))
                printf(", %.1f MB of it free (later writes reuse it)", free_bytes / 1048576.0);
            putchar('\n');
            printf("  %zu document(s) of %llu tokens, %zu form(s)\n", c->docs, (unsigned long long)c->tokens,
                   c->configs);
            printf("  %zu artifact(s), %.1f KB; documents reference %.1f KB%s\n", arts.n, arts.bytes / 1024.0,
                   arts.referenced_bytes / 1024.0, arts.bytes > arts.referenced_bytes ? " (kvz gc drops the rest)" : "");
            printf("  %zu shared prefix(es), %.1f KB\n", prefixes.n, prefixes.bytes / 1024.0);
            int width = 40; /* the longest label's */
            for (size_t g = 0; g < c->groups_used; g++)
                width = (int)strlen(c->groups[g].label) > width ? (int)strlen(c->groups[g].label) : width;
            printf("  %-*s %7s %10s %12s %9s %8s\n", width, "configuration", "docs", "tokens", "KB", "B/token",
                   "vs f16");
            for (size_t g = 0; g < c->groups_used; g++) {
                const stats_group *sg = &c->groups[g];
                printf("  %-*s %7zu %10llu %12.1f %9.1f ", width, sg->label, sg->configs,
                       (unsigned long long)sg->tokens, sg->bytes / 1024.0,
                       sg->tokens ? (double)sg->bytes / sg->tokens : 0);
                if (sg->sized_bytes)
                    printf("%7.1fx\n", sg->full_bytes / sg->sized_bytes);
                else
                    printf("%8s\n", "?");
            }
            if (c->other_groups)
                printf("  (%zu form(s) of further configurations not broken out)\n", c->other_groups);
        }
    }
    if (c) {
        kvz_store_read_end(c->t);
        free(c->referenced.ids);
    }
    kvz_store_close(s);
    size_t unreadable = c ? c->unreadable : 0;
    free(c);
    if (st == KVZ_OK && unreadable) {
        fprintf(stderr, "kvz stats: %zu document(s) whose artifact cannot be read (damaged?), left out of the sizes "
                "against f16: kvz verify --store %s names them\n", unreadable, a.store);
        return cli_exit_code(KVZ_ERR_FORMAT);
    }
    return st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("stats", st);
}

/* ---- gc, rm --------------------------------------------------------------------- */

/* A given name against a stored one (len bytes), in the store's key order. */
static int name_order(const char *given, const void *name, size_t len)
{
    return kvz_store_key_order(given, strlen(given), name, len);
}

static int by_bytes(const void *a, const void *b)
{
    const char *y = *(const char *const *)b;
    return name_order(*(const char *const *)a, y, strlen(y));
}

typedef struct rm_ctx {
    const store_args *args;
    unsigned char *found; /* which of args->docs (sorted) the store has */
    char **given;         /* the names in the order given, for the error */
} rm_ctx;

/* The first of the sorted names not before `name` (len bytes). */
static size_t first_not_before(const store_args *a, const void *name, size_t len)
{
    size_t lo = 0, hi = (size_t)a->n_docs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (name_order(a->docs[mid], name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* rm: whether the document is one of those named. */
static int rm_chooses(void *ctx, const void *name, size_t len)
{
    rm_ctx *r = ctx;
    size_t lo = first_not_before(r->args, name, len); /* the names are sorted (collect) */
    int named = 0;
    for (size_t i = lo; i < (size_t)r->args->n_docs && name_order(r->args->docs[i], name, len) == 0; i++)
        r->found[i] = 1, named = 1; /* a name may be given twice */
    return named;
}

/* rm: every name given is in the store, or nothing is removed. */
static int rm_found_all(void *ctx, kvz_store_txn *t)
{
    rm_ctx *r = ctx;
    for (int i = 0; i < r->args->n_docs; i++) /* the first missing as given */
        if (!r->found[first_not_before(r->args, r->given[i], strlen(r->given[i]))])
            return kvz_document_missing(t, r->given[i], NULL, "; nothing was removed");
    memset(r->found, 0, (size_t)r->args->n_docs); /* for an attempt run again */
    return KVZ_OK;
}

/* gc and rm (argv[0]), their arguments parsed as parse_store_args does: the
 * collection run (a dry run reads only), reported. */
static int collect(int argc, char **argv, const char *help, int want_doc, const char *takes)
{
    store_args args;
    int rc = parse_store_args(argc, argv, help, &args, want_doc, takes);
    if (rc)
        return rc < 0 ? KVZ_EXIT_OK : rc;
    const store_args *a = &args;
    kvz_store *s = NULL;
    if (want_doc == 2 && a->n_docs == 0) { /* --from of no names: nothing to remove (and no gc) */
        int st = kvz_store_open(&s, a->store, KVZ_STORE_READONLY);
        kvz_store_close(s);
        store_args_free(&args);
        if (st != KVZ_OK)
            return cli_fail(argv[0], st);
        if (a->json)
            printf("{\"dry_run\":%s,\"documents_removed\":0,\"artifacts_dropped\":0,\"prefixes_dropped\":0,"
                   "\"bytes_dropped\":0}\n", a->dry_run ? "true" : "false");
        else
            printf("%s 0 document(s): --from %s names none\n", a->dry_run ? "would remove" : "removed",
                   a->names_from);
        return KVZ_EXIT_OK;
    }
    rm_ctx rm = {.args = a};
    if (a->n_docs && !(rm.given = malloc((size_t)a->n_docs * sizeof *rm.given))) {
        store_args_free(&args);
        return cli_fail(argv[0], kvz_errorf(KVZ_ERR_NOMEM, "out of memory"));
    }
    if (a->n_docs)
        memcpy(rm.given, args.docs, (size_t)a->n_docs * sizeof *rm.given);
    if (a->n_docs > 1) /* looked up by rm_chooses for each stored document */
        qsort(args.docs, (size_t)a->n_docs, sizeof *args.docs, by_bytes);
    store_collect_opts o = {.older_configs = a->older_configs, .dry_run = a->dry_run, .what = argv[0]};
    if (a->n_docs)
        o.remove = rm_chooses, o.chosen = rm_found_all, o.ctx = &rm;
    store_collect_report r = {0};
    int st = KVZ_OK;
    if (a->n_docs && !(rm.found = calloc((size_t)a->n_docs, 1)))
        st = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (st == KVZ_OK)
        st = kvz_store_open(&s, a->store, a->dry_run ? KVZ_STORE_READONLY : KVZ_STORE_EXCLUSIVE);
    if (st == KVZ_OK)
        st = store_collect(s, &o, &r);
    if (st == KVZ_OK && a->json) /* one object; a dry run's figures are what would go */
        printf("{\"dry_run\":%s,%s%zu,\"artifacts_dropped\":%zu,\"prefixes_dropped\":%zu,\"bytes_dropped\":%llu}\n",
               a->dry_run ? "true" : "false", a->n_docs ? "\"documents_removed\":" : "\"older_forms_dropped\":",
               a->n_docs ? r.documents : r.older_configs, r.artifacts, r.prefixes, (unsigned long long)r.bytes);
    else if (st == KVZ_OK && a->n_docs)
        printf("%s %zu document(s); %s %zu artifact(s) and %zu prefix(es), %.1f KB\n",
               a->dry_run ? "would remove" : "removed", r.documents, a->dry_run ? "would drop" : "dropped",
               r.artifacts, r.prefixes, r.bytes / 1024.0);
    else if (st == KVZ_OK)
        printf("%s %zu artifact(s) and %zu prefix(es), %.1f KB; %zu older form(s)%s\n",
               a->dry_run ? "would drop" : "dropped", r.artifacts, r.prefixes, r.bytes / 1024.0, r.older_configs,
               a->older_configs ? "" : " (not asked: --older-configs)");
    free(rm.found);
    free(rm.given);
    kvz_store_close(s);
    rc = st == KVZ_OK ? KVZ_EXIT_OK : cli_fail(argv[0], st);
    store_args_free(&args);
    return rc;
}

int cmd_gc(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz gc --store DIR [--older-configs] [--dry-run] [--json]\n"
        "\n"
        "Deletes artifacts that no document references (left by an interrupted unpack\n"
        "or import, or by recompiling changed documents) and shared prefixes no\n"
        "artifact needs, in one transaction: a reader sees the store before or after.\n"
        "  --older-configs  also drop every form of a document but the newest\n"
        "                   one per model (and then their artifacts)\n"
        "  --dry-run        report what would go, change nothing\n"
        "  --json           the report as one object: dry_run, older_forms_dropped,\n"
        "                   artifacts_dropped, prefixes_dropped, bytes_dropped\n"
        "LMDB reuses the freed pages; the file does not shrink (`mdb_copy -c DIR OUT`\n"
        "writes a compacted copy). While another kvz process writes to the store, gc\n"
        "changes nothing and exits 3 (run it again later); writers wait for a running gc.\n";
    return collect(argc, argv, help, 0, "onj");
}

int cmd_rm(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz rm --store DIR NAME... [--from FILE [--null]] [--dry-run] [--json]\n"
        "\n"
        "Removes documents (every form of each), then drops what `kvz gc`\n"
        "drops: every artifact and shared prefix no remaining document references.\n"
        "One transaction: a reader sees the store before or after. A damaged record\n"
        "can be removed. A name the store lacks removes nothing (exit 7). Names are\n"
        "compared byte for byte with those `kvz ls` lists, which shows a control\n"
        "byte as \\xNN and a backslash as \\\\ (give the bytes themselves: bash's\n"
        "$'...' reads both back); after `--`, a name may start with '-'.\n"
        "  --from FILE  also the names in FILE ('-': stdin), one per line as they\n"
        "               are (a '\\r' before the newline is part of the name; empty\n"
        "               lines are passed over), as `kvz ls --names` prints them;\n"
        "               names none: nothing is removed (exit 0)\n"
        "  --null       FILE's names end with a NUL byte (`kvz ls --names --null`)\n"
        "  --dry-run    report what would go, change nothing\n"
        "  --json       the report as one object: dry_run, documents_removed,\n"
        "               artifacts_dropped, prefixes_dropped, bytes_dropped\n"
        "LMDB reuses the freed pages; the file does not shrink. While another kvz\n"
        "process writes to the store, rm changes nothing and exits 3 (run it again\n"
        "later); writers wait for a running rm.\n";
    return collect(argc, argv, help, 2, "njf0");
}
