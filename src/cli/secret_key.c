// SPDX-License-Identifier: MIT
#include "secret_key.h"

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PASSWORD_MAX 1024

/* One line from fd into buf (PASSWORD_MAX bytes), without its end. */
static int read_line(int fd, char *buf)
{
        size_t n = 0;

        for (;;) {
                char ch;
                ssize_t r = read(fd, &ch, 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0 || ch == '\n')
                        break;
                if (n + 1 >= PASSWORD_MAX)
                        return -E2BIG;
                buf[n++] = ch;
        }
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = '\0';
        return 0;
}

/* From the terminal, not echoed. */
static int read_hidden(const char *prompt, char *buf)
{
        struct termios saved, quiet;
        int err;

        if (tcgetattr(STDIN_FILENO, &saved) < 0)
                return -errno;
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        fputs(prompt, stderr);
        fflush(stderr);
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
                return -errno;
        err = read_line(STDIN_FILENO, buf);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        return err;
}

void password_free(char *p) { sodium_free(p); }

int password_read(const char *prompt, bool confirm, char **out)
{
        char *pw = sodium_malloc(PASSWORD_MAX), *again = NULL;
        bool tty = isatty(STDIN_FILENO);
        int err;

        if (!pw)
                return log_errno(-ENOMEM, "reading the password");
        err = tty ? read_hidden(prompt, pw) : read_line(STDIN_FILENO, pw);
        if (err == 0 && tty && confirm) {
                again = sodium_malloc(PASSWORD_MAX);
                err = again ? read_hidden("Password (again): ", again) : -ENOMEM;
                if (err == 0 && strcmp(pw, again) != 0) {
                        log_error("the passwords do not match");
                        err = -EINVAL;
                }
                sodium_free(again);
        }
        if (err == -E2BIG)
                log_error("the password is longer than %d bytes", PASSWORD_MAX - 1);
        else if (err < 0 && err != -EINVAL)
                log_errno(err, "cannot read the password");
        if (err < 0) {
                sodium_free(pw);
                return err;
        }
        *out = pw;
        return 0;
}

int secret_key_load(const char *path, bool stdin_busy, struct minisign_secret_key **out)
{
        _cleanup_free_ uint8_t *text = NULL;
        struct minisign_secret_key_file *f = sodium_malloc(sizeof(*f));
        struct minisign_secret_key *sk = minisign_secret_key_new();
        char *password = NULL;
        mode_t type;
        size_t len = 0;
        int err;

        if (!f || !sk) {
                err = log_errno(-ENOMEM, "reading %s", path);
                goto out;
        }
        err = read_file_bounded(path, MINISIGN_KEY_FILE_MAX, &text, &len, &type);
        if (err == -EFBIG) {
                log_error("%s: not a minisign secret key: larger than %d bytes", path, MINISIGN_KEY_FILE_MAX);
                err = -EBADMSG;
                goto out;
        }
        if (err == -EINVAL) {
                log_error("secret key %s is %s, not a regular file: refusing", path, file_type_name(type));
                goto out;
        }
        if (err < 0) {
                log_errno(err, "cannot read secret key %s", path);
                goto out;
        }
        err = minisign_secret_key_parse(text, len, path, f);
        sodium_memzero(text, len);
        if (err < 0)
                goto out;
        if (f->encrypted && stdin_busy) {
                log_error("%s is encrypted, and its password cannot come from standard input, which carries the "
                          "image: give the image with -i",
                          path);
                err = -EINVAL;
                goto out;
        }
        if (f->encrypted) {
                _cleanup_free_ char *prompt = NULL;
                if (asprintf(&prompt, "Password for %s: ", path) < 0) {
                        prompt = NULL;
                        err = log_errno(-ENOMEM, "reading %s", path);
                        goto out;
                }
                err = password_read(prompt, false, &password);
                if (err < 0)
                        goto out;
        }
        err = minisign_secret_key_unlock(f, password, path, sk);
        if (err == 0)
                *out = TAKE_PTR(sk);
out:
        password_free(password);
        sodium_free(f);
        minisign_secret_key_free(sk);
        return err;
}
