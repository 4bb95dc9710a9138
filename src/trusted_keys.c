// SPDX-License-Identifier: MIT
#include "trusted_keys.h"

#include "cleanup.h"
#include "dir_iter.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_key(struct trusted_keys *t, const struct minisign_public_key *k, const char *path)
{
        char id[MINISIGN_KEY_ID_STR_MAX];
        const struct trusted_key *old = trusted_keys_find(t, k->id);
        struct trusted_key *v;

        if (old && memcmp(old->key.key, k->key, sizeof(k->key)) == 0)
                return 0;
        if (old) {
                log_error("%s and %s are different keys with the same id %s: refusing both", old->path, path,
                          minisign_key_id_str(k->id, id));
                return -EINVAL;
        }
        v = realloc(t->v, (t->n + 1) * sizeof(*v));
        if (!v)
                return log_errno(-ENOMEM, "reading %s", path);
        t->v = v;
        v[t->n].key = *k;
        v[t->n].path = strdup(path);
        if (!v[t->n].path)
                return log_errno(-ENOMEM, "reading %s", path);
        t->n++;
        return 0;
}

static int add_key_text(struct trusted_keys *t, const uint8_t *text, size_t len, const char *path)
{
        struct minisign_public_key k;
        int err = minisign_public_key_parse(text, len, path, &k);

        return err < 0 ? err : add_key(t, &k, path);
}

static int read_key_error(const char *path, int err, mode_t type)
{
        if (err == -EFBIG) {
                log_error("%s: not a minisign public key: larger than %d bytes", path, MINISIGN_KEY_FILE_MAX);
                return -EBADMSG;
        }
        if (err == -EINVAL) {
                log_error("trusted key %s is %s, not a regular file: refusing", path, file_type_name(type));
                return err;
        }
        return log_errno(err, "cannot read trusted key %s", path);
}

int trusted_keys_add_file(struct trusted_keys *t, const char *path)
{
        _cleanup_free_ uint8_t *text = NULL;
        mode_t type;
        size_t len;
        int err = read_file_bounded(path, MINISIGN_KEY_FILE_MAX, &text, &len, &type);

        if (err < 0)
                return read_key_error(path, err, type);
        return add_key_text(t, text, len, path);
}

/* "*.pub", not hidden: what a key directory holds besides may be anything. */
static bool is_key_file(const struct dir_iter *it, const char *name, void *opaque)
{
        size_t len = strlen(name);

        return len > 4 && strcmp(name + len - 4, ".pub") == 0 && name[0] != '.';
}

int trusted_keys_add_dir(struct trusted_keys *t, const char *dir)
{
        _cleanup_dir_iter_ struct dir_iter it = {};
        char **names = NULL;
        size_t n = 0;
        int err;

        err = dir_iter_open(&it, AT_FDCWD, dir);
        if (err < 0)
                return log_errno(err, "cannot open trusted key directory %s", dir);
        err = dir_iter_names(&it, is_key_file, NULL, &names, &n);
        if (err < 0)
                return log_errno(err, "cannot list trusted keys in %s", dir);
        if (n == 0) {
                log_error("%s holds no trusted key (no *.pub file): refusing to trust nothing", dir);
                dir_names_free(names);
                return -ENOENT;
        }
        for (size_t i = 0; i < n && err == 0; i++) {
                _cleanup_free_ char *path = NULL;
                _cleanup_free_ uint8_t *text = NULL;
                mode_t type;
                size_t len;
                if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
                        path = NULL;
                        err = log_errno(-ENOMEM, "listing %s", dir);
                        break;
                }
                /* Not through a symlink planted in the directory: an admin
                 * installs key files, not links to wherever. */
                err = read_file_bounded_at(dir_iter_fd(&it), names[i], MINISIGN_KEY_FILE_MAX, &text, &len, &type);
                if (err == -ELOOP) {
                        log_error("%s is a symlink: trusted keys in %s must be plain files", path, dir);
                        break;
                }
                err = err < 0 ? read_key_error(path, err, type) : add_key_text(t, text, len, path);
        }
        dir_names_free(names);
        return err;
}

const struct trusted_key *trusted_keys_find(const struct trusted_keys *t, const uint8_t id[MINISIGN_KEY_ID_LEN])
{
        for (size_t i = 0; i < t->n; i++)
                if (memcmp(t->v[i].key.id, id, MINISIGN_KEY_ID_LEN) == 0)
                        return &t->v[i];
        return NULL;
}

char *trusted_keys_describe(const struct trusted_keys *t)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        for (size_t i = 0; i < t->n; i++) {
                char id[MINISIGN_KEY_ID_STR_MAX];
                fprintf(f, "%s%s (%s)", i ? ", " : "", minisign_key_id_str(t->v[i].key.id, id), t->v[i].path);
        }
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

void trusted_keys_clear(struct trusted_keys *t)
{
        for (size_t i = 0; i < t->n; i++)
                free(t->v[i].path);
        free(t->v);
        t->v = NULL;
        t->n = 0;
}
