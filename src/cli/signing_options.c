// SPDX-License-Identifier: MIT
#include "signing_options.h"

#include "log.h"
#include "units.h"

static const struct cli_option options[] = {
        { .name = "secret-key", .key = OPT_SIGN_SECRET_KEY, .arg = "SECKEY",
          .help = "the minisign secret key to sign with (its password is asked for)" },
        { .name = "release-version", .key = OPT_SIGN_RELEASE_VERSION, .arg = "N",
          .help = "the release's version, which devices never let decrease (0 to 2^64-1)" },
        { .name = "trusted-comment", .key = OPT_SIGN_TRUSTED_COMMENT, .arg = "TEXT",
          .help = "one line of text to sign along, after the timestamp, file name and version" },
        {}
};

static const struct cli_option long_options[] = {
        { .help = "Signing (writes OUTPUT.cba.minisig, as 'ihop sign' does):" },
        { .name = "sign", .key = OPT_SIGN_SECRET_KEY_LONG, .arg = "SECKEY",
          .help = "sign the archive with this minisign secret key" },
        { .name = "release-version", .key = OPT_SIGN_RELEASE_VERSION, .arg = "N",
          .help = "the release's version, which devices never let decrease" },
        { .name = "trusted-comment", .key = OPT_SIGN_TRUSTED_COMMENT_LONG, .arg = "TEXT",
          .help = "one line of text to sign along" },
        {}
};

const struct cli_option *signing_cli_options(void) { return options; }
const struct cli_option *signing_cli_long_options(void) { return long_options; }

int signing_cli_parse(struct signing_cli *s, const struct cli_parser *p, int opt)
{
        switch (opt) {
        case OPT_SIGN_SECRET_KEY:
        case OPT_SIGN_SECRET_KEY_LONG:
                s->secret_key = p->arg;
                return 0;
        case OPT_SIGN_TRUSTED_COMMENT:
        case OPT_SIGN_TRUSTED_COMMENT_LONG:
                s->trusted_comment = p->arg;
                return 0;
        case OPT_SIGN_RELEASE_VERSION:
                if (parse_uint(p->arg, UINT64_MAX, &s->version) < 0) {
                        log_error("--release-version wants a whole number, not '%s'", p->arg);
                        return CLI_USAGE;
                }
                s->version_given = true;
                return 0;
        default:
                return 0;
        }
}
