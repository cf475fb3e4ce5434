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
 * Semantics copied from walker.Walker.walk, keep them in step:
 *   - one lstat (fstatat AT_SYMLINK_NOFOLLOW relative to the directory fd);
 *   - directories are returned (on the same filesystem when one_fs), other
 *     non-regular files are ignored, symlinks are never followed;
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
enum column { FILES, BYTES, BLOCKS, OLD_FILES, OLD_BYTES, AGE_NS, NCOLUMNS };

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
    double old_limit; /* old_days * DAY, computed in Python */
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
        PyErr_SetString(PyExc_TypeError, "by_uid values must be lists of 6 integers");
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

/* Counts one regular file; returns -1 with a Python error set on failure. */
static int
count_file(const struct stat *st, const struct params *p, PyObject *by_uid,
           PyObject *linked, struct owner *owners, int *owner_count)
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

    if (st->st_nlink > 1) { /* counted once, at the end (see tally.Tally.linked) */
        PyObject *key = Py_BuildValue("(KK)", (unsigned long long)st->st_dev,
                                      (unsigned long long)st->st_ino);
        if (key == NULL)
            return -1;
        int known = PyDict_Contains(linked, key);
        if (known != 0) {
            Py_DECREF(key);
            return known < 0 ? -1 : 0;
        }
        PyObject *age_obj = long_from_int128(age);
        PyObject *value = age_obj == NULL ? NULL
            : Py_BuildValue("(kLLOO)", (unsigned long)st->st_uid, (long long)st->st_size,
                            (long long)st->st_blocks, age_obj, old ? Py_True : Py_False);
        Py_XDECREF(age_obj);
        int failed = value == NULL || PyDict_SetItem(linked, key, value) < 0;
        Py_DECREF(key);
        Py_XDECREF(value);
        return failed ? -1 : 0;
    }

    struct owner *owner = NULL;
    for (int i = 0; i < *owner_count; i++) {
        if (owners[i].uid == st->st_uid) {
            owner = &owners[i];
            break;
        }
    }
    if (owner == NULL) {
        if (*owner_count == MAX_OWNERS && flush_owners(by_uid, owners, owner_count) < 0)
            return -1;
        owner = &owners[(*owner_count)++];
        memset(owner, 0, sizeof *owner);
        owner->uid = st->st_uid;
    }
    owner->sums[FILES] += 1;
    owner->sums[BYTES] += st->st_size;
    owner->sums[BLOCKS] += st->st_blocks;
    owner->sums[AGE_NS] += age;
    if (old) {
        owner->sums[OLD_FILES] += 1;
        owner->sums[OLD_BYTES] += st->st_size;
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
"scan_dir(fd, parent, stack, by_uid, linked, root_dev, one_fs, basis, now_ns, now,\n"
"         old_limit, excluded) -> (pushed, failures, read_errno)\n\n"
"Read the open directory ``fd`` (not closed), lstat every entry relative to it\n"
"and add its regular files to ``by_uid`` / ``linked`` as\n"
"walker.Walker._scan_python does. ``excluded`` is None or a callable taking an\n"
"entry name (str) that returns true to skip it. Subdirectories to walk are\n"
"appended to the list ``stack`` as (parent, name, st_dev, st_ino). Returns how\n"
"many were pushed, a list of (name, errno) for entries that could not be\n"
"lstat'ed, and the errno of a failed readdir (0 when read to the end).");

static PyObject *
scan_dir(PyObject *module, PyObject *args)
{
    int fd, one_fs, basis;
    unsigned long long root_dev;
    long long now_ns;
    double now, old_limit;
    PyObject *parent, *stack, *by_uid, *linked, *excluded;
    if (!PyArg_ParseTuple(args, "iOO!O!O!KpiLddO", &fd, &parent, &PyList_Type, &stack,
                          &PyDict_Type, &by_uid, &PyDict_Type, &linked, &root_dev, &one_fs,
                          &basis, &now_ns, &now, &old_limit, &excluded))
        return NULL;
    if (basis < 0 || basis >= NBASES) {
        PyErr_Format(PyExc_ValueError, "unknown age basis code %d", basis);
        return NULL;
    }
    if (excluded == Py_None)
        excluded = NULL;
    struct params p = {(dev_t)root_dev, one_fs, basis, now_ns, now, old_limit};

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

    PyObject *failures = PyList_New(0);
    struct owner owners[MAX_OWNERS];
    int owner_count = 0, read_errno = 0;
    Py_ssize_t pushed = 0;
    unsigned long seen = 0;
    if (failures == NULL)
        goto error;

    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            read_errno = errno;
            break;
        }
        const char *raw = entry->d_name;
        if (raw[0] == '.' && (raw[1] == '\0' || (raw[1] == '.' && raw[2] == '\0')))
            continue;
        if ((++seen & 0xffff) == 0 && PyErr_CheckSignals() < 0) /* Ctrl-C in a huge dir */
            goto error;

        PyObject *name = NULL;
        if (excluded != NULL) {
            name = PyUnicode_DecodeFSDefault(raw);
            if (name == NULL)
                goto error;
            PyObject *verdict = PyObject_CallOneArg(excluded, name);
            int skip = verdict == NULL ? -1 : PyObject_IsTrue(verdict);
            Py_XDECREF(verdict);
            if (skip != 0) {
                Py_DECREF(name);
                if (skip < 0)
                    goto error;
                continue;
            }
        }

        struct stat st;
        int error = fstatat(dirfd(dir), raw, &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
        int keep_name = error != 0
            || (S_ISDIR(st.st_mode) && (!p.one_fs || st.st_dev == p.root_dev));
        if (keep_name) {
            if (name == NULL && (name = PyUnicode_DecodeFSDefault(raw)) == NULL)
                goto error;
            int failed = error ? append_failure(failures, name, error)
                               : push_subdir(stack, parent, name, &st);
            Py_DECREF(name);
            if (failed)
                goto error;
            pushed += !error;
            continue;
        }
        Py_XDECREF(name);
        if (S_ISREG(st.st_mode)
            && count_file(&st, &p, by_uid, linked, owners, &owner_count) < 0)
            goto error;
    }
    closedir(dir);
    if (flush_owners(by_uid, owners, &owner_count) < 0) {
        Py_DECREF(failures);
        return NULL;
    }
    return Py_BuildValue("(nNi)", pushed, failures, read_errno);

error:
    closedir(dir);
    Py_XDECREF(failures);
    return NULL;
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
    return m;
}
