// SPDX-License-Identifier: MIT
/* store_use.c: registering a release as in use, and telling live
 * registrations from stale ones, in a temporary store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "store.h"
#include "store_use.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct ctx {
        char dir[64];
        char store_path[128];
        char in_use[256];
        struct store *store;
        uint8_t desc[100];
};

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));

        if (!c)
                return -1;
        strcpy(c->dir, "/tmp/ihop-test-use-XXXXXX");
        if (!mkdtemp(c->dir))
                return -1;
        snprintf(c->store_path, sizeof(c->store_path), "%s/store", c->dir);
        snprintf(c->in_use, sizeof(c->in_use), "%s/%s", c->store_path, STORE_IN_USE_DIR);
        if (store_open(c->store_path, true, &c->store) < 0)
                return -1;
        memcpy(c->desc, store_release_magic, STORE_RELEASE_MAGIC_LEN);
        for (size_t i = STORE_RELEASE_MAGIC_LEN; i < sizeof(c->desc); i++)
                c->desc[i] = (uint8_t)(i * 7);
        if (store_release_write(c->store, "rel", c->desc, sizeof(c->desc)) < 0)
                return -1;
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        store_close(c->store);
        remove_tree(c->dir);
        free(c);
        return 0;
}

static int count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        int n = 0;

        assert_non_null(d);
        while ((e = readdir(d)))
                n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
        closedir(d);
        return n;
}

/* A child process registers release "rel" and exits without ending it, as
 * a killed mount would. */
static void register_and_die(struct ctx *c)
{
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                struct store_use *u = NULL;
                _exit(store_use_begin(c->store, "rel", c->desc, sizeof(c->desc), &u) == 0 && u ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static struct store_use_entry *list(struct ctx *c, bool read, size_t *n)
{
        struct store_use_entry *e = NULL;

        assert_int_equal(store_use_list(c->store, read, &e, n), 0);
        return e;
}

static void path_of(struct ctx *c, const char *file, char *out, size_t len)
{
        snprintf(out, len, "%s/%s", c->in_use, file);
}

static void test_register_links_the_description_and_ends_clean(void **state)
{
        struct ctx *c = *state;
        struct store_use *u = NULL;
        struct store_use_entry *e;
        char path[512], rel[512];
        struct stat a, b;
        size_t n;

        /* Nothing registered yet, not even the directory. */
        e = list(c, true, &n);
        assert_int_equal(n, 0);
        store_use_list_free(e, n);

        assert_int_equal(store_use_begin(c->store, "rel", c->desc, sizeof(c->desc), &u), 0);
        assert_non_null(u);
        e = list(c, true, &n);
        assert_int_equal(n, 1);
        assert_true(e[0].live);
        assert_string_equal(e[0].release, "rel");
        assert_int_equal(strlen(e[0].file), strlen("rel.") + 6);
        assert_memory_equal(e[0].file, "rel.", 4);
        assert_int_equal(e[0].len, sizeof(c->desc));
        assert_memory_equal(e[0].desc, c->desc, sizeof(c->desc));
        /* A hard link of the description itself: no copy. */
        path_of(c, e[0].file, path, sizeof(path));
        snprintf(rel, sizeof(rel), "%s/rel", c->store_path);
        assert_int_equal(stat(path, &a), 0);
        assert_int_equal(stat(rel, &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
        /* Removed, the description stays reachable through the registration. */
        assert_int_equal(store_release_remove(c->store, "rel"), 0);
        store_use_list_free(e, n);
        e = list(c, true, &n);
        assert_int_equal(n, 1);
        assert_true(e[0].live);
        assert_memory_equal(e[0].desc, c->desc, sizeof(c->desc));
        store_use_list_free(e, n);

        store_use_end(u);
        assert_false(access(path, F_OK) == 0);
        e = list(c, false, &n);
        assert_int_equal(n, 0);
        store_use_list_free(e, n);
        store_use_end(NULL);
}

/* The description was replaced after the caller read it (clone --force):
 * the registration holds what the caller read, a copy, not the new file. */
static void test_a_replaced_description_is_registered_as_read(void **state)
{
        struct ctx *c = *state;
        struct store_use *u = NULL;
        struct store_use_entry *e;
        uint8_t read_before[sizeof(c->desc)];
        char path[512];
        struct stat st;
        size_t n;

        memcpy(read_before, c->desc, sizeof(read_before));
        read_before[50] ^= 0xff;
        assert_int_equal(store_use_begin(c->store, "rel", read_before, sizeof(read_before), &u), 0);
        e = list(c, true, &n);
        assert_int_equal(n, 1);
        assert_true(e[0].live);
        assert_memory_equal(e[0].desc, read_before, sizeof(read_before));
        path_of(c, e[0].file, path, sizeof(path));
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_nlink, 1);
        store_use_list_free(e, n);
        store_use_end(u);
        /* No leftover of the link it tried first. */
        e = list(c, false, &n);
        assert_int_equal(n, 0);
        store_use_list_free(e, n);
}

/* Live or stale is the flock's to say: a registration whose process died
 * (here a child that registers and exits without ending it) is stale, as is
 * a file nobody holds; symlinks and directories are not registrations. */
static void test_stale_registrations_are_told_from_live_ones(void **state)
{
        struct ctx *c = *state;
        struct store_use *u = NULL;
        struct store_use_entry *e;
        char path[512];
        size_t n;
        int fd;

        register_and_die(c);
        /* The description written again (another file, the same bytes): the
         * child's link and the one made next share no file, nor its lock. */
        assert_int_equal(store_release_write(c->store, "rel", c->desc, sizeof(c->desc)), 0);

        path_of(c, "old.AbCdEf", path, sizeof(path));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        close(fd);
        path_of(c, "link.AbCdEf", path, sizeof(path));
        assert_int_equal(symlink("old.AbCdEf", path), 0);
        path_of(c, "dir.AbCdEf", path, sizeof(path));
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(store_use_begin(c->store, "rel", c->desc, sizeof(c->desc), &u), 0);

        e = list(c, true, &n);
        /* The child's, old.AbCdEf, and ours. */
        assert_int_equal(n, 3);
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
                assert_string_not_equal(e[i].file, "link.AbCdEf");
                assert_string_not_equal(e[i].file, "dir.AbCdEf");
                live += e[i].live;
                if (!e[i].live)
                        assert_null(e[i].desc);
                if (strcmp(e[i].file, "old.AbCdEf") == 0) {
                        assert_false(e[i].live);
                        assert_string_equal(e[i].release, "old");
                }
        }
        assert_int_equal(live, 1);
        store_use_list_free(e, n);
        store_use_end(u);
}

/* A registration that shares its file with a live one counts as live: the
 * child's stale link and ours are hard links of one description. */
static void test_a_stale_link_of_a_live_description_counts_as_live(void **state)
{
        struct ctx *c = *state;
        struct store_use *u = NULL;
        struct store_use_entry *e;
        size_t n;

        register_and_die(c);
        e = list(c, false, &n);
        assert_int_equal(n, 1);
        assert_false(e[0].live);
        store_use_list_free(e, n);

        assert_int_equal(store_use_begin(c->store, "rel", c->desc, sizeof(c->desc), &u), 0);
        e = list(c, false, &n);
        assert_int_equal(n, 2);
        assert_true(e[0].live && e[1].live);
        store_use_list_free(e, n);
        store_use_end(u);
        e = list(c, false, &n);
        assert_int_equal(n, 1);
        assert_false(e[0].live);
        store_use_list_free(e, n);
}

/* A user who may not write the store: a warning, no registration, no failure. */
static void test_a_store_this_user_cannot_write_is_not_registered(void **state)
{
        struct ctx *c = *state;
        int status;
        pid_t pid;

        if (geteuid() != 0)
                skip();
        assert_int_equal(chmod(c->dir, 0755), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct store_use *u = (struct store_use *)1;
                struct store *s = NULL;
                if (setgid(65534) < 0 || setuid(65534) < 0 || store_open(c->store_path, false, &s) < 0)
                        _exit(2);
                _exit(store_use_begin(s, "rel", c->desc, sizeof(c->desc), &u) == 0 && u == NULL ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_false(access(c->in_use, F_OK) == 0);
}

/* STORE/.in-use a symlink: neither registered through nor listed. */
static void test_an_in_use_symlink_is_refused(void **state)
{
        struct ctx *c = *state;
        struct store_use *u = NULL;
        struct store_use_entry *e = NULL;
        char target[256];
        size_t n;

        snprintf(target, sizeof(target), "%s/elsewhere", c->dir);
        assert_int_equal(mkdir(target, 0755), 0);
        assert_int_equal(symlink(target, c->in_use), 0);
        assert_true(store_use_begin(c->store, "rel", c->desc, sizeof(c->desc), &u) < 0);
        assert_null(u);
        assert_true(store_use_list(c->store, true, &e, &n) < 0);
        assert_null(e);
        assert_int_equal(count_entries(target), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_register_links_the_description_and_ends_clean, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_replaced_description_is_registered_as_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_registrations_are_told_from_live_ones, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_stale_link_of_a_live_description_counts_as_live, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_store_this_user_cannot_write_is_not_registered, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_an_in_use_symlink_is_refused, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
