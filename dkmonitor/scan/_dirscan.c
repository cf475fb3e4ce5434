/*
 * dkmonitor.scan._dirscan -- the scanner's per-directory loop, compiled.
 *
 * Why this exists: a full scan spends nearly all its time in one loop run once
 * per file (readdir, lstat, add to the owner's totals). In CPython that loop
 * costs about 1.6x GNU find's CPU per file however it is written, which on a
 * 2-core machine kept a 2-worker `run full` at 0.85-0.94x find's time (target
 * 0.8x). Here the loop adds little to the kernel's own cost (0.62x at 1M files,
 * bench/README.md), and nothing per file is turned into
 * a Python object unless it has to be (subdirectory names, errors, files with
 * several hard links).
 *
 * It is optional: setup.py builds it when a compiler and Python's headers are
 * there, and dkmonitor/scan/walker.py keeps the pure-Python loop, which must
 * give exactly the same numbers (tests/test_scan_compiled.py checks both on
 * the same trees). Everything else -- the stack of pending directories, work
 * donation between workers, progress, exclusion patterns -- stays in Python,
 * called once per directory.
 *
 * Semantics copied from pyloop.scan_python, keep them in step:
 *   - one lstat (fstatat AT_SYMLINK_NOFOLLOW relative to the directory fd, so
 *     at any depth: the walker opens each directory relative to its parent);
 *   - directories are pushed on the walker's stack (on the same filesystem
 *     when one_fs) and counted for their owner (DIRS), other non-regular
 *     files counted (OTHERS), symlinks never followed;
 *   - regular files go into the size and age histograms and the directory's
 *     own sums (for the top directories);
 *   - "last use" by age basis, in integer nanoseconds for the age sum;
 *     "old" decided exactly as dkmonitor.scan.age.is_old does, with CPython's
 *     float seconds (sec + nsec * 1e-9), so scanner and cleaner agree;
 *   - files with st_nlink > 1 go to ``linked`` keyed by (st_dev, st_ino),
 *     first sighting wins, to be counted once after all workers merge.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The age bases, by the code walker passes (AgeRule.code, the index in
 * dkmonitor.scan.age.AGE_BASES). Exported as _dirscan.BASES; a test checks it
 * equals AGE_BASES, so the two orders cannot drift apart. */
enum basis { BASIS_USED, BASIS_ATIME, BASIS_MTIME, BASIS_CTIME, NBASES };
static const char *const basis_names[NBASES] = {
    [BASIS_USED] = "used", [BASIS_ATIME] = "atime", [BASIS_MTIME] = "mtime",
    [BASIS_CTIME] = "ctime",
};

/* Must match the column order of dkmonitor.scan.tally. */
enum column { FILES, BYTES, BLOCKS, OLD_FILES, OLD_BYTES, AGE_NS, DIRS, OTHERS, NCOLUMNS };

/* The per-target histograms (dkmonitor.scan.stats; exported as SIZE_EDGES and
 * AGE_EDGES_NS, a test checks they equal the Python ones): a value falls in
 * the first bucket whose upper edge it is below, else in the last one. The
 * flat layout of tally.Tally.hist: files then bytes per size bucket, files
 * then bytes per age bucket. */
#define NSIZE 8
#define NAGE 7
static const long long size_edges[NSIZE - 1] = {
    4LL << 10, 64LL << 10, 1LL << 20, 16LL << 20, 256LL << 20, 4LL << 30, 64LL << 30,
};
enum hist { SIZE_FILES = 0, SIZE_BYTES = NSIZE, AGE_FILES = 2 * NSIZE,
            AGE_BYTES = 2 * NSIZE + NAGE, NHIST = 2 * NSIZE + 2 * NAGE };

/* What one directory adds to the target: histograms and, for the top
 * directories, its own regular files (one link) and their bytes. */
struct dirsums {
    __int128 hist[NHIST];
    __int128 files, bytes, old_bytes;
};

/* Owners seen in one directory, flushed into the Python dict at its end (or
 * when full). 128-bit sums: a directory of ten million files, each centuries
 * old, still cannot overflow. */
#define MAX_OWNERS 32
struct owner {
    uid_t uid;
    __int128 sums[NCOLUMNS];
};

struct params {
    dev_t root_dev;
    int one_fs;
    int basis;
    __int128 now_ns;
    double now;
    double old_limit; /* AgeRule.limit_seconds */
    PyObject *dir_key; /* str: where this directory's files count (tally.Tally.dirs) */
    PyObject *cands;   /* bytearray the old files are appended to, or NULL */
    PyObject *cand_dir; /* bytes: this directory's record, written before its first file */
    int cand_dir_written;
};

static PyObject *
long_from_int128(__int128 value)
{
    if (value >= LLONG_MIN && value <= LLONG_MAX)
        return PyLong_FromLongLong((long long)value);
    /* value = high * 2**64 + low */
    PyObject *high = PyLong_FromLongLong((long long)(value >> 64));
    PyObject *low = PyLong_FromUnsignedLongLong((unsigned long long)value);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *shifted = NULL, *result = NULL;
    if (high && low && shift && (shifted = PyNumber_Lshift(high, shift)))
        result = PyNumber_Add(shifted, low);
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    return result;
}

/* by_uid[uid][column] += sums[column] for every column. */
static int
flush_owner(PyObject *by_uid, const struct owner *owner)
{
    PyObject *key = PyLong_FromUnsignedLong((unsigned long)owner->uid);
    if (key == NULL)
        return -1;
    PyObject *counters = PyDict_GetItemWithError(by_uid, key); /* borrowed */
    if (counters == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        counters = PyList_New(NCOLUMNS);
        if (counters == NULL) {
            Py_DECREF(key);
            return -1;
        }
        for (int column = 0; column < NCOLUMNS; column++)
            PyList_SET_ITEM(counters, column, PyLong_FromLong(0));
        int failed = PyDict_SetItem(by_uid, key, counters);
        Py_DECREF(counters); /* the dict holds it now */
        if (failed) {
            Py_DECREF(key);
            return -1;
        }
    }
    Py_DECREF(key);
    if (!PyList_Check(counters) || PyList_GET_SIZE(counters) != NCOLUMNS) {
        PyErr_SetString(PyExc_TypeError, "by_uid values must be lists of 8 integers");
        return -1;
    }
    for (int column = 0; column < NCOLUMNS; column++) {
        if (owner->sums[column] == 0)
            continue;
        PyObject *add = long_from_int128(owner->sums[column]);
        if (add == NULL)
            return -1;
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(counters, column), add);
        Py_DECREF(add);
        if (sum == NULL)
            return -1;
        PyList_SetItem(counters, column, sum); /* steals sum, drops the old value */
    }
    return 0;
}

static int
flush_owners(PyObject *by_uid, struct owner *owners, int *count)
{
    for (int i = 0; i < *count; i++)
        if (flush_owner(by_uid, &owners[i]) < 0)
            return -1;
    *count = 0;
    return 0;
}

static inline __int128
nanoseconds(const struct timespec *ts)
{
    return (__int128)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* CPython's float st_atime etc.: exactly ``sec + nsec * 1e-9`` (posixmodule.c). */
static inline double
float_seconds(const struct timespec *ts)
{
    return ts->tv_sec + ts->tv_nsec * 1e-9;
}

/* The owner's sums for uid (a new slot, flushing all when full); NULL with a
 * Python error set on failure. */
static struct owner *
find_owner(PyObject *by_uid, struct owner *owners, int *owner_count, uid_t uid)
{
    for (int i = 0; i < *owner_count; i++)
        if (owners[i].uid == uid)
            return &owners[i];
    if (*owner_count == MAX_OWNERS && flush_owners(by_uid, owners, owner_count) < 0)
        return NULL;
    struct owner *owner = &owners[(*owner_count)++];
    memset(owner, 0, sizeof *owner);
    owner->uid = uid;
    return owner;
}

/* The size bucket: 0 below 4 KiB, then one per power of 16, the last open.
 * From the bit length, so no loop per file. */
static inline int
size_bucket(long long size)
{
    if (size < (4LL << 10))
        return 0;
    int log2 = 63 - __builtin_clzll((unsigned long long)size); /* >= 12 here */
    int bucket = (log2 - 12) / 4 + 1;
    return bucket < NSIZE - 1 ? bucket : NSIZE - 1;
}

/* The age edges in nanoseconds (730 days is ~6.3e16: fits 64 bits). */
#define DAYS_NS(days) ((long long)(days) * 86400LL * 1000000000LL)
static const long long age_edges_ns[NAGE - 1] = {
    DAYS_NS(7), DAYS_NS(30), DAYS_NS(90), DAYS_NS(180), DAYS_NS(365), DAYS_NS(730),
};

static inline int
age_bucket(__int128 age)
{
    int bucket = 0;
    while (bucket < NAGE - 1 && age >= age_edges_ns[bucket])
        bucket++;
    return bucket;
}

/* A file with several links: first sighting kept, with the smallest directory
 * key it was seen under (as walker's Python loop and Tally.merge do). */
static int
count_linked(const struct stat *st, const struct params *p, PyObject *linked,
             __int128 age, int old)
{
    PyObject *key = Py_BuildValue("(KK)", (unsigned long long)st->st_dev,
                                  (unsigned long long)st->st_ino);
    if (key == NULL)
        return -1;
    PyObject *known = PyDict_GetItemWithError(linked, key); /* borrowed */
    if (known == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    PyObject *value = NULL;
    if (known != NULL) {
        if (!PyTuple_Check(known) || PyTuple_GET_SIZE(known) != 6) {
            Py_DECREF(key);
            PyErr_SetString(PyExc_TypeError, "linked values must be 6-tuples");
            return -1;
        }
        int smaller = PyUnicode_Compare(p->dir_key, PyTuple_GET_ITEM(known, 5));
        if (smaller == -1 && PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        if (smaller >= 0) {
            Py_DECREF(key);
            return 0;
        }
        value = Py_BuildValue("(OOOOOO)", PyTuple_GET_ITEM(known, 0),
                              PyTuple_GET_ITEM(known, 1), PyTuple_GET_ITEM(known, 2),
                              PyTuple_GET_ITEM(known, 3), PyTuple_GET_ITEM(known, 4),
                              p->dir_key);
    } else {
        PyObject *age_obj = long_from_int128(age);
        value = age_obj == NULL ? NULL
            : Py_BuildValue("(kLLOOO)", (unsigned long)st->st_uid, (long long)st->st_size,
                            (long long)st->st_blocks, age_obj, old ? Py_True : Py_False,
                            p->dir_key);
        Py_XDECREF(age_obj);
    }
    int failed = value == NULL || PyDict_SetItem(linked, key, value) < 0;
    Py_DECREF(key);
    Py_XDECREF(value);
    return failed ? -1 : 0;
}

/* The announced purge's candidates (dkmonitor/announce/spool.py reads them):
 * an old regular file on the target's filesystem is appended to p->cands as
 * one FILE record, after its directory's DIR record (p->cand_dir, built by the
 * walker) for the directory's first one. Layout (native byte order), kept in
 * step with spool.FILE_HEADER: tag 'F', pad, name length u16, uid u32,
 * gid u32, pad u32, ino u64, size i64, mtime_ns i64, last use f64; the name. */
struct cand_file {
    unsigned char tag, pad;
    unsigned short name_len;
    unsigned int uid, gid, pad2;
    unsigned long long ino;
    long long size, mtime_ns;
    double used;
};

static int
append_bytes(PyObject *array, const void *data, Py_ssize_t len)
{
    Py_ssize_t at = PyByteArray_GET_SIZE(array);
    if (PyByteArray_Resize(array, at + len) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(array) + at, data, (size_t)len);
    return 0;
}

static int
append_candidate(const struct stat *st, const char *name, double used, struct params *p)
{
    if (!p->cand_dir_written) {
        if (append_bytes(p->cands, PyBytes_AS_STRING(p->cand_dir),
                         PyBytes_GET_SIZE(p->cand_dir)) < 0)
            return -1;
        p->cand_dir_written = 1;
    }
    size_t name_len = strlen(name);
    struct cand_file rec = {'F', 0, (unsigned short)name_len, (unsigned int)st->st_uid,
                            (unsigned int)st->st_gid, 0, (unsigned long long)st->st_ino,
                            (long long)st->st_size,
                            (long long)(st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec),
                            used};
    Py_ssize_t at = PyByteArray_GET_SIZE(p->cands); /* one resize for both parts */
    if (PyByteArray_Resize(p->cands, at + (Py_ssize_t)(sizeof rec + name_len)) < 0)
        return -1;
    char *to = PyByteArray_AS_STRING(p->cands) + at;
    memcpy(to, &rec, sizeof rec);
    memcpy(to + sizeof rec, name, name_len);
    return 0;
}

/* Counts one regular file; returns -1 with a Python error set on failure. */
static int
count_file(const struct stat *st, const char *name, struct params *p, PyObject *by_uid,
           PyObject *linked, struct owner *owners, int *owner_count, struct dirsums *sums)
{
    __int128 last;
    double last_f;
    switch (p->basis) {
    case BASIS_USED: {
        __int128 a = nanoseconds(&st->st_atim), m = nanoseconds(&st->st_mtim);
        double af = float_seconds(&st->st_atim), mf = float_seconds(&st->st_mtim);
        last = m > a ? m : a;
        last_f = af > mf ? af : mf;
        break;
    }
    case BASIS_ATIME:
        last = nanoseconds(&st->st_atim);
        last_f = float_seconds(&st->st_atim);
        break;
    case BASIS_MTIME:
        last = nanoseconds(&st->st_mtim);
        last_f = float_seconds(&st->st_mtim);
        break;
    default:
        last = nanoseconds(&st->st_ctim);
        last_f = float_seconds(&st->st_ctim);
        break;
    }
    __int128 age = p->now_ns - last;
    if (age < 0)
        age = 0;
    int old = p->now - last_f > p->old_limit;
    if (old && p->cands != NULL && st->st_dev == p->root_dev
        && append_candidate(st, name, last_f, p) < 0)
        return -1;

    if (st->st_nlink > 1) /* counted once, at the end (see tally.Tally.linked) */
        return count_linked(st, p, linked, age, old);

    struct owner *owner = find_owner(by_uid, owners, owner_count, st->st_uid);
    if (owner == NULL)
        return -1;
    owner->sums[FILES] += 1;
    owner->sums[BYTES] += st->st_size;
    owner->sums[BLOCKS] += st->st_blocks;
    owner->sums[AGE_NS] += age;
    if (old) {
        owner->sums[OLD_FILES] += 1;
        owner->sums[OLD_BYTES] += st->st_size;
        sums->old_bytes += st->st_size;
    }
    sums->files += 1;
    sums->bytes += st->st_size;
    int bucket = size_bucket(st->st_size);
    sums->hist[SIZE_FILES + bucket] += 1;
    sums->hist[SIZE_BYTES + bucket] += st->st_size;
    bucket = age_bucket(age);
    sums->hist[AGE_FILES + bucket] += 1;
    sums->hist[AGE_BYTES + bucket] += st->st_size;
    return 0;
}

/* hist[i] += sums[i] for every bucket (hist: the tally's flat Python list). */
static int
flush_hist(PyObject *hist, const struct dirsums *sums)
{
    if (!PyList_Check(hist) || PyList_GET_SIZE(hist) != NHIST) {
        PyErr_SetString(PyExc_TypeError, "hist must be a list of 30 integers");
        return -1;
    }
    for (int i = 0; i < NHIST; i++) {
        if (sums->hist[i] == 0)
            continue;
        PyObject *add = long_from_int128(sums->hist[i]);
        if (add == NULL)
            return -1;
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(hist, i), add);
        Py_DECREF(add);
        if (sum == NULL)
            return -1;
        PyList_SetItem(hist, i, sum);
    }
    return 0;
}

/* Pushes (parent, name, st_dev, st_ino) of a subdirectory onto the walker's
 * stack. */
static int
push_subdir(PyObject *stack, PyObject *parent, PyObject *name, const struct stat *st)
{
    PyObject *item = Py_BuildValue("(OOKK)", parent, name, (unsigned long long)st->st_dev,
                                   (unsigned long long)st->st_ino);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(stack, item);
    Py_DECREF(item);
    return failed;
}

/* Appends (name, errno) of an entry that could not be lstat'ed. */
static int
append_failure(PyObject *failures, PyObject *name, int error)
{
    PyObject *item = Py_BuildValue("(Oi)", name, error);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(failures, item);
    Py_DECREF(item);
    return failed;
}

PyDoc_STRVAR(scan_dir_doc,
"scan_dir(fd, parent, stack, by_uid, linked, hist, dir_key, root_dev, one_fs, basis,\n"
"         now_ns, now, old_limit, excluded, cands=None, cand_dir=None)\n"
"    -> (pushed, failures, read_errno, files, bytes, old_bytes)\n\n"
"Read the open directory ``fd`` (not closed), lstat every entry relative to it\n"
"and count it into ``by_uid`` / ``linked`` / ``hist`` as pyloop.scan_python\n"
"does. ``excluded`` is None or a callable taking an entry name (str) that\n"
"returns true to skip it. Subdirectories to walk are appended to the list\n"
"``stack`` as (parent, name, st_dev, st_ino). Returns how many were pushed, a\n"
"list of (name, errno) for entries that could not be lstat'ed, the errno of a\n"
"failed readdir (0 when read to the end), and the files, bytes and old bytes\n"
"of the regular files with one link (for the top directories). With ``cands``\n"
"(a bytearray) every old regular file on root_dev is appended to it as a\n"
"FILE record, the first one after ``cand_dir`` (bytes: the directory's record).\n"
"Python's lock is released while entries are read and lstat'ed (a chunk at a\n"
"time), so threads each scanning their own directory overlap their requests.");

/* The entries are read and lstat'ed a chunk at a time with Python's lock
 * released (readdir and fstatat are where a walk waits: a round trip each on
 * NFS/Lustre), then counted with it held, in the order read. So several
 * threads of one process, each in its own directory, have several requests in
 * flight (mpi.py runs a few per rank); a single-threaded process pays two
 * uncontended lock hand-overs per chunk. The chunk lives on the C stack
 * (~36 KiB): memory does not grow with the directory's size. */
#define CHUNK 128
#define NAME_BYTES 16384

struct entry {
    unsigned short name_at; /* offset in the chunk's names */
    unsigned char skip;     /* excluded by the caller's patterns */
    int error;              /* the lstat's errno, 0 when st is valid */
    struct stat st;
};

struct chunk {
    int count, at_end, read_errno;
    struct entry entries[CHUNK];
    char names[NAME_BYTES];
};

/* Up to CHUNK entries (not "." and ".."); at_end with read_errno (0: the end,
 * else readdir failed) when the directory is exhausted. No Python calls. */
static void
read_chunk(DIR *dir, struct chunk *c)
{
    size_t used = 0;
    c->count = 0;
    while (c->count < CHUNK && used + NAME_MAX + 1 <= NAME_BYTES) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            c->at_end = 1;
            c->read_errno = errno;
            return;
        }
        const char *raw = entry->d_name;
        if (raw[0] == '.' && (raw[1] == '\0' || (raw[1] == '.' && raw[2] == '\0')))
            continue;
        size_t len = strlen(raw) + 1;
        memcpy(c->names + used, raw, len);
        struct entry *e = &c->entries[c->count++];
        e->name_at = (unsigned short)used;
        e->skip = 0;
        used += len;
    }
}

/* One lstat per entry not skipped, relative to the directory. No Python calls. */
static void
stat_chunk(DIR *dir, struct chunk *c)
{
    int fd = dirfd(dir);
    for (int i = 0; i < c->count; i++) {
        struct entry *e = &c->entries[i];
        if (!e->skip)
            e->error = fstatat(fd, c->names + e->name_at, &e->st, AT_SYMLINK_NOFOLLOW) == 0
                ? 0 : errno;
    }
}

/* Marks the entries the caller's ``excluded`` rejects (with the lock held). */
static int
exclude_chunk(PyObject *excluded, struct chunk *c)
{
    for (int i = 0; i < c->count; i++) {
        PyObject *name = PyUnicode_DecodeFSDefault(c->names + c->entries[i].name_at);
        if (name == NULL)
            return -1;
        PyObject *verdict = PyObject_CallOneArg(excluded, name);
        Py_DECREF(name);
        int skip = verdict == NULL ? -1 : PyObject_IsTrue(verdict);
        Py_XDECREF(verdict);
        if (skip < 0)
            return -1;
        c->entries[i].skip = (unsigned char)skip;
    }
    return 0;
}

struct dirstate {
    PyObject *parent, *stack, *by_uid, *linked, *failures;
    struct owner owners[MAX_OWNERS];
    int owner_count;
    Py_ssize_t pushed;
    struct dirsums sums;
};

/* Counts one lstat'ed entry, as pyloop.scan_python does (the lock held). */
static int
count_entry(const struct entry *e, const char *raw, struct params *p, struct dirstate *d)
{
    const struct stat *st = &e->st;
    int walk_it = e->error == 0 && S_ISDIR(st->st_mode)
        && (!p->one_fs || st->st_dev == p->root_dev);
    if (e->error == 0 && !S_ISREG(st->st_mode) && (walk_it || !S_ISDIR(st->st_mode))) {
        /* an inode owned: a directory on this filesystem, or any non-directory */
        struct owner *owner = find_owner(d->by_uid, d->owners, &d->owner_count, st->st_uid);
        if (owner == NULL)
            return -1;
        owner->sums[walk_it ? DIRS : OTHERS] += 1;
    }
    if (e->error != 0 || walk_it) {
        PyObject *name = PyUnicode_DecodeFSDefault(raw);
        if (name == NULL)
            return -1;
        int failed = e->error ? append_failure(d->failures, name, e->error)
                              : push_subdir(d->stack, d->parent, name, st);
        Py_DECREF(name);
        d->pushed += !failed && !e->error;
        return failed ? -1 : 0;
    }
    if (S_ISREG(st->st_mode))
        return count_file(st, raw, p, d->by_uid, d->linked, d->owners, &d->owner_count,
                          &d->sums);
    return 0;
}

/* Reads, lstats and counts every entry of dir; read_errno as readdir left it. */
static int
scan_entries(DIR *dir, PyObject *excluded, struct params *p, struct dirstate *d,
             int *read_errno)
{
    struct chunk c;
    c.at_end = 0;
    c.read_errno = 0;
    while (!c.at_end) {
        Py_BEGIN_ALLOW_THREADS
        read_chunk(dir, &c);
        if (excluded == NULL)
            stat_chunk(dir, &c);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) /* Ctrl-C in a huge directory */
            return -1;
        if (excluded != NULL) {
            if (exclude_chunk(excluded, &c) < 0)
                return -1;
            Py_BEGIN_ALLOW_THREADS
            stat_chunk(dir, &c);
            Py_END_ALLOW_THREADS
        }
        for (int i = 0; i < c.count; i++)
            if (!c.entries[i].skip
                && count_entry(&c.entries[i], c.names + c.entries[i].name_at, p, d) < 0)
                return -1;
    }
    *read_errno = c.read_errno;
    return 0;
}

static PyObject *
scan_dir(PyObject *module, PyObject *args)
{
    int fd, one_fs, basis;
    unsigned long long root_dev;
    long long now_ns;
    double now, old_limit;
    PyObject *parent, *stack, *by_uid, *linked, *hist, *dir_key, *excluded;
    PyObject *cands = Py_None, *cand_dir = Py_None;
    if (!PyArg_ParseTuple(args, "iOO!O!O!O!UKpiLddO|OO", &fd, &parent, &PyList_Type, &stack,
                          &PyDict_Type, &by_uid, &PyDict_Type, &linked, &PyList_Type, &hist,
                          &dir_key, &root_dev, &one_fs, &basis, &now_ns, &now, &old_limit,
                          &excluded, &cands, &cand_dir))
        return NULL;
    if (cands == Py_None)
        cands = NULL;
    else if (!PyByteArray_Check(cands) || !PyBytes_Check(cand_dir)) {
        PyErr_SetString(PyExc_TypeError, "cands must be a bytearray and cand_dir bytes");
        return NULL;
    }
    if (basis < 0 || basis >= NBASES) {
        PyErr_Format(PyExc_ValueError, "unknown age basis code %d", basis);
        return NULL;
    }
    if (excluded == Py_None)
        excluded = NULL;
    struct params p = {(dev_t)root_dev, one_fs, basis, now_ns, now, old_limit, dir_key,
                       cands, cand_dir, 0};

    int own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* closedir() closes it, not the caller's */
    if (own_fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    DIR *dir = fdopendir(own_fd);
    if (dir == NULL) {
        close(own_fd);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* fdopendir shares the file offset with fd: start from the first entry. */
    rewinddir(dir);

    struct dirstate d;
    memset(&d.sums, 0, sizeof d.sums);
    d.parent = parent;
    d.stack = stack;
    d.by_uid = by_uid;
    d.linked = linked;
    d.owner_count = 0;
    d.pushed = 0;
    d.failures = PyList_New(0);
    int read_errno = 0;
    if (d.failures == NULL || scan_entries(dir, excluded, &p, &d, &read_errno) < 0) {
        closedir(dir);
        Py_XDECREF(d.failures);
        return NULL;
    }
    closedir(dir);
    PyObject *files = NULL, *bytes = NULL, *old_bytes = NULL;
    if (flush_owners(by_uid, d.owners, &d.owner_count) < 0 || flush_hist(hist, &d.sums) < 0
        || (files = long_from_int128(d.sums.files)) == NULL
        || (bytes = long_from_int128(d.sums.bytes)) == NULL
        || (old_bytes = long_from_int128(d.sums.old_bytes)) == NULL) {
        Py_XDECREF(files);
        Py_XDECREF(bytes);
        Py_DECREF(d.failures);
        return NULL;
    }
    return Py_BuildValue("(nNiNNN)", d.pushed, d.failures, read_errno, files, bytes,
                         old_bytes);
}

static PyMethodDef methods[] = {
    {"scan_dir", scan_dir, METH_VARARGS, scan_dir_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dkmonitor.scan._dirscan",
    .m_doc = "The scanner's per-directory loop, compiled (optional; see walker.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__dirscan(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *bases = PyTuple_New(NBASES);
    if (bases == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < NBASES; i++) {
        PyObject *name = PyUnicode_FromString(basis_names[i]);
        if (name == NULL) {
            Py_DECREF(bases);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(bases, i, name);
    }
    if (PyModule_AddObject(m, "BASES", bases) < 0) {
        Py_DECREF(bases);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *sizes = PyTuple_New(NSIZE - 1), *ages = PyTuple_New(NAGE - 1);
    int failed = sizes == NULL || ages == NULL;
    for (int i = 0; !failed && i < NSIZE - 1; i++) {
        PyObject *edge = PyLong_FromLongLong(size_edges[i]);
        failed = edge == NULL;
        if (edge != NULL)
            PyTuple_SET_ITEM(sizes, i, edge);
    }
    for (int i = 0; !failed && i < NAGE - 1; i++) {
        PyObject *edge = PyLong_FromLongLong(age_edges_ns[i]);
        failed = edge == NULL;
        if (edge != NULL)
            PyTuple_SET_ITEM(ages, i, edge);
    }
    if (failed || PyModule_AddObject(m, "SIZE_EDGES", sizes) < 0) {
        Py_XDECREF(sizes);
        Py_XDECREF(ages);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "AGE_EDGES_NS", ages) < 0) {
        Py_DECREF(ages);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
