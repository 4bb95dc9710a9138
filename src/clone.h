// SPDX-License-Identifier: MIT
/* ihop clone: a bita archive into a chunk store, fetching only the chunks
 * the store lacks. */
#pragma once

#include "archive_trust.h"
#include "hash.h"
#include "http.h"
#include "minisign.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct clone_options {
        const char *source;     /* path or http(s) URL of the .cba */
        const char *store_path;
        const char *name;
        bool naive;             /* trust chunks present in the store without hashing them */
        bool force;             /* replace an existing release */
        uint8_t header_checksum[HASH_MAX_LEN];
        size_t header_checksum_len; /* 0: not pinned */
        unsigned jobs;          /* parallel requests/threads; 0: automatic */
        const char **seeds;     /* files or block devices ("-": stdin) to take chunks from first */
        size_t n_seeds;
        struct http_options http;
        struct trust_policy trust; /* signed releases */
};

struct clone_result {
        uint64_t image_size;
        size_t chunks_total;    /* image positions */
        size_t chunks_unique;
        size_t chunks_reused;
        uint64_t bytes_reused;
        size_t chunks_fetched;
        uint64_t bytes_fetched;            /* uncompressed bytes written */
        uint64_t bytes_fetched_compressed; /* chunk bytes read from the archive */
        uint64_t bytes_downloaded;         /* from the network, headers included */
        uint64_t archive_size;
        uint64_t header_size;
        size_t chunks_corrupt_in_store;
        size_t chunks_recovered; /* of chunks_reused: left complete by an interrupted clone */
        size_t chunks_seeded;    /* taken from seeds */
        uint64_t bytes_seeded;
        bool signature_checked;
        uint64_t release_version;                  /* signed, when signature_checked */
        uint8_t signer_id[MINISIGN_KEY_ID_LEN];
};

int clone_run(const struct clone_options *o, struct clone_result *res);

/* Repairing a stored release: the chunks of STORE/NAME that are missing or
 * corrupt are looked up by hash in the archive's dictionary, fetched, and
 * each verified against the release's own hash before it is stored. Only
 * chunk files are written, never the release description: an archive that
 * lies (another image's chunks under this image's checksum) can at worst
 * fail to repair. Chunks the archive lacks are listed on stdout. */
struct repair_options {
        const char *source;  /* path or http(s) URL of the .cba */
        const char *release; /* STORE/NAME */
        unsigned jobs;       /* 0: automatic */
        struct http_options http;
        /* Told of each damaged chunk the archive lacks (its path as messages
         * show it); NULL: a "not repairable: PATH is not in SOURCE" line. */
        void (*unavailable)(const char *path, void *opaque);
        void *opaque;
};

struct repair_result {
        size_t chunks_damaged;     /* missing or corrupt in the store */
        size_t chunks_fetched;
        size_t chunks_unavailable; /* damaged and not in the archive */
};

int clone_repair(const struct repair_options *o, struct repair_result *res);
