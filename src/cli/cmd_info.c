// SPDX-License-Identifier: MIT
#include "archive_source.h"
#include "chunking_options.h"
#include "chunker.h"
#include "cli.h"
#include "cleanup.h"
#include "commands.h"
#include "fsutil.h"
#include "http_options.h"
#include "json_output.h"
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

/* The chunker as the archive's dictionary has it. */
static json_object *chunker_json(const struct chunker_params *c)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "algorithm", json_object_new_string(chunking_algorithm_name(c->algorithm)));
        if (c->algorithm == CHUNKING_FIXED_SIZE) {
                json_add_u64(o, "fixed_size", c->max_chunk_size);
                return o;
        }
        json_add_u64(o, "window_size", c->window_size);
        json_add_u64(o, "filter_bits", c->filter_bits);
        json_add_u64(o, "avg_chunk_size", chunker_average_for_filter_bits(c->filter_bits));
        json_add_u64(o, "min_chunk_size", c->min_chunk_size);
        json_add_u64(o, "max_chunk_size", c->max_chunk_size);
        return o;
}

/* What a release says of its image, into doc (both kinds of info). */
static void release_json(json_object *doc, const struct release *r)
{
        json_add_u64(doc, "image_size", r->source_total_size);
        json_object_object_add(doc, "image_checksum", json_hex(r->source_checksum, r->source_checksum_len));
        json_object_object_add(doc, "chunker", chunker_json(&r->chunker));
        json_add_u64(doc, "chunk_hash_length", r->hash_len);
        json_add_u64(doc, "chunks", r->n_order);
        json_add_u64(doc, "unique_chunks", r->n_chunks);
}

/* Metadata values: text when UTF-8 ("value"), else hex ("hex"). */
static json_object *metadata_json(const struct archive *a)
{
        json_object *list = json_object_new_array();

        for (size_t i = 0; i < a->n_metadata; i++) {
                const struct archive_metadata *m = &a->metadata[i];
                json_object *o = json_object_new_object();
                json_object_object_add(o, "key", json_text(m->key));
                if (utf8_valid(m->value, m->value_len) && !memchr(m->value, 0, m->value_len)) {
                        _cleanup_free_ char *v = strndup((const char *)m->value, m->value_len);
                        json_object_object_add(o, "value", v ? json_text(v) : NULL);
                } else {
                        _cleanup_free_ char *hex = malloc(2 * m->value_len + 1);
                        if (hex)
                                hash_to_hex(m->value, m->value_len, hex);
                        json_object_object_add(o, "hex", hex ? json_object_new_string(hex) : NULL);
                }
                json_object_array_add(list, o);
        }
        return list;
}

static int info_archive_json(const char *spec, const struct archive *a, uint64_t size)
{
        json_object *doc = json_object_new_object();

        json_object_object_add(doc, "ok", json_object_new_boolean(true));
        json_object_object_add(doc, "kind", json_object_new_string("archive"));
        json_object_object_add(doc, "archive", json_text(spec));
        json_object_object_add(doc, "created_by", json_text(a->release->app_version));
        json_add_u64(doc, "archive_size", size);
        json_add_u64(doc, "header_size", a->header_size);
        json_add_u64(doc, "chunk_data_offset", a->chunk_data_offset);
        json_object_object_add(doc, "header_checksum", json_hex(a->header_checksum, HASH_MAX_LEN));
        json_add_u64(doc, "signed_bytes", a->header_size - HASH_MAX_LEN);
        release_json(doc, a->release);
        json_object_object_add(doc, "compression", json_object_new_string(codec_name(a->codec)));
        json_add_u64(doc, "compression_level", a->compression_level);
        json_add_u64(doc, "compressed_size", a->compressed_size);
        json_object_object_add(doc, "metadata", metadata_json(a));
        json_output_print(doc);
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
        if (json_output_enabled())
                return info_archive_json(spec, a, size);
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
        if (json_output_enabled()) {
                json_object *doc = json_object_new_object();
                json_object_object_add(doc, "ok", json_object_new_boolean(true));
                json_object_object_add(doc, "kind", json_object_new_string("release"));
                json_object_object_add(doc, "release", json_text(arg));
                json_object_object_add(doc, "written_by", json_text(r->app_version));
                release_json(doc, r);
                json_output_print(doc);
                release_free(r);
                return 0;
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
                .groups = { http_cli_options(), json_cli_options() },
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
                if ((err = http_cli_parse(&http, &p, c)) != 0 || (err = json_cli_parse(&p, c)) != 0)
                        return err;
        if (c < 0)
                return p.result;
        if (http_cli_finish(&http) != 0)
                return CLI_USAGE;
        const char *arg = p.operands[0];
        if (!http_is_url(arg)) {
                mode_t type;
                _cleanup_close_ int fd = open_regular_at(AT_FDCWD, arg, 0, &type);
                if (fd == -EINVAL) {
                        log_error("%s is %s, neither an archive nor a release description: refusing", arg,
                                  file_type_name(type));
                        return fd;
                }
                if (fd < 0)
                        return log_errno(fd, "cannot open %s", arg);
                if (pread_full(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
                    store_release_magic_ok(magic, sizeof(magic))) {
                        err = cli_check_release_operands(p.operands, 1);
                        return err != 0 ? err : info_release(arg);
                }
        }
        return info_archive(arg, &http.http);
}
