// SPDX-License-Identifier: MIT
/* gc.c and the store's other listings fail closed: a readdir() that fails,
 * at the start of a listing or part way, stops gc before it removes what a
 * complete listing would have kept, and is an error for `ls` and for chunk
 * recovery. The failures come from readdir itself: this test is linked with
 * -Wl,--wrap=readdir64, so every readdir of the code under test goes
 * through __wrap_readdir64 below, which fails it for one chosen directory.
 *
 * And gc running beside an on-demand writer, which holds no store lock:
 * linked with -Wl,--wrap=mkdirat too, the test runs a whole gc right after
 * the writer has made sure of its fan-out directory (__wrap_mkdirat), the
 * moment that gc removes the directory, empty, under it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "gc.h"
#include "hash.h"
#include "release.h"
#include "release_file.h"
#include "store.h"
#include "store_use.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* ---- the failing readdir ---------------------------------------------- */

struct dirent64 *__real_readdir64(DIR *d);
struct dirent64 *__wrap_readdir64(DIR *d);

static struct {
        bool armed;
        dev_t dev;
        ino_t ino;
        int ends_before;  /* complete listings of the directory let through first */
        int entries_ok;   /* entries each failing listing gives before it fails */
        int ends_seen, entries_seen, failures;
} fault;

struct dirent64 *__wrap_readdir64(DIR *d)
{
        struct stat st;

        if (fault.armed && fstat(dirfd(d), &st) == 0 && st.st_dev == fault.dev && st.st_ino == fault.ino &&
            fault.ends_seen >= fault.ends_before) {
                if (fault.entries_seen < fault.entries_ok) {
                        struct dirent64 *e = __real_readdir64(d);
                        if (e)
                                fault.entries_seen++;
                        return e;
                }
                fault.failures++;
                fault.entries_seen = 0; /* the next listing starts again */
                errno = EIO;
                return NULL;
        }
        struct dirent64 *e = __real_readdir64(d);
        if (!e && fault.armed && fstat(dirfd(d), &st) == 0 && st.st_dev == fault.dev && st.st_ino == fault.ino)
                fault.ends_seen++;
        return e;
}

static void arm(const char *path, int ends_before, int entries_ok)
{
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        memset(&fault, 0, sizeof(fault));
        fault.dev = st.st_dev;
        fault.ino = st.st_ino;
        fault.ends_before = ends_before;
        fault.entries_ok = entries_ok;
        fault.armed = true;
}

static void disarm(void)
{
        fault.armed = false;
}

/* ---- gc run between the writer's mkdir and its create ------------------ */

int __real_mkdirat(int dirfd, const char *path, mode_t mode);
int __wrap_mkdirat(int dirfd, const char *path, mode_t mode);

static struct {
        struct store *store;
        int gc_left;         /* gc runs still to make, one per mkdirat */
        int gc_runs, removed; /* made, and how many removed the directory just made */
        bool in_gc;
} racer;

int __wrap_mkdirat(int dirfd, const char *path, mode_t mode)
{
        int r = __real_mkdirat(dirfd, path, mode);
        int saved = errno;
        struct gc_result res;
        struct stat st;

        if (racer.store && racer.gc_left > 0 && !racer.in_gc) {
                racer.in_gc = true;
                racer.gc_left--;
                racer.gc_runs++;
                assert_int_equal(store_gc(racer.store, false, &res), 0);
                if (fstatat(dirfd, path, &st, 0) < 0 && errno == ENOENT)
                        racer.removed++;
                racer.in_gc = false;
        }
        errno = saved;
        return r;
}

/* ---- a store: release "keep" (two chunks), one garbage chunk, temp files */

struct ctx {
        char dir[64];
        char store_path[128];
        struct store *store;
        struct chunk kept[2], garbage;
        char kept_path[2][512], garbage_path[512], temp_path[512], garbage_dir[512], chunks_dir[512];
};

static void make_chunk(struct chunk *c, const uint8_t *data, uint32_t size)
{
        uint8_t digest[HASH_MAX_LEN];

        memset(c, 0, sizeof(*c));
        hash_buffer(data, size, digest);
        memcpy(c->hash, digest, HASH_MAX_LEN);
        c->source_size = size;
}

static void store_chunk(struct ctx *c, struct chunk *ch, unsigned seed, char *path)
{
        uint8_t data[4096];
        char rel[STORE_CHUNK_PATH_MAX];
        struct chunk_writer w;
        struct store_batch b;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 5));
        make_chunk(ch, data, sizeof(data));
        store_batch_init(&b, c->store);
        assert_int_equal(chunk_writer_begin(&w, c->store, ch, HASH_MAX_LEN), 0);
        assert_int_equal(chunk_writer_write(&w, data, sizeof(data)), 0);
        assert_int_equal(chunk_writer_finish(&w), 0);
        assert_int_equal(store_batch_add(&b, &w), 0);
        assert_int_equal(store_batch_commit(&b), 0);
        store_batch_free(&b);
        store_chunk_relpath(ch->hash, HASH_MAX_LEN, rel);
        snprintf(path, 512, "%s/chunks/%s", c->store_path, rel);
}

/* A release of n (at most 2) of the 4096-byte chunks, in that order. */
static int write_release(struct ctx *c, const char *name, struct chunk *chunks, size_t n)
{
        struct release r = {};
        uint32_t order[2] = { 0, 1 };

        r.app_version = (char *)"test";
        r.hash_len = HASH_MAX_LEN;
        r.chunker.algorithm = CHUNKING_FIXED_SIZE;
        r.chunker.max_chunk_size = 4096;
        r.chunker.hash_length = HASH_MAX_LEN;
        r.source_checksum_len = HASH_MAX_LEN;
        r.chunks = chunks;
        r.n_chunks = n;
        r.order = order;
        r.n_order = n;
        r.source_total_size = 4096 * n;
        return release_file_write(c->store, name, &r);
}

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));

        if (!c || hash_init_library() != 0)
                return -1;
        strcpy(c->dir, "/tmp/ihop-test-gc-XXXXXX");
        if (!mkdtemp(c->dir))
                return -1;
        snprintf(c->store_path, sizeof(c->store_path), "%s/store", c->dir);
        if (store_open(c->store_path, true, &c->store) < 0)
                return -1;
        store_chunk(c, &c->kept[0], 1, c->kept_path[0]);
        store_chunk(c, &c->kept[1], 2, c->kept_path[1]);
        store_chunk(c, &c->garbage, 3, c->garbage_path);
        /* Three different fan-out directories (else the test would not say what it claims). */
        assert_memory_not_equal(c->kept[0].hash, c->garbage.hash, 2);
        assert_memory_not_equal(c->kept[1].hash, c->garbage.hash, 2);
        snprintf(c->garbage_dir, sizeof(c->garbage_dir), "%.*s", (int)(strrchr(c->garbage_path, '/') - c->garbage_path),
                 c->garbage_path);
        snprintf(c->chunks_dir, sizeof(c->chunks_dir), "%s/chunks", c->store_path);

        if (write_release(c, "keep", c->kept, 2) < 0)
                return -1;
        /* What a killed clone leaves at the top. */
        snprintf(c->temp_path, sizeof(c->temp_path), "%s/.other.tmp-Ab12Cd", c->store_path);
        int fd = open(c->temp_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
                return -1;
        close(fd);
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        disarm();
        racer.store = NULL; /* a test that failed part way left it armed */
        alarm(0);
        store_close(c->store);
        remove_tree(c->dir);
        free(c);
        return 0;
}

static bool exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

static void assert_untouched(struct ctx *c)
{
        assert_true(exists(c->kept_path[0]));
        assert_true(exists(c->kept_path[1]));
        assert_true(exists(c->garbage_path));
        assert_true(exists(c->temp_path));
}

static int run_gc(struct ctx *c, bool dry_run)
{
        struct gc_result res;
        int r = store_gc(c->store, dry_run, &res);

        disarm();
        return r;
}

/* ---- the tests --------------------------------------------------------- */

static void test_gc_without_faults_removes_the_garbage(void **state)
{
        struct ctx *c = *state;
        struct gc_result res;

        /* The baseline the faults are measured against. */
        assert_int_equal(store_gc(c->store, false, &res), 0);
        assert_int_equal(res.chunks_removed, 1);
        assert_int_equal(res.tmp_removed, 1);
        assert_int_equal(res.chunks_kept, 2);
        assert_false(exists(c->garbage_path));
        assert_false(exists(c->temp_path));
        assert_true(exists(c->kept_path[0]) && exists(c->kept_path[1]));
}

static void test_gc_refuses_when_the_store_cannot_be_listed(void **state)
{
        struct ctx *c = *state;

        /* Every listing of the top fails, at once or after one entry: had a
         * failed readdir been taken for the end, no release would be known
         * and every chunk would go. */
        for (int entries_ok = 0; entries_ok <= 1; entries_ok++) {
                for (int dry = 0; dry <= 1; dry++) {
                        arm(c->store_path, 0, entries_ok);
                        assert_true(run_gc(c, dry) < 0);
                        assert_untouched(c);
                }
        }
        /* Only its second listing (temp files, unreadable releases) fails. */
        arm(c->store_path, 1, 0);
        assert_true(run_gc(c, false) < 0);
        assert_untouched(c);
}

static void test_gc_refuses_when_chunks_cannot_be_listed(void **state)
{
        struct ctx *c = *state;

        arm(c->chunks_dir, 0, 0);
        assert_true(run_gc(c, false) < 0);
        assert_true(fault.failures > 0);
        assert_untouched(c);
        arm(c->chunks_dir, 0, 1);
        assert_true(run_gc(c, false) < 0);
        assert_untouched(c);
}

static void test_gc_stops_when_a_fan_out_directory_cannot_be_listed(void **state)
{
        struct ctx *c = *state;

        arm(c->garbage_dir, 0, 0);
        assert_true(run_gc(c, false) < 0);
        assert_true(fault.failures > 0);
        assert_true(exists(c->garbage_path));
        assert_true(exists(c->kept_path[0]) && exists(c->kept_path[1]));
}

static void test_release_listing_fails_closed(void **state)
{
        struct ctx *c = *state;
        char **names = NULL;
        size_t n = 0;

        assert_int_equal(store_list_releases(c->store, &names, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(names[0], "keep");
        store_free_names(names);
        names = NULL;

        arm(c->store_path, 0, 0);
        assert_int_equal(store_list_releases(c->store, &names, &n), -EIO);
        disarm();
        assert_null(names);
        arm(c->store_path, 0, 1);
        assert_int_equal(store_list_releases(c->store, &names, &n), -EIO);
        disarm();
        assert_null(names);
}

static void test_chunk_recovery_fails_closed(void **state)
{
        struct ctx *c = *state;
        bool recovered = true;
        char tmp[600];

        /* The garbage chunk, "lost", with a killed clone's complete temp file of it. */
        snprintf(tmp, sizeof(tmp), "%s.tmp-999999999.1", c->garbage_path);
        assert_int_equal(rename(c->garbage_path, tmp), 0);
        arm(c->garbage_dir, 0, 0);
        assert_int_equal(store_chunk_recover(c->store, &c->garbage, HASH_MAX_LEN, &recovered), -EIO);
        disarm();
        assert_false(recovered);
        assert_true(exists(tmp));
        /* Without the fault, it is found and taken over. */
        assert_int_equal(store_chunk_recover(c->store, &c->garbage, HASH_MAX_LEN, &recovered), 0);
        assert_true(recovered);
        assert_true(exists(c->garbage_path));
        assert_false(exists(tmp));
}

/* 4096 bytes of data whose chunk has a fan-out directory no other chunk of
 * the store has: empty until the writer's temp file is in it. */
static void lonely_chunk(struct ctx *c, uint8_t *data, struct chunk *ch)
{
        for (unsigned seed = 4;; seed++) {
                for (size_t i = 0; i < 4096; i++)
                        data[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 5));
                make_chunk(ch, data, 4096);
                if (memcmp(ch->hash, c->kept[0].hash, 2) != 0 && memcmp(ch->hash, c->kept[1].hash, 2) != 0 &&
                    memcmp(ch->hash, c->garbage.hash, 2) != 0)
                        return;
        }
}

/* gc removes the fan-out directory, empty, between the writer's mkdir and
 * its create, three times over: the writer makes it again each time and
 * its chunk gets into the store (it failed with ENOENT, and the on-demand
 * read that waited for the chunk with EIO). */
static void test_a_writer_whose_fan_out_directory_gc_removes_makes_it_again(void **state)
{
        struct ctx *c = *state;
        uint8_t data[4096];
        char rel[STORE_CHUNK_PATH_MAX], path[600];
        struct chunk_writer w = { .fd = -1 };
        struct store_batch b;
        struct chunk ch;

        lonely_chunk(c, data, &ch);
        racer = (__typeof__(racer)){ .store = c->store, .gc_left = 3 };
        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, HASH_MAX_LEN), 0);
        racer.store = NULL;
        assert_int_equal(racer.gc_runs, 3);
        assert_int_equal(racer.removed, 3);
        assert_true(w.fd >= 0);
        store_batch_init(&b, c->store);
        assert_int_equal(chunk_writer_write(&w, data, sizeof(data)), 0);
        assert_int_equal(chunk_writer_finish(&w), 0);
        assert_int_equal(store_batch_add(&b, &w), 0);
        assert_int_equal(store_batch_commit(&b), 0);
        store_batch_free(&b);
        store_chunk_relpath(ch.hash, HASH_MAX_LEN, rel);
        snprintf(path, sizeof(path), "%s/chunks/%s", c->store_path, rel);
        assert_true(exists(path));
        assert_true(exists(c->kept_path[0]) && exists(c->kept_path[1]));
}

/* A directory removed again and again: the writer gives up, bounded, with
 * the error, and leaves no temp file. */
static void test_a_writer_gives_up_after_a_bounded_number_of_removals(void **state)
{
        struct ctx *c = *state;
        uint8_t data[4096];
        struct chunk_writer w = { .fd = -1 };
        struct chunk ch;
        char dir[600];

        lonely_chunk(c, data, &ch);
        racer = (__typeof__(racer)){ .store = c->store, .gc_left = 1000 };
        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, HASH_MAX_LEN), -ENOENT);
        racer.store = NULL;
        assert_true(racer.gc_runs > 1 && racer.gc_runs < 100);
        assert_int_equal(racer.removed, racer.gc_runs);
        assert_int_equal(w.fd, -1);
        chunk_writer_abort(&w);
        char hex[2 * HASH_MAX_LEN + 1];
        hash_to_hex(ch.hash, 2, hex);
        snprintf(dir, sizeof(dir), "%s/chunks/%s", c->store_path, hex);
        assert_false(exists(dir));
}

/* A FIFO (nobody writing) and a character device under release names at
 * the top of the store: gc neither blocks on them nor takes them for
 * releases; it collects as it would without them and leaves them be. */
static void test_gc_passes_a_fifo_and_a_device_where_releases_are(void **state)
{
        struct ctx *c = *state;
        struct gc_result res;
        char fifo[600], dev[600];
        struct stat st;

        snprintf(fifo, sizeof(fifo), "%s/fifo", c->store_path);
        assert_int_equal(mkfifo(fifo, 0644), 0);
        snprintf(dev, sizeof(dev), "%s/dev", c->store_path);
        /* mknod needs CAP_MKNOD: without it, the FIFO alone. */
        bool have_dev = mknod(dev, S_IFCHR | 0644, makedev(1, 3)) == 0;
        alarm(60);
        for (int dry = 1; dry >= 0; dry--)
                assert_int_equal(store_gc(c->store, dry, &res), 0);
        alarm(0);
        assert_int_equal(res.chunks_removed, 1);
        assert_int_equal(res.chunks_kept, 2);
        assert_false(exists(c->garbage_path));
        assert_true(exists(c->kept_path[0]) && exists(c->kept_path[1]));
        assert_true(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
        assert_true(!have_dev || (lstat(dev, &st) == 0 && S_ISCHR(st.st_mode)));
}

/* A release in use and removed: only its registration names the garbage
 * chunk. A listing of STORE/.in-use that fails (at once or part way) stops
 * gc: taken for complete, it would lose the chunk of a release in use. */
static void test_gc_refuses_when_the_releases_in_use_cannot_be_listed(void **state)
{
        struct ctx *c = *state;
        struct release *back = NULL;
        struct store *s = NULL;
        struct store_use *use = NULL;
        struct gc_result res;
        char arg[600], in_use[600];

        assert_int_equal(write_release(c, "used", &c->garbage, 1), 0);
        snprintf(arg, sizeof(arg), "%s/used", c->store_path);
        assert_int_equal(release_file_open_in_use(arg, &s, NULL, &back, &use), 0);
        assert_non_null(use);
        assert_int_equal(store_release_remove(c->store, "used"), 0);

        snprintf(in_use, sizeof(in_use), "%s/%s", c->store_path, STORE_IN_USE_DIR);
        for (int entries_ok = 0; entries_ok <= 1; entries_ok++) {
                arm(in_use, 0, entries_ok);
                assert_int_equal(run_gc(c, false), -EIO);
                assert_untouched(c);
        }
        /* Listed whole: kept for the release in use, the rest goes. */
        assert_int_equal(store_gc(c->store, false, &res), 0);
        assert_int_equal(res.chunks_kept_in_use, 1);
        assert_int_equal(res.chunks_removed, 0);
        assert_true(exists(c->garbage_path));
        /* No longer in use: it goes. */
        store_use_end(use);
        assert_int_equal(store_gc(c->store, false, &res), 0);
        assert_int_equal(res.chunks_removed, 1);
        assert_int_equal(res.chunks_kept_in_use, 0);
        assert_false(exists(c->garbage_path));
        release_free(back);
        store_close(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_gc_without_faults_removes_the_garbage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_refuses_when_the_store_cannot_be_listed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_refuses_when_chunks_cannot_be_listed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_stops_when_a_fan_out_directory_cannot_be_listed, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_release_listing_fails_closed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chunk_recovery_fails_closed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc_refuses_when_the_releases_in_use_cannot_be_listed, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_writer_whose_fan_out_directory_gc_removes_makes_it_again,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_writer_gives_up_after_a_bounded_number_of_removals, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_gc_passes_a_fifo_and_a_device_where_releases_are, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
