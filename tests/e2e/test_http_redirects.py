# SPDX-License-Identifier: MIT
"""Redirects: ihop follows them itself, keeps --http-header values within the
origin (scheme, host, port) it was given, never goes from https to http,
and never hands a redirect's body to the clone.

The TLS servers use a certificate made for the test with the openssl
command; ihop trusts it when told to with --http-cacert, and refuses it
otherwise. Nothing of the machine's changes."""

import shutil
import ssl

import pytest

from fault_server import FaultServer
from ihop_run import FIXTURES, IHOP, assert_one_error_line, clone, clone_ok, run
from store_checks import assert_clone_complete, assert_no_release_and_clean, chunk_files

SMALL = "rand-0_1_1-none.cba"
SECRETS = ["--http-header", "X-Api-Key: s3cret", "--http-header", "Authorization: Bearer t0ken"]


def has_secrets(headers) -> bool:
    return headers.get("X-Api-Key") == "s3cret" and headers.get("Authorization") == "Bearer t0ken"


def leaked(headers) -> bool:
    return "X-Api-Key" in headers or "Authorization" in headers


def port_of(srv) -> int:
    return srv.server_address[1]


def requests_of(srv) -> list:
    with srv.lock:
        return list(srv.requests)


# --------------------------------------------------------------------------
# Plain HTTP


@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_same_origin_redirect_keeps_the_headers(tmp_path, archives, form):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        target = srv.path if form == "relative" else srv.url
        srv.redirects["/moved.cba"] = (302, target)
        moved = f"http://127.0.0.1:{port_of(srv)}/moved.cba"
        clone_ok(moved, store / "rel", *SECRETS)
        reqs = requests_of(srv)
    assert {p for p, _, _ in reqs} == {"/moved.cba", srv.path}
    assert all(has_secrets(h) for _, _, h in reqs), reqs
    assert_clone_complete(store, "rel", archives[SMALL])


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_another_port_drops_the_headers(tmp_path, archives, status):
    """127.0.0.1 on another port is another origin: it gets the requests,
    never the headers, while the server given keeps getting them."""
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as other, FaultServer(FIXTURES / SMALL) as given:
        given.redirects["/moved.cba"] = (status, other.url)
        moved = f"http://127.0.0.1:{port_of(given)}/moved.cba"
        clone_ok(moved, store / "rel", *SECRETS)
        to_given, to_other = requests_of(given), requests_of(other)
    assert len(to_given) >= 3 and all(p == "/moved.cba" and has_secrets(h) for p, _, h in to_given)
    assert len(to_other) == len(to_given)  # every request was redirected once
    assert not any(leaked(h) for _, _, h in to_other), to_other
    assert all(h.get("User-Agent", "").startswith("ihop/") and r for _, r, h in to_other)
    assert_clone_complete(store, "rel", archives[SMALL])


def test_headers_stay_dropped_when_the_chain_comes_back(tmp_path, archives):
    """given -> other -> given: the way back was chosen by the other server,
    so the second request to the given origin goes without the headers."""
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as given, FaultServer(FIXTURES / SMALL) as other:
        given.redirects["/moved.cba"] = (302, other.url.replace(other.path, "/bounce.cba"))
        other.redirects["/bounce.cba"] = (302, given.url)
        moved = f"http://127.0.0.1:{port_of(given)}/moved.cba"
        clone_ok(moved, store / "rel", *SECRETS)
        to_given = requests_of(given)
    first = [h for p, _, h in to_given if p == "/moved.cba"]
    back = [h for p, _, h in to_given if p == given.path]
    assert first and all(has_secrets(h) for h in first)
    assert len(back) == len(first) and not any(leaked(h) for h in back)
    assert_clone_complete(store, "rel", archives[SMALL])


def redirect_body(size) -> bytes:
    """Archive bytes, which would pass for data of the range if ihop took them."""
    data = (FIXTURES / SMALL).read_bytes()
    return (data * (size // len(data) + 1))[:size]


@pytest.mark.parametrize("body_size", [0, 100, 60 << 10])
def test_redirect_bodies_never_reach_the_clone(tmp_path, archives, body_size):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, redirect_body=redirect_body(body_size)) as srv:
        srv.redirects["/moved.cba"] = (302, srv.path)
        clone_ok(f"http://127.0.0.1:{port_of(srv)}/moved.cba", store / "rel")
    assert_clone_complete(store, "rel", archives[SMALL])


def test_redirect_with_a_huge_body_fails_once(tmp_path):
    """ihop reads a redirect's body to its end (libcurl says where a redirect
    leads only then), up to 64 KiB: no redirect page is longer."""
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, redirect_body=redirect_body(300 << 10)) as srv:
        srv.redirects["/moved.cba"] = (302, srv.path)
        url = f"http://127.0.0.1:{port_of(srv)}/moved.cba"
        r = clone(url, store / "rel", "--http-retry-delay", "0")
        n = len(requests_of(srv))
    assert_one_error_line(r, url, "redirect with a body of more than 64 KiB")
    assert n == 1
    assert_no_release_and_clean(store, "rel")


def test_redirect_loop_fails_once_without_retries(tmp_path):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        srv.redirects["/loop.cba"] = (302, "/loop.cba")
        url = f"http://127.0.0.1:{port_of(srv)}/loop.cba"
        r = clone(url, store / "rel", "--http-retry-count", "3", "--http-retry-delay", "0")
        n = len(requests_of(srv))
    assert_one_error_line(r, url, "more than 10 redirects")
    assert n == 11  # the request and 10 redirects, not retried
    assert_no_release_and_clean(store, "rel")


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:{port}/x.cba", "file:///etc/passwd", "gopher://127.0.0.1/x"])
def test_redirect_to_another_scheme_is_refused(tmp_path, target):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        target = target.format(port=port_of(srv))
        srv.redirects["/moved.cba"] = (302, target)
        url = f"http://127.0.0.1:{port_of(srv)}/moved.cba"
        r = clone(url, store / "rel", "--http-retry-delay", "0")
        n = len(requests_of(srv))
    assert_one_error_line(r, url, target, "refusing")
    assert n == 1
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


# --------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (directory holding it as
    ca-certificates.crt, certificate file, key file). ihop is told to trust
    it with --http-cacert: nothing of the machine's changes."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("the openssl command is missing (scripts/install-deps.sh installs it)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    r = run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
    assert r.returncode == 0, r.stderr
    certs = d / "certs"
    certs.mkdir()
    shutil.copy(cert, certs / "ca-certificates.crt")
    return certs, cert, key


def ihop_trusting(tls_ca, command, *args):
    """Runs `ihop COMMAND --http-cacert CERT ARGS...`: the test's CA alone is trusted."""
    return run([IHOP, command, "--http-cacert", tls_ca[1], *args])


class TlsServer(FaultServer):
    """A FaultServer speaking https with the test's certificate."""

    def __init__(self, tls_ca, *args, **kw):
        super().__init__(*args, **kw)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_ca[1], tls_ca[2])
        self.socket = ctx.wrap_socket(self.socket, server_side=True)

    @property
    def url(self):
        return f"https://127.0.0.1:{port_of(self)}{self.path}"

    def url_of(self, path):
        return f"https://127.0.0.1:{port_of(self)}{path}"


def test_https_same_origin_redirect_works(tmp_path, archives, tls_ca):
    """The TLS setup is real: without the test CA the certificate is
    refused; with it, a same-origin redirect is followed with the headers.
    (So the refusals below cannot pass because TLS fails.)"""
    store = tmp_path / "store"
    with TlsServer(tls_ca, FIXTURES / SMALL) as srv:
        srv.redirects["/moved.cba"] = (302, srv.path)
        moved = srv.url_of("/moved.cba")
        r = clone(moved, store / "rel", "--http-retry-count", "0")
        assert_one_error_line(r, moved, "SSL", "cert")
        r = ihop_trusting(tls_ca, "clone", *SECRETS, moved, store / "rel")
        assert r.returncode == 0, r.stderr
        reqs = requests_of(srv)
    assert {p for p, _, _ in reqs} == {"/moved.cba", srv.path}
    assert all(has_secrets(h) for _, _, h in reqs)
    assert_clone_complete(store, "rel", archives[SMALL])


def test_https_to_http_redirect_is_refused(tmp_path, tls_ca):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as plain, TlsServer(tls_ca, FIXTURES / SMALL) as srv:
        srv.redirects["/moved.cba"] = (302, plain.url)
        moved = srv.url_of("/moved.cba")
        r = ihop_trusting(tls_ca, "clone", *SECRETS, "--http-retry-delay", "0", moved, store / "rel")
        to_tls, to_plain = requests_of(srv), requests_of(plain)
    assert_one_error_line(r, moved, plain.url, "https to http")
    assert len(to_tls) == 1  # not retried
    assert to_plain == []
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


@pytest.mark.parametrize("given_scheme", ["http", "https"])
def test_redirect_to_another_https_origin_drops_the_headers(tmp_path, archives, tls_ca, given_scheme):
    """http -> https and https -> https to another port are followed, without the headers."""
    store = tmp_path / "store"
    given_cls = TlsServer if given_scheme == "https" else None
    with TlsServer(tls_ca, FIXTURES / SMALL) as other, \
            (given_cls(tls_ca, FIXTURES / SMALL) if given_cls else FaultServer(FIXTURES / SMALL)) as given:
        given.redirects["/moved.cba"] = (302, other.url)
        moved = f"{given_scheme}://127.0.0.1:{port_of(given)}/moved.cba"
        r = ihop_trusting(tls_ca, "clone", *SECRETS, moved, store / "rel")
        assert r.returncode == 0, r.stderr
        to_given, to_other = requests_of(given), requests_of(other)
    assert to_given and all(has_secrets(h) for _, _, h in to_given)
    assert len(to_other) == len(to_given)
    assert not any(leaked(h) for _, _, h in to_other), to_other
    assert_clone_complete(store, "rel", archives[SMALL])


def test_http_cacert_for_every_command_that_reads_an_archive(tmp_path, archives, tls_ca):
    """info, diff and verify --repair take the HTTP options too: each reads
    the archive over https with the test's CA, and refuses it without."""
    with TlsServer(tls_ca, FIXTURES / SMALL) as srv:
        r = ihop_trusting(tls_ca, "info", srv.url)
        assert r.returncode == 0, r.stderr
        assert "chunks:" in r.stdout
        assert_one_error_line(run([IHOP, "info", "--http-retry-count", "0", srv.url]), "SSL", "cert")
        r = ihop_trusting(tls_ca, "diff", srv.url, FIXTURES / SMALL)
        assert r.returncode == 0, r.stderr
        store = tmp_path / "store"
        assert ihop_trusting(tls_ca, "clone", srv.url, store / "rel").returncode == 0
        victim = next(p for p in chunk_files(store))
        victim.unlink()
        r = ihop_trusting(tls_ca, "verify", "--repair", srv.url, store / "rel")
        assert r.returncode == 0, r.stderr + r.stdout
        assert "OK after repair" in r.stdout
    assert_clone_complete(store, "rel", archives[SMALL])


def test_http_cacert_that_is_not_a_certificate_fails_in_one_line(tmp_path, tls_ca):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    with TlsServer(tls_ca, FIXTURES / SMALL) as srv:
        r = run([IHOP, "clone", "--http-cacert", bogus, "--http-retry-count", "0", srv.url, tmp_path / "s" / "r"])
    assert_one_error_line(r, srv.url)
