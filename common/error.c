/* error.c — status texts and the per-thread failure message. */
/* (no _FORTIFY_SOURCE: kvz_errorf is compiled for the baseline x86-64, and
 * GCC does not inline the fortified vsnprintf and memcpy, built for MARCH,
 * into it; cpu_check.c says more) */
#undef _FORTIFY_SOURCE
#include "common/error.h"
#include "common/cpu_check.h"

#include <stdarg.h>
#include <string.h>

#define KVZ_ERROR_MESSAGE_MAX 1024

static _Thread_local char error_message[KVZ_ERROR_MESSAGE_MAX];

const char *kvz_strerror(int status)
{
    switch (status) {
    case KVZ_OK: return "success";
    case KVZ_ERR_ARG: return "invalid argument";
    case KVZ_ERR_NOMEM: return "out of memory";
    case KVZ_ERR_IO: return "input/output error";
    case KVZ_ERR_FORMAT: return "malformed or corrupt data";
    case KVZ_ERR_UNSUPPORTED: return "unsupported";
    case KVZ_ERR_MODEL_MISMATCH: return "made for another model";
    case KVZ_ERR_NOT_FOUND: return "not found";
    case KVZ_ERR_BACKEND: return "compute device error";
    case KVZ_ERR_RANGE: return "beyond a limit";
    case KVZ_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

/* kvz_cpu_check reports through these two: on a CPU without MARCH's
 * instructions, they must not use them (va_copy was an AVX move). */
KVZ_BASELINE const char *kvz_last_error(void) { return error_message; }

void kvz_error_clear(void) { error_message[0] = '\0'; }

KVZ_BASELINE int kvz_errorf(int status, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof error_message) {
        /* a long path in it: its start and its end kept, where the reason is */
        char *whole = malloc((size_t)n + 1);
        if (whole && vsnprintf(whole, (size_t)n + 1, fmt, again) == n) {
            size_t head = sizeof error_message / 3, from = (size_t)n - (sizeof error_message - head - 4);
            while (head > 0 && ((unsigned char)whole[head] & 0xc0) == 0x80)
                head--; /* both cuts between UTF-8 characters */
            while (from < (size_t)n && ((unsigned char)whole[from] & 0xc0) == 0x80)
                from++;
            memcpy(error_message, whole, head);
            memcpy(error_message + head, "...", 3);
            memcpy(error_message + head + 3, whole + from, (size_t)n - from + 1);
        }
        free(whole);
    }
    va_end(again);
    return status;
}

int kvz_error_context(int status, const char *fmt, ...)
{
    char previous[KVZ_ERROR_MESSAGE_MAX];
    memcpy(previous, error_message, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof error_message && previous[0]) {
        /* a chain longer than the buffer keeps its newest part */
        int room = (int)(sizeof error_message - (size_t)n) - 3; /* ": " and the terminator */
        if (room > 0)
            snprintf(error_message + n, (size_t)room + 3, ": %.*s", room, previous);
    }
    return status;
}
