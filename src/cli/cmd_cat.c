// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "fsutil.h"
#include "image_export.h"
#include "log.h"
#include "release_file.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

/* A regular output file is written beside its name and renamed when correct. */
static int export_to_file(struct store *s, const struct release *r, const char *path)
{
        char tmp[PATH_MAX], prefix[PATH_MAX];
        struct stat st;
        int err;

        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
                if (fd < 0)
                        return log_errno(-errno, "cannot open %s", path);
                err = image_export(s, r, fd, path);
                if (err == 0 && fsync(fd) < 0)
                        err = log_errno(-errno, "cannot write %s", path);
                return err;
        }
        if (snprintf(prefix, sizeof(prefix), "%s.tmp-", path) >= (int)sizeof(prefix))
                return log_errno(-ENAMETOOLONG, "%s", path);
        /* Mode 0666 less the umask, as any program's output (and as compress's). */
        _cleanup_close_ int fd = create_unique_at(AT_FDCWD, prefix, tmp);
        if (fd < 0)
                return log_errno(fd, "cannot create a temp file beside %s", path);
        err = image_export(s, r, fd, path);
        if (err == 0 && fsync(fd) < 0)
                err = log_errno(-errno, "cannot write %s", path);
        if (err == 0 && rename(tmp, path) < 0)
                err = log_errno(-errno, "cannot rename %s to %s", tmp, path);
        if (err < 0)
                unlink(tmp);
        return err;
}

int cmd_cat(int argc, char **argv)
{
        static const struct cli_option options[] = {
                { .name = "output", .key = 'o', .arg = "FILE", .def = "standard output",
                  .help = "where the image goes; a regular FILE appears only when the image is complete and correct" },
                {}
        };
        static const struct cli_command cmd = {
                .name = "cat",
                .synopsis = "[-o FILE] STORE/NAME",
                .description = "Write the image of release NAME, put together from the chunk store and checked\n"
                               "against the image checksum.\n",
                .options = options,
                .min_operands = 1,
                .max_operands = 1,
        };
        _cleanup_store_ struct store *s = NULL;
        struct cli_parser p;
        struct release *r = NULL;
        const char *out = NULL;
        int c, err;

        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0)
                if (c == 'o')
                        out = p.arg;
        if (c < 0)
                return p.result;
        err = cli_check_release_operands(p.operands, 1);
        if (err != 0)
                return err;
        err = release_file_open(p.operands[0], &s, NULL, &r);
        if (err < 0)
                return err;
        if (out)
                err = export_to_file(s, r, out);
        else
                err = image_export(s, r, STDOUT_FILENO, "standard output");
        release_free(r);
        return err;
}
