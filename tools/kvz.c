/* kvz.c — the command line: dispatch to subcommands. */
#include "kvz.h"
#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "kvz " KVZ_VERSION_STRING " — an offline context compiler for LLaMA-family models\n"
            "\n"
            "usage: kvz <command> [options]\n"
            "\n"
            "commands:\n"
            "  compile      documents -> compressed KV-cache artifacts in a store\n"
            "  query        answer questions from precompiled documents (no prefill)\n"
            "  ls           list a store's documents and their compiled forms\n"
            "  inspect      show one compiled document (manifest, kept pairs, sizes, --svg)\n"
            "  verify       check every checksum and bound of every artifact in a store\n"
            "  stats        sizes, bytes per token and counts by method of a store\n"
            "  gc           drop artifacts no document references (and older configurations)\n"
            "  pack         compiled documents -> a bundle (tar.zst) for another machine\n"
            "  unpack       a bundle -> a store, everything verified before it is visible\n"
            "  merge        stores (shards of a compile) -> one store\n"
            "  export       one compiled artifact -> a .kvz file\n"
            "  import       .kvz files -> a store\n"
            "  eval         accuracy and fidelity of methods x ratios x bits on generated tasks\n"
            "  generate     answer a prompt with a model (prefill + decode)\n"
            "  tokenize     text on stdin -> token ids on one line\n"
            "  detokenize   token ids on stdin -> the exact text\n"
            "  synth-model  write a deterministic random-weight model (tests, benchmarks)\n"
            "  bench        time prefill and decode of the engine\n"
            "\n"
            "'kvz <command> --help' describes a command's options.\n"
            "The model defaults to $KVZ_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf\n"
            "(fetched by scripts/setup.sh).\n"
            "\n"
            "exit codes: 0 ok, 1 failure, 2 usage or invalid argument, 3 i/o error,\n"
            "4 malformed or corrupt input, 5 unsupported, 6 made for another model,\n"
            "7 not found, 8 out of memory, 9 device error, 10 beyond a limit (context full)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KVZ_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return KVZ_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("kvz %s\n", KVZ_VERSION_STRING);
        return KVZ_EXIT_OK;
    }
    if (strcmp(cmd, "compile") == 0)
        return cmd_compile(argc - 1, argv + 1);
    if (strcmp(cmd, "query") == 0)
        return cmd_query(argc - 1, argv + 1);
    if (strcmp(cmd, "ls") == 0)
        return cmd_ls(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } store_commands[] = {
        {"stats", cmd_stats}, {"gc", cmd_gc},         {"pack", cmd_pack},     {"unpack", cmd_unpack},
        {"merge", cmd_merge}, {"export", cmd_export}, {"import", cmd_import},
    };
    for (size_t i = 0; i < sizeof store_commands / sizeof store_commands[0]; i++)
        if (strcmp(cmd, store_commands[i].name) == 0)
            return store_commands[i].run(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0)
        return cmd_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0)
        return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "detokenize") == 0)
        return cmd_detokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "synth-model") == 0)
        return cmd_synth(argc - 1, argv + 1);
    fprintf(stderr, "kvz: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return KVZ_EXIT_USAGE;
}
