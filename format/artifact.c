/* artifact.c — .kvz layout, checksums and section access (format/SPEC.md). */
#include "format/artifact.h"
#include "common/error.h"
#include "format/codec.h"
#include "format/quant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static const uint8_t MAGIC[8] = {'K', 'V', 'Z', 'A', 'R', 'T', '\r', '\n'};
static const uint8_t TRAILER[8] = {'K', 'V', 'Z', 'E', 'N', 'D', 0, 0};
#define HEADER_BYTES 64
#define ENTRY_BYTES 48
#define TRAILER_BYTES 16
/* zstd output per input byte at most: a 4-byte RLE block per 128 KiB */
#define ZSTD_MAX_EXPANSION 32768u

/* ---- little-endian fields ---------------------------------------------- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v), wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v), wr32(p + 4, (uint32_t)(v >> 32)); }

/* ---- writing -------------------------------------------------------------- */

typedef struct pending {
    kvz_section s;
    kvz_encoded enc;
} pending;

struct kvz_artifact_writer {
    int level;
    pending *items;
    size_t n, cap;
};

kvz_artifact_writer *kvz_artifact_writer_new(int zstd_level)
{
    kvz_artifact_writer *w = calloc(1, sizeof *w);
    if (w)
        w->level = zstd_level;
    return w;
}

void kvz_artifact_writer_free(kvz_artifact_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->items[i].enc.data);
    free(w->items);
    free(w);
}

/* Take ownership of `enc` as section (kind, layer, head). */
static int add(kvz_artifact_writer *w, uint16_t kind, uint16_t layer, uint16_t head, uint64_t raw,
               uint32_t count, uint32_t aux, kvz_encoded *enc)
{
    pending *grown = kvz_grow(w->items, &w->cap, w->n, sizeof *grown);
    if (!grown) {
        free(enc->data);
        return KVZ_ERR_NOMEM;
    }
    w->items = grown;
    pending *p = &w->items[w->n++];
    memset(p, 0, sizeof *p);
    p->s = (kvz_section){.kind = kind, .layer = layer, .head = head, .transform = enc->transform,
                         .compressor = enc->compressor, .stored_bytes = enc->size, .raw_bytes = raw,
                         .count = count, .aux = aux};
    p->enc = *enc;
    return KVZ_OK;
}

static int add_bytes(kvz_artifact_writer *w, uint16_t kind, uint16_t layer, uint16_t head,
                     const void *raw, size_t size, int elem, uint32_t count, uint32_t aux)
{
    kvz_encoded enc;
    KVZ_TRY(kvz_encode_bytes(raw, size, elem, w->level, &enc));
    return add(w, kind, layer, head, size, count, aux, &enc);
}

int kvz_artifact_add_tokens(kvz_artifact_writer *w, const int32_t *tokens, uint32_t n)
{
    return add_bytes(w, KVZ_SECTION_TOKENS, KVZ_SECTION_WHOLE, KVZ_SECTION_WHOLE, tokens,
                     (size_t)n * 4, 4, n, 0);
}

/* One side's payload and scale sections: f16 payloads compress better
 * byte-shuffled; packed codes are bytes. */
static int encode_side(int level, const kvz_quant_shape *qs, const uint8_t *payload, size_t payload_bytes,
                       const uint16_t *scales, size_t pairs, kvz_encoded *data, kvz_encoded *sc)
{
    int rc = kvz_encode_bytes(payload, payload_bytes, qs->bits == 16 || qs->n16 == qs->n ? 2 : 1, level, data);
    if (rc == KVZ_OK && pairs)
        rc = kvz_encode_bytes(scales, pairs * 4, 2, level, sc);
    return rc;
}

int kvz_artifact_head_shape(const kvz_manifest *m, uint32_t n, uint32_t n16, kvz_head_codes *hc)
{
    memset(hc, 0, sizeof *hc);
    if (n == 0 || n16 > n)
        return kvz_errorf(KVZ_ERR_ARG, "%u kept pairs (%u in f16)", n, n16);
    hc->n = n;
    hc->keys = (kvz_quant_shape){n, n16, m->model.head_dim, m->bits, m->key_group};
    hc->values = (kvz_quant_shape){n, n16, m->model.head_dim, m->bits, m->value_group};
    for (int is_keys = 1; is_keys >= 0; is_keys--) {
        const kvz_quant_shape *qs = is_keys ? &hc->keys : &hc->values;
        if (!kvz_quant_shape_valid(qs, is_keys))
            return kvz_errorf(KVZ_ERR_ARG, "cannot quantize %u x %u to %u bits in groups of %u", n, qs->d,
                              qs->bits, qs->group);
    }
    hc->key_bytes = kvz_quant_payload_bytes(&hc->keys);
    hc->value_bytes = kvz_quant_payload_bytes(&hc->values);
    hc->key_pairs = kvz_quant_scale_pairs(&hc->keys, 1);
    hc->value_pairs = kvz_quant_scale_pairs(&hc->values, 0);
    return KVZ_OK;
}

void kvz_head_sections_free(kvz_head_sections *hs)
{
    free(hs->positions.data);
    free(hs->keys.data);
    free(hs->values.data);
    free(hs->key_scales.data);
    free(hs->value_scales.data);
    memset(hs, 0, sizeof *hs);
}

int kvz_artifact_encode_codes(const kvz_manifest *m, int zstd_level, const uint32_t *positions,
                              const kvz_head_codes *hc, const uint8_t *key_payload, const uint16_t *key_scales,
                              const uint8_t *value_payload, const uint16_t *value_scales, kvz_head_sections *hs)
{
    memset(hs, 0, sizeof *hs);
    const uint32_t n = hc->n;
    for (uint32_t i = 0; i < n; i++)
        if (positions[i] >= m->n_tokens || (i && positions[i] <= positions[i - 1]))
            return kvz_errorf(KVZ_ERR_ARG, "positions not increasing within %u tokens", m->n_tokens);
    hs->n = n;
    hs->n16 = hc->keys.n16;
    hs->raw_keys = hc->key_bytes, hs->raw_values = hc->value_bytes;
    hs->key_pairs = (uint32_t)hc->key_pairs, hs->value_pairs = (uint32_t)hc->value_pairs;
    int rc = kvz_encode_positions(positions, n, m->n_tokens, zstd_level, &hs->positions);
    if (rc == KVZ_OK)
        rc = encode_side(zstd_level, &hc->keys, key_payload, hc->key_bytes, key_scales, hc->key_pairs, &hs->keys,
                         &hs->key_scales);
    if (rc == KVZ_OK)
        rc = encode_side(zstd_level, &hc->values, value_payload, hc->value_bytes, value_scales, hc->value_pairs,
                         &hs->values, &hs->value_scales);
    if (rc != KVZ_OK)
        kvz_head_sections_free(hs);
    return rc;
}

int kvz_artifact_encode_head(const kvz_manifest *m, int zstd_level, const uint32_t *positions,
                             uint32_t n, uint32_t n16, const float *keys, const float *values,
                             kvz_head_sections *hs)
{
    memset(hs, 0, sizeof *hs);
    kvz_head_codes hc;
    KVZ_TRY(kvz_artifact_head_shape(m, n, n16, &hc));
    uint8_t *kp = malloc(hc.key_bytes), *vp = malloc(hc.value_bytes);
    uint16_t *ks = malloc(hc.key_pairs * 4 + 4), *vs = malloc(hc.value_pairs * 4 + 4);
    int rc = kp && vp && ks && vs ? kvz_quantize(keys, &hc.keys, 1, kp, ks)
                                  : kvz_errorf(KVZ_ERR_NOMEM, "out of memory quantizing");
    if (rc == KVZ_OK)
        rc = kvz_quantize(values, &hc.values, 0, vp, vs);
    if (rc == KVZ_OK)
        rc = kvz_artifact_encode_codes(m, zstd_level, positions, &hc, kp, ks, vp, vs, hs);
    free(kp), free(vp), free(ks), free(vs);
    return rc;
}

int kvz_artifact_add_encoded(kvz_artifact_writer *w, uint16_t layer, uint16_t head, kvz_head_sections *hs)
{
    struct {
        uint16_t kind;
        kvz_encoded *enc;
        uint64_t raw;
        uint32_t count, aux;
    } parts[5] = {
        {KVZ_SECTION_POSITIONS, &hs->positions, (uint64_t)hs->n * 4, hs->n, 0},
        {KVZ_SECTION_KEYS, &hs->keys, hs->raw_keys, hs->n, hs->n16},
        {KVZ_SECTION_VALUES, &hs->values, hs->raw_values, hs->n, hs->n16},
        {KVZ_SECTION_KEY_SCALES, &hs->key_scales, (uint64_t)hs->key_pairs * 4, hs->key_pairs, 0},
        {KVZ_SECTION_VALUE_SCALES, &hs->value_scales, (uint64_t)hs->value_pairs * 4, hs->value_pairs, 0},
    };
    int rc = KVZ_OK;
    for (int i = 0; i < 5; i++) {
        if (rc == KVZ_OK && parts[i].count) /* add() takes the data, or frees it on failure */
            rc = add(w, parts[i].kind, layer, head, parts[i].raw, parts[i].count, parts[i].aux, parts[i].enc);
        else
            free(parts[i].enc->data);
        parts[i].enc->data = NULL;
    }
    return rc;
}

int kvz_artifact_add_head(kvz_artifact_writer *w, const kvz_manifest *m, uint16_t layer,
                          uint16_t head, const uint32_t *positions, uint32_t n, uint32_t n16,
                          const float *keys, const float *values)
{
    kvz_head_sections hs;
    int rc = kvz_artifact_encode_head(m, w->level, positions, n, n16, keys, values, &hs);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "layer %u head %u", layer, head);
    return kvz_artifact_add_encoded(w, layer, head, &hs);
}

/* The manifest section of encoded `records` (freed here), added last. */
static int add_manifest(kvz_artifact_writer *w, kvz_buffer *records)
{
    kvz_encoded enc;
    int rc = records->failed ? kvz_errorf(KVZ_ERR_NOMEM, "out of memory encoding the manifest")
                             : kvz_encode_bytes(records->data, records->len, 1, w->level, &enc);
    size_t raw = records->len;
    kvz_buffer_free(records);
    KVZ_TRY(rc);
    return add(w, KVZ_SECTION_MANIFEST, KVZ_SECTION_WHOLE, KVZ_SECTION_WHOLE, raw, 0, 0, &enc);
}

/* Lay out the header (stating version 1.`minor`), the table of `items` in
 * their order, their payloads contiguous in that order, and the trailer (SPEC
 * §2), each item's offset and checksum set on the way: *out is malloc'ed. */
static int lay_out(pending *items, size_t n, uint16_t minor, uint8_t **out, size_t *size)
{
    uint64_t total = HEADER_BYTES + (uint64_t)n * ENTRY_BYTES;
    for (size_t i = 0; i < n; i++) {
        items[i].s.offset = total;
        total += items[i].s.stored_bytes;
    }
    total += TRAILER_BYTES;
    uint8_t *buf = calloc(1, total);
    if (!buf)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory laying out an artifact of %llu bytes",
                          (unsigned long long)total);
    uint8_t *table = buf + HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        kvz_section *s = &items[i].s;
        memcpy(buf + s->offset, items[i].enc.data, s->stored_bytes);
        s->checksum = XXH3_64bits(buf + s->offset, s->stored_bytes);
        uint8_t *e = table + i * ENTRY_BYTES;
        wr16(e, s->kind), wr16(e + 2, s->layer), wr16(e + 4, s->head);
        e[6] = s->transform, e[7] = s->compressor;
        wr64(e + 8, s->offset), wr64(e + 16, s->stored_bytes), wr64(e + 24, s->raw_bytes);
        wr32(e + 32, s->count), wr32(e + 36, s->aux), wr64(e + 40, s->checksum);
    }
    memcpy(buf, MAGIC, 8);
    wr16(buf + 8, KVZ_FORMAT_VERSION_MAJOR);
    wr16(buf + 10, minor);
    wr32(buf + 12, HEADER_BYTES);
    wr64(buf + 16, total);
    wr64(buf + 24, HEADER_BYTES);
    wr32(buf + 32, (uint32_t)n);
    wr32(buf + 36, 0);
    wr64(buf + 40, XXH3_64bits(table, n * ENTRY_BYTES));
    wr64(buf + 56, XXH3_64bits(buf, 56));
    memcpy(buf + total - TRAILER_BYTES, TRAILER, 8);
    wr64(buf + total - 8, XXH3_64bits(buf, total - 8));
    *out = buf;
    *size = total;
    return KVZ_OK;
}

int kvz_artifact_writer_finish(kvz_artifact_writer *w, const kvz_manifest *m, uint8_t **out,
                               size_t *size)
{
    *out = NULL;
    *size = 0;
    for (uint32_t l = 0; l < m->model.n_layers; l++)
        for (uint32_t h = 0; h < m->model.n_kv_heads; h++) {
            int found = 0;
            for (size_t i = 0; i < w->n && !found; i++)
                found = w->items[i].s.kind == KVZ_SECTION_POSITIONS && w->items[i].s.layer == l &&
                        w->items[i].s.head == h;
            if (!found)
                return kvz_errorf(KVZ_ERR_ARG, "artifact: layer %u head %u was never added", l, h);
        }
    kvz_buffer manifest = {0};
    kvz_manifest_encode(m, &manifest);
    KVZ_TRY(add_manifest(w, &manifest));
    /* the manifest goes first in the table */
    pending tmp = w->items[w->n - 1];
    memmove(w->items + 1, w->items, (w->n - 1) * sizeof *w->items);
    w->items[0] = tmp;
    return lay_out(w->items, w->n, KVZ_FORMAT_VERSION_MINOR, out, size);
}

/* ---- reading -------------------------------------------------------------- */

void kvz_artifact_section_at(const kvz_artifact *a, uint32_t i, kvz_section *s)
{
    const uint8_t *e = a->data + HEADER_BYTES + (size_t)i * ENTRY_BYTES;
    *s = (kvz_section){.kind = rd16(e), .layer = rd16(e + 2), .head = rd16(e + 4),
                       .transform = e[6], .compressor = e[7], .offset = rd64(e + 8),
                       .stored_bytes = rd64(e + 16), .raw_bytes = rd64(e + 24), .count = rd32(e + 32),
                       .aux = rd32(e + 36), .checksum = rd64(e + 40)};
}

int kvz_artifact_find(const kvz_artifact *a, uint16_t kind, uint16_t layer, uint16_t head,
                      kvz_section *s)
{
    for (uint32_t i = 0; i < a->n_sections; i++) {
        kvz_artifact_section_at(a, i, s);
        if (s->kind == kind && s->layer == layer && s->head == head)
            return KVZ_OK;
    }
    return kvz_errorf(KVZ_ERR_NOT_FOUND, "artifact has no section %u for layer %u head %u", kind,
                      layer, head);
}

/* Stored bytes of a section, checksum verified. */
static int section_bytes(const kvz_artifact *a, const kvz_section *s, const uint8_t **p)
{
    *p = a->data + s->offset;
    if (XXH3_64bits(*p, s->stored_bytes) != s->checksum)
        return kvz_errorf(KVZ_ERR_FORMAT, "section %u (layer %u, head %u) fails its checksum",
                          s->kind, s->layer, s->head);
    return KVZ_OK;
}

static int decode_section(const kvz_artifact *a, const kvz_section *s, void *raw)
{
    const uint8_t *p;
    KVZ_TRY(section_bytes(a, s, &p));
    int rc = kvz_decode_bytes(p, s->stored_bytes, s->transform, s->compressor, raw, s->raw_bytes);
    if (rc != KVZ_OK)
        kvz_error_context(rc, "section %u (layer %u, head %u)", s->kind, s->layer, s->head);
    return rc;
}

/* The records of manifest section ms, decoded into *raw (malloc'ed). */
static int manifest_records(const kvz_artifact *a, const kvz_section *ms, uint8_t **raw)
{
    *raw = malloc(ms->raw_bytes ? ms->raw_bytes : 1);
    if (!*raw)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading a manifest");
    int rc = decode_section(a, ms, *raw);
    if (rc != KVZ_OK) {
        free(*raw);
        *raw = NULL;
    }
    return rc;
}

/* Structural checks of one table entry against the header and the manifest. */
static int check_entry(const kvz_artifact *a, const kvz_section *s, uint32_t i, uint64_t data_end)
{
    if (s->offset < HEADER_BYTES + (uint64_t)a->n_sections * ENTRY_BYTES || s->offset > data_end ||
        s->stored_bytes > data_end - s->offset)
        return kvz_errorf(KVZ_ERR_FORMAT, "table entry %u: bytes [%llu, +%llu) lie outside the payload area",
                          i, (unsigned long long)s->offset, (unsigned long long)s->stored_bytes);
    if (!kvz_section_kind_known(s->kind)) {
        /* SPEC §9: a later minor may add kinds a reader skips; in a minor this
         * reader knows, an unknown kind is damage */
        if (rd16(a->data + 10) <= KVZ_FORMAT_VERSION_MINOR)
            return kvz_errorf(KVZ_ERR_FORMAT, "table entry %u: a version %u.%u artifact has no section kind %u", i,
                              rd16(a->data + 8), rd16(a->data + 10), s->kind);
        if (s->transform > KVZ_TRANSFORM_BITMAP)
            return kvz_errorf(KVZ_ERR_UNSUPPORTED, "table entry %u: unknown transform %u", i, s->transform);
    }
    if (s->raw_bytes > (1ull << 36))
        return kvz_errorf(KVZ_ERR_FORMAT, "table entry %u: absurd size %llu", i,
                          (unsigned long long)s->raw_bytes);
    if (s->compressor != KVZ_COMPRESSOR_NONE && s->compressor != KVZ_COMPRESSOR_ZSTD)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "table entry %u: unknown compressor %u", i, s->compressor);
    /* Readers allocate what the table declares before decoding: refuse a
     * declared size the stored bytes cannot hold, so a few hostile bytes
     * cannot ask for gigabytes. Stored as is, a payload is its raw bytes; zstd
     * expands at most ZSTD_MAX_EXPANSION times; positions take at least a bit
     * each (bitmap). */
    uint64_t most = s->stored_bytes * (s->compressor == KVZ_COMPRESSOR_ZSTD ? ZSTD_MAX_EXPANSION : 1);
    if (s->kind == KVZ_SECTION_POSITIONS ? s->count > most * 8
                                          : s->compressor == KVZ_COMPRESSOR_NONE ? s->raw_bytes != most
                                                                                 : s->raw_bytes > most)
        return kvz_errorf(KVZ_ERR_FORMAT, "table entry %u: %llu stored bytes cannot hold the %llu %s it "
                          "declares", i, (unsigned long long)s->stored_bytes,
                          (unsigned long long)(s->kind == KVZ_SECTION_POSITIONS ? s->count : s->raw_bytes),
                          s->kind == KVZ_SECTION_POSITIONS ? "positions" : "bytes");
    return KVZ_OK;
}

static int check_overlaps(const kvz_artifact *a)
{
    /* payloads are written in table order; require it, which also rules out overlap */
    uint64_t next = HEADER_BYTES + (uint64_t)a->n_sections * ENTRY_BYTES;
    for (uint32_t i = 0; i < a->n_sections; i++) {
        kvz_section s = {0};
        kvz_artifact_section_at(a, i, &s);
        if (s.offset != next)
            return kvz_errorf(KVZ_ERR_FORMAT, "table entry %u starts at %llu, expected %llu", i,
                              (unsigned long long)s.offset, (unsigned long long)next);
        next += s.stored_bytes;
    }
    if (next != a->size - TRAILER_BYTES)
        return kvz_errorf(KVZ_ERR_FORMAT, "sections end at %llu, the trailer starts at %zu",
                          (unsigned long long)next, a->size - TRAILER_BYTES);
    return KVZ_OK;
}

#define PER_HEAD_KINDS (KVZ_SECTION_VALUE_SCALES - KVZ_SECTION_POSITIONS + 1)

/* The slot of a known per-head section in a (layer, head, kind) index. */
static size_t head_slot(const kvz_manifest *m, uint16_t kind, uint32_t layer, uint32_t head)
{
    return ((size_t)layer * m->model.n_kv_heads + head) * PER_HEAD_KINDS + (kind - KVZ_SECTION_POSITIONS);
}

/* A (layer, head) section through the index (its table entry + 1, 0: none), not a
 * scan of the table per lookup: the checks below look up every head's five
 * sections, which scanned made opening an artifact quadratic in its heads
 * (most of `kvz stats`, verify and pack on a store of many small documents).
 * No index (a table too short for the heads: damaged): scanned. */
static int head_section(const kvz_artifact *a, const uint32_t *index, uint16_t kind, uint32_t l, uint32_t h,
                        kvz_section *s)
{
    if (!index) {
        int found = kvz_artifact_find(a, kind, (uint16_t)l, (uint16_t)h, s) == KVZ_OK;
        if (!found)
            kvz_error_clear();
        return found;
    }
    uint32_t at = index[head_slot(&a->manifest, kind, l, h)];
    if (at)
        kvz_artifact_section_at(a, at - 1, s);
    return at != 0;
}

/* Index the known per-head sections; any section appearing twice is damage.
 * The others (whole-artifact ones, kinds of a later minor) are a handful:
 * compared pairwise, as every section was (and all of them without an index). */
static int index_sections(const kvz_artifact *a, uint32_t *index)
{
    const kvz_manifest *m = &a->manifest;
    for (uint32_t i = 0; i < a->n_sections; i++) {
        kvz_section s = {0}, t = {0};
        kvz_artifact_section_at(a, i, &s);
        int per_head = s.kind >= KVZ_SECTION_POSITIONS, known = kvz_section_kind_known(s.kind);
        if (known && per_head && (s.layer >= m->model.n_layers || s.head >= m->model.n_kv_heads))
            return kvz_errorf(KVZ_ERR_FORMAT, "section %u names layer %u head %u of a %u x %u model",
                              s.kind, s.layer, s.head, m->model.n_layers, m->model.n_kv_heads);
        if (known && !per_head && (s.layer != KVZ_SECTION_WHOLE || s.head != KVZ_SECTION_WHOLE))
            return kvz_errorf(KVZ_ERR_FORMAT, "section %u must cover the whole artifact", s.kind);
        int twice = 0;
        if (index && known && per_head) {
            uint32_t *slot = &index[head_slot(m, s.kind, s.layer, s.head)];
            twice = *slot != 0;
            *slot = i + 1;
        }
        for (uint32_t j = 0; j < i && !twice && !(index && known && per_head); j++) {
            kvz_artifact_section_at(a, j, &t);
            twice = t.kind == s.kind && t.layer == s.layer && t.head == s.head;
        }
        if (twice)
            return kvz_errorf(KVZ_ERR_FORMAT, "section %u of layer %u head %u appears twice", s.kind,
                              s.layer, s.head);
    }
    return KVZ_OK;
}

/* Each (layer, head) has its sections with consistent counts. */
static int check_head_sections(const kvz_artifact *a, const uint32_t *index)
{
    const kvz_manifest *m = &a->manifest;
    kvz_section s = {0};
    if (kvz_artifact_find(a, KVZ_SECTION_TOKENS, KVZ_SECTION_WHOLE, KVZ_SECTION_WHOLE, &s) != KVZ_OK)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact has no token section");
    if (s.count != m->n_tokens || s.raw_bytes != (uint64_t)m->n_tokens * 4)
        return kvz_errorf(KVZ_ERR_FORMAT, "the token section holds %u ids for a %u-token document",
                          s.count, m->n_tokens);
    for (uint32_t l = 0; l < m->model.n_layers; l++)
        for (uint32_t h = 0; h < m->model.n_kv_heads; h++) {
            kvz_section p = {0}, k = {0}, v = {0};
            if (!head_section(a, index, KVZ_SECTION_POSITIONS, l, h, &p) ||
                !head_section(a, index, KVZ_SECTION_KEYS, l, h, &k) ||
                !head_section(a, index, KVZ_SECTION_VALUES, l, h, &v))
                return kvz_errorf(KVZ_ERR_FORMAT, "layer %u head %u lacks a section", l, h);
            kvz_quant_shape qk = {p.count, k.aux, m->model.head_dim, m->bits, m->key_group};
            kvz_quant_shape qv = {p.count, v.aux, m->model.head_dim, m->bits, m->value_group};
            if (p.count == 0 || p.count > m->n_tokens || p.raw_bytes != (uint64_t)p.count * 4 ||
                k.count != p.count || v.count != p.count || !kvz_quant_shape_valid(&qk, 1) ||
                !kvz_quant_shape_valid(&qv, 0) || k.raw_bytes != kvz_quant_payload_bytes(&qk) ||
                v.raw_bytes != kvz_quant_payload_bytes(&qv))
                return kvz_errorf(KVZ_ERR_FORMAT, "layer %u head %u: counts and sizes disagree", l, h);
            /* A head with no quantized pairs has no scale section (SPEC §4): one
             * there, even empty, is as misshapen as a missing one. */
            size_t pairs[2] = {kvz_quant_scale_pairs(&qk, 1), kvz_quant_scale_pairs(&qv, 0)};
            uint16_t kinds[2] = {KVZ_SECTION_KEY_SCALES, KVZ_SECTION_VALUE_SCALES};
            for (int i = 0; i < 2; i++) {
                kvz_section sc = {0};
                int found = head_section(a, index, kinds[i], l, h, &sc);
                if (found != (pairs[i] > 0) || (found && (sc.raw_bytes != pairs[i] * 4 || sc.count != pairs[i])))
                    return kvz_errorf(KVZ_ERR_FORMAT, "layer %u head %u: %s scales missing or misshapen", l, h,
                                      i == 0 ? "key" : "value");
            }
        }
    return KVZ_OK;
}

static int check_heads(const kvz_artifact *a)
{
    const kvz_manifest *m = &a->manifest;
    /* the manifest's shapes are bounded (1024 x 1024) and the index by the
     * table: one too short for three sections a head has none (some head
     * lacks one, found by scanning, as before) */
    size_t heads = (size_t)m->model.n_layers * m->model.n_kv_heads;
    uint32_t *index = NULL;
    if (heads * 3 <= a->n_sections && !(index = calloc(heads * PER_HEAD_KINDS, sizeof *index)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory checking an artifact");
    int rc = index_sections(a, index);
    if (rc == KVZ_OK)
        rc = check_head_sections(a, index);
    free(index);
    return rc;
}

int kvz_artifact_read(const char *path, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rbe");
    if (!fp)
        return kvz_errorf(errno == ENOENT ? KVZ_ERR_NOT_FOUND : KVZ_ERR_IO, "cannot open '%s': %s", path,
                          strerror(errno));
    uint8_t header[HEADER_BYTES];
    size_t got = fread(header, 1, sizeof header, fp);
    uint64_t stated = got == sizeof header ? rd64(header + 16) : 0;
    struct stat st;
    int rc = KVZ_OK;
    if (ferror(fp))
        rc = kvz_errorf(KVZ_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    else if (got < 8 || memcmp(header, MAGIC, 8) != 0)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "not a .kvz artifact (bad magic)");
    else if (got < sizeof header || XXH3_64bits(header, 56) != rd64(header + 56) ||
             stated < HEADER_BYTES + TRAILER_BYTES || stated > SIZE_MAX / 2)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "artifact header is cut short, fails its checksum or states no "
                        "size an artifact can have");
    else if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size != stated)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "artifact is %llu bytes but its header says %llu (truncated?)",
                        (unsigned long long)st.st_size, (unsigned long long)stated);
    /* the buffer grows as bytes arrive: a header is no promise that they will */
    size_t cap = stated < (1u << 20) ? (size_t)stated : (1u << 20), len = sizeof header;
    uint8_t *buf = rc == KVZ_OK ? malloc(cap) : NULL;
    if (rc == KVZ_OK && !buf)
        rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if (rc == KVZ_OK)
        memcpy(buf, header, sizeof header);
    while (rc == KVZ_OK && len < stated) {
        if (len == cap) {
            size_t grown_cap = cap > stated / 2 ? (size_t)stated : cap * 2;
            uint8_t *grown = realloc(buf, grown_cap);
            if (!grown) {
                rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading the %llu bytes '%s' states",
                                (unsigned long long)stated, path);
                break;
            }
            buf = grown, cap = grown_cap;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0)
            break;
    }
    if (rc == KVZ_OK && ferror(fp))
        rc = kvz_errorf(KVZ_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    else if (rc == KVZ_OK && len < stated)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "artifact ends after %zu of the %llu bytes its header states (truncated?)",
                        len, (unsigned long long)stated);
    else if (rc == KVZ_OK && fgetc(fp) != EOF)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "artifact goes on past the %llu bytes its header states",
                        (unsigned long long)stated);
    fclose(fp);
    if (rc != KVZ_OK) {
        free(buf);
        return rc;
    }
    *data = buf;
    *size = (size_t)stated;
    return KVZ_OK;
}

static int open_artifact(kvz_artifact *a, const void *data, size_t size, int whole_file)
{
    memset(a, 0, sizeof *a);
    const uint8_t *d = data;
    a->data = d;
    a->size = size;
    if (size < HEADER_BYTES + TRAILER_BYTES)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact of %zu bytes is too short to hold a header", size);
    if (memcmp(d, MAGIC, 8) != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "not a .kvz artifact (bad magic)");
    if (XXH3_64bits(d, 56) != rd64(d + 56))
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact header fails its checksum");
    if (rd16(d + 8) != KVZ_FORMAT_VERSION_MAJOR)
        return kvz_errorf(KVZ_ERR_UNSUPPORTED, "artifact format version %u.%u is not supported (this "
                          "kvz reads %u.x)", rd16(d + 8), rd16(d + 10), KVZ_FORMAT_VERSION_MAJOR);
    if (rd32(d + 12) != HEADER_BYTES || rd32(d + 36) != 0 || rd64(d + 24) != HEADER_BYTES)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact header has unknown flags or sizes");
    if (rd64(d + 16) != size)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact is %zu bytes but its header says %llu (truncated?)",
                          size, (unsigned long long)rd64(d + 16));
    if (memcmp(d + size - TRAILER_BYTES, TRAILER, 8) != 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact trailer is missing");
    if (whole_file && XXH3_64bits(d, size - 8) != rd64(d + size - 8))
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact fails its whole-file checksum (corrupt)");
    a->n_sections = rd32(d + 32);
    uint64_t data_end = size - TRAILER_BYTES;
    if (a->n_sections == 0 || a->n_sections > (data_end - HEADER_BYTES) / ENTRY_BYTES)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact table of %u entries does not fit", a->n_sections);
    if (XXH3_64bits(d + HEADER_BYTES, (size_t)a->n_sections * ENTRY_BYTES) != rd64(d + 40))
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact section table fails its checksum");
    for (uint32_t i = 0; i < a->n_sections; i++) {
        kvz_section s = {0};
        kvz_artifact_section_at(a, i, &s);
        KVZ_TRY(check_entry(a, &s, i, data_end));
    }
    KVZ_TRY(check_overlaps(a));
    kvz_section ms = {0};
    if (kvz_artifact_find(a, KVZ_SECTION_MANIFEST, KVZ_SECTION_WHOLE, KVZ_SECTION_WHOLE, &ms) != KVZ_OK)
        return kvz_errorf(KVZ_ERR_FORMAT, "artifact has no manifest section");
    if (ms.raw_bytes > (1u << 20))
        return kvz_errorf(KVZ_ERR_FORMAT, "manifest of %llu bytes is too large",
                          (unsigned long long)ms.raw_bytes);
    uint8_t *raw;
    KVZ_TRY(manifest_records(a, &ms, &raw));
    int rc = kvz_manifest_decode(raw, ms.raw_bytes, &a->manifest);
    free(raw);
    KVZ_TRY(rc);
    const kvz_manifest *m = &a->manifest;
    if (m->model.n_layers == 0 || m->model.n_layers > 1024 || m->model.n_kv_heads == 0 ||
        m->model.n_kv_heads > 1024 || m->model.head_dim == 0 || m->model.head_dim > 4096 ||
        m->n_tokens == 0 || m->n_tokens > (1u << 26) || m->segment >= m->n_segments)
        return kvz_errorf(KVZ_ERR_FORMAT, "manifest shapes are out of range");
    return check_heads(a);
}

int kvz_artifact_open(kvz_artifact *a, const void *data, size_t size)
{
    return open_artifact(a, data, size, 1);
}

int kvz_artifact_open_manifest(kvz_artifact *a, const void *data, size_t size)
{
    return open_artifact(a, data, size, 0);
}

int kvz_artifact_read_tokens(const kvz_artifact *a, int32_t *tokens)
{
    kvz_section s = {0};
    KVZ_TRY(kvz_artifact_find(a, KVZ_SECTION_TOKENS, KVZ_SECTION_WHOLE, KVZ_SECTION_WHOLE, &s));
    KVZ_TRY(decode_section(a, &s, tokens));
    for (uint32_t i = 0; i < s.count; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= a->manifest.model.vocab)
            return kvz_errorf(KVZ_ERR_FORMAT, "token %u of the document (%d) is outside the vocabulary",
                              i, tokens[i]);
    return KVZ_OK;
}

int kvz_artifact_holds_tokens(const kvz_artifact *a, const int32_t *tokens, uint32_t n)
{
    if (a->manifest.n_tokens != n)
        return 0;
    int32_t *held = malloc((n ? n : 1) * sizeof *held);
    int same = held && kvz_artifact_read_tokens(a, held) == KVZ_OK && memcmp(held, tokens, n * sizeof *held) == 0;
    free(held);
    kvz_error_clear();
    return same;
}

int kvz_artifact_kept(const kvz_artifact *a, uint16_t layer, uint16_t head, uint32_t *n)
{
    kvz_section s = {0};
    KVZ_TRY(kvz_artifact_find(a, KVZ_SECTION_POSITIONS, layer, head, &s));
    *n = s.count;
    return KVZ_OK;
}

/* The quantization shape of one side (keys or values) of a head, and its section. */
static int side_shape(const kvz_artifact *a, uint16_t layer, uint16_t head, int is_keys, kvz_quant_shape *q,
                      kvz_section *s)
{
    const kvz_manifest *m = &a->manifest;
    KVZ_TRY(kvz_artifact_find(a, is_keys ? KVZ_SECTION_KEYS : KVZ_SECTION_VALUES, layer, head, s));
    *q = (kvz_quant_shape){s->count, s->aux, m->model.head_dim, m->bits, is_keys ? m->key_group : m->value_group};
    return KVZ_OK;
}

int kvz_artifact_head_codes(const kvz_artifact *a, uint16_t layer, uint16_t head, kvz_head_codes *hc)
{
    kvz_section s;
    memset(hc, 0, sizeof *hc);
    KVZ_TRY(side_shape(a, layer, head, 1, &hc->keys, &s));
    KVZ_TRY(side_shape(a, layer, head, 0, &hc->values, &s));
    hc->n = hc->keys.n;
    hc->key_bytes = kvz_quant_payload_bytes(&hc->keys);
    hc->value_bytes = kvz_quant_payload_bytes(&hc->values);
    hc->key_pairs = kvz_quant_scale_pairs(&hc->keys, 1);
    hc->value_pairs = kvz_quant_scale_pairs(&hc->values, 0);
    return KVZ_OK;
}

/* One side's payload and scale pairs, as stored (open() checked their sizes). */
static int read_side_codes(const kvz_artifact *a, uint16_t layer, uint16_t head, int is_keys, uint8_t *payload,
                           uint16_t *scales)
{
    kvz_section s = {0}, sc = {0};
    kvz_quant_shape q;
    KVZ_TRY(side_shape(a, layer, head, is_keys, &q, &s));
    KVZ_TRY(decode_section(a, &s, payload));
    if (kvz_quant_scale_pairs(&q, is_keys) == 0)
        return KVZ_OK;
    KVZ_TRY(kvz_artifact_find(a, is_keys ? KVZ_SECTION_KEY_SCALES : KVZ_SECTION_VALUE_SCALES, layer, head, &sc));
    return decode_section(a, &sc, scales);
}

static int read_positions(const kvz_artifact *a, uint16_t layer, uint16_t head, uint32_t *positions)
{
    kvz_section p = {0};
    const uint8_t *bytes;
    KVZ_TRY(kvz_artifact_find(a, KVZ_SECTION_POSITIONS, layer, head, &p));
    KVZ_TRY(section_bytes(a, &p, &bytes));
    int rc = kvz_decode_positions(bytes, p.stored_bytes, p.transform, p.compressor, p.count,
                                  a->manifest.n_tokens, positions);
    if (rc != KVZ_OK)
        return kvz_error_context(rc, "layer %u head %u", layer, head);
    return KVZ_OK;
}

int kvz_artifact_read_codes(const kvz_artifact *a, uint16_t layer, uint16_t head, uint32_t *positions,
                            uint8_t *key_payload, uint16_t *key_scales, uint8_t *value_payload,
                            uint16_t *value_scales)
{
    KVZ_TRY(read_positions(a, layer, head, positions));
    KVZ_TRY(read_side_codes(a, layer, head, 1, key_payload, key_scales));
    return read_side_codes(a, layer, head, 0, value_payload, value_scales);
}

/* Decode one side of a head into x (n, d). */
static int read_side(const kvz_artifact *a, uint16_t layer, uint16_t head, int is_keys, float *x)
{
    kvz_section s;
    kvz_quant_shape q;
    KVZ_TRY(side_shape(a, layer, head, is_keys, &q, &s));
    size_t bytes = kvz_quant_payload_bytes(&q), pairs = kvz_quant_scale_pairs(&q, is_keys);
    uint8_t *payload = malloc(bytes ? bytes : 1);
    uint16_t *scales = malloc(pairs * 4 + 4);
    int rc = payload && scales ? read_side_codes(a, layer, head, is_keys, payload, scales)
                               : kvz_errorf(KVZ_ERR_NOMEM, "out of memory decoding layer %u", layer);
    if (rc == KVZ_OK)
        kvz_dequantize(payload, scales, &q, is_keys, x);
    free(payload);
    free(scales);
    return rc;
}

int kvz_artifact_read_head(const kvz_artifact *a, uint16_t layer, uint16_t head,
                           uint32_t *positions, float *keys, float *values)
{
    KVZ_TRY(read_positions(a, layer, head, positions));
    if (keys)
        KVZ_TRY(read_side(a, layer, head, 1, keys));
    if (values)
        KVZ_TRY(read_side(a, layer, head, 0, values));
    return KVZ_OK;
}

int kvz_artifact_verify(const kvz_artifact *a)
{
    const kvz_manifest *m = &a->manifest;
    /* buffers for the largest head, not n_tokens x head_dim floats: a head's
     * keys are bounded by their stored bytes (check_entry), that product is not */
    uint32_t most = 1;
    for (uint32_t i = 0; i < a->n_sections; i++) {
        kvz_section s = {0};
        kvz_artifact_section_at(a, i, &s);
        if (s.kind == KVZ_SECTION_POSITIONS && s.count > most)
            most = s.count;
        const uint8_t *skipped; /* a kind a later minor added: only its checksum */
        if (!kvz_section_kind_known(s.kind))
            KVZ_TRY(section_bytes(a, &s, &skipped));
    }
    int32_t *tokens = malloc((size_t)m->n_tokens * 4);
    uint32_t *pos = malloc((size_t)most * 4);
    float *k = malloc((size_t)most * m->model.head_dim * 4);
    float *v = malloc((size_t)most * m->model.head_dim * 4);
    int rc = tokens && pos && k && v ? kvz_artifact_read_tokens(a, tokens)
                                     : kvz_errorf(KVZ_ERR_NOMEM, "out of memory verifying");
    for (uint32_t l = 0; l < m->model.n_layers && rc == KVZ_OK; l++)
        for (uint32_t h = 0; h < m->model.n_kv_heads && rc == KVZ_OK; h++)
            rc = kvz_artifact_read_head(a, (uint16_t)l, (uint16_t)h, pos, k, v);
    free(tokens);
    free(pos);
    free(k);
    free(v);
    return rc;
}

int kvz_artifact_check_model(const kvz_artifact *a, const char *doc, const kvz_model_identity *model)
{
    if (a->manifest.model.fingerprint == model->fingerprint)
        return KVZ_OK;
    char have[256], want[256];
    kvz_model_identity_describe(&a->manifest.model, have, sizeof have);
    kvz_model_identity_describe(model, want, sizeof want);
    const kvz_model_identity *was = &a->manifest.model;
    /* two descriptions alike but for the fingerprint: say what differs */
    const char *differs = was->tokenizer_hash != model->tokenizer_hash ? "its tokenizer differs"
                          : was->weights_hash != model->weights_hash  ? "its weights differ (another quantization "
                                                                        "or conversion of the model?)"
                                                                      : "its shape differs";
    return kvz_errorf(KVZ_ERR_MODEL_MISMATCH,
                      "artifact '%s' was compiled for %s, but the loaded model is %s: %s; compile the document "
                      "again with this model, or give the model it was compiled with",
                      doc ? doc : a->manifest.doc_name, have, want, differs);
}

/* ---- renaming -------------------------------------------------------------- */

/* The manifest of an artifact written again is a few hundred bytes: compile's
 * default level does for it (the other sections are copied, not encoded). */
#define RENAME_ZSTD_LEVEL 9

/* Section s of `a` added as it is stored (a copy of its bytes). */
static int add_stored(kvz_artifact_writer *w, const kvz_artifact *a, const kvz_section *s)
{
    kvz_encoded enc = {.data = malloc(s->stored_bytes ? s->stored_bytes : 1), .size = s->stored_bytes,
                       .transform = s->transform, .compressor = s->compressor};
    if (!enc.data)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory copying an artifact");
    memcpy(enc.data, a->data + s->offset, s->stored_bytes);
    return add(w, s->kind, s->layer, s->head, s->raw_bytes, s->count, s->aux, &enc);
}

/* Manifest section ms of `a` added with the document named `name`. */
static int add_renamed_manifest(kvz_artifact_writer *w, const kvz_artifact *a, const kvz_section *ms,
                                const char *name)
{
    uint8_t *raw;
    kvz_buffer records = {0};
    KVZ_TRY(manifest_records(a, ms, &raw));
    int rc = kvz_manifest_renamed(raw, ms->raw_bytes, name, &records);
    free(raw);
    if (rc != KVZ_OK) {
        kvz_buffer_free(&records);
        return rc;
    }
    return add_manifest(w, &records);
}

int kvz_artifact_with_name(const kvz_artifact *a, const char *name, uint8_t **out, size_t *size)
{
    *out = NULL;
    *size = 0;
    kvz_artifact_writer *w = kvz_artifact_writer_new(RENAME_ZSTD_LEVEL);
    int rc = w ? KVZ_OK : kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < a->n_sections && rc == KVZ_OK; i++) { /* in the table's order */
        kvz_section s;
        kvz_artifact_section_at(a, i, &s);
        rc = s.kind == KVZ_SECTION_MANIFEST ? add_renamed_manifest(w, a, &s, name) : add_stored(w, a, &s);
    }
    /* the artifact's minor stays: its sections and keys are that minor's */
    if (rc == KVZ_OK)
        rc = lay_out(w->items, w->n, rd16(a->data + 10), out, size);
    kvz_artifact_writer_free(w);
    return rc;
}

int kvz_artifact_for_document(const kvz_artifact *a, const char *name, const void **bytes, size_t *size,
                              uint8_t **renamed)
{
    *bytes = a->data, *size = a->size, *renamed = NULL;
    if (strcmp(a->manifest.doc_name, name) == 0)
        return KVZ_OK;
    *bytes = NULL;
    KVZ_TRY(kvz_artifact_with_name(a, name, renamed, size));
    *bytes = *renamed;
    return KVZ_OK;
}
