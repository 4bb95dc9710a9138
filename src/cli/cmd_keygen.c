// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "fsutil.h"
#include "log.h"
#include "minisign.h"
#include "secret_key.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_key_file(const char *path, const char *text, bool secret, bool force)
{
        int err = write_file_atomic_opts(path, text, strlen(text), secret, force);

        if (err == -EEXIST) {
                log_error("%s already exists: refusing to overwrite it (-f replaces it)", path);
                return err;
        }
        if (err < 0)
                return log_errno(err, "cannot write %s", path);
        return 0;
}

int cmd_keygen(int argc, char **argv)
{
        static const struct cli_option options[] = {
                { .name = "public-key", .key = 'p', .arg = "PUBKEY", .help = "where to write the public key" },
                { .name = "secret-key", .key = 's', .arg = "SECKEY", .help = "where to write the secret key" },
                { .name = "without-password", .key = 'W',
                  .help = "leave the secret key unencrypted (else a password encrypts it, with scrypt)" },
                { .name = "force", .key = 'f', .help = "replace existing key files" },
                {}
        };
        const struct cli_command cmd = {
                .name = "keygen",
                .synopsis = "[-W] [-f] -p PUBKEY -s SECKEY",
                .description = "Make a key pair for signing releases, in minisign's formats: the secret key\n"
                               "(SECKEY, readable only by its owner) signs with 'ihop sign' or 'minisign -S',\n"
                               "the public key (PUBKEY) goes onto devices, which trust releases it verifies.\n"
                               "Without -W the password is read from the terminal, or as one line of standard\n"
                               "input.\n",
                .options = options,
                .min_operands = 0,
                .max_operands = 0,
        };
        _cleanup_minisign_secret_key_ struct minisign_secret_key *sk = minisign_secret_key_new();
        struct minisign_public_key pk;
        const char *pub_path = NULL, *sec_path = NULL;
        bool without_password = false, force = false;
        char *password = NULL, *sec_text = NULL;
        _cleanup_free_ char *pub_text = NULL;
        char id[MINISIGN_KEY_ID_STR_MAX];
        struct cli_parser p;
        int c, ret = CLI_USAGE;

        if (!sk)
                return log_errno(-ENOMEM, "making a key");
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                switch (c) {
                case 'p':
                        pub_path = p.arg;
                        break;
                case 's':
                        sec_path = p.arg;
                        break;
                case 'W':
                        without_password = true;
                        break;
                case 'f':
                        force = true;
                        break;
                }
        }
        if (c < 0)
                return p.result;
        if (!pub_path || !sec_path) {
                log_error("keygen wants both -p PUBKEY and -s SECKEY");
                return cli_usage_error(&p);
        }
        if (strcmp(pub_path, sec_path) == 0) {
                log_error("the public and the secret key cannot both be %s", pub_path);
                return CLI_USAGE;
        }
        /* Before the password is asked for: a refusal later would waste it. */
        if (!force && (access(pub_path, F_OK) == 0 || access(sec_path, F_OK) == 0)) {
                log_error("%s already exists: refusing to overwrite it (-f replaces it)",
                          access(pub_path, F_OK) == 0 ? pub_path : sec_path);
                return -EEXIST;
        }
        if (!without_password) {
                ret = password_read("Password for the new secret key: ", true, &password);
                if (ret < 0)
                        return ret;
                if (!password[0]) {
                        log_error("the password is empty: give one, or -W for an unencrypted key");
                        password_free(password);
                        return CLI_USAGE;
                }
        }
        minisign_keygen(&pk, sk);
        ret = minisign_secret_key_format(sk, password, &sec_text);
        password_free(password);
        if (ret == -ENOMEM)
                log_errno(ret, "making a key");
        if (ret == 0 && minisign_public_key_format(&pk, &pub_text) < 0)
                ret = log_errno(-ENOMEM, "making a key");
        /* The secret key first: a public key alone would be of no use. */
        if (ret == 0)
                ret = write_key_file(sec_path, sec_text, true, force);
        if (ret == 0)
                ret = write_key_file(pub_path, pub_text, false, force);
        if (sec_text) {
                sodium_memzero(sec_text, strlen(sec_text));
                free(sec_text);
        }
        if (ret == 0)
                printf("key %s: secret key %s (keep it secret), public key %s (for devices)\n",
                       minisign_key_id_str(pk.id, id), sec_path, pub_path);
        return ret;
}
