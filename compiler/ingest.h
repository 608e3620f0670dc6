/*
 * ingest.h — documents from files, folders, archives and stdin.
 *
 * Listing first (names and sizes, for progress and sharding), reading second,
 * in list order: entries of one archive are read in one sequential pass.
 * A document's name is its path (for archive members "ARCHIVE:MEMBER"; "-"
 * reads stdin as a document named "stdin", or opts->stdin_name). Its identity is the xxh3-128 of
 * its normalised text (SPEC §8). Empty, binary and non-UTF-8 documents are
 * skipped with a reason (or refused, in strict mode).
 */
#ifndef KVZ_COMPILER_INGEST_H
#define KVZ_COMPILER_INGEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvz_ingest_opts {
    const char *const *include; /* globs on the name or any tail of it at a '/'; empty: all */
    size_t n_include;
    const char *const *exclude;
    size_t n_exclude;
    uint64_t max_bytes; /* larger documents are skipped (0: 64 MiB) */
    const char *stdin_name; /* the name of the document read from "-" (NULL: "stdin") */
    const char *skip_folder; /* a folder no walk enters (the store being written), or NULL */
} kvz_ingest_opts;

typedef struct kvz_source {
    char *name;         /* document name */
    char *path;         /* file or archive on disk ("-" for stdin) */
    char *member;       /* archive member, or NULL */
    uint64_t size;      /* bytes as listed (0 for stdin) */
    const char *unread; /* why it is listed but never read (a FIFO of a folder), or NULL */
    int64_t member_at;  /* archive members: the entry whose data is the document's, by its
                           place in the archive (a hard link's: its target's) */
    char *link_target;  /* a hard link member: its target's name, or NULL */
    char *fails;        /* why reading it fails, found when listing (an archive in a folder
                           that cannot be listed, a second source of one name), or NULL */
} kvz_source;

typedef struct kvz_source_list {
    kvz_source *items;
    size_t len, cap;
    int walked_around_store; /* a walk met opts->skip_folder and left it out */
    size_t hidden_passed_over; /* a walk's entries named with a leading '.' (.git, .DS_Store), left out */
    size_t hidden_members_passed_over; /* archive members so named, or under __MACOSX/, left out */
} kvz_source_list;

/* List the documents under `paths` (files, folders recursively in name order,
 * archives by extension: .tar .tar.gz .tgz .tar.zst .tzst .tar.xz .tar.bz2
 * .zip). An archive's hard link is a document with its target's content; a
 * name it holds twice is the later copy (as `tar -x` leaves it); its symbolic
 * links, devices and FIFOs are listed unread, to be reported skipped; so is
 * a link met in a folder's walk to a file outside that folder (a link to a
 * folder met there is not followed at all). An archive met in a walk that
 * cannot be listed is listed as one source that fails (`fails`), and so is a
 * second source of a name already listed; an archive the exclude globs match
 * by its own name is passed over. Member names a PAX tar or a flagged zip
 * holds in UTF-8 are their UTF-8 bytes, composed (NFC) as libarchive gives
 * them; other names are the archive's bytes. A name that cannot be had fails
 * the archive.
 * Errors: KVZ_ERR_NOT_FOUND for a path that does not exist, KVZ_ERR_FORMAT
 * for an unreadable archive named in `paths`. */
int kvz_ingest_list(const char *const *paths, size_t n_paths, const kvz_ingest_opts *opts,
                    kvz_source_list *out);
void kvz_source_list_free(kvz_source_list *l);

/* Whether kvz_ingest_list of `paths` would list a document named `name` (len
 * bytes) were it there: the path itself, an entry of its folder, a member of
 * its archive, each as the include/exclude globs select them (compile --prune:
 * a store document so named that the listing lacks is gone from the corpus).
 * A path that cannot be read, or "-" (stdin's document), scopes only its own name. */
int kvz_ingest_would_list(const char *const *paths, size_t n_paths, const kvz_ingest_opts *opts,
                          const char *name, size_t len);

/* Whether the source of a document so named is gone from the disk now: no
 * file has the name (ENOENT, ENOTDIR) and, read as ARCHIVE:MEMBER, its
 * archive is gone or no longer holds the member. What cannot be told (an
 * unreadable or damaged archive, out of memory) is not gone. A listing misses
 * names another path or a link reaches, and files made since: compile --prune
 * removes only what is both unlisted and gone. `cache` keeps the last
 * archive's members between calls: zeroed at first, freed with
 * kvz_archive_cache_free. */
typedef struct kvz_archive_cache {
    char *archive;
    kvz_source_list members;
    const char **names; /* the members' names, sorted: a prune asks once per stored document */
    size_t n_names;
} kvz_archive_cache;

int kvz_ingest_source_gone(kvz_archive_cache *cache, const char *name, size_t len);
void kvz_archive_cache_free(kvz_archive_cache *cache);

typedef struct kvz_document {
    const kvz_source *source;
    char *text;          /* normalised UTF-8, NUL-terminated */
    size_t len;
    uint8_t hash[16];
} kvz_document;

/* Reads documents in list order. */
typedef struct kvz_doc_reader kvz_doc_reader;

int kvz_doc_reader_new(kvz_doc_reader **out, const kvz_source_list *list, const kvz_ingest_opts *opts);
void kvz_doc_reader_free(kvz_doc_reader *r);

/* Read source i (calls must come in increasing i). On success *doc is
 * filled (free with kvz_document_free). A document that is empty, binary,
 * not UTF-8 or not a regular file gives KVZ_ERR_FORMAT with the reason as the
 * message; I/O problems give KVZ_ERR_IO. */
int kvz_doc_reader_read(kvz_doc_reader *r, size_t i, kvz_document *doc);
void kvz_document_free(kvz_document *doc);

/* The hash kvz_doc_reader_read gives the regular file at `path` as it is now
 * (to tell whether a file changed after it was read); its errors. */
int kvz_doc_file_hash(const char *path, const kvz_ingest_opts *opts, uint8_t hash[16]);

/* Normalise in place (drop a leading BOM, CR LF -> LF) and check: returns
 * KVZ_ERR_FORMAT with a reason for empty, NUL-containing or invalid UTF-8 text. */
int kvz_text_normalise(char *text, size_t *len);

/* A document's identity: xxh3-128 of its normalised text, low 64 bits first. */
void kvz_text_hash(const char *text, size_t len, uint8_t hash[16]);

/* The shard (0..n_shards-1) of a document: xxh3-64 of its name's bytes
 * modulo n_shards. Stable across machines and runs, and across edits of the
 * document: its record stays in one shard's store whatever it holds. */
uint32_t kvz_shard_of(const char *name, size_t len, uint32_t n_shards);

#endif
