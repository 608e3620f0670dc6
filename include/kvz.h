/*
 * kvz.h — the public contract of libkvz.
 *
 * Conventions (kept by every public function):
 *   - functions return an int status: KVZ_OK (0) on success, a negative
 *     kvz_status on failure; results come back through out-parameters;
 *   - after a failure, kvz_last_error() returns a message for this thread that
 *     names what was wrong (file, tensor, offset...); kvz_strerror() gives the
 *     generic text of a code;
 *   - handles are opaque and come in open/close (or new/free) pairs.
 *
 * The status enum is append-only: new codes are added at the end, existing
 * values never change.
 */
#ifndef KVZ_H
#define KVZ_H

#ifdef __cplusplus
extern "C" {
#endif

#define KVZ_VERSION_MAJOR 0
#define KVZ_VERSION_MINOR 1
#define KVZ_VERSION_PATCH 0
#define KVZ_VERSION_STRING "0.1.0"

typedef enum kvz_status {
    KVZ_OK = 0,
    KVZ_ERR_ARG = -1,            /* invalid argument from the caller */
    KVZ_ERR_NOMEM = -2,          /* an allocation failed */
    KVZ_ERR_IO = -3,             /* open/read/write/mmap failed */
    KVZ_ERR_FORMAT = -4,         /* input is malformed, truncated or corrupt */
    KVZ_ERR_UNSUPPORTED = -5,    /* well-formed but not supported (type, arch, version) */
    KVZ_ERR_MODEL_MISMATCH = -6, /* data made for another model */
    KVZ_ERR_NOT_FOUND = -7,      /* a named key, tensor or document is absent */
    KVZ_ERR_BACKEND = -8,        /* the compute device failed */
    KVZ_ERR_RANGE = -9,          /* a size or position beyond a limit (context full) */
    KVZ_ERR_INTERNAL = -10,      /* a broken invariant: a bug in kvz */
} kvz_status;

/* Generic text for a status code; never NULL. */
const char *kvz_strerror(int status);

/* The detailed message of the most recent failure on this thread ("" if none). */
const char *kvz_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* KVZ_H */
