// SPDX-License-Identifier: MIT
/* Signed releases. A release's signature is a minisign signature file
 * beside its archive (ARCHIVE.minisig) over the archive's header: the
 * prehashed signature signs BLAKE2b-512 of the signed bytes, and the
 * header's last 64 bytes are exactly that hash of every header byte before
 * them (archive.h), so the signature pins the header checksum bita already
 * checks, and through the chunk hashes in the header, every byte of the
 * image. Anyone can check it by hand:
 *
 *   head -c N ARCHIVE | minisign -V -m /dev/stdin -x ARCHIVE.minisig -p KEY.pub
 *
 * with N the header length less 64 (`ihop info` shows it as "signed bytes").
 *
 * The trusted comment, signed too, carries the release version the vendor
 * counts up ("ihop-release-version=N", a tab-separated field), which a
 * store's rollback protection compares (store_version.h). */
#pragma once

#include "archive.h"
#include "http.h"
#include "minisign.h"
#include "trusted_keys.h"

#include <stdint.h>
#include <time.h>

#define RELEASE_SIGNATURE_SUFFIX ".minisig"
#define RELEASE_VERSION_FIELD "ihop-release-version="
/* Chunk hashes shorter than this would let a forged chunk collide with a
 * signed one: a signed archive keeps at least 256 bits. */
#define RELEASE_SIGNED_HASH_MIN 32

struct release_signature {
        char *where; /* where it was read from */
        struct minisign_signature sig;
        const struct trusted_key *key; /* the trusted key that made it */
        uint64_t version;
};

/* Where the archive at source has its signature: the path, or the URL
 * (before any query or fragment), with ".minisig" appended. Malloc'ed. */
char *release_signature_location(const char *source);

/* Reads the signature from the first of locations (files or URLs, read
 * bounded) that can be read, the next when one cannot (a mirror's copy
 * when the source is down: a warning), and checks all that can be checked
 * before the archive's header is read: a prehashed signature, made by one
 * of keys, whose trusted comment is signed by that key and carries one
 * release version. Every refusal is one line naming `archive` and why. */
int release_signature_load(const char *const *locations, size_t n_locations, const char *archive,
                           const struct http_options *http, const struct trusted_keys *keys,
                           struct release_signature *out);

/* Does s sign this archive's header, and are its chunk hashes long
 * enough to be covered by it? One line, naming archive, when not. */
int release_signature_check_archive(const struct release_signature *s, const struct archive *a, const char *archive);

void release_signature_clear(struct release_signature *s);

/* The release version in a trusted comment: -ENOENT when there is none,
 * -EBADMSG when it is not a decimal number below 2^64 or given twice. */
int release_version_parse(const char *trusted_comment, uint64_t *version);

/* The signature file's text for archive a (read from archive_path):
 * trusted comment "timestamp:NOW\tfile:BASENAME\tihop-release-version=N",
 * then "\t" and extra when given. Logs why not (a hash too short, extra
 * not one line or naming a version itself). */
int release_signature_make(const struct minisign_secret_key *sk, const struct archive *a, const char *archive_path,
                           uint64_t version, const char *extra, time_t now, char **out);

/* Signs the archive file at archive_path: its header is read and checked
 * (an archive that lacks chunk data is refused), and the signature written
 * atomically to archive_path + ".minisig" (*sig_path, malloc'ed, when
 * asked for). *signed_bytes: how many leading bytes of the archive the
 * signature covers, for a check by hand. */
int release_signature_sign_file(const struct minisign_secret_key *sk, const char *archive_path, uint64_t version,
                                 const char *extra, char **sig_path, uint64_t *signed_bytes);
