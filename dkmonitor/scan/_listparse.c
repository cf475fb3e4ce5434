/*
 * dkmonitor.scan._listparse -- the list reader's plain-file loop, compiled.
 *
 * Why this exists: reading a site scanner's list (run full --from-list) spends
 * its time in one loop run once per record: split the record, decode a few
 * integers, add to the owner's totals and the histograms. In CPython that is
 * about 5 us per record (a 10M-record list: close to a minute of CPU, more
 * than a minute of wall time on a busy machine); here it is a small fraction
 * of that (bench/README.md, "Lists").
 *
 * It is optional and deliberately narrow: it only consumes the common records
 * of one owner -- a regular file with one link in the directory of the file
 * before it, every field plain digits, its last use not within the age
 * rule's slack of the threshold; a directory or other inode below the
 * target -- and stops at anything else, returning the index of that record
 * and why (acc[STATUS]): a new owner or a new directory (Python folds the
 * run's sums, opens the directory, and calls again at the same record), a
 * sum that could overflow (fold, call again), or a record it does not read
 * (S_RECORD). dkmonitor/scan/listcompiled.py then has fromlist.py's
 * pure-Python loop read that one record (it handles every case: the target's
 * own record, hard links, errors with line numbers, the boundary test) and
 * calls this again after it. So the two paths give the same numbers by
 * construction; tests/test_fromlist_compiled.py checks it.
 *
 * files(batch, start, parent, consts, acc) -> index of the first record not read
 *   batch   list of bytes, the records (terminators removed)
 *   parent  bytes, the directory of the last file read (its sums are open)
 *   consts  (prefix, root, dev or None, nfields 11 (find) or 10 (lfs),
 *            basis 0 used / 1 atime / 2 mtime / 3 ctime, now_ns, old_below,
 *            young_above, size_edges, age_edges)
 *   acc     array('q') of ACC_LEN: the run's sums (files, bytes, blocks,
 *           old files, old bytes, age seconds, age ns remainder, directories,
 *           other inodes), the bytes added to the histograms since they were
 *           last folded, the histograms in tally.py's layout, and the status.
 * Every record consumed has the uid of batch[start].
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

enum { A_FILES, A_BYTES, A_BLOCKS, A_OLD_FILES, A_OLD_BYTES, A_AGE_S, A_AGE_NS, A_DIRS,
       A_OTHERS, A_HIST_BYTES, A_HIST };
/* Why a run stopped (acc[A_STATUS]); CONSUMED is one()'s "go on". */
enum { S_RECORD, S_FULL, S_DIR, S_OWNER, CONSUMED };
#define NSIZE 8
#define NAGE 7
#define A_STATUS (A_HIST + 2 * NSIZE + 2 * NAGE)
#define ACC_LEN (A_STATUS + 1)
#define MAX_FIELDS 11
#define GPFS 1  /* consts' nfields for an mmapplypolicy LIST file */
#define NS 1000000000LL
#define LIMIT ((int64_t)1 << 62)

typedef struct {
    const char *start;
    Py_ssize_t len;
} Field;

/* Plain decimal digits, 1 to 18 of them (< 2^60): anything else is Python's. */
static int
digits(Field f, int64_t *out)
{
    if (f.len < 1 || f.len > 18)
        return 0;
    int64_t value = 0;
    for (Py_ssize_t i = 0; i < f.len; i++) {
        unsigned char c = (unsigned char)f.start[i] - '0';
        if (c > 9)
            return 0;
        value = value * 10 + c;
    }
    *out = value;
    return 1;
}

/* A time as find prints %A@ (10 digits, '.', 10 digits) or as lfs does (whole
 * seconds, up to 10 digits) -> ns; before 2255 (int64 ns), else Python's. */
static int
stamp(Field f, int64_t *out)
{
    int64_t seconds, fraction = 0;
    if (f.len == 21) {
        if (f.start[10] != '.' || !digits((Field){f.start, 10}, &seconds)
            || !digits((Field){f.start + 11, 10}, &fraction))
            return 0;
    }
    else if (f.len > 10 || !digits(f, &seconds))
        return 0;
    if (seconds >= 9000000000LL)
        return 0;
    *out = seconds * NS + fraction / 10;
    return 1;
}

static int
bucket(int64_t value, const int64_t *edges, int n)
{
    int i = 0;
    while (i < n && edges[i] <= value)  /* bisect_right */
        i++;
    return i;
}

typedef struct {
    const char *prefix, *root, *dev;
    Py_ssize_t prefix_len, root_len, dev_len;
    int nfields, basis;
    int wanted[3];  /* which of atime, mtime, ctime the basis reads */
    int64_t now_ns, old_below, young_above;
    int64_t size_edges[NSIZE - 1], age_edges[NAGE - 1];
} Consts;

static int
edges_from(PyObject *tuple, int64_t *out, Py_ssize_t n)
{
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != n) {
        PyErr_SetString(PyExc_ValueError, "_listparse: wrong histogram edges");
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
        if (out[i] == -1 && PyErr_Occurred())
            return 0;
    }
    return 1;
}

static int
consts_from(PyObject *tuple, Consts *c)
{
    PyObject *dev;
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != 10) {
        PyErr_SetString(PyExc_TypeError, "_listparse: consts must be a 10-tuple");
        return 0;
    }
    if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(tuple, 0), (char **)&c->prefix,
                                &c->prefix_len) < 0
        || PyBytes_AsStringAndSize(PyTuple_GET_ITEM(tuple, 1), (char **)&c->root,
                                   &c->root_len) < 0)
        return 0;
    dev = PyTuple_GET_ITEM(tuple, 2);
    c->dev = NULL;
    c->dev_len = 0;
    if (dev != Py_None && PyBytes_AsStringAndSize(dev, (char **)&c->dev, &c->dev_len) < 0)
        return 0;
    c->nfields = (int)PyLong_AsLong(PyTuple_GET_ITEM(tuple, 3));
    c->basis = (int)PyLong_AsLong(PyTuple_GET_ITEM(tuple, 4));
    c->wanted[0] = c->basis == 0 || c->basis == 1;
    c->wanted[1] = c->basis == 0 || c->basis == 2;
    c->wanted[2] = c->basis == 3;
    c->now_ns = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, 5));
    c->old_below = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, 6));
    c->young_above = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, 7));
    if (PyErr_Occurred())
        return 0;
    if (c->basis < 0 || c->basis > 3) {
        PyErr_SetString(PyExc_ValueError, "_listparse: basis is 0 to 3");
        return 0;
    }
    if (c->nfields != 10 && c->nfields != 11 && c->nfields != GPFS) {
        PyErr_SetString(PyExc_ValueError, "_listparse: nfields is 10, 11 or GPFS");
        return 0;
    }
    return edges_from(PyTuple_GET_ITEM(tuple, 8), c->size_edges, NSIZE - 1)
           && edges_from(PyTuple_GET_ITEM(tuple, 9), c->age_edges, NAGE - 1);
}

/* Split at the first nfields-1 spaces; the last field (the path) is the rest. */
static int
split(const char *s, Py_ssize_t n, int nfields, Field *fields)
{
    const char *end = s + n;
    for (int i = 0; i < nfields - 1; i++) {
        const char *space = memchr(s, ' ', (size_t)(end - s));
        if (space == NULL)
            return 0;
        fields[i] = (Field){s, space - s};
        s = space + 1;
    }
    fields[nfields - 1] = (Field){s, end - s};
    return 1;
}

static int
same(Field f, const char *s, Py_ssize_t n)
{
    return f.len == n && memcmp(f.start, s, (size_t)n) == 0;
}

/* The last use by the age basis; 0 when the record is not plain enough for this loop. */
static int
last_use(const Consts *c, const Field *times, int64_t *last)
{
    int64_t atime, mtime;
    switch (c->basis) {
    case 0:
        if (!stamp(times[0], &atime) || !stamp(times[1], &mtime))
            return 0;
        *last = mtime > atime ? mtime : atime;
        return 1;
    case 1:
    case 2:
    case 3:
        return stamp(times[c->basis - 1], last);
    default:
        return 0;
    }
}

/* The run's owner: the uid field of its first record, copied (a GPFS record's is decoded
 * into a buffer that the next record reuses). */
typedef struct {
    Py_ssize_t len;  /* -1: none yet */
    char text[20];
} Owner;

/* CONSUMED when the uid field is the run's owner (adopted from its first record, plain
 * digits only), else why the run stops. */
static int
owner(Field f, Owner *uid)
{
    int64_t ignored;
    if (uid->len >= 0)
        return same(f, uid->text, uid->len) ? CONSUMED : S_OWNER;
    if (!digits(f, &ignored))
        return S_RECORD;
    memcpy(uid->text, f.start, (size_t)f.len);
    uid->len = f.len;
    return CONSUMED;
}

/* A regular file with one link into acc: CONSUMED, or why not. */
static int
add_file(const Consts *c, int64_t size, int64_t blocks, int64_t last, Field path, Field parent,
         int64_t *acc)
{
    int64_t age, old;
    if (last < c->old_below)
        old = 1;
    else if (last > c->young_above)
        old = 0;
    else
        return S_RECORD;  /* on the boundary: AgeRule.is_old decides, in Python */
    const char *slash = path.start + path.len;
    while (*--slash != '/')
        ;  /* the prefix ends in '/': found */
    if (!same(parent, path.start, slash - path.start))
        return S_DIR;
    if ((acc[A_HIST_BYTES] | acc[A_BLOCKS] | acc[A_AGE_S] | acc[A_AGE_NS]) >= LIMIT)
        return S_FULL;
    age = last < c->now_ns ? c->now_ns - last : 0;
    acc[A_FILES] += 1;
    acc[A_BYTES] += size;
    acc[A_BLOCKS] += blocks;
    acc[A_AGE_S] += age / NS;
    acc[A_AGE_NS] += age % NS;
    acc[A_HIST_BYTES] += size;
    if (old) {
        acc[A_OLD_FILES] += 1;
        acc[A_OLD_BYTES] += size;
    }
    int b = bucket(size, c->size_edges, NSIZE - 1);
    acc[A_HIST + b] += 1;
    acc[A_HIST + NSIZE + b] += size;
    b = bucket(age, c->age_edges, NAGE - 1);
    acc[A_HIST + 2 * NSIZE + b] += 1;
    acc[A_HIST + 2 * NSIZE + NAGE + b] += size;
    return CONSUMED;
}

/* A find or lfs regular file (f: find's field order). */
static int
plain_file(const Consts *c, const Field *f, Field path, Field parent, int64_t *acc)
{
    int64_t size, blocks, last;
    if (!same(f[2], "1", 1) || !digits(f[4], &size) || !digits(f[5], &blocks)
        || !last_use(c, &f[6], &last))
        return S_RECORD;
    return add_file(c, size, blocks, last, path, parent, acc);
}

/* The kind letter's count: CONSUMED for a directory or another inode, else S_RECORD. */
static int
add_other(char kind, int64_t *acc)
{
    switch (kind) {
    case 'd':
        acc[A_DIRS] += 1;
        return CONSUMED;
    case 'l': case 'p': case 's': case 'b': case 'c': case 'D': case '?':
        acc[A_OTHERS] += 1;
        return CONSUMED;
    default:
        return S_RECORD;
    }
}

/* ---- GPFS: mmapplypolicy LIST records, "INO GEN SNAP  SHOW -- PATH" (listformats.py) ---- */

static int
is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* The next whitespace-separated word (bytes.split(None) rules), or 0. */
static int
word(const char **s, const char *end, Field *out)
{
    const char *p = *s;
    while (p < end && is_space(*p))
        p++;
    const char *start = p;
    while (p < end && !is_space(*p))
        p++;
    if (p == start)
        return 0;
    *out = (Field){start, p - start};
    *s = p;
    return 1;
}

/* SHOW decoded as listformats._unescape does when every '%' is %7C, %20 or %3A (else 0),
 * then split at '|' into exactly 8 fields. */
static int
show_fields(const char *s, const char *end, char *buf, Py_ssize_t size, Field *out)
{
    Py_ssize_t n = 0;
    int count = 0;
    Py_ssize_t start = 0;
    while (s < end) {
        char ch = *s++;
        if (ch == '%') {
            if (end - s < 2)
                return 0;
            ch = s[0] == '7' && s[1] == 'C' ? '|' : s[0] == '2' && s[1] == '0' ? ' '
                 : s[0] == '3' && s[1] == 'A' ? ':' : 0;
            if (ch == 0)
                return 0;
            s += 2;
        }
        if (n == size)
            return 0;
        if (ch == '|') {
            if (count == 7)
                return 0;
            out[count++] = (Field){buf + start, n - start};
            start = n + 1;
        }
        buf[n++] = ch;
    }
    if (count != 7)
        return 0;
    out[7] = (Field){buf + start, n - start};
    return 1;
}

static int
leap(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* "YYYY-MM-DD HH:MM:SS[.f{1,9}]" (or '@' for the space), 1970-2200, a real date -> ns. */
static int
gpfs_time(Field f, int64_t *out)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *t = f.start;
    int64_t y, m, d, hh, mm, ss, fraction = 0;
    if (f.len < 19 || t[4] != '-' || t[7] != '-' || (t[10] != ' ' && t[10] != '@')
        || t[13] != ':' || t[16] != ':')
        return 0;
    if (!digits((Field){t, 4}, &y) || !digits((Field){t + 5, 2}, &m)
        || !digits((Field){t + 8, 2}, &d) || !digits((Field){t + 11, 2}, &hh)
        || !digits((Field){t + 14, 2}, &mm) || !digits((Field){t + 17, 2}, &ss))
        return 0;
    if (f.len > 19) {
        Py_ssize_t k = f.len - 20;
        if (t[19] != '.' || k < 1 || k > 9 || !digits((Field){t + 20, k}, &fraction))
            return 0;
        for (; k < 9; k++)
            fraction *= 10;
    }
    if (y < 1970 || y > 2200 || m < 1 || m > 12 || d < 1
        || d > mdays[m - 1] + (m == 2 && leap(y)))
        return 0;
    /* days from 1970-01-01 (proleptic Gregorian, Howard Hinnant's days_from_civil) */
    int64_t yy = m <= 2 ? y - 1 : y;
    int64_t era = yy / 400, yoe = yy - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    *out = (days * 86400 + hh * 3600 + mm * 60 + ss) * NS + fraction;
    return 1;
}

/* A GPFS record into acc: CONSUMED, or the status that stops the run. */
static int
one_gpfs(const Consts *c, const char *s, Py_ssize_t n, Owner *uid, Field parent, int64_t *acc)
{
    static const char sep[] = " -- ";
    const char *end = s + n, *cut = NULL, *p = s;
    Field ino, generation, snapshot, f[8], path;
    char buf[512];
    int64_t kb, size, times[3] = {0, 0, 0}, last;
    for (const char *q = s; q + 4 <= end; q++)
        if (memcmp(q, sep, 4) == 0) {
            cut = q;
            break;
        }
    if (cut == NULL || c->dev != NULL || !word(&p, cut, &ino) || !word(&p, cut, &generation)
        || !word(&p, cut, &snapshot))
        return S_RECORD;
    while (p < cut && is_space(*p))
        p++;
    const char *show_end = cut;
    while (show_end > p && is_space(show_end[-1]))
        show_end--;
    if (p == cut || !show_fields(p, show_end, buf, sizeof buf, f))
        return S_RECORD;
    path = (Field){cut + 4, end - cut - 4};
    if (f[4].len < 1 || memchr(path.start, '%', (size_t)path.len) != NULL
        || !digits(f[2], &kb) || path.len <= c->prefix_len
        || memcmp(path.start, c->prefix, (size_t)c->prefix_len) != 0
        || same(path, c->root, c->root_len))
        return S_RECORD;
    for (int i = 0; i < 3; i++)  /* the times the basis reads (all that Python decodes) */
        if (c->wanted[i] && !gpfs_time(f[5 + i], &times[i]))
            return S_RECORD;
    char kind = f[4].start[0] == '-' ? 'f' : f[4].start[0];
    if (kind != 'f' && kind != 'd' && kind != 'l' && kind != 'p' && kind != 's' && kind != 'b'
        && kind != 'c')
        return S_RECORD;  /* unknown MODE: Python's error */
    int mine = owner(f[0], uid);
    if (mine != CONSUMED)
        return mine;
    if (kind != 'f')
        return add_other(kind, acc);
    if (!same(f[3], "1", 1) || !digits(f[1], &size))
        return S_RECORD;
    last = c->basis == 0 ? (times[1] > times[0] ? times[1] : times[0]) : times[c->basis - 1];
    return add_file(c, size, 2 * kb, last, path, parent, acc);
}

/* One record into acc: CONSUMED, or the status that stops the run. */
static int
one(const Consts *c, const char *s, Py_ssize_t n, Owner *uid, Field parent, int64_t *acc)
{
    Field f[MAX_FIELDS];  /* find's field order: lfs has no device, its f[0] is unused */
    if (!split(s, n, c->nfields, c->nfields == 11 ? f : f + 1))
        return S_RECORD;
    Field kind = f[9], path = f[10];
    if (kind.len != 1 || path.len <= c->prefix_len
        || memcmp(path.start, c->prefix, (size_t)c->prefix_len) != 0
        || same(path, c->root, c->root_len))
        return S_RECORD;
    if (c->dev != NULL && (c->nfields != 11 || !same(f[0], c->dev, c->dev_len)))
        return S_RECORD;
    int mine = owner(f[3], uid);
    if (mine != CONSUMED)
        return mine;
    if (kind.start[0] == 'f')
        return plain_file(c, f, path, parent, acc);
    return add_other(kind.start[0], acc);
}

PyDoc_STRVAR(files_doc,
"files(batch, start, parent, consts, acc) -> int\n\n"
"Read plain-file records of batch from start into acc; the index of the first one\n"
"left for the Python loop (len(batch) when all were read).");

static PyObject *
files(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    Consts c;
    Py_buffer view;
    Owner uid = {.len = -1};
    Field parent;
    if (nargs != 5 || !PyList_Check(args[0]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "files(batch: list, start, parent: bytes, consts, acc)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (!consts_from(args[3], &c))
        return NULL;
    parent = (Field){PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2])};
    if (PyObject_GetBuffer(args[4], &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
        return NULL;
    if (view.len != ACC_LEN * (Py_ssize_t)sizeof(int64_t) || view.itemsize != 8
        || view.format == NULL || strcmp(view.format, "q") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "_listparse: acc must be array('q') of ACC_LEN");
        return NULL;
    }
    int64_t *acc = view.buf;
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    acc[A_STATUS] = S_RECORD;
    for (; i < n; i++) {
        PyObject *record = PyList_GET_ITEM(args[0], i);
        int status = !PyBytes_Check(record) ? S_RECORD
            : c.nfields == GPFS
            ? one_gpfs(&c, PyBytes_AS_STRING(record), PyBytes_GET_SIZE(record), &uid, parent, acc)
            : one(&c, PyBytes_AS_STRING(record), PyBytes_GET_SIZE(record), &uid, parent, acc);
        if (status != CONSUMED) {
            acc[A_STATUS] = status;
            break;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"files", (PyCFunction)(void (*)(void))files, METH_FASTCALL, files_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dkmonitor.scan._listparse",
    .m_doc = "The list reader's plain-file loop, compiled (optional; see fromlist.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__listparse(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "ACC_LEN", ACC_LEN) < 0
        || PyModule_AddIntConstant(m, "STATUS", A_STATUS) < 0
        || PyModule_AddIntConstant(m, "FULL", S_FULL) < 0
        || PyModule_AddIntConstant(m, "GPFS", GPFS) < 0
        || PyModule_AddIntConstant(m, "NEW_DIRECTORY", S_DIR) < 0
        || PyModule_AddIntConstant(m, "NEW_OWNER", S_OWNER) < 0
        || PyModule_AddIntConstant(m, "HIST", A_HIST) < 0
        || PyModule_AddIntConstant(m, "HIST_BYTES", A_HIST_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
