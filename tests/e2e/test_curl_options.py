# SPDX-License-Identifier: MIT
"""Every libcurl option ihop sets is checked: a libcurl that refuses one
fails the transfer in one clear line instead of running without it. The
protocol restriction falls back to the bitmask options of libcurl before
7.85 and, when even those are refused, ihop refuses to fetch.

The libcurl here is a shim of the test's own, built with the system C
compiler and found first through LD_LIBRARY_PATH: it forwards every call to
the real libcurl (opened by its full path), answers CURLE_UNKNOWN_OPTION to
the options it is built to refuse, as an older libcurl does, and logs the
protocol options it is given."""

import os
import re
from pathlib import Path

import pytest

from fault_server import FaultServer
from ihop_run import FIXTURES, IHOP, assert_one_error_line, run
from store_checks import assert_clone_complete, assert_no_release_and_clean, chunk_files

SMALL = "rand-0_1_1-none.cba"

SHIM = r"""
#define CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_DEPRECATION
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void *real(const char *name)
{
        static void *lib;
        void *f;

        if (!lib)
                lib = dlopen(REAL_LIBCURL, RTLD_NOW | RTLD_LOCAL);
        f = lib ? dlsym(lib, name) : NULL;
        if (!f) {
                fprintf(stderr, "shim: no %s in %s\n", name, REAL_LIBCURL);
                abort();
        }
        return f;
}

static void shim_log(const char *fmt, ...)
{
        const char *path = getenv("SHIM_LOG");
        FILE *f = path ? fopen(path, "a") : NULL;
        va_list ap;

        if (!f)
                return;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fclose(f);
}

static const CURLoption refused[] = { REFUSED };

CURLcode curl_easy_setopt(CURL *c, CURLoption opt, ...)
{
        CURLcode (*f)(CURL *, CURLoption, ...) = (CURLcode (*)(CURL *, CURLoption, ...))real("curl_easy_setopt");
        CURLcode res;
        va_list ap;

        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                if (refused[i] == opt) {
                        shim_log("refused %d\n", (int)opt);
                        return CURLE_UNKNOWN_OPTION;
                }
        }
        va_start(ap, opt);
        if (opt < CURLOPTTYPE_OBJECTPOINT) {
                long v = va_arg(ap, long);
                if (opt == CURLOPT_PROTOCOLS || opt == CURLOPT_REDIR_PROTOCOLS)
                        shim_log("%s=%ld\n", opt == CURLOPT_PROTOCOLS ? "PROTOCOLS" : "REDIR_PROTOCOLS", v);
                res = f(c, opt, v);
        } else if (opt < CURLOPTTYPE_FUNCTIONPOINT) {
                void *v = va_arg(ap, void *);
                if (opt == CURLOPT_PROTOCOLS_STR || opt == CURLOPT_REDIR_PROTOCOLS_STR)
                        shim_log("%s=%s\n", opt == CURLOPT_PROTOCOLS_STR ? "PROTOCOLS_STR" : "REDIR_PROTOCOLS_STR",
                                 (const char *)v);
                res = f(c, opt, v);
        } else if (opt < CURLOPTTYPE_OFF_T) {
                void (*v)(void) = va_arg(ap, void (*)(void));
                res = f(c, opt, v);
        } else if (opt < CURLOPTTYPE_BLOB) {
                curl_off_t v = va_arg(ap, curl_off_t);
                res = f(c, opt, v);
        } else {
                void *v = va_arg(ap, void *);
                res = f(c, opt, v);
        }
        va_end(ap);
        return res;
}

CURLcode curl_easy_getinfo(CURL *c, CURLINFO info, ...)
{
        CURLcode (*f)(CURL *, CURLINFO, ...) = (CURLcode (*)(CURL *, CURLINFO, ...))real("curl_easy_getinfo");
        va_list ap;
        void *p;

        va_start(ap, info);
        p = va_arg(ap, void *);
        va_end(ap);
        return f(c, info, p);
}

#define FORWARD(ret, name, params, args) \
        ret name params { return ((ret(*) params)real(#name)) args; }

FORWARD(CURLcode, curl_global_init, (long flags), (flags))
FORWARD(CURL *, curl_easy_init, (void), ())
FORWARD(CURLcode, curl_easy_perform, (CURL *c), (c))
FORWARD(const char *, curl_easy_strerror, (CURLcode code), (code))
FORWARD(struct curl_slist *, curl_slist_append, (struct curl_slist *l, const char *s), (l, s))
FORWARD(curl_version_info_data *, curl_version_info, (CURLversion age), (age))

void curl_global_cleanup(void) { ((void (*)(void))real("curl_global_cleanup"))(); }
void curl_easy_reset(CURL *c) { ((void (*)(CURL *))real("curl_easy_reset"))(c); }
void curl_easy_cleanup(CURL *c) { ((void (*)(CURL *))real("curl_easy_cleanup"))(c); }
void curl_slist_free_all(struct curl_slist *l) { ((void (*)(struct curl_slist *))real("curl_slist_free_all"))(l); }
"""


@pytest.fixture(scope="session")
def real_libcurl():
    """The full path of the libcurl.so.4 the system's loader would find."""
    r = run(["cc", "-print-file-name=libcurl.so.4"])
    path = Path(r.stdout.strip())
    assert r.returncode == 0 and path.is_absolute() and path.exists(), f"no libcurl.so.4 found: {r.stdout}{r.stderr}"
    return path.resolve()


def build_shim(tmp_path, real_libcurl, *refused) -> dict:
    """Builds the shim refusing the named options; returns the environment
    that makes ihop load it, logging to tmp_path/shim.log."""
    libdir = tmp_path / "lib"
    libdir.mkdir()
    src = libdir / "shim.c"
    src.write_text(SHIM)
    r = run(["cc", "-shared", "-fPIC", "-Wall", "-o", libdir / "libcurl.so.4", src,
             f'-DREAL_LIBCURL="{real_libcurl}"', f"-DREFUSED={','.join(refused)}", "-ldl"])
    assert r.returncode == 0, r.stderr
    return dict(os.environ, LD_LIBRARY_PATH=str(libdir), SHIM_LOG=str(tmp_path / "shim.log"))


def shim_log(tmp_path) -> list:
    log = tmp_path / "shim.log"
    return log.read_text().splitlines() if log.exists() else []


def clone_with(env, source, dest, *opts):
    return run([IHOP, "clone", *opts, source, dest], env=env)


def test_shim_forwards_to_the_real_libcurl(tmp_path, archives, real_libcurl):
    """The control: refusing an option ihop does not use, the shim is
    invisible, and it sees the protocol restriction set."""
    env = build_shim(tmp_path, real_libcurl, "CURLOPT_VERBOSE")
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        r = clone_with(env, srv.url, store / "rel")
    assert r.returncode == 0, r.stderr
    assert_clone_complete(store, "rel", archives[SMALL])
    log = shim_log(tmp_path)
    assert "PROTOCOLS_STR=http,https" in log and "REDIR_PROTOCOLS_STR=http,https" in log, log
    assert not any(l.startswith("refused") for l in log)


def test_without_protocols_str_the_bitmask_restricts(tmp_path, archives, real_libcurl):
    """A libcurl before 7.85 knows no CURLOPT_PROTOCOLS_STR: the bitmask
    options restrict to http and https instead, and the clone works."""
    env = build_shim(tmp_path, real_libcurl, "CURLOPT_PROTOCOLS_STR", "CURLOPT_REDIR_PROTOCOLS_STR")
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        r = clone_with(env, srv.url, store / "rel")
        n_requests = len(srv.requests)
    assert r.returncode == 0, r.stderr
    assert_clone_complete(store, "rel", archives[SMALL])
    log = shim_log(tmp_path)
    http_https = 1 | 2  # CURLPROTO_HTTP | CURLPROTO_HTTPS
    requests_made = log.count(f"PROTOCOLS={http_https}")
    assert requests_made == n_requests and log.count(f"REDIR_PROTOCOLS={http_https}") == n_requests, log
    assert not any(l.startswith(("PROTOCOLS_STR", "REDIR_PROTOCOLS_STR")) for l in log)


def test_without_protocols_str_a_redirect_to_ftp_is_refused(tmp_path, real_libcurl):
    env = build_shim(tmp_path, real_libcurl, "CURLOPT_PROTOCOLS_STR", "CURLOPT_REDIR_PROTOCOLS_STR")
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        target = f"ftp://127.0.0.1:{srv.server_address[1]}/x.cba"
        srv.redirects["/moved.cba"] = (302, target)
        url = f"http://127.0.0.1:{srv.server_address[1]}/moved.cba"
        r = clone_with(env, url, store / "rel", "--http-retry-delay", "0")
        n_requests = len(srv.requests)
    assert_one_error_line(r, url, target, "refusing")
    assert n_requests == 1
    assert "PROTOCOLS=3" in shim_log(tmp_path)
    assert_no_release_and_clean(store, "rel")


def test_libcurl_that_cannot_restrict_protocols_is_refused(tmp_path, real_libcurl):
    env = build_shim(tmp_path, real_libcurl, "CURLOPT_PROTOCOLS_STR", "CURLOPT_REDIR_PROTOCOLS_STR",
                     "CURLOPT_PROTOCOLS", "CURLOPT_REDIR_PROTOCOLS")
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        r = clone_with(env, srv.url, store / "rel")
        n_requests = len(srv.requests)
    line = assert_one_error_line(r, srv.url, "cannot restrict protocols", "refusing to fetch")
    assert re.search(r"libcurl \d+\.\d+\.\d+ cannot restrict protocols", line), line
    assert n_requests == 0  # not retried, nothing sent
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


@pytest.mark.parametrize("option", ["CURLOPT_USERAGENT", "CURLOPT_FOLLOWLOCATION", "CURLOPT_WRITEFUNCTION"])
def test_any_refused_option_fails_in_one_line(tmp_path, real_libcurl, option):
    env = build_shim(tmp_path, real_libcurl, option)
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        r = clone_with(env, srv.url, store / "rel")
        n_requests = len(srv.requests)
    line = assert_one_error_line(r, srv.url, f"refuses {option}")
    assert "unknown option" in line.lower()
    assert n_requests == 0
    assert_no_release_and_clean(store, "rel")
