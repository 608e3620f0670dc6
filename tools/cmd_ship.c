/* cmd_ship.c — moving compiled documents between stores and machines:
 * `kvz pack`, `kvz unpack`, `kvz merge`, `kvz export`, `kvz import`. */
#include "common/buffer.h"
#include "common/error.h"
#include "common/file_util.h"
#include "compiler/compile.h"
#include "format/bundle.h"
#include "format/doc_record.h"
#include "format/transfer.h"
#include "model/identity.h"
#include "model/utf8.h"
#include "tools/cli.h"
#include "tools/content_winners.h"
#include "tools/doc_list.h"
#include "tools/store_collect.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

enum {
    OPT_STORE = 256, OPT_DOC, OPT_ALL, OPT_INTO, OPT_ALLOW, OPT_MAX_ENTRY, OPT_CONFIG, OPT_SEGMENT, OPT_QUIET, OPT_PRUNE,
    OPT_CHECK, OPT_JSON
};

typedef struct ship_args {
    const char *store, *output, *into, *model;
    const char **docs;
    size_t n_docs;
    int all, allow_mismatch, quiet, prune, check, json;
    kvz_config_pick config; /* export: {0}, the newest */
    long segment;
    uint64_t max_entry;
} ship_args;

/* After parse_ship and the command's own checks failed (rc > 0) or --help was
 * shown (rc < 0): release the arguments and give the exit status. */
static int parse_failed(ship_args *a, int rc)
{
    free(a->docs);
    return rc < 0 ? KVZ_EXIT_OK : rc;
}

/* One option parser for the five commands; `allowed` lists the options a
 * command takes, each between spaces: " store doc all ". */
static int parse_ship(int argc, char **argv, const char *help, const char *allowed, ship_args *a)
{
    static const struct option options[] = {
        {"store", required_argument, 0, OPT_STORE},  {"doc", required_argument, 0, OPT_DOC},
        {"all", no_argument, 0, OPT_ALL},            {"output", required_argument, 0, 'o'},
        {"into", required_argument, 0, OPT_INTO},    {"model", required_argument, 0, 'm'},
        {"allow-model-mismatch", no_argument, 0, OPT_ALLOW},
        {"max-entry-bytes", required_argument, 0, OPT_MAX_ENTRY},
        {"config", required_argument, 0, OPT_CONFIG}, {"segment", required_argument, 0, OPT_SEGMENT},
        {"quiet", no_argument, 0, OPT_QUIET},        {"help", no_argument, 0, 'h'},
        {"prune", no_argument, 0, OPT_PRUNE},        {"check", no_argument, 0, OPT_CHECK},
        {"json", no_argument, 0, OPT_JSON},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->docs = calloc((size_t)argc + 1, sizeof *a->docs);
    if (!a->docs)
        return KVZ_EXIT_FAILURE;
    int c, index;
    long v;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "o:m:h", options, &index)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            return -1;
        }
        const char *name = c == 'o' ? "output" : c == 'm' ? "model" : c == '?' ? NULL : options[index].name;
        char word[48];
        snprintf(word, sizeof word, " %s ", name ? name : "");
        if (!name || !strstr(allowed, word)) {
            if (name)
                fprintf(stderr, "kvz %s: --%s does not apply here\n", argv[0], name);
            return cli_bad_option(help, argv[0]);
        }
        switch (c) {
        case OPT_STORE: a->store = optarg; break;
        case OPT_DOC: a->docs[a->n_docs++] = optarg; break;
        case OPT_ALL: a->all = 1; break;
        case 'o': a->output = optarg; break;
        case OPT_INTO: a->into = optarg; break;
        case 'm': a->model = optarg; break;
        case OPT_ALLOW: a->allow_mismatch = 1; break;
        case OPT_QUIET: a->quiet = 1; break;
        case OPT_PRUNE: a->prune = 1; break;
        case OPT_CHECK: a->check = 1; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_MAX_ENTRY:
            if (cli_parse_int(optarg, 1, LONG_MAX, &v)) {
                fprintf(stderr, "kvz %s: invalid --max-entry-bytes '%s'\n", argv[0], optarg);
                return KVZ_EXIT_USAGE;
            }
            a->max_entry = (uint64_t)v;
            break;
        case OPT_CONFIG:
        case OPT_SEGMENT:
            if (c == OPT_CONFIG) {
                /* pack's documents number their forms each its own way: an id only */
                if (cli_parse_config(argv[0], optarg, strcmp(argv[0], "pack") != 0, &a->config))
                    return KVZ_EXIT_USAGE;
            } else if (cli_parse_int(optarg, 1, 1 << 20, &a->segment)) {
                fprintf(stderr, "kvz %s: invalid --%s '%s'\n", argv[0], name, optarg);
                return KVZ_EXIT_USAGE;
            }
            break;
        }
    }
    return KVZ_EXIT_OK;
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "kvz %s: %s (see kvz %s --help)\n", cmd, msg, cmd);
    return KVZ_EXIT_USAGE;
}

/* The fingerprint of the model at `path`, read from the file: its tensors are
 * hashed, its weights not loaded. */
static int model_identity(const char *path, kvz_model_identity *id)
{
    return kvz_model_identity_read(cli_model_path(path), id);
}

static int get_artifact(kvz_store_txn *t, const uint8_t id[16], const char *doc, kvz_artifact *a)
{
    const void *val;
    size_t len;
    int rc = kvz_store_get(t, KVZ_DB_ARTIFACTS, id, 16, &val, &len);
    if (rc == KVZ_ERR_NOT_FOUND) {
        char hex[33];
        kvz_hex(id, 16, hex);
        return kvz_errorf(KVZ_ERR_FORMAT, "'%s': artifact %s is missing from the store (kvz verify)", doc, hex);
    }
    KVZ_TRY(rc);
    rc = kvz_transfer_check(val, len, a);
    if (rc == KVZ_OK)
        rc = kvz_transfer_check_key(a, 0, id, 16);
    return rc == KVZ_OK ? KVZ_OK : kvz_error_context(rc, "'%s'", doc);
}

/* Shared prefixes fetched and verified in this run: one per model and
 * template serves every artifact, so it is checked once, not per segment. */
typedef struct prefix_cache {
    char (*keys)[64];
    size_t n, cap;
} prefix_cache;

/* The shared prefix an artifact of document `doc` was compiled after, from
 * the store's meta, the first time this run needs it (*first = 1, verified
 * into *prefix); *first = 0 when it was handled already. */
static int first_prefix(prefix_cache *c, kvz_store_txn *t, const kvz_artifact *of, const char *doc,
                        kvz_artifact *prefix, int *first)
{
    char key[64];
    const void *val;
    size_t len;
    kvz_prefix_key(of->manifest.model.fingerprint, of->manifest.prefix_hash, key);
    *first = 0;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->keys[i], key) == 0)
            return KVZ_OK;
    int rc = kvz_store_get(t, KVZ_DB_META, key, strlen(key), &val, &len);
    if (rc == KVZ_ERR_NOT_FOUND)
        return kvz_errorf(KVZ_ERR_FORMAT, "the store lacks the shared prefix %s that '%s' needs", key, doc);
    KVZ_TRY(rc);
    rc = kvz_transfer_check(val, len, prefix);
    if (rc == KVZ_OK)
        rc = kvz_transfer_check_key(prefix, 1, key, strlen(key));
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "shared prefix %s", key);
    void *grown = kvz_grow(c->keys, &c->cap, c->n, sizeof *c->keys);
    if (!grown)
        return KVZ_ERR_NOMEM;
    c->keys = grown;
    memcpy(c->keys[c->n++], key, sizeof key);
    *first = 1;
    return KVZ_OK;
}

/* ---- pack ------------------------------------------------------------------- */

typedef struct pack_ctx {
    kvz_store_txn *t;
    kvz_bundle_writer *w;
    prefix_cache prefixes;
    const kvz_config_pick *config; /* --config ID: only forms whose id begins so; NULL: all */
    uint64_t model;                /* --model: only forms it compiled; 0: all */
    size_t docs, configs, left_out;
    size_t unnameable; /* --all: documents left out whose name is not UTF-8 */
    int all;
} pack_ctx;

static int pack_takes(const pack_ctx *p, const kvz_doc_entry *e)
{
    return (!p->config || kvz_config_pick_matches(p->config, e->config_id)) &&
           (!p->model || e->model_fingerprint == p->model);
}

/* A document's forms that pass --config and --model (a document with none of
 * them is counted in left_out, and not packed). */
static int pack_doc(void *ctx, const char *doc, kvz_doc_record *rec)
{
    pack_ctx *p = ctx;
    int rc = KVZ_OK;
    size_t taken = 0;
    int any = 0; /* a form to pack: then its name matters */
    for (uint32_t i = 0; i < rec->n_entries && !any; i++)
        any = pack_takes(p, &rec->entries[i]);
    if (any && kvz_utf8_valid_length((const uint8_t *)doc, strlen(doc)) != strlen(doc)) {
        /* a file's name may be any bytes; a manifest's (JSON) only text. The
         * message holds it raw: printed, the whole message is escaped once */
        rc = kvz_errorf(KVZ_ERR_UNSUPPORTED, "'%s': its name is not UTF-8, which a bundle's manifest cannot hold "
                        "(rename the file and compile it again)", doc);
        if (!p->all)
            return rc;
        fprintf(stderr, "kvz pack: left out: ");
        cli_put_shown(stderr, kvz_last_error());
        fputc('\n', stderr);
        kvz_error_clear();
        p->unnameable++;
        return KVZ_OK;
    }
    for (uint32_t i = 0; i < rec->n_entries && rc == KVZ_OK; i++) {
        const kvz_doc_entry *e = &rec->entries[i];
        if (!pack_takes(p, e))
            continue;
        taken++;
        for (uint32_t s = 0; s < e->n_segments && rc == KVZ_OK; s++) {
            kvz_artifact a, prefix;
            int first = 0;
            rc = get_artifact(p->t, e->artifact_ids[s], doc, &a);
            if (rc == KVZ_OK)
                rc = kvz_bundle_add_artifact(p->w, e->artifact_ids[s], &a);
            if (rc == KVZ_OK)
                rc = first_prefix(&p->prefixes, p->t, &a, doc, &prefix, &first);
            if (rc == KVZ_OK && first)
                rc = kvz_bundle_add_prefix(p->w, &prefix);
        }
        if (rc == KVZ_OK)
            rc = kvz_bundle_add_entry(p->w, doc, rec->doc_hash, e);
        p->configs++;
    }
    int filtered = p->config || p->model;
    p->docs += taken > 0 || !filtered;
    p->left_out += taken == 0 && filtered;
    return rc;
}

/* --doc NAME under --config or --model: a document named that has no such form is an error, not a skip. */
static int pack_named_doc(pack_ctx *p, const ship_args *a, const char *doc, kvz_doc_record *rec)
{
    size_t before = p->left_out;
    KVZ_TRY(pack_doc(p, doc, rec));
    if (p->left_out == before)
        return KVZ_OK;
    char name[40];
    kvz_config_pick_name(&a->config, name);
    return kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s' has no %s%s%s (see kvz ls)", doc, p->config ? name : "form",
                      p->model ? " compiled by the model " : "", p->model ? cli_model_path(a->model) : "");
}

int cmd_pack(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz pack --store DIR (--doc NAME... | --all) [--config ID] [-m MODEL]\n"
        "                -o FILE.tar.zst\n"
        "\n"
        "Writes compiled documents (every form of each, or those --config and\n"
        "-m select) into a bundle: a tar archive compressed with zstd that `tar -tf`\n"
        "lists, holding a manifest (kvz-bundle.json: documents, model fingerprints,\n"
        "sizes, checksums), the artifacts and the shared prompt prefixes they need\n"
        "(format/BUNDLE.md). Every artifact is verified before it is packed. Documents\n"
        "of the same content share one artifact in the store, which names the first of\n"
        "them compiled: where the bundle does not hold that one, its artifact is\n"
        "written naming the first document of the bundle that uses it. The file\n"
        "appears only when complete and synced (through a link, the file it names); a\n"
        "pipe or a device is written as it goes, and with -o - (or /dev/stdout) the\n"
        "report goes to stderr. Where the file system has no unnamed temporary files\n"
        "(NFS, most FUSE), a pack killed by SIGKILL leaves FILE.tmp.PID.N beside FILE:\n"
        "delete it. Move the bundle to another machine and `kvz unpack` it there.\n"
        "\n"
        "  --doc NAME          a document as `kvz ls` names it (repeatable)\n"
        "  --all               every document of the store\n"
        "  --config ID         only the forms whose config id begins with these 8 to 16\n"
        "                      hex digits (`kvz ls` shows them; the id of one\n"
        "                      compression is the same in every document and store)\n"
        "  -m, --model MODEL   only the forms compiled by this model (with the model a\n"
        "                      store serves: not the other models' forms unpack\n"
        "                      --allow-model-mismatch stored aside)\n"
        "                      With either, --all leaves out a document without such a\n"
        "                      form (the count is said; `unpack --prune` of the bundle\n"
        "                      would remove it from the receiving store), and --doc of\n"
        "                      one is an error.\n"
        "  -o, --output FILE   the bundle\n"
        "  --quiet             print nothing but errors\n"
        "\n"
        "A document whose name is not UTF-8 (a file's name may be any bytes, a\n"
        "manifest's only text) is left out of --all and said; the bundle is written\n"
        "and the exit status is 5 (`unpack --prune` of it would remove the document\n"
        "from the receiving store).\n";
    ship_args a;
    int rc = parse_ship(argc, argv, help, " store doc all output quiet config model ", &a);
    if (rc == KVZ_EXIT_OK && (!a.store || !a.output))
        rc = usage_error(argv[0], "--store DIR and -o FILE are required");
    else if (rc == KVZ_EXIT_OK && (a.all == (a.n_docs > 0) || optind != argc))
        rc = usage_error(argv[0], "name documents with --doc, or give --all (not both)");
    if (rc)
        return parse_failed(&a, rc);
    kvz_store *s = NULL;
    pack_ctx p = {0};
    p.config = a.config.id_digits ? &a.config : NULL;
    p.all = a.all;
    uint64_t bytes = 0;
    int st = KVZ_OK;
    if (a.model) { /* the store first: a missing one is said before a model is loaded */
        st = kvz_store_open(&s, a.store, KVZ_STORE_READONLY);
        kvz_store_close(s), s = NULL;
        kvz_model_identity id = {0};
        if (st == KVZ_OK)
            st = model_identity(a.model, &id);
        p.model = id.fingerprint;
    }
    if (st == KVZ_OK)
        st = kvz_store_open(&s, a.store, KVZ_STORE_READONLY);
    if (st == KVZ_OK)
        st = kvz_store_read_begin(s, &p.t);
    if (st == KVZ_OK)
        st = kvz_bundle_writer_new(&p.w);
    if (st == KVZ_OK && a.all)
        st = kvz_scan_documents(p.t, pack_doc, &p);
    for (size_t i = 0; i < a.n_docs && st == KVZ_OK; i++) {
        const void *val;
        size_t len;
        kvz_doc_record rec;
        int repeated = 0; /* --doc X --doc X packs X once */
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = strcmp(a.docs[j], a.docs[i]) == 0;
        if (repeated)
            continue;
        st = kvz_store_get(p.t, KVZ_DB_DOCS, a.docs[i], strlen(a.docs[i]), &val, &len);
        if (st == KVZ_ERR_NOT_FOUND)
            st = kvz_document_missing(p.t, a.docs[i], a.store, "");
        if (st == KVZ_OK && (st = kvz_doc_record_decode(val, len, &rec)) == KVZ_OK) {
            st = pack_named_doc(&p, &a, a.docs[i], &rec);
            kvz_doc_record_free(&rec);
        }
    }
    const char *filters = p.config && p.model ? "--config and --model select" : p.config ? "--config selects"
                                                                                         : "--model selects";
    if (st == KVZ_OK && p.docs == 0 && p.left_out)
        st = kvz_errorf(KVZ_ERR_NOT_FOUND, "none of the store's %zu document(s) has a form that %s (see kvz ls)",
                        p.left_out, filters);
    else if (st == KVZ_OK && p.docs == 0 && p.unnameable)
        st = kvz_errorf(KVZ_ERR_UNSUPPORTED, "nothing to pack: %zu document(s) left out, their names are not UTF-8",
                        p.unnameable);
    else if (st == KVZ_OK && p.docs == 0)
        st = kvz_errorf(KVZ_ERR_NOT_FOUND, "the store '%s' holds no documents to pack", a.store);
    if (st == KVZ_OK)
        st = kvz_bundle_write(p.w, a.output, &bytes);
    kvz_bundle_writer_free(p.w);
    free(p.prefixes.keys);
    kvz_store_read_end(p.t);
    kvz_store_close(s);
    free(a.docs);
    if (st != KVZ_OK)
        return cli_fail("pack", st);
    if (!a.quiet)
        fprintf(cli_report_stream(a.output), "packed %zu document(s), %zu form(s) into %s (%.1f KB)\n",
                p.docs, p.configs, a.output, bytes / 1024.0);
    if (!a.quiet && p.left_out)
        fprintf(cli_report_stream(a.output), "%zu document(s) without a form that %s left out\n", p.left_out,
                filters);
    /* `-o corpus.tar.gz`: zstd all the same, and `tar -xzf` of it says only "not in gzip format" */
    static const char *const other_kinds[] = {".gz", ".tgz", ".xz", ".txz", ".bz2", ".tbz2", ".zip", ".tar"};
    size_t out_len = strlen(a.output);
    for (size_t i = 0; !a.quiet && i < sizeof other_kinds / sizeof other_kinds[0]; i++) {
        size_t k = strlen(other_kinds[i]);
        if (out_len > k && strcmp(a.output + out_len - k, other_kinds[i]) == 0) {
            fprintf(stderr, "kvz pack: note: %s is a tar archive compressed with zstd whatever its name says "
                    "(tar --zstd -tf lists it; kvz unpack reads it)\n", a.output);
            break;
        }
    }
    if (p.unnameable) { /* the bundle is made; what it lacks is not to go unnoticed */
        fprintf(stderr, "kvz pack: %zu document(s) left out: their names are not UTF-8\n", p.unnameable);
        return cli_exit_code(KVZ_ERR_UNSUPPORTED);
    }
    return KVZ_EXIT_OK;
}

/* ---- unpack ----------------------------------------------------------------- */

typedef struct unpack_ctx {
    kvz_store *store;
    uint64_t model;         /* the fingerprint the store serves */
    int allow_mismatch;
    int checking;           /* unpack --check: nothing is written in any case */
    size_t other_model;     /* configurations compiled by another model */
    uint64_t other_fingerprint;
    size_t artifacts[KVZ_ARTIFACT_OUTCOMES], prefixes_repaired; /* artifacts[kvz_artifact_outcome] */
    uint8_t (*wanted)[16];  /* sorted ids of the artifacts of documents that do not lose to the store's */
    size_t n_wanted;
    uint64_t *wanted_models; /* the models whose configurations those documents hold (their prefixes) */
    size_t n_wanted_models;
    size_t other_model_left_alone; /* of other_model: in documents that lose */
} unpack_ctx;

static int id_order(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Before pass 2 writes: the artifacts some document of the bundle needs. A
 * document whose name holds newer other content in the store is left alone,
 * and its artifacts would only wait there for `kvz gc`. */
static int unpack_wanted(unpack_ctx *u, const kvz_bundle_manifest *m)
{
    size_t n = 0;
    for (size_t d = 0; d < m->n_docs; d++)
        for (uint32_t k = 0; k < m->docs[d].record.n_entries; k++)
            n += m->docs[d].record.entries[k].n_segments;
    u->wanted = malloc((n ? n : 1) * sizeof *u->wanted);
    u->wanted_models = malloc((n ? n : 1) * sizeof *u->wanted_models);
    if (!u->wanted || !u->wanted_models)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (size_t d = 0; d < m->n_docs; d++) {
        const kvz_doc_record *r = &m->docs[d].record;
        int loses;
        KVZ_TRY(kvz_transfer_loses(u->store, m->docs[d].name, r, &loses));
        for (uint32_t k = 0; k < r->n_entries; k++) {
            const kvz_doc_entry *e = &r->entries[k];
            u->other_model_left_alone += loses && e->model_fingerprint != u->model;
            if (loses)
                continue;
            for (uint32_t s = 0; s < e->n_segments; s++)
                memcpy(u->wanted[u->n_wanted++], e->artifact_ids[s], 16);
            size_t seen = 0;
            while (seen < u->n_wanted_models && u->wanted_models[seen] != e->model_fingerprint)
                seen++;
            if (seen == u->n_wanted_models)
                u->wanted_models[u->n_wanted_models++] = e->model_fingerprint;
        }
    }
    qsort(u->wanted, u->n_wanted, sizeof *u->wanted, id_order);
    return KVZ_OK;
}

static int unpack_policy(void *ctx, const kvz_bundle_manifest *m)
{
    unpack_ctx *u = ctx;
    u->other_model = 0;
    for (size_t d = 0; d < m->n_docs; d++)
        for (uint32_t k = 0; k < m->docs[d].record.n_entries; k++)
            if (m->docs[d].record.entries[k].model_fingerprint != u->model) {
                u->other_model++;
                u->other_fingerprint = m->docs[d].record.entries[k].model_fingerprint;
            }
    if (u->other_model && !u->allow_mismatch && u->checking)
        return kvz_errorf(KVZ_ERR_MODEL_MISMATCH,
                          "the bundle holds %zu form(s) compiled by model %016llx, not by the model "
                          "given (%016llx): unpack with it would refuse the bundle, and with "
                          "--allow-model-mismatch store them aside", u->other_model,
                          (unsigned long long)u->other_fingerprint, (unsigned long long)u->model);
    if (u->other_model && !u->allow_mismatch)
        return kvz_errorf(KVZ_ERR_MODEL_MISMATCH,
                          "the bundle holds %zu form(s) compiled by model %016llx, not by the model "
                          "given (%016llx: --model, or the default); nothing was written. Unpack with that model's "
                          "--model, or --allow-model-mismatch to store them aside (kvz query never uses "
                          "another model's artifacts)", u->other_model, (unsigned long long)u->other_fingerprint,
                          (unsigned long long)u->model);
    return KVZ_OK;
}

static int unpack_prefix(void *ctx, const kvz_bundle_file *f, const kvz_artifact *a)
{
    unpack_ctx *u = ctx;
    kvz_artifact_outcome o;
    int wanted = 0; /* a model of some document that does not lose: its prefix is needed */
    for (size_t i = 0; i < u->n_wanted_models && !wanted; i++)
        wanted = u->wanted_models[i] == f->model;
    KVZ_TRY(kvz_transfer_prefix(u->store, a, !wanted, &o));
    u->prefixes_repaired += o == KVZ_ARTIFACT_REPAIRED;
    return KVZ_OK;
}

static int unpack_artifact(void *ctx, const kvz_bundle_file *f, const kvz_artifact *a)
{
    unpack_ctx *u = ctx;
    kvz_artifact_outcome o;
    /* one only documents left alone use mends a damaged copy the store has, adds none */
    int wanted = bsearch(f->id, u->wanted, u->n_wanted, sizeof *u->wanted, id_order) != NULL;
    KVZ_TRY(kvz_transfer_artifact(u->store, f->id, a->data, a->size,
                                  wanted ? KVZ_TRANSFER_WHOLE_FORM : KVZ_TRANSFER_HELD_ONLY, &o));
    u->artifacts[o]++;
    return KVZ_OK;
}

/* unpack reads the bundle twice (check, then write): a pipe ('-', /dev/stdin,
 * a FIFO) is first copied into a temporary file, unlinked at once so that
 * nothing is left behind, and read again through /proc/self/fd. */
static int spool_stream(const char *file, int *fd, char path[64])
{
    *fd = -1;
    struct stat st;
    int in = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return kvz_errorf(errno == ENOENT ? KVZ_ERR_NOT_FOUND : KVZ_ERR_IO, "bundle '%s': cannot open: %s", file,
                          strerror(errno));
    if (fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
        if (in != STDIN_FILENO)
            close(in);
        else /* '-' redirected from a file: read it from its start, twice */
            snprintf(path, 64, "/dev/stdin");
        return KVZ_OK;
    }
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char temp[4096];
    snprintf(temp, sizeof temp, "%s/kvz-unpack-XXXXXX", dir);
    int out = mkstemp(temp);
    int rc = out < 0 ? kvz_errorf(KVZ_ERR_IO, "cannot make a temporary file in %s for the bundle from '%s': %s",
                                  dir, file, strerror(errno))
                     : KVZ_OK;
    if (out >= 0)
        unlink(temp);
    char buf[1 << 16];
    for (ssize_t got; rc == KVZ_OK && (got = read(in, buf, sizeof buf)) != 0;) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = kvz_errorf(KVZ_ERR_IO, "bundle '%s': reading: %s", file, strerror(errno));
        for (ssize_t done = 0; rc == KVZ_OK && done < got;) {
            ssize_t put = write(out, buf + done, (size_t)(got - done));
            if (put < 0 && errno != EINTR)
                rc = kvz_errorf(KVZ_ERR_IO, "copying the bundle from '%s' into a temporary file in %s: %s", file,
                                dir, strerror(errno));
            done += put > 0 ? put : 0;
        }
    }
    if (in != STDIN_FILENO)
        close(in);
    if (rc != KVZ_OK) {
        if (out >= 0)
            close(out);
        return rc;
    }
    *fd = out;
    snprintf(path, 64, "/proc/self/fd/%d", out);
    return KVZ_OK;
}

static int prune_chooses(void *ctx, const void *name, size_t len)
{
    return !name_set_has(ctx, name, len);
}

static void pruned_one(void *ctx, const void *name, size_t len)
{
    (void)ctx;
    char shown[CLI_SHOWN_MAX];
    fprintf(stderr, "pruned %s\n", cli_shown(shown, (const char *)name, len));
}

/* Forms dated after this machine's clock (by more than a skew), counted as
 * they arrive. The dates are the sender's word: such a form wins every
 * "newest" decision until then (the form query loads, the content a name
 * keeps), so unpack, merge and import say so. */
typedef struct future_dates {
    size_t n;
    uint64_t latest;
} future_dates;

static void future_dates_add(future_dates *f, uint64_t created)
{
    if (created > (uint64_t)time(NULL) + 3600) {
        f->n++;
        f->latest = created > f->latest ? created : f->latest;
    }
}

/* `from`: what brought them, as the user named it. */
static void future_dates_say(const future_dates *f, const char *command, const char *from)
{
    if (!f->n)
        return;
    char when[32];
    cli_format_time(f->latest, when);
    fflush(stdout); /* after what was said there */
    fprintf(stderr, "kvz %s: note: %zu form(s) of %s are dated after this machine's clock (the latest "
            "%s): until then they count as newer than any compile here (the form query loads, the content that "
            "wins a name)\n", command, f->n, from, when);
}

/* Artifacts the store had under their ids with other bytes (kept): said,
 * since the same id does not promise the same bytes across machines. */
static void say_other_bytes(size_t n, const char *theirs)
{
    if (n)
        printf("%zu artifact(s) already there had other bytes than %s (the same compile run twice: its time is in "
               "the manifest, and another CPU or thread count rounds sums otherwise; or another document name in the "
               "manifest): the store's kept\n", n, theirs);
}

/* Why the store's other content under `name` stayed against `rec` (asked
 * after the put said so): KVZ_STAYS_NEWER or KVZ_STAYS_SAME_TIME; a failed
 * read says the former (only the message's wording hangs on it). */
static int stays_why(kvz_store *s, const char *name, const kvz_doc_record *rec)
{
    int why = 0;
    if (kvz_transfer_loses(s, name, rec, &why) != KVZ_OK)
        kvz_error_clear();
    return why ? why : KVZ_STAYS_NEWER;
}

/* A document of `from` whose content loses to the store's under its name;
 * why: KVZ_STAYS_NEWER or KVZ_STAYS_SAME_TIME (kvz_transfer_loses). */
static void say_left_alone(const char *command, const char *name, const char *from, int why)
{
    char shown[CLI_SHOWN_MAX];
    fprintf(stderr, "kvz %s: %s: %s's content under the name left alone: %s\n", command,
            cli_shown(shown, name, strlen(name)), from,
            why == KVZ_STAYS_SAME_TIME ? "the store's was compiled at the same time, and the content hashes "
                                         "decide (the same in either order)"
                                       : "the store's was compiled later");
}

/* Whether a form's outcome wrote it. */
static int entry_written(kvz_entry_outcome o)
{
    return o == KVZ_ENTRY_ADDED || o == KVZ_ENTRY_REPLACED || o == KVZ_ENTRY_CUT_REPLACED;
}

/* What putting a document did; counts[o]: how many configurations had
 * outcome o. A name whose other content gave way is said on stderr (with
 * `from`, the source; NULL: quiet): two teams' names can collide, and a count
 * alone does not say which document changed. */
static void say_put(kvz_store *s, const char *name, const kvz_doc_record *rec, const kvz_entry_outcome *o,
                    size_t counts[KVZ_ENTRY_OUTCOMES], const char *command, const char *from, future_dates *future)
{
    for (uint32_t i = 0; i < rec->n_entries; i++) {
        counts[o[i]]++;
        if (future && entry_written(o[i]))
            future_dates_add(future, rec->entries[i].created);
        if ((o[i] == KVZ_ENTRY_CUT_REPLACED || o[i] == KVZ_ENTRY_CUT_KEPT) && from) {
            char shown[CLI_SHOWN_MAX];
            fprintf(stderr, "kvz %s: %s: its form %016llx, cut into other segments by another kvz: %s\n", command,
                    cli_shown(shown, name, strlen(name)), (unsigned long long)rec->entries[i].config_id,
                    o[i] == KVZ_ENTRY_CUT_KEPT ? "the store's, compiled later, kept" : "replaced by this one, compiled later");
        }
    }
    if (rec->n_entries && o[0] == KVZ_ENTRY_REPLACED && from) {
        char shown[CLI_SHOWN_MAX];
        fprintf(stderr, "kvz %s: %s: the content under the name replaced by %s's\n", command,
                cli_shown(shown, name, strlen(name)), from);
    }
    if (rec->n_entries && o[0] == KVZ_ENTRY_KEPT_NEWER && from)
        say_left_alone(command, name, from, stays_why(s, name, rec));
}

/* A document, all its configurations at once, into the store (say_put). */
static int put_document(kvz_store *s, const char *name, const kvz_doc_record *rec,
                        size_t counts[KVZ_ENTRY_OUTCOMES], const char *command, const char *from,
                        future_dates *future)
{
    kvz_entry_outcome *o = calloc(rec->n_entries ? rec->n_entries : 1, sizeof *o);
    if (!o)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int rc = kvz_transfer_document(s, name, rec, o);
    if (rc == KVZ_OK)
        say_put(s, name, rec, o, counts, command, from, future);
    free(o);
    return rc;
}

#define DOCUMENTS_A_WRITE 256 /* a commit syncs the disk twice: one a document, that was most of an unpack */

/* A bundle's documents (their artifacts are in), DOCUMENTS_A_WRITE to a
 * transaction: interrupted, a run of them is in the store whole or not at all. */
static int put_documents(kvz_store *s, const kvz_bundle_manifest *m, size_t counts[KVZ_ENTRY_OUTCOMES],
                         const char *from)
{
    int rc = KVZ_OK;
    for (size_t at = 0; at < m->n_docs && rc == KVZ_OK; at += DOCUMENTS_A_WRITE) {
        size_t n = m->n_docs - at < DOCUMENTS_A_WRITE ? m->n_docs - at : DOCUMENTS_A_WRITE;
        const char *names[DOCUMENTS_A_WRITE];
        const kvz_doc_record *recs[DOCUMENTS_A_WRITE];
        kvz_entry_outcome *o[DOCUMENTS_A_WRITE] = {0};
        for (size_t i = 0; i < n && rc == KVZ_OK; i++) {
            names[i] = m->docs[at + i].name;
            recs[i] = &m->docs[at + i].record;
            if (!(o[i] = calloc(recs[i]->n_entries ? recs[i]->n_entries : 1, sizeof *o[i])))
                rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        }
        if (rc == KVZ_OK)
            rc = kvz_transfer_documents(s, n, names, recs, o);
        for (size_t i = 0; i < n && rc == KVZ_OK; i++) /* its dates are said from the manifest, before writing */
            say_put(s, names[i], recs[i], o[i], counts, "unpack", from, NULL);
        for (size_t i = 0; i < n; i++)
            free(o[i]);
    }
    return rc;
}

/* merge --prune and unpack --prune: what none of the sources (`from`, in
 * messages) names leaves `into` (the store to itself, one transaction, as
 * compile --prune); `what` is the command, as store_collect says it. */
static int prune_to(const char *into, name_set *names, const char *from, const char *what, int quiet,
                    store_collect_report *report)
{
    name_set_sort(names);
    store_collect_opts o = {.remove = prune_chooses, .removed = quiet ? NULL : pruned_one,
                            .ctx = names, .what = what};
    kvz_store *s = NULL;
    int st = names->n ? KVZ_OK /* shards that failed to be copied, say: not a deleted corpus */
                      : kvz_errorf(KVZ_ERR_NOT_FOUND, "%s no documents, and pruning would have removed every "
                                   "document of %s", from, into);
    if (st == KVZ_OK)
        st = kvz_store_open(&s, into, KVZ_STORE_EXCLUSIVE);
    if (st == KVZ_OK)
        st = store_collect(s, &o, report);
    kvz_store_close(s);
    return st == KVZ_OK ? st : kvz_error_context(st, "nothing pruned");
}

/* The spooled copy of a piped bundle named in the last error: name what was given. */
static void name_the_bundle(int st, const char *spool_path, const char *shown)
{
    const char *said = kvz_last_error(), *at = st != KVZ_OK && spool_path[0] ? strstr(said, spool_path) : NULL;
    if (at) {
        char copy[1024];
        snprintf(copy, sizeof copy, "%.*s%s%s", (int)(at - said), said, shown, at + strlen(spool_path));
        kvz_errorf(st, "%s", copy);
    }
}

static void note_future_dates(const char *shown, const kvz_bundle_manifest *m)
{
    future_dates f = {0};
    for (size_t d = 0; d < m->n_docs; d++)
        for (uint32_t k = 0; k < m->docs[d].record.n_entries; k++)
            future_dates_add(&f, m->docs[d].record.entries[k].created);
    future_dates_say(&f, "unpack", shown);
}

/* unpack --check: pass 1 of unpack alone, then the listing. */
static int check_bundle(ship_args *a, const char *file)
{
    const char *path = strcmp(file, "-") == 0 ? "/dev/stdin" : file; /* read once: a pipe as it comes */
    unpack_ctx u = {.allow_mismatch = !a->model, .checking = 1}; /* the model is checked when one is named */
    kvz_bundle_limits lim = {a->max_entry, 0};
    kvz_bundle_manifest m = {0};
    int st = KVZ_OK;
    if (a->model) {
        kvz_model_identity id = {0};
        st = model_identity(a->model, &id);
        u.model = id.fingerprint;
    }
    kvz_bundle_visitor check = {unpack_policy, NULL, NULL, &u};
    if (st == KVZ_OK && (st = kvz_bundle_read(path, &lim, &check, &m)) != KVZ_OK && path != file)
        name_the_bundle(st, path, file);
    if (st == KVZ_OK && !a->quiet && !a->json) {
        char writer[CLI_SHOWN_MAX], when[32];
        cli_format_time(m.created, when);
        printf("%s: %zu document(s), %zu artifact(s), %zu prefix(es) checked: sound%s (packed %s by %s%s)\n",
               file, m.n_docs, m.n_artifacts, m.n_prefixes, a->model ? ", compiled by the model given" : "", when,
               m.compiler[0] ? cli_shown(writer, m.compiler, strlen(m.compiler)) : "an older kvz",
               m.checksummed ? "" : "; its manifest carries no checksum of its own");
    }
    if (st == KVZ_OK && !a->quiet) {
        doc_list l;
        doc_list_init(&l, a->json);
        for (size_t d = 0; d < m.n_docs; d++)
            doc_list_measure(&l, m.docs[d].name, &m.docs[d].record);
        for (size_t d = 0; d < m.n_docs; d++)
            doc_list_row(&l, m.docs[d].name, &m.docs[d].record);
        if (!a->json)
            doc_list_totals(&l, "an artifact two documents share counted for each");
        if (fflush(stdout) != 0 || ferror(stdout))
            st = kvz_errorf(KVZ_ERR_IO, "cannot write the listing: %s", strerror(errno));
    }
    if (st == KVZ_OK && !a->quiet)
        note_future_dates(file, &m);
    kvz_bundle_manifest_free(&m);
    free(a->docs);
    return st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("unpack", st);
}

int cmd_unpack(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz unpack FILE --store DIR [--model PATH] [--allow-model-mismatch]\n"
        "                  [--max-entry-bytes N] [--prune] [--quiet]\n"
        "       kvz unpack FILE --check [--model PATH] [--max-entry-bytes N] [--json]\n"
        "                               [--quiet]\n"
        "\n"
        "Imports a bundle written by `kvz pack` into a store (created if missing). The\n"
        "whole bundle is read and checked first and nothing is written unless all of it\n"
        "passes: the manifest's own checksum (since 0.2.2), only regular files it lists\n"
        "(no absolute paths, no '..', no links or devices, nothing listed twice or\n"
        "missing), sizes within the limit and equal to the manifest's, checksums,\n"
        "every artifact decoded and verified, and every configuration compiled by the\n"
        "model (--model or -m; default $KVZ_MODEL, else the setup's SmolLM2). Then\n"
        "each artifact is written in its own transaction and the documents last (256\n"
        "to a transaction), so a reader never sees a document without all of its\n"
        "artifacts;\n"
        "an interrupted unpack leaves the store valid and running it again finishes it.\n"
        "Unpacking twice writes nothing new. FILE may be '-' or a pipe (ssh host 'kvz\n"
        "pack ... -o -' | kvz unpack - ...): it is copied into $TMPDIR first.\n"
        "Where a name holds other content, the newer compile wins, for the whole\n"
        "document (all its forms); each name replaced or left alone is said\n"
        "on stderr, and the artifacts of a document that loses are not written. A\n"
        "damaged artifact in the store that the bundle holds sound is replaced.\n"
        "\n"
        "--check runs the checks alone, with no store, and lists what the bundle holds\n"
        "as `kvz ls` lists a store (each form numbered in the bundle, its id the same\n"
        "in every store; --json as ls --json, --quiet nothing): what a receiver can\n"
        "look at before unpacking. The model is checked only when --model (-m) is\n"
        "given; the exit status then says whether unpack with it would take the\n"
        "bundle (without -m, whether the bundle itself is sound).\n"
        "\n"
        "  --allow-model-mismatch  store forms of other models aside, in their\n"
        "                          documents' records (queries with this model skip\n"
        "                          them). Content newer than the store's under a name\n"
        "                          still takes the name, with only the forms it came\n"
        "                          with: compile such a document again for this model\n"
        "  --max-entry-bytes N     refuse larger archive entries (default 4 GiB)\n"
        "  --prune                 then remove from the store the documents the bundle\n"
        "                          does not hold, and what only they used (as `kvz rm`):\n"
        "                          for a store the bundle fills whole, such as a serving\n"
        "                          store fed the nightly corpus bundle, so that what was\n"
        "                          deleted from the corpus leaves it too. Not done for a\n"
        "                          bundle of no documents (exit 7), or while another\n"
        "                          process writes to the store (exit 3); the unpack\n"
        "                          itself is done then\n"
        "  --quiet                 print nothing but errors\n";
    ship_args a;
    int rc = parse_ship(argc, argv, help, " store model allow-model-mismatch max-entry-bytes quiet prune check json ",
                        &a);
    if (rc == KVZ_EXIT_OK && a.check && (a.store || a.prune || a.allow_mismatch))
        rc = usage_error(argv[0], "--check writes nothing: it takes no --store, --prune or --allow-model-mismatch");
    else if (rc == KVZ_EXIT_OK && a.json && !a.check)
        rc = usage_error(argv[0], "--json lists the bundle with --check");
    else if (rc == KVZ_EXIT_OK && ((!a.store && !a.check) || optind != argc - 1))
        rc = usage_error(argv[0], "give one bundle FILE and --store DIR (or --check)");
    if (rc)
        return parse_failed(&a, rc);
    if (a.check)
        return check_bundle(&a, argv[optind]);
    const char *file = argv[optind], *shown = file;
    int spooled = -1;
    char spool_path[64];
    kvz_model_identity id = {0};
    unpack_ctx u = {0};
    u.allow_mismatch = a.allow_mismatch;
    kvz_bundle_limits lim = {a.max_entry, 0};
    kvz_bundle_manifest m = {0};
    int st = model_identity(a.model, &id);
    u.model = id.fingerprint;
    spool_path[0] = '\0';
    if (st == KVZ_OK)
        st = spool_stream(file, &spooled, spool_path);
    if (spool_path[0])
        file = spool_path;
    /* pass 1: check everything, write nothing */
    kvz_bundle_visitor check = {unpack_policy, NULL, NULL, &u};
    if (st == KVZ_OK)
        st = kvz_bundle_read(file, &lim, &check, &m);
    if (st == KVZ_OK && !a.quiet)
        printf("%s: %zu document(s), %zu artifact(s), %zu prefix(es) checked\n", shown, m.n_docs, m.n_artifacts,
               m.n_prefixes);
    if (st == KVZ_OK && !a.quiet && !m.checksummed) {
        char writer[CLI_SHOWN_MAX]; /* unchecked text: shown escaped */
        fprintf(stderr, "kvz unpack: note: the manifest of %s (written by %s) carries no checksum of its own: "
                "its names and dates are taken as they are\n", shown,
                m.compiler[0] ? cli_shown(writer, m.compiler, strlen(m.compiler)) : "an older kvz");
    }
    if (st == KVZ_OK && !a.quiet)
        note_future_dates(shown, &m);
    /* pass 2: write, artifacts first (re-checked: the file may have changed), documents last */
    kvz_bundle_visitor write = {unpack_policy, unpack_prefix, unpack_artifact, &u};
    if (st == KVZ_OK)
        st = kvz_store_open(&u.store, a.store, KVZ_STORE_CREATE);
    if (st == KVZ_OK)
        st = unpack_wanted(&u, &m);
    if (st == KVZ_OK)
        st = kvz_bundle_read(file, &lim, &write, NULL);
    size_t counts[KVZ_ENTRY_OUTCOMES] = {0};
    if (st == KVZ_OK)
        st = put_documents(u.store, &m, counts, a.quiet ? NULL : shown);
    name_set names = {0};
    for (size_t d = 0; a.prune && d < m.n_docs && st == KVZ_OK; d++)
        st = name_set_add(&names, m.docs[d].name);
    kvz_bundle_manifest_free(&m);
    kvz_store_close(u.store);
    free(u.wanted);
    free(u.wanted_models);
    store_collect_report pruned = {0};
    if (st == KVZ_OK && a.prune)
        st = prune_to(a.store, &names, "the bundle holds", "unpack --prune", a.quiet, &pruned);
    name_set_free(&names);
    free(a.docs);
    if (spooled >= 0) {
        close(spooled);
        name_the_bundle(st, spool_path, shown);
    }
    if (st != KVZ_OK)
        return cli_fail("unpack", st);
    if (!a.quiet) {
        printf("unpacked into %s: %zu form(s) added, %zu already there, %zu replaced older content, "
               "%zu left alone (the store's content under the name wins); %zu artifact(s) written, %zu "
               "already there", a.store, counts[KVZ_ENTRY_ADDED], counts[KVZ_ENTRY_PRESENT],
               counts[KVZ_ENTRY_REPLACED] + counts[KVZ_ENTRY_CUT_REPLACED],
               counts[KVZ_ENTRY_KEPT_NEWER] + counts[KVZ_ENTRY_CUT_KEPT],
               u.artifacts[KVZ_ARTIFACT_ADDED] + u.artifacts[KVZ_ARTIFACT_REPAIRED] + u.artifacts[KVZ_ARTIFACT_RECUT],
               u.artifacts[KVZ_ARTIFACT_PRESENT] + u.artifacts[KVZ_ARTIFACT_OTHER_BYTES] +
                   u.artifacts[KVZ_ARTIFACT_NEWER_CUT]);
        if (u.artifacts[KVZ_ARTIFACT_ABSENT])
            printf(", %zu not written (only documents left alone use them)", u.artifacts[KVZ_ARTIFACT_ABSENT]);
        printf("\n");
        say_other_bytes(u.artifacts[KVZ_ARTIFACT_OTHER_BYTES], "the bundle's");
        size_t repaired = u.artifacts[KVZ_ARTIFACT_REPAIRED] + u.prefixes_repaired;
        if (repaired)
            printf("%zu damaged artifact(s) replaced by the bundle's good copy\n", repaired);
        if (u.artifacts[KVZ_ARTIFACT_RECUT])
            printf("%zu artifact(s) of another cut of their document (a kvz before 0.3.3, or before 0.3.11, cut "
                   "some documents into other segments under the same ids) replaced by the bundle's, the later "
                   "cut\n", u.artifacts[KVZ_ARTIFACT_RECUT]);
        if (u.artifacts[KVZ_ARTIFACT_NEWER_CUT])
            printf("%zu artifact(s) of another cut of their document, the later cut (a later kvz's, or compiled "
                   "later), kept against the bundle's\n",
                   u.artifacts[KVZ_ARTIFACT_NEWER_CUT]);
        if (a.prune)
            printf("%zu document(s) pruned, %.1f KB that no document used freed\n", pruned.documents,
                   pruned.bytes / 1024.0);
        if (u.other_model > u.other_model_left_alone)
            printf("%zu form(s) of model %016llx stored aside\n", u.other_model - u.other_model_left_alone,
                   (unsigned long long)u.other_fingerprint);
    }
    return KVZ_EXIT_OK;
}

/* ---- merge ------------------------------------------------------------------ */

typedef struct merge_ctx {
    kvz_store_txn *t;
    kvz_store *into;        /* NULL until the first write when DIR held no store */
    const char *into_dir;
    prefix_cache prefixes;
    const char *source;
    size_t counts[KVZ_ENTRY_OUTCOMES], artifacts_added, repaired, recut, newer_cut, bad, other_bytes;
    int into_failed; /* a write into DIR failed: DIR's fault (a damaged DIR), not the source's */
    name_set *names; /* --prune: every source document's name, else NULL */
    content_winners winners; /* several sources: the content each name goes to */
    int pass;                /* merge_pass: this one's documents only */
    int quiet;
    future_dates future; /* of the sources' forms written (added, or taking a name) */
} merge_ctx;

/* DIR is made when the first sound artifact is written into it: a merge of
 * sources whose every document is damaged makes no store. */
static int merge_destination(merge_ctx *m)
{
    return m->into ? KVZ_OK : kvz_store_open(&m->into, m->into_dir, KVZ_STORE_CREATE);
}

/* One configuration's artifacts into DIR, every segment verified before any is
 * written (a damaged one writes nothing of it, nor makes DIR). `losing`: the
 * document loses to DIR's under its name, and its artifacts only mend damaged
 * copies DIR holds (another document of DIR may use them). */
static int merge_artifacts(merge_ctx *m, const char *doc, const kvz_doc_entry *e, int losing)
{
    kvz_artifact *segments = calloc(e->n_segments ? e->n_segments : 1, sizeof *segments);
    if (!segments)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int rc = KVZ_OK;
    for (uint32_t s = 0; s < e->n_segments && rc == KVZ_OK; s++)
        rc = get_artifact(m->t, e->artifact_ids[s], doc, &segments[s]);
    for (uint32_t s = 0; s < e->n_segments && rc == KVZ_OK; s++) {
        const kvz_artifact *a = &segments[s];
        kvz_artifact prefix;
        int first = 0;
        kvz_artifact_outcome o = KVZ_ARTIFACT_PRESENT;
        if (losing && !m->into) /* beaten by another source's content: DIR holds nothing to mend */
            continue;
        if (losing) { /* no prefix either: marked as brought, a winning document's would be left out */
            rc = kvz_transfer_artifact(m->into, e->artifact_ids[s], a->data, a->size, KVZ_TRANSFER_HELD_ONLY, &o);
            m->into_failed = rc != KVZ_OK;
            m->artifacts_added += rc == KVZ_OK && o == KVZ_ARTIFACT_REPAIRED; /* written, as unpack counts */
            m->repaired += rc == KVZ_OK && o == KVZ_ARTIFACT_REPAIRED;
            m->other_bytes += rc == KVZ_OK && o == KVZ_ARTIFACT_OTHER_BYTES;
            continue;
        }
        rc = first_prefix(&m->prefixes, m->t, a, doc, &prefix, &first);
        if (rc != KVZ_OK)
            break; /* the source's prefix */
        rc = merge_destination(m);
        if (rc == KVZ_OK && first)
            rc = kvz_transfer_prefix(m->into, &prefix, 0, &o);
        m->repaired += o == KVZ_ARTIFACT_REPAIRED;
        if (rc == KVZ_OK)
            rc = kvz_transfer_artifact(m->into, e->artifact_ids[s], a->data, a->size, KVZ_TRANSFER_WHOLE_FORM, &o);
        m->into_failed = rc != KVZ_OK;
        m->artifacts_added += rc == KVZ_OK && o != KVZ_ARTIFACT_PRESENT && o != KVZ_ARTIFACT_OTHER_BYTES &&
                              o != KVZ_ARTIFACT_NEWER_CUT;
        m->other_bytes += rc == KVZ_OK && o == KVZ_ARTIFACT_OTHER_BYTES;
        m->repaired += rc == KVZ_OK && o == KVZ_ARTIFACT_REPAIRED;
        m->recut += rc == KVZ_OK && o == KVZ_ARTIFACT_RECUT;
        m->newer_cut += rc == KVZ_OK && o == KVZ_ARTIFACT_NEWER_CUT;
    }
    free(segments);
    return rc;
}

/* Several sources: the pass that copies a document. 1: the newest copy of
 * the content that wins its name over the sources; 2: its other copies
 * (their forms join it); 3: what another source's content beats. Each is
 * still decided against DIR as it comes, so the order only spares writing
 * what then loses (its artifacts would wait for gc), and a winner damaged
 * in all its forms leaves the name to the content it beat. */
static int merge_pass(const merge_ctx *m, const char *doc, const kvz_doc_record *rec)
{
    if (!rec->n_entries || !m->winners.n)
        return 1;
    kvz_content_stamp mine;
    uint64_t newest;
    kvz_content_stamp_of(rec, &mine);
    if (content_winners_judge(&m->winners, doc, &mine, &newest))
        return 3;
    return newest > mine.newest ? 2 : 1;
}

/* A source document: its configurations' artifacts, then the document whole
 * (less the configurations whose artifacts are damaged); of a document whose
 * content loses to DIR's under the name, no configuration (its artifacts
 * only mend DIR's damaged copies). */
static int merge_doc(void *ctx, const char *doc, kvz_doc_record *rec)
{
    merge_ctx *m = ctx;
    if (merge_pass(m, doc, rec) != m->pass)
        return KVZ_OK;
    if (m->names)
        KVZ_TRY(name_set_add(m->names, doc));
    int loses = 0;
    if (m->into)
        KVZ_TRY(kvz_transfer_loses(m->into, doc, rec, &loses));
    uint32_t good = 0;
    for (uint32_t i = 0; i < rec->n_entries; i++) {
        int rc = merge_artifacts(m, doc, &rec->entries[i], loses);
        if (rc == KVZ_ERR_FORMAT && !m->into_failed) { /* a damaged source document: report it, merge the rest */
            fprintf(stderr, "kvz merge: %s: skipped: %s\n", m->source, kvz_last_error());
            m->bad++;
        } else if (rc != KVZ_OK) {
            return rc;
        } else if (good++ != i) { /* the record is the scan's, freed after this call */
            kvz_doc_entry kept = rec->entries[good - 1];
            rec->entries[good - 1] = rec->entries[i];
            rec->entries[i] = kept;
        }
    }
    if (loses)
        m->counts[KVZ_ENTRY_KEPT_NEWER] += good;
    if (loses && good && !m->quiet)
        say_left_alone("merge", doc, m->source, loses);
    if (loses || !good)
        return KVZ_OK;
    kvz_doc_record merged = *rec;
    merged.n_entries = good;
    return put_document(m->into, doc, &merged, m->counts, "merge", m->quiet ? NULL : m->source, &m->future);
}

static int offer_content(void *ctx, const char *doc, kvz_doc_record *rec)
{
    kvz_content_stamp stamp;
    kvz_content_stamp_of(rec, &stamp);
    return rec->n_entries ? content_winners_offer(ctx, doc, &stamp) : KVZ_OK;
}

/* Every document of a source, offered for its name. A record that does not
 * decode is left to the merge itself to report. */
static int offer_contents(content_winners *w, const char *source)
{
    kvz_store *src = NULL;
    kvz_store_txn *t = NULL;
    int rc = kvz_store_open(&src, source, KVZ_STORE_READONLY);
    if (rc == KVZ_OK)
        rc = kvz_store_read_begin(src, &t);
    if (rc == KVZ_OK)
        rc = kvz_scan_documents(t, offer_content, w);
    kvz_store_read_end(t);
    kvz_store_close(src);
    if (rc == KVZ_ERR_FORMAT)
        kvz_error_clear(); /* the source's other documents merge as they come */
    return rc == KVZ_ERR_FORMAT ? KVZ_OK : rc;
}

int cmd_merge(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz merge SRC_STORE... --into DIR [--prune] [--quiet]\n"
        "\n"
        "Copies every compiled document of the source stores (for example the shards\n"
        "of `kvz compile --shard i/N`) into DIR (created if missing, unless every\n"
        "source document is damaged). Ids are content addresses, so what DIR has is\n"
        "skipped and merging again writes nothing; merging shards gives the store a\n"
        "single compile would have (up to roundings: shards compiled on another CPU or\n"
        "thread count hold other bytes under the same ids; DIR's are kept, and how many\n"
        "differed is said). Every artifact is verified before it is written;\n"
        "a document is written after its artifacts. A damaged form of a document in a\n"
        "source is reported and skipped (exit status 4), its sound forms merged; content\n"
        "a whole damaged document would have replaced under its name is merged instead.\n"
        "When a name holds other content in two places, the newer compile wins, for\n"
        "the whole document (all its forms; at equal times the larger content hash, so\n"
        "two stores give the same documents in either order, DIR or a source); each name\n"
        "so replaced or left alone is said on stderr, and of a document that loses\n"
        "nothing is copied. A damaged artifact in DIR that a source holds sound is\n"
        "replaced.\n"
        "\n"
        "  --prune  then remove from DIR the documents none of the sources holds, and\n"
        "           what only they used (as `kvz rm`): for a DIR the sources fill whole,\n"
        "           such as every shard of a nightly `compile --shard I/N --prune`, so\n"
        "           that what was deleted from the corpus leaves DIR too. Not done after\n"
        "           a damaged source document, when the sources hold no documents at\n"
        "           all (exit 7), or while another process writes to DIR (exit 3); the\n"
        "           merge itself is done then\n"
        "  --quiet  print nothing but errors\n";
    ship_args a;
    int rc = parse_ship(argc, argv, help, " into quiet prune ", &a);
    if (rc == KVZ_EXIT_OK && (!a.into || optind >= argc))
        rc = usage_error(argv[0], "give one or more source stores and --into DIR");
    if (rc)
        return parse_failed(&a, rc);
    merge_ctx m = {0};
    m.quiet = a.quiet;
    name_set names = {0};
    if (a.prune)
        m.names = &names;
    /* every source opened before the destination is made: a missing one makes no store */
    int st = KVZ_OK;
    for (int i = optind; i < argc && st == KVZ_OK; i++) {
        kvz_store *src = NULL;
        st = kvz_store_open(&src, argv[i], KVZ_STORE_READONLY);
        kvz_store_close(src);
    }
    for (int i = optind; i < argc && st == KVZ_OK && argc - optind > 1; i++)
        st = offer_contents(&m.winners, argv[i]);
    content_winners_settle(&m.winners);
    m.into_dir = a.into;
    if (st == KVZ_OK && (st = kvz_store_open(&m.into, a.into, 0)) == KVZ_ERR_NOT_FOUND) {
        kvz_error_clear(); /* made at the first write (merge_destination) */
        st = KVZ_OK;
    }
    char into_real[PATH_MAX] = "";
    if (st == KVZ_OK && !realpath(a.into, into_real))
        into_real[0] = '\0';
    for (m.pass = 1; m.pass <= (m.winners.n ? 3 : 1) && st == KVZ_OK; m.pass++) {
        for (int i = optind; i < argc && st == KVZ_OK; i++) {
            char real[PATH_MAX];
            if (realpath(argv[i], real) && strcmp(real, into_real) == 0) {
                st = kvz_errorf(KVZ_ERR_ARG, "'%s' is the destination itself", argv[i]);
                break;
            }
            kvz_store *src = NULL;
            m.source = argv[i];
            m.prefixes.n = 0; /* each source's own copy of a prefix is checked: a damaged one is its damage */
            st = kvz_store_open(&src, argv[i], KVZ_STORE_READONLY);
            if (st == KVZ_OK)
                st = kvz_store_read_begin(src, &m.t);
            if (st == KVZ_OK)
                st = kvz_scan_documents(m.t, merge_doc, &m);
            kvz_store_read_end(m.t);
            m.t = NULL;
            kvz_store_close(src);
        }
    }
    if (st == KVZ_OK && !m.bad) /* sources of no documents: DIR is still made, empty */
        st = merge_destination(&m);
    int made = m.into != NULL;
    kvz_store_close(m.into);
    content_winners_free(&m.winners);
    free(m.prefixes.keys);
    free(a.docs);
    store_collect_report pruned = {0};
    if (st == KVZ_OK && a.prune && m.bad)
        fprintf(stderr, "kvz merge: nothing pruned: a source had damaged documents\n");
    else if (st == KVZ_OK && a.prune)
        st = prune_to(a.into, &names, "the sources hold", "merge --prune", a.quiet, &pruned);
    name_set_free(&names);
    if (st != KVZ_OK)
        return cli_fail("merge", st);
    if (!a.quiet) {
        printf("merged %d store(s) into %s: %zu form(s) added, %zu already there, %zu replaced older "
               "content, %zu left alone (DIR's or another source's content wins); %zu artifact(s) written; %zu damaged skipped",
               argc - optind, a.into, m.counts[KVZ_ENTRY_ADDED], m.counts[KVZ_ENTRY_PRESENT],
               m.counts[KVZ_ENTRY_REPLACED] + m.counts[KVZ_ENTRY_CUT_REPLACED],
               m.counts[KVZ_ENTRY_KEPT_NEWER] + m.counts[KVZ_ENTRY_CUT_KEPT], m.artifacts_added, m.bad);
        if (m.repaired)
            printf("; %zu damaged artifact(s) replaced by a good copy", m.repaired);
        if (m.recut)
            printf("; %zu artifact(s) of another cut of their document replaced by the later cut", m.recut);
        if (m.newer_cut)
            printf("; %zu artifact(s) of another cut of their document, the later cut, kept", m.newer_cut);
        if (a.prune && !m.bad)
            printf("; %zu document(s) pruned, %.1f KB that no document used freed", pruned.documents,
                   pruned.bytes / 1024.0);
        if (!made)
            printf("; no store made at %s: nothing sound to write", a.into);
        printf("\n");
        say_other_bytes(m.other_bytes, "the sources'");
        future_dates_say(&m.future, "merge", "the sources");
    }
    return m.bad ? cli_exit_code(KVZ_ERR_FORMAT) : KVZ_EXIT_OK;
}

/* ---- export / import -------------------------------------------------------- */

int cmd_export(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz export --store DIR DOCUMENT -o FILE.kvz [--config N|ID] [--segment K]\n"
        "\n"
        "Writes one compiled artifact to a file (format/SPEC.md), which appears only\n"
        "when complete, as pack's does. Its manifest names the document exported:\n"
        "documents of the same content share one artifact in the store, which names\n"
        "the first of them; `kvz import` files the artifact under the name it holds.\n"
        "--config picks the document's configuration by its number or id as `kvz ls`\n"
        "shows them (default: the newest, the one kvz query loads when one model\n"
        "compiled them all); a document of several segments needs --segment K\n"
        "(1-based) for each, or `kvz pack`, which carries whole documents and their\n"
        "shared prefix.\n"
        "\n"
        "  -o, --output FILE  the artifact file (- or /dev/stdout: standard output)\n"
        "  --quiet            print nothing but errors\n";
    ship_args a;
    int rc = parse_ship(argc, argv, help, " store output config segment quiet ", &a);
    if (rc == KVZ_EXIT_OK && (!a.store || !a.output || optind != argc - 1))
        rc = usage_error(argv[0], "give --store DIR, one DOCUMENT and -o FILE");
    if (rc)
        return parse_failed(&a, rc);
    const char *doc = argv[optind];
    kvz_store *s = NULL;
    kvz_store_txn *t = NULL;
    kvz_doc_record rec = {0};
    const void *val;
    size_t len;
    int st = kvz_store_open(&s, a.store, KVZ_STORE_READONLY);
    if (st == KVZ_OK)
        st = kvz_store_read_begin(s, &t);
    if (st == KVZ_OK && (st = kvz_store_get(t, KVZ_DB_DOCS, doc, strlen(doc), &val, &len)) == KVZ_ERR_NOT_FOUND)
        st = kvz_document_missing(t, doc, a.store, "");
    if (st == KVZ_OK)
        st = kvz_doc_record_decode(val, len, &rec);
    const kvz_doc_entry *e = NULL;
    if (st == KVZ_OK)
        st = kvz_doc_record_pick(&rec, &a.config, NULL, doc, &e);
    if (st == KVZ_OK && !a.segment && e->n_segments > 1)
        st = kvz_errorf(KVZ_ERR_ARG, "'%s' has %u segments: export each with --segment K (1..%u), or use kvz pack",
                        doc, e->n_segments, e->n_segments);
    else if (st == KVZ_OK && a.segment > (long)e->n_segments)
        st = kvz_errorf(KVZ_ERR_NOT_FOUND, "'%s' has %u segment(s); there is no --segment %ld", doc, e->n_segments,
                        a.segment);
    kvz_artifact art;
    uint8_t *renamed = NULL;
    const void *bytes = NULL;
    size_t size = 0;
    if (st == KVZ_OK)
        st = get_artifact(t, e->artifact_ids[a.segment ? a.segment - 1 : 0], doc, &art);
    if (st == KVZ_OK)
        /* named as exported: the store keeps one artifact for every document of its content, naming
         * the first compiled, and import files it under the name it holds (another's, removed or private) */
        st = kvz_artifact_for_document(&art, doc, &bytes, &size, &renamed);
    if (st == KVZ_OK)
        st = kvz_atomic_file_put(a.output, bytes, size);
    if (st == KVZ_OK && !a.quiet) {
        char shown[CLI_SHOWN_MAX], shown_output[CLI_SHOWN_MAX];
        fprintf(cli_report_stream(a.output), "%s: %s, segment %u of %u, %zu bytes -> %s\n",
                cli_shown(shown, doc, strlen(doc)), e->summary, art.manifest.segment + 1, art.manifest.n_segments,
                size, cli_shown(shown_output, a.output, strlen(a.output)));
    }
    free(renamed);
    kvz_doc_record_free(&rec);
    kvz_store_read_end(t);
    kvz_store_close(s);
    free(a.docs);
    return st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("export", st);
}

typedef struct import_ctx {
    kvz_store *store;
    const char *model_path;
    kvz_model_identity id; /* read from the file (no weights loaded) */
    kvz_model *model;       /* loaded on demand, for the compiler */
    kvz_compiler *compiler; /* made on demand to write the model's shared prefix */
    int allow_mismatch, quiet;
    struct aside_need *aside; /* other models' artifacts and the prefixes they need (pass 1) */
    size_t n_aside, cap_aside;
    struct import_piece *pieces; /* every file's document and segment (pass 1), in the order they are filed */
    size_t n_pieces, cap_pieces;
    future_dates future; /* of the forms filed (added, or taking a name) */
} import_ctx;

typedef struct import_piece {
    int arg; /* the file's place among the arguments */
    char *doc_name;
    uint8_t doc_hash[16];
    uint64_t config_id;
    uint32_t segment, n_segments;
    uint64_t created;
    uint64_t form_newest; /* the newest time of its form's pieces among the files */
    int form_whole;       /* every segment of its form is among the files */
} import_piece;

static int import_piece_add(import_ctx *c, const kvz_manifest *m, int arg)
{
    import_piece *grown = kvz_grow(c->pieces, &c->cap_pieces, c->n_pieces, sizeof *grown);
    if (!grown)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    c->pieces = grown;
    import_piece *p = &c->pieces[c->n_pieces];
    *p = (import_piece){.arg = arg, .config_id = kvz_config_id(m->config), .segment = m->segment,
                        .n_segments = m->n_segments, .created = m->created};
    memcpy(p->doc_hash, m->doc_hash, 16);
    if (!(p->doc_name = strdup(m->doc_name)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    c->n_pieces++;
    return KVZ_OK;
}

static int same_form(const import_piece *x, const import_piece *y)
{
    return strcmp(x->doc_name, y->doc_name) == 0 && memcmp(x->doc_hash, y->doc_hash, 16) == 0 &&
           x->config_id == y->config_id;
}

static int by_form_segment(const void *a, const void *b)
{
    const import_piece *x = a, *y = b;
    int o = strcmp(x->doc_name, y->doc_name);
    if (!o)
        o = memcmp(x->doc_hash, y->doc_hash, 16);
    if (!o && x->config_id != y->config_id)
        o = x->config_id < y->config_id ? -1 : 1;
    return o ? o : x->segment < y->segment ? -1 : x->segment > y->segment;
}

/* The newest forms first, each form's segments together: a form is filed
 * against the store's content as it comes, so the content that wins a name
 * arrives before what it beats (which then loses, unwritten) and a content's
 * older forms join it instead of losing to content compiled between them. */
static int by_newest_form(const void *a, const void *b)
{
    const import_piece *x = a, *y = b;
    if (x->form_newest != y->form_newest)
        return x->form_newest > y->form_newest ? -1 : 1;
    return by_form_segment(a, b);
}

/* After pass 1: each piece's form measured (its newest time, whether whole
 * among the files), and the pieces in the order they are filed. */
static void import_order(import_ctx *c)
{
    if (!c->n_pieces)
        return;
    qsort(c->pieces, c->n_pieces, sizeof *c->pieces, by_form_segment);
    for (size_t i = 0, end; i < c->n_pieces; i = end) {
        uint64_t newest = 0;
        uint32_t segments = 0;
        for (end = i; end < c->n_pieces && same_form(&c->pieces[i], &c->pieces[end]); end++) {
            newest = c->pieces[end].created > newest ? c->pieces[end].created : newest;
            segments += end == i || c->pieces[end].segment != c->pieces[end - 1].segment; /* a file given twice: once */
        }
        for (size_t k = i; k < end; k++)
            c->pieces[k].form_newest = newest, c->pieces[k].form_whole = segments == c->pieces[i].n_segments;
    }
    qsort(c->pieces, c->n_pieces, sizeof *c->pieces, by_newest_form);
}

typedef struct aside_need {
    char prefix_key[64];
    uint64_t fingerprint;
    char *doc_name;
    const char *path;
} aside_need;

static int other_model_prefix_missing(const char *doc_name, uint64_t fingerprint)
{
    return kvz_errorf(KVZ_ERR_MODEL_MISMATCH, "'%s' was compiled by another model (fingerprint %016llx) whose "
                      "shared prompt prefix the store lacks, and only that model can make it: import it with "
                      "that model (--model), or move the document in a bundle (kvz pack/unpack), which carries "
                      "the prefix", doc_name, (unsigned long long)fingerprint);
}

/* The model's weights, loaded the first prefix that must be computed: the
 * file pass 1 read the identity of (it may have changed since). */
static int import_load_model(import_ctx *c)
{
    kvz_model_config mc = {.backend = {.device = KVZ_DEVICE_CPU}};
    KVZ_TRY(kvz_model_load(&c->model, c->model_path, &mc));
    kvz_model_identity now;
    kvz_model_identity_of(c->model, &now);
    if (now.fingerprint != c->id.fingerprint)
        return kvz_errorf(KVZ_ERR_MODEL_MISMATCH, "%s changed during the import (fingerprint %016llx, was "
                          "%016llx): give the model the artifacts were compiled with", c->model_path,
                          (unsigned long long)now.fingerprint, (unsigned long long)c->id.fingerprint);
    return KVZ_OK;
}

/* The shared prompt prefix an artifact was compiled after, in the store:
 * computed when missing, for this model's artifacts only. Another model's
 * (stored aside) need theirs there already, as a bundle brings it: without it
 * the document could be loaded by no model and kvz verify would refuse. */
static int ensure_prefix(import_ctx *c, const kvz_manifest *m)
{
    kvz_store_txn *t;
    const void *val;
    size_t len;
    char key[64];
    kvz_prefix_key(m->model.fingerprint, m->prefix_hash, key);
    KVZ_TRY(kvz_store_read_begin(c->store, &t));
    int rc = kvz_store_get(t, KVZ_DB_META, key, strlen(key), &val, &len);
    kvz_store_read_end(t);
    if (rc != KVZ_ERR_NOT_FOUND)
        return rc;
    if (m->model.fingerprint != c->id.fingerprint) /* the file changed since pass 1 */
        return other_model_prefix_missing(m->doc_name, m->model.fingerprint);
    kvz_compile_opts o; /* only the prefix is written: no scoring pass, no reserve to fit in the context */
    kvz_compile_opts_default(&o);
    o.sel.method = KVZ_METHOD_RECENT;
    o.reserve = 0;
    uint64_t have = 0;
    if (!c->model)
        KVZ_TRY(import_load_model(c));
    if (!c->compiler)
        KVZ_TRY(kvz_compiler_new(&c->compiler, c->model, c->store, &o));
    KVZ_TRY(kvz_compiler_store_prefix(c->compiler, &have));
    if (have != m->prefix_hash)
        return kvz_errorf(KVZ_ERR_MODEL_MISMATCH, "'%s' was compiled after another prompt prefix (%016llx) than "
                          "this model's template gives (%016llx)", m->doc_name, (unsigned long long)m->prefix_hash,
                          (unsigned long long)have);
    return KVZ_OK;
}

/* When every segment of the artifact's document is in the store, file the document.
 * `whole`: every segment of its form is among this import's files (one cut). */
static int import_entry(import_ctx *c, const kvz_manifest *m, int whole, int *complete, kvz_entry_outcome *o,
                        uint64_t *form_created)
{
    kvz_doc_entry e = {.config_id = kvz_config_id(m->config), .model_fingerprint = m->model.fingerprint,
                       .n_segments = m->n_segments};
    snprintf(e.summary, sizeof e.summary, "%s", m->summary[0] ? m->summary : m->method);
    e.artifact_ids = calloc(m->n_segments, 16);
    kvz_store_txn *t = NULL;
    int rc = e.artifact_ids ? kvz_store_read_begin(c->store, &t) : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    *complete = 1;
    int cuts[KVZ_CUT_ERAS] = {0}; /* segments written by a kvz of each way of cutting (SPEC.md §8) */
    for (uint32_t s = 0; s < m->n_segments && rc == KVZ_OK && *complete; s++) {
        kvz_artifact_id(m->config, m->doc_hash, s, m->n_segments, e.artifact_ids[s]);
        const void *val;
        size_t len;
        kvz_artifact seg;
        int got = kvz_store_get(t, KVZ_DB_ARTIFACTS, e.artifact_ids[s], 16, &val, &len);
        if (got == KVZ_ERR_NOT_FOUND)
            *complete = 0;
        else if ((rc = got) == KVZ_OK && (rc = kvz_artifact_open(&seg, val, len)) == KVZ_OK &&
                 (rc = kvz_transfer_check_key(&seg, 0, e.artifact_ids[s], 16)) == KVZ_OK) {
            e.n_tokens += seg.manifest.n_tokens;
            e.stored_bytes += len;
            cuts[kvz_manifest_cut_era(&seg.manifest)]++;
            e.created = seg.manifest.created > e.created ? seg.manifest.created : e.created;
        }
    }
    kvz_store_read_end(t);
    /* the store may hold this segment from an earlier compile of the same form: the later time */
    e.created = m->created > e.created ? m->created : e.created;
    /* segments cut by kvz of two ways of cutting, imported apart: possibly of two cuts, whose
     * tokens would add up all the same (a whole form's other cut in the store was replaced) */
    int eras = 0;
    for (int k = 0; k < KVZ_CUT_ERAS; k++)
        eras += cuts[k] > 0;
    if (rc == KVZ_OK && *complete && !whole && eras > 1)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "its segments were written by versions of kvz that cut documents "
                        "otherwise (before 0.3.3, before 0.3.11, since), under the same ids: import every "
                        "segment from one compile");
    if (rc == KVZ_OK && *complete)
        rc = kvz_transfer_entry(c->store, m->doc_name, m->doc_hash, &e, o);
    *form_created = e.created;
    free(e.artifact_ids);
    return rc;
}

/* A record of the content of `m` with the one entry `e`: what a file's form
 * claims its name with (kvz_transfer_loses). */
static kvz_doc_record one_form(const kvz_manifest *m, kvz_doc_entry *e)
{
    kvz_doc_record r = {.n_entries = 1, .entries = e};
    memcpy(r.doc_hash, m->doc_hash, 16);
    return r;
}

/* Read and check an artifact file for import; *data (freed by the caller) holds it. */
static int import_read(const import_ctx *c, const char *path, char **data, size_t *size, kvz_artifact *a)
{
    uint8_t *bytes;
    KVZ_TRY(kvz_artifact_read(path, &bytes, size)); /* no further than its header's size: a pipe may not end */
    *data = (char *)bytes;
    int rc = kvz_transfer_check(*data, *size, a);
    const kvz_manifest *m = &a->manifest;
    if (rc == KVZ_OK && strcmp(m->method, "prefix") == 0)
        rc = kvz_errorf(KVZ_ERR_ARG, "a shared prefix is not a document (it travels in bundles)");
    else if (rc == KVZ_OK && !m->config[0])
        rc = kvz_errorf(KVZ_ERR_UNSUPPORTED, "the artifact does not record its compile configuration (written by "
                        "%s): recompile the document, or move it with kvz pack/unpack", m->compiler);
    if (rc == KVZ_OK && !c->allow_mismatch)
        rc = kvz_artifact_check_model(a, NULL, &c->id); /* import files it under the manifest's name */
    return rc;
}

/* Pass 1 of import: every file checked before the store is opened, so that
 * a bad one leaves no store made for nothing. What cannot be read twice (a
 * pipe, /dev/stdin) is kept in *kept for pass 2; a file is read again there. */
static int import_check(import_ctx *c, const char *path, int arg, char **kept, size_t *kept_size)
{
    char *data = NULL;
    size_t size = 0;
    kvz_artifact a;
    struct stat st;
    int rc = import_read(c, path, &data, &size, &a);
    const kvz_manifest *m = &a.manifest;
    if (rc == KVZ_OK)
        rc = import_piece_add(c, m, arg);
    if (rc == KVZ_OK && m->model.fingerprint != c->id.fingerprint) { /* set aside: see aside_check */
        aside_need *grown = kvz_grow(c->aside, &c->cap_aside, c->n_aside, sizeof *c->aside);
        if (grown) /* at once: the old block may be gone */
            c->aside = grown;
        char *name = grown ? strdup(m->doc_name) : NULL;
        if (name) {
            aside_need *need = &c->aside[c->n_aside++];
            kvz_prefix_key(m->model.fingerprint, m->prefix_hash, need->prefix_key);
            need->fingerprint = m->model.fingerprint;
            need->doc_name = name;
            need->path = path;
        } else {
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        }
    }
    if (rc == KVZ_OK && !(stat(path, &st) == 0 && S_ISREG(st.st_mode))) {
        *kept = data, *kept_size = size;
        return KVZ_OK;
    }
    free(data);
    return rc == KVZ_OK ? KVZ_OK : kvz_error_context(rc, "%s", path);
}

/* Between the passes, before the store is created or written: every artifact
 * of another model needs that model's shared prefix in the store already. */
static int aside_check(const import_ctx *c, const char *dir)
{
    if (c->n_aside == 0)
        return KVZ_OK;
    kvz_store *s = NULL;
    kvz_store_txn *t = NULL;
    int rc = kvz_store_open(&s, dir, KVZ_STORE_READONLY);
    if (rc == KVZ_OK)
        rc = kvz_store_read_begin(s, &t);
    const aside_need *lacking = rc == KVZ_ERR_NOT_FOUND ? &c->aside[0] : NULL; /* no store yet */
    for (size_t i = 0; i < c->n_aside && rc == KVZ_OK; i++) {
        const void *val;
        size_t len;
        rc = kvz_store_get(t, KVZ_DB_META, c->aside[i].prefix_key, strlen(c->aside[i].prefix_key), &val, &len);
        if (rc == KVZ_ERR_NOT_FOUND)
            lacking = &c->aside[i];
    }
    if (t)
        kvz_store_read_end(t);
    kvz_store_close(s);
    if (lacking)
        rc = kvz_error_context(other_model_prefix_missing(lacking->doc_name, lacking->fingerprint), "%s",
                               lacking->path);
    return rc;
}

/* data: pass 1's bytes when it kept them (then owned here), else NULL;
 * `piece`: what pass 1 found in the file */
static int import_file(import_ctx *c, const char *path, const import_piece *piece, char *data, size_t size)
{
    kvz_artifact a;
    int rc = data ? kvz_transfer_check(data, size, &a)
                  : import_read(c, path, &data, &size, &a); /* again: the file may have changed */
    const kvz_manifest *m = &a.manifest;
    uint8_t id[16];
    int complete = 0, loses = 0;
    kvz_artifact_outcome o = KVZ_ARTIFACT_PRESENT;
    kvz_entry_outcome filed = KVZ_ENTRY_ADDED;
    /* other content under the name, compiled later, stays: nothing to add (nor
     * its prefix to compute). Known for a form whose every segment is among the
     * files (each decided at the form's newest time, as it is filed), or of one
     * segment: each segment of a compile has its own time, the form's the latest */
    kvz_doc_entry alone = {.created = m->created};
    int whole = rc == KVZ_OK && piece->form_whole && piece->config_id == kvz_config_id(m->config) &&
                memcmp(piece->doc_hash, m->doc_hash, 16) == 0; /* as pass 1 read it */
    if (whole)
        alone.created = piece->form_newest > alone.created ? piece->form_newest : alone.created;
    else if (m->n_segments > 1)
        alone.created = 0; /* not known */
    if (rc == KVZ_OK && alone.created) {
        kvz_doc_record r = one_form(m, &alone);
        rc = kvz_transfer_loses(c->store, m->doc_name, &r, &loses);
    }
    if (rc == KVZ_OK && !loses)
        rc = ensure_prefix(c, m);
    if (rc == KVZ_OK) {
        kvz_artifact_id(m->config, m->doc_hash, m->segment, m->n_segments, id);
        rc = kvz_transfer_artifact(c->store, id, data, size, /* losing: mends, adds none */
                                   loses ? KVZ_TRANSFER_HELD_ONLY : whole ? KVZ_TRANSFER_WHOLE_FORM : 0, &o);
    }
    uint64_t form_created = 0;
    if (rc == KVZ_OK && !loses)
        rc = import_entry(c, m, whole, &complete, &filed, &form_created);
    if (rc == KVZ_OK && complete && filed == KVZ_ENTRY_KEPT_NEWER) {
        kvz_doc_entry form = {.created = form_created};
        kvz_doc_record r = one_form(m, &form);
        loses = stays_why(c->store, m->doc_name, &r);
    }
    if (rc == KVZ_OK && complete && entry_written(filed))
        future_dates_add(&c->future, form_created);
    char shown[CLI_SHOWN_MAX];
    if (rc == KVZ_OK && !c->quiet && loses)
        printf("%s: %s segment %u of %u (%s): left alone, the store holds other content under the name, compiled "
               "%s%s\n", path, cli_shown(shown, m->doc_name, strlen(m->doc_name)), m->segment + 1, m->n_segments,
               m->summary[0] ? m->summary : m->method,
               loses == KVZ_STAYS_SAME_TIME ? "at the same time (the content hashes decide)" : "later",
               o == KVZ_ARTIFACT_REPAIRED ? " (its artifact mended a damaged copy another document uses)" : "");
    else if (rc == KVZ_OK && !c->quiet && complete && filed == KVZ_ENTRY_CUT_KEPT)
        printf("%s: %s segment %u of %u (%s): left alone, the store holds this form cut into other segments by "
               "another kvz, compiled later\n", path, cli_shown(shown, m->doc_name, strlen(m->doc_name)), m->segment + 1,
               m->n_segments, m->summary[0] ? m->summary : m->method);
    else if (rc == KVZ_OK && !c->quiet)
        printf("%s: %s segment %u of %u (%s)%s%s\n", path, cli_shown(shown, m->doc_name, strlen(m->doc_name)),
               m->segment + 1, m->n_segments,
               m->summary[0] ? m->summary : m->method,
               o == KVZ_ARTIFACT_ADDED     ? ""
               : o == KVZ_ARTIFACT_PRESENT ? ", already in the store"
               : o == KVZ_ARTIFACT_OTHER_BYTES
                   ? ", already in the store with other bytes (the same compile run twice: at another time, on "
                     "another machine; or another document name in the manifest): the store's kept"
               : o == KVZ_ARTIFACT_RECUT   ? ", replacing the store's segment of another cut of the document "
                                             "(the earlier cut)"
               : o == KVZ_ARTIFACT_NEWER_CUT ? ", already in the store as a segment of another cut of the document, "
                                               "the later cut: the store's kept"
                                           : ", replacing a damaged copy in the store",
               !complete                        ? "; the document appears when all its segments are imported"
               : filed == KVZ_ENTRY_REPLACED ? "; it replaced the other content under the name (compiled earlier, "
                                               "or at the same time with a smaller content hash)"
               : filed == KVZ_ENTRY_CUT_REPLACED ? "; it replaced this form cut into other segments by another kvz, "
                                                   "compiled earlier"
                                             : "");
    free(data);
    return rc == KVZ_OK ? KVZ_OK : kvz_error_context(rc, "%s", path);
}

int cmd_import(int argc, char **argv)
{
    static const char help[] =
        "usage: kvz import FILE.kvz... --store DIR [--model PATH]\n"
        "                  [--allow-model-mismatch]\n"
        "\n"
        "Files single artifacts written by `kvz export` (or any compile) into a store\n"
        "(created if missing), under the ids a compile would give them. Each is verified\n"
        "first and must be compiled by the model; when the store lacks that model's\n"
        "shared prompt prefix, it is computed. A document appears once all of its\n"
        "segments are in; importing twice writes nothing new. The files are filed newest\n"
        "form first (each form's segments together); where the name then holds other\n"
        "content, compiled later, the artifact is left alone and said so (the newer\n"
        "compile wins, as in unpack).\n"
        "\n"
        "  -m, --model PATH        the model (default: $KVZ_MODEL, else the setup's\n"
        "                          SmolLM2)\n"
        "  --allow-model-mismatch  store another model's artifacts aside; the store must\n"
        "                          hold that model's shared prefix already (a bundle of\n"
        "                          its brings it), else exit 6\n"
        "  --quiet                 print nothing but errors\n";
    ship_args a;
    int rc = parse_ship(argc, argv, help, " store model allow-model-mismatch quiet ", &a);
    if (rc == KVZ_EXIT_OK && (!a.store || optind >= argc))
        rc = usage_error(argv[0], "give one or more FILE.kvz and --store DIR");
    if (rc)
        return parse_failed(&a, rc);
    import_ctx c = {0};
    c.allow_mismatch = a.allow_mismatch;
    c.quiet = a.quiet;
    c.model_path = cli_model_path(a.model); /* named once: the weights are loaded from it if a prefix is missing */
    int st = kvz_model_identity_read(c.model_path, &c.id);
    char **kept = calloc((size_t)argc, sizeof *kept);
    size_t *kept_size = calloc((size_t)argc, sizeof *kept_size);
    if (st == KVZ_OK && (!kept || !kept_size))
        st = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (int i = optind; i < argc && st == KVZ_OK; i++)
        st = import_check(&c, argv[i], i, &kept[i], &kept_size[i]);
    if (st == KVZ_OK)
        import_order(&c);
    if (st == KVZ_OK)
        st = aside_check(&c, a.store);
    if (st == KVZ_OK)
        st = kvz_store_open(&c.store, a.store, KVZ_STORE_CREATE);
    for (size_t k = 0; k < c.n_pieces && st == KVZ_OK; k++) {
        int i = c.pieces[k].arg;
        st = import_file(&c, argv[i], &c.pieces[k], kept[i], kept_size[i]);
        kept[i] = NULL; /* import_file took it */
    }
    if (st == KVZ_OK && !a.quiet)
        future_dates_say(&c.future, "import", "the files");
    for (int i = 0; kept && i < argc; i++)
        free(kept[i]);
    free(kept);
    free(kept_size);
    for (size_t i = 0; i < c.n_aside; i++)
        free(c.aside[i].doc_name);
    free(c.aside);
    for (size_t i = 0; i < c.n_pieces; i++)
        free(c.pieces[i].doc_name);
    free(c.pieces);
    kvz_compiler_free(c.compiler);
    kvz_store_close(c.store);
    kvz_model_free(c.model);
    free(a.docs);
    return st == KVZ_OK ? KVZ_EXIT_OK : cli_fail("import", st);
}
