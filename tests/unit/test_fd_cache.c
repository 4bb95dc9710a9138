// SPDX-License-Identifier: MIT
/* fd_cache.c: a bounded set of open files read by many threads at once,
 * far more files than slots, never a file closed under its reader, never a
 * descriptor leaked, and reads that go on when the process runs out of
 * descriptors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "fd_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_FILES 600
#define FILE_SIZE 64

struct files {
        char dir[64];
        int dirfd;
        atomic_int keys[N_FILES];
        atomic_int opens; /* calls of the open function */
};

struct opener {
        struct files *f;
        int index;
};

/* File i holds FILE_SIZE bytes of (i * 7 + offset) & 0xff. */
static int open_file(void *opaque)
{
        struct opener *o = opaque;
        char name[32];
        int fd;

        atomic_fetch_add(&o->f->opens, 1);
        snprintf(name, sizeof(name), "f%d", o->index);
        fd = openat(o->f->dirfd, name, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int count_open_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static int setup(void **state)
{
        struct files *f = calloc(1, sizeof(*f));
        uint8_t data[FILE_SIZE];

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/ihop-test-fdcache-XXXXXX");
        if (!mkdtemp(f->dir) || (f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return -1;
        for (int i = 0; i < N_FILES; i++) {
                char name[32];
                snprintf(name, sizeof(name), "f%d", i);
                int fd = openat(f->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                for (int j = 0; j < FILE_SIZE; j++)
                        data[j] = (uint8_t)(i * 7 + j);
                if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
                        return -1;
                close(fd);
                atomic_init(&f->keys[i], -1);
        }
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct files *f = *state;

        close(f->dirfd);
        remove_tree(f->dir);
        free(f);
        return 0;
}

static void read_and_check(struct fd_cache *c, struct files *f, int i)
{
        struct opener o = { f, i };
        struct fd_ref ref;
        uint8_t buf[FILE_SIZE];

        assert_int_equal(fd_cache_get(c, &f->keys[i], open_file, &o, &ref), 0);
        assert_int_equal(pread(ref.fd, buf, sizeof(buf), 0), FILE_SIZE);
        for (int j = 0; j < FILE_SIZE; j++)
                if (buf[j] != (uint8_t)(i * 7 + j))
                        fail_msg("file %d read through the cache has the wrong content at %d", i, j);
        fd_cache_put(c, &ref);
}

static void test_hits_do_not_open_again(void **state)
{
        struct files *f = *state;
        struct fd_cache *c;

        assert_int_equal(fd_cache_new(8, &c), 0);
        for (int round = 0; round < 5; round++)
                for (int i = 0; i < 8; i++)
                        read_and_check(c, f, i);
        assert_int_equal(atomic_load(&f->opens), 8);
        fd_cache_free(c);
        for (int i = 0; i < 8; i++)
                assert_int_equal(atomic_load(&f->keys[i]), -1);
}

/* A file found stale is closed and opened again at its next get, but never
 * under another reader that holds it: that one's put_stale drops it. */
static void test_a_stale_file_is_dropped_once_its_last_reader_lets_go(void **state)
{
        struct files *f = *state;
        struct opener o = { f, 3 };
        struct fd_ref a, b;
        int before = count_open_fds();
        struct fd_cache *c;

        assert_int_equal(fd_cache_new(8, &c), 0);
        assert_int_equal(fd_cache_get(c, &f->keys[3], open_file, &o, &a), 0);
        assert_int_equal(fd_cache_get(c, &f->keys[3], open_file, &o, &b), 0);
        assert_int_equal(a.fd, b.fd);
        fd_cache_put_stale(c, &a);
        /* b still reads it */
        assert_int_equal(fcntl(b.fd, F_GETFD) >= 0, 1);
        assert_true(atomic_load(&f->keys[3]) >= 0);
        fd_cache_put_stale(c, &b);
        assert_int_equal(atomic_load(&f->keys[3]), -1);
        assert_int_equal(count_open_fds(), before);
        assert_int_equal(atomic_load(&f->opens), 1);
        /* opened again, into the freed slot */
        read_and_check(c, f, 3);
        assert_int_equal(atomic_load(&f->opens), 2);
        assert_int_equal(count_open_fds(), before + 1);
        fd_cache_free(c);
        assert_int_equal(count_open_fds(), before);
}

static void test_more_files_than_slots_stay_bounded(void **state)
{
        struct files *f = *state;
        int before = count_open_fds();
        struct fd_cache *c;

        assert_int_equal(fd_cache_new(16, &c), 0);
        for (int round = 0; round < 3; round++)
                for (int i = 0; i < N_FILES; i++)
                        read_and_check(c, f, i);
        /* 16 cached files, not 600 */
        assert_int_equal(count_open_fds(), before + 16);
        int cached = 0;
        for (int i = 0; i < N_FILES; i++)
                cached += atomic_load(&f->keys[i]) >= 0;
        assert_int_equal(cached, 16);
        fd_cache_forget(c, f->keys, N_FILES);
        assert_int_equal(count_open_fds(), before);
        for (int i = 0; i < N_FILES; i++)
                assert_int_equal(atomic_load(&f->keys[i]), -1);
        fd_cache_free(c);
}

/* The clock keeps a file read often while others stream past. */
static void test_recently_read_files_stay(void **state)
{
        struct files *f = *state;
        struct fd_cache *c;

        assert_int_equal(fd_cache_new(8, &c), 0);
        for (int i = 1; i < N_FILES; i++) {
                read_and_check(c, f, 0);
                read_and_check(c, f, i);
        }
        /* Once, when the cache first fills, the hand clears every slot's
         * mark in one sweep and may take file 0's; never again after (a
         * cache without recency would open it ~75 more times). */
        assert_true(atomic_load(&f->opens) <= N_FILES + 1);
        fd_cache_free(c);
}

struct reader {
        struct fd_cache *cache;
        struct files *files;
        unsigned seed;
        int errors;
};

static void *reader_thread(void *arg)
{
        struct reader *r = arg;
        uint8_t buf[FILE_SIZE];

        for (int n = 0; n < 20000; n++) {
                int i = (int)(rand_r(&r->seed) % N_FILES);
                struct opener o = { r->files, i };
                struct fd_ref ref;
                if (fd_cache_get(r->cache, &r->files->keys[i], open_file, &o, &ref) < 0) {
                        r->errors++;
                        continue;
                }
                /* Hold the file a moment, so that others want its slot. */
                if (pread(ref.fd, buf, sizeof(buf), 0) != FILE_SIZE || buf[5] != (uint8_t)(i * 7 + 5))
                        r->errors++;
                sched_yield();
                if (pread(ref.fd, buf, sizeof(buf), 0) != FILE_SIZE || buf[9] != (uint8_t)(i * 7 + 9))
                        r->errors++;
                fd_cache_put(r->cache, &ref);
        }
        return NULL;
}

/* Eight readers on four slots: every slot is often pinned, and files not
 * cached are handed out uncached; no reader ever sees another file's data,
 * and no descriptor outlives the cache. */
static void test_parallel_readers_never_see_a_recycled_descriptor(void **state)
{
        struct files *f = *state;
        int before = count_open_fds();
        struct reader r[8];
        pthread_t t[8];
        struct fd_cache *c;

        assert_int_equal(fd_cache_new(4, &c), 0);
        for (int i = 0; i < 8; i++) {
                r[i] = (struct reader){ c, f, (unsigned)i + 1, 0 };
                assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &r[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(r[i].errors, 0);
        }
        assert_true(count_open_fds() <= before + 4);
        fd_cache_free(c);
        assert_int_equal(count_open_fds(), before);
}

/* A cache sized for more descriptors than the process may open: reads go
 * on, by closing cached files, and the cache keeps fewer from then on. */
static void test_out_of_descriptors_closes_cached_files(void **state)
{
        struct files *f = *state;
        struct rlimit old, low;
        struct fd_cache *c;

        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        low = old;
        low.rlim_cur = (rlim_t)count_open_fds() + 40;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        assert_int_equal(fd_cache_new(N_FILES, &c), 0);
        for (int round = 0; round < 2; round++)
                for (int i = 0; i < N_FILES; i++)
                        read_and_check(c, f, i);
        int cached = 0;
        for (int i = 0; i < N_FILES; i++)
                cached += atomic_load(&f->keys[i]) >= 0;
        assert_true(cached > 0 && cached <= 40);
        fd_cache_free(c);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* An open that fails for good is the caller's to report; nothing is cached. */
static void test_failed_open_is_returned(void **state)
{
        struct files *f = *state;
        struct opener o = { f, 0 };
        struct fd_ref ref;
        struct fd_cache *c;

        assert_int_equal(fd_cache_new(4, &c), 0);
        assert_int_equal(unlinkat(f->dirfd, "f0", 0), 0);
        assert_int_equal(fd_cache_get(c, &f->keys[0], open_file, &o, &ref), -ENOENT);
        assert_int_equal(atomic_load(&f->keys[0]), -1);
        fd_cache_free(c);
}

/* In a child, whose limits and shared cache it changes for good: the line
 * of the first check that failed, or 0. */
#define CHECK(cond)                                                                                              \
        do {                                                                                                     \
                if (!(cond)) {                                                                                   \
                        fprintf(stderr, "child: %s failed\n", #cond);                                            \
                        return __LINE__;                                                                         \
                }                                                                                                \
        } while (0)

static void in_child(int (*fn)(struct files *), struct files *f)
{
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0)
                _exit(fn(f) ? 1 : 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static int first_read(struct fd_cache *c, struct files *f)
{
        struct opener o = { f, 0 };
        struct fd_ref ref;

        if (fd_cache_get(c, &f->keys[0], open_file, &o, &ref) < 0)
                return -1;
        fd_cache_put(c, &ref);
        return 0;
}

static int sized_for_the_files_announced(struct files *f)
{
        struct fd_cache *c = fd_cache_shared();
        struct rlimit rl = { 300, 2000 };

        CHECK(c && fd_cache_shared() == c);
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
        /* two releases, served together */
        fd_cache_expect(600);
        fd_cache_expect(400);
        CHECK(fd_cache_capacity(c) == 0); /* not before the first read */
        CHECK(first_read(c, f) == 0);
        CHECK(fd_cache_capacity(c) == 1000);
        /* the soft limit went up to the hard one, which covers them */
        CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == 2000 && rl.rlim_max == 2000);
        /* announced after the first read: too late, nothing changes */
        fd_cache_expect(5000);
        CHECK(first_read(c, f) == 0);
        CHECK(fd_cache_capacity(c) == 1000);
        return 0;
}

static void test_the_shared_cache_is_sized_at_its_first_read_for_every_release_announced(void **state)
{
        in_child(sized_for_the_files_announced, *state);
}

static int within_the_limit(struct files *f)
{
        struct fd_cache *c = fd_cache_shared();
        struct rlimit rl = { 1024, 1024 };

        /* more files than the limit covers, and no raise for a process
         * without CAP_SYS_RESOURCE (or with it: the limit is then raised,
         * and checked so) */
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
        fd_cache_expect(1500);
        CHECK(first_read(c, f) == 0);
        CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
        if (rl.rlim_max == 1024)
                CHECK(fd_cache_capacity(c) == 1024 - 256);
        else
                CHECK(rl.rlim_cur == 1500 + 256 && fd_cache_capacity(c) == 1500);
        return 0;
}

static void test_the_shared_cache_leaves_256_descriptors_to_the_rest(void **state)
{
        in_child(within_the_limit, *state);
}

/* At most one file per 128 KiB of memory, and 65536: a 256 MiB device
 * keeps 2048 open (3 to 6 MiB of kernel memory pinned), one of 8 GiB or
 * more every chunk file of a release of 4 GiB. */
static void test_the_most_files_kept_open_follow_memory(void **state)
{
        (void)state;
        assert_int_equal(fd_cache_most_open(256ull << 20), 2048);
        assert_int_equal(fd_cache_most_open(1ull << 30), 8192);
        assert_int_equal(fd_cache_most_open(8ull << 30), 65536);
        assert_int_equal(fd_cache_most_open(24ull << 30), 65536);
        assert_int_equal(fd_cache_most_open(0), 16);
        /* a release above that gets no more, whatever the limit */
        assert_int_equal(fd_cache_capacity_for(100000, RLIM_INFINITY, 24ull << 30), 65536);
        assert_int_equal(fd_cache_capacity_for(100000, 70000, 24ull << 30), 65536);
        assert_int_equal(fd_cache_capacity_for(32768, 40000, 512ull << 20), 4096);
        /* no more slots than files, no fewer than 16 */
        assert_int_equal(fd_cache_capacity_for(6144, 6400, 24ull << 30), 6144);
        assert_int_equal(fd_cache_capacity_for(6144, 20000, 24ull << 30), 6144);
        assert_int_equal(fd_cache_capacity_for(10, RLIM_INFINITY, 24ull << 30), 16);
        /* the limit less 256; unknown file count: what the limit leaves */
        assert_int_equal(fd_cache_capacity_for(6144, 1024, 24ull << 30), 768);
        assert_int_equal(fd_cache_capacity_for(0, 20000, 24ull << 30), 19744);
        assert_int_equal(fd_cache_capacity_for(0, 100, 24ull << 30), 16);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_hits_do_not_open_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_stale_file_is_dropped_once_its_last_reader_lets_go, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_more_files_than_slots_stay_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_recently_read_files_stay, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_readers_never_see_a_recycled_descriptor, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_out_of_descriptors_closes_cached_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_open_is_returned, setup, teardown),
                cmocka_unit_test_setup_teardown(
                        test_the_shared_cache_is_sized_at_its_first_read_for_every_release_announced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_shared_cache_leaves_256_descriptors_to_the_rest, setup,
                                                teardown),
                cmocka_unit_test(test_the_most_files_kept_open_follow_memory),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
