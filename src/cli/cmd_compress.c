// SPDX-License-Identifier: MIT
#include "archive.h"
#include "chunking_options.h"
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "compress.h"
#include "fsutil.h"
#include "log.h"
#include "progress_view.h"
#include "minisign.h"
#include "release_signature.h"
#include "secret_key.h"
#include "signing_options.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct metadata_arg {
        const char *key;
        const char *value; /* a string, or the path of a file */
        bool is_file;
        size_t seq;        /* order on the command line, for the sort */
};

struct metadata_args {
        struct metadata_arg *v;
        size_t n;
};

static int metadata_args_add(struct metadata_args *m, const char *key, const char *value, bool is_file)
{
        struct metadata_arg *v = realloc(m->v, (m->n + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        m->v = v;
        v[m->n] = (struct metadata_arg){ key, value, is_file, m->n };
        m->n++;
        return 0;
}

/* bita keeps metadata in a sorted map: strings go in first, then files, so a
 * key given twice keeps its last file, else its last string. */
static int metadata_cmp(const void *a, const void *b)
{
        const struct metadata_arg *x = a, *y = b;
        int c = strcmp(x->key, y->key);

        if (c)
                return c;
        if (x->is_file != y->is_file)
                return x->is_file ? 1 : -1;
        return x->seq < y->seq ? -1 : 1;
}

static void metadata_free(struct archive_metadata *m, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(m[i].value);
        free(m);
}

/* The metadata entries to write, in key order, each key once. */
static int metadata_build(struct metadata_args *args, struct archive_metadata **out, size_t *n_out)
{
        struct archive_metadata *m = calloc(args->n ? args->n : 1, sizeof(*m));
        size_t n = 0;

        if (!m)
                return log_errno(-ENOMEM, "reading metadata");
        if (args->n > 1)
                qsort(args->v, args->n, sizeof(*args->v), metadata_cmp);
        for (size_t i = 0; i < args->n; i++) {
                const struct metadata_arg *a = &args->v[i];
                if (i + 1 < args->n && strcmp(args->v[i + 1].key, a->key) == 0)
                        continue; /* a later one wins */
                m[n].key = (char *)a->key;
                if (a->is_file) {
                        mode_t type;
                        int err = read_file_bounded(a->value, ARCHIVE_MAX_DICTIONARY_SIZE, &m[n].value,
                                                    &m[n].value_len, &type);
                        if (err == -EINVAL) {
                                log_error("metadata file %s is %s, not a regular file: refusing", a->value,
                                          file_type_name(type));
                                metadata_free(m, n);
                                return err;
                        }
                        if (err < 0) {
                                metadata_free(m, n);
                                return log_errno(err, "cannot read metadata file %s", a->value);
                        }
                } else {
                        m[n].value_len = strlen(a->value);
                        m[n].value = (uint8_t *)strdup(a->value);
                        if (!m[n].value) {
                                metadata_free(m, n);
                                return log_errno(-ENOMEM, "reading metadata");
                        }
                }
                n++;
        }
        *out = m;
        *n_out = n;
        return 0;
}

static void print_result(const char *input, const char *output, const struct compress_result *r)
{
        char a[32], b[32], c[32], hex[2 * HASH_MAX_LEN + 1];

        printf("%-18s %s, %s (%llu bytes), %zu chunks (%zu unique, %zu stored uncompressed)\n", "image:", input,
               format_size(r->image_size, a, sizeof(a)), (unsigned long long)r->image_size, r->chunks,
               r->unique_chunks, r->raw_chunks);
        printf("%-18s %s, %s (%llu bytes): header %s, chunk data %s\n", "archive:", output,
               format_size(r->header_size + r->chunk_data_size, a, sizeof(a)),
               (unsigned long long)(r->header_size + r->chunk_data_size), format_size(r->header_size, b, sizeof(b)),
               format_size(r->chunk_data_size, c, sizeof(c)));
        hash_to_hex(r->header_checksum, HASH_MAX_LEN, hex);
        printf("%-18s %s\n", "header checksum:", hex);
}

int cmd_compress(int argc, char **argv)
{
        enum { OPT_METADATA_VALUE = CLI_OPT_BASE, OPT_METADATA_FILE };
        static const struct cli_option options[] = {
                { .name = "input", .key = 'i', .arg = "IMAGE", .help = "the image", .def = "standard input" },
                { .name = "force-create", .key = 'f', .help = "replace OUTPUT if it exists" },
                { .name = "metadata-value", .key = OPT_METADATA_VALUE, .arg = "KEY VALUE",
                  .help = "store a metadata string (repeatable)" },
                { .name = "metadata-file", .key = OPT_METADATA_FILE, .arg = "KEY FILE",
                  .help = "store a file's content as metadata (repeatable)" },
                { .name = "jobs", .key = 'j', .arg = "N", .help = "worker threads", .def = "one per CPU" },
                {}
        };
        const struct cli_command cmd = {
                .name = "compress",
                .synopsis = "[OPTIONS] [-i IMAGE] OUTPUT.cba",
                .description = "Cut an image (IMAGE, or standard input) into chunks as bita does and write\n"
                               "them, each stored once and compressed, as the bita archive OUTPUT.cba.\n"
                               "OUTPUT appears only once complete.\n",
                .options = options,
                .groups = { chunking_cli_options(), signing_cli_long_options(), progress_cli_options() },
                .min_operands = 1,
                .max_operands = 1,
        };
        struct chunking_options co;
        struct compress_options o = { .progress = true };
        struct signing_cli signing = {};
        _cleanup_minisign_secret_key_ struct minisign_secret_key *sk = NULL;
        struct compress_result res;
        struct metadata_args margs = {};
        struct archive_metadata *metadata = NULL;
        struct cli_parser p;
        const char *input = NULL, *value;
        _cleanup_close_ int fd = -1;
        int c, r, ret = CLI_USAGE;

        chunking_options_init(&co);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                switch (c) {
                case 'i':
                        input = p.arg;
                        break;
                case 'f':
                        o.force = true;
                        break;
                case 'j':
                        if (parse_jobs(p.arg, &o.jobs) < 0)
                                goto out;
                        break;
                case OPT_METADATA_VALUE:
                case OPT_METADATA_FILE:
                        /* Two values, as bita takes them: KEY here, the other next. */
                        value = cli_next_value(&p);
                        if (!value) {
                                log_error("--%s wants %s", p.option->name, p.option->arg);
                                goto out;
                        }
                        r = metadata_args_add(&margs, p.arg, value, c == OPT_METADATA_FILE);
                        if (r < 0) {
                                ret = log_errno(r, "reading the command line");
                                goto out;
                        }
                        break;
                default:
                        r = signing_cli_parse(&signing, &p, c);
                        if (r == 0)
                                r = progress_cli_parse(&p, c);
                        if (r != 0) {
                                ret = r;
                                goto out;
                        }
                        if (chunking_options_parse(&co, c, p.arg) < 0)
                                goto out;
                }
        }
        if (c < 0) {
                ret = p.result;
                goto out;
        }
        if (chunking_options_finish(&co) < 0)
                goto out;
        o.output = p.operands[0];
        o.chunker = co.chunker;
        o.codec = co.codec;
        o.level = co.level;

        if (!input && isatty(STDIN_FILENO)) {
                log_error("no input: give -i FILE or pipe the image into standard input");
                goto out;
        }
        if (!signing.secret_key != !signing.version_given || (signing.trusted_comment && !signing.secret_key)) {
                log_error("--sign SECKEY and --release-version N go together (and --trusted-comment with them)");
                goto out;
        }
        /* The key first: a wrong password should not cost a whole compress. */
        if (signing.secret_key && o.chunker.hash_length < RELEASE_SIGNED_HASH_MIN) {
                log_error("a signed archive needs chunk hashes of at least %d bytes, not %u (--hash-length)",
                          RELEASE_SIGNED_HASH_MIN, (unsigned)o.chunker.hash_length);
                goto out;
        }
        if (signing.secret_key) {
                ret = secret_key_load(signing.secret_key, !input, &sk);
                if (ret < 0)
                        goto out;
        }
        ret = metadata_build(&margs, &metadata, &o.n_metadata);
        if (ret < 0)
                goto out;
        o.metadata = metadata;

        if (input) {
                fd = open(input, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        ret = log_errno(-errno, "cannot open %s", input);
                        goto out;
                }
                o.input_fd = fd;
                o.input_name = input;
        } else {
                o.input_fd = STDIN_FILENO;
                o.input_name = "standard input";
        }
        ret = compress_run(&o, &res);
        if (ret == 0)
                print_result(o.input_name, o.output, &res);
        if (ret == 0 && sk) {
                _cleanup_free_ char *sig_path = NULL;
                char id[MINISIGN_KEY_ID_STR_MAX];
                uint64_t signed_bytes;
                ret = release_signature_sign_file(sk, o.output, signing.version, signing.trusted_comment, &sig_path,
                                                  &signed_bytes);
                if (ret == 0)
                        printf("%-18s %s: release version %" PRIu64 ", key %s, over the first %" PRIu64 " bytes\n",
                               "signature:", sig_path, signing.version, minisign_key_id_str(sk->id, id),
                               signed_bytes);
        }
out:
        metadata_free(metadata, o.n_metadata);
        free(margs.v);
        return ret;
}
