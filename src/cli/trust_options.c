// SPDX-License-Identifier: MIT
#include "trust_options.h"

#include "log.h"

static const struct cli_option options[] = {
        { .help = "Signed releases (any key given: only a release signed by one of them is taken):" },
        { .name = "trusted-key", .key = OPT_TRUSTED_KEY, .arg = "PUBKEY",
          .help = "trust releases signed with this minisign public key (repeatable, for key rotation)" },
        { .name = "trusted-keys", .key = OPT_TRUSTED_KEYS, .arg = "DIR",
          .help = "trust every *.pub key in DIR, e.g. /etc/ihop/trusted.d (repeatable)" },
        { .name = "signature", .key = OPT_SIGNATURE, .arg = "FILE|URL", .help = "where the signature is",
          .def = "SOURCE.minisig" },
        { .name = "allow-downgrade", .key = OPT_ALLOW_DOWNGRADE,
          .help = "take a release version lower than the highest the store has accepted" },
        {}
};

const struct cli_option *trust_cli_options(void) { return options; }

void trust_cli_free(struct trust_cli *t) { trusted_keys_clear(&t->keys); }

int trust_cli_parse(struct trust_cli *t, const struct cli_parser *p, int opt)
{
        switch (opt) {
        case OPT_TRUSTED_KEY:
                return trusted_keys_add_file(&t->keys, p->arg);
        case OPT_TRUSTED_KEYS:
                return trusted_keys_add_dir(&t->keys, p->arg);
        case OPT_SIGNATURE:
                t->signature = p->arg;
                return 0;
        case OPT_ALLOW_DOWNGRADE:
                t->allow_downgrade = true;
                return 0;
        default:
                return 0;
        }
}

int trust_cli_finish(const struct trust_cli *t)
{
        if (t->keys.n > 0)
                return 0;
        if (t->signature || t->allow_downgrade) {
                log_error("--%s needs --trusted-key or --trusted-keys", t->signature ? "signature" : "allow-downgrade");
                return CLI_USAGE;
        }
        return 0;
}

struct trust_policy trust_cli_policy(const struct trust_cli *t)
{
        return (struct trust_policy){ &t->keys, t->signature, t->allow_downgrade };
}
