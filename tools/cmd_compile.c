/* cmd_compile.c — `kvz compile`: a corpus into the store, with progress. */
#include "common/error.h"
#include "common/timer.h"
#include "compiler/compile.h"
#include "compiler/ingest.h"
#include "format/store.h"
#include "tools/cli.h"
#include "tools/store_collect.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char HELP[] =
    "usage: kvz compile PATH... --store DIR [options]\n"
    "\n"
    "Compiles documents into compressed KV-cache artifacts in an LMDB store. PATH is\n"
    "a file, a folder (recursive), an archive (.tar .tar.gz .tgz .tar.zst .tzst\n"
    ".tar.xz .txz .tar.bz2 .tbz2 .zip) or '-' for stdin. Each document is prefilled\n"
    "once after a shared prompt prefix, its key/value pairs are scored and the best\n"
    "kept, quantized and written with checksums. Compiling the same thing again\n"
    "writes nothing; an interrupted run, run again, resumes at the document where it\n"
    "stopped (without --force, which starts over; stopped by SIGINT, SIGTERM,\n"
    "SIGHUP or SIGPIPE, it says which document it was at and what the store keeps; a\n"
    "long document's segments are stored as they are done, so it goes on from the\n"
    "segment it was in; it is listed once all are). Documents longer than a\n"
    "segment (the model's context less the shared prefix and --reserve, or kvzip's\n"
    "scoring pass, ~2K tokens, when larger) are split into segments at paragraph\n"
    "boundaries (a line longer than one after a sentence, else between\n"
    "characters); `kvz query --segments` loads a run of them. In an archive, a\n"
    "hard link is a document with its target's content, a name held twice is its\n"
    "later copy (as tar -x leaves it), and symbolic links, devices and FIFOs are\n"
    "skipped (said; never a failure, even with --strict). In a folder, a link to a\n"
    "file outside it is skipped, said (a corpus from elsewhere could reach any file\n"
    "this user may read; name the file itself to compile it), and names starting\n"
    "with '.' (.git, .DS_Store) are passed over, counted (name one to compile\n"
    "it). PATHs that hold no documents (an empty or unmounted corpus, a glob that\n"
    "selects nothing) are an error: exit 7, nothing written. A file (not an archive\n"
    "member or stdin) that changes while it is compiled is skipped, nothing written\n"
    "from that read; a compile that reads it unchanged stores it, so two compiles\n"
    "into one store keep the content read last.\n"
    "\n"
    "selection:\n"
    "  --method M          kvzip (default), chunkkv, snapkv, knorm, recent, random,\n"
    "                      full (recent is StreamingLLM: the first --sinks tokens\n"
    "                      and the newest)\n"
    "  --ratio R           fraction of each document's pairs to keep (default 0.3)\n"
    "  --budget N          or: tokens to keep per head on average\n"
    "                      The prefix (system prompt + instruction) is always kept\n"
    "                      and does not count; no head is ever left without pairs.\n"
    "  --level L           kvzip: pair (one threshold over all heads, default),\n"
    "                      pair-uniform (top-k per head) or head (whole heads, scored\n"
    "                      once per model on a sample text kept in the store)\n"
    "  --budget-shape S    uniform (default), pyramid (PyramidKV, --beta, default 20)\n"
    "                      or decay (PyramidInfer, --decay top/bottom ratio, default\n"
    "                      0.2)\n"
    "  --chunk C           keep whole chunks of C tokens per layer (chunkkv: 10; with\n"
    "                      kvzip: query-agnostic ChunkKV); --reuse N shares a layer's\n"
    "                      chunks with the next N-1 layers. chunkkv keeps the\n"
    "                      window's chunks whole (up to C-1 tokens a layer beyond\n"
    "                      the budget), and the best (budget - W) / C chunks: none\n"
    "                      where the budget is under W + C (then only the window)\n"
    "  --window W          snapkv/chunkkv observation window (default 32, and 16 for\n"
    "                      a segment under 1K tokens; a W given is used for all);\n"
    "                      --pool K snapkv max-pool kernel (default 7)\n"
    "  --question TEXT     snapkv/chunkkv: score with this question instead\n"
    "                      (query-aware)\n"
    "  --kvzip-chunk N     document tokens per KVzip scoring pass (default 2048)\n"
    "  --sinks N           recent: the first N document tokens kept in every head\n"
    "                      (StreamingLLM's attention sinks; default 4, 0: none), the\n"
    "                      rest of its budget the newest tokens\n"
    "  --seed N            random: the seed of the positions kept (default 1)\n"
    "                      An option given to a method or shape it does not apply to\n"
    "                      is refused (exit 2).\n"
    "\n"
    "encoding:\n"
    "  --bits B            16, 8, 4 (default) or 2 bits per kept element\n"
    "  --key-group N       kept tokens per key quantization group (default 128)\n"
    "  --value-group N     channels per value quantization group (default 64, or\n"
    "                      the largest under it that divides the head size; given,\n"
    "                      a head's size or more is one group per head, less must\n"
    "                      divide it)\n"
    "  --fp16-tokens N     the first N document tokens stay f16 (default 4)\n"
    "  --zstd-level L      1..19 (default 9)\n"
    "\n"
    "input and run:\n"
    "  --store DIR         the store (created if missing; a folder PATH holding it\n"
    "                      is walked around it)\n"
    "  -m, --model PATH    GGUF model (default: $KVZ_MODEL, else the setup's SmolLM2)\n"
    "  --include GLOB      only matching names in folders and archives (repeatable);\n"
    "                      --exclude GLOB skips them, and archives met in a folder\n"
    "                      by their own name (paths named here are compiled; a\n"
    "                      glob matches a name or its tail after any '/')\n"
    "  --max-bytes N       skip larger documents (default 64M; K, M, G, T: 1024s)\n"
    "  --stdin-name NAME   the name of the document read from '-' (default \"stdin\"):\n"
    "                      what query --doc and the other commands call it. A name\n"
    "                      under a PATH a later --prune goes through is a file's:\n"
    "                      pruned there unless a file has that name\n"
    "  --strict            stop at the first document not compiled: empty, binary,\n"
    "                      non-UTF-8 or over --max-bytes (exit 4; skipped with a\n"
    "                      warning otherwise), or one that cannot be read (its\n"
    "                      error's status: 7 gone, 3 refused; else it fails alone)\n"
    "  --force             recompile even what the store already has\n"
    "  --prune             after a run that went through every document, remove from\n"
    "                      the store the documents under PATH... (as the globs select\n"
    "                      them) that the run did not list and whose file (or archive\n"
    "                      member) is gone or is a folder now, and what only they\n"
    "                      used (as `kvz rm`); documents of other paths, those\n"
    "                      skipped or failed this run, and those behind a link that\n"
    "                      names nothing (or a folder) now, stay. Names are the PATHs\n"
    "                      as given: prune from the same folder, with the same PATHs\n"
    "                      (or absolute ones). Needs the store to itself: while\n"
    "                      another kvz process writes to it (another shard), nothing\n"
    "                      is pruned (exit 3; run it again once that one ended).\n"
    "                      PATHs of no documents at all prune nothing (exit 7): an\n"
    "                      empty or unmounted corpus is not taken for a deleted one.\n"
    "                      With --shard, the documents of other shards stay\n"
    "  --reserve N         context tokens kept free after each segment (default 512)\n"
    "  --shard I/N         compile only the documents of shard I of N (0 <= I < N):\n"
    "                      a document's shard is a hash of its name modulo N, so\n"
    "                      every machine agrees without talking (given the same\n"
    "                      PATHs) and a document stays in its shard when it changes;\n"
    "                      `kvz merge` joins the stores (--prune there for what was\n"
    "                      deleted)\n"
    "  --json              one JSON line per document (a pruned one: status \"pruned\")\n"
    "                      and a summary line last on stdout, also when SIGINT,\n"
    "                      SIGTERM or SIGHUP stops the run once it compiles (then\n"
    "                      \"interrupted\":true and \"interrupted_at\", the document\n"
    "                      it was at, and \"seconds\" up to the document before it;\n"
    "                      none during --prune's write; SIGPIPE leaves no stdout\n"
    "                      to write it to). A run that fails before its first\n"
    "                      document (no such path, a store it cannot open) prints\n"
    "                      no line: the exit code and stderr say why. A\n"
    "                      document's \"kept_fraction\" is null where nothing was\n"
    "                      computed (unchanged, or its artifacts found stored);\n"
    "                      \"untokenized_bytes\" counts bytes the model's vocabulary\n"
    "                      has no token for (SmolLM2: six control characters and\n"
    "                      the lead bytes of planes 4-11, unassigned), left out of\n"
    "                      its artifacts as the model's own tokenizer leaves them\n"
    "                      out (null where unchanged; a \"note\" line says it too)\n"
    "  --quiet             print only skipped and failed documents, notes of text\n"
    "                      left out, and errors (no progress, no header, no totals)\n"
    "  --no-progress       no progress line (drawn only where stderr is a terminal\n"
    "                      and TERM is not \"dumb\"), nor the log's; each document's\n"
    "                      line stays\n"
    "  --progress-every S  where stderr is no such terminal (a log): a line of the\n"
    "                      counts and the ETA, S seconds at least after the last,\n"
    "                      after a document or within a long one (naming it)\n"
    "                      (default 60; 0: after every document but the last,\n"
    "                      whose totals follow, and never within one)\n"
    "  --device D, --threads N   as in `kvz generate`\n"
    "\n"
    "Memory: the model, one KV cache of the model's context (f32), activations of one\n"
    "512-token prefill chunk, the scores of one segment (layers x KV heads x tokens\n"
    "f32), the rows of the heads being encoded (a layer's; more, up to two heads per\n"
    "thread, while within 1 GiB) and the artifact being written; for SmolLM2 about\n"
    "1 GB resident at most. Address space (what ulimit -v counts) is about 1 GiB\n"
    "more: the store's map, reserved whole (KVZ_STORE_MAP_BYTES sets a new store's\n"
    "first map; it grows by itself), and OpenBLAS's buffers (128 MiB a thread\n"
    "multiplying: under a ulimit -v that leaves too little for them OpenBLAS retries\n"
    "for ever, a hang; give fewer --threads or more room).\n"
    "\n"
    "Exit status: 0 when every document was compiled, found unchanged or skipped for\n"
    "its content; 1 when some failed; other codes as in `kvz --help`.\n";

enum {
    OPT_STORE = 256, OPT_METHOD, OPT_RATIO, OPT_BUDGET, OPT_LEVEL, OPT_SHAPE, OPT_BETA, OPT_DECAY,
    OPT_CHUNK, OPT_REUSE, OPT_WINDOW, OPT_POOL, OPT_QUESTION, OPT_KVZIP_CHUNK, OPT_BITS, OPT_KGROUP,
    OPT_VGROUP, OPT_FP16, OPT_ZSTD, OPT_INCLUDE, OPT_EXCLUDE, OPT_MAX_BYTES, OPT_STRICT, OPT_FORCE,
    OPT_RESERVE, OPT_JSON, OPT_QUIET, OPT_DEVICE, OPT_THREADS, OPT_SEED, OPT_SHARD, OPT_PRUNE,
    OPT_STDIN_NAME, OPT_SINKS, OPT_NO_PROGRESS, OPT_PROGRESS_EVERY,
};

typedef struct compile_args {
    const char *store, *model;
    kvz_compile_opts opts;
    kvz_ingest_opts ingest;
    const char **include, **exclude;
    int strict, json, quiet, no_progress, device, chunk_given, ratio_given, prune;
    long threads;
    double progress_every;    /* seconds between a log's progress lines */
    uint32_t shard, n_shards; /* n_shards 0: every document */
} compile_args;

static int bad(const char *opt, const char *v)
{
    return cli_bad_value("compile", opt, v);
}

static int parse(int argc, char **argv, compile_args *a)
{
    static const struct option options[] = {
        {"store", required_argument, 0, OPT_STORE}, {"model", required_argument, 0, 'm'},
        {"method", required_argument, 0, OPT_METHOD}, {"ratio", required_argument, 0, OPT_RATIO},
        {"budget", required_argument, 0, OPT_BUDGET}, {"level", required_argument, 0, OPT_LEVEL},
        {"budget-shape", required_argument, 0, OPT_SHAPE}, {"beta", required_argument, 0, OPT_BETA},
        {"decay", required_argument, 0, OPT_DECAY}, {"chunk", required_argument, 0, OPT_CHUNK},
        {"reuse", required_argument, 0, OPT_REUSE}, {"window", required_argument, 0, OPT_WINDOW},
        {"pool", required_argument, 0, OPT_POOL}, {"question", required_argument, 0, OPT_QUESTION},
        {"kvzip-chunk", required_argument, 0, OPT_KVZIP_CHUNK}, {"bits", required_argument, 0, OPT_BITS},
        {"key-group", required_argument, 0, OPT_KGROUP}, {"value-group", required_argument, 0, OPT_VGROUP},
        {"fp16-tokens", required_argument, 0, OPT_FP16}, {"zstd-level", required_argument, 0, OPT_ZSTD},
        {"include", required_argument, 0, OPT_INCLUDE}, {"exclude", required_argument, 0, OPT_EXCLUDE},
        {"max-bytes", required_argument, 0, OPT_MAX_BYTES}, {"strict", no_argument, 0, OPT_STRICT},
        {"force", no_argument, 0, OPT_FORCE}, {"reserve", required_argument, 0, OPT_RESERVE},
        {"json", no_argument, 0, OPT_JSON}, {"quiet", no_argument, 0, OPT_QUIET},
        {"no-progress", no_argument, 0, OPT_NO_PROGRESS}, {"progress-every", required_argument, 0, OPT_PROGRESS_EVERY},
        {"device", required_argument, 0, OPT_DEVICE}, {"threads", required_argument, 0, OPT_THREADS},
        {"seed", required_argument, 0, OPT_SEED}, {"shard", required_argument, 0, OPT_SHARD},
        {"prune", no_argument, 0, OPT_PRUNE}, {"stdin-name", required_argument, 0, OPT_STDIN_NAME},
        {"sinks", required_argument, 0, OPT_SINKS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    kvz_compile_opts_default(&a->opts);
    a->device = KVZ_DEVICE_AUTO;
    a->progress_every = 60;
    a->include = calloc((size_t)argc, sizeof *a->include);
    a->exclude = calloc((size_t)argc, sizeof *a->exclude);
    long v;
    double f;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "m:h", options, NULL)) != -1) {
        switch (c) {
        case OPT_STORE: a->store = optarg; break;
        case 'm': a->model = optarg; break;
        case OPT_METHOD:
            if ((v = kvz_method_from_name(optarg)) < 0) return bad("method", optarg);
            a->opts.sel.method = (kvz_method)v;
            break;
        case OPT_RATIO:
            if (cli_parse_float(optarg, 1e-6, 1, &f)) return bad("ratio", optarg);
            a->opts.sel.ratio = (float)f;
            a->ratio_given = 1;
            break;
        case OPT_BUDGET:
            if (cli_parse_int(optarg, 1, 1 << 24, &v)) return bad("budget", optarg);
            a->opts.sel.budget = (uint32_t)v;
            break;
        case OPT_LEVEL:
            if ((v = kvz_level_from_name(optarg)) < 0) return bad("level", optarg);
            a->opts.sel.level = (kvz_level)v;
            a->opts.given |= KVZ_GIVEN_LEVEL;
            break;
        case OPT_SHAPE:
            if ((v = kvz_shape_from_name(optarg)) < 0) return bad("budget-shape", optarg);
            a->opts.sel.shape = (kvz_budget_shape)v;
            a->opts.given |= KVZ_GIVEN_SHAPE;
            break;
        case OPT_BETA:
            if (cli_parse_float(optarg, 1, 1000, &f)) return bad("beta", optarg);
            a->opts.sel.beta = (float)f;
            a->opts.given |= KVZ_GIVEN_BETA;
            break;
        case OPT_DECAY:
            if (cli_parse_float(optarg, 1e-3, 1, &f)) return bad("decay", optarg);
            a->opts.sel.decay = (float)f;
            a->opts.given |= KVZ_GIVEN_DECAY;
            break;
        case OPT_CHUNK:
            if (cli_parse_int(optarg, 1, 4096, &v)) return bad("chunk", optarg);
            a->opts.sel.chunk = (uint32_t)v;
            a->chunk_given = 1;
            break;
        case OPT_REUSE:
            if (cli_parse_int(optarg, 1, 1024, &v)) return bad("reuse", optarg);
            a->opts.sel.reuse = (uint32_t)v;
            a->opts.given |= KVZ_GIVEN_REUSE;
            break;
        case OPT_WINDOW:
            if (cli_parse_int(optarg, 1, 4096, &v)) return bad("window", optarg);
            a->opts.sel.window = (uint32_t)v;
            a->opts.given |= KVZ_GIVEN_WINDOW;
            break;
        case OPT_POOL:
            if (cli_parse_int(optarg, 1, 255, &v)) return bad("pool", optarg);
            a->opts.pool = (int32_t)v;
            a->opts.given |= KVZ_GIVEN_POOL;
            break;
        case OPT_QUESTION: a->opts.question = optarg; break;
        case OPT_KVZIP_CHUNK:
            if (cli_parse_int(optarg, 16, 1 << 16, &v)) return bad("kvzip-chunk", optarg);
            a->opts.kvzip_chunk = (int32_t)v;
            a->opts.given |= KVZ_GIVEN_KVZIP_CHUNK;
            break;
        case OPT_BITS:
            if (cli_parse_int(optarg, 2, 16, &v)) return bad("bits", optarg); /* which of them: opts_check */
            a->opts.bits = (uint32_t)v;
            break;
        case OPT_KGROUP:
            if (cli_parse_int(optarg, 1, 65536, &v)) return bad("key-group", optarg);
            a->opts.key_group = (uint32_t)v;
            break;
        case OPT_VGROUP:
            if (cli_parse_int(optarg, 1, 4096, &v)) return bad("value-group", optarg);
            a->opts.value_group = (uint32_t)v;
            a->opts.given |= KVZ_GIVEN_VALUE_GROUP;
            break;
        case OPT_FP16:
            if (cli_parse_int(optarg, 0, 1 << 20, &v)) return bad("fp16-tokens", optarg);
            a->opts.fp16_tokens = (uint32_t)v;
            break;
        case OPT_ZSTD:
            if (cli_parse_int(optarg, 1, 19, &v)) return bad("zstd-level", optarg);
            a->opts.zstd_level = (int)v;
            break;
        case OPT_RESERVE:
            if (cli_parse_int(optarg, 0, 1 << 20, &v)) return bad("reserve", optarg);
            a->opts.reserve = (int32_t)v;
            break;
        case OPT_SEED:
            if (cli_parse_int(optarg, 0, 1L << 62, &v)) return bad("seed", optarg);
            a->opts.sel.seed = (uint64_t)v;
            a->opts.given |= KVZ_GIVEN_SEED;
            break;
        case OPT_SINKS:
            if (cli_parse_int(optarg, 0, 1 << 20, &v)) return bad("sinks", optarg);
            a->opts.sel.sinks = (uint32_t)v;
            a->opts.given |= KVZ_GIVEN_SINKS;
            break;
        case OPT_SHARD: {
            unsigned i, n;
            char end;
            if (sscanf(optarg, "%u/%u%c", &i, &n, &end) != 2 || n == 0 || i >= n || n > 1u << 20)
                return bad("shard", optarg);
            a->shard = i, a->n_shards = n;
            break;
        }
        case OPT_INCLUDE: a->include[a->ingest.n_include++] = optarg; break;
        case OPT_EXCLUDE: a->exclude[a->ingest.n_exclude++] = optarg; break;
        case OPT_MAX_BYTES:
            if (cli_parse_bytes(optarg, 1, 1L << 40, &v)) return bad("max-bytes", optarg);
            a->ingest.max_bytes = (uint64_t)v;
            break;
        case OPT_STRICT: a->strict = 1; break;
        case OPT_FORCE: a->opts.force = 1; break;
        case OPT_PRUNE: a->prune = 1; break;
        case OPT_STDIN_NAME:
            if (!*optarg) return bad("stdin-name", optarg);
            a->ingest.stdin_name = optarg;
            break;
        case OPT_JSON: a->json = 1; break;
        case OPT_QUIET: a->quiet = 1; break;
        case OPT_NO_PROGRESS: a->no_progress = 1; break;
        case OPT_PROGRESS_EVERY:
            if (cli_parse_float(optarg, 0, 1e6, &a->progress_every)) return bad("progress-every", optarg);
            break;
        case OPT_DEVICE: if (cli_parse_device(optarg, &a->device)) return bad("device", optarg); break;
        case OPT_THREADS: if (cli_parse_threads(optarg, &a->threads)) return bad("threads", optarg); break;
        case 'h': fputs(HELP, stdout); return -1;
        default: return cli_bad_option(HELP, argv[0]);
        }
    }
    a->ingest.include = a->include;
    a->ingest.exclude = a->exclude;
    a->ingest.skip_folder = a->store;
    if (a->opts.sel.method == KVZ_METHOD_CHUNKKV && !a->chunk_given)
        a->opts.sel.chunk = 10;
    if (!a->store) {
        fprintf(stderr, "kvz compile: --store DIR is required\n");
        return KVZ_EXIT_USAGE;
    }
    if (optind >= argc) {
        fprintf(stderr, "kvz compile: no documents given (a file, folder, archive or '-')\n");
        return KVZ_EXIT_USAGE;
    }
    if (a->ingest.stdin_name) {
        int reads_stdin = 0;
        for (int i = optind; i < argc; i++)
            reads_stdin |= strcmp(argv[i], "-") == 0;
        if (!reads_stdin) {
            fprintf(stderr, "kvz compile: --stdin-name names the document read from '-', and no '-' was given\n");
            return KVZ_EXIT_USAGE;
        }
    }
    if (a->opts.sel.budget && a->ratio_given) {
        fprintf(stderr, "kvz compile: give --ratio or --budget, not both\n");
        return KVZ_EXIT_USAGE;
    }
    if (a->opts.sel.method == KVZ_METHOD_FULL && (a->ratio_given || a->opts.sel.budget)) {
        fprintf(stderr, "kvz compile: --method full keeps every pair: --ratio and --budget do not apply\n");
        return KVZ_EXIT_USAGE;
    }
    if (a->opts.sel.budget)
        a->opts.sel.ratio = 0;
    if (kvz_compile_opts_check(&a->opts) != KVZ_OK)
        return cli_fail("compile", KVZ_ERR_ARG);
    return KVZ_EXIT_OK;
}

/* ---- progress --------------------------------------------------------------- */

typedef struct progress {
    int columns; /* of the terminal the progress line is redrawn on; 0: none drawn */
    int quiet;
    double log_every; /* stderr no terminal: a progress line after a document this often (s); < 0: none */
    double last_log;
    size_t docs_done, docs_total;
    uint64_t bytes_done, bytes_total; /* input bytes: known before tokenizing */
    int64_t tokens_done, doc_tokens;   /* tokens of finished documents, of the current one */
    double start, last_draw;
    const char *current;
    uint64_t doc_bytes;       /* of the current document */
    uint64_t bytes_tokenized; /* of finished documents that gave tokens: bytes per token */
    int64_t doc_total;        /* the current document's tokens (0: not segmented yet) */
    int64_t doc_stored;       /* of them, in segments found stored: not computed */
    uint64_t free_bytes;      /* input of finished documents that cost nothing here: unchanged, */
    int64_t free_tokens;      /* another shard's, the share of segments found stored */
} progress;

/* "[i/N docs] T tok  R tok/s  ETA hh:mm:ss" into text; returns its length. */
static int counts_text(const progress *p, double now, char *text, size_t size)
{
    double el = now - p->start;
    int64_t tokens = p->tokens_done + p->doc_tokens;
    /* the rate and the ETA count only what this run computes: a run that
     * resumes in a long document, or after unchanged ones, finds them at once */
    double rate = el > 0 ? (double)(tokens - p->free_tokens - p->doc_stored) / el : 0;
    /* ETA from input bytes (tokens are not known before a document is read),
     * the current document's share counted as its tokens so far times the
     * bytes per token seen (4 before any): a long document after short ones
     * does not leave the share done near zero for minutes */
    double per_token = p->tokens_done > 0 ? (double)p->bytes_tokenized / (double)p->tokens_done : 4.0;
    double current = (double)p->doc_tokens * per_token;
    current = current < (double)p->doc_bytes ? current : (double)p->doc_bytes;
    double stored = 0;
    if (p->doc_total > 0) { /* segmented: its share done is known (a log is 1.5 bytes a token, not 4) */
        current = (double)p->doc_bytes * (double)p->doc_tokens / (double)p->doc_total;
        stored = (double)p->doc_bytes * (double)p->doc_stored / (double)p->doc_total;
    }
    double frac = p->bytes_total ? ((double)p->bytes_done + current) / (double)p->bytes_total : 0;
    double worked = p->bytes_total ? frac - ((double)p->free_bytes + stored) / (double)p->bytes_total : 0;
    char eta[16] = "--:--:--";
    /* after 1% of the work, or half a minute of some (a book's 1% is minutes) */
    if ((worked >= 0.01 || (worked > 0 && el >= 30)) && el >= 1) {
        double left = el * (1 - frac) / worked;
        left = left < 359999 ? left : 359999;
        snprintf(eta, sizeof eta, "%02d:%02d:%02d", (int)left / 3600, (int)left / 60 % 60, (int)left % 60);
    }
    return snprintf(text, size, "[%zu/%zu docs] %lld tok  %.0f tok/s  ETA %s", p->docs_done, p->docs_total,
                    (long long)tokens, rate, eta);
}

static void draw(progress *p, int force)
{
    if (p->quiet || !p->columns)
        return;
    double now = kvz_now_seconds();
    if (!force && now - p->last_draw < 0.2)
        return;
    p->last_draw = now;
    int columns = cli_live_columns(stderr); /* again: the window may have been resized */
    columns = columns ? columns : p->columns;
    char text[160], shown[CLI_SHOWN_MAX];
    int used = counts_text(p, now, text, sizeof text);
    /* the name in what the counts leave (40 columns at most): its end, which
     * names the file, from a character's start */
    cli_shown(shown, p->current ? p->current : "", p->current ? strlen(p->current) : 0);
    size_t room = columns - 1 > used + 2 ? (size_t)(columns - 1 - used - 2) : 0, nl = strlen(shown), from = 0;
    room = room < 40 ? room : 40;
    if (nl > room && room >= 8) {
        from = nl - (room - 3);
        while (from < nl && ((unsigned char)shown[from] & 0xC0) == 0x80)
            from++;
    }
    if (nl && room >= 8)
        snprintf(text + used, sizeof text - (size_t)used, "  %s%s", from ? "..." : "", shown + from);
    cli_live_line(columns, text);
}

/* In a log (no live line): the counts, once per log_every seconds, so that
 * one tailing a long run sees how far it is; within a long document (a book
 * takes many minutes), with its name. */
static void log_progress(progress *p)
{
    double now = kvz_now_seconds();
    if (p->quiet || p->columns || p->log_every < 0 || now - p->last_log < p->log_every ||
        p->docs_done == p->docs_total)
        return;
    p->last_log = now;
    char text[160];
    counts_text(p, now, text, sizeof text);
    fprintf(stderr, "kvz compile: %s", text);
    if (p->doc_tokens > 0 && p->current) {
        char shown[CLI_SHOWN_MAX];
        fprintf(stderr, "  (%lld tok into %s)", (long long)p->doc_tokens,
                cli_shown(shown, p->current, strlen(p->current)));
    }
    fputc('\n', stderr);
}

static void on_tokens(void *ctx, int64_t tokens, int64_t total, int64_t stored)
{
    progress *p = ctx;
    p->doc_tokens = tokens;
    p->doc_total = total;
    p->doc_stored = stored;
    draw(p, 0);
    if (p->log_every > 0) /* 0: after each document, not after each chunk */
        log_progress(p);
}

/* --json: the line of a document skipped (`why` its "reason") or failed
 * (its "error"), out at once: a signal may end the run next. */
static void json_not_compiled(const char *name, int failed, const char *why)
{
    printf("{\"document\":");
    cli_json_string(stdout, name, strlen(name));
    printf(failed ? ",\"status\":\"failed\",\"error\":" : ",\"status\":\"skipped\",\"reason\":");
    cli_json_string(stdout, why, strlen(why));
    printf("}\n");
    fflush(stdout);
}

/* The file a document was read from, as it was just before (stdin and
 * archive members are not looked at again). */
typedef struct source_check {
    const char *path; /* NULL: not checked */
    struct stat seen;
    int racy;         /* not looked at, or modified in the last seconds (an edit of the same size
                       * within the file system's time resolution would leave `seen` as it was):
                       * read again whatever its stat says */
    const kvz_ingest_opts *ingest;
} source_check;

/* Before document i is read. */
static void look_at_source(source_check *c, const kvz_source *src)
{
    c->path = strcmp(src->path, "-") == 0 || src->member ? NULL : src->path;
    if (!c->path)
        return;
    c->racy = stat(c->path, &c->seen) != 0 || c->seen.st_mtim.tv_sec >= time(NULL) - 2;
}

static int same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* kvz_still_current_fn: the file untouched, or read again to the same content.
 * One that cannot be read again (removed, or now binary) is not what was read. */
static int source_still_current(void *ctx, const char *name, const uint8_t hash[16])
{
    (void)name;
    const source_check *s = ctx;
    struct stat now;
    if (!s->path || (!s->racy && stat(s->path, &now) == 0 && same_file_state(&s->seen, &now)))
        return 1;
    uint8_t h[16];
    if (kvz_doc_file_hash(s->path, s->ingest, h) != KVZ_OK) {
        kvz_error_clear();
        return 0;
    }
    return memcmp(h, hash, 16) == 0;
}

/* fmt: a prefix with one %s (the name, shown); the detail follows it, shown too */
static void line(progress *p, const char *fmt, const char *name, const char *detail)
{
    if (p->columns && !p->quiet)
        fprintf(stderr, "\r\033[K");
    if (!p->quiet || strncmp(fmt, "skip", 4) == 0 || strncmp(fmt, "FAIL", 4) == 0 || strncmp(fmt, "note", 4) == 0) {
        char shown[CLI_SHOWN_MAX];
        fprintf(stderr, fmt, cli_shown(shown, name, strlen(name)));
        cli_put_shown(stderr, detail);
        fputc('\n', stderr);
    }
}

/* What a run did, for its --json summary line. */
typedef struct run_summary {
    size_t compiled, unchanged, skipped, failed, not_attempted, other_shards;
    int64_t tokens;
    uint64_t bytes;
    double seconds;
    int prune_asked;                    /* --prune */
    const store_collect_report *pruned; /* NULL: not done (asked: "pruned":null) */
    int interrupted;                    /* by a signal */
    const char *interrupted_at;         /* the document it came during (NULL: none, or the prune) */
} run_summary;

/* The --json summary line; an interrupted run's names where it stopped (the
 * document then counts as not attempted, and nothing was pruned). */
static void print_summary(FILE *out, const run_summary *r)
{
    fprintf(out, "{\"summary\":{\"compiled\":%zu,\"unchanged\":%zu,\"skipped\":%zu,\"failed\":%zu,"
            "\"not_attempted\":%zu,\"other_shards\":%zu,\"tokens\":%lld,\"bytes\":%llu,\"seconds\":%.3f",
            r->compiled, r->unchanged, r->skipped, r->failed, r->not_attempted, r->other_shards,
            (long long)r->tokens, (unsigned long long)r->bytes, r->seconds);
    if (r->pruned) /* null: asked for and not done */
        fprintf(out, ",\"pruned\":{\"documents\":%zu,\"artifacts\":%zu,\"prefixes\":%zu,\"bytes\":%llu}",
                r->pruned->documents, r->pruned->artifacts, r->pruned->prefixes,
                (unsigned long long)r->pruned->bytes);
    else if (r->prune_asked)
        fprintf(out, ",\"pruned\":null");
    fprintf(out, ",\"interrupted\":%s", r->interrupted ? "true" : "false");
    if (r->interrupted_at) {
        fprintf(out, ",\"interrupted_at\":");
        cli_json_string(out, r->interrupted_at, strlen(r->interrupted_at));
    }
    fprintf(out, "}}\n");
}

/* The summary line an interrupting signal writes (cli_set_interrupt_output):
 * a name longer than a store key (which fails) is left out, so that the line
 * fits whole. */
static void set_interrupt_summary(run_summary *r)
{
    char line[CLI_INTERRUPT_TEXT_MAX];
    if (r->interrupted_at && strlen(r->interrupted_at) > KVZ_STORE_KEY_MAX)
        r->interrupted_at = NULL;
    FILE *f = fmemopen(line, sizeof line, "w");
    if (!f) /* no summary line then; the note on stderr still says where it stopped */
        return;
    print_summary(f, r);
    fputc('\0', f);
    fclose(f);
    line[sizeof line - 1] = '\0';
    fflush(stdout); /* what the lines before said is out before the signal's line */
    cli_set_interrupt_output("%s", line);
}

/* What a signal says from here on (stderr's note; with --json, the summary
 * line): the run stopped at document `number` of `total`, r->interrupted_at,
 * with r's counts. */
static void set_interrupted_at(const compile_args *a, int live, run_summary *r, size_t number, size_t total)
{
    char shown[CLI_SHOWN_MAX];
    const char *name = r->interrupted_at;
    cli_set_interrupt_note("%skvz compile: interrupted at %s (document %zu of %zu); before it %zu compiled and "
                           "%zu unchanged, which the store keeps, %zu skipped, %zu failed: the same command "
                           "%sgoes on from that document (a long one at its first segment not stored)%s\n", live && !a->quiet ? "\r\033[K" : "",
                           cli_shown(shown, name, strlen(name)), number, total, r->compiled, r->unchanged,
                           r->skipped, r->failed, a->opts.force ? "without --force (with it, it starts over) " : "",
                           a->prune ? "; nothing was pruned" : "");
    if (a->json)
        set_interrupt_summary(r);
}

/* The same once document `number` of `total` is settled (stored, skipped or
 * failed, its line perhaps not yet out): a signal while its line is written
 * (SIGPIPE: stdout's reader gone) counts it; `next` names the one after it. */
static void set_done_through(const compile_args *a, int live, run_summary *r, size_t number, size_t total,
                             const char *next)
{
    r->not_attempted = total - number;
    r->interrupted_at = next;
    if (next) {
        set_interrupted_at(a, live, r, number + 1, total);
        return;
    }
    cli_set_interrupt_note("%skvz compile: interrupted at its end, every document done: %zu compiled and %zu "
                           "unchanged, which the store keeps, %zu skipped, %zu failed%s\n",
                           live && !a->quiet ? "\r\033[K" : "", r->compiled, r->unchanged, r->skipped, r->failed,
                           a->prune ? "; nothing was pruned" : "");
    if (a->json)
        set_interrupt_summary(r);
}

/* ---- --prune ----------------------------------------------------------------- */

typedef struct prune_ctx {
    const char *const *paths;
    size_t n_paths;
    const kvz_ingest_opts *ingest;
    name_set listed; /* the run's document names */
    kvz_archive_cache archive; /* the members of the archive checked last */
    int json, quiet;
} prune_ctx;

/* A store document goes when the run's paths would list it, did not, and its
 * source is not on the disk now (another path or a link may reach it; another
 * writer may have compiled it since the listing). */
static int prune_chooses(void *ctx, const void *name, size_t len)
{
    prune_ctx *p = ctx;
    return !name_set_has(&p->listed, name, len) &&
           kvz_ingest_would_list(p->paths, p->n_paths, p->ingest, name, len) &&
           kvz_ingest_source_gone(&p->archive, name, len);
}

/* Each document pruned: a line, as each compiled one has. */
static void pruned_one(void *ctx, const void *name, size_t len)
{
    const prune_ctx *p = ctx;
    if (p->json) {
        printf("{\"document\":");
        cli_json_string(stdout, (const char *)name, len);
        printf(",\"status\":\"pruned\"}\n");
        fflush(stdout); /* out before a signal's summary line */
    }
    if (!p->quiet) {
        char shown[CLI_SHOWN_MAX];
        fprintf(stderr, "pruned %s\n", cli_shown(shown, (const char *)name, len));
    }
}

/* The whole store to itself (no other writer is staging artifacts no
 * document names yet), one transaction. */
static int prune(const compile_args *a, const char *const *paths, size_t n_paths, const kvz_source_list *list,
                 store_collect_report *report)
{
    prune_ctx p = {paths, n_paths, &a->ingest, {0}, {0}, a->json, a->quiet};
    int st = KVZ_OK;
    for (size_t i = 0; i < list->len && st == KVZ_OK; i++)
        st = name_set_add(&p.listed, list->items[i].name);
    name_set_sort(&p.listed);
    kvz_store *s = NULL;
    store_collect_opts o = {.remove = prune_chooses, .removed = pruned_one, .ctx = &p, .what = "compile --prune"};
    if (st == KVZ_OK)
        st = kvz_store_open(&s, a->store, KVZ_STORE_EXCLUSIVE);
    if (st == KVZ_OK)
        st = store_collect(s, &o, report);
    kvz_store_close(s);
    kvz_archive_cache_free(&p.archive);
    name_set_free(&p.listed);
    return st;
}

int cmd_compile(int argc, char **argv)
{
    compile_args a;
    int rc = parse(argc, argv, &a);
    if (rc) {
        free(a.include), free(a.exclude);
        return rc < 0 ? KVZ_EXIT_OK : rc;
    }
    cli_warn_threads("compile", a.threads);
    kvz_source_list list = {0};
    kvz_model *model = NULL;
    kvz_store *store = NULL;
    kvz_compiler *comp = NULL;
    kvz_doc_reader *reader = NULL;
    cli_set_interrupt_note("kvz compile: interrupted before its first document (listing the documents, loading "
                           "the model, opening the store): nothing compiled; the same command starts again\n");
    int st = kvz_ingest_list((const char *const *)argv + optind, (size_t)(argc - optind), &a.ingest, &list);
    if (st == KVZ_OK && list.len == 0) /* a nightly job's mistyped glob or unmounted corpus is no quiet success */
        st = kvz_errorf(KVZ_ERR_NOT_FOUND, "no documents were found under the PATHs given%s%s: nothing compiled%s",
                        a.ingest.n_include || a.ingest.n_exclude ? " (as --include and --exclude select them)" : "",
                        list.hidden_passed_over || list.hidden_members_passed_over
                            ? " (hidden ones, named with a leading '.' or under __MACOSX/, passed over)" : "",
                        a.prune ? ", nothing pruned (`kvz rm` removes documents by name)" : "");
    if (st == KVZ_OK && list.walked_around_store && !a.quiet)
        fprintf(stderr, "kvz compile: the store %s, inside a folder compiled, is not read as documents\n", a.store);
    if (st == KVZ_OK && list.hidden_passed_over && !a.quiet)
        fprintf(stderr, "kvz compile: %zu hidden file(s) and folder(s) of the folders walked passed over (names "
                "starting with '.', such as .git: name one as a PATH to compile it)\n", list.hidden_passed_over);
    if (st == KVZ_OK && list.hidden_members_passed_over && !a.quiet)
        fprintf(stderr, "kvz compile: %zu hidden member(s) of archives passed over (names with a part starting "
                "with '.', such as .git/, or under macOS's __MACOSX/)\n", list.hidden_members_passed_over);
    kvz_model_config mc = {.backend = {.device = (kvz_device)a.device, .n_threads = (int)a.threads}};
    if (st == KVZ_OK)
        st = kvz_doc_reader_new(&reader, &list, &a.ingest);
    if (st == KVZ_OK)
        st = kvz_model_load(&model, cli_model_path(a.model), &mc);
    if (st == KVZ_OK)
        cli_note_device("compile", model->device_note);
    if (st == KVZ_OK) /* what the compiler would refuse, refused before a new store is made */
        st = kvz_compile_opts_fit(model, &a.opts);
    if (st == KVZ_OK)
        st = kvz_store_open(&store, a.store, KVZ_STORE_CREATE);
    if (st == KVZ_OK)
        st = kvz_compiler_new(&comp, model, store, &a.opts);
    if (st != KVZ_OK) {
        cli_clear_interrupt_note();
        rc = cli_fail("compile", st);
        goto done;
    }
    progress p = {.columns = a.no_progress ? 0 : cli_live_columns(stderr), .quiet = a.quiet, .docs_total = list.len,
                  .log_every = a.no_progress ? -1 : a.progress_every, .start = kvz_now_seconds()};
    p.last_log = p.start;
    for (size_t i = 0; i < list.len; i++)
        p.bytes_total += list.items[i].size;
    char summary[128];
    kvz_compile_summary(&a.opts, summary, sizeof summary);
    if (!a.quiet)
        fprintf(stderr, "compiling %zu document(s) into %s: %s; %d tokens per segment at most\n",
                list.len, a.store, summary, kvz_compiler_segment_limit(comp));
    size_t compiled = 0, unchanged = 0, skipped = 0, failed = 0, other_shards = 0;
    uint64_t out_bytes = 0;
    int64_t in_tokens = 0;
    size_t i; /* after the loop: < list.len when a failure stopped the run there */
    source_check check = {.ingest = &a.ingest};
    kvz_compiler_check_current(comp, source_still_current, &check);
    for (i = 0; i < list.len; i++) {
        kvz_document doc = {0};
        const char *name = list.items[i].name;
        run_summary here = {compiled, unchanged, skipped, failed, list.len - i, other_shards, in_tokens, out_bytes,
                            kvz_now_seconds() - p.start, a.prune, NULL, 1, name};
        set_interrupted_at(&a, p.columns, &here, i + 1, list.len);
        /* another machine's: not even read, but for stdin (its writer expects it read to the end) */
        int other_shard = a.n_shards && kvz_shard_of(name, strlen(name), a.n_shards) != a.shard;
        int from_stdin = strcmp(list.items[i].path, "-") == 0;
        /* the file as it was before it was read: another compile may read it
         * changed meanwhile, and the content read last is the one stored */
        look_at_source(&check, &list.items[i]);
        int r = other_shard && !from_stdin ? KVZ_OK : kvz_doc_reader_read(reader, i, &doc);
        if (other_shard) {
            kvz_document_free(&doc);
            kvz_error_clear();
            other_shards++;
            p.docs_done++;
            p.bytes_done += list.items[i].size;
            p.free_bytes += list.items[i].size;
            continue;
        }
        p.current = name;
        p.doc_tokens = p.doc_total = p.doc_stored = 0;
        p.doc_bytes = list.items[i].size;
        draw(&p, 1);
        kvz_doc_result res = {0};
        const int read = r == KVZ_OK;
        if (read)
            r = kvz_compile_document(comp, name, doc.text, doc.len, doc.hash, &res, on_tokens, &p);
        /* an archive's link or device is no document, whatever --strict says (source tarballs hold links) */
        const int strict = a.strict && !(list.items[i].unread && list.items[i].member);
        if (r == KVZ_ERR_FORMAT && (!read || res.status == KVZ_DOC_EMPTY)) {
            /* the content is unusable: skip (or stop, strictly: a failure) */
            *(strict ? &failed : &skipped) += 1;
            line(&p, strict ? "FAIL %s: " : "skip %s: ", name, kvz_last_error());
            if (a.json)
                json_not_compiled(name, strict, kvz_last_error());
            if (strict) {
                rc = cli_exit_code(r);
                kvz_document_free(&doc);
                break;
            }
        } else if (r != KVZ_OK) {
            /* a document that cannot be read fails alone; a store or machine
             * in trouble (below) stops the run */
            int unreadable = doc.text == NULL;
            failed++;
            line(&p, "FAIL %s: ", name, kvz_last_error());
            if (a.json)
                json_not_compiled(name, 1, kvz_last_error());
            if (a.strict || r == KVZ_ERR_NOMEM || r == KVZ_ERR_BACKEND || (r == KVZ_ERR_IO && !unreadable)) {
                rc = cli_exit_code(r); /* the store or machine is in trouble: stop */
                kvz_document_free(&doc);
                break;
            }
        } else if (res.status == KVZ_DOC_STALE) {
            skipped++;
            line(&p, "skip %s: ", name, res.segments > 1
                 ? "the file changed while it was compiled: not filed from this read (the segments stored as they "
                   "were done stay until kvz gc; a compile that reads it unchanged stores it)"
                 : "the file changed while it was compiled: nothing written from this read (a compile that reads "
                   "it unchanged stores it)");
            if (a.json)
                json_not_compiled(name, 0, "changed while compiled");
        } else {
            res.status == KVZ_DOC_COMPILED ? compiled++ : unchanged++;
            in_tokens += res.tokens;
            out_bytes += res.bytes;
            run_summary stored = {compiled, unchanged, skipped, failed, 0, other_shards, in_tokens, out_bytes,
                                  kvz_now_seconds() - p.start, a.prune, NULL, 1, NULL};
            set_done_through(&a, p.columns, &stored, i + 1, list.len,
                             i + 1 < list.len ? list.items[i + 1].name : NULL);
            char detail[512];
            double secs = res.prefill_s + res.score_s + res.write_s;
            if (res.status == KVZ_DOC_COMPILED && res.shared_segments == res.segments)
                snprintf(detail, sizeof detail,
                         "%d tokens, %d segment(s), content compiled before: its %.1f KB of artifacts were "
                         "already in the store, nothing computed",
                         res.tokens, res.segments, res.bytes / 1024.0);
            else if (res.status == KVZ_DOC_COMPILED)
                snprintf(detail, sizeof detail, "%d tokens, %d segment(s), kept %.1f%%, %.1f KB, %.0f tok/s",
                         res.tokens, res.segments,
                         res.total_pairs ? 100.0 * (double)res.kept_pairs / (double)res.total_pairs : 100.0,
                         res.bytes / 1024.0, secs > 0 ? res.tokens / secs : 0);
            else
                snprintf(detail, sizeof detail, "unchanged (%d tokens, already in the store)", res.tokens);
            if (res.status == KVZ_DOC_COMPILED && res.shared_segments > 0 && res.shared_segments < res.segments) {
                size_t at = strlen(detail);
                snprintf(detail + at, sizeof detail - at, "; %d of its segments were in the store already (an "
                         "interrupted run's, or the same text under another name)", res.shared_segments);
            }
            if (res.dropped_forms) { /* a pinned --config ID of those is gone: said */
                size_t at = strlen(detail);
                snprintf(detail + at, sizeof detail - at, "; changed: its %u compiled form(s) of other "
                         "configurations went with the earlier content", res.dropped_forms);
            }
            line(&p, "%s: ", name, detail); /* above the bar on a terminal */
            if (res.untokenized) { /* text not in the artifacts: said under --quiet too */
                snprintf(detail, sizeof detail, "%llu byte(s) left out of its artifacts: the model's vocabulary "
                         "has no token for them (the first 0x%02X)", (unsigned long long)res.untokenized,
                         res.first_untokenized);
                line(&p, "note %s: ", name, detail);
            }
            if (a.json) {
                printf("{\"document\":");
                cli_json_string(stdout, name, strlen(name));
                printf(",\"status\":\"%s\",\"tokens\":%d,\"segments\":%d,\"shared_segments\":%d,"
                       "\"bytes\":%llu,\"kept_fraction\":",
                       res.status == KVZ_DOC_COMPILED ? "compiled" : "unchanged", res.tokens, res.segments,
                       res.shared_segments, (unsigned long long)res.bytes);
                if (res.total_pairs) /* of the segments computed here; none: not known here */
                    printf("%.4f", (double)res.kept_pairs / (double)res.total_pairs);
                else
                    printf("null");
                printf(",\"dropped_forms\":%u,\"untokenized_bytes\":", res.dropped_forms);
                if (res.status == KVZ_DOC_COMPILED) /* unchanged: not tokenized again, not known here */
                    printf("%llu", (unsigned long long)res.untokenized);
                else
                    printf("null");
                printf(",\"prefill_s\":%.3f,\"score_s\":%.3f,\"write_s\":%.3f}\n", res.prefill_s, res.score_s,
                       res.write_s);
                fflush(stdout);
            }
        }
        kvz_document_free(&doc);
        p.docs_done++;
        p.bytes_done += list.items[i].size;
        if (res.tokens > 0)
            p.bytes_tokenized += list.items[i].size;
        p.tokens_done += res.tokens;
        if (res.status == KVZ_DOC_UNCHANGED) {
            p.free_bytes += list.items[i].size;
            p.free_tokens += res.tokens;
        } else if (p.doc_total > 0) {
            p.free_bytes += (uint64_t)((double)list.items[i].size * (double)p.doc_stored / (double)p.doc_total);
            p.free_tokens += p.doc_stored;
        }
        p.doc_tokens = p.doc_total = p.doc_stored = 0;
        draw(&p, 1);
        log_progress(&p);
        /* its line is out: a signal before the next starts finds its counts */
        run_summary done = {compiled, unchanged, skipped, failed, 0, other_shards, in_tokens, out_bytes,
                            kvz_now_seconds() - p.start, a.prune, NULL, 1, NULL};
        set_done_through(&a, p.columns, &done, i + 1, list.len, i + 1 < list.len ? list.items[i + 1].name : NULL);
    }
    cli_clear_interrupt_note(); /* what was done is said below, or by the prune's note */
    if (p.columns && !a.quiet)
        fprintf(stderr, "\r\033[K");
    store_collect_report pruned = {0};
    int prune_st = KVZ_OK;
    if (a.prune && i == list.len) { /* a run that stopped prunes nothing */
        cli_set_interrupt_note("kvz compile: interrupted while pruning: the prune is one write, whole or not at "
                               "all (kvz ls says which); the %zu compiled and %zu unchanged document(s) are in the "
                               "store\n", compiled, unchanged);
        if (a.json) {
            run_summary r = {compiled, unchanged, skipped, failed, 0, other_shards, in_tokens, out_bytes,
                             kvz_now_seconds() - p.start, 1, NULL, 1, NULL};
            set_interrupt_summary(&r);
        }
        kvz_compiler_free(comp), comp = NULL;
        kvz_store_close(store), store = NULL; /* its shared hold: the prune needs the store alone */
        prune_st = prune(&a, (const char *const *)argv + optind, (size_t)(argc - optind), &list, &pruned);
        cli_clear_interrupt_note();
        if (prune_st != KVZ_OK)
            prune_st = kvz_error_context(prune_st, "nothing pruned");
    }
    double el = kvz_now_seconds() - p.start;
    char shard_note[96] = "";
    if (a.n_shards)
        snprintf(shard_note, sizeof shard_note, ", %zu in other shards (this is shard %u of 0..%u)", other_shards,
                 a.shard, a.n_shards - 1);
    size_t not_attempted = i < list.len ? list.len - i - 1 : 0;
    if (not_attempted && !a.quiet)
        fprintf(stderr, "stopped at %s: %zu document(s) after it not attempted; the store keeps what was "
                "compiled, and once that is mended the same command goes on from there\n", list.items[i].name,
                not_attempted);
    if (!a.quiet)
        fprintf(stderr, "%zu compiled, %zu unchanged, %zu skipped, %zu failed%s; %lld tokens -> %.1f KB "
                "(%.2f bytes/token) in %.1f s\n", compiled, unchanged, skipped, failed, shard_note,
                (long long)in_tokens, out_bytes / 1024.0, in_tokens ? (double)out_bytes / (double)in_tokens : 0, el);
    const int prune_done = a.prune && i == list.len && prune_st == KVZ_OK;
    if (prune_done && !a.quiet)
        fprintf(stderr, "pruned %zu document(s) the corpus no longer has; dropped %zu artifact(s) and %zu "
                "prefix(es), %.1f KB\n", pruned.documents, pruned.artifacts, pruned.prefixes, pruned.bytes / 1024.0);
    else if (a.prune && i < list.len)
        fprintf(stderr, "kvz compile: nothing pruned: the run stopped before its end\n");
    if (a.json) {
        run_summary r = {compiled, unchanged, skipped, failed, not_attempted, other_shards, in_tokens, out_bytes,
                         el, a.prune, prune_done ? &pruned : NULL, 0, NULL};
        print_summary(stdout, &r);
    }
    if (rc == KVZ_EXIT_OK && failed)
        rc = KVZ_EXIT_FAILURE;
    if (prune_st != KVZ_OK) { /* said last, where it is seen; a failed document's exit status first */
        int prune_rc = cli_fail("compile", prune_st);
        rc = rc == KVZ_EXIT_OK ? prune_rc : rc;
    }
done:
    kvz_doc_reader_free(reader);
    kvz_compiler_free(comp);
    kvz_store_close(store);
    kvz_model_free(model);
    kvz_source_list_free(&list);
    free(a.include), free(a.exclude);
    return rc;
}
