// SPDX-License-Identifier: MIT
#include "archive_trust.h"

#include "cleanup.h"
#include "log.h"
#include "release_signature.h"
#include "store_version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Before the header is read: the signature, by a trusted key. Its version
 * is compared with the store's only once it is known to sign the header. */
static int load_signature(const struct archive_trust *t, struct release_signature *sig)
{
        /* --signature, or beside the archive: at SOURCE, then at each mirror. */
        size_t n = t->policy.signature ? 1 : 1 + t->http->n_mirrors;
        _cleanup_free_ char **locations = calloc(n, sizeof(*locations));
        int err = 0;

        if (!locations)
                return log_errno(-ENOMEM, "checking %s", t->source);
        for (size_t i = 0; i < n && err == 0; i++) {
                const char *base = i == 0 ? t->source : t->http->mirrors[i - 1];
                locations[i] = t->policy.signature ? strdup(t->policy.signature) : release_signature_location(base);
                if (!locations[i])
                        err = -ENOMEM;
        }
        if (err == 0)
                err = release_signature_load((const char *const *)locations, n, t->source, t->http, t->policy.trusted, sig);
        else
                log_errno(err, "checking %s", t->source);
        for (size_t i = 0; i < n; i++)
                free(locations[i]);
        return err;
}

/* The header signed by it, then its version one the store may take: in
 * that order, so that a signature of another archive is refused as such
 * (bad-data) on any store, never as a downgrade on one that is further on. */
static int accept_signature(const struct archive_trust *t, struct store *store, const struct archive *a,
                            struct release_signature *sig, struct archive_trust_result *res)
{
        char id[MINISIGN_KEY_ID_STR_MAX];
        uint64_t remembered;
        bool known;
        int err;

        err = release_signature_check_archive(sig, a, t->source);
        if (err < 0)
                return err;
        err = store_version_read(store, &remembered, &known);
        if (err < 0)
                return err;
        if (known && sig->version < remembered && !t->policy.allow_downgrade)
                return store_version_refuse(store, sig->version, remembered, t->source);
        log_debug("%s: signed by trusted key %s (%s), release version %" PRIu64, t->source,
                  minisign_key_id_str(sig->key->key.id, id), sig->key->path, sig->version);
        res->signature_checked = true;
        res->release_version = sig->version;
        memcpy(res->signer_id, sig->key->key.id, sizeof(res->signer_id));
        return 0;
}

int archive_trust_read_header(const struct archive_trust *t, struct store *store, struct archive_source *src,
                              struct source_conn *conn, struct archive **out, struct archive_trust_result *res)
{
        bool signed_only = t->policy.trusted && t->policy.trusted->n > 0;
        struct release_signature sig = {};
        struct archive *a = NULL;
        int err = 0;

        memset(res, 0, sizeof(*res));
        if (signed_only)
                err = load_signature(t, &sig);
        if (err == 0)
                err = archive_source_read_header(src, conn, &a);
        if (err == 0 && signed_only)
                err = accept_signature(t, store, a, &sig, res);
        release_signature_clear(&sig);
        if (err < 0) {
                archive_free(a);
                return err;
        }
        *out = a;
        return 0;
}

int archive_trust_commit(const struct archive_trust *t, struct store *store, const struct archive_trust_result *res)
{
        if (!res->signature_checked)
                return 0;
        return store_version_accept(store, res->release_version, t->policy.allow_downgrade, t->source);
}
