/* ingest.c — listing and reading documents (plain files, folders, archives, stdin). */
#include "compiler/ingest.h"
#include "common/buffer.h"
#include "common/error.h"
#include "common/file_util.h"
#include "common/hash_map.h"
#include "model/utf8.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define DEFAULT_MAX_BYTES (64ull << 20)

static uint64_t max_bytes(const kvz_ingest_opts *o)
{
    return o && o->max_bytes ? o->max_bytes : DEFAULT_MAX_BYTES;
}

/* The signatures of gzip, zstd, xz, bzip2, zip and tar (ustar at 257):
 * only what is not text besides is named by them ("mustard" may sit at 257). */
static int looks_packed(const uint8_t *d, size_t n)
{
    return (n >= 2 && d[0] == 0x1f && d[1] == 0x8b) || (n >= 4 && memcmp(d, "\x28\xb5\x2f\xfd", 4) == 0) ||
           (n >= 6 && memcmp(d, "\xfd" "7zXZ\0", 6) == 0) || (n >= 4 && memcmp(d, "BZh", 3) == 0 &&
           d[3] >= '1' && d[3] <= '9') || (n >= 4 && memcmp(d, "PK\x03\x04", 4) == 0) ||
           (n >= 262 && memcmp(d + 257, "ustar", 5) == 0);
}

static int is_archive(const char *path)
{
    static const char *const ext[] = {".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.xz",
                                      ".txz", ".tar.bz2", ".tbz2", ".zip"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && strcasecmp(path + n - e, ext[i]) == 0)
            return 1;
    }
    return 0;
}

/* A member's name in documents' names: without the "./" that `tar -C dir .`
 * puts before every member (a zip of the same folder has none). */
static const char *member_name(const char *member)
{
    while (member[0] == '.' && member[1] == '/') {
        member += 2;
        while (*member == '/')
            member++;
    }
    return member;
}

/* A member a folder's walk would pass over: a component of its name (after
 * member_name) hidden (.git/, .DS_Store; "." and ".." are not names), or the
 * __MACOSX/ folder of resource forks that macOS's zip adds beside each file. */
static int hidden_member(const char *name)
{
    for (const char *c = name; *c; c += strcspn(c, "/"), c += *c == '/') {
        size_t len = strcspn(c, "/");
        if ((c[0] == '.' && !(len == 1 || (len == 2 && c[1] == '.'))) || (len == 8 && memcmp(c, "__MACOSX", 8) == 0))
            return 1;
    }
    return 0;
}

/* A glob matches the whole name or any tail of it that starts a path
 * component, so "*.md" or "notes/x*" work at any depth; "./x*" is "x*", as
 * members are named without their "./". */
static int glob_match(const char *glob, const char *name)
{
    glob = member_name(glob);
    if (fnmatch(glob, name, 0) == 0)
        return 1;
    for (const char *p = strchr(name, '/'); p; p = strchr(p + 1, '/'))
        if (fnmatch(glob, p + 1, 0) == 0)
            return 1;
    return 0;
}

static int excluded(const kvz_ingest_opts *o, const char *name)
{
    for (size_t i = 0; o && i < o->n_exclude; i++)
        if (glob_match(o->exclude[i], name))
            return 1;
    return 0;
}

static int selected(const kvz_ingest_opts *o, const char *name)
{
    if (!o)
        return 1;
    if (excluded(o, name))
        return 0;
    if (o->n_include == 0)
        return 1;
    for (size_t i = 0; i < o->n_include; i++)
        if (glob_match(o->include[i], name))
            return 1;
    return 0;
}

static int push(kvz_source_list *l, const char *name, const char *path, const char *member, uint64_t size)
{
    kvz_source *grown = kvz_grow(l->items, &l->cap, l->len, sizeof *grown);
    if (!grown)
        return KVZ_ERR_NOMEM;
    l->items = grown;
    kvz_source *s = &l->items[l->len];
    s->name = strdup(name);
    s->path = strdup(path);
    s->member = member ? strdup(member) : NULL;
    s->size = size;
    s->unread = NULL;
    s->member_at = -1;
    s->link_target = NULL;
    s->fails = NULL;
    if (!s->name || !s->path || (member && !s->member)) {
        free(s->name), free(s->path), free(s->member);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory listing documents");
    }
    l->len++;
    return KVZ_OK;
}

static void source_free(kvz_source *s)
{
    free(s->name), free(s->path), free(s->member), free(s->link_target), free(s->fails);
}

void kvz_source_list_free(kvz_source_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        source_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* libarchive converts a member name an archive says is UTF-8 (a PAX tar, a
 * zip with its UTF-8 flag: what Python, 7-Zip, Windows and macOS write) to the
 * locale's character set; kvz runs in the "C" locale, where a name with any
 * other character fails ("cannot be converted") and so did the archive. Calls
 * into libarchive run in this thread under C.UTF-8 instead: such names come
 * out as their UTF-8 bytes, and names an archive gives no character set (GNU
 * tar, a zip without the flag) stay the bytes they are, as before. */
static locale_t utf8_locale;
static void make_utf8_locale(void)
{
    static const char *const names[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"};
    for (size_t i = 0; i < sizeof names / sizeof *names && !utf8_locale; i++)
        utf8_locale = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
}

/* The locale to give back to archive_locale_leave ((locale_t)0: none was set). */
static locale_t archive_locale_enter(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_utf8_locale);
    return utf8_locale ? uselocale(utf8_locale) : (locale_t)0;
}

static void archive_locale_leave(locale_t was)
{
    if (was)
        uselocale(was);
}

/* archive_read_next_header's outcome: a header read (ARCHIVE_WARN is one read
 * with a remark, as bsdtar takes it), or not. */
static int header_read(int r) { return r == ARCHIVE_OK || r == ARCHIVE_WARN; }

/* A member's name: the archive's bytes, or the UTF-8 it states; NULL where
 * neither can be had (a name no locale here converts: the caller says so,
 * never passing over a member in silence). */
static const char *entry_name(struct archive_entry *e)
{
    const char *name = archive_entry_pathname(e);
    return name ? name : archive_entry_pathname_utf8(e);
}

static struct archive *archive_open(const char *path)
{
    struct archive *a = archive_read_new();
    if (!a)
        return NULL;
    /* the compressions libarchive decodes itself; _all would also run external
     * programs (lrzip, grzip, lzop) for what it cannot, on untrusted input */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_lzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_lz4(a);
    archive_read_support_filter_compress(a);
    archive_read_support_format_all(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        kvz_errorf(KVZ_ERR_FORMAT, "cannot read archive '%s': %s", path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* A member listed: named ARCHIVE:MEMBER (without a leading "./"). */
static int push_member(kvz_source_list *out, const char *path, const char *member, uint64_t size, int64_t at)
{
    char *name = malloc(strlen(path) + strlen(member) + 2);
    if (!name)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    sprintf(name, "%s:%s", path, member_name(member));
    int rc = push(out, name, path, member, size);
    free(name);
    if (rc == KVZ_OK)
        out->items[out->len - 1].member_at = at;
    return rc;
}

/* A name the archive holds twice is its later copy, as `tar -x` (or `tar -r`
 * of an edited file) leaves it: the earlier entries of out[from..] so named
 * are dropped. */
static int keep_last_copies(kvz_source_list *out, size_t from)
{
    size_t n = out->len - from;
    if (n < 2)
        return KVZ_OK;
    kvz_str_map later;
    KVZ_TRY(kvz_str_map_init(&later, n));
    char *drop = calloc(n, 1);
    if (!drop) {
        kvz_str_map_free(&later);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    }
    for (size_t i = n; i-- > 0;) {
        const char *m = member_name(out->items[from + i].member);
        drop[i] = kvz_str_map_put(&later, m, (uint32_t)strlen(m), (int32_t)i) == 1;
    }
    kvz_str_map_free(&later);
    size_t kept = from;
    for (size_t i = 0; i < n; i++) {
        kvz_source *s = &out->items[from + i];
        if (drop[i])
            source_free(s);
        else
            out->items[kept++] = *s;
    }
    out->len = kept;
    free(drop);
    return KVZ_OK;
}

/* The members of the archive `o` selects; hidden ones (hidden_member) only
 * `with_hidden` (what the archive holds, not what compile would read). */
static int list_archive_in(const char *path, const kvz_ingest_opts *o, int with_hidden, kvz_source_list *out)
{
    struct archive *a = archive_open(path);
    if (!a)
        return KVZ_ERR_FORMAT;
    struct archive_entry *e;
    kvz_source_list regular = {0}; /* every regular member so far, selected or not: hard links' targets */
    size_t from = out->len;
    int rc = KVZ_OK, r;
    for (int64_t at = 0; rc == KVZ_OK && header_read(r = archive_read_next_header(a, &e)); at++) {
        const char *member = entry_name(e), *target = archive_entry_hardlink(e);
        if (!target)
            target = archive_entry_hardlink_utf8(e);
        mode_t type = archive_entry_filetype(e);
        if (!member) {
            rc = kvz_errorf(KVZ_ERR_FORMAT, "archive '%s': the name of its entry %lld cannot be read: %s", path,
                            (long long)at + 1, archive_error_string(a));
            break;
        }
        if (type == AE_IFDIR)
            continue;
        if (!target && type == AE_IFREG) {
            rc = push(&regular, member_name(member), path, NULL, (uint64_t)archive_entry_size(e));
            if (rc == KVZ_OK)
                regular.items[regular.len - 1].member_at = at;
        }
        if (rc == KVZ_OK && !with_hidden && hidden_member(member_name(member))) {
            out->hidden_members_passed_over++;
            continue;
        }
        if (rc != KVZ_OK || !selected(o, member_name(member)))
            continue;
        if (!target && type == AE_IFREG) {
            rc = push_member(out, path, member, (uint64_t)archive_entry_size(e), at);
            continue;
        }
        rc = push_member(out, path, member, 0, -1);
        kvz_source *s = rc == KVZ_OK ? &out->items[out->len - 1] : NULL;
        if (s && !target) {
            s->unread = type == AE_IFLNK ? "a symbolic link inside an archive: not followed"
                                         : "not a regular file (a device, FIFO or socket inside the archive)";
            continue;
        }
        const kvz_source *to = NULL; /* a hard link: the content of the last regular member so named before it */
        for (size_t i = regular.len; s && !to && i-- > 0;)
            if (strcmp(regular.items[i].name, member_name(target)) == 0)
                to = &regular.items[i];
        if (s && !to)
            s->unread = "a hard link to a member the archive does not hold before it";
        else if (s && !(s->link_target = strdup(target)))
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
        else if (s)
            s->member_at = to->member_at, s->size = to->size;
    }
    if (rc == KVZ_OK && r != ARCHIVE_EOF)
        rc = kvz_errorf(KVZ_ERR_FORMAT, "archive '%s' is damaged: %s", path, archive_error_string(a));
    if (rc == KVZ_OK)
        rc = keep_last_copies(out, from);
    kvz_source_list_free(&regular);
    archive_read_free(a);
    return rc;
}

static int list_archive(const char *path, const kvz_ingest_opts *o, int with_hidden, kvz_source_list *out)
{
    locale_t was = archive_locale_enter();
    int rc = list_archive_in(path, o, with_hidden, out);
    archive_locale_leave(was);
    return rc;
}

/* An archive met in a folder's walk: one that cannot be listed (damaged, cut
 * short, not an archive after all) is a document that fails alone, as a file
 * that cannot be read does, and the rest compiles. */
static int list_archive_in_walk(const char *path, const kvz_ingest_opts *o, kvz_source_list *out, uint64_t size)
{
    size_t from = out->len;
    int rc = list_archive(path, o, 0, out);
    if (rc == KVZ_OK || rc == KVZ_ERR_NOMEM)
        return rc;
    while (out->len > from) /* the members listed before it failed */
        source_free(&out->items[--out->len]);
    char *why = strdup(kvz_last_error());
    kvz_error_clear();
    if (!why)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    if ((rc = push(out, path, path, NULL, size)) != KVZ_OK) {
        free(why);
        return rc;
    }
    out->items[out->len - 1].fails = why;
    return KVZ_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What a listing's walk carries down: the folder no walk enters (the store
 * inside the corpus, by device and inode, taken once per listing) and the
 * folder being walked. */
typedef struct walk {
    int set;
    dev_t dev;
    ino_t ino;
    const char *root; /* the folder named on the command line being walked (resolved), or NULL */
} walk;

/* Whether `path`, a link met in a walk, names a file inside the walked
 * folder: a corpus handed over by others may hold links to any file this
 * user can read (~/.ssh/id_rsa), which compile would store and pack ship. */
static int inside_walk(const char *root, const char *path)
{
    char *target = realpath(path, NULL);
    size_t n = strlen(root);
    int inside = target && (strcmp(root, "/") == 0 || (strncmp(target, root, n) == 0 && target[n] == '/'));
    free(target);
    return inside;
}

static int list_path(const char *path, const kvz_ingest_opts *o, const walk *w,
                     kvz_source_list *out, int top);

static int list_dir(const char *path, const kvz_ingest_opts *o, const walk *w,
                    kvz_source_list *out)
{
    DIR *d = opendir(path);
    if (!d)
        return kvz_errorf(KVZ_ERR_IO, "cannot read folder '%s': %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = KVZ_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char **grown = kvz_grow(names, &cap, n, sizeof *grown);
        if (!grown || !(grown[n] = strdup(e->d_name))) {
            names = grown ? grown : names;
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    if (n) /* qsort's base must not be NULL (an empty folder) */
        qsort(names, n, sizeof *names, by_name); /* the same order on every machine */
    for (size_t i = 0; i < n && rc == KVZ_OK; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *child = malloc(len);
        if (!child) {
            rc = kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(child, len, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", names[i]);
        struct stat st;
        if (names[i][0] != '.') /* a notes folder that is a git repository compiled .git's hooks and config */
            rc = list_path(child, o, w, out, 0);
        else if (w->set && stat(child, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino)
            out->walked_around_store = 1; /* a hidden store (notes/.kvz): said as the store, not as hidden */
        else
            out->hidden_passed_over++;
        free(child);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static const char *stdin_name(const kvz_ingest_opts *o)
{
    return o && o->stdin_name ? o->stdin_name : "stdin";
}

static int list_path(const char *path, const kvz_ingest_opts *o, const walk *w,
                     kvz_source_list *out, int top)
{
    if (strcmp(path, "-") == 0)
        return push(out, stdin_name(o), "-", NULL, 0);
    struct stat st, lst;
    if (stat(path, &st) != 0) {
        if (top)
            return kvz_errorf(KVZ_ERR_NOT_FOUND, "cannot read '%s': %s", path, strerror(errno));
        /* an entry of a folder that cannot be followed (a dangling link): a
         * document whose reading fails, not a walk that stops */
        return selected(o, path) ? push(out, path, path, NULL, 0) : KVZ_OK;
    }
    if (S_ISDIR(st.st_mode)) {
        /* a folder reached through a link inside a walk could loop: skip it */
        if (!top && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return KVZ_OK;
        if (w->set && w->dev == st.st_dev && w->ino == st.st_ino) {
            if (top) /* `compile notes --store notes`: walked around, the corpus was "no documents" */
                return kvz_errorf(KVZ_ERR_ARG, "'%s' is the store's own folder (--store): give the store a "
                                  "folder of its own (beside the documents, or inside their folder)", path);
            out->walked_around_store = 1;
            return KVZ_OK; /* the store inside the corpus: its data.mdb is no document */
        }
        if (!top)
            return list_dir(path, o, w, out);
        walk inner = *w;
        char *root = realpath(path, NULL);
        if (!root)
            return kvz_errorf(errno == ENOMEM ? KVZ_ERR_NOMEM : KVZ_ERR_IO, "cannot resolve '%s': %s", path,
                              strerror(errno));
        inner.root = root;
        int rc = list_dir(path, o, &inner, out);
        free(root);
        return rc;
    }
    if (!top && w->root && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode) && !inside_walk(w->root, path)) {
        if (!selected(o, path))
            return KVZ_OK;
        int rc = push(out, path, path, NULL, 0); /* listed, so that it is reported skipped */
        if (rc == KVZ_OK)
            out->items[out->len - 1].unread = "a link to a file outside the folder walked (name that file itself "
                                              "to compile it)";
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        if (top)
            return kvz_errorf(KVZ_ERR_ARG, "'%s' is neither a file nor a folder", path);
        if (!selected(o, path))
            return KVZ_OK;
        /* listed, so that it is reported skipped; opening a FIFO would wait for a writer */
        int rc = push(out, path, path, NULL, 0);
        if (rc == KVZ_OK)
            out->items[out->len - 1].unread = "not a regular file (a FIFO, socket or device)";
        return rc;
    }
    if (is_archive(path) && top)
        return list_archive(path, o, 0, out);
    if (is_archive(path))
        return excluded(o, path) ? KVZ_OK : list_archive_in_walk(path, o, out, (uint64_t)st.st_size);
    if (!top && !selected(o, path))
        return KVZ_OK;
    return push(out, path, path, NULL, (uint64_t)st.st_size);
}

static int same_source(const kvz_source *a, const kvz_source *b)
{
    /* one archive named twice: its members once (list_archive keeps one copy of a name) */
    return strcmp(a->path, b->path) == 0 &&
           (a->member ? b->member && strcmp(member_name(a->member), member_name(b->member)) == 0 : !b->member);
}

/* A second source of a name the listing holds (a file "x.zip:a" beside the
 * archive x.zip holding "a", stdin beside a file called "stdin"): it fails
 * (said) instead of replacing the first one's document in the store. */
static int second_of_a_name(const kvz_source *first, kvz_source *s)
{
    char kind[64];
    if (first->member)
        snprintf(kind, sizeof kind, "a member of the archive");
    else if (strcmp(first->path, "-") == 0)
        snprintf(kind, sizeof kind, "standard input");
    else
        snprintf(kind, sizeof kind, "the file");
    size_t len = strlen(kind) + strlen(first->path) + 200;
    if (!(s->fails = malloc(len)))
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    int piped = strcmp(first->path, "-") == 0 || strcmp(s->path, "-") == 0;
    snprintf(s->fails, len, "another document of this run has this name (%s%s%s%s, listed before it): one name "
             "holds one document; rename one of them%s", kind, strcmp(first->path, "-") ? " '" : "",
             strcmp(first->path, "-") ? first->path : "", strcmp(first->path, "-") ? "'" : "",
             piped ? " (--stdin-name names the one read from stdin)" : "");
    return KVZ_OK;
}

/* A document reached twice (a file named and its folder, or named twice) is
 * listed once, where first reached: compiled twice it would count twice. Two
 * sources under one name both stay, the later failing (second_of_a_name). */
static int drop_repeats(kvz_source_list *l)
{
    kvz_str_map seen;
    KVZ_TRY(kvz_str_map_init(&seen, l->len));
    size_t kept = 0;
    int rc = KVZ_OK;
    for (size_t i = 0; i < l->len; i++) {
        kvz_source *s = &l->items[i];
        int32_t first = kvz_str_map_get(&seen, s->name, strlen(s->name));
        if (first >= 0 && same_source(&l->items[first], s)) {
            source_free(s);
            continue;
        }
        if (first >= 0 && !s->fails && rc == KVZ_OK) /* under one name, the later would replace the former */
            rc = second_of_a_name(&l->items[first], s);
        l->items[kept] = *s;
        if (first < 0) /* keys view the names, which stay where they are until freed */
            kvz_str_map_put(&seen, l->items[kept].name, (uint32_t)strlen(s->name), (int32_t)kept);
        kept++;
    }
    l->len = kept;
    kvz_str_map_free(&seen);
    return rc;
}

int kvz_ingest_list(const char *const *paths, size_t n_paths, const kvz_ingest_opts *opts,
                    kvz_source_list *out)
{
    memset(out, 0, sizeof *out);
    walk start = {0};
    struct stat st;
    if (opts && opts->skip_folder && stat(opts->skip_folder, &st) == 0)
        start = (walk){1, st.st_dev, st.st_ino, NULL};
    int rc = KVZ_OK;
    for (size_t i = 0; i < n_paths && rc == KVZ_OK; i++)
        rc = list_path(paths[i], opts, &start, out, 1);
    if (rc == KVZ_OK && out->len > 1)
        rc = drop_repeats(out);
    if (rc != KVZ_OK)
        kvz_source_list_free(out);
    return rc;
}

/* The member part of a name under a folder: after the first ':' that ends an
 * archive's path, as list_archive names members (NULL: a plain file). */
static const char *member_of(const char *name)
{
    for (const char *c = strchr(name, ':'); c; c = strchr(c + 1, ':')) {
        char *archive = strndup(name, (size_t)(c - name));
        int is = archive && is_archive(archive);
        free(archive);
        if (is)
            return c + 1;
    }
    return NULL;
}

static int under_path(const char *path, const kvz_ingest_opts *o, const char *name)
{
    if (strcmp(name, strcmp(path, "-") == 0 ? stdin_name(o) : path) == 0)
        return 1; /* what was named: compiled whatever the globs say */
    size_t n = strlen(path);
    struct stat st; /* a name that does not start with the path costs no stat */
    if (strcmp(path, "-") == 0 || strncmp(name, path, n) != 0 || stat(path, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        size_t sep = path[n - 1] == '/' ? 0 : 1;
        if ((sep && name[n] != '/') || !name[n + sep])
            return 0;
        const char *member = member_of(name + n + sep); /* an archive below the folder */
        if (!member)
            return selected(o, name); /* as list_path and list_archive select */
        char *archive = strndup(name, (size_t)(member - 1 - name));
        int in = archive && !excluded(o, archive) && selected(o, member);
        free(archive);
        return in;
    }
    return S_ISREG(st.st_mode) && is_archive(path) && name[n] == ':' &&
           name[n + 1] && selected(o, name + n + 1);
}

int kvz_ingest_would_list(const char *const *paths, size_t n_paths, const kvz_ingest_opts *opts,
                          const char *name, size_t len)
{
    if (memchr(name, '\0', len))
        return 0; /* no path names it */
    char *z = strndup(name, len);
    int in = 0;
    for (size_t i = 0; z && i < n_paths && !in; i++)
        in = under_path(paths[i], opts, z);
    free(z);
    return in;
}

static int missing(const char *path)
{
    struct stat st;
    return stat(path, &st) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

static int real_folder(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether a link on the way to `name` (or it) names nothing now: what lies
 * behind it (an unmounted share, a moved folder) cannot be told gone. */
static int behind_broken_link(char *name)
{
    int broken = 0;
    for (char *end = name + strlen(name); !broken && end > name; end--) {
        if (*end != '\0' && *end != '/' && *end != ':')
            continue;
        char was = *end;
        *end = '\0'; /* each prefix ending before a '/' or ':', and the whole name */
        struct stat st;
        broken = lstat(name, &st) == 0 && S_ISLNK(st.st_mode) && missing(name);
        *end = was;
    }
    return broken;
}

void kvz_archive_cache_free(kvz_archive_cache *c)
{
    free(c->archive);
    free(c->names);
    kvz_source_list_free(&c->members);
    c->archive = NULL;
    c->names = NULL;
    c->n_names = 0;
}

/* The cache's member names, sorted for bsearch: a prune of an archive's
 * removed members asks once per stored document, and a scan per ask was
 * quadratic (100,000 members: 2.7 ms a document). */
static int sort_member_names(kvz_archive_cache *c)
{
    c->names = malloc((c->members.len ? c->members.len : 1) * sizeof *c->names);
    if (!c->names)
        return KVZ_ERR_NOMEM;
    for (size_t i = 0; i < c->members.len; i++)
        if (c->members.items[i].member)
            c->names[c->n_names++] = member_name(c->members.items[i].member);
    if (c->n_names)
        qsort(c->names, c->n_names, sizeof *c->names, by_name);
    return KVZ_OK;
}

/* Whether the archive holds the member; 1 when that cannot be told. */
static int archive_holds(kvz_archive_cache *c, const char *archive, const char *member)
{
    if (!c->archive || strcmp(c->archive, archive) != 0) {
        kvz_archive_cache_free(c);
        /* every member: one compiled before hidden members were passed over stays */
        if (list_archive(archive, NULL, 1, &c->members) != KVZ_OK) {
            kvz_source_list_free(&c->members);
            kvz_error_clear();
            return 1; /* damaged, unreadable, or not an archive after all */
        }
        if (sort_member_names(c) != KVZ_OK || !(c->archive = strdup(archive))) {
            kvz_archive_cache_free(c);
            return 1;
        }
    }
    return c->n_names && bsearch(&member, c->names, c->n_names, sizeof *c->names, by_name);
}

int kvz_ingest_source_gone(kvz_archive_cache *cache, const char *name, size_t len)
{
    if (memchr(name, '\0', len))
        return 0;
    char *z = strndup(name, len);
    if (!z)
        return 0;
    /* the name as a file. A folder there now (not a link to one) is gone
     * too: no walk lists a folder as a document. Except "stdin", a document
     * read from standard input, beside a folder of that name; and a link that
     * now names a folder stays, as a link that names nothing does. */
    int gone = (missing(z) && !behind_broken_link(z)) || (real_folder(z) && strcmp(z, "stdin") != 0);
    for (char *c = strchr(z, ':'); gone && c; c = strchr(c + 1, ':')) {
        *c = '\0'; /* and as ARCHIVE:MEMBER at each ':' that ends an archive's name (a folder so named is none) */
        if (is_archive(z) && !missing(z) && !real_folder(z))
            gone = !archive_holds(cache, z, c + 1);
        *c = ':';
    }
    free(z);
    return gone;
}

/* ---- reading -------------------------------------------------------------- */

struct kvz_doc_reader {
    const kvz_source_list *list;
    const kvz_ingest_opts *opts;
    struct archive *archive; /* open archive and where its cursor is */
    const char *archive_path;
    int64_t archive_next; /* the place of the archive's next entry */
    size_t next; /* the next index that may be read */
};

int kvz_doc_reader_new(kvz_doc_reader **out, const kvz_source_list *list, const kvz_ingest_opts *opts)
{
    kvz_doc_reader *r = calloc(1, sizeof *r);
    if (!r)
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory");
    r->list = list;
    r->opts = opts;
    *out = r;
    return KVZ_OK;
}

static void close_archive(kvz_doc_reader *r)
{
    if (r->archive)
        archive_read_free(r->archive);
    r->archive = NULL;
    r->archive_path = NULL;
}

void kvz_doc_reader_free(kvz_doc_reader *r)
{
    if (!r)
        return;
    close_archive(r);
    free(r);
}

int kvz_text_normalise(char *text, size_t *len)
{
    size_t n = *len;
    /* checked before normalising, so that the byte named is the file's (a CR LF
     * before it no longer shifts it) */
    if (memchr(text, '\0', n))
        return kvz_errorf(KVZ_ERR_FORMAT, "contains NUL bytes (binary?)");
    size_t valid = kvz_utf8_valid_length((const uint8_t *)text, n);
    if (valid != n) {
        size_t line = 1;
        for (size_t i = 0; i < valid; i++)
            line += text[i] == '\n';
        /* older corpora are mostly in a single-byte code page: say how to convert one */
        return kvz_errorf(KVZ_ERR_FORMAT, "not valid UTF-8: byte %zu (line %zu) is 0x%02x; documents are UTF-8 "
                          "(text in Latin-1 or Windows-1252: iconv -f WINDOWS-1252 -t UTF-8 converts it)",
                          valid, line, (unsigned)(uint8_t)text[valid]);
    }
    if (n >= 3 && (uint8_t)text[0] == 0xef && (uint8_t)text[1] == 0xbb && (uint8_t)text[2] == 0xbf) {
        memmove(text, text + 3, n - 3);
        n -= 3;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')
            continue;
        text[o++] = text[i];
    }
    text[o] = '\0';
    *len = o;
    size_t visible = 0;
    for (size_t i = 0; i < o; i++)
        visible += !strchr(" \t\n\r\f\v", text[i]);
    if (visible == 0)
        return kvz_errorf(KVZ_ERR_FORMAT, "empty (no visible text)");
    return KVZ_OK;
}

/* Read the whole current archive member (at most limit bytes + 1). */
static int read_member(struct archive *a, uint64_t limit, char **data, size_t *len)
{
    kvz_buffer b = {0};
    char chunk[1 << 16];
    for (;;) {
        la_ssize_t got = archive_read_data(a, chunk, sizeof chunk);
        if (got < 0) {
            kvz_buffer_free(&b);
            return kvz_errorf(KVZ_ERR_IO, "%s", archive_error_string(a));
        }
        if (got == 0)
            break;
        kvz_buffer_append(&b, chunk, (size_t)got);
        if (b.len > limit)
            break;
    }
    kvz_buffer_append(&b, "", 1);
    if (b.failed) {
        kvz_buffer_free(&b);
        return kvz_errorf(KVZ_ERR_NOMEM, "out of memory reading a document");
    }
    *data = (char *)b.data;
    *len = b.len - 1;
    return KVZ_OK;
}

/* Members are read in listing order with one open archive, each at its
 * place; one behind the cursor (the same archive named twice, a hard link's
 * target) reopens it. */
static int read_from_archive_in(kvz_doc_reader *r, const kvz_source *s, uint64_t limit, char **data,
                                size_t *len)
{
    if (!r->archive || strcmp(r->archive_path, s->path) != 0 || s->member_at < r->archive_next) {
        close_archive(r);
        r->archive = archive_open(s->path);
        if (!r->archive)
            return KVZ_ERR_FORMAT;
        r->archive_path = s->path;
        r->archive_next = 0;
    }
    const char *want = s->link_target ? s->link_target : s->member;
    struct archive_entry *e;
    while (header_read(archive_read_next_header(r->archive, &e))) {
        const char *member = entry_name(e);
        if (r->archive_next++ != s->member_at)
            continue;
        if (member && archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) &&
            !archive_entry_hardlink_utf8(e) &&
            strcmp(member_name(member), member_name(want)) == 0) /* as listed: "./a" is "a" */
            return read_member(r->archive, limit, data, len);
        break; /* another entry there now: the archive changed since it was listed */
    }
    close_archive(r);
    return kvz_errorf(KVZ_ERR_IO, "member '%s' vanished from archive '%s' (changed since it was listed?)", want,
                      s->path);
}

static int read_from_archive(kvz_doc_reader *r, const kvz_source *s, uint64_t limit, char **data, size_t *len)
{
    locale_t was = archive_locale_enter();
    int rc = read_from_archive_in(r, s, limit, data, len);
    archive_locale_leave(was);
    return rc;
}

int kvz_doc_file_hash(const char *path, const kvz_ingest_opts *opts, uint8_t hash[16])
{
    char *data = NULL;
    size_t len = 0;
    int rc = kvz_read_regular_file_at_most(path, max_bytes(opts), &data, &len);
    if (rc == KVZ_OK)
        rc = kvz_text_normalise(data, &len);
    if (rc == KVZ_OK)
        kvz_text_hash(data, len, hash);
    free(data);
    return rc;
}

int kvz_doc_reader_read(kvz_doc_reader *r, size_t i, kvz_document *doc)
{
    memset(doc, 0, sizeof *doc);
    KVZ_ASSERT(i >= r->next && i < r->list->len);
    r->next = i + 1;
    const kvz_source *s = &r->list->items[i];
    doc->source = s;
    uint64_t limit = max_bytes(r->opts);
    if (s->unread)
        return kvz_errorf(KVZ_ERR_FORMAT, "%s", s->unread);
    if (s->fails) {
        if (strcmp(s->path, "-") == 0) { /* read all the same: its writer expects it read to the end */
            char unused[1 << 14];
            while (fread(unused, 1, sizeof unused, stdin) == sizeof unused)
                ;
        }
        return kvz_errorf(KVZ_ERR_IO, "%s", s->fails);
    }
    if (s->size > limit) /* the option named: a large file skipped for a default of 64M is no dead end */
        return kvz_errorf(KVZ_ERR_FORMAT, "larger than --max-bytes (%llu bytes)", (unsigned long long)limit);
    char *data = NULL;
    size_t len = 0;
    int rc;
    if (s->member)
        rc = read_from_archive(r, s, limit, &data, &len);
    else if (strcmp(s->path, "-") == 0)
        rc = kvz_read_file_at_most("/dev/stdin", limit, &data, &len);
    else /* listed as a regular file: a FIFO put there since would block the run */
        rc = kvz_read_regular_file_at_most(s->path, limit, &data, &len);
    if (rc != KVZ_OK)
        return rc;
    if (len > limit) {
        free(data);
        return kvz_errorf(KVZ_ERR_FORMAT, "larger than --max-bytes (%llu bytes)", (unsigned long long)limit);
    }
    int packed = looks_packed((const uint8_t *)data, len); /* before normalising moves bytes */
    const uint8_t *d = (const uint8_t *)data;
    /* UTF-32's marks first: UTF-32LE's opens as UTF-16LE's does */
    int utf32 = len >= 4 && ((d[0] == 0xff && d[1] == 0xfe && d[2] == 0 && d[3] == 0) ||
                             (d[0] == 0 && d[1] == 0 && d[2] == 0xfe && d[3] == 0xff));
    int utf16 = !utf32 && len >= 2 && ((d[0] == 0xff && d[1] == 0xfe) || (d[0] == 0xfe && d[1] == 0xff));
    int pdf = len >= 5 && memcmp(d, "%PDF-", 5) == 0;
    rc = kvz_text_normalise(data, &len);
    if (rc != KVZ_OK) {
        free(data);
        if (utf16 || utf32) /* what Windows' tools (PowerShell's Out-File, Notepad's "Unicode") write */
            return kvz_errorf(KVZ_ERR_FORMAT, "UTF-%d text (it opens with UTF-%d's byte-order mark); documents are "
                              "UTF-8: iconv -f UTF-%d -t UTF-8 converts it", utf32 ? 32 : 16, utf32 ? 32 : 16,
                              utf32 ? 32 : 16);
        if (pdf) /* a PDF among the notes: "contains NUL bytes (binary?)" said nothing of what to do */
            return kvz_errorf(KVZ_ERR_FORMAT, "a PDF; documents are text (UTF-8): pdftotext (poppler-utils) "
                              "converts it");
        if (packed) /* not text, and a compressor's or archive's signature: say which */
            return kvz_errorf(KVZ_ERR_FORMAT, strcmp(s->path, "-") == 0
                              ? "compressed or an archive: archives are opened from files (.tar, .tar.gz, "
                                ".tar.zst, .zip, ...); give its path instead of piping it"
                              : "compressed or an archive: archives are opened by name (.tar, .tar.gz, "
                                ".tar.zst, .zip, ...)");
        return rc;
    }
    kvz_text_hash(data, len, doc->hash);
    doc->text = data;
    doc->len = len;
    return KVZ_OK;
}

void kvz_document_free(kvz_document *doc)
{
    free(doc->text);
    memset(doc, 0, sizeof *doc);
}

void kvz_text_hash(const char *text, size_t len, uint8_t hash[16])
{
    XXH128_hash_t h = XXH3_128bits(text, len);
    for (int k = 0; k < 8; k++) {
        hash[k] = (uint8_t)(h.low64 >> (8 * k));
        hash[8 + k] = (uint8_t)(h.high64 >> (8 * k));
    }
}

uint32_t kvz_shard_of(const char *name, size_t len, uint32_t n_shards)
{
    return (uint32_t)(XXH3_64bits(name, len) % n_shards);
}
