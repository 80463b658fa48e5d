"""shoal fetch URL (issue 5, section 2): a static request is served by the
origin when it answers, else by the URL's swarm when an injector key the
identity pins signed it and it has not expired, else by the injector
(whose trailer X-Sign is checked over the bytes received); what came from
the swarm or the injector is kept for 'shoal serve'.  A tampered copy, a
signature by a key not pinned and an expired signature are refused.  A
dynamic request goes to the origin only.

Origins are small Python HTTP servers run as processes on 127.0.0.1 and
stopped by their PID.  Loopback only; every wait is bounded."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from filekit import KIB, pattern
from helpers import expect, free_port, make_user, metric, parse_metrics, random_key
from test_cli import Cli

ORIGIN_PY = r'''
import sys, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
root, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _log(self):
        with open(log, "a") as f:
            f.write(f"{self.command} {self.path} {self.headers.get('Cookie', '')}\n")
    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._log()
        p = os.path.join(root, self.path.lstrip("/").split("?")[0])
        if not os.path.isfile(p):
            return self._send(404, b"no\n")
        hdrs = [("Content-Type", "application/octet-stream")]
        if p.endswith(".nocache"):
            hdrs.append(("Cache-Control", "max-age=0"))
        with open(p, "rb") as f:
            self._send(200, f.read(), hdrs)
    def do_POST(self):
        self._log()
        n = int(self.headers.get("Content-Length", "0"))
        self._send(200, b"posted:" + self.rfile.read(n))
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''


@pytest.fixture(scope="module")
def broker_flags():
    return {"inject_allow": "127.0.0.0/8", "inject_timeout": "3s"}


class Origin:
    """An origin process serving the files of root; stopped by its PID."""

    def __init__(self, root, port=None):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = root.parent / f"{root.name}.log"
        self.log.write_text("")
        self.port = port or free_port()
        script = root.parent / "origin.py"
        script.write_text(ORIGIN_PY)
        self.proc = subprocess.Popen([sys.executable, str(script), str(root), str(self.port),
                                      str(self.log)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import socket
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "origin did not start"
                assert self.proc.poll() is None, "origin exited"
                time.sleep(0.05)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, name, data):
        (self.root / name).write_bytes(data)
        return self.url("/" + name)

    def hits(self):
        return self.log.read_text().splitlines()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def origin(tmp_path):
    o = Origin(tmp_path / "origin")
    yield o
    o.stop()


@pytest.fixture
def cli(bin_dir, broker, tmp_path):
    c = Cli(bin_dir / "shoal", tmp_path / "cli", broker)
    c.register()
    return c


def fetch(cli, tmp_path, url, *args, rc=0, out="out.bin"):
    """shoal --json fetch URL -o OUT; returns (answer, bytes written)."""
    target = tmp_path / out
    if target.exists():
        target.unlink()
    data_dir = cli.root / "data" if cli.root.name != "cli" else tmp_path / "data"
    body = cli.json("fetch", url, "-o", target, "--data-dir", data_dir, *args, rc=rc)
    data = target.read_bytes() if rc == 0 else None
    if rc != 0:
        assert not target.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(out + ".shoal-")]
    return body, data


def inject_and_stop(cli, tmp_path, origin, name, data):
    url = origin.put(name, data)
    body, got = fetch(cli, tmp_path, url, "--no-origin")
    assert body["source"] == "injector" and got == data, body
    origin.stop()
    return url, body


def broker_counts(broker):
    m = parse_metrics(broker.get("/metrics").text)
    total = 0
    for route in ("/v1/inject", "/v1/swarms/{swarm}"):
        for method in ("GET", "POST", "HEAD"):
            for status in (200, 400, 401, 403, 404, 502):
                total += metric(m, "shoal_http_requests_total", route=route, method=method,
                                status=str(status)) or 0
    return total


# --------------------------------------------------------------------------


def test_static_from_the_origin(cli, tmp_path, origin):
    data = pattern(300 * KIB, seed=b"1")
    url = origin.put("a.bin", data)
    body, got = fetch(cli, tmp_path, url)
    assert got == data
    assert body["source"] == "origin" and body["class"] == "static", body
    assert body["bytes"] == len(data)
    methods = json.loads((tmp_path / "data" / "fetch-methods.json").read_text())
    assert methods[f"127.0.0.1:{origin.port}"]["method"] == "origin"


def test_stdout_gets_the_body(cli, tmp_path, origin):
    data = b"hello, web\n" * 100
    url = origin.put("h.txt", data)
    r = subprocess.run([cli.bin, "fetch", url, "--data-dir", str(tmp_path / "data")],
                       capture_output=True, env=cli.env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


def test_injected_then_served_from_the_swarm(cli, tmp_path, origin):
    data = pattern(1300 * KIB, seed=b"2")              # 3 pieces
    url, first = inject_and_stop(cli, tmp_path, origin, "big.bin", data)
    assert first["file_id"] and first["version"] >= 1 and first["expires_at"]
    # kept for shoal serve
    rec = tmp_path / "data" / "files" / first["file_id"] / f"{first['version']}.json"
    assert rec.exists()
    # the origin is down: the swarm (the broker as holder) serves it
    body, got = fetch(cli, tmp_path, url, out="again.bin")
    assert got == data
    assert body["source"] == "swarm", body
    assert body["file_id"] == first["file_id"] and body["signed_by"] == cli.identity()["broker_id"]
    methods = json.loads((tmp_path / "data" / "fetch-methods.json").read_text())
    assert methods[f"127.0.0.1:{origin.port}"]["method"] == "swarm"


def test_no_origin_never_touches_the_origin(cli, tmp_path, origin, broker):
    data = pattern(40 * KIB, seed=b"3")
    url = origin.put("n.bin", data)
    before = broker_counts(broker)
    body, got = fetch(cli, tmp_path, url, "--no-origin")
    assert body["source"] == "injector" and got == data
    assert broker_counts(broker) >= before + 2          # the swarm lookup, the injection
    hits = len(origin.hits())                       # the injector's one GET
    assert hits == 1
    body, got = fetch(cli, tmp_path, url, "--no-origin", out="n2.bin")
    assert body["source"] == "swarm" and got == data
    assert len(origin.hits()) == hits


PIECE = 512 * KIB


class FakeHolder:
    """A holder that serves data (whole, a Range of it, or a piece) with
    every byte of the pieces in bad flipped (all of them when bad is None):
    right lengths, wrong bytes."""

    def __init__(self, data, bad=None):
        body = bytearray(data)
        for i in range(len(body)):
            if bad is None or i // PIECE in bad:
                body[i] ^= 0xFF
        body = bytes(body)

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                rng = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                piece = re.fullmatch(r"/v1/files/[^/]+/pieces/(\d+)", path)
                status, part = 200, body
                if piece:
                    n = int(piece.group(1))
                    part = body[n * PIECE:(n + 1) * PIECE]
                elif rng:
                    a, b = int(rng.group(1)), min(int(rng.group(2)), len(body) - 1)
                    status, part = 206, body[a:b + 1]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {a}-{b}/{len(body)}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def announce(broker, first, url, have):
    """Another user announces url as a holder of the pieces in bitfield have."""
    mallory = make_user(broker)
    expect(mallory.http.post(f"/v1/files/{first['file_id']}/peers",
                             json={"url": url, "have": base64.b64encode(have).decode(),
                                   "version": first["version"]}), 201)


def test_tampered_holder_is_dropped(cli, tmp_path, origin, broker):
    # 7 pieces: the broker's 4 request slots cannot take them all, so the
    # holder is asked for some at once (not only in the endgame)
    data = pattern(6 * PIECE + 100 * KIB, seed=b"4")
    url, first = inject_and_stop(cli, tmp_path, origin, "t.bin", data)
    fake = FakeHolder(data)
    try:
        announce(broker, first, fake.url, b"\xfe")
        r = cli.run("--json", "fetch", url, "-o", tmp_path / "t2.bin",
                    "--data-dir", tmp_path / "data", rc=0)
        body = json.loads(r.stdout)
        assert body["source"] == "swarm"
        assert (tmp_path / "t2.bin").read_bytes() == data
        assert fake.url in r.stderr and "wrong hash" in r.stderr, r.stderr
    finally:
        fake.stop()


def test_swarm_of_three_peers_one_tampered(cli, tmp_path, origin, broker):
    """Origin stopped: the object comes from every holder at once, two
    'shoal serve' peers and the injector's broker; a third peer serves
    tampered pieces (right lengths, wrong bytes): the first it sends is
    refused, the peer dropped, and its pieces fetched elsewhere.  20
    pieces for 4 sources of 4 request slots: every source is asked at
    once."""
    from test_serve import Peer
    from helpers import wait_until
    data = pattern(19 * PIECE + 1000, seed=b"3p")           # 20 pieces
    url, first = inject_and_stop(cli, tmp_path, origin, "p.bin", data)
    peers = [Peer(cli, data_dir=tmp_path / "data").wait_ready()]
    fake = None
    try:
        second = Cli(cli.bin, tmp_path / "cli2", broker)
        second.register()
        body, got = fetch(second, tmp_path, url, out="p2.bin")   # kept in cli2/data
        assert body["source"] == "swarm" and got == data
        peers.append(Peer(second, data_dir=second.root / "data").wait_ready())
        fake = FakeHolder(data)
        announce(broker, first, fake.url, b"\xff\xff\xf0")
        swarm = __import__("hashlib").sha256(b"url:" + url.encode()).hexdigest()
        u = make_user(broker)

        def announced():
            rec = u.http.get(f"/v1/swarms/{swarm}").json()
            have = {p.get("url") for p in rec.get("peers", [])}
            return all(p.url in have for p in peers) and fake.url in have
        wait_until(announced, 15, what="the peers in the swarm")

        third = Cli(cli.bin, tmp_path / "cli3", broker)
        third.register()
        out = tmp_path / "p3.bin"
        r = third.run("--json", "fetch", url, "-o", out, "--data-dir", third.root / "data", rc=0)
        body = json.loads(r.stdout)
        assert body["source"] == "swarm" and body["bytes"] == len(data), body
        assert out.read_bytes() == data
        assert fake.url in r.stderr and "wrong hash" in r.stderr, r.stderr
        served = [metric(p.metrics(), "shoal_peer_upload_bytes_total") for p in peers]
        assert sum(served) > 0, served
        # kept for 'shoal serve': the record and every piece
        assert (third.root / "data" / "files" / first["file_id"] /
                f"{first['version']}.json").exists()
    finally:
        if fake:
            fake.stop()
        for p in peers:
            assert p.stop() == []


def test_key_not_pinned_is_refused(cli, tmp_path, origin):
    data = pattern(50 * KIB, seed=b"5")
    url, first = inject_and_stop(cli, tmp_path, origin, "k.bin", data)
    ident = cli.identity()
    ident["broker_key"] = random_key(32)
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    body, _ = fetch(cli, tmp_path, url, rc=1, out="k2.bin")
    msg = body["error"]["message"]
    assert "refused" in msg and "signature invalid" in msg, msg


def test_other_injector_is_refused(cli, tmp_path, origin):
    data = pattern(50 * KIB, seed=b"6")
    url, first = inject_and_stop(cli, tmp_path, origin, "o.bin", data)
    ident = cli.identity()
    ident["broker_id"] = "00000000-0000-4000-8000-000000000000"
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    body, _ = fetch(cli, tmp_path, url, rc=1, out="o2.bin")
    assert "not signed by a pinned injector" in body["error"]["message"], body


def test_expired_signature_is_refused(cli, tmp_path, origin, broker):
    data = pattern(30 * KIB, seed=b"7")
    url = origin.put("e.nocache", data)             # Cache-Control: max-age=0
    r = make_user(broker).http.post("/v1/inject", json={"url": url})
    assert r.status_code == 200 and r.content == data
    origin.stop()
    time.sleep(1.2)
    body, _ = fetch(cli, tmp_path, url, rc=1, out="e.bin")
    msg = body["error"]["message"]
    assert "expired" in msg, msg


def test_dynamic_goes_to_the_origin_only(cli, tmp_path, origin, broker):
    url = origin.put("d.txt", b"dyn\n")
    before = broker_counts(broker)
    body, got = fetch(cli, tmp_path, url, "-X", "POST", "-d", "x=1")
    assert body["source"] == "origin" and body["class"] == "dynamic", body
    assert got == b"posted:x=1"
    body, got = fetch(cli, tmp_path, url, "-H", "Cookie: a=b", out="c.bin")
    assert body["class"] == "dynamic" and got == b"dyn\n"
    assert origin.hits()[-1].endswith("a=b")
    assert broker_counts(broker) == before
    # the origin down: no swarm, no injector
    origin.stop()
    body, _ = fetch(cli, tmp_path, url, "-X", "POST", "-d", "x=1", rc=6, out="d2.bin")
    assert "origin" in body["error"]["message"]
    assert broker_counts(broker) == before
    # --no-origin leaves a dynamic request the proxies only (test_proxy.py);
    # with --no-proxy too it has no way at all
    body, _ = fetch(cli, tmp_path, url, "-d", "x", "--no-origin", rc=6, out="d3.bin")
    assert "no injector proxy found" in body["error"]["message"], body
    body, _ = fetch(cli, tmp_path, url, "-d", "x", "--no-origin", "--no-proxy", rc=2,
                    out="d3.bin")


def test_equivalent_urls_share_one_swarm(cli, tmp_path, origin, broker):
    """shoal fetch looks up, injects and checks the canonical URL
    (docs/protocol.md section 14): an object injected under one spelling
    is found in the swarm, signature checked, under the others."""
    data = pattern(70 * KIB, seed=b"c")
    base = origin.url("")
    # injected under a spelling with a dot-segment and scheme case
    origin.put("x", data)
    body, got = fetch(cli, tmp_path, base.replace("http://", "HTTP://") + "/./x",
                      "--no-origin")
    assert body["source"] == "injector" and got == data, body
    first = body
    canon = base + "/x"
    assert first["url"] == canon
    rec = expect(make_user(broker).http.get("/v1/inject", params={"url": canon}), 200)
    assert (rec["url"], rec["file_id"]) == (canon, first["file_id"])
    origin.stop()
    # the origin is down: only the swarm of the canonical URL can serve
    for i, alias in enumerate((canon, base + "/%78", base + "/a/../x#frag",
                               base.replace("127.0.0.1", "127.1") + "/x")):
        body, got = fetch(cli, tmp_path, alias, "--no-origin", out=f"alias{i}.bin")
        assert body["source"] == "swarm" and got == data, (alias, body)
        assert (body["file_id"], body["version"]) == (first["file_id"], first["version"])
        assert body["url"] == canon
    # what cannot name a web object is a usage error
    for bad, why in ((base + "/%zz", "made of the characters RFC 3986 allows"),
                     ("http://127.0.0.1:0/x", "must not have port 0"),
                     ("http://127.0.0.1%2e1/x", "must not percent-encode its host")):
        r = cli.run("fetch", bad, "--no-origin", rc=2)
        assert "cannot name a web object" in r.stderr and why in r.stderr, r.stderr


def test_bad_input(cli, tmp_path):
    for args in (["ftp://x/y"], ["http://"], ["http://h/", "-H", "bad header"],
                 ["http://h/", "--bogus"], [], ["http://h/", "-o"]):
        r = cli.run("fetch", *args, rc=2)
        assert r.stderr.startswith("shoal:") or "usage" in r.stderr, r.stderr


def test_remembered_swarm_is_asked_first(cli, tmp_path, origin):
    data = pattern(60 * KIB, seed=b"8")
    url, first = inject_and_stop(cli, tmp_path, origin, "m.bin", data)
    body, _ = fetch(cli, tmp_path, url, out="m1.bin")        # origin down: swarm
    assert body["source"] == "swarm"
    back = Origin(origin.root, port=origin.port)             # the origin is back
    try:
        hits = len(back.hits())
        body, got = fetch(cli, tmp_path, url, out="m2.bin")
        assert body["source"] == "swarm" and got == data
        assert len(back.hits()) == hits                      # never asked
        # another URL of the domain that the swarm lacks: the origin, then
        other = back.put("fresh.bin", b"fresh\n")
        body, got = fetch(cli, tmp_path, other, out="m3.bin")
        assert body["source"] == "origin" and got == b"fresh\n"
    finally:
        back.stop()


def test_kept_copy_is_seeded_by_serve(cli, tmp_path, origin, broker):
    from test_serve import Peer
    data = pattern(700 * KIB, seed=b"9")                     # 2 pieces
    url, first = inject_and_stop(cli, tmp_path, origin, "s.bin", data)
    peer = Peer(cli, data_dir=tmp_path / "data").wait_ready()
    try:
        u = make_user(broker)
        r = u.http.get(f"/v1/files/{first['file_id']}/pieces/1?version={first['version']}")
        assert r.status_code == 200
        got = peer.session(token=u.session_id).get(
            f"/v1/files/{first['file_id']}/pieces/1?version={first['version']}")
        assert got.status_code == 200 and got.content == data[512 * KIB:]
        swarm = __import__("hashlib").sha256(b"url:" + url.encode()).hexdigest()

        def announced():
            rec = u.http.get(f"/v1/swarms/{swarm}").json()
            return any(p.get("url") == peer.url for p in rec.get("peers", []))
        from helpers import wait_until
        wait_until(announced, 15, what="the peer in the swarm")
        # another user, origin down: the pieces come from the peer first
        other = Cli(cli.bin, tmp_path / "cli2", broker)
        other.register()
        body, got = fetch(other, tmp_path, url, out="s2.bin")
        assert body["source"] == "swarm" and got == data
        assert metric(peer.metrics(), "shoal_peer_upload_bytes_total") >= len(data)
    finally:
        assert peer.stop() == []
