/*
 * dkmonitor.announce._recordio -- root's record of announced files, compiled.
 *
 * Why this exists: an announcing run lists every old file of the target (a
 * million on a big scratch area) in root's record and in its owner's list, at
 * every run. Done in Python (one SQLite upsert and one formatted line per
 * file) that cost ten times the scan itself; the budget is 15% of it. So the
 * per-file work -- sorting the scan's candidates, matching them with the
 * previous announcement, writing the new one, formatting the users' list
 * lines -- is done here, in bounded memory, and Python is called once per
 * user, not once per file. announce/recordfile.py is the reference and the
 * fallback without a compiler (tests/test_announce_record.py checks both give
 * the same bytes).
 *
 * Formats (native byte order; recordfile.py declares the same, keep in step):
 *   spool (written by the scan, announce/spool.py): records
 *     'D' dir:  tag u8, pad[3], path_len u32, dev u64, ino u64, path
 *     'F' file: tag u8, pad u8, name_len u16, uid u32, gid u32, pad u32,
 *               ino u64, size i64, mtime_ns i64, used f64, name
 *     (a file belongs to the last 'D' before it; its device is the target's)
 *   record: "DKMANN01", count u64, then entries sorted by (uid, dev, ino):
 *     uid u32, gid u32, dev u64, ino u64, size i64, mtime_ns i64, used f64,
 *     parent_ino u64, announced_at f64, path_len u32, pad u32, path
 *     (path below the target, raw bytes)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "DKMANN01"
#define HEADER_BYTES 16
#define IO_BYTES (1 << 20)

struct dir_rec {
    uint8_t tag, pad[3];
    uint32_t path_len;
    uint64_t dev, ino;
};

struct file_rec {
    uint8_t tag, pad;
    uint16_t name_len;
    uint32_t uid, gid, pad2;
    uint64_t ino;
    int64_t size, mtime_ns;
    double used;
};

struct entry {
    uint32_t uid, gid;
    uint64_t dev, ino;
    int64_t size, mtime_ns;
    double used;
    uint64_t parent_ino;
    double announced_at;
    uint32_t path_len, pad;
};

_Static_assert(sizeof(struct dir_rec) == 24, "dir record layout");
_Static_assert(sizeof(struct file_rec) == 48, "file record layout");
_Static_assert(sizeof(struct entry) == 72, "entry layout");

/* ------------------------------------------------------------------ I/O */

static int
write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Double an array's capacity (``first`` items the first time); -1 with errno. */
static int
grow(void **items, size_t *cap, size_t item_size, size_t first)
{
    size_t wanted = *cap ? *cap * 2 : first;
    void *bigger = realloc(*items, wanted * item_size);
    if (bigger == NULL) {
        errno = ENOMEM;
        return -1;
    }
    *items = bigger;
    *cap = wanted;
    return 0;
}

struct writer {
    int fd;
    char *buf;
    size_t used;
    uint64_t offset; /* bytes written through this writer so far, buffered included */
};

static int
writer_flush(struct writer *w)
{
    if (w->used && write_all(w->fd, w->buf, w->used) < 0)
        return -1;
    w->used = 0;
    return 0;
}

static int
writer_put(struct writer *w, const void *data, size_t len)
{
    w->offset += len;
    if (w->used + len > IO_BYTES) {
        if (writer_flush(w) < 0)
            return -1;
        if (len > IO_BYTES)
            return write_all(w->fd, data, len);
    }
    memcpy(w->buf + w->used, data, len);
    w->used += len;
    return 0;
}

/* A sequential reader that can hand out a whole record of up to IO_BYTES. */
struct reader {
    int fd;
    char *buf;
    size_t start, end;
    int eof;
    uint64_t base; /* file offset of buf[0] */
};

/* Ensure ``need`` bytes are buffered; 1 if so, 0 at a clean end, -1 on error
 * (errno set; EINVAL for a truncated record). */
static int
reader_fill(struct reader *r, size_t need)
{
    if (r->end - r->start >= need)
        return 1;
    if (need > IO_BYTES) {
        errno = EINVAL;
        return -1;
    }
    memmove(r->buf, r->buf + r->start, r->end - r->start);
    r->base += r->start;
    r->end -= r->start;
    r->start = 0;
    while (r->end < need && !r->eof) {
        ssize_t n = read(r->fd, r->buf + r->end, IO_BYTES - r->end);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            r->eof = 1;
        r->end += (size_t)n;
    }
    if (r->end >= need)
        return 1;
    if (r->end == 0)
        return 0;
    errno = EINVAL;
    return -1;
}

static int
reader_open(struct reader *r, int fd, off_t at)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->buf = malloc(IO_BYTES);
    r->base = (uint64_t)at;
    if (r->buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    return lseek(fd, at, SEEK_SET) < 0 ? -1 : 0;
}

/* The next entry of a sorted file (record or run): 1, 0 at the end, -1. */
static int
reader_entry(struct reader *r, const struct entry **out)
{
    int ok = reader_fill(r, sizeof(struct entry));
    if (ok <= 0)
        return ok;
    struct entry e;
    memcpy(&e, r->buf + r->start, sizeof e);
    if (reader_fill(r, sizeof e + e.path_len) <= 0) {
        errno = EINVAL;
        return -1;
    }
    *out = (const struct entry *)(r->buf + r->start);
    return 1;
}

static void
reader_skip_entry(struct reader *r)
{
    const struct entry *e = (const struct entry *)(r->buf + r->start);
    r->start += sizeof *e + e->path_len;
}

/* ------------------------------------------------------------------ order */

static int
key_cmp(const struct entry *a, const struct entry *b)
{
    if (a->uid != b->uid)
        return a->uid < b->uid ? -1 : 1;
    if (a->dev != b->dev)
        return a->dev < b->dev ? -1 : 1;
    if (a->ino != b->ino)
        return a->ino < b->ino ? -1 : 1;
    return 0;
}

/* Key, then path: of several names of one inode the smallest path is kept. */
static int
full_cmp(const struct entry *a, const struct entry *b)
{
    int c = key_cmp(a, b);
    if (c)
        return c;
    uint32_t n = a->path_len < b->path_len ? a->path_len : b->path_len;
    c = memcmp(a + 1, b + 1, n);
    if (c)
        return c;
    return a->path_len < b->path_len ? -1 : a->path_len > b->path_len;
}

static int
pair_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* ------------------------------------------------------------------ build */

struct filters {
    uint32_t *uids; /* exempt owners, sorted */
    Py_ssize_t nuids;
    PyObject *paths; /* list of bytes: exempt subtrees below the target */
    uint64_t *acted; /* (dev, ino) pairs acted on by this run's clean-up, sorted */
    size_t nacted;
};

static int
uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int
kept(const struct filters *f, const struct entry *e)
{
    if (f->nuids && bsearch(&e->uid, f->uids, (size_t)f->nuids, sizeof(uint32_t), uid_cmp))
        return 0;
    if (f->nacted) {
        uint64_t pair[2] = {e->dev, e->ino};
        if (bsearch(pair, f->acted, f->nacted, 2 * sizeof(uint64_t), pair_cmp))
            return 0;
    }
    const char *path = (const char *)(e + 1);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(f->paths); i++) {
        PyObject *p = PyList_GET_ITEM(f->paths, i);
        size_t n = (size_t)PyBytes_GET_SIZE(p);
        if (n == 0) /* the whole target */
            return 0;
        if (e->path_len >= n && memcmp(path, PyBytes_AS_STRING(p), n) == 0
            && (e->path_len == n || path[n] == '/'))
            return 0;
    }
    return 1;
}

/* Sorted runs: chunks of the spool sorted in memory; all but the last are
 * written to unnamed files in tmp_dir_fd (O_TMPFILE), the last stays. */
struct runs {
    int *fds;
    int nfds;
    char *arena;
    size_t arena_bytes, arena_used;
    struct skey *keys;
    size_t nkeys, cap;
    int tmp_dir_fd;
};

/* The sort key of one arena entry; ``at`` is its offset / 8 (entries are
 * 8-byte aligned). Sorting these small keys (LSD radix, one pass per byte
 * that varies) instead of comparing entries through pointers keeps the sort
 * to a few sequential sweeps: it was the largest cost of an announcing run. */
struct skey {
    uint64_t ino, dev;
    uint32_t uid, at;
};

#define KEY_BYTES 20

static inline unsigned
key_byte(const struct skey *k, int i)
{
    if (i < 8)
        return (unsigned)(k->ino >> (8 * i)) & 255;
    if (i < 16)
        return (unsigned)(k->dev >> (8 * (i - 8))) & 255;
    return (k->uid >> (8 * (i - 16))) & 255;
}

static int
radix_sort(struct skey *keys, size_t n)
{
    if (n < 2)
        return 0;
    struct skey *tmp = malloc(n * sizeof *tmp);
    size_t (*counts)[256] = calloc(KEY_BYTES, sizeof *counts);
    if (tmp == NULL || counts == NULL) {
        free(tmp);
        free(counts);
        errno = ENOMEM;
        return -1;
    }
    for (size_t j = 0; j < n; j++)
        for (int i = 0; i < KEY_BYTES; i++)
            counts[i][key_byte(&keys[j], i)]++;
    struct skey *from = keys, *to = tmp;
    for (int i = 0; i < KEY_BYTES; i++) {
        if (counts[i][key_byte(&keys[0], i)] == n)
            continue; /* every key has the same byte here */
        size_t at[256], sum = 0;
        for (int b = 0; b < 256; b++) {
            at[b] = sum;
            sum += counts[i][b];
        }
        for (size_t j = 0; j < n; j++)
            to[at[key_byte(&from[j], i)]++] = from[j];
        struct skey *swap = from;
        from = to;
        to = swap;
    }
    if (from != keys)
        memcpy(keys, from, n * sizeof *keys);
    free(tmp);
    free(counts);
    return 0;
}

static __thread char *tie_arena; /* qsort has no context: set around one call, per thread */

static int
tie_cmp(const void *a, const void *b)
{
    const struct skey *x = a, *y = b;
    return full_cmp((const struct entry *)(tie_arena + (size_t)x->at * 8),
                    (const struct entry *)(tie_arena + (size_t)y->at * 8));
}

/* Sort the arena's entries by (uid, dev, ino, path): rs->keys in order. */
static int
sort_arena_offsets(struct runs *rs)
{
    if (radix_sort(rs->keys, rs->nkeys) < 0)
        return -1;
    /* several names of one file (hard links) are ordered by path */
    for (size_t i = 0; i + 1 < rs->nkeys;) {
        size_t j = i + 1;
        while (j < rs->nkeys && rs->keys[j].uid == rs->keys[i].uid
               && rs->keys[j].dev == rs->keys[i].dev && rs->keys[j].ino == rs->keys[i].ino)
            j++;
        if (j - i > 1) {
            tie_arena = rs->arena;
            qsort(rs->keys + i, j - i, sizeof *rs->keys, tie_cmp);
            tie_arena = NULL;
        }
        i = j;
    }
    return 0;
}

static inline const struct entry *
key_entry(const struct runs *rs, size_t i)
{
    return (const struct entry *)(rs->arena + (size_t)rs->keys[i].at * 8);
}

static int
spill(struct runs *rs)
{
    if (sort_arena_offsets(rs) < 0)
        return -1;
    int fd = openat(rs->tmp_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int *fds = realloc(rs->fds, sizeof(int) * (size_t)(rs->nfds + 1));
    if (fds == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    rs->fds = fds;
    rs->fds[rs->nfds++] = fd;
    struct writer w = {fd, malloc(IO_BYTES), 0, 0};
    if (w.buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    int failed = 0;
    for (size_t i = 0; i < rs->nkeys && !failed; i++) {
        if (i + 8 < rs->nkeys)
            __builtin_prefetch(key_entry(rs, i + 8));
        const struct entry *e = key_entry(rs, i);
        failed = writer_put(&w, e, sizeof *e + e->path_len) < 0;
    }
    failed = failed || writer_flush(&w) < 0;
    free(w.buf);
    rs->arena_used = 0;
    rs->nkeys = 0;
    return failed ? -1 : 0;
}

static int
add_entry(struct runs *rs, const struct entry *head, const char *dir, uint32_t dir_len,
          const char *name, uint16_t name_len, const struct filters *f)
{
    uint32_t path_len = dir_len ? dir_len + 1 + name_len : name_len;
    size_t need = sizeof(struct entry) + path_len;
    need = (need + 7) & ~(size_t)7; /* keep entries 8-byte aligned in memory */
    if (rs->arena_used + need > rs->arena_bytes && spill(rs) < 0)
        return -1;
    if (need > rs->arena_bytes) {
        errno = ENAMETOOLONG;
        return -1;
    }
    struct entry *e = (struct entry *)(rs->arena + rs->arena_used);
    *e = *head;
    e->path_len = path_len;
    char *path = (char *)(e + 1);
    if (dir_len) {
        memcpy(path, dir, dir_len);
        path[dir_len] = '/';
        memcpy(path + dir_len + 1, name, name_len);
    } else
        memcpy(path, name, name_len);
    if (!kept(f, e))
        return 0;
    if (rs->nkeys == rs->cap && grow((void **)&rs->keys, &rs->cap, sizeof *rs->keys, 4096) < 0)
        return -1;
    rs->keys[rs->nkeys++] = (struct skey){e->ino, e->dev, e->uid,
                                          (uint32_t)(rs->arena_used / 8)};
    rs->arena_used += need;
    return 0;
}

/* Read one spool fd from its start into the runs. */
static int
read_spool(struct runs *rs, int fd, uint64_t root_dev, const struct filters *f)
{
    struct reader r;
    char *dir = NULL;
    uint32_t dir_len = 0;
    uint64_t dir_ino = 0;
    int have_dir = 0, result = -1;
    if (reader_open(&r, fd, 0) < 0)
        goto done;
    for (;;) {
        int ok = reader_fill(&r, 1);
        if (ok == 0)
            break;
        if (ok < 0)
            goto done;
        char tag = r.buf[r.start];
        if (tag == 'D') {
            struct dir_rec d;
            if (reader_fill(&r, sizeof d) <= 0)
                goto truncated;
            memcpy(&d, r.buf + r.start, sizeof d);
            if (reader_fill(&r, sizeof d + d.path_len) <= 0)
                goto truncated;
            char *copy = realloc(dir, d.path_len + 1);
            if (copy == NULL) {
                errno = ENOMEM;
                goto done;
            }
            dir = copy;
            memcpy(dir, r.buf + r.start + sizeof d, d.path_len);
            dir_len = d.path_len;
            dir_ino = d.ino;
            have_dir = 1;
            r.start += sizeof d + d.path_len;
        } else if (tag == 'F' && have_dir) {
            struct file_rec fr;
            if (reader_fill(&r, sizeof fr) <= 0)
                goto truncated;
            memcpy(&fr, r.buf + r.start, sizeof fr);
            if (reader_fill(&r, sizeof fr + fr.name_len) <= 0)
                goto truncated;
            struct entry head = {fr.uid, fr.gid, root_dev, fr.ino, fr.size, fr.mtime_ns,
                                 fr.used, dir_ino, 0.0, 0, 0};
            if (add_entry(rs, &head, dir, dir_len, r.buf + r.start + sizeof fr, fr.name_len,
                          f) < 0)
                goto done;
            r.start += sizeof fr + fr.name_len;
        } else {
            goto truncated;
        }
    }
    result = 0;
    goto done;
truncated:
    errno = EINVAL;
done:
    free(r.buf);
    free(dir);
    return result;
}

/* Phase one on one thread: some of the spools into their own sorted runs.
 * Runs without Python's lock (the filters' list of bytes is only read), so
 * the spools of a parallel scan are sorted on as many cores at once. */
#define MAX_SORTERS 4

struct sorter {
    struct runs rs;
    const int *fds;
    int nfds, stride;
    uint64_t root_dev;
    const struct filters *f;
    int error; /* errno, 0 when it went well */
};

static void *
sort_spools(void *arg)
{
    struct sorter *s = arg;
    for (int i = 0; i < s->nfds; i += s->stride)
        if (read_spool(&s->rs, s->fds[i], s->root_dev, s->f) < 0) {
            s->error = errno ? errno : EIO;
            return NULL;
        }
    if (sort_arena_offsets(&s->rs) < 0)
        s->error = errno ? errno : ENOMEM;
    return NULL;
}

/* A sorted source for the merge: a run file, or the in-memory last chunk. */
struct source {
    struct reader r; /* run file */
    const struct runs *mem;
    size_t next; /* in-memory: index into offsets */
    const struct entry *head;
};

static int
source_next(struct source *s)
{
    if (s->mem != NULL) {
        if (s->next >= s->mem->nkeys) {
            s->head = NULL;
            return 0;
        }
        if (s->next + 8 < s->mem->nkeys)
            __builtin_prefetch(key_entry(s->mem, s->next + 8));
        s->head = key_entry(s->mem, s->next++);
        return 1;
    }
    if (s->head != NULL)
        reader_skip_entry(&s->r);
    int ok = reader_entry(&s->r, &s->head);
    if (ok <= 0)
        s->head = NULL;
    return ok;
}

struct user {
    uint32_t uid;
    uint64_t files, new_files, bytes;
    double first_at;
    uint64_t start, end;
    uint64_t digest; /* of the user's entries: their list is rewritten only when it changes */
};

/* A 64-bit digest of bytes, a word at a time (not cryptographic: it only
 * decides whether a list root wrote itself is still current). */
static inline uint64_t
mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w ^ ((uint64_t)n << 56)) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

struct merge {
    /* The new record is written lazily: while every entry so far is
     * byte-for-byte the previous record's at the same offset, nothing is
     * written (a site's nights are mostly unchanged: rewriting the same
     * hundred megabytes was the largest cost left). At the first difference
     * the identical part is copied from the previous file and writing goes on;
     * if there is none, the previous record stays the current one. */
    int prev_fd;
    int same; /* nothing written yet, and everything so far equals prev */
    struct writer out, dropped;
    struct user *users;
    size_t nusers, cap;
    double now;
    uint64_t count, ndropped;
    PyObject *told_since; /* dict uid -> last notice time */
    PyObject *told;       /* dict uid -> count, built here */
    uint32_t told_uid;
    int told_uid_set;
    double told_at; /* <0: no notice for told_uid */
    uint64_t told_count;
};

static int
told_flush(struct merge *m)
{
    if (!m->told_uid_set || m->told_count == 0)
        return 0;
    PyObject *key = PyLong_FromUnsignedLong(m->told_uid);
    PyObject *value = PyLong_FromUnsignedLongLong(m->told_count);
    int failed = key == NULL || value == NULL || PyDict_SetItem(m->told, key, value) < 0;
    Py_XDECREF(key);
    Py_XDECREF(value);
    return failed ? -1 : 0;
}

/* A previous entry is being left behind (kept or dropped): count it as told of. */
static int
told_note(struct merge *m, const struct entry *prev)
{
    if (!m->told_uid_set || prev->uid != m->told_uid) {
        if (told_flush(m) < 0)
            return -1;
        m->told_uid = prev->uid;
        m->told_uid_set = 1;
        m->told_count = 0;
        m->told_at = -1.0;
        PyObject *key = PyLong_FromUnsignedLong(prev->uid);
        if (key == NULL)
            return -1;
        PyObject *at = PyDict_GetItemWithError(m->told_since, key);
        Py_DECREF(key);
        if (at == NULL && PyErr_Occurred())
            return -1;
        if (at != NULL && at != Py_None) {
            m->told_at = PyFloat_AsDouble(at);
            if (m->told_at == -1.0 && PyErr_Occurred())
                return -1;
        }
    }
    if (m->told_at >= 0 && prev->announced_at <= m->told_at)
        m->told_count++;
    return 0;
}

/* Copy prev's first ``len`` bytes to the start of out (the unchanged part). */
static int
copy_prefix(int from, int to, uint64_t len)
{
    loff_t in = 0, out = 0;
    while ((uint64_t)in < len) {
        ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(len - (uint64_t)in), 0);
        if (n > 0)
            continue;
        if (n == 0) {
            errno = EINVAL; /* prev is shorter than it was a moment ago */
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != ENOSYS && errno != EXDEV && errno != EOPNOTSUPP && errno != EINVAL)
            return -1;
        char *buf = malloc(IO_BYTES);
        if (buf == NULL) {
            errno = ENOMEM;
            return -1;
        }
        while ((uint64_t)in < len) {
            size_t want = len - (uint64_t)in < IO_BYTES ? (size_t)(len - (uint64_t)in) : IO_BYTES;
            ssize_t got = pread(from, buf, want, in);
            if (got <= 0 || pwrite(to, buf, (size_t)got, out) != got) {
                if (got == 0)
                    errno = EINVAL;
                free(buf);
                return -1;
            }
            in += got;
            out += got;
        }
        free(buf);
    }
    return lseek(to, out, SEEK_SET) < 0 ? -1 : 0;
}

/* Stop being lazy: the output so far (equal to prev's first bytes) is copied. */
static int
materialize(struct merge *m)
{
    if (!m->same)
        return 0;
    m->same = 0;
    uint64_t logical = m->out.offset;
    if (copy_prefix(m->prev_fd, m->out.fd, logical) < 0)
        return -1;
    m->out.used = 0;
    return 0;
}

/* Write one entry of the new record; ``prev_at`` is the offset of the previous
 * record's entry with the same key (0: none). */
static int
emit(struct merge *m, const struct entry *e, double announced_at, const struct entry *p,
     uint64_t prev_at)
{
    if (m->nusers == 0 || m->users[m->nusers - 1].uid != e->uid) {
        if (m->nusers == m->cap && grow((void **)&m->users, &m->cap, sizeof *m->users, 64) < 0)
            return -1;
        struct user *u = &m->users[m->nusers++];
        memset(u, 0, sizeof *u);
        u->uid = e->uid;
        u->first_at = announced_at;
        u->start = m->out.offset;
    }
    struct user *u = &m->users[m->nusers - 1];
    u->files++;
    u->bytes += (uint64_t)e->size;
    u->new_files += announced_at >= m->now;
    if (announced_at < u->first_at)
        u->first_at = announced_at;
    struct entry copy = *e;
    copy.announced_at = announced_at;
    copy.pad = 0;
    u->digest = mix(mix(u->digest, &copy, sizeof copy), e + 1, e->path_len);
    size_t len = sizeof copy + e->path_len;
    /* p: prev's entry of the same key and path (its header only) */
    if (m->same && !(p != NULL && prev_at == m->out.offset
                     && memcmp(p, &copy, sizeof copy) == 0)) {
        if (materialize(m) < 0)
            return -1;
    }
    if (m->same)
        m->out.offset += len; /* the same bytes are already there, in prev */
    else if (writer_put(&m->out, &copy, sizeof copy) < 0
             || writer_put(&m->out, e + 1, e->path_len) < 0)
        return -1;
    u->end = m->out.offset;
    m->count++;
    return 0;
}

static int
drop(struct merge *m, struct reader *prev, const struct entry *p)
{
    if (told_note(m, p) < 0 || writer_put(&m->dropped, p, sizeof *p + p->path_len) < 0)
        return -1;
    m->ndropped++;
    reader_skip_entry(prev);
    return 0;
}

/* The k-way merge of the sorted sources with the previous record. */
static int
merge_all(struct merge *m, struct source *src, int nsrc, struct reader *prev, int have_prev)
{
    const struct entry *last = NULL;
    struct entry last_key;
    for (;;) {
        int best = -1;
        for (int i = 0; i < nsrc; i++)
            if (src[i].head != NULL && (best < 0 || full_cmp(src[i].head, src[best].head) < 0))
                best = i;
        if (best < 0)
            break;
        const struct entry *c = src[best].head;
        if (last != NULL && key_cmp(c, &last_key) == 0) { /* another name of the same file */
            if (source_next(&src[best]) < 0)
                return -1;
            continue;
        }
        double announced_at = m->now;
        const struct entry *match = NULL;
        struct entry match_head;
        uint64_t match_at = 0;
        while (have_prev) {
            const struct entry *p;
            int ok = reader_entry(prev, &p);
            if (ok < 0)
                return -1;
            if (ok == 0) {
                have_prev = 0;
                break;
            }
            int order = key_cmp(p, c);
            if (order < 0) {
                if (drop(m, prev, p) < 0)
                    return -1;
                continue;
            }
            if (order == 0) {
                if (told_note(m, p) < 0)
                    return -1;
                if (p->size == c->size && p->mtime_ns == c->mtime_ns)
                    announced_at = p->announced_at;
                match_at = prev->base + prev->start;
                match_head = *p; /* kept: the next read may move prev's buffer */
                match = (c->path_len == p->path_len
                         && memcmp(c + 1, p + 1, p->path_len) == 0) ? &match_head : NULL;
                reader_skip_entry(prev);
            }
            break;
        }
        if (emit(m, c, announced_at, match, match_at) < 0)
            return -1;
        last_key = *c;
        last = &last_key;
        if (source_next(&src[best]) < 0)
            return -1;
    }
    while (have_prev) {
        const struct entry *p;
        int ok = reader_entry(prev, &p);
        if (ok < 0)
            return -1;
        if (ok == 0)
            break;
        if (drop(m, prev, p) < 0)
            return -1;
    }
    return told_flush(m);
}

static int
read_filters(struct filters *f, PyObject *uids, PyObject *paths, Py_buffer *acted)
{
    memset(f, 0, sizeof *f);
    f->paths = paths;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(paths); i++)
        if (!PyBytes_Check(PyList_GET_ITEM(paths, i))) {
            PyErr_SetString(PyExc_TypeError, "exempt paths must be bytes");
            return -1;
        }
    f->nuids = PyList_GET_SIZE(uids);
    f->uids = malloc(sizeof(uint32_t) * (size_t)(f->nuids + 1));
    if (f->uids == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < f->nuids; i++) {
        unsigned long uid = PyLong_AsUnsignedLong(PyList_GET_ITEM(uids, i));
        if (PyErr_Occurred())
            return -1;
        f->uids[i] = (uint32_t)uid;
    }
    qsort(f->uids, (size_t)f->nuids, sizeof(uint32_t), uid_cmp);
    f->nacted = (size_t)acted->len / (2 * sizeof(uint64_t));
    f->acted = malloc(acted->len + 16);
    if (f->acted == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(f->acted, acted->buf, f->nacted * 2 * sizeof(uint64_t));
    qsort(f->acted, f->nacted, 2 * sizeof(uint64_t), pair_cmp);
    return 0;
}

static PyObject *
users_list(const struct merge *m)
{
    PyObject *list = PyList_New((Py_ssize_t)m->nusers);
    for (size_t i = 0; list != NULL && i < m->nusers; i++) {
        const struct user *u = &m->users[i];
        PyObject *item = Py_BuildValue("(kKKKdKKK)", (unsigned long)u->uid,
                                       (unsigned long long)u->files,
                                       (unsigned long long)u->bytes,
                                       (unsigned long long)u->new_files, u->first_at,
                                       (unsigned long long)u->start,
                                       (unsigned long long)u->end,
                                       (unsigned long long)u->digest);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

PyDoc_STRVAR(build_doc,
"build(spool_fds, prev_fd, out_fd, dropped_fd, tmp_dir_fd, root_dev, now, exempt_uids,\n"
"      exempt_paths, acted, told_since, chunk_bytes)\n"
"    -> (users, told, dropped, count, unchanged)\n\n"
"Sort the scan's spooled candidates (in chunks of ``chunk_bytes``, spilled as\n"
"unnamed files in ``tmp_dir_fd``), leave out exempt owners, exempt subtrees\n"
"and the (dev, ino) pairs in ``acted`` (packed u64 pairs), and merge them with\n"
"the previous record (``prev_fd``, -1 for none): an unchanged file (same key,\n"
"size and mtime) keeps its announced_at, any other gets ``now``. The new\n"
"record goes to ``out_fd`` (from its current offset, header first), the\n"
"previous entries not listed again to ``dropped_fd`` (bare entries). Returns\n"
"per owner (uid, files, bytes, new files, first announced_at, start, end:\n"
"byte range in out, a digest of those entries), uid -> previous files a notice told of (announced at or\n"
"before ``told_since[uid]``), how many were dropped, the entry count, and\n"
"whether the new record is exactly the previous one (then nothing was written\n"
"to out_fd: the previous record stays).");

static PyObject *
build(PyObject *module, PyObject *args)
{
    PyObject *spool_fds, *uids, *paths, *told_since;
    int prev_fd, out_fd, dropped_fd, tmp_dir_fd;
    unsigned long long root_dev;
    double now;
    Py_buffer acted;
    Py_ssize_t chunk_bytes;
    if (!PyArg_ParseTuple(args, "O!iiiiKdO!O!y*O!n", &PyList_Type, &spool_fds, &prev_fd,
                          &out_fd, &dropped_fd, &tmp_dir_fd, &root_dev, &now, &PyList_Type,
                          &uids, &PyList_Type, &paths, &acted, &PyDict_Type, &told_since,
                          &chunk_bytes))
        return NULL;
    struct filters f;
    struct sorter sorters[MAX_SORTERS];
    memset(sorters, 0, sizeof sorters);
    int nsorters = 0, *fds = NULL, nfds = (int)PyList_GET_SIZE(spool_fds);
    struct source *src = NULL;
    struct reader prev;
    memset(&prev, 0, sizeof prev);
    struct merge m;
    memset(&m, 0, sizeof m);
    PyObject *result = NULL;
    int nsrc = 0;

    if (read_filters(&f, uids, paths, &acted) < 0)
        goto done;
    fds = calloc((size_t)nfds + 1, sizeof *fds);
    if (fds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < nfds; i++) {
        fds[i] = (int)PyLong_AsLong(PyList_GET_ITEM(spool_fds, i));
        if (PyErr_Occurred())
            goto done;
    }
    /* the memory for sorting is shared out, not multiplied */
    nsorters = nfds < 1 ? 1 : nfds < MAX_SORTERS ? nfds : MAX_SORTERS;
    for (int t = 0; t < nsorters; t++) {
        struct sorter *st = &sorters[t];
        st->rs.tmp_dir_fd = tmp_dir_fd;
        st->rs.arena_bytes = (size_t)chunk_bytes / (size_t)nsorters;
        if (st->rs.arena_bytes < (1 << 16))
            st->rs.arena_bytes = 1 << 16;
        st->rs.arena = malloc(st->rs.arena_bytes);
        st->fds = fds + t;
        st->nfds = nfds - t;
        st->stride = nsorters;
        st->root_dev = root_dev;
        st->f = &f;
        if (st->rs.arena == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    pthread_t threads[MAX_SORTERS];
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; started < nsorters - 1; started++)
        if (pthread_create(&threads[started], NULL, sort_spools, &sorters[started]) != 0)
            break;
    for (int t = started; t < nsorters; t++) /* the rest (or all, without threads) here */
        sort_spools(&sorters[t]);
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    Py_END_ALLOW_THREADS
    int total_runs = 0;
    for (int t = 0; t < nsorters; t++) {
        if (sorters[t].error) {
            errno = sorters[t].error;
            goto os_error;
        }
        total_runs += sorters[t].rs.nfds + 1;
    }
    src = calloc((size_t)total_runs, sizeof *src);
    if (src == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int t = 0; t < nsorters; t++) {
        struct runs *rs = &sorters[t].rs;
        for (int i = 0; i < rs->nfds; i++) {
            nsrc++;
            if (reader_open(&src[nsrc - 1].r, rs->fds[i], 0) < 0
                || source_next(&src[nsrc - 1]) < 0)
                goto os_error;
        }
        src[nsrc].mem = rs;
        source_next(&src[nsrc]);
        nsrc++;
    }

    int have_prev = prev_fd >= 0;
    if (have_prev) {
        if (reader_open(&prev, prev_fd, 0) < 0)
            goto os_error;
        if (reader_fill(&prev, HEADER_BYTES) <= 0 || memcmp(prev.buf, MAGIC, 8) != 0) {
            PyErr_SetString(PyExc_ValueError, "the previous record is not a dkmonitor record");
            goto done;
        }
        prev.start = HEADER_BYTES;
    }
    m.now = now;
    m.told_since = told_since;
    m.told = PyDict_New();
    m.out = (struct writer){out_fd, malloc(IO_BYTES), 0, 0};
    m.dropped = (struct writer){dropped_fd, malloc(IO_BYTES), 0, 0};
    if (m.told == NULL || m.out.buf == NULL || m.dropped.buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    char header[HEADER_BYTES] = MAGIC;
    m.prev_fd = prev_fd;
    m.same = have_prev;
    if (m.same)
        m.out.offset = HEADER_BYTES; /* prev's header is there until copied */
    else if (writer_put(&m.out, header, HEADER_BYTES) < 0)
        goto os_error;
    if (merge_all(&m, src, nsrc, &prev, have_prev) < 0) {
        if (PyErr_Occurred())
            goto done;
        goto os_error;
    }
    struct stat prev_st;
    int unchanged = 0;
    if (m.same) {
        if (fstat(prev_fd, &prev_st) < 0)
            goto os_error;
        unchanged = (uint64_t)prev_st.st_size == m.out.offset;
        if (!unchanged && materialize(&m) < 0)
            goto os_error;
    }
    if (writer_flush(&m.out) < 0 || writer_flush(&m.dropped) < 0)
        goto os_error;
    if (!unchanged) {
        uint64_t count = m.count;
        memcpy(header + 8, &count, 8);
        off_t base = lseek(out_fd, 0, SEEK_CUR) - (off_t)m.out.offset;
        if (pwrite(out_fd, header, HEADER_BYTES, base) != HEADER_BYTES)
            goto os_error;
    }
    PyObject *users = users_list(&m);
    if (users != NULL)
        result = Py_BuildValue("(NOKKO)", users, m.told, (unsigned long long)m.ndropped,
                               (unsigned long long)m.count, unchanged ? Py_True : Py_False);
    goto done;
os_error:
    PyErr_SetFromErrno(PyExc_OSError);
done:
    PyBuffer_Release(&acted);
    free(f.uids);
    free(f.acted);
    for (int t = 0; t < nsorters; t++) {
        struct runs *rs = &sorters[t].rs;
        for (int i = 0; i < rs->nfds; i++)
            close(rs->fds[i]);
        free(rs->fds);
        free(rs->arena);
        free(rs->keys);
    }
    free(fds);
    for (int i = 0; src != NULL && i < nsrc; i++)
        free(src[i].r.buf);
    free(src);
    free(prev.buf);
    free(m.out.buf);
    free(m.dropped.buf);
    free(m.users);
    Py_XDECREF(m.told);
    return result;
}

/* ------------------------------------------------------------------ lists */

/* ``2026-12-14T08:00:00Z`` for epoch seconds (as units.epoch_iso_utc, which
 * floors like time.gmtime): the date from gmtime once per day, the time of
 * day by arithmetic -- formatting was half the cost of a list line. */
struct iso_cache {
    long long day;
    char date[16]; /* "2026-12-14T" */
};

static char *
put_iso(char *out, struct iso_cache *c, double epoch)
{
    long long second = (long long)epoch;
    if ((double)second > epoch)
        second -= 1;
    long long day = second >= 0 ? second / 86400 : -((-second + 86399) / 86400);
    if (day != c->day) {
        time_t t = (time_t)(day * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(c->date, sizeof c->date, "%Y-%m-%dT", &tm);
        c->day = day;
    }
    size_t n = strlen(c->date);
    memcpy(out, c->date, n);
    out += n;
    long long of_day = second - day * 86400;
    int h = (int)(of_day / 3600), m = (int)(of_day / 60 % 60), sec = (int)(of_day % 60);
    *out++ = (char)('0' + h / 10);
    *out++ = (char)('0' + h % 10);
    *out++ = ':';
    *out++ = (char)('0' + m / 10);
    *out++ = (char)('0' + m % 10);
    *out++ = ':';
    *out++ = (char)('0' + sec / 10);
    *out++ = (char)('0' + sec % 10);
    *out++ = 'Z';
    return out;
}

static char *
put_int(char *out, long long value)
{
    char digits[24];
    int n = 0;
    unsigned long long v = value < 0 ? 0ULL - (unsigned long long)value
                                     : (unsigned long long)value;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0)
        *out++ = '-';
    while (n)
        *out++ = digits[--n];
    return out;
}

static const char hex[] = "0123456789abcdef";

static char *
put_escaped(char *out, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (ch >= 0x20 && ch <= 0x7e && ch != '\\')
            *out++ = (char)ch;
        else {
            *out++ = '\\';
            *out++ = 'x';
            *out++ = hex[ch >> 4];
            *out++ = hex[ch & 15];
        }
    }
    return out;
}

PyDoc_STRVAR(format_lines_doc,
"format_lines(data, notice_seconds, prefix, limit) -> (bytes, consumed)\n\n"
"The users' list lines (announce/lists.py) for the record entries at the\n"
"start of ``data``: ``size<TAB>last use<TAB>purge after<TAB>path``, times in\n"
"UTC, the path ``prefix + path`` with bytes outside printable ASCII and the\n"
"backslash written as \\xHH. Stops after about ``limit`` bytes of text or\n"
"at an incomplete entry; ``consumed`` says how far it got.");

static PyObject *
format_lines(PyObject *module, PyObject *args)
{
    Py_buffer data, prefix;
    double notice_seconds;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "y*dy*n", &data, &notice_seconds, &prefix, &limit))
        return NULL;
    size_t cap = (size_t)limit + 65536, used = 0, at = 0;
    char *out = malloc(cap);
    char *escaped_prefix = malloc(4 * (size_t)prefix.len + 1);
    PyObject *result = NULL;
    struct iso_cache used_c = {LLONG_MIN, ""}, purge_c = {LLONG_MIN, ""};
    if (out == NULL || escaped_prefix == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    size_t prefix_len = (size_t)(put_escaped(escaped_prefix, prefix.buf, (size_t)prefix.len)
                                 - escaped_prefix);
    const char *base = data.buf;
    while (used < (size_t)limit && at + sizeof(struct entry) <= (size_t)data.len) {
        struct entry e;
        memcpy(&e, base + at, sizeof e);
        if (at + sizeof e + e.path_len > (size_t)data.len)
            break;
        size_t need = 80 + prefix_len + 4 * (size_t)e.path_len;
        if (used + need > cap) {
            size_t grown = (used + need) * 2;
            char *bigger = realloc(out, grown);
            if (bigger == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            out = bigger;
            cap = grown;
        }
        char *p = put_int(out + used, e.size);
        *p++ = '\t';
        p = put_iso(p, &used_c, e.used);
        *p++ = '\t';
        p = put_iso(p, &purge_c, e.announced_at + notice_seconds);
        *p++ = '\t';
        memcpy(p, escaped_prefix, prefix_len);
        p = put_escaped(p + prefix_len, (const unsigned char *)(base + at + sizeof e),
                        e.path_len);
        *p++ = '\n';
        used = (size_t)(p - out);
        at += sizeof e + e.path_len;
    }
    result = Py_BuildValue("(y#n)", out, (Py_ssize_t)used, (Py_ssize_t)at);
done:
    free(out);
    free(escaped_prefix);
    PyBuffer_Release(&data);
    PyBuffer_Release(&prefix);
    return result;
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS, build_doc},
    {"format_lines", format_lines, METH_VARARGS, format_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dkmonitor.announce._recordio",
    .m_doc = "Root's record of announced files, compiled (optional; see recordfile.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__recordio(void)
{
    return PyModule_Create(&module);
}
