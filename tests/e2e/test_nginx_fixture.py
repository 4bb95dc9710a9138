# SPDX-License-Identifier: MIT
"""The session's nginx serves the fixtures with range support and logs every
request's status, body bytes and Range header: the tests that count
downloaded bytes rely on this."""

import urllib.request

from ihop_run import FIXTURES


def test_nginx_serves_ranges_and_logs_them(nginx):
    mark = nginx.mark()
    req = urllib.request.Request(nginx.url("rand-0_1_1-none.cba"), headers={"Range": "bytes=10-109"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 206
        body = resp.read()
    assert body == (FIXTURES / "rand-0_1_1-none.cba").read_bytes()[10:110]
    entries = nginx.entries(mark)
    assert len(entries) == 1
    e = entries[0]
    assert (e.status, e.body_bytes, e.range) == (206, 100, "bytes=10-109")
    assert e.request == "GET /rand-0_1_1-none.cba HTTP/1.1"
