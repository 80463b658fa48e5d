"""Injector proxies (issue 5, section 3, and the proxy fallback of section
2): 'shoal serve --act-as-proxy' forwards /v1/inject (the body streamed,
the X-Sign trailer passed on) to the injector it reaches, and with
--proxy-connect relays HTTP CONNECT to ports 80 and 443 only, or to those
--proxy-ports lists; every proxied request carries a session the serving peer checks.  Proxies
announce themselves in the swarm sha256("injector proxies"), which
'shoal fetch' asks the broker for.

How an origin is "unreachable directly but reachable through a proxy" on
loopback: every process of a test shares one network, so an address that
one process reaches, another reaches too (short of network namespaces,
which need privileges a test should not take).  So the fetching peer is
kept from the origin by its own policy instead: `--no-origin` forbids it
the direct connection, and a dynamic request then goes through a proxy,
while the proxy itself may reach the origin.  For static requests the
fetching peer's injector is unreachable for real: its identity names the
broker at a closed port, and only the proxy reaches the broker.  The
origin listens on a free high port of a random 127.x.y.z address (a domain
of its own for the methods remembered), and the proxies relay CONNECT to
that port (--proxy-ports); one test checks that the default, 80 and 443,
refuses it.

Every server is stopped by its PID; loopback only; every wait is bounded.
"""

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from filekit import KIB, pattern
from helpers import expect, free_port, metric, wait_until
from test_cli import Cli
from test_serve import Peer

PROXIES_SWARM = hashlib.sha256(b"injector proxies").hexdigest()
INJECTORS_SWARM = hashlib.sha256(b"injectors").hexdigest()

ORIGIN_PY = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import os
host, port_file, log = sys.argv[1], sys.argv[2], sys.argv[3]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        with open(log, "a") as f:
            f.write(f"GET {self.path}\n")
        n = int(self.path.rsplit("/", 1)[-1].split(".")[0] or "0")
        self._send(200, bytes((i * 7 + n) % 251 for i in range(n)))
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        with open(log, "a") as f:
            f.write(f"POST {self.path} {self.headers.get('Cookie', '')}\n")
        self._send(200, b"posted:" + data)
srv = ThreadingHTTPServer((host, 0), H)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
'''


def body_of(n):
    return bytes((i * 7 + n) % 251 for i in range(n))


@pytest.fixture(scope="module")
def broker_flags():
    return {"inject_allow": "127.0.0.0/8", "inject_timeout": "3s", "peer_ttl": "60s"}


class Origin:
    """An origin on a free port (the kernel's choice) of a random loopback
    address; stopped by PID."""

    def __init__(self, root):
        self.host = f"127.{random.randint(10, 250)}.{random.randint(1, 250)}." \
                    f"{random.randint(2, 250)}"
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "origin.log"
        self.log.write_text("")
        script = root / "origin.py"
        script.write_text(ORIGIN_PY)
        port_file = root / "origin.port"
        self.proc = subprocess.Popen([sys.executable, str(script), self.host,
                                      str(port_file), str(self.log)],
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert time.monotonic() < deadline, "origin did not start"
            assert self.proc.poll() is None, "origin exited"
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        assert self.port not in (80, 443)
        socket.create_connection((self.host, self.port), timeout=5).close()

    @property
    def authority(self):
        return f"{self.host}:{self.port}"

    def url(self, path):
        return f"http://{self.authority}{path}"

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
def started():
    """start(cli, *args) -> a ready Peer; every one is stopped by its PID."""
    peers = []

    def start(cli, *args):
        p = Peer(cli, args, data_dir=cli.root / f"serve-data-{len(peers)}")
        peers.append(p)
        return p.wait_ready()
    yield start
    problems = []
    for p in peers:
        if not p.out.closed:
            problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def new_cli(bin_dir, broker, root):
    c = Cli(bin_dir / "shoal", root, broker)
    c.register()
    return c


@pytest.fixture
def proxy_cli(bin_dir, broker, tmp_path):
    return new_cli(bin_dir, broker, tmp_path / "proxy")


@pytest.fixture
def cli(bin_dir, broker, tmp_path):
    return new_cli(bin_dir, broker, tmp_path / "fetcher")


def fetch(cli, tmp_path, url, *args, rc=0, out="out.bin"):
    target = tmp_path / out
    if target.exists():
        target.unlink()
    body = cli.json("fetch", url, "-o", target, "--data-dir", cli.root / "data", *args, rc=rc)
    return body, (target.read_bytes() if rc == 0 else None)


def session_of(cli):
    cli.run("login", rc=0)
    return json.loads(cli.session_path.read_text())["session_id"]


def raw(port, request, timeout=20):
    """Send request bytes to 127.0.0.1:port; the whole answer until close."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def split_answer(answer):
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def dechunk(data):
    """A chunked body: (bytes, trailers)."""
    out, trailers = bytearray(), {}
    while True:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    for line in data.split(b"\r\n"):
        if not line:
            break
        k, _, v = line.decode("latin-1").partition(":")
        trailers[k.strip().lower()] = v.strip()
    return bytes(out), trailers


def connect(port, target, token=None):
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    answer = raw(port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}"
                       f"Connection: close\r\n\r\n".encode(), timeout=10)
    return split_answer(answer)


def json_error(status, headers, body, want_status, code=None):
    assert status == want_status, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    text = body
    if headers.get("transfer-encoding") == "chunked":
        text, _ = dechunk(body)
    err = json.loads(text)["error"]
    if code:
        assert err["code"] == code, err
    assert err["message"]
    return err


def jexpect(resp, status, code=None):
    """A peer's answer (no X-Broker-Id, outside api/openapi.yaml): the
    status and the one error shape."""
    assert resp.status_code == status, (resp.status_code, resp.text[:400])
    if status >= 400:
        assert resp.headers["Content-Type"].startswith("application/json")
        err = resp.json()["error"]
        assert set(err) == {"code", "message"} and err["message"], err
        if code:
            assert err["code"] == code, err
    return resp.json() if resp.content else None


def serve_proxy(started, proxy_cli, origin, *extra):
    """A proxy that relays CONNECT to origin's port (None: to the ports
    extra gives with --proxy-ports, else to the default, 80 and 443)."""
    ports = ("--proxy-ports", str(origin.port)) if origin else ()
    return started(proxy_cli, "--act-as-proxy", "--proxy-connect",
                   "--proxy-allow", "127.0.0.0/8", *ports, *extra)


# --------------------------------------------------------------------------


def test_dynamic_request_through_a_proxy(cli, proxy_cli, tmp_path, origin, started, broker):
    """The fetching peer may not connect to the origin (--no-origin): the
    POST goes through the proxy it finds in the swarm "injector proxies"
    with CONNECT, and the method is remembered for the domain."""
    p = serve_proxy(started, proxy_cli, origin)
    tok = session_of(cli)
    wait_until(lambda: any(x["url"] == p.url for x in broker.session(tok).get(
        f"/v1/swarms/{PROXIES_SWARM}/peers").json().get("peers", [])), 20,
        what="the proxy's announcement")
    body, got = fetch(cli, tmp_path, origin.url("/form"), "-X", "POST", "-d", "a=1",
                      "-H", "Cookie: s=42", "--no-origin")
    assert got == b"posted:a=1", got
    assert body["source"] == "proxy" and body["via"] == p.url and body["class"] == "dynamic"
    assert origin.hits() == ["POST /form s=42"]
    methods = json.loads((cli.root / "data" / "fetch-methods.json").read_text())
    assert methods[origin.authority]["method"] == "proxy"    # host:port
    cache = json.loads((cli.root / "data" / "injectors.json").read_text())
    assert [e["url"] for e in cache["injector proxies"]] == [p.url]

    # remembered: the proxy is tried first, without --no-origin
    before = metric(p.metrics(), "shoal_http_requests_total", route="{authority}",
                    method="CONNECT", status="200") or 0
    body, got = fetch(cli, tmp_path, origin.url("/form2"), "-X", "POST", "-d", "b=2")
    assert got == b"posted:b=2" and body["source"] == "proxy", body
    after = metric(p.metrics(), "shoal_http_requests_total", route="{authority}",
                   method="CONNECT", status="200")
    assert after == before + 1


def test_configured_proxy_and_origin_down(cli, proxy_cli, tmp_path, origin, started):
    """A proxy named in injectors.json next to the identity is used; when
    the origin is down for everyone the story names both attempts, and
    --no-proxy keeps the proxy out."""
    p = serve_proxy(started, proxy_cli, origin)
    (cli.identity_path.parent / "injectors.json").write_text(
        json.dumps({"proxies": [p.url + "/"]}))
    body, got = fetch(cli, tmp_path, origin.url("/c"), "-X", "POST", "-d", "x", "--no-origin")
    assert got == b"posted:x" and body["via"] == p.url
    origin.stop()
    body, _ = fetch(cli, tmp_path, origin.url("/c"), "-X", "POST", "-d", "x", rc=6)
    msg = body["error"]["message"]
    assert "origin" in msg and f"proxy '{p.url}'" in msg, msg
    m0 = p.metrics()
    body, _ = fetch(cli, tmp_path, origin.url("/c"), "-X", "POST", "-d", "x", "--no-proxy",
                    rc=6)
    assert "proxy" not in body["error"]["message"], body
    assert p.metrics() == m0 or all(
        k[0] != "shoal_http_requests_total" or "CONNECT" not in str(k)
        for k in set(p.metrics()) - set(m0))
    body, _ = fetch(cli, tmp_path, origin.url("/c"), "-X", "POST", "-d", "x", "--no-proxy",
                    "--no-origin", rc=2)
    assert "--no-proxy" in body["error"]["message"]


def test_injection_through_a_proxy_keeps_the_trailer(cli, proxy_cli, started, origin, broker):
    p = serve_proxy(started, proxy_cli, origin)
    tok = session_of(cli)
    url = origin.url("/200000.bin")
    payload = json.dumps({"url": url}).encode()
    answer = raw(p.port, b"POST /v1/inject HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         b"Authorization: Bearer " + tok.encode() + b"\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    status, headers, rest = split_answer(answer)
    assert status == 200, answer[:500]
    assert headers["transfer-encoding"] == "chunked"
    assert "x-sign" in headers["trailer"].lower() and headers.get("x-inject-meta")
    data, trailers = dechunk(rest)
    assert data == body_of(200000)
    assert trailers["x-sign"].startswith("v=1;") and trailers["x-inject-file"]
    # the same signature as the injector keeps, through GET /v1/inject too
    rec = broker.session(tok).get("/v1/inject", params={"url": url})
    assert rec.headers["X-Sign"] == trailers["x-sign"]
    r = p.session(tok).get("/v1/inject", params={"url": url})
    assert r.status_code == 200 and r.headers["X-Sign"] == trailers["x-sign"], r.text
    assert r.json()["file_id"] == trailers["x-inject-file"]
    h = p.session(tok).head("/v1/inject", params={"url": url})
    assert h.status_code == 200 and h.headers["X-Sign"] == trailers["x-sign"]


def test_static_injection_through_a_proxy(cli, proxy_cli, tmp_path, started, origin):
    """The fetching peer's broker (its injector) is at a closed port: the
    injection goes through the configured proxy, whose answer is checked
    against the pinned key like any; a key not pinned refuses it."""
    p = serve_proxy(started, proxy_cli, origin)
    session_of(cli)                         # a live session, cached
    dead = f"http://127.0.0.1:{free_port()}"
    ident = json.loads(cli.identity_path.read_text())
    sess = json.loads(cli.session_path.read_text())
    ident["broker"], sess["broker"] = dead, dead
    for path, obj in ((cli.identity_path, ident), (cli.session_path, sess)):
        path.write_text(json.dumps(obj))
        os.chmod(path, 0o600)
    (cli.identity_path.parent / "injectors.json").write_text(
        json.dumps({"proxies": [p.url]}))
    url = origin.url("/70000.bin")
    body, got = fetch(cli, tmp_path, url, "--no-origin")
    assert got == body_of(70000)
    assert body["source"] == "proxy" and body["via"] == p.url, body
    assert body["signed_by"] == ident["broker_id"]
    assert origin.hits() == ["GET /70000.bin"]      # the injector's fetch

    ident["broker_key"] = "A" * 43 + "="              # a key not pinned
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    body, _ = fetch(cli, tmp_path, origin.url("/71000.bin"), "--no-origin", rc=1)
    msg = body["error"]["message"]
    assert "refused" in msg and "signature invalid" in msg, msg
    body, _ = fetch(cli, tmp_path, origin.url("/72000.bin"), "--no-origin", "--no-proxy",
                    rc=6)
    assert "proxy" not in body["error"]["message"]


def test_connect_rules(cli, proxy_cli, started, origin):
    p = serve_proxy(started, proxy_cli, None, "--proxy-ports", f"443,{origin.port}")
    tok = session_of(cli)
    # a real tunnel to the origin's port
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(f"CONNECT {origin.authority} HTTP/1.1\r\nHost: {origin.authority}\r\n"
              f"Authorization: Bearer {tok}\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /5 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
    s.close()
    assert got.startswith(b"HTTP/1.0 200") or got.startswith(b"HTTP/1.1 200"), got
    assert got.endswith(body_of(5))
    # other ports, no session, a bad session, a private address, a bad target
    for port in (22, 80, 8080, 65535, origin.port + 1):
        err = json_error(*connect(p.port, f"{origin.host}:{port}", tok), 403, "forbidden")
        assert f"port {port} is refused: only 443 and {origin.port}" in err["message"], err
    json_error(*connect(p.port, origin.authority), 400, "session_missing")
    json_error(*connect(p.port, origin.authority, "0" * 8 + "-0000-4000-8000-" + "0" * 12),
               403, "session_unknown")
    err = json_error(*connect(p.port, f"10.0.0.1:{origin.port}", tok), 403, "forbidden")
    assert "private" in err["message"]
    for bad in ("nohostport", "host:", ":80", "host:0x50", "a b:80", "host:99999"):
        json_error(*connect(p.port, bad, tok), 400, "invalid_request")
    assert origin.hits() == ["GET /5"]

    # the default relays to 80 and 443 only: the origin's port is refused
    # before any connection
    d = serve_proxy(started, proxy_cli, None)
    for port in (origin.port, 22, 8080):
        err = json_error(*connect(d.port, f"{origin.host}:{port}", tok), 403, "forbidden")
        assert f"port {port} is refused: only 80 and 443" in err["message"], err
    assert origin.hits() == ["GET /5"]


def test_a_proxy_that_is_off_refuses(cli, proxy_cli, started, origin):
    tok = session_of(cli)
    off = started(proxy_cli)
    for path in ("/v1/inject",):
        r = off.session(tok).post(path, json={"url": origin.url("/1")})
        e = jexpect(r, 403, "forbidden")
        assert "--act-as-proxy" in e["error"]["message"]
    jexpect(off.session(tok).get("/v1/inject", params={"url": origin.url("/1")}), 403,
           "forbidden")
    err = json_error(*connect(off.port, origin.authority, tok), 403, "forbidden")
    assert "--act-as-proxy" in err["message"]
    # a proxy without --proxy-connect forwards injections, not CONNECT
    no_connect = started(proxy_cli, "--act-as-proxy")
    err = json_error(*connect(no_connect.port, origin.authority, tok), 403, "forbidden")
    assert "--proxy-connect" in err["message"]
    assert origin.hits() == []


def test_bad_inputs(cli, proxy_cli, started, broker, origin):
    p = serve_proxy(started, proxy_cli, origin)
    tok = session_of(cli)
    s = p.session(tok)
    jexpect(s.post("/v1/inject", data="{", headers={"Content-Type": "application/json"}),
           400, "malformed_json")
    jexpect(s.post("/v1/inject", data="x", headers={"Content-Type": "text/plain"}), 415)
    for body in ({}, {"url": 5}, {"url": "ftp://x/y"}, {"url": origin.url("/1"), "x": 1}, []):
        jexpect(s.post("/v1/inject", json=body), 400)
    jexpect(s.get("/v1/inject"), 400, "invalid_request")
    jexpect(s.get("/v1/inject", params={"url": "gopher://x"}), 400, "invalid_request")
    jexpect(p.session().post("/v1/inject", json={"url": origin.url("/1")}), 400,
           "session_missing")
    # the injector's own refusals come back as they are
    e = jexpect(s.post("/v1/inject", json={"url": "http://10.0.0.1/x"}), 403)
    assert e["error"]["message"]
    jexpect(s.get("/v1/inject", params={"url": origin.url("/never")}), 404, "not_found")
    # GET /v1/proxies: what this peer knows
    r = s.get("/v1/proxies")
    assert r.status_code == 200 and p.url in r.json()["proxies"], r.text
    jexpect(p.session().get("/v1/proxies"), 400, "session_missing")
    # options
    for args in (["--proxy-connect"], ["--proxy-allow", "127.0.0.0/8"],
                 ["--act-as-proxy", "--proxy-allow", "300.0.0.0/8"],
                 ["--act-as-proxy", "--proxy-allow", "127.0.0.1/8"]):
        body = proxy_cli.json("serve", "--listen", "127.0.0.1:0", *args, rc=2)
        assert body["error"]["code"] == "usage", body
    # --proxy-ports: needs --proxy-connect; ports 1..65535, at most 16, no repeats
    for args in (["--proxy-ports", "8080"], ["--act-as-proxy", "--proxy-ports", "8080"]):
        body = proxy_cli.json("serve", "--listen", "127.0.0.1:0", *args, rc=2)
        assert body["error"]["code"] == "usage", body
        assert "need" in body["error"]["message"], body
    many = ",".join(str(1000 + i) for i in range(17))
    for value, why in (("", "empty"), ("0", "'0' is not a port"),
                       ("65536", "'65536' is not a port"), ("80,", "empty"),
                       ("80,,443", "empty"), ("http", "'http' is not a port"),
                       ("-1", "'-1' is not a port"), (" 80", "' 80' is not a port"),
                       ("080", "'080' is not a port"), ("80;443", "'80;443' is not a port"),
                       ("443,80,443", "443 is given twice"), (many, "more than 16")):
        body = proxy_cli.json("serve", "--listen", "127.0.0.1:0", "--act-as-proxy",
                              "--proxy-connect", "--proxy-ports", value, rc=2)
        assert body["error"]["code"] == "usage", body
        msg = body["error"]["message"]
        assert msg.startswith(f"--proxy-ports '{value[:100]}'") and why in msg, (value, msg)
    # the broker's named swarms
    b = broker.session(tok)
    expect(b.get("/v1/swarms/xyz/peers"), 400, "invalid_request")
    expect(b.get("/v1/swarms/" + "ab" * 32 + "/peers"), 404, "not_found")
    expect(b.post(f"/v1/swarms/{INJECTORS_SWARM}/peers", json={"url": p.url}), 403,
           "forbidden")
    for body in ({}, {"url": "nope"}, {"url": "http://x/?q"}, {"url": p.url, "y": 1}):
        expect(b.post(f"/v1/swarms/{PROXIES_SWARM}/peers", json=body), 400)
    expect(b.delete(f"/v1/swarms/{PROXIES_SWARM}/peers"), 400, "invalid_request")
    expect(b.delete(f"/v1/swarms/{PROXIES_SWARM}/peers", params={"url": "http://x:1"}),
           404, "not_found")
    expect(broker.session().get(f"/v1/swarms/{PROXIES_SWARM}/peers"), 400, "session_missing")
    inj = b.get(f"/v1/swarms/{INJECTORS_SWARM}/peers").json()
    assert inj["name"] == "injectors" and inj["peers"][0]["kind"] == "broker"
    assert inj["peers"][0]["broker_id"] == cli.identity()["broker_id"]
    r = b.post(f"/v1/swarms/{PROXIES_SWARM}/peers", json={"url": "http://127.0.0.1:9"})
    assert r.status_code == 201 and r.json()["name"] == "injector proxies", r.text
    assert b.post(f"/v1/swarms/{PROXIES_SWARM}/peers",
                  json={"url": "http://127.0.0.1:9"}).status_code == 200
    r = b.delete(f"/v1/swarms/{PROXIES_SWARM}/peers", params={"url": "http://127.0.0.1:9"})
    assert r.status_code == 200 and r.json()["withdrawn"] is True


def test_withdrawn_on_sigterm(proxy_cli, cli, started, broker):
    p = serve_proxy(started, proxy_cli, None)
    tok = session_of(cli)
    urls = lambda: [x["url"] for x in broker.session(tok).get(  # noqa: E731
        f"/v1/swarms/{PROXIES_SWARM}/peers").json()["peers"]]
    wait_until(lambda: p.url in urls(), 20, what="the announcement")
    assert p.stop() == []
    assert p.url not in urls()
