// SPDX-License-Identifier: MIT
/* The normal suite's side of the fuzz targets: linked (with gcc, without
 * libFuzzer) into each target, it runs every file of the directories given
 * as arguments (the seed corpus and the regression corpus) through
 * LLVMFuzzerTestOneInput once. A crash, an abort or a sanitizer report
 * fails the test; so does a run that found no input at all. */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;

        if (!f) {
                fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
                return -1;
        }
        for (;;) {
                if (len == cap) {
                        cap = cap ? 2 * cap : 4096;
                        uint8_t *nb = realloc(buf, cap);
                        if (!nb) {
                                fclose(f);
                                free(buf);
                                return -1;
                        }
                        buf = nb;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        fclose(f);
        /* An exact-size copy, as libFuzzer passes it: ASan sees any read past the end. */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) {
                free(buf);
                return -1;
        }
        memcpy(exact, buf, len);
        free(buf);
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        return 0;
}

/* A directory that does not exist counts as empty: git keeps no empty ones. */
static int replay_dir(const char *dir, size_t *count)
{
        struct dirent **names;
        int n = scandir(dir, &names, NULL, alphasort);
        int err = 0;

        if (n < 0)
                return errno == ENOENT ? 0 : -1;
        for (int i = 0; i < n; i++) {
                char path[4096];
                struct stat st;

                snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
                if (err == 0 && names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        err = replay_file(path);
                        (*count)++;
                }
                free(names[i]);
        }
        free(names);
        return err;
}

int main(int argc, char **argv)
{
        size_t count = 0;

        for (int i = 1; i < argc; i++)
                if (replay_dir(argv[i], &count) < 0)
                        return 1;
        if (count == 0) {
                fprintf(stderr, "replay: no inputs found\n");
                return 1;
        }
        printf("replayed %zu inputs\n", count);
        return 0;
}
