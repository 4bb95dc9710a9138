// SPDX-License-Identifier: MIT
/* fd_limit.c: the open-file limit raised towards what is wanted, the soft
 * limit up to the hard one always, the hard one only with
 * CAP_SYS_RESOURCE and never past fs.nr_open; a refusal changes nothing.
 * Each case runs in a child process, whose limits and capabilities it may
 * change for good. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fd_limit.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* In a child: the line of the first check that failed, or 0. */
#define CHECK(cond)                                                                                              \
        do {                                                                                                     \
                if (!(cond)) {                                                                                   \
                        fprintf(stderr, "child: %s failed\n", #cond);                                            \
                        return __LINE__;                                                                         \
                }                                                                                                \
        } while (0)

static void in_child(int (*fn)(void))
{
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0)
                _exit(fn() ? 1 : 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static bool cap_effective(int cap, struct __user_cap_data_struct data[2])
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };

        if (syscall(SYS_capget, &hdr, data) < 0)
                return false;
        return data[cap / 32].effective & (1u << (cap % 32));
}

static bool has_cap_sys_resource(void)
{
        struct __user_cap_data_struct data[2];

        return cap_effective(CAP_SYS_RESOURCE, data);
}

/* This process, from now on, as one without CAP_SYS_RESOURCE (a user's). */
static int drop_cap_sys_resource(void)
{
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2];

        if (!cap_effective(CAP_SYS_RESOURCE, data))
                return 0;
        data[CAP_SYS_RESOURCE / 32].effective &= ~(1u << (CAP_SYS_RESOURCE % 32));
        data[CAP_SYS_RESOURCE / 32].permitted &= ~(1u << (CAP_SYS_RESOURCE % 32));
        return syscall(SYS_capset, &hdr, data) == 0 ? 0 : -1;
}

static int set_limit(rlim_t soft, rlim_t hard)
{
        struct rlimit rl = { soft, hard };

        return setrlimit(RLIMIT_NOFILE, &rl);
}

static rlim_t nr_open(void)
{
        unsigned long n = 0;
        FILE *f = fopen("/proc/sys/fs/nr_open", "re");

        if (f) {
                if (fscanf(f, "%lu", &n) != 1)
                        n = 0;
                fclose(f);
        }
        return n;
}

static int soft_goes_to_hard_without_privilege(void)
{
        struct rlimit before, after, now;

        CHECK(drop_cap_sys_resource() == 0);
        CHECK(set_limit(100, 200) == 0);
        CHECK(fd_limit_raise(150, &before, &after) == 0);
        CHECK(before.rlim_cur == 100 && before.rlim_max == 200);
        CHECK(after.rlim_cur == 200 && after.rlim_max == 200);
        CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == 200 && now.rlim_max == 200);
        return 0;
}

static void test_the_soft_limit_goes_to_the_hard_one_without_privilege(void **state)
{
        (void)state;
        in_child(soft_goes_to_hard_without_privilege);
}

static int hard_stays_without_privilege(void)
{
        struct rlimit before, after, now;

        CHECK(drop_cap_sys_resource() == 0);
        CHECK(set_limit(1024, 1024) == 0);
        CHECK(fd_limit_raise(50000, &before, &after) == 0);
        CHECK(after.rlim_cur == 1024 && after.rlim_max == 1024);
        CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == 1024 && now.rlim_max == 1024);
        /* below the hard limit, the soft one still goes up */
        CHECK(set_limit(512, 1024) == 0);
        CHECK(fd_limit_raise(50000, &before, &after) == 0);
        CHECK(after.rlim_cur == 1024 && after.rlim_max == 1024);
        return 0;
}

static void test_without_cap_sys_resource_the_hard_limit_stays_and_nothing_fails(void **state)
{
        (void)state;
        in_child(hard_stays_without_privilege);
}

static int hard_raised_with_privilege(void)
{
        struct rlimit before, after, now;

        CHECK(set_limit(1024, 1024) == 0);
        CHECK(fd_limit_raise(6400, &before, &after) == 0);
        CHECK(before.rlim_cur == 1024 && before.rlim_max == 1024);
        CHECK(after.rlim_cur == 6400 && after.rlim_max == 6400);
        CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == 6400 && now.rlim_max == 6400);
        /* never past fs.nr_open, which the kernel refuses even to root */
        rlim_t ceiling = nr_open();
        CHECK(ceiling > 6400);
        CHECK(fd_limit_raise(ceiling + 1000, &before, &after) == 0);
        CHECK(after.rlim_cur == ceiling && after.rlim_max == ceiling);
        /* a limit that covers want is left alone */
        CHECK(set_limit(5000, 5000) == 0);
        CHECK(fd_limit_raise(3000, &before, &after) == 0);
        CHECK(after.rlim_cur == 5000 && after.rlim_max == 5000);
        return 0;
}

static void test_with_cap_sys_resource_both_limits_rise_up_to_nr_open(void **state)
{
        (void)state;
        if (!has_cap_sys_resource())
                skip(); /* a container whose bounding set lacks it: the qemu kernel test covers it */
        in_child(hard_raised_with_privilege);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_the_soft_limit_goes_to_the_hard_one_without_privilege),
                cmocka_unit_test(test_without_cap_sys_resource_the_hard_limit_stays_and_nothing_fails),
                cmocka_unit_test(test_with_cap_sys_resource_both_limits_rise_up_to_nr_open),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
