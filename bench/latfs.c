/* Vendored from the project's shared design folder (shared/bench/latfs.c); that file
 * carries no licence header. One change here: -o counts=FILE writes, at unmount, how
 * many requests of each kind were served and the most served at once (so that tools
 * can be compared request for request, and overlap seen). Used by bench/scan_vs_find.py
 * --latfs and bench/mpi_scaling.py (needs gcc, libfuse3-dev, fusermount3). */
/* latfs: read-only FUSE passthrough that adds a fixed latency to every metadata
 * request (getattr/lookup, opendir, readdir) -- a cheap stand-in for a
 * network filesystem (NFS/Lustre) where each stat costs one round trip.
 *
 *   gcc -O2 -Wall latfs.c $(pkg-config fuse3 --cflags --libs) -o latfs
 *   ./latfs SRC MNT -o ro,max_threads=64 [-o lat_us=500]
 *   fusermount3 -u MNT
 *
 * Kernel caching: entry/attr timeout 3600 s, so during one walk every file costs
 * one LOOKUP (+ attrs); remount to start cold again. Multi-threaded (libfuse's
 * default loop, up to max_threads): concurrent requests sleep concurrently.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct { char *src; int lat_us; char *counts; } opt = { NULL, 500, NULL };
static const struct fuse_opt opts[] = {
    { "lat_us=%d", offsetof(typeof(opt), lat_us), 0 },
    { "counts=%s", offsetof(typeof(opt), counts), 0 },
    FUSE_OPT_END
};
/* requests served, per kind, and the most served at once (-o counts=FILE writes them
 * at unmount): how many round trips each tool makes, and whether they overlap */
enum { C_GETATTR, C_OPENDIR, C_READDIR, C_N };
static unsigned long counts[C_N], in_flight, most_in_flight;

static void lat_counted(int kind) {
    __atomic_add_fetch(&counts[kind], 1, __ATOMIC_RELAXED);
    unsigned long now = __atomic_add_fetch(&in_flight, 1, __ATOMIC_RELAXED);
    unsigned long most = __atomic_load_n(&most_in_flight, __ATOMIC_RELAXED);
    while (now > most && !__atomic_compare_exchange_n(&most_in_flight, &most, now, 0,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    struct timespec ts = { opt.lat_us / 1000000, (opt.lat_us % 1000000) * 1000L };
    nanosleep(&ts, NULL);
    __atomic_sub_fetch(&in_flight, 1, __ATOMIC_RELAXED);
}
static void l_destroy(void *data) {
    (void)data;
    if (!opt.counts) return;
    FILE *f = fopen(opt.counts, "w");
    if (!f) return;
    fprintf(f, "getattr %lu\nopendir %lu\nreaddir %lu\nmost_in_flight %lu\n",
            counts[C_GETATTR], counts[C_OPENDIR], counts[C_READDIR], most_in_flight);
    fclose(f);
}

static void full(char *out, const char *path) { snprintf(out, PATH_MAX, "%s%s", opt.src, path); }

static void *l_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->entry_timeout = 3600; cfg->attr_timeout = 3600; cfg->negative_timeout = 0;
    cfg->use_ino = 1;
    return NULL;
}
static int l_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi; char p[PATH_MAX]; full(p, path);
    lat_counted(C_GETATTR);
    return lstat(p, st) == -1 ? -errno : 0;
}
static int l_opendir(const char *path, struct fuse_file_info *fi) {
    char p[PATH_MAX]; full(p, path);
    lat_counted(C_OPENDIR);
    DIR *d = opendir(p);
    if (!d) return -errno;
    fi->fh = (uintptr_t)d;
    return 0;
}
static int l_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                     struct fuse_file_info *fi, enum fuse_readdir_flags fl) {
    (void)path; (void)off; (void)fl;
    DIR *d = (DIR *)(uintptr_t)fi->fh;
    lat_counted(C_READDIR);
    rewinddir(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st; memset(&st, 0, sizeof st);
        st.st_ino = e->d_ino; st.st_mode = e->d_type << 12;
        if (filler(buf, e->d_name, &st, 0, 0)) break;
    }
    return 0;
}
static int l_releasedir(const char *path, struct fuse_file_info *fi) {
    (void)path; closedir((DIR *)(uintptr_t)fi->fh); return 0;
}
static int l_open(const char *path, struct fuse_file_info *fi) {
    char p[PATH_MAX]; full(p, path);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
    int fd = open(p, fi->flags);
    if (fd < 0) return -errno;
    fi->fh = fd; return 0;
}
static int l_release(const char *path, struct fuse_file_info *fi) { (void)path; close(fi->fh); return 0; }
static int l_read(const char *path, char *b, size_t n, off_t o, struct fuse_file_info *fi) {
    (void)path; ssize_t r = pread(fi->fh, b, n, o); return r < 0 ? -errno : (int)r;
}
static const struct fuse_operations ops = {
    .init = l_init, .destroy = l_destroy, .getattr = l_getattr, .opendir = l_opendir, .readdir = l_readdir,
    .releasedir = l_releasedir, .open = l_open, .release = l_release, .read = l_read,
};

int main(int argc, char *argv[]) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    if (fuse_opt_parse(&args, &opt, opts, NULL) == -1) return 1;
    /* first non-option argument = SRC; remove it from args */
    for (int i = 1; i < args.argc; i++) {
        if (args.argv[i][0] != '-' && (i == 1 || strcmp(args.argv[i - 1], "-o"))) {
            opt.src = realpath(args.argv[i], NULL);
            for (int j = i; j < args.argc - 1; j++) args.argv[j] = args.argv[j + 1];
            args.argc--;
            break;
        }
    }
    if (!opt.src) { fprintf(stderr, "usage: latfs SRC MNT [-o lat_us=N]\n"); return 1; }
    return fuse_main(args.argc, args.argv, &ops, NULL);
}
