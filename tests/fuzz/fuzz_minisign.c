// SPDX-License-Identifier: MIT
/* minisign's files as ihop reads them (minisign.h), and the release version
 * of a trusted comment (release_signature.h): the first input byte chooses
 * the parser (0: public key, 1: secret key, 2: signature, 3: release
 * version), the rest is the file. An accepted signature is also checked
 * against a fixed key, and an accepted unencrypted secret key is unlocked
 * (an encrypted one is not: scrypt would take the fuzzer's whole time). */
#include "fuzz.h"

#include "hash.h"
#include "minisign.h"
#include "release_signature.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void check_signature(const uint8_t *text, size_t len)
{
        static const struct minisign_public_key pk = { .id = { 1, 2, 3, 4, 5, 6, 7, 8 } };
        static const uint8_t hash[MINISIGN_PREHASH_LEN];
        struct minisign_signature s;
        uint64_t v;

        if (minisign_signature_parse(text, len, "fuzz input", &s) < 0) {
                if (s.trusted_comment)
                        abort(); /* nothing is handed out on failure */
                return;
        }
        size_t n = strlen(s.trusted_comment);
        if (n > MINISIGN_TRUSTED_COMMENT_MAX || strchr(s.trusted_comment, '\n'))
                abort();
        /* Random bytes are no valid signature by a fixed key. */
        if (minisign_verify_comment(&s, &pk) == 0 && minisign_verify_prehashed(&s, &pk, hash) == 0)
                abort();
        release_version_parse(s.trusted_comment, &v);
        minisign_signature_clear(&s);
}

static void check_secret_key(const uint8_t *text, size_t len)
{
        struct minisign_secret_key_file f;
        struct minisign_secret_key *sk;

        if (minisign_secret_key_parse(text, len, "fuzz input", &f) < 0 || f.encrypted)
                return;
        sk = minisign_secret_key_new();
        if (!sk)
                return;
        minisign_secret_key_unlock(&f, NULL, "fuzz input", sk);
        minisign_secret_key_free(sk);
}

static void check_version(const uint8_t *text, size_t len)
{
        char *s = malloc(len + 1);
        uint64_t v = 0;

        if (!s)
                return;
        memcpy(s, text, len);
        s[len] = '\0';
        int err = release_version_parse(s, &v);
        if (err != 0 && err != -ENOENT && err != -EBADMSG)
                abort();
        /* A version found is a field of the comment as written. */
        if (err == 0 && !strstr(s, RELEASE_VERSION_FIELD))
                abort();
        free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool ready;
        struct minisign_public_key pk;

        if (!ready) {
                if (hash_init_library() < 0)
                        abort();
                ready = true;
        }
        if (size == 0)
                return 0;
        switch (data[0] % 4) {
        case 0:
                minisign_public_key_parse(data + 1, size - 1, "fuzz input", &pk);
                break;
        case 1:
                check_secret_key(data + 1, size - 1);
                break;
        case 2:
                check_signature(data + 1, size - 1);
                break;
        case 3:
                check_version(data + 1, size - 1);
                break;
        }
        return 0;
}
