// SPDX-License-Identifier: MIT
/* fsutil.c: open_regular_at and the bounded reads on it open a regular
 * file, and refuse a FIFO, a character device, a directory or a symlink
 * without blocking and without opening it. A FIFO with no writer blocks an
 * ordinary open() for ever: each test runs under an alarm, so that the old
 * behaviour fails the test instead of hanging it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ctx {
        char dir[64];
        int dirfd;
};

static void on_alarm(int sig)
{
        static const char msg[] = "blocked on a file that is not a regular one: test failed\n";

        (void)sig;
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        _exit(1);
}

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));
        int fd;

        if (!c)
                return -1;
        strcpy(c->dir, "/tmp/ihop-test-fsutil-XXXXXX");
        if (!mkdtemp(c->dir))
                return -1;
        c->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->dirfd < 0 || mkfifoat(c->dirfd, "fifo", 0644) < 0 || mkdirat(c->dirfd, "dir", 0755) < 0 ||
            symlinkat("file", c->dirfd, "link") < 0 || symlinkat("fifo", c->dirfd, "fifo-link") < 0)
                return -1;
        fd = openat(c->dirfd, "file", O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, "hello", 5) != 5)
                return -1;
        close(fd);
        signal(SIGALRM, on_alarm);
        alarm(20);
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        alarm(0);
        close(c->dirfd);
        remove_tree(c->dir);
        free(c);
        return 0;
}

static void test_a_regular_file_opens_and_reads_blocking(void **state)
{
        struct ctx *c = *state;
        mode_t type = 0;
        char buf[8] = {};
        int fd = open_regular_at(c->dirfd, "file", O_NOFOLLOW, &type);

        assert_true(fd >= 0);
        /* O_NONBLOCK was for the open only. */
        assert_int_equal(fcntl(fd, F_GETFL) & (O_NONBLOCK | O_ACCMODE), O_RDONLY);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(read(fd, buf, sizeof(buf)), 5);
        assert_string_equal(buf, "hello");
        assert_int_equal(type, 0);
        close(fd);
        /* A symlink to it is followed unless O_NOFOLLOW. */
        fd = open_regular_at(c->dirfd, "link", 0, NULL);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(open_regular_at(c->dirfd, "link", O_NOFOLLOW, NULL), -ELOOP);
        assert_int_equal(open_regular_at(c->dirfd, "missing", O_NOFOLLOW, NULL), -ENOENT);
}

static void test_what_is_not_a_regular_file_is_refused_and_named(void **state)
{
        struct ctx *c = *state;
        mode_t type = 0;

        assert_int_equal(open_regular_at(c->dirfd, "fifo", O_NOFOLLOW, &type), -EINVAL);
        assert_int_equal(type, S_IFIFO);
        assert_string_equal(file_type_name(type), "a FIFO");
        /* Through a symlink, when symlinks are followed: what it points to counts. */
        type = 0;
        assert_int_equal(open_regular_at(c->dirfd, "fifo-link", 0, &type), -EINVAL);
        assert_int_equal(type, S_IFIFO);
        assert_int_equal(open_regular_at(c->dirfd, "dir", 0, &type), -EINVAL);
        assert_string_equal(file_type_name(type), "a directory");
        assert_int_equal(open_regular_at(AT_FDCWD, "/dev/null", 0, &type), -EINVAL);
        assert_string_equal(file_type_name(type), "a character device");
        assert_int_equal(open_regular_at(AT_FDCWD, "/dev/null", O_NOFOLLOW, NULL), -EINVAL);
        assert_string_equal(file_type_name(S_IFBLK), "a block device");
        assert_string_equal(file_type_name(S_IFSOCK), "a socket");
        assert_string_equal(file_type_name(S_IFLNK), "a symlink");
}

static void test_bounded_reads_refuse_a_fifo_and_a_device(void **state)
{
        struct ctx *c = *state;
        uint8_t *buf = NULL;
        mode_t type = 0;
        char path[128];
        size_t len;

        snprintf(path, sizeof(path), "%s/fifo", c->dir);
        assert_int_equal(read_file_bounded(path, 100, &buf, &len, &type), -EINVAL);
        assert_int_equal(type, S_IFIFO);
        assert_int_equal(read_file_bounded("/dev/null", 100, &buf, &len, &type), -EINVAL);
        assert_int_equal(type, S_IFCHR);
        assert_int_equal(read_file_bounded_at(c->dirfd, "fifo", 100, &buf, &len, &type), -EINVAL);
        assert_int_equal(type, S_IFIFO);
        assert_int_equal(read_file_bounded_at(c->dirfd, "fifo-link", 100, &buf, &len, NULL), -ELOOP);
        assert_null(buf);
        /* And still reads what is one, within its bound. */
        assert_int_equal(read_file_bounded_at(c->dirfd, "file", 4, &buf, &len, NULL), -EFBIG);
        assert_int_equal(read_file_bounded_at(c->dirfd, "file", 5, &buf, &len, NULL), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(buf, "hello", 5);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_a_regular_file_opens_and_reads_blocking, setup, teardown),
                cmocka_unit_test_setup_teardown(test_what_is_not_a_regular_file_is_refused_and_named, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_bounded_reads_refuse_a_fifo_and_a_device, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
