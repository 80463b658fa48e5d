"""The injector (issue 5, section 1): POST /v1/inject streams an origin's
body back chunked while it stores and signs it, and ends with X-Sign as a
trailer; HEAD/GET /v1/inject and GET /v1/swarms/{swarm} return the record
afterwards; a newer injection supersedes; expiry follows the origin,
capped; origins on non-public addresses are refused (after DNS, on every
redirect) unless inject_allow admits them; size limit, stalls, origin
errors; POST /v1/challenge.

The origins are small Python HTTP servers on 127.0.0.1 (and 127.0.0.2)
started and stopped here.  requests does not expose trailers: injections
are read with a raw socket (inject_raw)."""

import base64
import email.utils
import hashlib
import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from filekit import (KIB, MIB, ZERO_ROOT, assert_store_sound, merkle_root, pattern, sha,
                     split, store_dir, stored_pieces)
from helpers import DEFAULT_TIMEOUT, expect, make_user, wait_until

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover
    Ed25519PublicKey = None

PIECE = 512 * KIB
WEEK = 7 * 86400
TIMEOUT = 2                      # the module broker's inject_timeout, seconds

XSIGN_RE = re.compile(r"^v=1; key=([0-9a-f-]{36}); ver=([1-9][0-9]*); size=(0|[1-9][0-9]*); "
                      r"piece=([1-9][0-9]*); root=([0-9a-f]{64}); exp=(0|[1-9][0-9]*); "
                      r"meta=([0-9a-f]{64}); sig=([A-Za-z0-9+/]{86}==)$")


@pytest.fixture(scope="module")
def broker_flags():
    return {"inject_allow": "127.0.0.0/8", "inject_timeout": f"{TIMEOUT}s",
            "inject_max_size": "3MiB"}


# --------------------------------------------------------------------------
# the origin


class Origin:
    """An HTTP/1.1 server on host answering from self.routes:
    path -> dict(status=200, headers={}, body=b"", chunked=False,
    stall_before=0, stall_after=None (bytes sent before a stall), stall=0).
    self.hits counts requests per path; self.conns lists, per path, the
    client port of the connection each request came on."""

    def __init__(self, host="127.0.0.1"):
        self.routes = {}
        self.hits = {}
        self.conns = {}
        self.sockets = []
        self.stop_event = threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                origin.sockets.append(self.connection)

            def do_GET(self):
                path = self.path.split("?")[0]
                origin.hits[path] = origin.hits.get(path, 0) + 1
                origin.conns.setdefault(path, []).append(self.client_address[1])
                spec = origin.routes.get(path)
                if spec is None:
                    spec = {"status": 404, "body": b"no such thing\n"}
                if spec.get("stall_before"):
                    origin.stop_event.wait(spec["stall_before"])
                    return
                body = spec.get("body", b"")
                self.send_response(spec.get("status", 200))
                for k, v in spec.get("headers", {}).items():
                    self.send_header(k, v)
                if spec.get("chunked"):
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(spec.get("length", len(body))))
                self.end_headers()
                try:
                    self._body(spec, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _body(self, spec, body):
                after = spec.get("stall_after")
                if after is not None:
                    self._send(spec, body[:after])
                    self.wfile.flush()
                    origin.stop_event.wait(spec.get("stall", 10))
                    self.close_connection = True
                    return
                pause = spec.get("pause_every")       # (bytes, seconds)
                for i in range(0, len(body), 64 * KIB):
                    if pause and i and i % pause[0] == 0:
                        self.wfile.flush()
                        origin.stop_event.wait(pause[1])
                    self._send(spec, body[i:i + 64 * KIB])
                if spec.get("chunked"):
                    self.wfile.write(b"0\r\n\r\n")

            def _send(self, spec, data):
                if not data:
                    return
                if spec.get("chunked"):
                    self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                else:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    def drop_connections(self):
        """Close every connection from the server's side, idle or not."""
        for c in self.sockets:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def origin():
    o = Origin("127.0.0.1")
    yield o
    o.stop()


# --------------------------------------------------------------------------
# reading an injection


class Injection:
    def __init__(self, status, headers, body, trailers, complete):
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
        self.complete = complete

    def json(self):
        return json.loads(self.body)


def _recv_line(sock, buf):
    while True:
        i = buf.find(b"\r\n")
        if i >= 0:
            line = bytes(buf[:i])
            del buf[:i + 2]
            return line
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk


def _recv_exact(sock, buf, n):
    while len(buf) < n:
        chunk = sock.recv(max(65536, n - len(buf)))
        if not chunk:
            raise EOFError
        buf += chunk
    data = bytes(buf[:n])
    del buf[:n]
    return data


class SlowSocket:
    """A socket whose recv takes at most 16 KiB and sleeps first."""

    def __init__(self, sock, pause):
        self.sock, self.pause = sock, pause

    def recv(self, n):
        time.sleep(self.pause)
        return self.sock.recv(min(n, 16 * KIB))


def inject_raw(broker, token, url, timeout=DEFAULT_TIMEOUT + 10, slow=0):
    """POST /v1/inject over a plain socket, reading a chunked answer with
    its trailers (with slow, 16 KiB at a time after a pause of slow
    seconds, from a small receive buffer).  complete is False when the
    connection ended before the last chunk."""
    payload = json.dumps({"url": url}).encode()
    head = ["POST /v1/inject HTTP/1.1", f"Host: 127.0.0.1:{broker.port}",
            "Content-Type: application/json", f"Content-Length: {len(payload)}",
            "Connection: close"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    with socket.create_connection(("127.0.0.1", broker.port), timeout=timeout) as sock:
        if slow:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KIB)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        s = SlowSocket(sock, slow) if slow else sock
        buf = bytearray()
        status = int(_recv_line(s, buf).split()[1])
        headers = {}
        while True:
            line = _recv_line(s, buf)
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body, trailers, complete = bytearray(), {}, False
        try:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(_recv_line(s, buf).split(b";")[0], 16)
                    if size == 0:
                        break
                    body += _recv_exact(s, buf, size)
                    assert _recv_line(s, buf) == b""
                while True:
                    line = _recv_line(s, buf)
                    if not line:
                        break
                    k, _, v = line.decode("latin-1").partition(":")
                    trailers[k.strip().lower()] = v.strip()
                complete = True
            else:
                body = _recv_exact(s, buf, int(headers.get("content-length", "0")))
                complete = True
        except (EOFError, ConnectionResetError):
            pass
        return Injection(status, headers, bytes(body), trailers, complete)


def swarm_of(url):
    return hashlib.sha256(b"url:" + url.encode()).hexdigest()


def pinned_key(u, broker_id):
    body = expect(u.http.get("/v1/brokers"), 200)
    for b in body["brokers"]:
        if b["broker_id"] == broker_id:
            return Ed25519PublicKey.from_public_bytes(base64.b64decode(b["public_key"]))
    raise AssertionError(f"broker {broker_id} not in the directory")


def verify_injection(u, url, xsign, file_id, body, meta, now=None):
    """Check X-Sign against the body, the metadata text and the pinned key
    of the injector; returns the parsed fields."""
    m = XSIGN_RE.match(xsign or "")
    assert m, f"X-Sign does not parse: {xsign!r}"
    key, ver, size, piece, root, exp, meta_hex, sig = m.groups()
    ver, size, piece, exp = int(ver), int(size), int(piece), int(exp)
    assert size == len(body) and piece == PIECE
    assert root == merkle_root([sha(p) for p in split(body, PIECE)])
    assert hashlib.sha256(meta).hexdigest() == meta_hex
    assert meta.startswith(f"url: {url}\n".encode()), meta
    text = (f"shoal-inject-v1\n{file_id}\n{ver}\n{size}\n{piece}\n{root}\n{exp}\n"
            f"{meta_hex}\n").encode()
    pinned_key(u, key).verify(base64.b64decode(sig), text)      # raises if forged
    assert exp >= int(now or time.time()), "signature already expired"
    return {"key": key, "ver": ver, "size": size, "root": root, "exp": exp,
            "meta": meta_hex}


def inject_ok(broker, u, url):
    r = inject_raw(broker, u.session_id, url)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.complete, "the injection was cut"
    assert r.headers.get("trailer") == "X-Sign, X-Inject-File"
    assert "x-sign" in r.trailers and "x-inject-file" in r.trailers, r.trailers
    return r


def head_inject(u, url):
    r = u.http.head("/v1/inject", params={"url": url})
    expect(r, 200)
    return r


def nothing_recorded(u, url):
    expect(u.http.get("/v1/inject", params={"url": url}), 404, "not_found")
    expect(u.http.get(f"/v1/swarms/{swarm_of(url)}"), 404, "not_found")


# --------------------------------------------------------------------------
# inject, verify, read back


def test_inject_streams_stores_and_signs(broker, user, origin):
    data = pattern(2 * PIECE + 12345, b"obj")
    origin.routes["/obj"] = {"body": data, "headers": {
        "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "public, max-age=120",
        "ETag": '"v1"', "X-Secret": "not kept", "Set-Cookie": "a=b"}}
    u, reader = user(), user()
    url = origin.url("/obj")
    t0 = int(time.time())
    r = inject_ok(broker, u, url)
    assert r.body == data
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-origin-status"] == "200"
    assert r.headers["x-swarm"] == swarm_of(url)
    meta = base64.b64decode(r.headers["x-inject-meta"])
    assert meta == (f"url: {url}\nstatus: 200\ncontent-type: text/plain; charset=utf-8\n"
                    f"cache-control: public, max-age=120\netag: \"v1\"\n").encode()
    fid = r.trailers["x-inject-file"]
    x = verify_injection(u, url, r.trailers["x-sign"], fid, data, meta)
    assert x["ver"] == 1
    assert t0 + 120 <= x["exp"] <= int(time.time()) + 120        # max-age=120
    me = expect(broker.api.get("/healthz"), 200)["broker_id"]
    assert x["key"] == me

    # HEAD returns the signature afterwards; GET the record.
    h = head_inject(reader, url)
    assert h.headers["X-Sign"] == r.trailers["x-sign"]
    assert h.headers["X-Inject-File"] == fid
    rec = expect(reader.http.get("/v1/inject", params={"url": url}), 200)
    assert {k: rec[k] for k in ("url", "swarm", "file_id", "version", "broker_id", "size",
                                "pieces", "x_sign", "meta")} == {
        "url": url, "swarm": swarm_of(url), "file_id": fid, "version": 1, "broker_id": me,
        "size": len(data), "pieces": 3, "x_sign": r.trailers["x-sign"],
        "meta": meta.decode()}
    assert rec["origin"] == {"status": 200, "headers": {
        "content-type": "text/plain; charset=utf-8", "cache-control": "public, max-age=120",
        "etag": '"v1"'}}
    assert rec["last_failure"] is None

    # The object is a file every registered user may read, owned by the
    # injector's system user (the broker's id), and whose pieces are stored.
    f = expect(reader.http.get(f"/v1/files/{fid}"), 200)
    assert (f["owner_id"], f["size"], f["version"], f["root"]) == (me, len(data), 1, x["root"])
    got = reader.http.get(f"/v1/files/{fid}/content")
    expect(got, 200)
    assert got.content == data
    expect(reader.http.delete(f"/v1/files/{fid}"), 403, "forbidden")

    # The URL's swarm: the record and its holders, the injector among them.
    sw = expect(reader.http.get(f"/v1/swarms/{swarm_of(url)}"), 200)
    assert (sw["file_id"], sw["version"], sw["x_sign"], sw["url"]) == (
        fid, 1, r.trailers["x-sign"], url)
    kinds = [(p["kind"], p.get("user_id"), p["url"], p["complete"]) for p in sw["peers"]]
    assert ("broker", None, broker.url, True) in kinds, kinds
    assert ("peer", me, broker.url, True) in kinds, kinds
    peers = expect(reader.http.get(f"/v1/files/{fid}/peers"), 200)["peers"]
    assert [p["kind"] for p in peers] == [p["kind"] for p in sw["peers"]]


def test_a_slow_client_gets_every_byte(broker, user, origin):
    """A client that reads slowly holds the origin back (the injector
    keeps at most its buffers) and still gets every byte, in order, from
    an origin that sends in odd chunks, and a valid signature."""
    u = user()
    data = pattern(3 * PIECE + 777, b"slow")
    origin.routes["/slow"] = {"body": data, "chunked": True}
    url = origin.url("/slow")
    r = inject_raw(broker, u.session_id, url, slow=0.002)
    assert r.status == 200 and r.complete
    assert r.body == data
    verify_injection(u, url, r.trailers["x-sign"], r.trailers["x-inject-file"], data,
                     base64.b64decode(r.headers["x-inject-meta"]))


def test_redirects_are_followed_and_empty_objects_signed(broker, user, origin):
    origin.routes["/empty"] = {"body": b"", "headers": {"Content-Type": "text/plain"}}
    origin.routes["/moved"] = {"status": 302, "headers": {"Location": "/empty"}}
    u = user()
    url = origin.url("/moved")
    r = inject_ok(broker, u, url)
    assert r.body == b""
    meta = base64.b64decode(r.headers["x-inject-meta"])
    x = verify_injection(u, url, r.trailers["x-sign"], r.trailers["x-inject-file"], b"", meta)
    assert (x["size"], x["root"]) == (0, ZERO_ROOT)
    # The record is the URL asked for, not where it led.
    assert head_inject(u, url).headers["X-Inject-File"] == r.trailers["x-inject-file"]
    nothing_recorded(u, origin.url("/empty"))


def test_a_newer_injection_supersedes(broker, user, origin):
    u = user()
    url = origin.url("/news")
    origin.routes["/news"] = {"body": b"first edition\n" * 1000}
    first = inject_ok(broker, u, url)
    origin.routes["/news"] = {"body": b"second edition\n" * 50000}
    second = inject_ok(broker, u, url)
    fid = first.trailers["x-inject-file"]
    assert second.trailers["x-inject-file"] == fid              # the same file
    x1 = verify_injection(u, url, first.trailers["x-sign"], fid, first.body,
                          base64.b64decode(first.headers["x-inject-meta"]))
    x2 = verify_injection(u, url, second.trailers["x-sign"], fid, second.body,
                          base64.b64decode(second.headers["x-inject-meta"]))
    assert (x1["ver"], x2["ver"]) == (1, 2)
    assert head_inject(u, url).headers["X-Sign"] == second.trailers["x-sign"]
    sw = expect(u.http.get(f"/v1/swarms/{swarm_of(url)}"), 200)
    assert (sw["version"], sw["size"]) == (2, len(second.body))
    me = sw["broker_id"]
    # The injector announces the current version only.
    assert [p["kind"] for p in sw["peers"] if p.get("user_id") == me] == ["peer"]
    old = expect(u.http.get(f"/v1/files/{fid}/peers", params={"version": 1}), 200)
    assert not [p for p in old["peers"] if p.get("user_id") == me]
    versions = expect(u.http.get(f"/v1/files/{fid}/versions"), 200)["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    got = u.http.get(f"/v1/files/{fid}/content")
    assert got.content == second.body


def test_equivalent_urls_are_one_object(broker, user, origin):
    """The URL is made canonical (docs/protocol.md section 14) before it is
    fetched, signed, recorded and hashed into its swarm: equivalent
    spellings name one object, one record, one swarm."""
    data = b"one object, many spellings\n" * 300
    origin.routes["/x"] = {"body": data}
    u = user()
    canon = origin.url("/x")
    base = canon[:-len("/x")]
    hits = origin.hits.get("/x", 0)
    r = inject_ok(broker, u, base.replace("http://", "HTTP://") + "/a/../%78#top")
    assert r.body == data
    assert origin.hits.get("/x", 0) == hits + 1          # the canonical path asked
    assert r.headers["x-swarm"] == swarm_of(canon)
    meta = base64.b64decode(r.headers["x-inject-meta"])
    fid = r.trailers["x-inject-file"]
    x = verify_injection(u, canon, r.trailers["x-sign"], fid, data, meta)   # signed canonical
    for alias in (canon, base + "/./x", base + "/%78", base.upper() + "/x#f",
                  base.replace("127.0.0.1", "127.1") + "/x"):
        h = head_inject(u, alias)
        assert (h.headers["X-Sign"], h.headers["X-Inject-File"]) == (r.trailers["x-sign"], fid), alias
        rec = expect(u.http.get("/v1/inject", params={"url": alias}), 200)
        assert (rec["url"], rec["swarm"]) == (canon, swarm_of(canon)), alias
    sw = expect(u.http.get(f"/v1/swarms/{swarm_of(canon)}"), 200)
    assert (sw["url"], sw["file_id"]) == (canon, fid)
    expect(u.http.get(f"/v1/swarms/{swarm_of(base + '/%78')}"), 404, "not_found")
    # another spelling injects the next version of the same file
    r2 = inject_ok(broker, u, base + "/./x")
    assert r2.trailers["x-inject-file"] == fid
    x2 = verify_injection(u, canon, r2.trailers["x-sign"], fid, data,
                          base64.b64decode(r2.headers["x-inject-meta"]))
    assert (x["ver"], x2["ver"]) == (1, 2)


def test_expiry_follows_the_origin_capped(broker, user, origin):
    u = user()
    now = int(time.time())
    origin.routes["/forever"] = {"body": b"x", "headers": {"Cache-Control": "max-age=999999999"}}
    origin.routes["/silent"] = {"body": b"y"}
    origin.routes["/expires"] = {"body": b"z", "headers": {
        "Expires": email.utils.formatdate(now + 300, usegmt=True)}}
    origin.routes["/s-maxage"] = {"body": b"w", "headers": {
        "Cache-Control": "max-age=60, s-maxage=600"}}
    origin.routes["/no-store"] = {"body": b"v", "headers": {"Cache-Control": "no-store"}}

    def exp_of(path):
        r = inject_ok(broker, u, origin.url(path))
        return int(XSIGN_RE.match(r.trailers["x-sign"]).group(6))

    assert now + WEEK <= exp_of("/forever") <= int(time.time()) + WEEK   # capped: 7 days
    assert now + WEEK <= exp_of("/silent") <= int(time.time()) + WEEK    # nothing said
    assert now + 295 <= exp_of("/expires") <= now + 305                  # Expires - Date
    assert now + 600 <= exp_of("/s-maxage") <= int(time.time()) + 600    # shared caches
    assert now <= exp_of("/no-store") <= int(time.time())                # not cacheable
    rec = expect(u.http.get("/v1/inject", params={"url": origin.url("/expires")}), 200)
    assert rec["origin"]["headers"]["expires"] == origin.routes["/expires"]["headers"]["Expires"]


def test_the_cap_is_configured(make_broker, origin):
    b = make_broker(inject_allow="127.0.0.0/8", inject_ttl="1h")
    u = make_user(b)
    origin.routes["/capped"] = {"body": b"c", "headers": {"Cache-Control": "max-age=86400"}}
    now = int(time.time())
    r = inject_ok(b, u, origin.url("/capped"))
    exp = int(XSIGN_RE.match(r.trailers["x-sign"]).group(6))
    assert now + 3600 <= exp <= int(time.time()) + 3600
    # Each injector signs with its own key and owns its own files.
    assert XSIGN_RE.match(r.trailers["x-sign"]).group(1) == b.api.get("/healthz").headers["X-Broker-Id"]


# --------------------------------------------------------------------------
# origin safety


@pytest.mark.parametrize("url, addr, kind", [
    ("http://10.0.0.1/", "10.0.0.1", "private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
    ("http://[::]:80/", "::", "unspecified"),
    ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ("http://0.0.0.0:80/", "0.0.0.0", "unspecified"),
])
def test_non_public_origins_are_refused(broker, user, url, addr, kind):
    u = user()
    t0 = time.monotonic()
    msg = expect(u.http.post("/v1/inject", json={"url": url}), 403, "forbidden")["error"]["message"]
    # Refused before any connection: at once, not after a connect timeout.
    assert time.monotonic() - t0 < TIMEOUT
    assert f"'{addr}' ({kind})" in msg and "inject_allow" in msg, msg
    nothing_recorded(u, url)


def test_loopback_needs_the_allow_list(make_broker, origin):
    b = make_broker()                       # no inject_allow
    u = make_user(b)
    origin.routes["/private"] = {"body": b"secret"}
    before = origin.hits.get("/private", 0)
    for url in (origin.url("/private"),
                f"http://localhost:{origin.port}/private"):   # checked after DNS
        msg = expect(u.http.post("/v1/inject", json={"url": url}), 403,
                     "forbidden")["error"]["message"]
        assert "(loopback)" in msg, msg
        nothing_recorded(u, url)
    assert origin.hits.get("/private", 0) == before


def test_a_redirect_to_loopback_is_refused(broker, make_broker, origin):
    far = Origin("127.0.0.2")
    try:
        origin.routes["/inside"] = {"body": b"the operator's own service\n"}
        far.routes["/hop"] = {"status": 302, "headers": {"Location": origin.url("/inside")}}
        url = far.url("/hop")
        b = make_broker(inject_allow="127.0.0.2/32")
        u = make_user(b)
        msg = expect(u.http.post("/v1/inject", json={"url": url}), 403,
                     "forbidden")["error"]["message"]
        assert "'127.0.0.1' (loopback)" in msg and "/inside" in msg, msg
        assert far.hits.get("/hop") == 1
        assert origin.hits.get("/inside", 0) == 0          # never connected to
        nothing_recorded(u, url)
        # Where loopback is allowed, the same redirect is followed.
        v = make_user(broker)
        r = inject_ok(broker, v, url)
        assert r.body == b"the operator's own service\n"
        assert origin.hits["/inside"] == 1
    finally:
        far.stop()


def test_too_many_redirects(broker, user, origin):
    for i in range(7):
        origin.routes[f"/loop{i}"] = {"status": 301, "headers": {"Location": f"/loop{i + 1}"}}
    origin.routes["/loop7"] = {"body": b"end"}
    u = user()
    msg = expect(u.http.post("/v1/inject", json={"url": origin.url("/loop0")}), 502,
                 "bad_gateway")["error"]["message"]
    assert "more than 5 redirects" in msg, msg
    assert origin.hits.get("/loop5") == 1 and origin.hits.get("/loop6") is None
    origin.routes["/to-ftp"] = {"status": 302, "headers": {"Location": "ftp://127.0.0.1/x"}}
    msg = expect(u.http.post("/v1/inject", json={"url": origin.url("/to-ftp")}), 502,
                 "bad_gateway")["error"]["message"]
    assert "not http or https" in msg, msg


@pytest.mark.parametrize("body, words", [
    ({"url": "ftp://127.0.0.1/file"}, "scheme 'ftp'"),
    ({"url": "file:///etc/passwd"}, "scheme 'file'"),
    ({"url": "gopher://127.0.0.1:70/"}, "scheme 'gopher'"),
    ({"url": "not a url"}, "absolute http or https"),
    ({"url": "http://"}, "absolute http or https"),
    ({"url": "/relative/path"}, "absolute http or https"),
    ({"url": "http://user:pw@127.0.0.1/"}, "credentials"),
    ({"url": "HTTPX://127.0.0.1/"}, "scheme 'HTTPX'"),
    ({"url": "http:///x"}, "absolute http or https"),
    ({"url": "http://127.0.0.1:0/"}, "port 0"),
    ({"url": "http://127.0.0.1%2e1/"}, "percent-encode its host"),
    ({"url": "http://127.0.0.1/%zz"}, "absolute http or https"),
    ({"url": "http://127.0.0.1/a b"}, "absolute http or https"),
    ({"url": "http://127.0.0.1/" + "a" * 2048}, "2048 bytes"),
    ({"url": "http://127.0.0.1/\u0000"}, "NUL"),
    ({"url": 7}, "url"),
    ({}, "url"),
    ({"url": "http://127.0.0.1/", "extra": 1}, "extra"),
])
def test_bad_requests_change_nothing(broker, user, body, words):
    u = user()
    msg = expect(u.http.post("/v1/inject", json=body), 400)["error"]["message"]
    assert words in msg, msg
    if isinstance(body.get("url"), str) and "\u0000" not in body["url"] and len(body["url"]) < 2048:
        r = u.http.get("/v1/inject", params={"url": body["url"]})
        assert r.status_code in (400, 404), r.text


def test_lookups_check_their_arguments(broker, user):
    u = user()
    expect(u.http.get("/v1/inject"), 400, "invalid_request")
    expect(u.http.get("/v1/inject", params={"url": "ftp://x/"}), 400, "invalid_request")
    expect(u.http.get("/v1/inject", params={"url": "http://127.0.0.1:9/never"}), 404, "not_found")
    for bad in ("abc", "A" * 64, "0" * 63, "g" * 64):
        expect(u.http.get(f"/v1/swarms/{bad}"), 400, "invalid_request")
    expect(u.http.get(f"/v1/swarms/{'0' * 64}"), 404, "not_found")


# --------------------------------------------------------------------------
# limits and failures


def test_size_limit(broker, user, origin):
    u = user()
    big = pattern(3 * MIB + 1, b"big")
    origin.routes["/declared"] = {"body": big}
    origin.routes["/undeclared"] = {"body": big, "chunked": True}
    msg = expect(u.http.post("/v1/inject", json={"url": origin.url("/declared")}), 502,
                 "bad_gateway")["error"]["message"]
    assert "larger than inject_max_size" in msg, msg
    nothing_recorded(u, origin.url("/declared"))
    # Without Content-Length the limit is found while streaming: cut.
    r = inject_raw(broker, u.session_id, origin.url("/undeclared"))
    assert r.status == 200 and not r.complete and "x-sign" not in r.trailers
    assert len(r.body) <= 3 * MIB
    nothing_recorded(u, origin.url("/undeclared"))
    # The pieces it had stored are gone again.
    held = stored_pieces(broker)
    assert not [p for p in split(big[:3 * MIB], PIECE) if sha(p) in held]
    assert_store_sound(broker)
    # Exactly at the limit is fine.
    origin.routes["/at-limit"] = {"body": big[:3 * MIB], "chunked": True}
    r = inject_ok(broker, u, origin.url("/at-limit"))
    assert len(r.body) == 3 * MIB


def test_a_retry_keeps_its_pieces(broker, user, origin):
    """Pieces freed by a failed injection are stored again by the next
    one: the sweeper (every 5 s) must not remove them meanwhile."""
    u, b = user(), broker
    data = pattern(5 * PIECE, b"retry")
    # Cut over inject_max_size, after 5 pieces were stored (and freed).
    origin.routes["/retry"] = {"body": data + pattern(MIB, b"pad"), "chunked": True}
    r = inject_raw(b, u.session_id, origin.url("/retry"))
    assert r.status == 200 and not r.complete
    # The same pieces again, slowly: the injection spans a sweep (> 5 s).
    origin.routes["/retry"] = {"body": data, "chunked": True,
                               "pause_every": (PIECE, 2 * TIMEOUT / 3)}
    r = inject_ok(b, u, origin.url("/retry"))
    assert r.body == data
    fid = r.trailers["x-inject-file"]
    held = stored_pieces(b)
    assert all(sha(p) in held for p in split(data, PIECE))
    assert u.http.get(f"/v1/files/{fid}/content").content == data


def test_pins_of_a_crashed_injection_are_released(make_broker, pg, database, origin):
    b = make_broker(inject_allow="127.0.0.0/8")
    u = make_user(b)
    data = pattern(2 * PIECE, b"crash")
    origin.routes["/crash"] = {"body": data, "stall_after": PIECE + 10, "stall": 10}
    sock = socket.create_connection(("127.0.0.1", b.port), timeout=DEFAULT_TIMEOUT)
    try:
        payload = json.dumps({"url": origin.url("/crash")}).encode()
        sock.sendall((f"POST /v1/inject HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                      f"{u.session_id}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
        pins = "SELECT count(*) FROM inject_pins WHERE broker_id = '%s'" % \
            b.api.get("/healthz").headers["X-Broker-Id"]
        wait_until(lambda: pg.psql(database, pins).strip() == "1", 10, what="a pin")
        b.proc.kill()                   # no cleanup at all
        b.proc.wait(10)
    finally:
        sock.close()
    b.proc = None
    b.launch().wait_ready()
    assert pg.psql(database, pins).strip() == "0"
    refs = pg.psql(database, "SELECT refs FROM pieces WHERE hash = decode('%s', 'hex')"
                   % sha(data[:PIECE])).strip()
    assert refs == "0", refs
    wait_until(lambda: sha(data[:PIECE]) not in stored_pieces(b), 15,
               what="the sweeper to remove the piece")


def test_stalled_origins(broker, user, origin):
    u = user()
    origin.routes["/mute"] = {"stall_before": 3 * TIMEOUT}
    t0 = time.monotonic()
    msg = expect(u.http.post("/v1/inject", json={"url": origin.url("/mute")}), 502,
                 "bad_gateway")["error"]["message"]
    assert TIMEOUT - 0.5 <= time.monotonic() - t0 < TIMEOUT + 3
    assert f"sent nothing for {TIMEOUT} s" in msg, msg
    nothing_recorded(u, origin.url("/mute"))

    data = pattern(PIECE + 1000, b"stall")
    origin.routes["/halfway"] = {"body": data, "stall_after": PIECE + 10, "stall": 3 * TIMEOUT}
    t0 = time.monotonic()
    r = inject_raw(broker, u.session_id, origin.url("/halfway"))
    assert r.status == 200 and not r.complete and "x-sign" not in r.trailers
    assert r.body == data[:len(r.body)]
    assert TIMEOUT - 0.5 <= time.monotonic() - t0 < TIMEOUT + 3
    nothing_recorded(u, origin.url("/halfway"))


def recv_some(s, n):
    """At least n bytes from socket s (fewer only if it closes)."""
    got = b""
    for _ in range(n):                  # bounded: each recv gives >= 1 byte
        if len(got) >= n:
            break
        more = s.recv(65536)
        if not more:
            break
        got += more
    return got


def test_a_client_that_goes_away_stores_nothing(broker, user, origin):
    u = user()
    data = pattern(2 * PIECE + 10, b"gone")
    # pauses 1 s at each piece boundary, then goes on to the end
    origin.routes["/long"] = {"body": data, "pause_every": (PIECE, 1)}
    payload = json.dumps({"url": origin.url("/long")}).encode()
    with socket.create_connection(("127.0.0.1", broker.port), timeout=DEFAULT_TIMEOUT) as s:
        s.sendall((f"POST /v1/inject HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                   f"{u.session_id}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
        head = recv_some(s, PIECE // 2)
        assert head.startswith(b"HTTP/1.1 200")
        # Reset, not a FIN: the origin's first piece is on its way and the
        # injector's next send must fail, however far it got.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The injector finds out when the origin sends again (its first send
    # after the pause fails), and gives up (after its storing threads are
    # done: an fsync on a busy disk may take seconds).
    try:
        wait_until(lambda: "client went away" in broker.log_text(), 30, what="the give-up")
    except AssertionError as e:
        raise AssertionError(f"{e}; the broker's log ends:\n{broker.log_text()[-2000:]}")
    nothing_recorded(u, origin.url("/long"))
    assert sha(data[:PIECE]) not in stored_pieces(broker)
    assert_store_sound(broker)


def test_the_event_loop_pool_injects(make_broker, origin):
    """connection_threads off: the body is read on the event loop's thread
    while other threads store the pieces; two injections at once on one
    loop thread both end with a right X-Sign, and every piece is stored."""
    b = make_broker(connection_threads="off", threads="1", inject_allow="127.0.0.0/8",
                    inject_max_size="64MiB")
    u = make_user(b)
    datas = {f"/pool{i}": pattern(20 * PIECE + 77 * i, f"pool{i}".encode()) for i in range(2)}
    for path, data in datas.items():
        origin.routes[path] = {"body": data, "pause_every": (2 * PIECE, 0.1)}
    results = {}

    def run(path):
        results[path] = inject_raw(b, u.session_id, origin.url(path))
    threads = [threading.Thread(target=run, args=(p,)) for p in datas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEFAULT_TIMEOUT + 30)
    stored = stored_pieces(b)
    for path, data in datas.items():
        r = results[path]
        assert r.status == 200 and r.complete and r.body == data, (r.status, r.complete)
        meta = base64.b64decode(r.headers["x-inject-meta"])
        verify_injection(u, origin.url(path), r.trailers["x-sign"], r.trailers["x-inject-file"],
                         data, meta)
        assert all(sha(p) in stored for p in split(data, PIECE))
    assert_store_sound(b)


def test_origin_connections_are_reused(make_broker):
    """An injection read to its end leaves its connection to the origin
    open for the next one to the same origin (another origin in between
    does not take it); one cut short or refused does not; a kept
    connection the origin has closed meanwhile is not a failure."""
    b = make_broker(inject_allow="127.0.0.0/8")
    u = make_user(b)
    one, two = Origin("127.0.0.1"), Origin("127.0.0.2")
    try:
        for o in (one, two):
            for i in range(8):
                o.routes[f"/r{i}"] = {"body": pattern(PIECE + 100 * i, b"reuse%d" % i)}
            o.routes["/gone"] = {"status": 410, "body": b"gone\n"}

        def ok(o, path):
            r = inject_ok(b, u, o.url(path))
            assert r.body == o.routes[path]["body"]
            return o.conns[path][-1]
        first = ok(one, "/r0")
        assert ok(one, "/r1") == first
        other = ok(two, "/r0")
        assert ok(one, "/r2") == first            # the other origin's is another
        assert ok(two, "/r1") == other
        # an origin's error answer ends its request early: not kept
        expect_gone = inject_raw(b, u.session_id, one.url("/gone"))
        assert expect_gone.status == 502, expect_gone.status
        assert one.conns["/gone"][-1] == first
        fresh = ok(one, "/r3")
        assert fresh != first
        assert ok(one, "/r4") == fresh
        # the origin closes its idle connections: the next one is new
        one.drop_connections()
        time.sleep(0.1)
        again = ok(one, "/r5")
        assert again != fresh
        assert ok(one, "/r6") == again
    finally:
        one.stop()
        two.stop()
    assert_store_sound(b)


def test_a_piece_not_stored_gets_no_signature(make_broker, origin):
    """Storing runs beside the body: when a piece cannot be stored (here
    the store's temporary folder is taken away halfway), the body is cut
    short of its last chunk, no X-Sign goes out and nothing is recorded;
    the pieces stored before are released."""
    b = make_broker(inject_allow="127.0.0.0/8", inject_max_size="64MiB")
    u = make_user(b)
    data = pattern(6 * PIECE + 5, b"nostore")
    origin.routes["/nostore"] = {"body": data, "pause_every": (PIECE, 0.5)}
    url = origin.url("/nostore")
    result = {}
    t = threading.Thread(target=lambda: result.update(r=inject_raw(b, u.session_id, url)))
    tmp = store_dir(b) / "tmp"
    away = store_dir(b) / "tmp.away"
    t.start()
    try:
        wait_until(lambda: origin.hits.get("/nostore"), 10, interval=0.02,
                   what="the injector's request")
        time.sleep(0.25)                     # the first piece is in
        tmp.rename(away)
        tmp.write_bytes(b"not a folder")
        t.join(DEFAULT_TIMEOUT + 20)
    finally:
        t.join(DEFAULT_TIMEOUT + 20)
        if away.exists():
            tmp.unlink()
            away.rename(tmp)
    r = result["r"]
    assert r.status == 200 and not r.complete, (r.status, r.complete)
    assert "x-sign" not in r.trailers, r.trailers
    assert len(r.body) < len(data)
    nothing_recorded(u, url)
    wait_until(lambda: "failed after" in b.log_text(), 10, what="the give-up")
    assert sha(data[:PIECE]) not in stored_pieces(b)


def test_origin_errors(broker, user, origin):
    u = user()
    url = origin.url("/flaky")
    origin.routes["/flaky"] = {"status": 500, "body": b"oops"}
    msg = expect(u.http.post("/v1/inject", json={"url": url}), 502,
                 "bad_gateway")["error"]["message"]
    assert msg == f"origin answered 500 for '{url}'", msg
    nothing_recorded(u, url)
    # Once injected, a failure later keeps the record and notes the failure.
    origin.routes["/flaky"] = {"body": b"good\n"}
    good = inject_ok(broker, u, url)
    origin.routes["/flaky"] = {"status": 503, "body": b"down"}
    expect(u.http.post("/v1/inject", json={"url": url}), 502, "bad_gateway")
    rec = expect(u.http.get("/v1/inject", params={"url": url}), 200)
    assert (rec["version"], rec["x_sign"]) == (1, good.trailers["x-sign"])
    assert rec["last_failure"]["message"] == f"origin answered 503 for '{url}'"
    assert head_inject(u, url).headers["X-Sign"] == good.trailers["x-sign"]
    # 404 is an answer other than 2xx too; an origin that is not there at all.
    expect(u.http.post("/v1/inject", json={"url": origin.url("/nothing-here")}), 502,
           "bad_gateway")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    msg = expect(u.http.post("/v1/inject", json={"url": f"http://127.0.0.1:{port}/"}), 502,
                 "bad_gateway")["error"]["message"]
    assert "failed" in msg, msg
    msg = expect(u.http.post("/v1/inject", json={"url": "http://no-such-host.invalid/"}), 502,
                 "bad_gateway")["error"]["message"]
    assert "resolve" in msg, msg


# --------------------------------------------------------------------------
# challenge, authentication, roles


def test_challenge(broker, user):
    u = user()
    nonce = base64.b64encode(b"\x01" * 7 + bytes(range(25))).decode()
    body = expect(broker.api.post("/v1/challenge", json={"nonce": nonce}), 200)  # no session
    me = broker.api.get("/healthz").headers["X-Broker-Id"]
    assert (body["broker_id"], body["nonce"]) == (me, nonce)
    text = f"shoal-challenge-v1\n{me}\n{nonce}\n".encode()
    pinned_key(u, me).verify(base64.b64decode(body["signature"]), text)
    listed = expect(u.http.get("/v1/brokers"), 200)["brokers"]
    assert body["public_key"] == [b["public_key"] for b in listed if b["broker_id"] == me][0]
    for bad in ("", "AAAA", base64.b64encode(bytes(15)).decode(),
                base64.b64encode(bytes(65)).decode(), "not base64!" * 3,
                base64.b64encode(bytes(20)).decode().rstrip("=")):
        expect(broker.api.post("/v1/challenge", json={"nonce": bad}), 400, "invalid_request")
    expect(broker.api.post("/v1/challenge", json={"nonce": nonce, "x": 1}), 400,
           "invalid_request")
    expect(broker.api.post("/v1/challenge", json={}), 400, "invalid_request")


def test_authentication(broker, make_broker, origin):
    url = origin.url("/obj")
    r = broker.api.post("/v1/inject", json={"url": url})
    expect(r, 400, "session_missing")
    bogus = broker.session(token="00000000-0000-4000-8000-000000000000")
    expect(bogus.post("/v1/inject", json={"url": url}), 403, "session_unknown")
    expect(broker.api.get("/v1/inject", params={"url": url}), 400, "session_missing")
    expect(broker.api.get(f"/v1/swarms/{swarm_of(url)}"), 400, "session_missing")
    b = make_broker(session_ttl="1s", inject_allow="127.0.0.0/8")
    u = make_user(b)
    time.sleep(2.1)
    expect(u.http.post("/v1/inject", json={"url": url}), 401, "session_expired")
    r = inject_raw(b, u.session_id, url)
    assert r.status == 401 and r.json()["error"]["code"] == "session_expired"


def test_only_injectors_inject(make_broker, origin):
    b = make_broker(roles="trust,metadata,file", inject_allow="127.0.0.0/8")
    u = make_user(b)
    expect(u.http.post("/v1/inject", json={"url": origin.url("/obj")}), 404, "not_found")
    nonce = base64.b64encode(bytes(16)).decode()
    expect(b.api.post("/v1/challenge", json={"nonce": nonce}), 404, "not_found")


def test_no_500s(broker):
    bad = [(m, u, s) for m, u, s, h, b in broker.responses if s >= 500 and s != 502]
    assert not bad, bad
