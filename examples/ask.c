/* ask.c — the public C API end to end: list a store's documents, load some,
 * stream answers.
 *
 *   cc ask.c $(pkg-config --cflags --libs kvz) -Wl,-rpath,$(pkg-config --variable=libdir kvz) -o ask
 *   ./ask STORE MODEL DOC [DOC...] -- QUESTION [QUESTION...]
 */
#include <kvz.h>

#include <stdio.h>
#include <string.h>

static int print_piece(void *user, const char *piece, size_t len)
{
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int fail(const char *what, int status)
{
    fprintf(stderr, "ask: %s: %s (%s)\n", what, kvz_last_error(), kvz_strerror(status));
    return 1;
}

int main(int argc, char **argv)
{
    int sep = 4;
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    if (argc < 4 || sep >= argc - 1) {
        fprintf(stderr, "usage: ask STORE MODEL DOC [DOC...] -- QUESTION [QUESTION...]\n");
        return 2;
    }
    kvz_engine *engine;
    int st = kvz_engine_open(&engine, argv[1], argv[2], NULL);
    if (st != KVZ_OK)
        return fail("open", st);
    char **names;
    size_t count;
    st = kvz_engine_documents(engine, &names, &count);
    if (st != KVZ_OK) {
        fail("documents", st); /* said before the close, which may set a message of its own */
        kvz_engine_close(engine);
        return 1;
    }
    printf("libkvz %s, %zu document(s):", kvz_version(), count);
    for (size_t i = 0; i < count; i++)
        printf(" %s", names[i]);
    printf("\n");
    kvz_free(names);

    kvz_session *session;
    st = kvz_session_open(&session, engine, (const char *const *)argv + 3, (size_t)(sep - 3), NULL);
    if (st != KVZ_OK) {
        fail("load", st);
        kvz_engine_close(engine);
        return 1;
    }
    kvz_load_info li;
    kvz_session_load_info(session, &li);
    printf("loaded %d tokens in %.1f ms\n", li.document_tokens, li.load_ms);
    kvz_ask_options opts = {.max_tokens = 48, .stream = print_piece};
    for (int i = sep + 1; i < argc && st == KVZ_OK; i++) {
        char *answer;
        kvz_ask_info info;
        printf("Q: %s\nA: ", argv[i]);
        st = kvz_session_ask(session, argv[i], &opts, &answer, &info);
        if (st == KVZ_OK) {
            printf("\n(%d tokens, first after %.1f ms)\n", info.answer_tokens, info.first_token_ms);
            kvz_free(answer);
        }
    }
    if (st != KVZ_OK)
        fail("ask", st);
    kvz_session_close(session);
    kvz_engine_close(engine);
    return st == KVZ_OK ? 0 : 1;
}
