// SPDX-License-Identifier: MIT
#include "minisign.h"

#include "cleanup.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALG_LEN 2
#define CHK_LEN 32 /* BLAKE2b-256 */
#define COMMENT_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "
#define PREFIX_LEN(p) (sizeof(p) - 1)

static const uint8_t alg_legacy[ALG_LEN] = { 'E', 'd' };
static const uint8_t alg_prehashed[ALG_LEN] = { 'E', 'D' };
static const uint8_t kdf_scrypt[ALG_LEN] = { 'S', 'c' };
static const uint8_t kdf_none[ALG_LEN] = { 0, 0 };
static const uint8_t chk_blake2b[ALG_LEN] = { 'B', '2' };

/* The decoded lines of the three files. */
#define PUBLIC_KEY_BYTES (ALG_LEN + MINISIGN_KEY_ID_LEN + MINISIGN_PUBLIC_KEY_LEN)
#define SIG_BYTES (ALG_LEN + MINISIGN_KEY_ID_LEN + MINISIGN_SIG_LEN)
#define SECRET_KEY_BYTES                                                                                            \
        (3 * ALG_LEN + crypto_pwhash_scryptsalsa208sha256_SALTBYTES + 16 + MINISIGN_KEY_ID_LEN +                       \
         MINISIGN_SECRET_KEY_LEN + CHK_LEN)

/* What minisign asks of scrypt when it encrypts a key; more than this in a
 * key file is refused, so a hostile one cannot ask for terabytes. */
#define SCRYPT_OPSLIMIT crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_SENSITIVE
#define SCRYPT_MEMLIMIT crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_SENSITIVE

struct lines {
        const uint8_t *text;
        size_t len, pos;
};

/* The next line, without its "\n" or "\r\n"; false at the end of the text. */
static bool next_line(struct lines *l, const uint8_t **line, size_t *n)
{
        const uint8_t *start = l->text + l->pos, *nl;
        size_t rest = l->len - l->pos;

        if (rest == 0)
                return false;
        nl = memchr(start, '\n', rest);
        *line = start;
        *n = nl ? (size_t)(nl - start) : rest;
        l->pos += nl ? *n + 1 : rest;
        if (*n > 0 && start[*n - 1] == '\r')
                (*n)--;
        return true;
}

static bool has_prefix(const uint8_t *line, size_t n, const char *prefix)
{
        size_t p = strlen(prefix);

        return n >= p && memcmp(line, prefix, p) == 0;
}

/* Exactly want bytes from one line of base64 (with padding, as minisign writes it). */
static bool base64_exact(const uint8_t *line, size_t n, uint8_t *out, size_t want)
{
        const char *end = NULL;
        size_t got = 0;

        if (sodium_base642bin(out, want, (const char *)line, n, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0)
                return false;
        return got == want && end == (const char *)line + n;
}

static char *base64_new(const uint8_t *bin, size_t len)
{
        size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
        char *s = malloc(n);

        if (s)
                sodium_bin2base64(s, n, bin, len, sodium_base64_VARIANT_ORIGINAL);
        return s;
}

static uint64_t load_le64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

static void store_le64(uint8_t *p, uint64_t v)
{
        v = htole64(v);
        memcpy(p, &v, sizeof(v));
}

const char *minisign_key_id_str(const uint8_t id[MINISIGN_KEY_ID_LEN], char buf[MINISIGN_KEY_ID_STR_MAX])
{
        snprintf(buf, MINISIGN_KEY_ID_STR_MAX, "%" PRIX64, load_le64(id));
        return buf;
}

/* The comment line and the base64 line every file starts with, the latter
 * decoded into raw (exactly size bytes). */
static int read_head(struct lines *l, const char *where, const char *what, bool comment_prefix_required,
                     uint8_t *raw, size_t size)
{
        const uint8_t *line;
        size_t n;

        if (!next_line(l, &line, &n)) {
                log_error("%s: not a minisign %s: the file is empty", where, what);
                return -EBADMSG;
        }
        if (comment_prefix_required && !has_prefix(line, n, COMMENT_PREFIX)) {
                log_error("%s: not a minisign %s: the first line does not start with \"" COMMENT_PREFIX "\"", where,
                          what);
                return -EBADMSG;
        }
        if (n > MINISIGN_COMMENT_LINE_MAX) {
                log_error("%s: not a minisign %s: its comment line is longer than %d bytes", where, what,
                          MINISIGN_COMMENT_LINE_MAX);
                return -EBADMSG;
        }
        if (!next_line(l, &line, &n)) {
                log_error("%s: not a minisign %s: it ends after its comment line", where, what);
                return -EBADMSG;
        }
        if (!base64_exact(line, n, raw, size)) {
                sodium_memzero(raw, size); /* a secret key's, perhaps */
                log_error("%s: not a minisign %s: its second line is not the base64 of %zu bytes", where, what, size);
                return -EBADMSG;
        }
        return 0;
}

int minisign_public_key_parse(const uint8_t *text, size_t len, const char *where, struct minisign_public_key *out)
{
        struct lines l = { text, len, 0 };
        uint8_t raw[PUBLIC_KEY_BYTES];
        int err;

        /* minisign skips the first line of a public key file unread. */
        err = read_head(&l, where, "public key", false, raw, sizeof(raw));
        if (err < 0)
                return err;
        if (memcmp(raw, alg_legacy, ALG_LEN) != 0) {
                log_error("%s: unsupported public key algorithm (minisign keys are \"Ed\")", where);
                return -EBADMSG;
        }
        memcpy(out->id, raw + ALG_LEN, MINISIGN_KEY_ID_LEN);
        memcpy(out->key, raw + ALG_LEN + MINISIGN_KEY_ID_LEN, MINISIGN_PUBLIC_KEY_LEN);
        return 0;
}

int minisign_public_key_format(const struct minisign_public_key *pk, char **out)
{
        uint8_t raw[PUBLIC_KEY_BYTES];
        char id[MINISIGN_KEY_ID_STR_MAX];
        _cleanup_free_ char *b64 = NULL;

        memcpy(raw, alg_legacy, ALG_LEN);
        memcpy(raw + ALG_LEN, pk->id, MINISIGN_KEY_ID_LEN);
        memcpy(raw + ALG_LEN + MINISIGN_KEY_ID_LEN, pk->key, MINISIGN_PUBLIC_KEY_LEN);
        b64 = base64_new(raw, sizeof(raw));
        if (!b64 || asprintf(out, COMMENT_PREFIX "minisign public key %s\n%s\n", minisign_key_id_str(pk->id, id),
                             b64) < 0)
                return -ENOMEM;
        return 0;
}

int minisign_secret_key_parse(const uint8_t *text, size_t len, const char *where,
                              struct minisign_secret_key_file *out)
{
        struct lines l = { text, len, 0 };
        uint8_t raw[SECRET_KEY_BYTES];
        const uint8_t *p = raw;
        int err;

        err = read_head(&l, where, "secret key", false, raw, sizeof(raw));
        if (err < 0)
                return err;
        err = -EBADMSG;
        if (memcmp(p, alg_legacy, ALG_LEN) != 0)
                log_error("%s: unsupported secret key algorithm (minisign keys are \"Ed\")", where);
        else if (memcmp(p + 2 * ALG_LEN, chk_blake2b, ALG_LEN) != 0)
                log_error("%s: unsupported secret key checksum (minisign's is \"B2\")", where);
        else if (memcmp(p + ALG_LEN, kdf_scrypt, ALG_LEN) != 0 && memcmp(p + ALG_LEN, kdf_none, ALG_LEN) != 0)
                log_error("%s: unsupported key derivation (minisign's is scrypt, \"Sc\", or none)", where);
        else
                err = 0;
        if (err == 0) {
                out->encrypted = memcmp(p + ALG_LEN, kdf_scrypt, ALG_LEN) == 0;
                p += 3 * ALG_LEN;
                memcpy(out->salt, p, sizeof(out->salt));
                p += sizeof(out->salt);
                out->opslimit = load_le64(p);
                out->memlimit = load_le64(p + 8);
                p += 16;
                memcpy(out->sealed, p, sizeof(out->sealed));
                if (out->encrypted && (out->opslimit > SCRYPT_OPSLIMIT || out->memlimit > SCRYPT_MEMLIMIT)) {
                        log_error("%s: the key's scrypt parameters (opslimit %" PRIu64 ", memlimit %" PRIu64
                                  ") exceed minisign's; refusing to derive its key",
                                  where, out->opslimit, out->memlimit);
                        err = -EBADMSG;
                }
        }
        sodium_memzero(raw, sizeof(raw));
        return err;
}

static void secret_key_chk(const uint8_t *id, const uint8_t *key, uint8_t chk[CHK_LEN])
{
        crypto_generichash_state st;

        crypto_generichash_init(&st, NULL, 0, CHK_LEN);
        crypto_generichash_update(&st, alg_legacy, ALG_LEN);
        crypto_generichash_update(&st, id, MINISIGN_KEY_ID_LEN);
        crypto_generichash_update(&st, key, MINISIGN_SECRET_KEY_LEN);
        crypto_generichash_final(&st, chk, CHK_LEN);
}

/* Does the secret key hold the public key its seed makes? A damaged
 * unencrypted key (whose checksum minisign leaves zero) fails this. */
static bool secret_key_consistent(const uint8_t *key)
{
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
        bool ok;

        crypto_sign_seed_keypair(pk, sk, key);
        ok = sodium_memcmp(sk, key, sizeof(sk)) == 0;
        sodium_memzero(sk, sizeof(sk));
        return ok;
}

int minisign_secret_key_unlock(const struct minisign_secret_key_file *f, const char *password, const char *where,
                               struct minisign_secret_key *out)
{
        uint8_t *plain = sodium_malloc(sizeof(f->sealed));
        const uint8_t *id, *key, *chk;
        uint8_t want[CHK_LEN];
        static const uint8_t zero[CHK_LEN];
        int err = 0;

        if (!plain)
                return log_errno(-ENOMEM, "%s: cannot unlock the key", where);
        memcpy(plain, f->sealed, sizeof(f->sealed));
        if (f->encrypted) {
                uint8_t *stream = sodium_malloc(sizeof(f->sealed));
                if (!stream || crypto_pwhash_scryptsalsa208sha256(stream, sizeof(f->sealed), password ? password : "",
                                                                  password ? strlen(password) : 0, f->salt,
                                                                  f->opslimit, (size_t)f->memlimit) != 0) {
                        log_error("%s: cannot derive the key from the password (scrypt with %" PRIu64
                                  " bytes of memory failed)",
                                  where, f->memlimit);
                        err = -ENOMEM;
                } else {
                        for (size_t i = 0; i < sizeof(f->sealed); i++)
                                plain[i] ^= stream[i];
                }
                sodium_free(stream);
        }
        id = plain;
        key = plain + MINISIGN_KEY_ID_LEN;
        chk = key + MINISIGN_SECRET_KEY_LEN;
        if (err == 0) {
                secret_key_chk(id, key, want);
                /* minisign -W leaves the checksum of an unencrypted key zero. */
                bool chk_ok = sodium_memcmp(want, chk, CHK_LEN) == 0 ||
                              (!f->encrypted && sodium_memcmp(zero, chk, CHK_LEN) == 0);
                if (!chk_ok && f->encrypted) {
                        log_error("%s: wrong password for this key", where);
                        err = -EACCES;
                } else if (!chk_ok || !secret_key_consistent(key)) {
                        log_error("%s: the secret key is damaged (its checksum does not match)", where);
                        err = -EBADMSG;
                }
        }
        if (err == 0) {
                memcpy(out->id, id, MINISIGN_KEY_ID_LEN);
                memcpy(out->key, key, MINISIGN_SECRET_KEY_LEN);
        }
        sodium_memzero(want, sizeof(want));
        sodium_free(plain);
        return err;
}

int minisign_secret_key_format(const struct minisign_secret_key *sk, const char *password, char **out)
{
        uint8_t *raw = sodium_malloc(SECRET_KEY_BYTES), *p, *sealed;
        uint64_t ops = SCRYPT_OPSLIMIT, mem = SCRYPT_MEMLIMIT;
        _cleanup_free_ char *b64 = NULL;
        int err = 0;

        if (!raw)
                return -ENOMEM;
        memset(raw, 0, SECRET_KEY_BYTES);
        memcpy(raw, alg_legacy, ALG_LEN);
        memcpy(raw + ALG_LEN, password ? kdf_scrypt : kdf_none, ALG_LEN);
        memcpy(raw + 2 * ALG_LEN, chk_blake2b, ALG_LEN);
        p = raw + 3 * ALG_LEN;
        sealed = p + crypto_pwhash_scryptsalsa208sha256_SALTBYTES + 16;
        memcpy(sealed, sk->id, MINISIGN_KEY_ID_LEN);
        memcpy(sealed + MINISIGN_KEY_ID_LEN, sk->key, MINISIGN_SECRET_KEY_LEN);
        secret_key_chk(sk->id, sk->key, sealed + MINISIGN_KEY_ID_LEN + MINISIGN_SECRET_KEY_LEN);
        if (password) {
                size_t n = MINISIGN_KEY_ID_LEN + MINISIGN_SECRET_KEY_LEN + CHK_LEN;
                uint8_t *stream = sodium_malloc(n);
                randombytes_buf(p, crypto_pwhash_scryptsalsa208sha256_SALTBYTES);
                /* As minisign: halve the cost until this machine can pay it. */
                while (stream && crypto_pwhash_scryptsalsa208sha256(stream, n, password, strlen(password), p, ops,
                                                                    (size_t)mem) != 0) {
                        ops /= 2;
                        mem /= 2;
                        if (ops < crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN ||
                            mem < crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN)
                                break;
                }
                if (!stream || ops < crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MIN ||
                    mem < crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_MIN) {
                        log_error("cannot encrypt the secret key: scrypt fails even with little memory");
                        err = -ENOMEM;
                } else {
                        if (mem < SCRYPT_MEMLIMIT)
                                log_warn("the key is encrypted with less scrypt memory than minisign's (%" PRIu64
                                         " bytes): this machine has too little",
                                         mem);
                        store_le64(p + crypto_pwhash_scryptsalsa208sha256_SALTBYTES, ops);
                        store_le64(p + crypto_pwhash_scryptsalsa208sha256_SALTBYTES + 8, mem);
                        for (size_t i = 0; i < n; i++)
                                sealed[i] ^= stream[i];
                }
                sodium_free(stream);
        }
        if (err == 0) {
                b64 = base64_new(raw, SECRET_KEY_BYTES);
                if (!b64 || asprintf(out, COMMENT_PREFIX "minisign encrypted secret key\n%s\n", b64) < 0)
                        err = -ENOMEM;
        }
        if (b64)
                sodium_memzero(b64, strlen(b64));
        sodium_free(raw);
        return err;
}

struct minisign_secret_key *minisign_secret_key_new(void)
{
        return sodium_malloc(sizeof(struct minisign_secret_key));
}

void minisign_secret_key_free(struct minisign_secret_key *sk)
{
        sodium_free(sk); /* wipes it; NULL is fine */
}

void minisign_keygen(struct minisign_public_key *pk, struct minisign_secret_key *sk)
{
        randombytes_buf(sk->id, MINISIGN_KEY_ID_LEN);
        memcpy(pk->id, sk->id, MINISIGN_KEY_ID_LEN);
        crypto_sign_keypair(pk->key, sk->key);
}

void minisign_public_key_of(const struct minisign_secret_key *sk, struct minisign_public_key *pk)
{
        memcpy(pk->id, sk->id, MINISIGN_KEY_ID_LEN);
        crypto_sign_ed25519_sk_to_pk(pk->key, sk->key);
}

int minisign_signature_parse(const uint8_t *text, size_t len, const char *where, struct minisign_signature *out)
{
        struct lines l = { text, len, 0 };
        uint8_t raw[SIG_BYTES];
        const uint8_t *b64, *line;
        size_t n;
        int err;

        memset(out, 0, sizeof(*out));
        err = read_head(&l, where, "signature", true, raw, sizeof(raw));
        if (err < 0)
                return err;
        if (memcmp(raw, alg_prehashed, ALG_LEN) == 0) {
                out->prehashed = true;
        } else if (memcmp(raw, alg_legacy, ALG_LEN) != 0) {
                log_error("%s: unsupported signature algorithm (minisign's are \"ED\" and the legacy \"Ed\")", where);
                return -EBADMSG;
        }
        memcpy(out->key_id, raw + ALG_LEN, MINISIGN_KEY_ID_LEN);
        memcpy(out->sig, raw + ALG_LEN + MINISIGN_KEY_ID_LEN, MINISIGN_SIG_LEN);

        if (!next_line(&l, &line, &n) || !has_prefix(line, n, TRUSTED_PREFIX)) {
                log_error("%s: not a minisign signature: its third line is not a \"" TRUSTED_PREFIX "\"", where);
                return -EBADMSG;
        }
        const uint8_t *comment = line + PREFIX_LEN(TRUSTED_PREFIX);
        size_t comment_len = n - PREFIX_LEN(TRUSTED_PREFIX);
        if (comment_len > MINISIGN_TRUSTED_COMMENT_MAX || memchr(comment, '\0', comment_len)) {
                log_error("%s: the trusted comment is %s", where,
                          comment_len > MINISIGN_TRUSTED_COMMENT_MAX ? "longer than minisign allows"
                                                                     : "not text (a NUL byte)");
                return -EBADMSG;
        }
        if (!next_line(&l, &b64, &n) || !base64_exact(b64, n, out->comment_sig, MINISIGN_SIG_LEN)) {
                log_error("%s: not a minisign signature: its fourth line is not the base64 of a %d-byte signature",
                          where, MINISIGN_SIG_LEN);
                return -EBADMSG;
        }
        /* Lines after the fourth are ignored, as minisign ignores them. */
        out->trusted_comment = strndup((const char *)comment, comment_len);
        if (!out->trusted_comment)
                return log_errno(-ENOMEM, "%s: cannot hold the trusted comment", where);
        return 0;
}

void minisign_signature_clear(struct minisign_signature *s)
{
        free(s->trusted_comment);
        s->trusted_comment = NULL;
}

/* One line of text that minisign can read back. */
static bool comment_ok(const char *s, size_t max)
{
        return strlen(s) <= max && !strpbrk(s, "\r\n");
}

int minisign_sign_prehashed(const struct minisign_secret_key *sk, const uint8_t hash[MINISIGN_PREHASH_LEN],
                            const char *trusted_comment, const char *untrusted_comment, char **out)
{
        uint8_t raw[SIG_BYTES], comment_sig[MINISIGN_SIG_LEN];
        size_t tc_len = strlen(trusted_comment);
        _cleanup_free_ uint8_t *signed_comment = NULL;
        _cleanup_free_ char *b64_sig = NULL, *b64_comment_sig = NULL;

        if (!comment_ok(trusted_comment, MINISIGN_TRUSTED_COMMENT_MAX)) {
                log_error("the trusted comment must be one line of at most %d bytes", MINISIGN_TRUSTED_COMMENT_MAX);
                return -EINVAL;
        }
        if (!comment_ok(untrusted_comment, MINISIGN_COMMENT_LINE_MAX - PREFIX_LEN(COMMENT_PREFIX))) {
                log_error("the untrusted comment must be one line of at most %d bytes",
                          (int)(MINISIGN_COMMENT_LINE_MAX - PREFIX_LEN(COMMENT_PREFIX)));
                return -EINVAL;
        }
        memcpy(raw, alg_prehashed, ALG_LEN);
        memcpy(raw + ALG_LEN, sk->id, MINISIGN_KEY_ID_LEN);
        crypto_sign_detached(raw + ALG_LEN + MINISIGN_KEY_ID_LEN, NULL, hash, MINISIGN_PREHASH_LEN, sk->key);
        /* The global signature binds the trusted comment to this signature. */
        signed_comment = malloc(MINISIGN_SIG_LEN + tc_len);
        if (!signed_comment)
                return -ENOMEM;
        memcpy(signed_comment, raw + ALG_LEN + MINISIGN_KEY_ID_LEN, MINISIGN_SIG_LEN);
        memcpy(signed_comment + MINISIGN_SIG_LEN, trusted_comment, tc_len);
        crypto_sign_detached(comment_sig, NULL, signed_comment, MINISIGN_SIG_LEN + tc_len, sk->key);
        b64_sig = base64_new(raw, sizeof(raw));
        b64_comment_sig = base64_new(comment_sig, sizeof(comment_sig));
        if (!b64_sig || !b64_comment_sig ||
            asprintf(out, COMMENT_PREFIX "%s\n%s\n" TRUSTED_PREFIX "%s\n%s\n", untrusted_comment, b64_sig,
                     trusted_comment, b64_comment_sig) < 0)
                return -ENOMEM;
        return 0;
}

int minisign_verify_comment(const struct minisign_signature *s, const struct minisign_public_key *pk)
{
        size_t tc_len = strlen(s->trusted_comment);
        _cleanup_free_ uint8_t *signed_comment = malloc(MINISIGN_SIG_LEN + tc_len);

        if (!signed_comment)
                return -ENOMEM;
        memcpy(signed_comment, s->sig, MINISIGN_SIG_LEN);
        memcpy(signed_comment + MINISIGN_SIG_LEN, s->trusted_comment, tc_len);
        return crypto_sign_verify_detached(s->comment_sig, signed_comment, MINISIGN_SIG_LEN + tc_len, pk->key) == 0
                       ? 0
                       : -EBADMSG;
}

int minisign_verify_prehashed(const struct minisign_signature *s, const struct minisign_public_key *pk,
                              const uint8_t hash[MINISIGN_PREHASH_LEN])
{
        if (!s->prehashed)
                return -EBADMSG;
        return crypto_sign_verify_detached(s->sig, hash, MINISIGN_PREHASH_LEN, pk->key) == 0 ? 0 : -EBADMSG;
}
