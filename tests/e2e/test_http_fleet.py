# SPDX-License-Identifier: MIT
"""HTTP as device fleets use it:

- Mutual TLS: nginx serves only clients whose certificate its CA signed
  (certificates made here with openssl); a clone with --http-cert and
  --http-key (or both in one file) and --http-cacert works, without a
  certificate or with one from another CA it fails in one line.
- Mirrors: --mirror URL, tried in order when SOURCE fails (a dead port, a
  404, a stale copy of another size), the clone going on from the first
  byte not yet received; every copy gets the same checks.
- Proxies from the environment (http_proxy, no_proxy), through tinyproxy."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import FIXTURES, IHOP, TIMEOUT, assert_final_error, cat_checksum, clone, clone_ok, run
from local_http import free_port, wait_port
from nginx_server import NGINX, Nginx
from slow_server import SlowServer

V1 = "pair/v1.ext4.cba"


def openssl(*args):
    r = run(["openssl", *args])
    assert r.returncode == 0, r.stderr


def make_ca(d: Path, name: str):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key", "-out", d / f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}")


def make_cert(d: Path, name: str, ca: str, *ext):
    """A certificate for name signed by ca (its key in name.key)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr",
            "-subj", f"/CN={name}")
    extfile = d / f"{name}.ext"
    extfile.write_text("\n".join(ext) + "\n")
    openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.pem", "-CAkey", d / f"{ca}.key",
            "-CAcreateserial", "-out", d / f"{name}.pem", "-days", "2", "-extfile", extfile)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "fleet-ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "server", "fleet-ca", "subjectAltName=IP:127.0.0.1")
    make_cert(d, "device", "fleet-ca", "extendedKeyUsage=clientAuth")
    make_cert(d, "intruder", "rogue-ca", "extendedKeyUsage=clientAuth")
    (d / "device-both.pem").write_text((d / "device.pem").read_text() + (d / "device.key").read_text())
    return d


@pytest.fixture(scope="module")
def mtls_nginx(tmp_path_factory, pki):
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is not installed")
    n = Nginx(tmp_path_factory.mktemp("nginx-mtls"), tls=(pki / "server.pem", pki / "server.key", pki / "fleet-ca.pem"))
    n.start()
    try:
        yield n
    finally:
        n.stop()


def test_a_device_certificate_opens_a_fleet_only_server(mtls_nginx, pki, tmp_path, archives):
    url = mtls_nginx.url(V1)
    tls = ("--http-cacert", pki / "fleet-ca.pem")
    clone_ok(url, tmp_path / "s" / "a", *tls, "--http-cert", pki / "device.pem", "--http-key", pki / "device.key")
    assert cat_checksum(tmp_path / "s" / "a") == archives[V1].source_checksum
    # Certificate and key in one file.
    clone_ok(url, tmp_path / "s" / "b", *tls, "--http-cert", pki / "device-both.pem")
    for r in (ihop_info(url, *tls), ihop_info(url, *tls, "--http-cert", pki / "intruder.pem", "--http-key",
                                                                pki / "intruder.key")):
        assert_final_error(r, url)
        assert r.returncode == 1
    # And the server is checked as before: the fleet's CA, not the system's.
    r = ihop_info(url, "--http-cert", pki / "device.pem", "--http-key", pki / "device.key")
    assert_final_error(r, url)


def ihop_info(url, *opts):
    return run([IHOP, "info", "--http-retry-count", "0", *[str(o) for o in opts], url])


def test_http_key_without_a_certificate_is_a_usage_error(pki, tmp_path):
    r = clone(FIXTURES / V1, tmp_path / "s" / "a", "--http-key", pki / "device.key")
    assert r.returncode == 2 and "--http-cert" in r.stderr


def test_a_missing_certificate_file_fails_in_one_line(mtls_nginx, pki, tmp_path):
    url = mtls_nginx.url(V1)
    r = run([IHOP, "clone", "--http-retry-count", "0", "--http-cacert", pki / "fleet-ca.pem", "--http-cert",
             tmp_path / "nope.pem", url, tmp_path / "s" / "a"])
    assert_final_error(r, url)
    assert not (tmp_path / "s" / "a").exists()


# --- mirrors -----------------------------------------------------------------


def test_mirrors_are_tried_in_order_when_the_source_fails(nginx, tmp_path, archives):
    dead = f"http://127.0.0.1:{free_port()}/{V1}"  # nothing listens there
    missing = nginx.url("no/such.cba")
    good = nginx.url(V1)
    mark = nginx.mark()
    r = clone_ok(dead, tmp_path / "s" / "a", "--http-retry-count", "1", "--http-retry-delay", "0", "--mirror",
                 missing, "--mirror", good)
    assert cat_checksum(tmp_path / "s" / "a") == archives[V1].source_checksum
    warnings = [l for l in r.stderr.splitlines() if l.startswith("ihop: warning:")]
    assert any(dead in w and missing in w for w in warnings), r.stderr
    assert any(missing in w and "404" in w and good in w for w in warnings), r.stderr
    paths = [e.path for e in nginx.entries(mark)]
    # The 404 was asked once; the job then stayed with the good mirror.
    assert paths.count("/no/such.cba") == 1 and paths.count("/" + V1) >= 2


def test_a_stale_mirror_is_refused_by_its_size_and_the_next_taken(nginx, tmp_path, archives):
    """The source stops after the header; the first mirror holds another
    archive (another size) under the name, the second the right one."""
    stale = nginx.url("pair/v2.ext4.cba")
    with SlowServer(FIXTURES / V1) as primary:
        primary.max_body = archives[V1].header_size + 50_000
        r = clone(primary.url(V1), tmp_path / "s" / "a", "--http-retry-count", "1", "--http-retry-delay", "0",
                  "-j", "1", "--mirror", stale, "--mirror", nginx.url(V1))
    assert r.returncode == 0, r.stderr
    size_v1, size_v2 = (FIXTURES / V1).stat().st_size, (FIXTURES / "pair/v2.ext4.cba").stat().st_size
    assert f"the server's copy is {size_v2} bytes, not the archive's {size_v1}" in r.stderr, r.stderr
    assert cat_checksum(tmp_path / "s" / "a") == archives[V1].source_checksum


def test_a_source_that_fails_mid_transfer_goes_on_at_the_mirror_from_the_same_byte(tmp_path, archives):
    """The primary stops answering after the header; the mirror serves the
    rest, starting where the primary's bytes stopped."""
    src = FIXTURES / V1
    with SlowServer(src) as primary, SlowServer(src) as mirror:
        header = archives[V1].header_size
        primary.max_body = header + 100_000  # then it closes every connection
        r = clone(primary.url(V1), tmp_path / "s" / "a", "--http-retry-count", "1", "--http-retry-delay", "0",
                  "-j", "1", "--mirror", mirror.url(V1))
        assert r.returncode == 0, r.stderr
        got_primary = sum(e.sent for e in primary.entries())
        got_mirror = sum(e.sent for e in mirror.entries())
    assert cat_checksum(tmp_path / "s" / "a") == archives[V1].source_checksum
    data = parse_archive(src)
    chunk_data = sum(c.archive_size for c in {c.hash: c for c in data.chunks}.values())
    assert got_mirror > 0 and got_primary + got_mirror <= header + chunk_data + 64 * 1024


def test_mirrors_only_for_archives_at_urls(tmp_path):
    r = clone(FIXTURES / V1, tmp_path / "s" / "a", "--mirror", "http://127.0.0.1:1/x.cba")
    assert r.returncode == 1 and "mirrors are for an archive at an http(s) URL" in r.stderr
    r = clone(FIXTURES / V1, tmp_path / "s" / "a", "--mirror", "/local/path.cba")
    assert r.returncode == 2 and "--mirror" in r.stderr


# --- proxies -------------------------------------------------------------------


@pytest.fixture
def tinyproxy(tmp_path):
    exe = shutil.which("tinyproxy")
    if not exe:
        pytest.fail("tinyproxy is missing (scripts/install-deps.sh installs it)")
    port = free_port()
    log = tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{log}\"\nLogLevel Connect\n"
                    f"MaxClients 20\nAllow 127.0.0.1\nPidFile \"{tmp_path}/tinyproxy.pid\"\n")
    p = subprocess.Popen([exe, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port, 10.0, p), "tinyproxy did not start"
        yield f"http://127.0.0.1:{port}", log
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def clone_env(env, source, dest):
    return subprocess.run([IHOP, "clone", str(source), str(dest)], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL, env={**os.environ, **env})


def test_the_proxy_of_the_environment_is_used_and_no_proxy_honoured(nginx, tinyproxy, tmp_path, archives):
    proxy, log = tinyproxy
    url = nginx.url(V1)
    env = {"http_proxy": proxy, "no_proxy": ""}
    r = clone_env(env, url, tmp_path / "s" / "a")
    assert r.returncode == 0, r.stderr
    assert cat_checksum(tmp_path / "s" / "a") == archives[V1].source_checksum
    time.sleep(0.2)
    seen = log.read_text(errors="replace")
    assert f"/{V1}" in seen, seen
    log.write_text("")
    r = clone_env({**env, "no_proxy": "127.0.0.1"}, url, tmp_path / "s" / "b")
    assert r.returncode == 0, r.stderr
    assert f"/{V1}" not in log.read_text(errors="replace")
    # A proxy that is not there fails the clone in one line, after its retries.
    r = clone_env({"http_proxy": f"http://127.0.0.1:{free_port()}", "no_proxy": ""}, url, tmp_path / "s" / "c")
    assert_final_error(r, url)


def test_a_signed_clone_takes_the_signature_beside_the_mirror_when_the_source_is_down(nginx, tmp_path, archives):
    key = tmp_path / "k"
    assert run([IHOP, "keygen", "-W", "-p", f"{key}.pub", "-s", f"{key}.key"]).returncode == 0
    signed = tmp_path / "v1.cba"
    shutil.copy(FIXTURES / V1, signed)
    assert run([IHOP, "sign", "-s", f"{key}.key", "--release-version", "3", signed]).returncode == 0
    mirror = nginx.publish("mirror/v1.cba", signed.read_bytes())
    nginx.publish("mirror/v1.cba.minisig", (tmp_path / "v1.cba.minisig").read_bytes())
    dead = f"http://127.0.0.1:{free_port()}/v1.cba"
    r = clone_ok(dead, tmp_path / "s" / "a", "--http-retry-count", "0", "--trusted-key", f"{key}.pub",
                 "--mirror", mirror)
    assert "release version 3" in r.stdout
    assert f"trying {mirror}.minisig" in r.stderr, r.stderr
    assert cat_checksum(tmp_path / "s" / "a") == archives[V1].source_checksum
    # No signature anywhere: refused, naming the last place looked.
    bare = nginx.publish("bare/v1.cba", signed.read_bytes())
    r = clone(dead, tmp_path / "s" / "b", "--http-retry-count", "0", "--trusted-key", f"{key}.pub", "--mirror", bare)
    assert_final_error(r, "no signature", f"{bare}.minisig")
