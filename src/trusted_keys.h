// SPDX-License-Identifier: MIT
/* The public keys a device accepts releases from: minisign public key
 * files given one by one (--trusted-key) or as every "*.pub" in a
 * directory (--trusted-keys, e.g. /etc/ihop/trusted.d). Several keys at
 * once are how a vendor rotates: the device trusts old and new while
 * releases signed by either are out. Only public keys: nothing here is
 * secret. */
#pragma once

#include "minisign.h"

#include <stddef.h>

struct trusted_key {
        struct minisign_public_key key;
        char *path; /* the file it came from, for messages */
};

struct trusted_keys {
        struct trusted_key *v;
        size_t n;
};

/* Adds the key in the file at path (logs why not). The same key given
 * twice counts once; two different keys with one id are refused. */
int trusted_keys_add_file(struct trusted_keys *t, const char *path);
/* Adds every "*.pub" in dir, in name order: -ENOENT (logged) when there
 * is none, so an empty key directory trusts nothing rather than anything. */
int trusted_keys_add_dir(struct trusted_keys *t, const char *dir);
/* The trusted key with this id, or NULL. */
const struct trusted_key *trusted_keys_find(const struct trusted_keys *t, const uint8_t id[MINISIGN_KEY_ID_LEN]);
/* "ID (PATH), ..." of every key, for a refusal's message (malloc'ed). */
char *trusted_keys_describe(const struct trusted_keys *t);
void trusted_keys_clear(struct trusted_keys *t);
