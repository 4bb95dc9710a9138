// SPDX-License-Identifier: MIT
/* minisign.c, release_signature.c's version field and store_version.c:
 * the files round-trip, a password-encrypted key made here independently
 * (scrypt through libsodium directly, cheap parameters) unlocks with its
 * password only, signatures verify with their key over their hash and
 * nothing else, and the store's remembered version only ever rises and
 * fails closed when damaged. minisign's own files are tested against the
 * real tool in tests/e2e/test_signing.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash.h"
#include "minisign.h"
#include "release_signature.h"
#include "store.h"
#include "store_version.h"
#include "unit_helpers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int setup(void **state)
{
        return hash_init_library();
}

static struct minisign_secret_key *new_key(struct minisign_public_key *pk)
{
        struct minisign_secret_key *sk = minisign_secret_key_new();

        assert_non_null(sk);
        minisign_keygen(pk, sk);
        return sk;
}

static void test_key_id_shown_as_minisign_shows_it(void **state)
{
        const uint8_t id[8] = { 0x1f, 0xe8, 0xb4, 0x42, 0x18, 0x0f, 0x62, 0xe7 };
        const uint8_t small[8] = { 0xab, 0x01, 0, 0, 0, 0, 0, 0 };
        char buf[MINISIGN_KEY_ID_STR_MAX];

        assert_string_equal(minisign_key_id_str(id, buf), "E7620F1842B4E81F");
        /* A little-endian number, without leading zeros. */
        assert_string_equal(minisign_key_id_str(small, buf), "1AB");
}

static void test_public_key_round_trips(void **state)
{
        struct minisign_public_key pk, back;
        struct minisign_secret_key *sk = new_key(&pk);
        char *text = NULL, id[MINISIGN_KEY_ID_STR_MAX];

        assert_int_equal(minisign_public_key_format(&pk, &text), 0);
        assert_non_null(strstr(text, minisign_key_id_str(pk.id, id)));
        assert_int_equal(minisign_public_key_parse((const uint8_t *)text, strlen(text), "t", &back), 0);
        assert_memory_equal(&pk, &back, sizeof(pk));
        /* CRLF line ends and no final newline read the same. */
        char crlf[256];
        size_t n = strcspn(text, "\n");
        snprintf(crlf, sizeof(crlf), "%.*s\r\n%.*s", (int)n, text, (int)(strlen(text) - n - 2), text + n + 1);
        assert_int_equal(minisign_public_key_parse((const uint8_t *)crlf, strlen(crlf), "t", &back), 0);
        assert_memory_equal(&pk, &back, sizeof(pk));
        /* The public half of the secret key is the same key. */
        minisign_public_key_of(sk, &back);
        assert_memory_equal(&pk, &back, sizeof(pk));
        free(text);
        minisign_secret_key_free(sk);
}

static void test_unencrypted_secret_key_round_trips_and_damage_is_caught(void **state)
{
        struct minisign_public_key pk;
        struct minisign_secret_key *sk = new_key(&pk), *back = minisign_secret_key_new();
        struct minisign_secret_key_file f;
        char *text = NULL;

        assert_int_equal(minisign_secret_key_format(sk, NULL, &text), 0);
        assert_int_equal(minisign_secret_key_parse((const uint8_t *)text, strlen(text), "t", &f), 0);
        assert_false(f.encrypted);
        assert_int_equal(minisign_secret_key_unlock(&f, NULL, "t", back), 0);
        assert_memory_equal(sk, back, sizeof(*sk));

        /* minisign -W leaves the checksum zero: still taken. */
        struct minisign_secret_key_file zero = f;
        memset(zero.sealed + MINISIGN_KEY_ID_LEN + MINISIGN_SECRET_KEY_LEN, 0, 32);
        assert_int_equal(minisign_secret_key_unlock(&zero, NULL, "t", back), 0);
        /* A damaged key is not, with or without a checksum. */
        f.sealed[MINISIGN_KEY_ID_LEN + 3] ^= 1;
        assert_int_equal(minisign_secret_key_unlock(&f, NULL, "t", back), -EBADMSG);
        zero.sealed[MINISIGN_KEY_ID_LEN + 3] ^= 1;
        assert_int_equal(minisign_secret_key_unlock(&zero, NULL, "t", back), -EBADMSG);
        free(text);
        minisign_secret_key_free(sk);
        minisign_secret_key_free(back);
}

/* An encrypted key file built as minisign's format says, without minisign.c. */
static char *encrypted_key_file(const struct minisign_secret_key *sk, const char *password, uint64_t ops,
                                uint64_t mem)
{
        uint8_t raw[158] = { 'E', 'd', 'S', 'c', 'B', '2' }, stream[104], chk[32];
        char b64[256], *out = NULL;
        crypto_generichash_state st;

        randombytes_buf(raw + 6, 32);
        for (int i = 0; i < 8; i++) {
                raw[38 + i] = (uint8_t)(ops >> (8 * i));
                raw[46 + i] = (uint8_t)(mem >> (8 * i));
        }
        memcpy(raw + 54, sk->id, 8);
        memcpy(raw + 62, sk->key, 64);
        crypto_generichash_init(&st, NULL, 0, 32);
        crypto_generichash_update(&st, (const uint8_t *)"Ed", 2);
        crypto_generichash_update(&st, sk->id, 8);
        crypto_generichash_update(&st, sk->key, 64);
        crypto_generichash_final(&st, chk, 32);
        memcpy(raw + 126, chk, 32);
        assert_int_equal(crypto_pwhash_scryptsalsa208sha256(stream, sizeof(stream), password, strlen(password),
                                                            raw + 6, ops, (size_t)mem),
                         0);
        for (int i = 0; i < 104; i++)
                raw[54 + i] ^= stream[i];
        sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
        assert_true(asprintf(&out, "untrusted comment: minisign encrypted secret key\n%s\n", b64) > 0);
        return out;
}

static void test_encrypted_secret_key_unlocks_with_its_password_only(void **state)
{
        struct minisign_public_key pk;
        struct minisign_secret_key *sk = new_key(&pk), *back = minisign_secret_key_new();
        struct minisign_secret_key_file f;
        char *text = encrypted_key_file(sk, "s3cret", crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN,
                                        crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN);

        assert_int_equal(minisign_secret_key_parse((const uint8_t *)text, strlen(text), "t", &f), 0);
        assert_true(f.encrypted);
        assert_int_equal(minisign_secret_key_unlock(&f, "wrong", "t", back), -EACCES);
        assert_int_equal(minisign_secret_key_unlock(&f, "s3cret", "t", back), 0);
        assert_memory_equal(sk, back, sizeof(*sk));
        free(text);

        /* A key asking scrypt for more than minisign ever does is refused unread. */
        text = encrypted_key_file(sk, "s3cret", crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN,
                                  crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN);
        uint8_t raw[158];
        size_t n;
        char *line = strchr(text, '\n') + 1;
        assert_int_equal(sodium_base642bin(raw, sizeof(raw), line, strcspn(line, "\n"), NULL, &n, NULL,
                                           sodium_base64_VARIANT_ORIGINAL),
                         0);
        raw[46 + 7] = 0x40; /* memlimit 2^62 */
        sodium_bin2base64(line, 213, raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
        assert_int_equal(minisign_secret_key_parse((const uint8_t *)text, strlen(text), "t", &f), -EBADMSG);
        free(text);
        minisign_secret_key_free(sk);
        minisign_secret_key_free(back);
}

static void test_signature_verifies_with_its_key_over_its_hash_only(void **state)
{
        struct minisign_public_key pk, other_pk;
        struct minisign_secret_key *sk = new_key(&pk), *other = new_key(&other_pk);
        struct minisign_signature s;
        uint8_t hash[64], wrong[64];
        char *text = NULL;

        hash_buffer("header", 6, hash);
        hash_buffer("other header", 12, wrong);
        assert_int_equal(minisign_sign_prehashed(sk, hash, "timestamp:1\tihop-release-version=4", "c", &text), 0);
        assert_int_equal(minisign_signature_parse((const uint8_t *)text, strlen(text), "t", &s), 0);
        assert_true(s.prehashed);
        assert_memory_equal(s.key_id, pk.id, 8);
        assert_string_equal(s.trusted_comment, "timestamp:1\tihop-release-version=4");
        assert_int_equal(minisign_verify_comment(&s, &pk), 0);
        assert_int_equal(minisign_verify_prehashed(&s, &pk, hash), 0);
        assert_int_equal(minisign_verify_prehashed(&s, &pk, wrong), -EBADMSG);
        assert_int_equal(minisign_verify_comment(&s, &other_pk), -EBADMSG);
        assert_int_equal(minisign_verify_prehashed(&s, &other_pk, hash), -EBADMSG);
        /* The trusted comment is bound to the signature. */
        s.trusted_comment[strlen(s.trusted_comment) - 1] = '5';
        assert_int_equal(minisign_verify_comment(&s, &pk), -EBADMSG);
        /* A legacy signature is read, and never passes as prehashed. */
        s.prehashed = false;
        assert_int_equal(minisign_verify_prehashed(&s, &pk, hash), -EBADMSG);
        minisign_signature_clear(&s);
        free(text);

        /* Comments that would not stay one line are refused. */
        assert_int_equal(minisign_sign_prehashed(sk, hash, "a\nb", "c", &text), -EINVAL);
        assert_int_equal(minisign_sign_prehashed(sk, hash, "a", "c\r", &text), -EINVAL);
        minisign_secret_key_free(sk);
        minisign_secret_key_free(other);
}

static void test_signature_lines_are_checked(void **state)
{
        struct minisign_public_key pk;
        struct minisign_secret_key *sk = new_key(&pk);
        struct minisign_signature s;
        uint8_t hash[64] = { 0 };
        char *text = NULL, bad[1024];

        assert_int_equal(minisign_sign_prehashed(sk, hash, "ihop-release-version=1", "c", &text), 0);
        /* Cut after each of the four lines: every cut is refused, nothing handed out. */
        for (size_t at = 0, line = 0; line < 4; line++) {
                at += strcspn(text + at, "\n");
                assert_int_equal(minisign_signature_parse((const uint8_t *)text, at, "t", &s), line == 3 ? 0 : -EBADMSG);
                if (line == 3)
                        minisign_signature_clear(&s);
                else
                        assert_null(s.trusted_comment);
                at++;
        }
        snprintf(bad, sizeof(bad), "%s", text);
        bad[strcspn(bad, "\n") + 3] = '!';
        assert_int_equal(minisign_signature_parse((const uint8_t *)bad, strlen(bad), "t", &s), -EBADMSG);
        /* Lines after the fourth are ignored, as minisign ignores them. */
        snprintf(bad, sizeof(bad), "%sextra line\n", text);
        assert_int_equal(minisign_signature_parse((const uint8_t *)bad, strlen(bad), "t", &s), 0);
        minisign_signature_clear(&s);
        free(text);
        minisign_secret_key_free(sk);
}

static void test_release_version_is_one_decimal_field(void **state)
{
        uint64_t v = 0;

        assert_int_equal(release_version_parse("timestamp:1\tfile:a.cba\tihop-release-version=42", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(release_version_parse("ihop-release-version=18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(release_version_parse("ihop-release-version=0\tbuild 7", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(release_version_parse("", &v), -ENOENT);
        assert_int_equal(release_version_parse("x ihop-release-version=3", &v), -ENOENT); /* not a field */
        assert_int_equal(release_version_parse("ihop-release-version=18446744073709551616", &v), -EBADMSG);
        assert_int_equal(release_version_parse("ihop-release-version=", &v), -EBADMSG);
        assert_int_equal(release_version_parse("ihop-release-version=+3", &v), -EBADMSG);
        assert_int_equal(release_version_parse("ihop-release-version=3 ", &v), -EBADMSG);
        assert_int_equal(release_version_parse("ihop-release-version=1\tihop-release-version=1", &v), -EBADMSG);
}

static void test_signature_location_keeps_queries(void **state)
{
        char *s;

        s = release_signature_location("/srv/r.cba");
        assert_string_equal(s, "/srv/r.cba.minisig");
        free(s);
        s = release_signature_location("https://cdn.example/r.cba?sig=abc&e=1#x");
        assert_string_equal(s, "https://cdn.example/r.cba.minisig?sig=abc&e=1#x");
        free(s);
        s = release_signature_location("relative?odd.cba");
        assert_string_equal(s, "relative?odd.cba.minisig"); /* a path may hold '?' */
        free(s);
}

static void test_store_version_only_rises_and_fails_closed(void **state)
{
        char dir[] = "/tmp/ihop-test-version-XXXXXX", path[64];
        struct store *s = NULL;
        uint64_t v;
        bool known;

        assert_non_null(mkdtemp(dir));
        assert_int_equal(store_open(dir, true, &s), 0);
        assert_int_equal(store_version_read(s, &v, &known), 0);
        assert_false(known);
        assert_int_equal(store_version_accept(s, 5, false, "r"), 0);
        assert_int_equal(store_version_accept(s, 4, false, "r"), -ESTALE);
        assert_int_equal(store_version_accept(s, 4, true, "r"), 0); /* taken, not remembered */
        assert_int_equal(store_version_read(s, &v, &known), 0);
        assert_true(known);
        assert_int_equal(v, 5);
        assert_int_equal(store_version_accept(s, 9, false, "r"), 0);
        assert_int_equal(store_version_read(s, &v, &known), 0);
        assert_int_equal(v, 9);

        /* One changed digit: the checksum no longer matches. */
        snprintf(path, sizeof(path), "%s/" STORE_VERSION_FILE, dir);
        FILE *f = fopen(path, "r+");
        assert_non_null(f);
        assert_int_equal(fseek(f, (long)strlen("ihop-release-version="), SEEK_SET), 0);
        fputc('1', f);
        fclose(f);
        assert_int_equal(store_version_read(s, &v, &known), -EBADMSG);
        assert_int_equal(store_version_accept(s, 10, false, "r"), -EBADMSG);
        store_close(s);
        remove_tree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_key_id_shown_as_minisign_shows_it),
                cmocka_unit_test(test_public_key_round_trips),
                cmocka_unit_test(test_unencrypted_secret_key_round_trips_and_damage_is_caught),
                cmocka_unit_test(test_encrypted_secret_key_unlocks_with_its_password_only),
                cmocka_unit_test(test_signature_verifies_with_its_key_over_its_hash_only),
                cmocka_unit_test(test_signature_lines_are_checked),
                cmocka_unit_test(test_release_version_is_one_decimal_field),
                cmocka_unit_test(test_signature_location_keeps_queries),
                cmocka_unit_test(test_store_version_only_rises_and_fails_closed),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
