/* Phase one: the scan's spools into sorted runs, one thread per spool (recordio.h). */
#include "recordio.h"

int
pair_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

int
uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether a directory is exempt whole: at or under one of the exempt paths. */
static int
dir_exempt(const struct filters *f, const char *dir, uint32_t dir_len)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(f->paths); i++) {
        PyObject *p = PyList_GET_ITEM(f->paths, i);
        size_t n = (size_t)PyBytes_GET_SIZE(p);
        if (n == 0) /* the whole target */
            return 1;
        if (dir_len >= n && memcmp(dir, PyBytes_AS_STRING(p), n) == 0
            && (dir_len == n || dir[n] == '/'))
            return 1;
    }
    return 0;
}

/* Whether a file (of a directory not exempt whole) is kept: not an exempt
 * owner's, not acted on by this run, not an exempt path itself (a longer
 * exempt path cannot be below a file: a name has no '/'). */
static int
kept(const struct filters *f, uint64_t dev, const struct file_rec *fr, const char *name,
     const struct chunk_dir *d)
{
    if (f->nuids && bsearch(&fr->uid, f->uids, (size_t)f->nuids, sizeof(uint32_t), uid_cmp))
        return 0;
    if (f->nacted) {
        uint64_t pair[2] = {dev, fr->ino};
        if (bsearch(pair, f->acted, f->nacted, 2 * sizeof(uint64_t), pair_cmp))
            return 0;
    }
    size_t path_len = joined_len(d, fr->name_len);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(f->paths); i++) {
        PyObject *p = PyList_GET_ITEM(f->paths, i);
        const char *exempt = PyBytes_AS_STRING(p);
        if ((size_t)PyBytes_GET_SIZE(p) != path_len)
            continue;
        if (d->path_len == 0 ? memcmp(exempt, name, fr->name_len) == 0
            : memcmp(exempt, d->path, d->path_len) == 0 && exempt[d->path_len] == '/'
                && memcmp(exempt + d->path_len + 1, name, fr->name_len) == 0)
            return 0;
    }
    return 1;
}

static int
bounds_note(struct bounds *b, uint32_t uid, uint64_t at)
{
    if (b->n > 0 && b->items[b->n - 1].uid == uid) {
        b->items[b->n - 1].count++;
        return 0;
    }
    if (b->n == b->cap && grow((void **)&b->items, &b->cap, sizeof *b->items, 64) < 0)
        return -1;
    b->items[b->n++] = (struct bound){uid, at, 1};
    return 0;
}

/* The ``at`` of the first owner at or above ``uid``; ``end`` if there is none. */
uint64_t
bounds_find(const struct bounds *b, uint32_t uid, uint64_t end)
{
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->items[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->n ? b->items[lo].at : end;
}

#define KEY_BYTES 12

static inline unsigned
key_byte(const struct skey *k, int i)
{
    if (i < 8)
        return (unsigned)(k->ino >> (8 * i)) & 255;
    return (k->uid >> (8 * (i - 8))) & 255;
}

static int
radix_sort(struct skey *keys, size_t n)
{
    if (n < 2)
        return 0;
    /* Only the bytes that vary are sorted on (few owners or inode numbers fill
     * all their bytes): one sweep finds them, a second counts them, one more
     * per byte moves. The device is the target's, the same for every key. */
    uint64_t ino_diff = 0;
    uint32_t uid_diff = 0;
    for (size_t j = 1; j < n; j++) {
        ino_diff |= keys[j].ino ^ keys[0].ino;
        uid_diff |= keys[j].uid ^ keys[0].uid;
    }
    int varying[KEY_BYTES], nvarying = 0;
    for (int i = 0; i < KEY_BYTES; i++) {
        uint64_t diff = i < 8 ? ino_diff >> (8 * i) : (uint64_t)uid_diff >> (8 * (i - 8));
        if (diff & 255)
            varying[nvarying++] = i;
    }
    if (nvarying == 0)
        return 0;
    struct skey *tmp = malloc(n * sizeof *tmp);
    size_t (*counts)[256] = calloc((size_t)nvarying, sizeof *counts);
    if (tmp == NULL || counts == NULL) {
        free(tmp);
        free(counts);
        errno = ENOMEM;
        return -1;
    }
    for (size_t j = 0; j < n; j++)
        for (int v = 0; v < nvarying; v++)
            counts[v][key_byte(&keys[j], varying[v])]++;
    struct skey *from = keys, *to = tmp;
    for (int v = 0; v < nvarying; v++) {
        int i = varying[v];
        size_t at[256], sum = 0;
        for (int b = 0; b < 256; b++) {
            at[b] = sum;
            sum += counts[v][b];
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

/* Several names of one file (hard links) are ordered by path: put together
 * here, for the few keys that tie (qsort has no context: a struct does). */
struct tie {
    struct skey key;
    char *entry; /* key_entry_into's */
    size_t cap;
};

static int
tie_cmp(const void *a, const void *b)
{
    return full_cmp((const struct entry *)((const struct tie *)a)->entry,
                    (const struct entry *)((const struct tie *)b)->entry);
}

static int
sort_ties(struct runs *rs, size_t from, size_t to)
{
    struct tie *ties = calloc(to - from, sizeof *ties);
    int failed = ties == NULL;
    for (size_t i = 0; i < to - from && !failed; i++) {
        ties[i].key = rs->keys[from + i];
        failed = key_entry_into(rs, &ties[i].key, &ties[i].entry, &ties[i].cap) < 0;
    }
    if (!failed) {
        qsort(ties, to - from, sizeof *ties, tie_cmp);
        for (size_t i = 0; i < to - from; i++)
            rs->keys[from + i] = ties[i].key;
    }
    for (size_t i = 0; ties != NULL && i < to - from; i++)
        free(ties[i].entry);
    free(ties);
    if (failed)
        errno = ENOMEM;
    return failed ? -1 : 0;
}

/* Sort the chunk's keys by (uid, ino, path); the device is the same for all. */
static int
sort_keys(struct runs *rs)
{
    if (radix_sort(rs->keys, rs->nkeys) < 0)
        return -1;
    for (size_t i = 0; i + 1 < rs->nkeys;) {
        size_t j = i + 1;
        while (j < rs->nkeys && rs->keys[j].uid == rs->keys[i].uid
               && rs->keys[j].ino == rs->keys[i].ino)
            j++;
        if (j - i > 1 && sort_ties(rs, i, j) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* A new unnamed run file, added to the sorter's runs at ``level`` (its
 * bounds empty, to be noted as it is written); its fd, or -1. */
static int
new_run(struct runs *rs, int level)
{
    int fd = openat(rs->tmp_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t n = (size_t)rs->nfds + 1;
    int *fds = realloc(rs->fds, sizeof *fds * n);
    if (fds != NULL)
        rs->fds = fds;
    int *levels = fds == NULL ? NULL : realloc(rs->levels, sizeof *levels * n);
    if (levels != NULL)
        rs->levels = levels;
    struct bounds *fb = levels == NULL ? NULL : realloc(rs->file_bounds, sizeof *fb * n);
    if (fb == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    rs->file_bounds = fb;
    memset(&fb[rs->nfds], 0, sizeof *fb);
    rs->levels[rs->nfds] = level;
    rs->fds[rs->nfds++] = fd;
    return fd;
}

/* Merge the sorter's last ``k`` runs (all of one level) into one run of the
 * next level, which takes their place: every entry kept, hard links too. */
static int
merge_runs(struct runs *rs, int k)
{
    int from = rs->nfds - k, level = rs->levels[from], failed = 0;
    struct source *src = calloc((size_t)k, sizeof *src);
    struct writer w = {-1, malloc(IO_BYTES), 0, 0};
    struct bounds merged = {0};
    struct tree tree = {0, NULL};
    if (src == NULL || w.buf == NULL) {
        errno = ENOMEM;
        failed = 1;
    }
    int opened = 0;
    for (; opened < k && !failed; opened++) {
        src[opened].end_uid = UINT64_MAX;
        failed = reader_open(&src[opened].r, rs->fds[from + opened], 0,
                               run_release(k * rs->peers)) < 0
            || source_next(&src[opened]) < 0;
    }
    if (!failed) {
        w.fd = openat(rs->tmp_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        failed = w.fd < 0 || tree_init(&tree, src, k) < 0;
    }
    while (!failed && src[tree.node[0]].head != NULL) {
        struct source *best = &src[tree.node[0]];
        const struct entry *e = best->head;
        failed = bounds_note(&merged, e->uid, w.offset) < 0
            || writer_put(&w, e, sizeof *e + e->path_len) < 0 || source_next(best) < 0;
        tree_replay(&tree, src, tree.node[0]);
    }
    failed = failed || writer_flush(&w) < 0;
    for (int i = 0; i < opened; i++)
        reader_close(&src[i].r);
    free(src);
    free(w.buf);
    free(tree.node);
    if (failed) {
        if (w.fd >= 0)
            close(w.fd);
        free(merged.items);
        return -1;
    }
    for (int i = from; i < rs->nfds; i++) {
        close(rs->fds[i]);
        free(rs->file_bounds[i].items);
    }
    rs->fds[from] = w.fd;
    rs->file_bounds[from] = merged;
    rs->levels[from] = level + 1;
    rs->nfds = from + 1;
    return 0;
}

/* While the last ``fan_in`` runs are of one level, merge them into one. */
static int
cascade(struct runs *rs)
{
    while (rs->nfds >= rs->fan_in) {
        int last = rs->nfds - 1, k = rs->fan_in;
        if (rs->levels[last - k + 1] != rs->levels[last])
            return 0; /* levels only fall along the runs: fewer than k at the last */
        if (merge_runs(rs, k) < 0)
            return -1;
    }
    return 0;
}

static int let_go(struct sorter *s);

/* Sort the chunk's keys and write their entries, in order, to a new run. The
 * chunk's spool pages are then given back; its last directory goes on into
 * the next chunk (its path copied: the pages it was on are given back). */
static int
spill(struct sorter *s)
{
    struct runs *rs = &s->rs;
    if (sort_keys(rs) < 0)
        return -1;
    int fd = new_run(rs, 0);
    if (fd < 0)
        return -1;
    struct bounds *bounds = &rs->file_bounds[rs->nfds - 1];
    struct writer w = {fd, malloc(IO_BYTES), 0, 0};
    if (w.buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    int failed = 0;
    for (size_t i = 0; i < rs->nkeys && !failed; i++) {
        if (i + 16 < rs->nkeys)
            __builtin_prefetch(rs->keys[i + 16].rec);
        const struct skey *k = &rs->keys[i];
        const struct chunk_dir *d = &rs->dirs[k->dir];
        struct entry e;
        uint16_t name_len;
        const char *name = key_entry(rs, k, &e, &name_len);
        failed = bounds_note(bounds, e.uid, w.offset) < 0 || writer_put(&w, &e, sizeof e) < 0
            || (d->path_len > 0 && (writer_put(&w, d->path, d->path_len) < 0
                                    || writer_put(&w, "/", 1) < 0))
            || writer_put(&w, name, name_len) < 0;
    }
    failed = failed || writer_flush(&w) < 0;
    free(w.buf);
    rs->nkeys = 0;
    return failed || let_go(s) < 0 || cascade(rs) < 0 ? -1 : 0;
}

/* The chunk's spool pages are given back (no key points into them any more);
 * its last directory goes on into the next chunk, its path copied. */
static int
let_go(struct sorter *s)
{
    struct runs *rs = &s->rs;
    struct chunk_dir last = rs->dirs[rs->ndirs - 1];
    if (last.path != rs->carried) {
        if (last.path_len > rs->carried_cap) {
            char *bigger = realloc(rs->carried, last.path_len);
            if (bigger == NULL) {
                errno = ENOMEM;
                return -1;
            }
            rs->carried = bigger;
            rs->carried_cap = last.path_len;
        }
        memcpy(rs->carried, last.path, last.path_len);
        last.path = rs->carried;
    }
    rs->dirs[0] = last;
    rs->ndirs = 1;
    for (int i = 0; i < s->nspools; i++)
        reader_give_back_to(&s->spools[i], s->spools[i].start);
    rs->held = 0;
    return 0;
}

static int
add_dir(struct sorter *s, const char *path, uint32_t path_len, uint64_t ino)
{
    struct runs *rs = &s->rs;
    if (rs->ndirs == rs->dirs_cap
        && grow((void **)&rs->dirs, &rs->dirs_cap, sizeof *rs->dirs, 256) < 0)
        return -1;
    rs->dirs[rs->ndirs++] = (struct chunk_dir){path, path_len, dir_exempt(s->f, path, path_len),
                                               ino};
    return 0;
}

/* One candidate's 'F' record (at ``rec``, in the spool's mapping) into the
 * chunk, unless it is left out; the chunk is spilled first when full (its
 * keys count twice: the radix sort moves them between two arrays). */
static int
add_file(struct sorter *s, const char *rec, const struct file_rec *fr)
{
    struct runs *rs = &s->rs;
    const struct chunk_dir *d = &rs->dirs[rs->ndirs - 1];
    if (is_carried(&s->carried, fr->uid))
        return 0; /* their previous entries are kept whole (recordio_sets.c) */
    if (d->exempt || !kept(s->f, rs->root_dev, fr, rec + sizeof *fr, d))
        return 0;
    size_t held = 2 * (rs->nkeys + 1) * sizeof(struct skey)
        + rs->ndirs * sizeof(struct chunk_dir) + rs->held;
    if (held > rs->budget && rs->nkeys > 0 && spill(s) < 0)
        return -1;
    if (rs->nkeys == rs->cap && grow((void **)&rs->keys, &rs->cap, sizeof *rs->keys, 4096) < 0)
        return -1;
    rs->keys[rs->nkeys++] = (struct skey){fr->ino, fr->uid, (uint32_t)(rs->ndirs - 1), rec};
    return 0;
}

/* Read one spool fd from its start into the chunks. It stays mapped until
 * the build ends: the chunks' keys point into it. */
static int
read_spool(struct sorter *s, int fd)
{
    struct reader *r = &s->spools[s->nspools];
    if (reader_open(r, fd, 0, WIDE_RELEASE_BYTES) < 0)
        return -1;
    s->nspools++;
    if (!r->mapped) {
        errno = ENODEV; /* a spool is root's own regular file: it is mapped */
        return -1;
    }
    int have_dir = 0, tag;
    size_t len;
    while ((tag = spool_record(r, &len)) > 0) {
        const char *at = r->buf + r->start;
        if (tag == 'D') {
            struct dir_rec d;
            memcpy(&d, at, sizeof d);
            if (add_dir(s, at + sizeof d, d.path_len, d.ino) < 0)
                return -1;
            have_dir = 1;
        } else if (!have_dir) {
            errno = EINVAL; /* a file before any directory */
            return -1;
        } else {
            struct file_rec fr;
            memcpy(&fr, at, sizeof fr);
            if (add_file(s, at, &fr) < 0)
                return -1;
        }
        r->start += len;
        s->rs.held += len;
        /* Records no key points to (carried owners') hold spool pages too: past the
         * budget, the chunk's few keys are spilled (or none) and the pages let go. */
        if (s->rs.held > s->rs.budget && (s->rs.nkeys > 0 ? spill(s) : let_go(s)) < 0)
            return -1;
    }
    return tag;
}

static void *
sort_spools(void *arg)
{
    struct sorter *s = arg;
    s->spools = calloc((size_t)(s->nfds / s->stride + 1), sizeof *s->spools);
    if (s->spools == NULL) {
        s->error = ENOMEM;
        return NULL;
    }
    for (int i = 0; i < s->nfds; i += s->stride) {
        if (read_spool(s, s->fds[i]) < 0) {
            s->error = errno ? errno : EIO;
            return NULL;
        }
    }
    if (sort_keys(&s->rs) < 0) {
        s->error = errno ? errno : ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < s->rs.nkeys; i++)
        if (bounds_note(&s->rs.mem_bounds, s->rs.keys[i].uid, i) < 0) {
            s->error = ENOMEM;
            break;
        }
    return NULL;
}

int
run_sorters(struct sorter *sorters, int nsorters)
{
    run_threads(sort_spools, sorters, sizeof *sorters, nsorters);
    for (int t = 0; t < nsorters; t++)
        if (sorters[t].error) {
            errno = sorters[t].error;
            return -1;
        }
    return 0;
}
