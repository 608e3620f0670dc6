/* sessions.c — answers per second from one engine shared by threads.
 *
 *   build/bench/sessions STORE MODEL DOC [--threads T] [--sessions S]
 *                        [--questions Q] [--tokens N]
 *
 * Opens one engine (T host threads, default 1), then runs the same work
 * twice: S sessions on DOC asked Q questions each (greedy, N tokens at most),
 * first one session after another on this thread, then the S sessions at once
 * on S threads. Prints both wall times and the answers per second, and exits
 * 1 if any concurrent answer differs from the sequential one.
 */
#include <kvz.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const QUESTIONS[] = {
    "What is this document about?",
    "Summarise the first paragraph in one sentence.",
    "Which names or numbers does the document mention?",
    "What is the most important point?",
};
enum { N_QUESTIONS = sizeof QUESTIONS / sizeof QUESTIONS[0] };

typedef struct worker {
    kvz_engine *engine;
    const char *doc;
    int questions, tokens;
    char **answers; /* [questions] */
    int status;
} worker;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *run_session(void *arg)
{
    worker *w = arg;
    kvz_session *s;
    if ((w->status = kvz_session_open(&s, w->engine, &w->doc, 1, NULL)) != KVZ_OK) {
        fprintf(stderr, "sessions: load: %s\n", kvz_last_error());
        return NULL;
    }
    kvz_ask_options ao = {.max_tokens = w->tokens};
    for (int q = 0; q < w->questions && w->status == KVZ_OK; q++)
        if ((w->status = kvz_session_ask(s, QUESTIONS[q % N_QUESTIONS], &ao, &w->answers[q], NULL)) != KVZ_OK)
            fprintf(stderr, "sessions: ask: %s\n", kvz_last_error());
    kvz_session_close(s);
    return NULL;
}

static int parse_int(const char *flag, const char *value, int lo)
{
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || v < lo || v > 1024) {
        fprintf(stderr, "sessions: %s needs a number from %d to 1024\n", flag, lo);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sessions STORE MODEL DOC [--threads T] [--sessions S] [--questions Q] "
                        "[--tokens N]\n");
        return 2;
    }
    int threads = 1, sessions = 2, questions = 4, tokens = 32;
    for (int i = 4; i < argc; i += 2) {
        int *dst = !strcmp(argv[i], "--threads")     ? &threads
                   : !strcmp(argv[i], "--sessions")  ? &sessions
                   : !strcmp(argv[i], "--questions") ? &questions
                   : !strcmp(argv[i], "--tokens")    ? &tokens
                                                     : NULL;
        if (!dst) {
            fprintf(stderr, "sessions: unknown option %s\n", argv[i]);
            return 2;
        }
        *dst = parse_int(argv[i], i + 1 < argc ? argv[i + 1] : NULL, 1);
    }
    kvz_engine *e;
    kvz_engine_options eo = {.device = KVZ_RUN_ON_AUTO, .threads = threads};
    if (kvz_engine_open(&e, argv[1], argv[2], &eo) != KVZ_OK) {
        fprintf(stderr, "sessions: %s\n", kvz_last_error());
        return 1;
    }
    worker *w = calloc((size_t)2 * sessions, sizeof *w);
    pthread_t *tid = calloc((size_t)sessions, sizeof *tid);
    for (int i = 0; i < 2 * sessions; i++)
        w[i] = (worker){e, argv[3], questions, tokens, calloc((size_t)questions, sizeof(char *)), KVZ_OK};
    double t0 = now();
    for (int i = 0; i < sessions; i++)
        run_session(&w[i]);
    double t1 = now();
    for (int i = 0; i < sessions; i++)
        pthread_create(&tid[i], NULL, run_session, &w[sessions + i]);
    for (int i = 0; i < sessions; i++)
        pthread_join(tid[i], NULL);
    double t2 = now();
    int failed = 0, differ = 0;
    for (int i = 0; i < sessions; i++) {
        failed += w[i].status != KVZ_OK || w[sessions + i].status != KVZ_OK;
        for (int q = 0; q < questions && !failed; q++)
            differ += strcmp(w[i].answers[q], w[sessions + i].answers[q]) != 0;
    }
    const int answers = sessions * questions;
    printf("%d sessions x %d questions (%d tokens at most), engine threads %d\n", sessions, questions, tokens,
           threads);
    printf("one after another: %7.2f s  %6.2f answers/s\n", t1 - t0, answers / (t1 - t0));
    printf("at once:           %7.2f s  %6.2f answers/s  (%.2fx)\n", t2 - t1, answers / (t2 - t1),
           (t1 - t0) / (t2 - t1));
    printf("answers that differ: %d; sessions failed: %d\n", differ, failed);
    for (int i = 0; i < 2 * sessions; i++) {
        for (int q = 0; q < questions; q++)
            kvz_free(w[i].answers[q]);
        free(w[i].answers);
    }
    free(w), free(tid);
    kvz_engine_close(e);
    return failed || differ ? 1 : 0;
}
