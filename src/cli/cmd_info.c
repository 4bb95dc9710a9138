// SPDX-License-Identifier: MIT
#include "archive_source.h"
#include "chunking_options.h"
#include "cli.h"
#include "cleanup.h"
#include "commands.h"
#include "fsutil.h"
#include "http_options.h"
#include "log.h"
#include "release_file.h"
#include "store.h"
#include "text_escape.h"
#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

static void print_hex_line(const char *label, const uint8_t *data, size_t len)
{
        char hex[2 * HASH_MAX_LEN + 1];

        hash_to_hex(data, len, hex);
        printf("%-18s %s\n", label, hex);
}

static void print_release(const struct release *r)
{
        char a[32], desc[256];

        printf("%-18s %s (%llu bytes)\n", "image size:", format_size(r->source_total_size, a, sizeof(a)),
               (unsigned long long)r->source_total_size);
        print_hex_line("image checksum:", r->source_checksum, r->source_checksum_len);
        printf("%-18s %s\n", "chunker:", chunker_params_describe(&r->chunker, desc, sizeof(desc)));
        printf("%-18s %zu bytes\n", "chunk hash length:", r->hash_len);
        printf("%-18s %zu in the image, %zu unique\n", "chunks:", r->n_order, r->n_chunks);
}

/* Keys and values are the archive's: escaped, they cannot drive the terminal
 * or forge a line of this output. */
static int print_metadata(const struct archive *a)
{
        for (size_t i = 0; i < a->n_metadata; i++) {
                const struct archive_metadata *m = &a->metadata[i];
                _cleanup_free_ char *key = text_escape_str(m->key), *value = NULL;
                if (!key)
                        return -ENOMEM;
                if (utf8_valid(m->value, m->value_len)) {
                        value = text_escape(m->value, m->value_len);
                        if (!value)
                                return -ENOMEM;
                        printf("%-18s %s = %s\n", "metadata:", key, value);
                } else {
                        printf("%-18s %s = (%zu bytes) ", "metadata:", key, m->value_len);
                        for (size_t j = 0; j < m->value_len; j++)
                                printf("%02x", m->value[j]);
                        printf("\n");
                }
        }
        return 0;
}

static int info_archive(const char *spec, const struct http_options *http)
{
        _cleanup_archive_ struct archive *a = NULL;
        uint64_t size;
        char s1[32], s2[32];
        int err;

        err = archive_source_load_header(spec, http, &a, &size);
        if (err < 0)
                return err;
        printf("%-18s %s\n", "archive:", spec);
        /* bita writes its bare version; other writers (ihop compress) their name too. */
        _cleanup_free_ char *v = text_escape_str(a->release->app_version);
        if (!v)
                return log_errno(-ENOMEM, "cannot describe %s", spec);
        printf("%-18s %s%s\n", "created by:", v[0] == '\0' || isdigit((unsigned char)v[0]) ? "bita " : "", v);
        printf("%-18s %s (%llu bytes)\n", "archive size:", format_size(size, s1, sizeof(s1)),
               (unsigned long long)size);
        printf("%-18s %llu bytes, chunk data at offset %llu\n", "header:", (unsigned long long)a->header_size,
               (unsigned long long)a->chunk_data_offset);
        print_hex_line("header checksum:", a->header_checksum, HASH_MAX_LEN);
        /* What a release signature covers (release_signature.h): the header
         * up to its checksum, whose BLAKE2b-512 that checksum is. */
        printf("%-18s %llu (head -c %llu ARCHIVE | minisign -V -m /dev/stdin -x ARCHIVE.minisig ...)\n",
               "signed bytes:", (unsigned long long)(a->header_size - HASH_MAX_LEN),
               (unsigned long long)(a->header_size - HASH_MAX_LEN));
        print_release(a->release);
        printf("%-18s %s, level %u\n", "compression:", codec_name(a->codec), a->compression_level);
        printf("%-18s %s compressed of %s\n", "chunk data:", format_size(a->compressed_size, s1, sizeof(s1)),
               format_size(a->release->source_total_size, s2, sizeof(s2)));
        err = print_metadata(a);
        if (err < 0)
                log_errno(err, "cannot describe %s", spec);
        return err;
}

static int info_release(const char *arg)
{
        _cleanup_store_ struct store *s = NULL;
        struct release *r = NULL;
        int err;

        err = release_file_open(arg, &s, NULL, &r);
        if (err < 0)
                return err;
        _cleanup_free_ char *v = text_escape_str(r->app_version);
        if (!v) {
                release_free(r);
                return log_errno(-ENOMEM, "cannot describe %s", arg);
        }
        printf("%-18s %s\n", "release:", arg);
        printf("%-18s %s\n", "written by:", v);
        print_release(r);
        release_free(r);
        return 0;
}

int cmd_info(int argc, char **argv)
{
        const struct cli_command cmd = {
                .name = "info",
                .synopsis = "[HTTP OPTIONS] ARCHIVE|STORE/NAME",
                .description = "Describe a bita archive (file path or http(s) URL) or a release in a chunk\n"
                               "store.\n",
                .groups = { http_cli_options() },
                .min_operands = 1,
                .max_operands = 1,
        };
        struct cli_parser p;
        _cleanup_http_cli_ struct http_cli http;
        uint8_t magic[STORE_RELEASE_MAGIC_LEN] = {};
        int c, err;

        http_cli_init(&http);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0)
                if ((err = http_cli_parse(&http, &p, c)) != 0)
                        return err;
        if (c < 0)
                return p.result;
        const char *arg = p.operands[0];
        if (!http_is_url(arg)) {
                _cleanup_close_ int fd = open(arg, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return log_errno(-errno, "cannot open %s", arg);
                if (pread_full(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
                    store_release_magic_ok(magic, sizeof(magic))) {
                        err = cli_check_release_operands(p.operands, 1);
                        return err != 0 ? err : info_release(arg);
                }
        }
        return info_archive(arg, &http.http);
}
