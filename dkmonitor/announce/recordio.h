/*
 * The compiled record builder's shared declarations (dkmonitor.announce._recordio).
 *
 * The module is split by job: recordio_io.c (buffered reading and writing of
 * records and runs), recordio_sets.c (phase zero: which owners' candidates are
 * as they were, to be carried over), recordio_sort.c (phase one: the scan's
 * spools into sorted runs), recordio_merge.c (phase two: the runs merged with
 * the previous record, by ranges of owners on several threads), _recordio.c
 * (the Python module: arguments, results, list lines). Formats: _recordio.c.
 */
#ifndef DKM_RECORDIO_H
#define DKM_RECORDIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
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

struct writer {
    int fd;
    char *buf;
    size_t used;
    uint64_t offset; /* bytes written through this writer so far, buffered included */
};

/* A sequential reader that can hand out a whole record of up to IO_BYTES; it
 * reads with pread, so that several readers of one file do not interfere.
 * A regular file is mapped instead of read (``mapped``): the record, the runs
 * and the spools are root's own files, and copying every byte of them through
 * read() was a third of the build's time. */
struct reader {
    int fd;
    char *buf;
    size_t start, end;
    int eof, mapped;
    uint64_t base;   /* file offset of buf[0] */
    size_t released; /* mapped: the pages before this are given back */
    size_t release;  /* mapped: given back this many bytes at a time (a power of two) */
};

int grow(void **items, size_t *cap, size_t item_size, size_t first);
int writer_flush(struct writer *w);
int writer_put_full(struct writer *w, const void *data, size_t len);

static inline int
writer_put(struct writer *w, const void *data, size_t len)
{
    w->offset += len;
    if (w->used + len > IO_BYTES)
        return writer_put_full(w, data, len);
    memcpy(w->buf + w->used, data, len);
    w->used += len;
    return 0;
}
int reader_refill(struct reader *r, size_t need);
int reader_open(struct reader *r, int fd, off_t at, size_t release);
void reader_close(struct reader *r);
void reader_give_back(struct reader *r);
void reader_give_back_to(struct reader *r, size_t upto);

/* The per-entry calls are inline: they run once for every file of every run. */

/* Ensure ``need`` bytes are buffered; 1 if so, 0 at a clean end, -1 on error
 * (errno set; EINVAL for a truncated record). */
static inline int
reader_fill(struct reader *r, size_t need)
{
    return r->end - r->start >= need ? 1 : reader_refill(r, need);
}

/* A mapped reader gives back the pages it has gone past, ``release`` bytes
 * at a time: the files are read once, front to back, and without this every
 * page of them would stay in the process (its resident memory would grow
 * with the number of files; the pages stay in the page cache either way).
 * Each give-back stops the other threads to flush their TLBs (an interrupt
 * per CPU, dear in a virtual machine), which cost more than the pages: a
 * reader steps wide while the readers are few (a spool, the previous record,
 * the runs of a build of a few million files), narrow when there are many. */
#define RELEASE_BYTES (256 << 10)
#define WIDE_RELEASE_BYTES (1 << 20)
#define RUN_WINDOWS_BYTES (32 << 20) /* what the run readers of one merge may hold */

size_t run_release(int readers);

static inline void
reader_release(struct reader *r)
{
    if (r->mapped && r->start - r->released >= 2 * r->release)
        reader_give_back(r);
}

/* The next entry of a sorted file (record or run): 1, 0 at the end, -1. */
static inline int
reader_entry(struct reader *r, const struct entry **out)
{
    int ok = reader_fill(r, sizeof(struct entry));
    if (ok <= 0)
        return ok;
    uint32_t path_len;
    memcpy(&path_len, r->buf + r->start + offsetof(struct entry, path_len), sizeof path_len);
    if (reader_fill(r, sizeof(struct entry) + path_len) <= 0) {
        errno = EINVAL;
        return -1;
    }
    *out = (const struct entry *)(r->buf + r->start);
    return 1;
}

/* The next record of a spool: its tag ('D' or 'F'), 0 at the end, -1 (errno
 * EINVAL) for a truncated or unknown one. ``*len``: its length, path or name
 * included; it starts at ``r->buf + r->start``, all of it buffered. */
static inline int
spool_record(struct reader *r, size_t *len)
{
    int ok = reader_fill(r, 1);
    if (ok <= 0)
        return ok;
    char tag = r->buf[r->start];
    if (tag == 'D' && reader_fill(r, sizeof(struct dir_rec)) > 0) {
        struct dir_rec d;
        memcpy(&d, r->buf + r->start, sizeof d);
        *len = sizeof d + d.path_len;
    } else if (tag == 'F' && reader_fill(r, sizeof(struct file_rec)) > 0) {
        struct file_rec f;
        memcpy(&f, r->buf + r->start, sizeof f);
        *len = sizeof f + f.name_len;
    } else {
        errno = EINVAL;
        return -1;
    }
    if (reader_fill(r, *len) <= 0) {
        errno = EINVAL;
        return -1;
    }
    return tag;
}

static inline void
reader_skip_entry(struct reader *r)
{
    const struct entry *e = (const struct entry *)(r->buf + r->start);
    r->start += sizeof *e + e->path_len;
    reader_release(r);
}
int copy_range(int from, loff_t in, int to, loff_t out, uint64_t len);
void run_threads(void *(*job)(void *), void *items, size_t item_size, int n);

/* ------------------------------------------------------------------ order */

/* The record's order: owner, device, inode (the one place it is written). */
static inline int
order_of(uint32_t uid, uint64_t dev, uint64_t ino, uint32_t other_uid, uint64_t other_dev,
         uint64_t other_ino)
{
    if (uid != other_uid)
        return uid < other_uid ? -1 : 1;
    if (dev != other_dev)
        return dev < other_dev ? -1 : 1;
    if (ino != other_ino)
        return ino < other_ino ? -1 : 1;
    return 0;
}

static inline int
key_cmp(const struct entry *a, const struct entry *b)
{
    return order_of(a->uid, a->dev, a->ino, b->uid, b->dev, b->ino);
}

/* Key, then path: of several names of one inode the smallest path is kept. */
static inline int
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

/* of u32 uids, or structs whose first member is one (qsort, and bsearch by a uid) */
int uid_cmp(const void *a, const void *b);
int pair_cmp(const void *a, const void *b); /* of (u64, u64) pairs */

/* ------------------------------------------------------------------ phase one: sort */

struct filters {
    uint32_t *uids; /* exempt owners, sorted */
    Py_ssize_t nuids;
    PyObject *paths; /* list of bytes: exempt subtrees below the target */
    uint64_t *acted; /* (dev, ino) pairs acted on by this run's clean-up, sorted */
    size_t nacted;
};

/* Where each owner's entries start in a sorted run, and how many there are:
 * the merge is split between threads by owner, and each thread starts every
 * run at its first owner. ``at``: file offset (run files) or key index. */
struct bound {
    uint32_t uid;
    uint64_t at, count;
};

struct bounds {
    struct bound *items;
    size_t n, cap;
};

/* One directory of the chunk being sorted: its 'D' record, in the spool's mapping. */
struct chunk_dir {
    const char *path;
    uint32_t path_len;
    int exempt; /* the whole directory is at or under an exempt path */
    uint64_t ino;
};

/* The sort key of one candidate: where its 'F' record is in the spool's
 * mapping, and its directory in the chunk's table. Sorting these small keys
 * (LSD radix, one pass per byte that varies) and reading the records where
 * the scan wrote them -- rather than copying every candidate's whole entry,
 * path and all, into memory first -- keeps the sort to a few sequential
 * sweeps and one gather: it was the largest cost of an announcing run.
 * Every candidate of a build has the target's device (``root_dev``). */
struct skey {
    uint64_t ino;
    uint32_t uid, dir;
    const char *rec;
};

/* Sorted runs: chunks of the spools sorted in memory; all but the last are
 * written to unnamed files in tmp_dir_fd (O_TMPFILE), the last stays. A chunk
 * holds at most ``budget`` bytes: its keys, its directories and the spool
 * pages its records are on (given back once it is spilled). */
struct runs {
    int *fds;
    struct bounds *file_bounds; /* one per fd */
    struct bounds mem_bounds;   /* of the in-memory chunk, once sorted */
    int nfds;
    size_t budget, held; /* held: spool bytes read since the last spill */
    struct skey *keys;
    size_t nkeys, cap;
    struct chunk_dir *dirs;
    size_t ndirs, dirs_cap;
    char *carried; /* the path of a directory that goes on from a spilled chunk */
    size_t carried_cap;
    uint64_t root_dev;
    int tmp_dir_fd;
    int *levels;   /* one per fd: how many merges its entries went through */
    int fan_in;    /* runs of one level merged into one of the next (at least 2) */
    int peers;     /* sorters at once (their merges of runs share RUN_WINDOWS_BYTES) */
};

/* A sorter's spilled runs are merged FAN_IN at a time into longer ones, as an
 * external sort does: a billion candidates spill thousands of runs, and the
 * final merge then had as many sources, each an open file (past the usual
 * limit of 1024) and a mapped reader's pages, and a comparison with every one
 * of them per entry. Levels keep every entry to a few passes (one per 16x). */
#define FAN_IN 16

/* The length of a candidate's path below the target: its directory's, '/'
 * and its name, or its name alone at the top. */
static inline uint32_t
joined_len(const struct chunk_dir *d, uint16_t name_len)
{
    return d->path_len ? d->path_len + 1u + name_len : name_len;
}

/* The record entry of key ``k`` (its header; the path is the directory's,
 * '/', and the name, or the name alone at the top): the name and its length. */
static inline const char *
key_entry(const struct runs *rs, const struct skey *k, struct entry *e, uint16_t *name_len)
{
    struct file_rec fr;
    memcpy(&fr, k->rec, sizeof fr);
    const struct chunk_dir *d = &rs->dirs[k->dir];
    *e = (struct entry){fr.uid, fr.gid, rs->root_dev, fr.ino, fr.size, fr.mtime_ns, fr.used,
                        d->ino, 0.0, joined_len(d, fr.name_len), 0};
    *name_len = fr.name_len;
    return k->rec + sizeof fr;
}

/* The whole entry of key ``k`` into ``*buf`` (grown as needed); -1 on ENOMEM. */
static inline int
key_entry_into(const struct runs *rs, const struct skey *k, char **buf, size_t *cap)
{
    struct entry e;
    uint16_t name_len;
    const char *name = key_entry(rs, k, &e, &name_len);
    size_t need = sizeof e + e.path_len;
    if (need > *cap) {
        char *bigger = realloc(*buf, need);
        if (bigger == NULL) {
            errno = ENOMEM;
            return -1;
        }
        *buf = bigger;
        *cap = need;
    }
    char *path = *buf + sizeof e;
    const struct chunk_dir *d = &rs->dirs[k->dir];
    memcpy(*buf, &e, sizeof e);
    if (d->path_len) {
        memcpy(path, d->path, d->path_len);
        path[d->path_len] = '/';
        path += d->path_len + 1;
    }
    memcpy(path, name, name_len);
    return 0;
}

/* A sorted source for the merge: a run file, or the in-memory last chunk
 * (whose entries are put together in ``own``, one at a time). */
struct source {
    struct reader r; /* run file */
    const struct runs *mem;
    size_t next; /* in-memory: index into keys */
    char *own;
    size_t own_cap;
    const struct entry *head;
    uint64_t ino, dev;
    uint32_t uid;
    uint64_t end_uid; /* the first owner that is not this source's (UINT64_MAX: none) */
};

static inline int
source_next(struct source *s)
{
    if (s->mem != NULL) {
        if (s->next >= s->mem->nkeys) {
            s->head = NULL;
            return 0;
        }
        if (s->next + 16 < s->mem->nkeys)
            __builtin_prefetch(s->mem->keys[s->next + 16].rec);
        const struct skey *k = &s->mem->keys[s->next];
        if (k->uid >= s->end_uid) {
            s->head = NULL;
            return 0;
        }
        if (key_entry_into(s->mem, k, &s->own, &s->own_cap) < 0) {
            s->head = NULL;
            return -1;
        }
        s->next++;
        s->head = (const struct entry *)s->own;
        s->ino = k->ino;
        s->dev = s->mem->root_dev;
        s->uid = k->uid;
        return 1;
    }
    if (s->head != NULL)
        reader_skip_entry(&s->r);
    int ok = reader_entry(&s->r, &s->head);
    if (ok > 0 && s->head->uid >= s->end_uid)
        ok = 0;
    if (ok <= 0)
        s->head = NULL;
    else {
        s->ino = s->head->ino;
        s->dev = s->head->dev;
        s->uid = s->head->uid;
    }
    return ok;
}

/* Whether source ``a``'s head comes before ``b``'s: key, then path (full_cmp);
 * a finished source comes last, and of equal heads the first source's. */
static inline int
source_before(const struct source *src, int a, int b)
{
    if (src[a].head == NULL)
        return 0;
    if (src[b].head == NULL)
        return 1;
    int order = order_of(src[a].uid, src[a].dev, src[a].ino, src[b].uid, src[b].dev,
                         src[b].ino);
    if (order == 0)
        order = full_cmp(src[a].head, src[b].head);
    return order < 0 || (order == 0 && a < b);
}

/* A tournament of losers over k sources: the next entry in log2(k) comparisons
 * rather than k. node[0] is the current winner, node[1..k-1] the losers of
 * the matches on its way; source i's leaf is node k + i. */
struct tree {
    int k;
    int *node;
};

int tree_init(struct tree *t, const struct source *src, int k);

/* Source ``s`` (the winner) moved on: replay its matches up to the root. */
static inline void
tree_replay(struct tree *t, const struct source *src, int s)
{
    for (int n = (s + t->k) >> 1; n > 0; n >>= 1)
        if (source_before(src, t->node[n], s)) {
            int loser = s;
            s = t->node[n];
            t->node[n] = loser;
        }
    t->node[0] = s;
}

/* Phase one, one thread each: some of the spools into their own sorted runs.
 * Runs without Python's lock (the filters' list of bytes is only read), so
 * the spools of a parallel scan are sorted on as many cores at once. */
#define MAX_SORTERS 4

/* An owner's candidates, as phase zero sums them up (recordio_sets.c): the sum
 * of their records' keyed hashes, and how many there are (0: an empty slot). */
struct owner_set {
    uint32_t uid;
    uint64_t sum, count;
};

struct owner_sets {
    struct owner_set *items; /* a sorter's: open addressing; the build's: sorted by uid */
    size_t n, cap;
};

/* The owners carried over (sorted by uid, each with its count of candidates),
 * and the last one looked up: records come an owner's run at a time. */
struct carried_owners {
    const struct bound *items;
    size_t n;
    uint32_t last_uid;
    int last, valid; /* whether last_uid is carried; whether there is a last */
};

static inline int
is_carried(struct carried_owners *c, uint32_t uid)
{
    if (c->n == 0)
        return 0;
    if (!c->valid || c->last_uid != uid) {
        c->last_uid = uid;
        c->valid = 1;
        c->last = bsearch(&uid, c->items, c->n, sizeof *c->items, uid_cmp) != NULL;
    }
    return c->last;
}

struct sorter {
    struct runs rs;
    const int *fds;
    int nfds, stride;
    struct reader *spools; /* one per fd it sorts, mapped until the build ends */
    int nspools;
    const struct filters *f;
    const uint64_t *set_key;     /* phase zero's SipHash key (two words) */
    struct owner_sets sets;      /* phase zero: the sets of this sorter's spools */
    struct carried_owners carried; /* left out of the sort */
    int error; /* errno, 0 when it went well */
};

uint64_t bounds_find(const struct bounds *b, uint32_t uid, uint64_t end);
int run_sorters(struct sorter *sorters, int nsorters);
int owner_sets_decide(struct sorter *sorters, int nsorters, const struct owner_set *prev,
                      size_t nprev, struct owner_sets *out, struct bound **carried,
                      size_t *ncarried);

/* ------------------------------------------------------------------ phase two: merge */

struct user {
    uint32_t uid;
    uint64_t files, new_files, bytes;
    double first_at;
    uint64_t start, end;
    uint64_t digest; /* of what their list shows: it is rewritten only when this changes */
    /* While every entry so far is the previous record's, byte for byte and in a
     * row, and that record's digest of the user is known, the digest is not
     * computed (it was a third of the merge, and most users' lists are the same
     * from night to night): ``pending``, with the previous entries' range. At
     * the first difference the digest of that range is taken (settle). */
    int pending;
    uint64_t pending_from, pending_to, known;
};

/* A user's digest in the previous record, as its last build gave it. */
struct known_digest {
    uint32_t uid;
    uint64_t digest;
};

struct told_since {
    uint32_t uid;
    double at; /* when the owner's last notice went out */
};

struct told {
    uint32_t uid;
    uint64_t count;
};

/* One thread's share of the merge: the owners from its first up to (not
 * including) ``end_uid``. Shares are merged at once, each into its own file;
 * the record is then put together in owner order. */
struct merge {
    /* The new record is written lazily: while every entry so far is
     * byte-for-byte the previous record's at the same offset, nothing is
     * written (a site's nights are mostly unchanged: rewriting the same
     * hundred megabytes was the largest cost left). At the first difference
     * the identical part is copied from the previous file and writing goes on;
     * if there is none, the previous record stays the current one. Offsets
     * (``out.offset``, the users' ranges) are the previous record's while the
     * share is the same as its part of it, and shifted into place at the end. */
    int prev_fd;
    int same; /* nothing written yet, and everything so far equals prev */
    struct writer out, dropped;
    uint64_t base;    /* out.offset where this share starts */
    uint64_t prev_to; /* where prev's part of this share ends */
    uint64_t end_uid;
    struct user *users;
    size_t nusers, cap;
    double now;
    uint64_t count, ndropped;
    const struct told_since *told_since; /* sorted by uid */
    size_t ntold_since;
    struct told *told; /* uid -> how many previous entries a notice had told of */
    size_t ntold, told_cap;
    double told_at; /* <0: no notice for the current told owner */
    const struct known_digest *known; /* sorted by uid */
    size_t nknown;
    struct carried_owners carried; /* their previous entries are kept whole */
    uint32_t last_dropped_uid; /* the owner of the last previous entry dropped */
    int have_dropped;
    int error;      /* errno of a failed share */
    int own_fds;    /* out and dropped are this share's unnamed files */
};

#define MAX_SHARES 4

struct share_job {
    struct merge *m;
    struct source *src;
    int nsrc;
    struct reader prev;
    int have_prev;
};

int merge_shares(struct merge *shares, struct share_job *jobs, int *nshares,
                 const struct sorter *sorters, int nsorters, int prev_fd, int out_fd,
                 int dropped_fd, int tmp_dir_fd, double now,
                 const struct told_since *told_since, size_t ntold_since,
                 const struct known_digest *known, size_t nknown,
                 const struct bound *carried, size_t ncarried, uint64_t share_from);
int assemble(struct merge *shares, int nshares, int prev_fd, int out_fd, int dropped_fd,
             int *unchanged);

#endif
