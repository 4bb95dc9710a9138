// SPDX-License-Identifier: MIT
#include "progress_view.h"

#include "json_output.h"
#include "log.h"
#include "progress.h"
#include "text_escape.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* The rate is measured over the last few seconds, not since the start:
 * a clone's first phase says little about its network. */
#define RATE_SAMPLES 12 /* PROGRESS_INTERVAL_MS apart: some 3 s */
#define FINAL_WAIT_MS 1000

struct sample {
        double t;
        uint64_t bytes;
};

static struct {
        bool terminal;
        int json_fd;
        char phase[32];
        struct sample samples[RATE_SAMPLES];
        unsigned n_samples, next_sample;
} view = { .json_fd = -1 };

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes a second over the samples kept, 0 until there is enough to say. */
static double rate_of(const struct progress *p)
{
        double t = now_s();

        if (strncmp(view.phase, p->phase, sizeof(view.phase) - 1) != 0) {
                snprintf(view.phase, sizeof(view.phase), "%s", p->phase);
                view.n_samples = view.next_sample = 0;
        }
        view.samples[view.next_sample] = (struct sample){ t, p->bytes_done };
        view.next_sample = (view.next_sample + 1) % RATE_SAMPLES;
        if (view.n_samples < RATE_SAMPLES)
                view.n_samples++;
        const struct sample *oldest = &view.samples[view.n_samples < RATE_SAMPLES ? 0 : view.next_sample];
        if (t - oldest->t < 0.5 || p->bytes_done < oldest->bytes)
                return 0;
        return (double)(p->bytes_done - oldest->bytes) / (t - oldest->t);
}

static unsigned terminal_columns(void)
{
        struct winsize ws;

        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
                return ws.ws_col;
        return 80;
}

static void show_on_terminal(const struct progress *p, double rate)
{
        char line[256], done[32], total[32], speed[48] = "", left[32] = "", chunks[64] = "";
        unsigned cols = terminal_columns();
        int n;

        if (p->final) {
                log_progress_end();
                return;
        }
        format_size(p->bytes_done, done, sizeof(done));
        format_size(p->bytes_total, total, sizeof(total));
        if (rate > 0) {
                char r[32];
                snprintf(speed, sizeof(speed), "  %s/s", format_size((uint64_t)rate, r, sizeof(r)));
        }
        if (p->bytes_total && rate > 0 && p->bytes_done <= p->bytes_total) {
                uint64_t s = (uint64_t)((double)(p->bytes_total - p->bytes_done) / rate + 0.5);
                if (s < 3600)
                        snprintf(left, sizeof(left), "  %u:%02u left", (unsigned)(s / 60), (unsigned)(s % 60));
                else if (s < 100 * 3600)
                        snprintf(left, sizeof(left), "  %u:%02u:%02u left", (unsigned)(s / 3600),
                                 (unsigned)(s / 60 % 60), (unsigned)(s % 60));
        }
        if (p->chunks_total)
                snprintf(chunks, sizeof(chunks), "  %llu/%llu chunks", (unsigned long long)p->chunks_done,
                         (unsigned long long)p->chunks_total);
        if (p->bytes_total)
                n = snprintf(line, sizeof(line), "%-8s %3u%%  %s of %s%s%s%s", p->phase,
                             (unsigned)(p->bytes_done >= p->bytes_total ? 100 : p->bytes_done * 100 / p->bytes_total),
                             done, total, speed, left, chunks);
        else
                n = snprintf(line, sizeof(line), "%-8s %s%s%s", p->phase, done, speed, chunks);
        /* A line that wraps could not be redrawn in place. */
        if (n > 0 && (unsigned)n >= cols)
                line[cols - 1] = '\0';
        log_progress("%s", line);
}

/* Waits at most ms for room to write, or for an error that the write
 * will then tell (a reader gone: EPIPE); false when neither came. */
static bool writable(int fd, int ms)
{
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };

        for (;;) {
                int r = poll(&pfd, 1, ms);
                if (r < 0 && errno == EINTR)
                        continue;
                return r > 0;
        }
}

static void send_json(const struct progress *p)
{
        json_object *o = json_object_new_object();
        char *what = text_escape_for_json(p->what ? p->what : "");
        const char *text;
        size_t len;

        if (!o || !what) {
                json_object_put(o);
                free(what);
                return;
        }
        json_object_object_add(o, "phase", json_object_new_string(p->phase));
        json_object_object_add(o, "what", json_object_new_string(what));
        json_add_u64(o, "bytes_done", p->bytes_done);
        json_add_u64(o, "bytes_total", p->bytes_total);
        json_add_u64(o, "chunks_done", p->chunks_done);
        json_add_u64(o, "chunks_total", p->chunks_total);
        json_object_object_add(o, "final", json_object_new_boolean(p->final));
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        len = strlen(text);
        /* One write per line, shorter than PIPE_BUF: a reader never sees half a line. */
        char *buf = malloc(len + 1);
        if (buf && writable(view.json_fd, p->final ? FINAL_WAIT_MS : 0)) {
                memcpy(buf, text, len);
                buf[len] = '\n';
                ssize_t n;
                do
                        n = write(view.json_fd, buf, len + 1);
                while (n < 0 && errno == EINTR);
                if (n < 0 && errno != EAGAIN) {
                        log_warn("--progress-fd %d: %s; no more progress lines", view.json_fd, strerror(errno));
                        view.json_fd = -1;
                }
        }
        free(buf);
        free(what);
        json_object_put(o);
}

static void show(const struct progress *p, void *opaque)
{
        double rate = rate_of(p);

        if (view.terminal)
                show_on_terminal(p, rate);
        if (view.json_fd >= 0)
                send_json(p);
}

void progress_view_init(void)
{
        view.terminal = log_progress_enabled();
        if (view.terminal)
                progress_set_sink(show, NULL);
}

static const struct cli_option options[] = {
        { .name = "progress-fd", .key = OPT_PROGRESS_FD, .arg = "N",
          .help = "write progress as JSON lines to file descriptor N, for an update agent" },
        {}
};

const struct cli_option *progress_cli_options(void) { return options; }

int progress_cli_parse(const struct cli_parser *p, int opt)
{
        uint64_t fd;
        int flags;

        if (opt != OPT_PROGRESS_FD)
                return 0;
        if (parse_uint(p->arg, 65535, &fd) < 0 || (flags = fcntl((int)fd, F_GETFL)) < 0 ||
            (flags & O_ACCMODE) == O_RDONLY) {
                log_error("--progress-fd wants a file descriptor open for writing, not '%s'", p->arg);
                return CLI_USAGE;
        }
        view.json_fd = (int)fd;
        /* A reader that goes away must end the lines, not kill the job. */
        signal(SIGPIPE, SIG_IGN);
        progress_set_sink(show, NULL);
        return 0;
}
