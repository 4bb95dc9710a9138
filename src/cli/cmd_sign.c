// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "log.h"
#include "minisign.h"
#include "release_signature.h"
#include "secret_key.h"
#include "signing_options.h"
#include "trusted_keys.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int cmd_sign(int argc, char **argv)
{
        enum { OPT_PUBLIC_KEY = CLI_OPT_BASE };
        static const struct cli_option options[] = {
                { .name = "public-key", .key = 'p', .arg = "PUBKEY",
                  .help = "check that the signature verifies with this public key before writing it" },
                {}
        };
        const struct cli_command cmd = {
                .name = "sign",
                .synopsis = "-s SECKEY --release-version N [-t TEXT] ARCHIVE",
                .description = "Sign the bita archive ARCHIVE (its header, which pins every chunk) with the\n"
                               "minisign secret key SECKEY, as release version N, into ARCHIVE.minisig. A\n"
                               "device given the public key with 'ihop clone --trusted-key' takes the release,\n"
                               "and no release with a lower version after it. Check it by hand with minisign:\n"
                               "  head -c N ARCHIVE | minisign -V -m /dev/stdin -x ARCHIVE.minisig -p KEY.pub\n"
                               "N being the signed bytes that 'ihop info ARCHIVE' shows.\n",
                .options = options,
                .groups = { signing_cli_options() },
                .min_operands = 1,
                .max_operands = 1,
        };
        _cleanup_minisign_secret_key_ struct minisign_secret_key *sk = NULL;
        struct trusted_keys check = {};
        struct signing_cli signing = {};
        _cleanup_free_ char *sig_path = NULL;
        char id[MINISIGN_KEY_ID_STR_MAX];
        const char *check_path = NULL;
        uint64_t signed_bytes = 0;
        struct cli_parser p;
        int c, ret;

        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                if (c == 'p') {
                        check_path = p.arg;
                        continue;
                }
                ret = signing_cli_parse(&signing, &p, c);
                if (ret != 0)
                        return ret;
        }
        if (c < 0)
                return p.result;
        if (!signing.secret_key || !signing.version_given) {
                log_error("sign wants -s SECKEY and --release-version N");
                return cli_usage_error(&p);
        }
        if (check_path) {
                ret = trusted_keys_add_file(&check, check_path);
                if (ret < 0)
                        return ret;
        }
        ret = secret_key_load(signing.secret_key, false, &sk);
        if (ret == 0 && check_path) {
                struct minisign_public_key mine;
                minisign_public_key_of(sk, &mine);
                if (memcmp(mine.id, check.v[0].key.id, MINISIGN_KEY_ID_LEN) != 0 ||
                    memcmp(mine.key, check.v[0].key.key, MINISIGN_PUBLIC_KEY_LEN) != 0) {
                        log_error("%s is not the public key of %s: the signature would not verify with it", check_path,
                                  signing.secret_key);
                        ret = -EKEYREJECTED;
                }
        }
        trusted_keys_clear(&check);
        if (ret < 0)
                return ret;
        ret = release_signature_sign_file(sk, p.operands[0], signing.version, signing.trusted_comment, &sig_path,
                                          &signed_bytes);
        if (ret < 0)
                return ret;
        printf("%s: release version %" PRIu64 ", key %s, over the first %" PRIu64 " bytes of %s\n", sig_path,
               signing.version, minisign_key_id_str(sk->id, id), signed_bytes, p.operands[0]);
        return 0;
}
