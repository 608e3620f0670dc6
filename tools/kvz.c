/* kvz.c — the command line: dispatch to subcommands. */
#include "kvz.h"
#include "tools/cli.h"

#include "common/cpu_check.h"
#include "common/file_util.h"
#include "common/timer.h"
#include "format/store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "kvz " KVZ_VERSION_STRING " - an offline context compiler for LLaMA-family models\n"
            "\n"
            "usage: kvz <command> [options]\n"
            "\n"
            "commands:\n"
            "  compile      documents -> compressed KV-cache artifacts in a store\n"
            "  query        answer questions from precompiled documents (no prefill)\n"
            "  ls           list a store's documents and their compiled forms\n"
            "  inspect      show one compiled document (manifest, kept pairs, sizes, --svg)\n"
            "  verify       check every checksum and bound of every artifact in a store\n"
            "  stats        sizes, bytes per token and counts by configuration of a store\n"
            "  gc           drop artifacts no document references (and older forms)\n"
            "  rm           remove documents from a store (then drop what gc drops)\n"
            "  pack         compiled documents -> a bundle (tar.zst) for another machine\n"
            "  unpack       a bundle -> a store, everything verified before it is visible\n"
            "  merge        stores (shards of a compile) -> one store\n"
            "  export       one compiled artifact -> a .kvz file\n"
            "  import       .kvz files -> a store\n"
            "  eval         accuracy, fidelity of methods x ratios x bits on generated tasks\n"
            "  generate     answer a prompt with a model (prefill + decode)\n"
            "  tokenize     text on stdin -> token ids on one line\n"
            "  detokenize   token ids on stdin -> the exact text\n"
            "  synth-model  write a deterministic random-weight model (tests, benchmarks)\n"
            "  bench        time prefill and decode of the engine\n"
            "\n"
            "'kvz <command> --help' or 'kvz help <command>' describes a command's options;\n"
            "'kvz --version' prints the version.\n"
            "The model defaults to $KVZ_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf\n"
            "(fetched by scripts/setup.sh) in the current folder, else in the folder\n"
            "above the binary's (build/.., the checkout); an installed kvz wants\n"
            "$KVZ_MODEL or --model.\n"
            "$SOURCE_DATE_EPOCH, where set, is the time stamped on what compile and pack\n"
            "write (the same compile then comes out the same byte for byte on the same CPU\n"
            "with the same --threads, and so does pack of the same store); give the\n"
            "corpus's date: of two contents under one name, merge keeps the later stamped.\n"
            "\n"
            "exit codes: 0 ok, 1 failure, 2 usage or invalid argument, 3 i/o error,\n"
            "4 malformed or corrupt input, 5 unsupported, 6 made for another model,\n"
            "7 not found, 8 out of memory, 9 device error, 10 beyond a limit (context full);\n"
            "stopped by SIGINT, SIGTERM, SIGHUP or SIGPIPE, a command removes what it had\n"
            "half written (compile also says where it stopped) and dies by the signal (a\n"
            "shell's status 128+N: 130 for SIGINT, 143 for SIGTERM).\n");
}

/* Interrupted while writing pack's or export's output: no temporary file is
 * left beside it (nor eval's temporary store); a long command says what it had done (compile: which
 * documents are in the store); the signal then ends the process as it would
 * have. */
static void on_fatal_signal(int sig)
{
    kvz_atomic_file_remove_in_progress();
    cli_temp_store_remove();
    cli_say_interrupt_note();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A fault inside LMDB is its file damaged (it trusts its pages): said as
 * such, exit 4, instead of a crash. Any other fault goes on to the handler
 * there was before (the default, or a sanitizer's report). */
static struct sigaction fault_before[2];

static void on_fault(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (info->si_code > 0 && kvz_store_in_lmdb_call()) { /* a fault, not a kill -SEGV */
        kvz_atomic_file_remove_in_progress(); /* as on_fatal_signal: no temporary left */
        cli_temp_store_remove();
        static const char said[] = "kvz: the store's data.mdb is damaged: LMDB followed a broken page and "
                                   "faulted (restore the store from a backup or a bundle, or compile the "
                                   "corpus into a new store)\n";
        ssize_t w = write(STDERR_FILENO, said, sizeof said - 1);
        (void)w;
        _exit(cli_exit_code(KVZ_ERR_FORMAT));
    }
    sigaction(sig, &fault_before[sig == SIGBUS], NULL);
    if (info->si_code <= 0) /* sent: it would not come again */
        raise(sig);
    /* else the fault comes again as the instruction runs again, to it */
}

static void catch_faults(void)
{
    struct sigaction sa = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &fault_before[0]);
    sigaction(SIGBUS, &sa, &fault_before[1]);
}

static int asks_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0;
}

static const struct {
    const char *name;
    int (*run)(int, char **);
} commands[] = {
    {"compile", cmd_compile},   {"query", cmd_query},         {"ls", cmd_ls},
    {"inspect", cmd_inspect},   {"verify", cmd_verify},       {"stats", cmd_stats},
    {"gc", cmd_gc},             {"rm", cmd_rm},               {"pack", cmd_pack},
    {"unpack", cmd_unpack},     {"merge", cmd_merge},         {"export", cmd_export},
    {"import", cmd_import},     {"eval", cmd_eval},           {"generate", cmd_generate},
    {"tokenize", cmd_tokenize}, {"detokenize", cmd_detokenize}, {"bench", cmd_bench},
    {"synth-model", cmd_synth},
};

/* Run command argv[0] with its arguments; -1 when there is no such command. */
static int dispatch(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[0], commands[i].name) == 0)
            return commands[i].run(argc, argv);
    return -1;
}

static int run(int argc, char **argv);

/* What a command printed must have reached stdout: a full disk or a closed
 * pipe fails the run (exit 3) instead of ending it with 0. */
int main(int argc, char **argv)
{
    if (kvz_cpu_check() != KVZ_OK) { /* before anything built for the missing instructions runs */
        fprintf(stderr, "kvz: %s\n", kvz_last_error());
        return cli_exit_code(KVZ_ERR_UNSUPPORTED);
    }
    int rc = run(argc, argv);
    int flushed = fflush(stdout) == 0, failed_errno = errno;
    if ((flushed && !ferror(stdout)) || rc != KVZ_EXIT_OK) /* a failed command said why */
        return rc;
    fprintf(stderr, "kvz %s: cannot write the output: %s\n", argc > 1 ? argv[1] : "",
            flushed ? "a write to it failed" : strerror(failed_errno));
    return cli_exit_code(KVZ_ERR_IO);
}

static int run(int argc, char **argv)
{
    /* a closed standard descriptor would be the next file opened (LMDB's
     * lock file), and what is meant for stdout would go into it */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
            return cli_exit_code(KVZ_ERR_IO);
    /* one handler at a time: the others wait while it runs (and the first ends the process) */
    const int fatal[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE}; /* SIGPIPE: stdout's reader gone (`| head`) */
    struct sigaction on_fatal = {.sa_handler = on_fatal_signal};
    sigemptyset(&on_fatal.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaddset(&on_fatal.sa_mask, fatal[i]);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) { /* one ignored (nohup, a background job) stays so */
        struct sigaction before;
        if (sigaction(fatal[i], NULL, &before) == 0 && before.sa_handler != SIG_IGN)
            sigaction(fatal[i], &on_fatal, NULL);
    }
    signal(SIGXFSZ, SIG_IGN); /* past ulimit -f a write fails (EFBIG) and says so, instead of a silent kill */
    catch_faults();
    if (argc < 2) { /* the whole usage, the missing command said last where it is seen */
        usage(stderr);
        fprintf(stderr, "\nkvz: no command given\n");
        return KVZ_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    uint64_t epoch; /* the convention: a malformed one stops what it would stamp */
    if ((strcmp(cmd, "compile") == 0 || strcmp(cmd, "eval") == 0 || strcmp(cmd, "pack") == 0) &&
        kvz_source_date_epoch(&epoch) < 0) {
        fprintf(stderr, "kvz: SOURCE_DATE_EPOCH='%s' is not a count of seconds since 1970 up to the end of the "
                "year 9999 (unset it, or give one to stamp what kvz writes with)\n", getenv("SOURCE_DATE_EPOCH"));
        return KVZ_EXIT_USAGE;
    }
    int help = asks_help(cmd);
    if (help && argc > 3) {
        fprintf(stderr, "kvz %s: give one command at most (kvz help COMMAND)\n", cmd);
        return KVZ_EXIT_USAGE;
    }
    if (help && argc == 3 && strcmp(argv[2], "--version") == 0) {
        printf("usage: kvz --version\n\nPrints the version (kvz %s), the instruction sets this build may use\n"
               "(MARCH) and whether it has the CUDA backend.\n", KVZ_VERSION_STRING);
        return KVZ_EXIT_OK;
    }
    if (help && argc == 3 && !asks_help(argv[2])) { /* kvz help CMD: kvz CMD --help */
        char *help_argv[] = {argv[2], "--help", NULL};
        int rc = dispatch(2, help_argv);
        if (rc >= 0)
            return rc;
        cmd = argv[2];
    } else if (help) {
        usage(stdout);
        return KVZ_EXIT_OK;
    } else if (strcmp(cmd, "--version") == 0) {
        char built_for[320];
        kvz_cpu_built_for(built_for, sizeof built_for);
#if defined(KVZ_CUDASIM)
        const char *cuda = "emulated on the CPU (a test build)";
#elif defined(KVZ_WITH_CUDA)
        const char *cuda = "built in (sm_80, sm_90 and PTX)";
#else
        const char *cuda = "not built in (make cuda)";
#endif
        printf("kvz %s\nCPU instructions beyond the baseline: %s\nCUDA backend: %s\n", KVZ_VERSION_STRING,
               built_for[0] ? built_for : "none", cuda);
        return KVZ_EXIT_OK;
    } else {
        int rc = dispatch(argc - 1, argv + 1);
        if (rc >= 0)
            return rc;
    }
    /* a few lines: the whole usage would scroll the one that matters away */
    if (cmd[0] == '-') /* `kvz --store s ls`, `kvz --verison`: an option where the command goes */
        fprintf(stderr, "kvz: '%s' is not a command (options go after the command: kvz COMMAND "
                "[options]); the commands are:\n", cmd);
    else
        fprintf(stderr, "kvz: unknown command '%s'; the commands are:\n", cmd);
    size_t column = 0;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (column && column + 1 + strlen(commands[i].name) > 78)
            fputc('\n', stderr), column = 0;
        column += (size_t)fprintf(stderr, "%s%s", column ? " " : "  ", commands[i].name);
    }
    fprintf(stderr, "\n'kvz --help' says what each does.\n");
    return KVZ_EXIT_USAGE;
}
