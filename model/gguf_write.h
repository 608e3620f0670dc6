/*
 * gguf_write.h — a small GGUF v3 writer.
 *
 * Tests and benchmarks use it to build deterministic random-weight models of
 * any LLaMA shape, and fixtures with chosen defects. Metadata values are
 * serialised as they are set; tensor data is either a caller pointer (kept
 * alive until the write) or produced by a fill callback at write time, so a
 * multi-GB model never has to sit in memory at once. The file appears
 * atomically (temporary file + rename).
 */
#ifndef KVZ_MODEL_GGUF_WRITE_H
#define KVZ_MODEL_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_gguf_writer kvz_gguf_writer;

/* Fill `size` bytes of tensor `index` (in add order) into `dst`. */
typedef int (*kvz_gguf_fill_fn)(void *ctx, uint64_t index, void *dst, uint64_t size);

kvz_gguf_writer *kvz_gguf_writer_new(void);
void kvz_gguf_writer_free(kvz_gguf_writer *w);

int kvz_gguf_writer_set_u32(kvz_gguf_writer *w, const char *key, uint32_t v);
int kvz_gguf_writer_set_i32(kvz_gguf_writer *w, const char *key, int32_t v);
int kvz_gguf_writer_set_u64(kvz_gguf_writer *w, const char *key, uint64_t v);
int kvz_gguf_writer_set_f32(kvz_gguf_writer *w, const char *key, float v);
int kvz_gguf_writer_set_bool(kvz_gguf_writer *w, const char *key, int v);
int kvz_gguf_writer_set_str(kvz_gguf_writer *w, const char *key, const char *v);
/* Arrays: strings given with explicit lengths (NULL lens: NUL-terminated). */
int kvz_gguf_writer_set_str_array(kvz_gguf_writer *w, const char *key, const char *const *v,
                                  const uint64_t *lens, uint64_t n);
int kvz_gguf_writer_set_i32_array(kvz_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
int kvz_gguf_writer_set_f32_array(kvz_gguf_writer *w, const char *key, const float *v, uint64_t n);

/* A tensor of `type` with dims[0] fastest; exactly one of data / fill. */
int kvz_gguf_writer_add_tensor(kvz_gguf_writer *w, const char *name, uint32_t n_dims,
                               const uint64_t *dims, uint32_t type, const void *data,
                               kvz_gguf_fill_fn fill, void *fill_ctx);

/* Write everything to `path` (atomically). */
int kvz_gguf_writer_write(kvz_gguf_writer *w, const char *path);

#endif
