// SPDX-License-Identifier: MIT
/* ihop compress: an image into a bita archive, as `bita compress` makes it.
 *
 * The image is chunked and hashed on all cores (chunk_pipeline.h); the first
 * occurrence of each chunk is compressed by whichever worker meets it first,
 * and the chunk data is written in order of first occurrence, each chunk
 * once: compressed, or raw when compressing does not make it smaller (its
 * archive size then equals its source size, which is how bita marks it). */
#pragma once

#include "archive.h"
#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct compress_options {
        int input_fd;
        const char *input_name;  /* for messages */
        const char *output;      /* the archive to write */
        bool force;              /* replace an existing output */
        struct chunker_params chunker; /* hash_length: bytes of each chunk hash kept */
        enum codec codec;
        uint32_t level;
        unsigned jobs;           /* worker threads; 0: one per CPU */
        const struct archive_metadata *metadata; /* unique keys, in the order to write */
        size_t n_metadata;
        bool progress;
};

struct compress_result {
        uint64_t image_size;
        size_t chunks;           /* in the image */
        size_t unique_chunks;
        size_t raw_chunks;       /* stored uncompressed */
        uint64_t chunk_data_size;
        uint64_t header_size;
        uint8_t header_checksum[HASH_MAX_LEN];
};

/* Logs its errors; on failure nothing is left under the output's name. */
int compress_run(const struct compress_options *o, struct compress_result *res);
