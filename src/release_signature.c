// SPDX-License-Identifier: MIT
#include "release_signature.h"

#include "archive_source.h"
#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "units.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *release_signature_location(const char *source)
{
        const char *scheme = strstr(source, "://");
        size_t cut = strlen(source);
        char *out;

        if (http_is_url(source) && scheme)
                cut = (size_t)(scheme + 3 - source) + strcspn(scheme + 3, "?#");
        if (asprintf(&out, "%.*s%s%s", (int)cut, source, RELEASE_SIGNATURE_SUFFIX, source + cut) < 0)
                return NULL;
        return out;
}

/* The signature file's bytes; a failure is worded in why. */
static int fetch_signature(const char *location, const struct http_options *http, uint8_t **text, size_t *len,
                           char *why, size_t why_size)
{
        mode_t type;
        int err;

        if (!http_is_url(location)) {
                err = read_file_bounded(location, MINISIGN_SIG_FILE_MAX, text, len, &type);
                if (err == -EFBIG)
                        snprintf(why, why_size, "%s is larger than %d bytes", location, MINISIGN_SIG_FILE_MAX);
                else if (err == -EINVAL)
                        snprintf(why, why_size, "%s is %s, not a regular file", location, file_type_name(type));
                else if (err < 0)
                        snprintf(why, why_size, "%s: %s", location, strerror(-err));
                return err;
        }
        struct http_conn *conn = NULL;
        err = http_conn_new(http, &conn); /* loads libcurl on first use */
        if (err < 0) {
                snprintf(why, why_size, "%s: cannot set up a connection", location);
                return err;
        }
        err = http_get_small(conn, location, MINISIGN_SIG_FILE_MAX, text, len, why, why_size);
        http_conn_free(conn);
        return err;
}

int release_version_parse(const char *comment, uint64_t *version)
{
        const size_t key_len = strlen(RELEASE_VERSION_FIELD);
        bool found = false;

        for (const char *field = comment;; field++) {
                size_t n = strcspn(field, "\t");
                if (n >= key_len && memcmp(field, RELEASE_VERSION_FIELD, key_len) == 0) {
                        const char *digits = field + key_len, *end;
                        size_t nd = n - key_len;
                        /* All of the field, digits only (at most 20, the longest 2^64-1 has). */
                        if (found || nd > 20 || parse_uint_prefix(digits, version, &end) < 0 ||
                            end != digits + nd)
                                return -EBADMSG;
                        found = true;
                }
                field += n;
                if (!*field)
                        break;
        }
        return found ? 0 : -ENOENT;
}

static int check_signature(struct release_signature *s, const char *archive, const struct trusted_keys *keys)
{
        char id[MINISIGN_KEY_ID_STR_MAX];
        int err;

        if (!s->sig.prehashed) {
                log_error("refusing %s: %s is a legacy (non-prehashed, \"Ed\") signature; sign with minisign 0.8 or "
                          "later without -l, or with ihop sign",
                          archive, s->where);
                return -EBADMSG;
        }
        s->key = trusted_keys_find(keys, s->sig.key_id);
        if (!s->key) {
                _cleanup_free_ char *trusted = trusted_keys_describe(keys);
                log_error("refusing %s: %s is signed by key %s, which is not trusted (trusted: %s)", archive, s->where,
                          minisign_key_id_str(s->sig.key_id, id), trusted ? trusted : "?");
                return -EKEYREJECTED;
        }
        err = minisign_verify_comment(&s->sig, &s->key->key);
        if (err == -ENOMEM)
                return log_errno(err, "checking %s", s->where);
        if (err < 0) {
                log_error("refusing %s: %s does not verify with key %s: its signature or trusted comment was "
                          "altered",
                          archive, s->where, minisign_key_id_str(s->sig.key_id, id));
                return -EBADMSG;
        }
        err = release_version_parse(s->sig.trusted_comment, &s->version);
        if (err == -ENOENT)
                log_error("refusing %s: the trusted comment of %s carries no " RELEASE_VERSION_FIELD "N", archive,
                          s->where);
        else if (err < 0)
                log_error("refusing %s: the trusted comment of %s has a malformed or repeated " RELEASE_VERSION_FIELD
                          "N (a decimal number below 2^64, once)",
                          archive, s->where);
        return err < 0 ? -EBADMSG : 0;
}

int release_signature_load(const char *const *locations, size_t n_locations, const char *archive,
                           const struct http_options *http, const struct trusted_keys *keys,
                           struct release_signature *out)
{
        _cleanup_free_ uint8_t *text = NULL;
        const char *location = NULL;
        size_t len = 0;
        int err = -ENOENT;

        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < n_locations; i++) {
                char why[768] = "";
                location = locations[i];
                err = fetch_signature(location, http, &text, &len, why, sizeof(why));
                if (err == 0 || err == -ECANCELED)
                        break;
                if (i + 1 < n_locations) {
                        log_warn("%s; trying %s", why[0] ? why : strerror(-err), locations[i + 1]);
                        continue;
                }
                log_error("refusing %s: no signature: %s", archive, why[0] ? why : strerror(-err));
                return err == -EFBIG ? -EBADMSG : err;
        }
        if (err < 0)
                return err;
        out->where = strdup(location);
        if (!out->where)
                return log_errno(-ENOMEM, "checking %s", archive);
        /* The parser names the file; the refusal is its line. */
        err = minisign_signature_parse(text, len, location, &out->sig);
        if (err < 0)
                return err;
        return check_signature(out, archive, keys);
}

int release_signature_check_archive(const struct release_signature *s, const struct archive *a, const char *archive)
{
        char id[MINISIGN_KEY_ID_STR_MAX];

        if (minisign_verify_prehashed(&s->sig, &s->key->key, a->header_checksum) < 0) {
                log_error("refusing %s: %s (key %s) does not sign this archive's header (tampered, or the signature "
                          "of another archive)",
                          archive, s->where, minisign_key_id_str(s->sig.key_id, id));
                return -EBADMSG;
        }
        if (a->release->hash_len < RELEASE_SIGNED_HASH_MIN) {
                log_error("refusing %s: its chunk hashes are %zu bytes, too short to be covered by a signature (at "
                          "least %d)",
                          archive, a->release->hash_len, RELEASE_SIGNED_HASH_MIN);
                return -EBADMSG;
        }
        return 0;
}

void release_signature_clear(struct release_signature *s)
{
        free(s->where);
        s->where = NULL;
        minisign_signature_clear(&s->sig);
        s->key = NULL;
}

int release_signature_make(const struct minisign_secret_key *sk, const struct archive *a, const char *archive_path,
                           uint64_t version, const char *extra, time_t now, char **out)
{
        const char *base = strrchr(archive_path, '/');
        _cleanup_free_ char *comment = NULL;
        char id[MINISIGN_KEY_ID_STR_MAX];
        uint64_t ignored;

        base = base ? base + 1 : archive_path;
        if (a->release->hash_len < RELEASE_SIGNED_HASH_MIN) {
                log_error("%s: its chunk hashes are %zu bytes; a signed archive needs at least %d (compress with "
                          "--hash-length %d or more)",
                          archive_path, a->release->hash_len, RELEASE_SIGNED_HASH_MIN, RELEASE_SIGNED_HASH_MIN);
                return -EINVAL;
        }
        if (extra && release_version_parse(extra, &ignored) != -ENOENT) {
                log_error("the trusted comment text may not carry " RELEASE_VERSION_FIELD " itself: give "
                          "--release-version");
                return -EINVAL;
        }
        /* A file name with a tab or a line break would break the comment's fields. */
        if (strpbrk(base, "\t\r\n"))
                base = "(name with control characters)";
        if (asprintf(&comment, "timestamp:%lld\tfile:%s\t" RELEASE_VERSION_FIELD "%" PRIu64 "%s%s", (long long)now,
                     base, version, extra ? "\t" : "", extra ? extra : "") < 0) {
                comment = NULL;
                return log_errno(-ENOMEM, "signing %s", archive_path);
        }
        _cleanup_free_ char *untrusted = NULL;
        if (asprintf(&untrusted, "signature from ihop secret key %s", minisign_key_id_str(sk->id, id)) < 0) {
                untrusted = NULL;
                return log_errno(-ENOMEM, "signing %s", archive_path);
        }
        return minisign_sign_prehashed(sk, a->header_checksum, comment, untrusted, out);
}

int release_signature_sign_file(const struct minisign_secret_key *sk, const char *archive_path, uint64_t version,
                                 const char *extra, char **sig_path, uint64_t *signed_bytes)
{
        _cleanup_archive_ struct archive *a = NULL;
        _cleanup_free_ char *text = NULL, *path = NULL;
        int err;

        if (http_is_url(archive_path) || strstr(archive_path, "://")) {
                log_error("%s: sign takes the archive file, not a URL", archive_path);
                return -EINVAL;
        }
        err = archive_source_load_header(archive_path, NULL, &a, NULL);
        if (err < 0)
                return err;
        err = release_signature_make(sk, a, archive_path, version, extra, time(NULL), &text);
        if (err == -ENOMEM)
                return log_errno(err, "signing %s", archive_path);
        if (err < 0)
                return err;
        path = release_signature_location(archive_path);
        if (!path)
                return log_errno(-ENOMEM, "signing %s", archive_path);
        err = write_file_atomic(path, text, strlen(text));
        if (err < 0)
                return log_errno(err, "cannot write %s", path);
        if (signed_bytes)
                *signed_bytes = a->header_size - MINISIGN_PREHASH_LEN;
        if (sig_path)
                *sig_path = TAKE_PTR(path);
        return 0;
}
