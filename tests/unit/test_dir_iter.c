// SPDX-License-Identifier: MIT
/* dir_iter.c: every entry once, "." and ".." never, and a readdir() that
 * fails is an error, never the end of the listing. The failures are real:
 * the DIR's descriptor is swapped for a regular file's (dup2), on which the
 * kernel's getdents64 fails with ENOTDIR, at the start or part way through. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "dir_iter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANY 3000 /* entries: far more than one getdents64 buffer of glibc's holds */

struct ctx {
        char dir[64];
        int dirfd;
};

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));
        char name[64];

        if (!c)
                return -1;
        strcpy(c->dir, "/tmp/ihop-test-dir-iter-XXXXXX");
        if (!mkdtemp(c->dir))
                return -1;
        c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->dirfd < 0 || mkdirat(c->dirfd, "many", 0755) < 0)
                return -1;
        for (int i = 0; i < MANY; i++) {
                snprintf(name, sizeof(name), "many/entry-with-a-longish-name-%05d", i);
                int fd = openat(c->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (fd < 0)
                        return -1;
                close(fd);
        }
        if (mkdirat(c->dirfd, "empty", 0755) < 0 || symlinkat("many", c->dirfd, "link") < 0)
                return -1;
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        close(c->dirfd);
        remove_tree(c->dir);
        free(c);
        return 0;
}

static void test_lists_every_entry_once(void **state)
{
        struct ctx *c = *state;
        struct dir_iter it;
        const struct dirent *e;
        unsigned char *seen = calloc(MANY, 1);
        int r, n = 0, i;

        assert_non_null(seen);
        assert_int_equal(dir_iter_open(&it, c->dirfd, "many"), 0);
        while ((r = dir_iter_next(&it, &e)) > 0) {
                assert_int_equal(sscanf(e->d_name, "entry-with-a-longish-name-%05d", &i), 1);
                assert_true(i >= 0 && i < MANY);
                assert_int_equal(seen[i], 0);
                seen[i] = 1;
                n++;
        }
        assert_int_equal(r, 0);
        assert_int_equal(n, MANY);
        /* The end stays the end. */
        assert_int_equal(dir_iter_next(&it, &e), 0);
        dir_iter_close(&it);
        free(seen);

        /* An empty directory: no ".", no "..". */
        assert_int_equal(dir_iter_open(&it, c->dirfd, "empty"), 0);
        assert_int_equal(dir_iter_next(&it, &e), 0);
        dir_iter_close(&it);

        /* "." lists dirfd itself; its entries are reachable through dir_iter_fd. */
        assert_int_equal(dir_iter_open(&it, c->dirfd, "."), 0);
        n = 0;
        while ((r = dir_iter_next(&it, &e)) > 0) {
                struct stat st;
                assert_int_equal(fstatat(dir_iter_fd(&it), e->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
                n++;
        }
        assert_int_equal(r, 0);
        assert_int_equal(n, 3); /* many, empty, link */
        dir_iter_close(&it);
        dir_iter_close(&it); /* twice is harmless */
}

static void test_open_refuses_symlinks_and_non_directories(void **state)
{
        struct ctx *c = *state;
        struct dir_iter it;

        assert_int_equal(dir_iter_open(&it, c->dirfd, "link"), -ENOTDIR);
        assert_null(it.dir);
        assert_int_equal(dir_iter_open(&it, c->dirfd, "many/entry-with-a-longish-name-00001"), -ENOTDIR);
        assert_int_equal(dir_iter_open(&it, c->dirfd, "nothing"), -ENOENT);
        dir_iter_close(&it);
}

/* Makes every further getdents64 on the DIR fail: its descriptor becomes a regular file's. */
static void break_dir(struct ctx *c, struct dir_iter *it)
{
        int file = openat(c->dirfd, "many/entry-with-a-longish-name-00000", O_RDONLY | O_CLOEXEC);

        assert_true(file >= 0);
        assert_int_equal(dup2(file, dir_iter_fd(it)), dir_iter_fd(it));
        close(file);
}

static void test_a_failed_readdir_is_an_error_at_the_start(void **state)
{
        struct ctx *c = *state;
        struct dir_iter it;
        const struct dirent *e;

        assert_int_equal(dir_iter_open(&it, c->dirfd, "many"), 0);
        break_dir(c, &it);
        assert_int_equal(dir_iter_next(&it, &e), -ENOTDIR);
        dir_iter_close(&it);
}

static void test_a_failed_readdir_is_an_error_part_way(void **state)
{
        struct ctx *c = *state;
        struct dir_iter it;
        const struct dirent *e;
        int r, n = 0;

        assert_int_equal(dir_iter_open(&it, c->dirfd, "many"), 0);
        for (; n < 10; n++)
                assert_int_equal(dir_iter_next(&it, &e), 1);
        break_dir(c, &it);
        /* What glibc had buffered still comes, then the error: never a short, "complete" listing. */
        while ((r = dir_iter_next(&it, &e)) > 0)
                n++;
        assert_int_equal(r, -ENOTDIR);
        assert_true(n < MANY);
        dir_iter_close(&it);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lists_every_entry_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_refuses_symlinks_and_non_directories, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_failed_readdir_is_an_error_at_the_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_failed_readdir_is_an_error_part_way, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
