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
    /* Only the bytes that vary are sorted on (a target's files share one
     * device, and few owners or inode numbers fill all their bytes): one
     * sweep finds them, a second counts them, one more per byte moves. */
    uint64_t ino_diff = 0, dev_diff = 0;
    uint32_t uid_diff = 0;
    for (size_t j = 1; j < n; j++) {
        ino_diff |= keys[j].ino ^ keys[0].ino;
        dev_diff |= keys[j].dev ^ keys[0].dev;
        uid_diff |= keys[j].uid ^ keys[0].uid;
    }
    int varying[KEY_BYTES], nvarying = 0;
    for (int i = 0; i < KEY_BYTES; i++) {
        uint64_t diff = i < 8 ? ino_diff >> (8 * i)
            : i < 16 ? dev_diff >> (8 * (i - 8)) : (uint64_t)uid_diff >> (8 * (i - 16));
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

static int
spill(struct runs *rs)
{
    if (sort_arena_offsets(rs) < 0)
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
        if (i + 8 < rs->nkeys)
            __builtin_prefetch(key_entry(rs, i + 8));
        const struct entry *e = key_entry(rs, i);
        failed = bounds_note(bounds, e->uid, w.offset) < 0
            || writer_put(&w, e, sizeof *e + e->path_len) < 0;
    }
    failed = failed || writer_flush(&w) < 0;
    free(w.buf);
    rs->arena_used = 0;
    rs->nkeys = 0;
    return failed || cascade(rs) < 0 ? -1 : 0;
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
    if (need > rs->arena_bytes) { /* a path longer than the arena (tiny chunks): fit it */
        char *bigger = realloc(rs->arena, need);
        if (bigger == NULL) {
            errno = ENOMEM;
            return -1;
        }
        rs->arena = bigger;
        rs->arena_bytes = need;
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
    if (reader_open(&r, fd, 0, WIDE_RELEASE_BYTES) < 0)
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
            reader_release(&r);
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
            reader_release(&r);
        } else {
            goto truncated;
        }
    }
    result = 0;
    goto done;
truncated:
    errno = EINVAL;
done:
    reader_close(&r);
    free(dir);
    return result;
}

static void *
sort_spools(void *arg)
{
    struct sorter *s = arg;
    for (int i = 0; i < s->nfds; i += s->stride)
        if (read_spool(&s->rs, s->fds[i], s->root_dev, s->f) < 0) {
            s->error = errno ? errno : EIO;
            return NULL;
        }
    if (sort_arena_offsets(&s->rs) < 0) {
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
