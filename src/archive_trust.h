// SPDX-License-Identifier: MIT
/* Reading an archive's header for a store, as far as the store may trust
 * it: with trusted keys, the signature first (before any header byte is
 * read), then the header, checked against it, then the signed release
 * version against the store's (rollback protection, store_version.h), in
 * that order: a signature that does not sign the header is tampering,
 * reported as such whatever version it claims.
 *
 * Reading writes nothing: the store takes the version only when the caller
 * commits it (archive_trust_commit), once every check that can still
 * refuse the release has passed (--verify-header, a name that holds
 * another image) and before the first chunk of it is fetched or stored.
 * So a refused release leaves the remembered version as it was, and a
 * release cut short after its first chunk still counts. What clone does
 * before it stores a byte, and what on-demand reads do. */
#pragma once

#include "archive.h"
#include "archive_source.h"
#include "http.h"
#include "minisign.h"
#include "store.h"
#include "trusted_keys.h"

#include <stdbool.h>
#include <stdint.h>

/* What a release must show to be taken (release_signature.h): with keys
 * given, the signature is read and checked before the header, the header
 * against it before anything is stored. */
struct trust_policy {
        const struct trusted_keys *trusted; /* NULL or empty: no signature is asked for */
        const char *signature;              /* where it is, instead of SOURCE.minisig */
        bool allow_downgrade;               /* take a version below the store's */
};

struct archive_trust {
        const char *source;              /* as given: for messages, and where the signature is beside */
        const struct http_options *http; /* its mirrors hold signatures too */
        struct trust_policy policy;
};

struct archive_trust_result {
        bool signature_checked;
        uint64_t release_version; /* when signature_checked */
        uint8_t signer_id[MINISIGN_KEY_ID_LEN];
};

/* The header of src, read on conn, as the store may take it: with trusted
 * keys, signed by one of them and of a version the store may take (-ESTALE
 * for a downgrade, checked after the header matches the signature). Writes
 * nothing to the store. */
int archive_trust_read_header(const struct archive_trust *t, struct store *store, struct archive_source *src,
                              struct source_conn *conn, struct archive **out, struct archive_trust_result *res);

/* The store remembers the release version res checked (nothing to do for
 * a release read without trusted keys), durably, before this returns: the
 * caller's step once nothing can refuse the release any more, before any
 * chunk of it is fetched. A downgrade that a concurrent clone made one
 * meanwhile is still refused (-ESTALE). */
int archive_trust_commit(const struct archive_trust *t, struct store *store, const struct archive_trust_result *res);
