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
 * the same bytes). The work is split by job between files: recordio.h.
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
#include "recordio.h"

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

/* Every share's owners, in order, as the (uid, files, bytes, ...) tuples build returns. */
static PyObject *
users_list(const struct merge *shares, int nshares)
{
    PyObject *list = PyList_New(0);
    for (int k = 0; list != NULL && k < nshares; k++)
        for (size_t i = 0; i < shares[k].nusers; i++) {
            const struct user *u = &shares[k].users[i];
            PyObject *item = Py_BuildValue("(kKKKdKKK)", (unsigned long)u->uid,
                                           (unsigned long long)u->files,
                                           (unsigned long long)u->bytes,
                                           (unsigned long long)u->new_files, u->first_at,
                                           (unsigned long long)u->start,
                                           (unsigned long long)u->end,
                                           (unsigned long long)u->digest);
            if (item == NULL || PyList_Append(list, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(item);
        }
    return list;
}

static PyObject *
told_dict(const struct merge *shares, int nshares)
{
    PyObject *told = PyDict_New();
    for (int k = 0; told != NULL && k < nshares; k++)
        for (size_t i = 0; i < shares[k].ntold; i++) {
            PyObject *key = PyLong_FromUnsignedLong(shares[k].told[i].uid);
            PyObject *value = PyLong_FromUnsignedLongLong(shares[k].told[i].count);
            int failed = key == NULL || value == NULL || PyDict_SetItem(told, key, value) < 0;
            Py_XDECREF(key);
            Py_XDECREF(value);
            if (failed) {
                Py_DECREF(told);
                return NULL;
            }
        }
    return told;
}

/* A dict keyed by uid as a new array of structs whose first member is the uid,
 * sorted by it (for bsearch); NULL with a Python error set on failure. ``fill``
 * reads a value into an item's other members: 0, 1 to leave the entry out, -1
 * with a Python error set. */
static void *
read_by_uid(PyObject *dict, size_t item_size, int (*fill)(PyObject *value, void *item),
            size_t *n)
{
    *n = 0;
    char *items = malloc(item_size * (size_t)((dict == NULL ? 0 : PyDict_Size(dict)) + 1));
    if (items == NULL)
        return PyErr_NoMemory();
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (dict != NULL && PyDict_Next(dict, &pos, &key, &value)) {
        char *item = items + *n * item_size;
        uint32_t uid = (uint32_t)PyLong_AsUnsignedLong(key);
        int ok = PyErr_Occurred() ? -1 : fill(value, item);
        if (ok < 0) {
            free(items);
            return NULL;
        }
        if (ok == 0) {
            memcpy(item, &uid, sizeof uid);
            (*n)++;
        }
    }
    qsort(items, *n, item_size, uid_cmp);
    return items;
}

static int
fill_told_since(PyObject *value, void *item)
{
    if (value == Py_None)
        return 1; /* never told */
    ((struct told_since *)item)->at = PyFloat_AsDouble(value);
    return PyErr_Occurred() ? -1 : 0;
}

static int
fill_known(PyObject *value, void *item)
{
    ((struct known_digest *)item)->digest = PyLong_AsUnsignedLongLong(value);
    return PyErr_Occurred() ? -1 : 0;
}

/* uid -> (sum, count): the previous generation's owners' sets. */
static int
fill_set(PyObject *value, void *item)
{
    unsigned long long sum, count;
    if (!PyArg_ParseTuple(value, "KK", &sum, &count))
        return -1;
    ((struct owner_set *)item)->sum = sum;
    ((struct owner_set *)item)->count = count;
    return 0;
}

static PyObject *
sets_dict(const struct owner_sets *sets)
{
    PyObject *dict = PyDict_New();
    for (size_t i = 0; dict != NULL && i < sets->n; i++) {
        const struct owner_set *o = &sets->items[i];
        PyObject *key = PyLong_FromUnsignedLong(o->uid);
        PyObject *value = Py_BuildValue("(KK)", (unsigned long long)o->sum,
                                        (unsigned long long)o->count);
        int failed = key == NULL || value == NULL || PyDict_SetItem(dict, key, value) < 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (failed) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

PyDoc_STRVAR(build_doc,
"build(spool_fds, prev_fd, out_fd, dropped_fd, tmp_dir_fd, root_dev, now, exempt_uids,\n"
"      exempt_paths, acted, told_since, chunk_bytes, share_from=65536, fan_in=16,\n"
"      known={}, set_key=b'', prev_sets={})\n"
"    -> (users, told, dropped, count, unchanged, sets)\n\n"
"Sort the scan's spooled candidates (in chunks of ``chunk_bytes``, spilled as\n"
"unnamed files in ``tmp_dir_fd``), leave out exempt owners, exempt subtrees\n"
"and the (dev, ino) pairs in ``acted`` (packed u64 pairs), and merge them with\n"
"the previous record (``prev_fd``, -1 for none): an unchanged file (same key,\n"
"size and mtime) keeps its announced_at, any other gets ``now``. The new\n"
"record goes to ``out_fd`` (an empty file), the previous entries not listed\n"
"again to ``dropped_fd`` (bare entries, from its offset). Returns\n"
"per owner (uid, files, bytes, new files, first announced_at, start, end:\n"
"byte range in out, a digest of what their list shows), uid -> previous files\n"
"a notice told of (announced at or before ``told_since[uid]``), how many were\n"
"dropped, the entry count, and whether the new record is exactly the previous\n"
"one (then nothing was written to out_fd: the previous record stays).\n"
"Sorting runs on one thread per spool (up to four), and so does the merge of\n"
"``share_from`` entries or more, each thread taking a range of owners.\n"
"A sorting thread's spilled runs are merged ``fan_in`` at a time into longer\n"
"ones, which bounds the open files and sources of the last merge.\n"
"``known``: uid -> the digest this build gave that owner in ``prev_fd`` (from\n"
"the build that wrote it); an owner whose entries are all the previous\n"
"record's, unchanged, gets it without the digest being computed again.\n"
"``set_key`` (16 bytes; empty: none): first sum up every owner's candidates\n"
"(recordio_sets.c) and return them as ``sets`` (uid -> (sum, count)); an\n"
"owner whose set is the one in ``prev_sets`` (the build of ``prev_fd``'s, with\n"
"the same filters and nothing acted on: the caller's to check) is not sorted\n"
"or merged again, and keeps their previous entries as they are.");

static PyObject *
build(PyObject *module, PyObject *args)
{
    PyObject *spool_fds, *uids, *paths, *told_since_dict;
    int prev_fd, out_fd, dropped_fd, tmp_dir_fd;
    unsigned long long root_dev;
    double now;
    Py_buffer acted;
    Py_ssize_t chunk_bytes, share_from = 1 << 16;
    int fan_in = FAN_IN;
    PyObject *known_dict = NULL, *prev_sets_dict = NULL;
    const char *set_key_bytes = NULL;
    Py_ssize_t set_key_len = 0;
    if (!PyArg_ParseTuple(args, "O!iiiiKdO!O!y*O!n|niO!y#O!", &PyList_Type, &spool_fds,
                          &prev_fd, &out_fd, &dropped_fd, &tmp_dir_fd, &root_dev, &now,
                          &PyList_Type, &uids, &PyList_Type, &paths, &acted, &PyDict_Type,
                          &told_since_dict, &chunk_bytes, &share_from, &fan_in, &PyDict_Type,
                          &known_dict, &set_key_bytes, &set_key_len, &PyDict_Type,
                          &prev_sets_dict))
        return NULL;
    if (fan_in < 2 || (set_key_len != 0 && set_key_len != 16)) {
        PyErr_SetString(PyExc_ValueError, fan_in < 2 ? "fan_in must be at least 2"
                                                     : "set_key must be 16 bytes");
        PyBuffer_Release(&acted);
        return NULL;
    }
    uint64_t set_key[2] = {0, 0};
    if (set_key_len)
        memcpy(set_key, set_key_bytes, 16);
    struct owner_set *prev_sets = NULL;
    size_t nprev_sets = 0;
    struct owner_sets sets = {0};
    struct bound *carried = NULL;
    size_t ncarried = 0;
    struct filters f;
    struct sorter sorters[MAX_SORTERS];
    memset(sorters, 0, sizeof sorters);
    struct merge shares[MAX_SHARES];
    memset(shares, 0, sizeof shares);
    struct share_job jobs[MAX_SHARES];
    memset(jobs, 0, sizeof jobs);
    int nsorters = 0, nshares = 0, *fds = NULL, nfds = (int)PyList_GET_SIZE(spool_fds);
    struct told_since *told_since = NULL;
    size_t ntold_since = 0;
    struct known_digest *known = NULL;
    size_t nknown = 0;
    PyObject *result = NULL;
    int failed = 0;

    if (read_filters(&f, uids, paths, &acted) < 0
        || (told_since = read_by_uid(told_since_dict, sizeof *told_since, fill_told_since,
                                     &ntold_since)) == NULL
        || (known = read_by_uid(known_dict, sizeof *known, fill_known, &nknown)) == NULL
        || (prev_sets = read_by_uid(prev_sets_dict, sizeof *prev_sets, fill_set,
                                    &nprev_sets)) == NULL)
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
        st->rs.fan_in = fan_in;
        st->rs.peers = nsorters;
        st->rs.budget = (size_t)chunk_bytes / (size_t)nsorters;
        if (st->rs.budget < (1 << 13))
            st->rs.budget = 1 << 13;
        st->rs.root_dev = root_dev;
        st->fds = fds + t;
        st->nfds = nfds - t;
        st->stride = nsorters;
        st->f = &f;
        st->set_key = set_key;
    }
    Py_BEGIN_ALLOW_THREADS
    if (set_key_len) {
        /* without a previous record nothing can be carried (prev_sets would
         * only be stale): the sets are still taken, for the next build */
        failed = owner_sets_decide(sorters, nsorters, prev_sets, prev_fd >= 0 ? nprev_sets : 0,
                                   &sets, &carried, &ncarried) < 0;
        for (int t = 0; t < nsorters; t++)
            sorters[t].carried = (struct carried_owners){carried, ncarried, 0, 0, 0};
    }
    /* every owner carried: there is nothing to sort */
    int sort = !(set_key_len && ncarried == sets.n);
    failed = failed || (sort && run_sorters(sorters, nsorters) < 0)
        || merge_shares(shares, jobs, &nshares, sorters, nsorters, prev_fd, out_fd,
                        dropped_fd, tmp_dir_fd, now, told_since, ntold_since, known, nknown,
                        carried, ncarried, (uint64_t)share_from) < 0;
    Py_END_ALLOW_THREADS
    if (failed) {
        if (errno == EBADMSG)
            PyErr_SetString(PyExc_ValueError, "the previous record is not a dkmonitor record");
        else
            PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    int unchanged;
    Py_BEGIN_ALLOW_THREADS
    failed = assemble(shares, nshares, prev_fd, out_fd, dropped_fd, &unchanged) < 0;
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    uint64_t count = 0, ndropped = 0;
    for (int k = 0; k < nshares; k++) {
        count += shares[k].count;
        ndropped += shares[k].ndropped;
    }
    PyObject *users = users_list(shares, nshares);
    PyObject *told = users == NULL ? NULL : told_dict(shares, nshares);
    PyObject *sets_out = told == NULL ? NULL : sets_dict(&sets);
    if (sets_out != NULL)
        result = Py_BuildValue("(NNKKON)", users, told, (unsigned long long)ndropped,
                               (unsigned long long)count, unchanged ? Py_True : Py_False,
                               sets_out);
    else {
        Py_XDECREF(users);
        Py_XDECREF(told);
    }
done:
    PyBuffer_Release(&acted);
    free(f.uids);
    free(f.acted);
    free(told_since);
    free(known);
    free(prev_sets);
    free(sets.items);
    free(carried);
    for (int t = 0; t < nsorters; t++) {
        free(sorters[t].sets.items);
        struct runs *rs = &sorters[t].rs;
        for (int i = 0; i < rs->nfds; i++) {
            close(rs->fds[i]);
            free(rs->file_bounds[i].items);
        }
        free(rs->fds);
        free(rs->levels);
        free(rs->file_bounds);
        free(rs->mem_bounds.items);
        free(rs->keys);
        free(rs->dirs);
        free(rs->carried);
        for (int i = 0; i < sorters[t].nspools; i++)
            reader_close(&sorters[t].spools[i]);
        free(sorters[t].spools);
    }
    free(fds);
    for (int k = 0; k < MAX_SHARES; k++) {
        for (int i = 0; jobs[k].src != NULL && i < jobs[k].nsrc; i++) {
            reader_close(&jobs[k].src[i].r);
            free(jobs[k].src[i].own);
        }
        free(jobs[k].src);
        reader_close(&jobs[k].prev);
        struct merge *m = &shares[k];
        if (m->own_fds) {
            close(m->out.fd);
            close(m->dropped.fd);
        }
        free(m->out.buf);
        free(m->dropped.buf);
        free(m->users);
        free(m->told);
    }
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
