// SPDX-License-Identifier: MIT
#include "http_response.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The unread part [p, end) of a header line. */
struct span {
        const char *p, *end;
};

static bool at_end(const struct span *s)
{
        return s->p == s->end;
}

static char ascii_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool eat_char(struct span *s, char c)
{
        if (at_end(s) || *s->p != c)
                return false;
        s->p++;
        return true;
}

/* Consumes `word` if the span starts with it (ASCII, case as asked). */
static bool eat_word(struct span *s, const char *word, bool ignore_case)
{
        size_t n = strlen(word);

        if ((size_t)(s->end - s->p) < n)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s->p[i];
                if (ignore_case ? ascii_lower(c) != ascii_lower(word[i]) : c != word[i])
                        return false;
        }
        s->p += n;
        return true;
}

static void skip_ows(struct span *s)
{
        while (!at_end(s) && (*s->p == ' ' || *s->p == '\t'))
                s->p++;
}

/* One or more decimal digits. A value past UINT64_MAX sets *overflow and
 * saturates; every digit is consumed either way. */
static bool eat_digits(struct span *s, uint64_t *v, bool *overflow)
{
        const char *start = s->p;

        *v = 0;
        *overflow = false;
        while (!at_end(s) && *s->p >= '0' && *s->p <= '9') {
                unsigned d = (unsigned)(*s->p - '0');
                if (*v > (UINT64_MAX - d) / 10) {
                        *overflow = true;
                        *v = UINT64_MAX;
                } else if (!*overflow) {
                        *v = *v * 10 + d;
                }
                s->p++;
        }
        return s->p != start;
}

static bool eat_u64(struct span *s, uint64_t *v)
{
        bool overflow;

        return eat_digits(s, v, &overflow) && !overflow;
}

/* Exactly n digits. */
static bool eat_fixed(struct span *s, int n, int *v)
{
        *v = 0;
        for (int i = 0; i < n; i++) {
                if (at_end(s) || *s->p < '0' || *s->p > '9')
                        return false;
                *v = *v * 10 + (*s->p++ - '0');
        }
        return true;
}

/* If the line is the header field `name` (no space before the colon, as
 * RFC 9110 requires), *value gets its value without surrounding spaces. */
static bool field_value(struct span line, const char *name, struct span *value)
{
        if (!eat_word(&line, name, true) || !eat_char(&line, ':'))
                return false;
        skip_ows(&line);
        *value = line;
        return true;
}

/* "bytes FIRST-LAST/TOTAL", TOTAL a number or a star (RFC 9110 14.4). The
 * unsatisfied-range form, a star in place of FIRST-LAST, carries no range:
 * unusable. */
static void read_content_range(struct http_response *r, struct span v)
{
        uint64_t first, last, total = 0;
        bool total_known;

        if (r->range_seen) {
                /* Two of them: neither can be believed. */
                r->range_valid = false;
                return;
        }
        r->range_seen = true;
        if (!eat_word(&v, "bytes", true) || !eat_char(&v, ' '))
                return;
        skip_ows(&v);
        if (!eat_u64(&v, &first) || !eat_char(&v, '-') || !eat_u64(&v, &last) || !eat_char(&v, '/'))
                return;
        if (eat_char(&v, '*'))
                total_known = false;
        else if (eat_u64(&v, &total))
                total_known = true;
        else
                return;
        if (!at_end(&v) || first > last || (total_known && last >= total))
                return;
        r->range_valid = true;
        r->range_first = first;
        r->range_last = last;
        r->total_known = total_known;
        r->range_total = total;
}

static const char *const month_names[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const day_names[7] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const long_day_names[7] = { "Monday", "Tuesday", "Wednesday", "Thursday",
                                               "Friday", "Saturday", "Sunday" };

static bool eat_name(struct span *s, const char *const *names, int n, int *index)
{
        for (int i = 0; i < n; i++) {
                if (eat_word(s, names[i], false)) {
                        *index = i;
                        return true;
                }
        }
        return false;
}

struct civil_time {
        int year, month, day; /* month 1-12 */
        int hour, minute, second;
};

static bool eat_clock(struct span *s, struct civil_time *t)
{
        return eat_fixed(s, 2, &t->hour) && eat_char(s, ':') && eat_fixed(s, 2, &t->minute) && eat_char(s, ':') &&
               eat_fixed(s, 2, &t->second);
}

static bool eat_month(struct span *s, struct civil_time *t)
{
        int m;

        if (!eat_name(s, month_names, 12, &m))
                return false;
        t->month = m + 1;
        return true;
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool parse_imf_fixdate(struct span s, struct civil_time *t)
{
        int wd;

        return eat_name(&s, day_names, 7, &wd) && eat_word(&s, ", ", false) && eat_fixed(&s, 2, &t->day) &&
               eat_char(&s, ' ') && eat_month(&s, t) && eat_char(&s, ' ') && eat_fixed(&s, 4, &t->year) &&
               eat_char(&s, ' ') && eat_clock(&s, t) && eat_word(&s, " GMT", false) && at_end(&s);
}

/* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT"; the century is resolved
 * by the caller. */
static bool parse_rfc850_date(struct span s, struct civil_time *t)
{
        int wd;

        return eat_name(&s, long_day_names, 7, &wd) && eat_word(&s, ", ", false) && eat_fixed(&s, 2, &t->day) &&
               eat_char(&s, '-') && eat_month(&s, t) && eat_char(&s, '-') && eat_fixed(&s, 2, &t->year) &&
               eat_char(&s, ' ') && eat_clock(&s, t) && eat_word(&s, " GMT", false) && at_end(&s);
}

/* asctime-date: "Sun Nov  6 08:49:37 1994" */
static bool parse_asctime_date(struct span s, struct civil_time *t)
{
        int wd;

        if (!eat_name(&s, day_names, 7, &wd) || !eat_char(&s, ' ') || !eat_month(&s, t) || !eat_char(&s, ' '))
                return false;
        if (eat_char(&s, ' ')) {
                if (!eat_fixed(&s, 1, &t->day))
                        return false;
        } else if (!eat_fixed(&s, 2, &t->day)) {
                return false;
        }
        return eat_char(&s, ' ') && eat_clock(&s, t) && eat_char(&s, ' ') && eat_fixed(&s, 4, &t->year) &&
               at_end(&s);
}

static bool is_leap(int y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool civil_time_valid(const struct civil_time *t)
{
        static const int month_days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        int days;

        if (t->month < 1 || t->month > 12 || t->hour > 23 || t->minute > 59 || t->second > 60)
                return false;
        days = month_days[t->month - 1] + (t->month == 2 && is_leap(t->year));
        return t->day >= 1 && t->day <= days;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (years 0-9999 here). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static int64_t civil_to_epoch(const struct civil_time *t)
{
        return days_from_civil(t->year, t->month, t->day) * 86400 + t->hour * 3600 + t->minute * 60 + t->second;
}

/* An HTTP-date (RFC 9110 5.6.7, all three formats), in seconds since the epoch. */
static bool parse_http_date(struct span s, time_t now, int64_t *out)
{
        struct civil_time t = { 0 };

        if (parse_rfc850_date(s, &t)) {
                /* A two-digit year more than 50 years ahead is in the past century (RFC 9110). */
                struct tm now_tm;
                int this_year = gmtime_r(&now, &now_tm) ? now_tm.tm_year + 1900 : 1970;
                t.year += this_year - this_year % 100;
                if (t.year > this_year + 50)
                        t.year -= 100;
        } else if (!parse_imf_fixdate(s, &t) && !parse_asctime_date(s, &t)) {
                return false;
        }
        if (!civil_time_valid(&t))
                return false;
        *out = civil_to_epoch(&t);
        return true;
}

/* delta-seconds or an HTTP-date; anything else is ignored. */
static void read_retry_after(struct http_response *r, struct span v, time_t now)
{
        struct span d = v;
        uint64_t secs;
        bool overflow;
        int64_t when;

        if (eat_digits(&d, &secs, &overflow) && at_end(&d)) {
                r->retry_after_s = secs < HTTP_MAX_RETRY_AFTER_S ? (unsigned)secs : HTTP_MAX_RETRY_AFTER_S;
        } else if (parse_http_date(v, now, &when)) {
                /* A date in the past means now; now itself may be anything (fuzzing). */
                int64_t n = (int64_t)now;
                if (when <= n)
                        r->retry_after_s = 0;
                else if (n < 0 && when > INT64_MAX + n)
                        r->retry_after_s = HTTP_MAX_RETRY_AFTER_S;
                else
                        r->retry_after_s = when - n < HTTP_MAX_RETRY_AFTER_S ? (unsigned)(when - n)
                                                                              : HTTP_MAX_RETRY_AFTER_S;
        }
}

void http_response_init(struct http_response *r)
{
        *r = (struct http_response){ 0 };
}

void http_response_header(struct http_response *r, const char *line, size_t len, time_t now)
{
        struct span s = { line, line + len }, value, status_line;

        /* The line ending and the value's trailing spaces are not part of it. */
        while (s.end > s.p && (s.end[-1] == '\n' || s.end[-1] == '\r' || s.end[-1] == ' ' || s.end[-1] == '\t'))
                s.end--;
        status_line = s;
        if (eat_word(&status_line, "HTTP/", false))
                http_response_init(r);
        else if (field_value(s, "Content-Range", &value))
                read_content_range(r, value);
        else if (field_value(s, "Retry-After", &value))
                read_retry_after(r, value, now);
}

enum http_verdict http_response_check(const struct http_response *r, long status, uint64_t start, uint64_t len,
                                      bool need_total, char *reason, size_t reason_size)
{
        uint64_t last;

        if (status == 200) {
                snprintf(reason, reason_size,
                         "the server ignored the Range request (answered 200, not 206); ihop needs HTTP range support");
                return HTTP_VERDICT_NO_RANGES;
        }
        if (status != 206) {
                snprintf(reason, reason_size, "HTTP status %ld", status);
                /* 408 Request Timeout and 429 Too Many Requests are worth another try. */
                if (status >= 400 && status < 500 && status != 408 && status != 429)
                        return HTTP_VERDICT_PERMANENT;
                return HTTP_VERDICT_RETRY;
        }
        if (len == 0 || len - 1 > UINT64_MAX - start) {
                snprintf(reason, reason_size, "no range of %" PRIu64 " bytes at byte %" PRIu64 " exists", len,
                         start);
                return HTTP_VERDICT_PERMANENT;
        }
        last = start + len - 1;
        if (!r->range_seen) {
                snprintf(reason, reason_size,
                         "the server sent no Content-Range (asked for bytes %" PRIu64 "-%" PRIu64 ")", start, last);
                return HTTP_VERDICT_RETRY;
        }
        if (!r->range_valid) {
                snprintf(reason, reason_size,
                         "the server sent a malformed Content-Range (asked for bytes %" PRIu64 "-%" PRIu64 ")",
                         start, last);
                return HTTP_VERDICT_RETRY;
        }
        if (r->range_first != start || r->range_last != last) {
                snprintf(reason, reason_size,
                         "the server sent a wrong Content-Range (asked for bytes %" PRIu64 "-%" PRIu64
                         ", got %" PRIu64 "-%" PRIu64 ")",
                         start, last, r->range_first, r->range_last);
                return HTTP_VERDICT_RETRY;
        }
        if (need_total && !r->total_known) {
                snprintf(reason, reason_size, "the server did not say the resource's size (Content-Range total \"*\")");
                return HTTP_VERDICT_PERMANENT;
        }
        return HTTP_VERDICT_OK;
}
