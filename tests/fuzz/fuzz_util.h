/*
 * fuzz_util.h — what the decoder targets share: abort with the status and
 * message, and the rule for a refused input (a status the decoders document,
 * with a message). Define FUZZ_TARGET ("fuzz_NAME") before including.
 */
#ifndef KVZ_FUZZ_UTIL_H
#define KVZ_FUZZ_UTIL_H

#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>

static void fail(const char *what, int rc)
{
    fprintf(stderr, FUZZ_TARGET ": %s (status %d: %s)\n", what, rc, kvz_last_error());
    abort();
}

/* A failure must be one of the statuses a decoder may return, with a message. */
static void check_failure(const char *what, int rc)
{
    if (rc != KVZ_ERR_FORMAT && rc != KVZ_ERR_UNSUPPORTED && rc != KVZ_ERR_NOT_FOUND &&
        rc != KVZ_ERR_NOMEM)
        fail(what, rc);
    const char *msg = kvz_last_error();
    if (!msg || !msg[0])
        fail("a failure without a message", rc);
}

#endif
