// SPDX-License-Identifier: MIT
#define FUSE_USE_VERSION 35

#include "fuse_file.h"

#include "cleanup.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct image_map *map_of(void)
{
        return fuse_get_context()->private_data;
}

static int file_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
        (void)fi;
        if (strcmp(path, "/") != 0)
                return -ENOENT;
        memset(st, 0, sizeof(*st));
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_uid = getuid();
        st->st_gid = getgid();
        st->st_size = (off_t)map_of()->size;
        st->st_blocks = (blkcnt_t)((map_of()->size + 511) / 512);
        st->st_blksize = 4096;
        return 0;
}

static int file_open(const char *path, struct fuse_file_info *fi)
{
        if (strcmp(path, "/") != 0)
                return -ENOENT;
        if ((fi->flags & O_ACCMODE) != O_RDONLY)
                return -EROFS;
        /* The content never changes while mounted: let the page cache keep it. */
        fi->keep_cache = 1;
        return 0;
}

static int file_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
        struct image_map *m = map_of();
        (void)path;
        (void)fi;

        if (off < 0)
                return -EINVAL;
        if ((uint64_t)off >= m->size)
                return 0;
        if (size > m->size - (uint64_t)off)
                size = (size_t)(m->size - (uint64_t)off);
        int err = image_map_read(m, buf, size, (uint64_t)off);
        return err < 0 ? -EIO : (int)size;
}

static void *file_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
        (void)conn;
        cfg->kernel_cache = 1;
        cfg->attr_timeout = 3600;
        cfg->entry_timeout = 3600;
        return fuse_get_context()->private_data;
}

/* The stop signals (SIGINT, SIGTERM, SIGHUP, as libfuse's own handlers
 * take them) end the loop as libfuse's do, and first have a thread of ours
 * cancel the map: the loop then joins its workers, and one waiting for a
 * chunk on its way (--source) would hold the stop for as long as the fetch
 * takes. The cancel takes a lock, which a handler may not: the handler
 * writes a byte to a pipe, and the thread does it. One mount per process. */
static struct fuse_session *stop_session;
static int stop_pipe[2] = { -1, -1 };

static void on_stop_signal(int sig)
{
        int saved = errno;
        (void)sig;

        fuse_session_exit(stop_session); /* what libfuse's handler does */
        if (write(stop_pipe[1], "s", 1) < 0) {
                /* the pipe is full: a stop is on its way already */
        }
        errno = saved;
}

/* Until the byte of a stop ('s') or of the loop's end ('e'). */
static void *canceller(void *arg)
{
        char c = 0;

        while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR)
                ;
        if (c == 's')
                image_map_cancel(arg);
        return NULL;
}

struct stop_handling {
        struct sigaction old[3];
        pthread_t thread;
};

static const int stop_signals[3] = { SIGINT, SIGTERM, SIGHUP };

/* The canceller runs with every signal blocked; the handlers are set for
 * the main thread, the only one that takes them (libfuse's workers and the
 * fetching threads block them): they interrupt its wait for the loop's
 * end, as libfuse's handlers do. */
static int stop_handling_begin(struct stop_handling *h, struct fuse_session *se, struct image_map *map)
{
        struct sigaction sa = { .sa_handler = on_stop_signal };
        sigset_t all, old;
        int err;

        if (pipe2(stop_pipe, O_CLOEXEC) < 0)
                return log_errno(-errno, "cannot set up the stop signals");
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        err = pthread_create(&h->thread, NULL, canceller, map);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err) {
                close(stop_pipe[0]);
                close(stop_pipe[1]);
                return log_errno(-err, "cannot set up the stop signals");
        }
        stop_session = se;
        sigemptyset(&sa.sa_mask);
        for (unsigned i = 0; i < 3; i++)
                sigaction(stop_signals[i], &sa, &h->old[i]);
        signal(SIGPIPE, SIG_IGN); /* a reply to a reader gone is no reason to die */
        return 0;
}

static void stop_handling_end(struct stop_handling *h)
{
        for (unsigned i = 0; i < 3; i++)
                sigaction(stop_signals[i], &h->old[i], NULL);
        if (write(stop_pipe[1], "e", 1) < 0) {
                /* full: it holds an 's', which ends the thread as well */
        }
        pthread_join(h->thread, NULL);
        close(stop_pipe[0]);
        close(stop_pipe[1]);
        stop_pipe[0] = stop_pipe[1] = -1;
        stop_session = NULL;
}

static const struct fuse_operations file_ops = {
        .init = file_init,
        .getattr = file_getattr,
        .open = file_open,
        .read = file_read,
};

int fuse_file_serve(struct image_map *map, const char *release_name, const char *target, bool allow_other)
{
        _cleanup_free_ char *opts = NULL, *fsname = NULL;
        struct stat st;
        int err;

        if (stat(target, &st) < 0)
                return log_errno(-errno, "cannot mount on %s", target);
        if (!S_ISREG(st.st_mode)) {
                log_error("%s is not a regular file", target);
                return -EINVAL;
        }
        /* The release name may hold commas and backslashes: escaped, it stays one option. */
        if (asprintf(&fsname, "fsname=ihop:%s", release_name) < 0)
                return -ENOMEM;
        /* Other users see the image only when asked: it may hold what they must not read. */
        if (fuse_opt_add_opt(&opts, "ro,default_permissions,subtype=ihop") != 0 ||
            fuse_opt_add_opt_escaped(&opts, fsname) != 0 || (allow_other && fuse_opt_add_opt(&opts, "allow_other") != 0))
                return -ENOMEM;
        char *argv[] = { (char *)"ihop", (char *)"-o", opts, NULL };
        struct fuse_args args = FUSE_ARGS_INIT(3, argv);
        struct fuse *f = fuse_new(&args, &file_ops, sizeof(file_ops), map);
        fuse_opt_free_args(&args);
        if (!f) {
                log_error("cannot set up FUSE for %s", target);
                return -EIO;
        }
        if (fuse_mount(f, target) != 0) {
                log_error("cannot mount %s with FUSE (is /dev/fuse there, and fusermount3?)", target);
                fuse_destroy(f);
                return -EIO;
        }
        struct stop_handling stop;
        err = stop_handling_begin(&stop, fuse_get_session(f), map);
        if (err < 0) {
                fuse_unmount(f);
                fuse_destroy(f);
                return err;
        }
        log_info("release %s mounted on %s (%llu bytes); unmount with: umount %s", release_name, target,
                 (unsigned long long)map->size, target);
        daemon_ready();
        struct fuse_loop_config cfg = { .clone_fd = 0, .max_idle_threads = 16 };
        err = fuse_loop_mt(f, &cfg);
        stop_handling_end(&stop);
        fuse_unmount(f);
        fuse_destroy(f);
        return err < 0 ? -EIO : 0;
}
