// SPDX-License-Identifier: MIT
/* Reading a bita archive header (.cba):
 *
 *   offset 0   magic "BITA1\0" (or the legacy "\0BITA1")
 *   offset 6   u64-LE size n of the protobuf ChunkDictionary
 *   offset 14  ChunkDictionary (n bytes)
 *   14+n       u64-LE chunk data offset, absolute
 *   22+n       BLAKE2b-512 of bytes 0..22+n
 *
 * Chunk archive offsets in the dictionary are relative to the chunk data
 * offset. Everything here is untrusted input. */
#pragma once

#include "codec.h"
#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_MAGIC_LEN 6u
#define ARCHIVE_PRE_HEADER_SIZE 14u
#define ARCHIVE_TRAILER_SIZE (8u + 64u)
/* A 64 GiB image at bita's smallest useful chunk size stays well below this. */
#define ARCHIVE_MAX_DICTIONARY_SIZE (64u << 20)

struct archive_metadata {
        char *key;
        uint8_t *value;
        size_t value_len;
};

struct archive {
        struct release *release;
        enum codec codec;
        uint32_t compression_level;
        uint64_t header_size;
        uint64_t chunk_data_offset;
        uint8_t header_checksum[HASH_MAX_LEN];
        uint64_t compressed_size; /* sum of the unique chunks' archive sizes */
        uint64_t chunk_data_end;  /* where the last chunk's data ends, absolute */
        struct archive_metadata *metadata;
        size_t n_metadata;
};

/* The magic ihop writes ("BITA1\0"). */
extern const uint8_t archive_magic[ARCHIVE_MAGIC_LEN];

/* Does buf (len bytes) start with a bita magic, current or legacy? */
bool archive_magic_ok(const uint8_t *buf, size_t len);

/* From the first ARCHIVE_PRE_HEADER_SIZE bytes, the length of the whole header. */
int archive_header_length(const uint8_t *pre, size_t len, const char *where, uint64_t *header_len);

/* Parses and checks a complete header (header_len bytes). */
int archive_parse(const uint8_t *buf, size_t len, const char *where, struct archive **out);
/* The same, taking buf (malloc'ed), which is freed as soon as the dictionary
 * is decoded: a header of many chunks is not held three times over (raw,
 * decoded, converted) at the peak. *buf is NULL afterwards. */
int archive_parse_take(uint8_t **buf, size_t len, const char *where, struct archive **out);

/* Checks that all chunk data lies within an archive of archive_size bytes. */
int archive_check_size(const struct archive *a, uint64_t archive_size, const char *where);

void archive_free(struct archive *a);

static inline void archive_freep(struct archive **a) { archive_free(*a); }
#define _cleanup_archive_ __attribute__((cleanup(archive_freep)))
