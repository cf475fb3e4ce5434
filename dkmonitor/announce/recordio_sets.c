/* Phase zero: which owners' candidates are all as they were at the last build
 * (recordio.h). Those owners are not sorted or merged again: their entries in
 * the previous record are carried into the new one as they are.
 *
 * Why: on a scratch area most owners' old files do not change from one night
 * to the next (their files are old already, and nobody touched them), yet
 * every candidate was sorted, written to a run, read back and compared with
 * the previous record: most of an announcing run's extra time.
 *
 * How it is decided: every candidate's spool record (its 'F' record with its
 * name, and its directory's 'D' record with its path: everything the entry is
 * made of) is hashed with SipHash-1-3 (the variant CPython and Rust hash
 * their tables with against flooding) under a random key kept in root's
 * private record; an owner's set is the sum of those hashes (order does not
 * matter: the walkers spool in no fixed order) and their count. When both
 * equal the ones stored for the current generation, and the filters are the
 * ones that generation was built with (record.py checks that), the owner's
 * new entries are exactly their previous ones: the merge of a set with the
 * record built from that same set changes nothing (every candidate meets its
 * own entry, same key, size and mtime, and keeps its date). A collision needs
 * the key, which no user can read; and even then root acts on nothing it has
 * not checked again at action time (device, inode, size, mtime, owner, age):
 * the worst it could do is leave an owner's announcement as it was. */
#include "recordio.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                       \
    do {                                                                               \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                      \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                         \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                         \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                      \
    } while (0)

/* SipHash-1-3 of ``prefix`` (8 bytes, little-endian as read) followed by ``len``
 * bytes of ``data``: for a file, its directory's hash, then its record and name;
 * for a directory, 0, then its record and path (tests/fixtures/ownersets.py). */
static uint64_t
siphash(const uint64_t key[2], uint64_t prefix, const unsigned char *data, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
    uint64_t m = prefix;
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
    size_t left = len;
    for (; left >= 8; left -= 8, data += 8) {
        memcpy(&m, data, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    m = 0;
    memcpy(&m, data, left);
    m |= (uint64_t)((len + 8) & 255) << 56;
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* A record's hash added to its owner's slot in a sorter's open-addressing
 * table (a slot with count 0 is empty). */
static int
sets_add(struct owner_sets *t, uint32_t uid, uint64_t hash)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        struct owner_set *bigger = calloc(cap, sizeof *bigger);
        if (bigger == NULL) {
            errno = ENOMEM;
            return -1;
        }
        for (size_t i = 0; i < t->cap; i++)
            if (t->items[i].count) {
                size_t j = (t->items[i].uid * 0x9E3779B1u) & (cap - 1);
                while (bigger[j].count)
                    j = (j + 1) & (cap - 1);
                bigger[j] = t->items[i];
            }
        free(t->items);
        t->items = bigger;
        t->cap = cap;
    }
    size_t j = (uid * 0x9E3779B1u) & (t->cap - 1);
    while (t->items[j].count && t->items[j].uid != uid)
        j = (j + 1) & (t->cap - 1);
    if (t->items[j].count == 0) {
        t->items[j].uid = uid;
        t->n++;
    }
    t->items[j].sum += hash;
    t->items[j].count++;
    return 0;
}

/* One spool's candidates into the sorter's table of owners' sets. */
static int
hash_spool(struct sorter *s, int fd)
{
    struct reader r;
    if (reader_open(&r, fd, 0, WIDE_RELEASE_BYTES) < 0)
        return -1;
    uint64_t dir_hash = 0;
    int have_dir = 0, tag;
    size_t len;
    while ((tag = spool_record(&r, &len)) > 0) {
        const unsigned char *at = (const unsigned char *)r.buf + r.start;
        if (tag == 'D') {
            dir_hash = siphash(s->set_key, 0, at, len);
            have_dir = 1;
        } else if (!have_dir) {
            errno = EINVAL; /* a file before any directory */
            tag = -1;
            break;
        } else {
            struct file_rec fr;
            memcpy(&fr, at, sizeof fr);
            if (sets_add(&s->sets, fr.uid, siphash(s->set_key, dir_hash, at, len)) < 0) {
                tag = -1;
                break;
            }
        }
        r.start += len;
        reader_release(&r);
    }
    int saved = errno;
    reader_close(&r);
    errno = saved;
    return tag;
}

static void *
hash_spools(void *arg)
{
    struct sorter *s = arg;
    for (int i = 0; i < s->nfds; i += s->stride)
        if (hash_spool(s, s->fds[i]) < 0) {
            s->error = errno ? errno : EIO;
            break;
        }
    return NULL;
}

/* Every owner's set, from all the sorters' tables (sorted by uid, into
 * ``out``), and the owners whose set is the one in ``prev`` (sorted by uid,
 * into ``carried``, each with its count: the merge is shared out by it). */
int
owner_sets_decide(struct sorter *sorters, int nsorters, const struct owner_set *prev,
                  size_t nprev, struct owner_sets *out, struct bound **carried,
                  size_t *ncarried)
{
    run_threads(hash_spools, sorters, sizeof *sorters, nsorters);
    size_t total = 0;
    for (int t = 0; t < nsorters; t++) {
        if (sorters[t].error) {
            errno = sorters[t].error;
            return -1;
        }
        total += sorters[t].sets.n;
    }
    out->items = malloc(sizeof *out->items * (total + 1));
    *carried = malloc(sizeof **carried * (total + 1));
    if (out->items == NULL || *carried == NULL) {
        errno = ENOMEM;
        return -1;
    }
    size_t n = 0;
    for (int t = 0; t < nsorters; t++)
        for (size_t i = 0; i < sorters[t].sets.cap; i++)
            if (sorters[t].sets.items[i].count)
                out->items[n++] = sorters[t].sets.items[i];
    qsort(out->items, n, sizeof *out->items, uid_cmp); /* uid is the first member */
    size_t merged = 0; /* one owner's parts (several spools) added up */
    for (size_t i = 0; i < n; i++) {
        if (merged > 0 && out->items[merged - 1].uid == out->items[i].uid) {
            out->items[merged - 1].sum += out->items[i].sum;
            out->items[merged - 1].count += out->items[i].count;
        } else {
            out->items[merged++] = out->items[i];
        }
    }
    out->n = out->cap = merged;
    *ncarried = 0;
    for (size_t i = 0; i < merged; i++) {
        const struct owner_set *was = bsearch(&out->items[i].uid, prev, nprev, sizeof *prev,
                                              uid_cmp);
        if (was != NULL && was->sum == out->items[i].sum && was->count == out->items[i].count)
            (*carried)[(*ncarried)++] = (struct bound){out->items[i].uid, 0,
                                                        out->items[i].count};
    }
    return 0;
}
