// SPDX-License-Identifier: MIT
/* ihop diff: what two images share, in chunks, as `bita diff` reports it,
 * and what B would cost to fetch into a store that holds A. Either input may
 * be an archive (file or URL): its dictionary stands in for chunking, and an
 * image compared with it is chunked with the archive's parameters. */
#pragma once

#include "http.h"

#include "codec.h"
#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct diff_options {
        const char *a, *b;
        struct chunker_params chunker; /* for images, when no archive says otherwise */
        bool chunker_given;            /* the user chose it (a mismatch is worth a warning) */
        enum codec codec;              /* to estimate what B's new chunks compress to */
        uint32_t level;
        unsigned jobs;
        const struct http_options *http; /* for an archive at a URL; NULL: the defaults */
};

struct diff_side {
        bool is_archive;
        size_t chunks;           /* in the image */
        size_t unique;
        uint64_t size;           /* image bytes */
        uint64_t unique_size;    /* bytes of the unique chunks */
};

struct diff_result {
        struct chunker_params chunker; /* what the images were chunked with */
        size_t hash_len;               /* bytes of the hashes compared */
        struct diff_side a, b;
        size_t shared;                 /* unique chunks in both */
        uint64_t shared_size;          /* their bytes, once each */
        uint64_t shared_in_b;          /* bytes of B's image they cover */
        size_t only_a, only_b;
        uint64_t only_a_size, only_b_size;
        /* What fetching B's chunks absent from A transfers: their archive sizes
         * when B is an archive, else an estimate by compressing them (as
         * compress would store them) or their plain size with CODEC_NONE. */
        uint64_t fetch_size;
        bool fetch_estimated;
};

int diff_run(const struct diff_options *o, struct diff_result *res);
