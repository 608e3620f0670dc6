/*
 * error.h — how kvz reports failures inside the library.
 *
 * A failing function records a message for its thread and returns the status:
 *     if (off + len > size)
 *         return kvz_errorf(KVZ_ERR_FORMAT, "gguf: tensor '%s' past end of file", name);
 * Callers that add context prepend to the message with kvz_error_context().
 * Invariants (bugs, not bad input) use KVZ_ASSERT, which aborts.
 */
#ifndef KVZ_COMMON_ERROR_H
#define KVZ_COMMON_ERROR_H

#include "kvz.h"

#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define KVZ_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define KVZ_PRINTF(fmt_idx, arg_idx)
#endif

/* Record a message for this thread and return `status` (a negative kvz_status). */
int kvz_errorf(int status, const char *fmt, ...) KVZ_PRINTF(2, 3);

/* Prefix the current message with "context: " and return `status` unchanged. */
int kvz_error_context(int status, const char *fmt, ...) KVZ_PRINTF(2, 3);

/* Forget the current message. */
void kvz_error_clear(void);

#define KVZ_ASSERT(cond)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "kvz: internal error at %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                            \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* Propagate a failing status: `KVZ_TRY(kvz_gguf_open(...));` */
#define KVZ_TRY(expr)                                                                  \
    do {                                                                               \
        int kvz_try_rc_ = (expr);                                                      \
        if (kvz_try_rc_ != KVZ_OK)                                                     \
            return kvz_try_rc_;                                                        \
    } while (0)

#endif
