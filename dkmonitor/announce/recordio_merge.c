/* Phase two: the sorted runs merged with the previous record, by ranges of
 * owners on several threads, and the new record put together (recordio.h). */
#include "recordio.h"

static int
tree_build(struct tree *t, const struct source *src, int n)
{
    if (n >= t->k)
        return n - t->k;
    int a = tree_build(t, src, 2 * n), b = tree_build(t, src, 2 * n + 1);
    if (source_before(src, b, a)) {
        t->node[n] = a;
        return b;
    }
    t->node[n] = b;
    return a;
}

/* The tournament of sources whose heads are read (recordio.h); -1 on ENOMEM. */
int
tree_init(struct tree *t, const struct source *src, int k)
{
    t->k = k;
    t->node = malloc(sizeof *t->node * (size_t)(k > 1 ? k : 1));
    if (t->node == NULL) {
        errno = ENOMEM;
        return -1;
    }
    t->node[0] = k > 1 ? tree_build(t, src, 1) : 0;
    return 0;
}

/* A 64-bit digest of bytes (not cryptographic: it only decides whether a list
 * root wrote itself is still current), 16 bytes a step in two lanes: the two
 * multiplications of a step do not wait for each other, which halves the
 * chain of dependent ones (one per 8 bytes was a third of the merge). */
#define MIX_A 0x9E3779B97F4A7C15ULL
#define MIX_B 0xC2B2AE3D27D4EB4FULL

static inline uint64_t
mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n >= 16) {
        uint64_t w, v;
        memcpy(&w, p, 8);
        memcpy(&v, p + 8, 8);
        uint64_t a = (h ^ w) * MIX_A, b = (h ^ v) * MIX_B;
        h = (a ^ (a >> 29)) + (b ^ (b >> 32));
        p += 16;
        n -= 16;
    }
    if (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * MIX_A;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w ^ ((uint64_t)n << 56)) * MIX_A;
    return h ^ (h >> 32);
}

/* The part of an entry a user's list shows (size, last use, the date it was
 * first announced, path): the digest that decides whether the list is written
 * again covers these and nothing else. */
static inline uint64_t
digest_entry(uint64_t h, const struct entry *e, double announced_at)
{
    struct {
        int64_t size;
        double used, announced_at;
    } shown = {e->size, e->used, announced_at};
    return mix(mix(h, &shown, sizeof shown), e + 1, e->path_len);
}

/* A previous entry is being left behind (kept or dropped): count it as told of. */
static int
told_note(struct merge *m, const struct entry *prev)
{
    if (m->ntold == 0 || m->told[m->ntold - 1].uid != prev->uid) {
        if (m->ntold > 0 && m->told[m->ntold - 1].count == 0)
            m->ntold--; /* only owners told of something are reported */
        if (m->ntold == m->told_cap
            && grow((void **)&m->told, &m->told_cap, sizeof *m->told, 64) < 0)
            return -1;
        m->told[m->ntold++] = (struct told){prev->uid, 0};
        const struct told_since *since = bsearch(&prev->uid, m->told_since, m->ntold_since,
                                                 sizeof *m->told_since, uid_cmp);
        m->told_at = since != NULL ? since->at : -1.0;
    }
    if (m->told_at >= 0 && prev->announced_at <= m->told_at)
        m->told[m->ntold - 1].count++;
    return 0;
}

/* Stop being lazy: the output so far (equal to prev's first bytes) is copied. */
static int
materialize(struct merge *m)
{
    if (!m->same)
        return 0;
    m->same = 0;
    if (copy_range(m->prev_fd, (loff_t)m->base, m->out.fd, 0, m->out.offset - m->base) < 0)
        return -1;
    m->out.used = 0;
    return 0;
}

/* A pending user's digest is taken after all: of the previous record's
 * entries that were theirs so far (the same bytes the new record has). */
static int
settle(struct merge *m, struct user *u)
{
    struct reader r;
    uint64_t h = 0, at = u->pending_from;
    if (reader_open(&r, m->prev_fd, (off_t)at, RELEASE_BYTES) < 0)
        return -1;
    while (at < u->pending_to) {
        const struct entry *e;
        int ok = reader_entry(&r, &e);
        if (ok <= 0) {
            reader_close(&r);
            errno = ok == 0 ? EINVAL : errno;
            return -1;
        }
        h = digest_entry(h, e, e->announced_at);
        at += sizeof *e + e->path_len;
        reader_skip_entry(&r);
    }
    reader_close(&r);
    u->digest = h;
    u->pending = 0;
    return 0;
}

#define NO_MATCH UINT64_MAX

/* Write one entry of the new record. ``same_as_prev``: the previous record
 * holds exactly this entry (header and path) at the offset it would take;
 * ``match_at``: where the previous record holds exactly this entry, if it does
 * (NO_MATCH). */
static int
emit(struct merge *m, const struct entry *e, double announced_at, int same_as_prev,
     uint64_t match_at)
{
    if (m->nusers == 0 || m->users[m->nusers - 1].uid != e->uid) {
        if (m->nusers == m->cap && grow((void **)&m->users, &m->cap, sizeof *m->users, 64) < 0)
            return -1;
        struct user *u = &m->users[m->nusers++];
        memset(u, 0, sizeof *u);
        u->uid = e->uid;
        u->first_at = announced_at;
        u->start = m->out.offset;
        const struct known_digest *k = m->nknown == 0 || match_at == NO_MATCH ? NULL
            : bsearch(&e->uid, m->known, m->nknown, sizeof *m->known, uid_cmp);
        /* none of their previous entries may have been left out before this one */
        if (k != NULL && !(m->have_dropped && m->last_dropped_uid == e->uid)) {
            u->pending = 1;
            u->known = k->digest;
            u->pending_from = u->pending_to = match_at;
        }
    }
    struct user *u = &m->users[m->nusers - 1];
    u->files++;
    u->bytes += (uint64_t)e->size;
    u->new_files += announced_at >= m->now;
    if (announced_at < u->first_at)
        u->first_at = announced_at;
    size_t len = sizeof *e + e->path_len;
    if (u->pending && match_at != u->pending_to && settle(m, u) < 0)
        return -1;
    if (u->pending)
        u->pending_to += len;
    else
        u->digest = digest_entry(u->digest, e, announced_at);
    if (m->same && !same_as_prev && materialize(m) < 0)
        return -1;
    if (m->same)
        m->out.offset += len; /* the same bytes are already there, in prev */
    else {
        struct entry head;
        memcpy(&head, e, sizeof head);
        head.announced_at = announced_at;
        head.pad = 0;
        if (writer_put(&m->out, &head, sizeof head) < 0
            || writer_put(&m->out, e + 1, e->path_len) < 0)
            return -1;
    }
    u->end = m->out.offset;
    m->count++;
    return 0;
}

static int
drop(struct merge *m, struct reader *prev, const struct entry *p)
{
    struct user *u = m->nusers > 0 ? &m->users[m->nusers - 1] : NULL;
    if (u != NULL && u->uid == p->uid && u->pending && settle(m, u) < 0)
        return -1; /* one of their previous entries is not in the new record */
    m->have_dropped = 1;
    m->last_dropped_uid = p->uid;
    if (told_note(m, p) < 0 || writer_put(&m->dropped, p, sizeof *p + p->path_len) < 0)
        return -1;
    m->ndropped++;
    reader_skip_entry(prev);
    return 0;
}

/* A previous entry that no candidate of this run met: kept as it is when its
 * owner is carried (recordio_sets.c: their candidates are all as they were),
 * dropped otherwise. */
static int
leave(struct merge *m, struct reader *prev, const struct entry *p)
{
    if (!is_carried(&m->carried, p->uid))
        return drop(m, prev, p);
    uint64_t at = prev->base + prev->start;
    int exact = p->pad == 0; /* emit writes pad 0 */
    if (told_note(m, p) < 0
        || emit(m, p, p->announced_at, exact && m->same && at == m->out.offset,
                exact ? at : NO_MATCH) < 0)
        return -1;
    reader_skip_entry(prev);
    return 0;
}

/* Whether prev's entry ``p`` is byte for byte what emit writes for ``c``. */
static inline int
same_entry(const struct entry *p, const struct entry *c, double announced_at)
{
    if (p->path_len != c->path_len || p->pad != 0
        || memcmp(&p->announced_at, &announced_at, sizeof announced_at) != 0
        || memcmp(p, c, offsetof(struct entry, announced_at)) != 0)
        return 0;
    return memcmp(p + 1, c + 1, p->path_len) == 0;
}

/* The previous record's next entry of this share: 1, 0 past its last (then
 * ``prev_to`` is where the share's part of it ends), -1 on error. */
static int
prev_entry(struct merge *m, struct reader *prev, const struct entry **p)
{
    int ok = reader_entry(prev, p);
    if (ok > 0 && (*p)->uid >= m->end_uid)
        ok = 0;
    if (ok == 0)
        m->prev_to = prev->base + prev->start;
    return ok;
}

/* The k-way merge of the sorted sources with the previous record. */
static int
merge_all(struct merge *m, struct source *src, int nsrc, struct reader *prev, int have_prev)
{
    int have_last = 0, failed = 0;
    uint64_t last_ino = 0, last_dev = 0;
    uint32_t last_uid = 0;
    struct tree tree;
    if (nsrc > 0 && tree_init(&tree, src, nsrc) < 0)
        return -1;
    while (nsrc > 0 && !failed) {
        struct source *best = &src[tree.node[0]];
        if (best->head == NULL)
            break;
        if (have_last && best->uid == last_uid && best->dev == last_dev
            && best->ino == last_ino) { /* another name of the same file */
            failed = source_next(best) < 0;
            tree_replay(&tree, src, tree.node[0]);
            continue;
        }
        const struct entry *c = best->head;
        double announced_at = m->now;
        int same_as_prev = 0;
        uint64_t match_at = NO_MATCH;
        while (have_prev && !failed) {
            const struct entry *p;
            int ok = prev_entry(m, prev, &p);
            if (ok <= 0) {
                failed = ok < 0;
                have_prev = 0;
                break;
            }
            int order = key_cmp(p, c);
            if (order < 0) {
                failed = leave(m, prev, p) < 0;
                continue;
            }
            if (order == 0) {
                failed = told_note(m, p) < 0;
                if (p->size == c->size && p->mtime_ns == c->mtime_ns)
                    announced_at = p->announced_at;
                uint64_t at = prev->base + prev->start;
                if ((m->nknown > 0 || (m->same && at == m->out.offset))
                    && same_entry(p, c, announced_at)) {
                    match_at = at;
                    same_as_prev = m->same && at == m->out.offset;
                }
                reader_skip_entry(prev);
            }
            break;
        }
        failed = failed || emit(m, c, announced_at, same_as_prev, match_at) < 0;
        have_last = 1;
        last_uid = best->uid;
        last_dev = best->dev;
        last_ino = best->ino;
        failed = failed || source_next(best) < 0;
        tree_replay(&tree, src, tree.node[0]);
    }
    if (nsrc > 0)
        free(tree.node);
    if (failed)
        return -1;
    while (have_prev) {
        const struct entry *p;
        int ok = prev_entry(m, prev, &p);
        if (ok < 0)
            return -1;
        if (ok == 0)
            break;
        if (leave(m, prev, p) < 0)
            return -1;
    }
    if (m->ntold > 0 && m->told[m->ntold - 1].count == 0)
        m->ntold--;
    for (size_t i = 0; i < m->nusers; i++)
        if (m->users[i].pending) /* every previous entry of theirs, and only those */
            m->users[i].digest = m->users[i].known;
    return 0;
}

/* Owners where the shares start (``firsts[0]`` is 0): about as many entries in
 * each, judged from the runs' bounds and the carried owners' counts. Returns
 * how many shares. */
static int
plan_shares(const struct sorter *sorters, int nsorters, const struct bound *carried,
            size_t ncarried, int wanted, uint64_t share_from, uint32_t *firsts)
{
    firsts[0] = 0;
    size_t n = ncarried; /* carried owners: their previous entries are a share's work too */
    for (int t = 0; t < nsorters; t++) {
        n += sorters[t].rs.mem_bounds.n;
        for (int i = 0; i < sorters[t].rs.nfds; i++)
            n += sorters[t].rs.file_bounds[i].n;
    }
    struct bound *all = malloc(sizeof *all * (n + 1));
    if (all == NULL || wanted < 2)
        return free(all), 1;
    uint64_t total = 0;
    for (n = 0; n < ncarried; n++) {
        all[n] = carried[n];
        total += carried[n].count;
    }
    for (int t = 0; t < nsorters; t++) {
        const struct runs *rs = &sorters[t].rs;
        for (int i = -1; i < rs->nfds; i++) {
            const struct bounds *b = i < 0 ? &rs->mem_bounds : &rs->file_bounds[i];
            for (size_t j = 0; j < b->n; j++) {
                all[n++] = b->items[j];
                total += b->items[j].count;
            }
        }
    }
    int shares = 1;
    if (total >= share_from) {
        qsort(all, n, sizeof *all, uid_cmp); /* uid is the first member */
        uint64_t seen = 0;
        for (size_t j = 0; j < n && shares < wanted; j++) {
            if (seen >= total * (uint64_t)shares / (uint64_t)wanted
                && all[j].uid > firsts[shares - 1])
                firsts[shares++] = all[j].uid;
            seen += all[j].count;
        }
    }
    free(all);
    return shares;
}

/* A share's sources: every sorted run, from the share's first owner on. */
static int
open_share(struct source *src, int *nsrc, const struct sorter *sorters, int nsorters,
           uint32_t first, uint64_t end_uid, size_t release)
{
    *nsrc = 0;
    for (int t = 0; t < nsorters; t++) {
        const struct runs *rs = &sorters[t].rs;
        for (int i = 0; i < rs->nfds; i++) {
            struct stat st;
            if (fstat(rs->fds[i], &st) < 0)
                return -1;
            struct source *s = &src[(*nsrc)++];
            s->end_uid = end_uid;
            off_t at = (off_t)bounds_find(&rs->file_bounds[i], first, (uint64_t)st.st_size);
            if (reader_open(&s->r, rs->fds[i], at, release) < 0 || source_next(s) < 0)
                return -1;
        }
        struct source *s = &src[(*nsrc)++];
        s->mem = rs;
        s->end_uid = end_uid;
        s->next = (size_t)bounds_find(&rs->mem_bounds, first, rs->nkeys);
        if (source_next(s) < 0)
            return -1;
    }
    return 0;
}

static void *
run_share(void *arg)
{
    struct share_job *job = arg;
    if (merge_all(job->m, job->src, job->nsrc, &job->prev, job->have_prev) < 0
        || writer_flush(&job->m->out) < 0 || writer_flush(&job->m->dropped) < 0)
        job->m->error = errno ? errno : EIO;
    return NULL;
}

/* Put the record together from its shares, in owner order; returns whether it is
 * the previous record exactly (then nothing is written). Shifts the owners'
 * ranges to where their share landed. */
int
assemble(struct merge *shares, int nshares, int prev_fd, int out_fd, int dropped_fd,
         int *unchanged)
{
    *unchanged = 0;
    if (prev_fd >= 0) {
        struct stat st;
        if (fstat(prev_fd, &st) < 0)
            return -1;
        int same = 1;
        for (int k = 0; k < nshares; k++)
            same = same && shares[k].same && shares[k].out.offset == shares[k].prev_to;
        if (same && shares[nshares - 1].prev_to == (uint64_t)st.st_size) {
            *unchanged = 1;
            return 0;
        }
    }
    struct merge *first = &shares[0];
    if (materialize(first) < 0 || writer_flush(&first->out) < 0)
        return -1;
    uint64_t at = first->out.offset, count = first->count;
    for (int k = 1; k < nshares; k++) {
        struct merge *m = &shares[k];
        uint64_t len = m->out.offset - m->base;
        if (m->same ? copy_range(m->prev_fd, (loff_t)m->base, out_fd, (loff_t)at, len) < 0
                    : copy_range(m->out.fd, 0, out_fd, (loff_t)at, len) < 0)
            return -1;
        for (size_t i = 0; i < m->nusers; i++) {
            m->users[i].start = m->users[i].start - m->base + at;
            m->users[i].end = m->users[i].end - m->base + at;
        }
        at += len;
        count += m->count;
    }
    char header[HEADER_BYTES] = MAGIC;
    memcpy(header + 8, &count, 8);
    if (pwrite(out_fd, header, HEADER_BYTES, 0) != HEADER_BYTES)
        return -1;
    off_t dropped_at = lseek(dropped_fd, 0, SEEK_CUR);
    for (int k = 1; k < nshares && dropped_at >= 0; k++) {
        uint64_t len = shares[k].dropped.offset;
        if (copy_range(shares[k].dropped.fd, 0, dropped_fd, dropped_at, len) < 0)
            return -1;
        dropped_at += (off_t)len;
    }
    return dropped_at < 0 ? -1 : 0;
}

/* Where each share's owners start in the previous record (share 0: its start).
 * Checks prev's header; errno EBADMSG when it is not a record. */
static int
find_prev_starts(int prev_fd, const uint32_t *firsts, int n, uint64_t *starts)
{
    struct reader r;
    if (reader_open(&r, prev_fd, 0, RELEASE_BYTES) < 0)
        return -1;
    int ok = reader_fill(&r, HEADER_BYTES);
    if (ok <= 0 || memcmp(r.buf + r.start, MAGIC, 8) != 0) {
        reader_close(&r);
        errno = ok < 0 ? errno : EBADMSG;
        return -1;
    }
    r.start += HEADER_BYTES;
    starts[0] = 0;
    for (int k = 1; k < n; k++) {
        for (;;) {
            const struct entry *e;
            ok = reader_entry(&r, &e);
            if (ok < 0) {
                reader_close(&r);
                return -1;
            }
            if (ok == 0 || e->uid >= firsts[k])
                break;
            reader_skip_entry(&r);
        }
        starts[k] = r.base + r.start;
    }
    reader_close(&r);
    return 0;
}

/* Phase two: the shares merged at once, one thread each. */
int
merge_shares(struct merge *shares, struct share_job *jobs, int *nshares,
             const struct sorter *sorters, int nsorters, int prev_fd, int out_fd,
             int dropped_fd, int tmp_dir_fd, double now, const struct told_since *told_since,
             size_t ntold_since, const struct known_digest *known, size_t nknown,
             const struct bound *carried, size_t ncarried, uint64_t share_from)
{
    uint32_t firsts[MAX_SHARES];
    uint64_t prev_starts[MAX_SHARES] = {0};
    int have_prev = prev_fd >= 0;
    int n = plan_shares(sorters, nsorters, carried, have_prev ? ncarried : 0,
                        nsorters < MAX_SHARES ? nsorters : MAX_SHARES, share_from, firsts);
    *nshares = n;
    if (have_prev && find_prev_starts(prev_fd, firsts, n, prev_starts) < 0)
        return -1;
    int nsources = 0, nfiles = 0;
    for (int t = 0; t < nsorters; t++) {
        nsources += sorters[t].rs.nfds + 1;
        nfiles += sorters[t].rs.nfds;
    }
    size_t release = run_release(nfiles * n);
    for (int k = 0; k < n; k++) {
        struct merge *m = &shares[k];
        struct share_job *job = &jobs[k];
        m->prev_fd = prev_fd;
        m->now = now;
        m->told_since = told_since;
        m->ntold_since = ntold_since;
        m->known = have_prev ? known : NULL;
        m->nknown = have_prev ? nknown : 0;
        m->carried = (struct carried_owners){carried, have_prev ? ncarried : 0, 0, 0, 0};
        m->end_uid = k + 1 < n ? firsts[k + 1] : UINT64_MAX;
        m->same = have_prev;
        m->out = (struct writer){out_fd, malloc(IO_BYTES), 0, 0};
        m->dropped = (struct writer){dropped_fd, malloc(IO_BYTES), 0, 0};
        job->m = m;
        job->src = calloc((size_t)nsources, sizeof *job->src);
        if (m->out.buf == NULL || m->dropped.buf == NULL || job->src == NULL) {
            errno = ENOMEM;
            return -1;
        }
        if (k > 0) {
            m->out.fd = openat(tmp_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
            m->dropped.fd = m->out.fd < 0 ? -1
                : openat(tmp_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
            if (m->dropped.fd < 0) {
                if (m->out.fd >= 0)
                    close(m->out.fd);
                m->out.fd = -1;
                return -1;
            }
            m->own_fds = 1;
        }
        m->base = k > 0 && have_prev ? prev_starts[k] : 0;
        m->out.offset = m->base;
        if (k == 0 && have_prev)
            m->out.offset = HEADER_BYTES; /* prev's header is there until copied */
        else if (k == 0) {
            char header[HEADER_BYTES] = MAGIC; /* its count is written at the end */
            if (writer_put(&m->out, header, HEADER_BYTES) < 0)
                return -1;
        }
        if (open_share(job->src, &job->nsrc, sorters, nsorters, firsts[k], m->end_uid,
                       release) < 0)
            return -1;
        job->have_prev = have_prev;
        if (have_prev
            && reader_open(&job->prev, prev_fd, (off_t)(k == 0 ? HEADER_BYTES : prev_starts[k]),
                           WIDE_RELEASE_BYTES) < 0)
            return -1;
    }
    run_threads(run_share, jobs, sizeof *jobs, n);
    for (int k = 0; k < n; k++)
        if (shares[k].error) {
            errno = shares[k].error;
            return -1;
        }
    return 0;
}
