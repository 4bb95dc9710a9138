// SPDX-License-Identifier: MIT
/* An HTTP/1.1 server of the kernel NBD test's guest (which has no network
 * but its loopback): serves one file with range requests on 127.0.0.1,
 * answering each request as the mode file says at that moment:
 *
 *   ok      206 and the range
 *   drip    206 and the right headers, then a byte of the body every half
 *           second
 *   silent  nothing at all
 *   stall   206 and the first half of the body, then nothing
 *
 * Until the client goes away, or the mode file says something else (the
 * server "recovers": the connection is closed). Every request is logged
 * to the log file as "MODE START-END". A process per connection. Built by
 * tests/qemu/nbdvm.py for the guest (busybox's httpd has no such modes).
 *
 * usage: range-server PORT FILE MODE-FILE LOG-FILE */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *file, *mode_file, *log_file;

static void mode_now(char *out, size_t len)
{
        int fd = open(mode_file, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, out, len - 1) : -1;

        if (fd >= 0)
                close(fd);
        out[n > 0 ? n : 0] = '\0';
        out[strcspn(out, "\r\n ")] = '\0';
        if (!out[0])
                snprintf(out, len, "ok");
}

static int write_all(int fd, const char *p, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Waits while the mode is still `mode`, the client there and silent;
 * at most ms milliseconds (-1: for as long as that lasts). */
static void wait_while(int c, const char *mode, int ms)
{
        char now[32];

        for (int waited = 0; ms < 0 || waited < ms; waited += 100) {
                struct pollfd p = { c, POLLIN, 0 };
                char buf[4096];
                if (poll(&p, 1, 100) > 0 && read(c, buf, sizeof(buf)) <= 0)
                        return; /* gone */
                mode_now(now, sizeof(now));
                if (strcmp(now, mode) != 0)
                        return;
        }
}

/* One connection's requests, until it ends. */
static void serve(int c, const char *data, long long size)
{
        char req[8192], mode[32], head[256];
        size_t have = 0;

        for (;;) {
                char *end;
                while (!(end = memmem(req, have, "\r\n\r\n", 4))) {
                        if (have == sizeof(req))
                                return;
                        ssize_t n = read(c, req + have, sizeof(req) - have);
                        if (n <= 0)
                                return;
                        have += (size_t)n;
                }
                *end = '\0';
                long long a = 0, b = size - 1;
                const char *r = strstr(req, "\nRange: bytes=");
                if (!r)
                        r = strstr(req, "\nrange: bytes=");
                if (r && sscanf(r + 14, "%lld-%lld", &a, &b) < 1)
                        a = 0;
                if (b >= size)
                        b = size - 1;
                size_t used = (size_t)(end + 4 - req);
                memmove(req, req + used, have - used);
                have -= used;

                mode_now(mode, sizeof(mode));
                int logfd = open(log_file, O_WRONLY | O_APPEND | O_CREAT, 0644);
                if (logfd >= 0) {
                        dprintf(logfd, "%s %lld-%lld\n", mode, a, b);
                        close(logfd);
                }
                if (a > b || a >= size) {
                        static const char refused[] = "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n";
                        if (write_all(c, refused, sizeof(refused) - 1) < 0)
                                return;
                        continue;
                }
                long long len = b - a + 1;
                int n = snprintf(head, sizeof(head),
                                 "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %lld-%lld/%lld\r\n"
                                 "Content-Length: %lld\r\n\r\n",
                                 a, b, size, len);
                if (strcmp(mode, "silent") == 0) {
                        wait_while(c, mode, -1);
                        return;
                }
                if (write_all(c, head, (size_t)n) < 0)
                        return;
                if (strcmp(mode, "drip") == 0) {
                        for (long long i = a; i <= b; i++) {
                                char now[32];
                                nanosleep(&(struct timespec){ 0, 500 * 1000 * 1000 }, NULL);
                                mode_now(now, sizeof(now));
                                if (strcmp(now, mode) != 0 || write_all(c, data + i, 1) < 0)
                                        return;
                        }
                        continue;
                }
                if (strcmp(mode, "stall") == 0) {
                        if (write_all(c, data + a, (size_t)(len / 2)) == 0)
                                wait_while(c, mode, -1);
                        return;
                }
                if (write_all(c, data + a, (size_t)len) < 0)
                        return;
        }
}

int main(int argc, char **argv)
{
        if (argc != 5) {
                fprintf(stderr, "usage: range-server PORT FILE MODE-FILE LOG-FILE\n");
                return 2;
        }
        file = argv[2];
        mode_file = argv[3];
        log_file = argv[4];
        int fd = open(file, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                perror(file);
                return 1;
        }
        char *data = malloc((size_t)st.st_size + 1);
        if (!data || read(fd, data, (size_t)st.st_size) != st.st_size) {
                perror(file);
                return 1;
        }
        close(fd);
        signal(SIGCHLD, SIG_IGN); /* no zombies */
        signal(SIGPIPE, SIG_IGN);
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 64) < 0) {
                perror("listen");
                return 1;
        }
        for (;;) {
                int c = accept(s, NULL, NULL);
                if (c < 0)
                        continue;
                if (fork() == 0) {
                        close(s);
                        serve(c, data, (long long)st.st_size);
                        _exit(0);
                }
                close(c);
        }
}
