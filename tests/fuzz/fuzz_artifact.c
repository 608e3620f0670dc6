/*
 * fuzz_artifact.c — libFuzzer target for the .kvz artifact decoder
 * (format/artifact.h): kvz_artifact_open, kvz_artifact_verify and every
 * reader (tokens, kept counts, each (layer, head)'s positions, keys, values).
 *
 * Every section, the table, the header and the whole file carry xxh3
 * checksums, so almost every mutation of a real artifact is refused by the
 * first checksum test. Each input is therefore decoded twice: as it is (the
 * checksum and header checks), then, when it starts with the magic, as a copy
 * whose size field, trailer and checksums were recomputed, so mutations reach
 * the table, manifest, codec and quantizer code behind them. The reader
 * ignores the minor version (header bytes 10-11); the harness reads two of
 * its bits: bit 0 leaves the sections' checksums as they are, bit 1 the
 * table's, so the checks behind an intact header are fuzzed too.
 *
 * The harness allocates what the artifact says it needs, capped (a hostile
 * header must not make the *harness* run out of memory); allocations inside
 * the library are not capped: libFuzzer's -rss_limit_mb / malloc limit
 * reports an absurd one as a crash.
 */
#define FUZZ_TARGET "fuzz_artifact"
#include "tests/fuzz/fuzz_util.h"
#include "common/error.h"
#include "format/artifact.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEADER_BYTES 64
#define ENTRY_BYTES 48
#define TRAILER_BYTES 16
#define HARNESS_CAP ((size_t)64 << 20) /* bytes the harness allocates per buffer */

static const uint8_t MAGIC[8] = {'K', 'V', 'Z', 'A', 'R', 'T', '\r', '\n'};
static const uint8_t TRAILER[8] = {'K', 'V', 'Z', 'E', 'N', 'D', 0, 0};

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void *alloc_capped(uint64_t bytes)
{
    if (bytes > HARNESS_CAP)
        return NULL;
    return malloc(bytes ? (size_t)bytes : 1);
}

static void exercise(const uint8_t *data, size_t size)
{
    kvz_artifact a;
    int rc = kvz_artifact_open(&a, data, size);
    if (rc != KVZ_OK) { /* documented: FORMAT or UNSUPPORTED (NOMEM aside) */
        if (rc == KVZ_ERR_NOT_FOUND)
            fail("kvz_artifact_open failed with an undocumented status", rc);
        check_failure("kvz_artifact_open", rc);
        return;
    }
    const kvz_manifest *m = &a.manifest;
    if (a.n_sections == 0 || m->n_tokens == 0 || m->model.n_layers == 0 || m->model.n_kv_heads == 0 ||
        m->model.head_dim == 0)
        fail("open accepted an empty shape", rc);

    /* the table: every entry is found again, identical (no duplicates) */
    for (uint32_t i = 0; i < a.n_sections; i++) {
        kvz_section s, t;
        kvz_artifact_section_at(&a, i, &s);
        if (kvz_artifact_find(&a, s.kind, s.layer, s.head, &t) != KVZ_OK || memcmp(&s, &t, sizeof s) != 0)
            fail("a table entry is not found again", KVZ_ERR_INTERNAL);
    }

    int verified = kvz_artifact_verify(&a);
    if (verified != KVZ_OK)
        check_failure("kvz_artifact_verify", verified);

    int32_t *tokens = alloc_capped((uint64_t)m->n_tokens * 4);
    if (tokens) {
        rc = kvz_artifact_read_tokens(&a, tokens);
        if (rc != KVZ_OK)
            check_failure("kvz_artifact_read_tokens", rc);
        else
            for (uint32_t i = 0; i < m->n_tokens; i++)
                if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->model.vocab)
                    fail("read_tokens returned a token outside the vocabulary", rc);
        if (verified == KVZ_OK && rc != KVZ_OK)
            fail("verify passed but read_tokens failed", rc);
        free(tokens);
    }

    for (uint32_t l = 0; l < m->model.n_layers; l++)
        for (uint32_t h = 0; h < m->model.n_kv_heads; h++) {
            uint32_t n = 0;
            rc = kvz_artifact_kept(&a, (uint16_t)l, (uint16_t)h, &n);
            if (rc != KVZ_OK) /* open checked that every head has its sections */
                fail("kvz_artifact_kept failed on an opened artifact", rc);
            if (n == 0 || n > m->n_tokens)
                fail("kept count out of range", KVZ_ERR_INTERNAL);
            uint32_t *pos = alloc_capped((uint64_t)n * 4);
            float *k = alloc_capped((uint64_t)n * m->model.head_dim * 4);
            float *v = alloc_capped((uint64_t)n * m->model.head_dim * 4);
            if (pos) {
                /* positions only, then everything */
                rc = kvz_artifact_read_head(&a, (uint16_t)l, (uint16_t)h, pos, NULL, NULL);
                if (rc != KVZ_OK)
                    check_failure("kvz_artifact_read_head (positions)", rc);
                else
                    for (uint32_t i = 0; i < n; i++)
                        if (pos[i] >= m->n_tokens || (i && pos[i] <= pos[i - 1]))
                            fail("read_head returned positions out of order or range", rc);
            }
            if (pos && k && v) {
                rc = kvz_artifact_read_head(&a, (uint16_t)l, (uint16_t)h, pos, k, v);
                if (rc != KVZ_OK)
                    check_failure("kvz_artifact_read_head", rc);
                if (verified == KVZ_OK && rc != KVZ_OK)
                    fail("verify passed but read_head failed", rc);
            }
            free(pos);
            free(k);
            free(v);
        }

    /* the model check, both ways (the mismatch message describes both) */
    kvz_model_identity other = m->model;
    if (kvz_artifact_check_model(&a, NULL, &other) != KVZ_OK)
        fail("check_model refused the artifact's own model", KVZ_ERR_INTERNAL);
    other.fingerprint ^= 1;
    rc = kvz_artifact_check_model(&a, NULL, &other);
    if (rc != KVZ_ERR_MODEL_MISMATCH)
        fail("check_model accepted another model", rc);
}

/* Recompute what a writer would have: the size field, the trailer, every
 * in-bounds section's checksum, the table's, the header's and the file's
 * (but see the minor version's bits above). */
static void fix_checksums(uint8_t *d, size_t size)
{
    wr64(d + 16, size);
    memcpy(d + size - TRAILER_BYTES, TRAILER, 8);
    uint64_t n = rd32(d + 32), data_end = size - TRAILER_BYTES;
    int keep_sections = d[10] & 1, keep_table = d[10] & 2;
    if (n <= (data_end - HEADER_BYTES) / ENTRY_BYTES) {
        for (uint64_t i = 0; i < n && !keep_sections; i++) {
            uint8_t *e = d + HEADER_BYTES + i * ENTRY_BYTES;
            uint64_t off = rd64(e + 8), len = rd64(e + 16);
            if (off <= data_end && len <= data_end - off)
                wr64(e + 40, XXH3_64bits(d + off, (size_t)len));
        }
        if (!keep_table)
            wr64(d + 40, XXH3_64bits(d + HEADER_BYTES, (size_t)n * ENTRY_BYTES));
    }
    wr64(d + 56, XXH3_64bits(d, 56));
    wr64(d + size - 8, XXH3_64bits(d, size - 8));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    exercise(data, size);
    if (size >= HEADER_BYTES + TRAILER_BYTES && memcmp(data, MAGIC, 8) == 0) {
        uint8_t *copy = malloc(size);
        if (!copy)
            return 0;
        memcpy(copy, data, size);
        fix_checksums(copy, size);
        if (memcmp(copy, data, size) != 0)
            exercise(copy, size);
        free(copy);
    }
    kvz_error_clear();
    return 0;
}
