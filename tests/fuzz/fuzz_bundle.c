/*
 * fuzz_bundle.c — libFuzzer target for the bundle reader (format/bundle.h):
 * the archive layer (libarchive: tar headers, zstd), the JSON manifest, the
 * entry checks and the artifacts inside. Any input must be read to an OK or a
 * clean error (format, range, unsupported, out of memory), with the limits
 * kept small so that a declared size cannot make the reader allocate much. A
 * bundle that passes must hand every listed file to the callbacks exactly once.
 */
#include "common/error.h"
#include "format/bundle.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct counts {
    size_t prefixes, artifacts, manifests;
} counts;

static int on_manifest(void *ctx, const kvz_bundle_manifest *m)
{
    ((counts *)ctx)->manifests++;
    return KVZ_OK;
}

static int on_prefix(void *ctx, const kvz_bundle_file *f, const kvz_artifact *a)
{
    ((counts *)ctx)->prefixes++;
    return KVZ_OK;
}

static int on_artifact(void *ctx, const kvz_bundle_file *f, const kvz_artifact *a)
{
    ((counts *)ctx)->artifacts++;
    return KVZ_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    counts c = {0};
    kvz_bundle_visitor v = {on_manifest, on_prefix, on_artifact, &c};
    kvz_bundle_limits lim = {1u << 22, 1u << 20};
    kvz_bundle_manifest m;
    int rc = kvz_bundle_read_memory(data, size, &lim, &v, &m);
    if (rc == KVZ_OK) {
        if (c.manifests != 1 || c.prefixes != m.n_prefixes || c.artifacts != m.n_artifacts) {
            fprintf(stderr, "fuzz_bundle: a passing bundle's callbacks do not match its manifest\n");
            abort();
        }
        kvz_bundle_manifest_free(&m);
    } else if (rc != KVZ_ERR_FORMAT && rc != KVZ_ERR_RANGE && rc != KVZ_ERR_UNSUPPORTED && rc != KVZ_ERR_NOMEM) {
        fprintf(stderr, "fuzz_bundle: unexpected status %d (%s)\n", rc, kvz_last_error());
        abort();
    }
    return 0;
}
