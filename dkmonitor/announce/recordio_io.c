/* Buffered reading and writing of records, runs and spools (recordio.h). */
#include "recordio.h"

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
int
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

int
writer_flush(struct writer *w)
{
    if (w->used && write_all(w->fd, w->buf, w->used) < 0)
        return -1;
    w->used = 0;
    return 0;
}

/* writer_put's slow part: the buffer is full (``offset`` already counts ``len``). */
int
writer_put_full(struct writer *w, const void *data, size_t len)
{
    if (writer_flush(w) < 0)
        return -1;
    if (len > IO_BYTES)
        return write_all(w->fd, data, len);
    memcpy(w->buf, data, len);
    w->used = len;
    return 0;
}

/* reader_fill's slow part: the buffer is short of ``need`` bytes. */
int
reader_refill(struct reader *r, size_t need)
{
    if (r->mapped) {
        if (r->end == r->start)
            return 0;
        errno = EINVAL;
        return -1;
    }
    if (need > IO_BYTES) {
        errno = EINVAL;
        return -1;
    }
    memmove(r->buf, r->buf + r->start, r->end - r->start);
    r->base += r->start;
    r->end -= r->start;
    r->start = 0;
    while (r->end < need && !r->eof) {
        ssize_t n = pread(r->fd, r->buf + r->end, IO_BYTES - r->end,
                          (off_t)(r->base + r->end));
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

int
reader_open(struct reader *r, int fd, off_t at, size_t release)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->release = release;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= at) {
        r->mapped = r->eof = 1;
        r->start = (size_t)at;
        r->end = (size_t)st.st_size;
        if (st.st_size == 0)
            return 0;
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            r->buf = map;
            madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
            return 0;
        }
        memset(r, 0, sizeof *r); /* not mappable: read it */
        r->fd = fd;
    }
    r->buf = malloc(IO_BYTES);
    r->base = (uint64_t)at;
    if (r->buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void
reader_close(struct reader *r)
{
    if (r->mapped) {
        if (r->buf != NULL)
            munmap(r->buf, r->end);
    } else
        free(r->buf);
    r->buf = NULL;
}

/* The give-back step of each of ``readers`` run readers read at once. */
size_t
run_release(int readers)
{
    size_t step = WIDE_RELEASE_BYTES;
    while (step > RELEASE_BYTES && 2 * step * (size_t)readers > RUN_WINDOWS_BYTES)
        step >>= 1;
    return step;
}

/* reader_release's slow part: give back the pages well behind the reader. */
void
reader_give_back(struct reader *r)
{
    reader_give_back_to(r, r->start - r->release);
}

/* A mapped reader gives back its pages before ``upto`` (rounded down to its
 * step). Read again, they come back from the page cache. */
void
reader_give_back_to(struct reader *r, size_t upto)
{
    upto &= ~(r->release - 1);
    if (r->mapped && upto > r->released
        && madvise(r->buf + r->released, upto - r->released, MADV_DONTNEED) == 0)
        r->released = upto;
}

/* Copy ``len`` bytes of ``from`` at ``in`` to ``to`` at ``out`` (in the
 * kernel where it can), and leave ``to``'s file offset after them. */
int
copy_range(int from, loff_t in, int to, loff_t out, uint64_t len)
{
    loff_t stop = in + (loff_t)len;
    while (in < stop) {
        ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(stop - in), 0);
        if (n > 0)
            continue;
        if (n == 0) {
            errno = EINVAL; /* from is shorter than it was a moment ago */
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
        while (in < stop) {
            size_t want = stop - in < IO_BYTES ? (size_t)(stop - in) : IO_BYTES;
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

/* ``job`` on each of ``n`` items at once: the first here, the others on threads
 * of their own (or here too, after it, when a thread cannot be started). */
void
run_threads(void *(*job)(void *), void *items, size_t item_size, int n)
{
    pthread_t threads[n > 1 ? n : 1];
    char *item = items;
    int started = 1;
    for (; started < n; started++)
        if (pthread_create(&threads[started], NULL, job, item + (size_t)started * item_size))
            break;
    job(item);
    for (int k = started; k < n; k++)
        job(item + (size_t)k * item_size);
    for (int k = 1; k < started; k++)
        pthread_join(threads[k], NULL);
}
