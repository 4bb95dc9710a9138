// SPDX-License-Identifier: MIT
/* minisign's key and signature files, read and written byte for byte as
 * minisign (0.8 and later) does, so a vendor can check ihop's signatures
 * with the stock tool and sign with keys it made:
 *
 *   public key   "untrusted comment: ..." \n base64("Ed" | key id[8] | Ed25519 public key[32])
 *   secret key   "untrusted comment: ..." \n base64("Ed" | kdf "Sc" or "\0\0" | "B2" | salt[32]
 *                | opslimit u64-LE | memlimit u64-LE | (key id[8] | secret key[64] | chk[32])),
 *                the part in parentheses XORed with scrypt(password) when kdf is "Sc";
 *                chk = BLAKE2b-256("Ed" | key id | secret key)
 *   signature    "untrusted comment: ..." \n base64(alg[2] | key id[8] | sig[64]) \n
 *                "trusted comment: TEXT" \n base64(Ed25519 over sig | TEXT)
 *
 * alg "ED" ("prehashed") signs the BLAKE2b-512 of the message, "Ed" (legacy)
 * the message itself; ihop makes and accepts only "ED". Key ids are shown as
 * minisign shows them: the 8 bytes as a little-endian number in hex.
 *
 * Files are untrusted: the parsers take any bytes (no NUL needed), check
 * every length, and log one line naming `where` when they refuse. */
#pragma once

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MINISIGN_KEY_ID_LEN 8
#define MINISIGN_PUBLIC_KEY_LEN crypto_sign_PUBLICKEYBYTES /* 32 */
#define MINISIGN_SECRET_KEY_LEN crypto_sign_SECRETKEYBYTES /* 64 */
#define MINISIGN_SIG_LEN crypto_sign_BYTES                 /* 64 */
#define MINISIGN_PREHASH_LEN 64                            /* BLAKE2b-512 */
/* The longest lines minisign reads back (its fgets buffers, less the
 * line's end), so that what ihop writes minisign can read. */
#define MINISIGN_COMMENT_LINE_MAX 1022
#define MINISIGN_TRUSTED_COMMENT_MAX 8172
/* Bounded reads: no key or signature file minisign writes comes near. */
#define MINISIGN_KEY_FILE_MAX 4096
#define MINISIGN_SIG_FILE_MAX 16384
/* A key id as text: at most 16 hex digits and a NUL. */
#define MINISIGN_KEY_ID_STR_MAX 17

struct minisign_public_key {
        uint8_t id[MINISIGN_KEY_ID_LEN];
        uint8_t key[MINISIGN_PUBLIC_KEY_LEN];
};

/* Lives in sodium_malloc'ed memory (minisign_secret_key_new): locked,
 * guarded, and wiped when freed. */
struct minisign_secret_key {
        uint8_t id[MINISIGN_KEY_ID_LEN];
        uint8_t key[MINISIGN_SECRET_KEY_LEN]; /* libsodium's: seed | public key */
};

/* A secret key file as read, before the password (if any) unlocks it. */
struct minisign_secret_key_file {
        bool encrypted;
        uint8_t salt[crypto_pwhash_scryptsalsa208sha256_SALTBYTES];
        uint64_t opslimit, memlimit;
        uint8_t sealed[MINISIGN_KEY_ID_LEN + MINISIGN_SECRET_KEY_LEN + 32]; /* id | key | chk */
};

struct minisign_signature {
        bool prehashed; /* "ED"; false: a legacy "Ed" signature */
        uint8_t key_id[MINISIGN_KEY_ID_LEN];
        uint8_t sig[MINISIGN_SIG_LEN];
        char *trusted_comment; /* NUL-terminated, without "trusted comment: " */
        uint8_t comment_sig[MINISIGN_SIG_LEN];
};

/* "E7620F1842B4E81F": the id as minisign prints it; returns buf. */
const char *minisign_key_id_str(const uint8_t id[MINISIGN_KEY_ID_LEN], char buf[MINISIGN_KEY_ID_STR_MAX]);

int minisign_public_key_parse(const uint8_t *text, size_t len, const char *where, struct minisign_public_key *out);
/* The public key file's text (malloc'ed, NUL-terminated). */
int minisign_public_key_format(const struct minisign_public_key *pk, char **out);

int minisign_secret_key_parse(const uint8_t *text, size_t len, const char *where,
                              struct minisign_secret_key_file *out);
/* The secret key of f, decrypted with password when f is encrypted
 * (password ignored otherwise): -EACCES, logged, for a wrong password. */
int minisign_secret_key_unlock(const struct minisign_secret_key_file *f, const char *password, const char *where,
                               struct minisign_secret_key *out);
/* The secret key file's text; encrypted with password (scrypt, minisign's
 * parameters) unless password is NULL. */
int minisign_secret_key_format(const struct minisign_secret_key *sk, const char *password, char **out);

struct minisign_secret_key *minisign_secret_key_new(void);
void minisign_secret_key_free(struct minisign_secret_key *sk);
static inline void minisign_secret_key_freep(struct minisign_secret_key **sk) { minisign_secret_key_free(*sk); }
#define _cleanup_minisign_secret_key_ __attribute__((cleanup(minisign_secret_key_freep)))

/* A new key pair with a random id. */
void minisign_keygen(struct minisign_public_key *pk, struct minisign_secret_key *sk);
/* The public half of sk. */
void minisign_public_key_of(const struct minisign_secret_key *sk, struct minisign_public_key *pk);

int minisign_signature_parse(const uint8_t *text, size_t len, const char *where, struct minisign_signature *out);
void minisign_signature_clear(struct minisign_signature *s);

/* A prehashed signature file over the message whose BLAKE2b-512 is hash:
 * trusted_comment (one line, at most MINISIGN_TRUSTED_COMMENT_MAX bytes) is
 * signed with it, untrusted_comment is not. */
int minisign_sign_prehashed(const struct minisign_secret_key *sk, const uint8_t hash[MINISIGN_PREHASH_LEN],
                            const char *trusted_comment, const char *untrusted_comment, char **out);

/* Quiet checks, for the caller to word its refusal: 0 or -EBADMSG. */
int minisign_verify_comment(const struct minisign_signature *s, const struct minisign_public_key *pk);
int minisign_verify_prehashed(const struct minisign_signature *s, const struct minisign_public_key *pk,
                              const uint8_t hash[MINISIGN_PREHASH_LEN]);
