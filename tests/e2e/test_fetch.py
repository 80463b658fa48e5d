"""shoal get from several sources at once (peer/fetch.c): the broker and
the peers the tracker lists, rarest piece first, every piece verified.

The peers here are fake: small HTTP servers (this file run as a script,
see fake_peer_main) on 127.0.0.2, 127.0.0.3, ... that serve a file's
pieces with the broker's piece endpoints (/content with Range, /have),
correctly or not (corrupted, stalling, closing mid-piece, slow), and that
a real user announces to the tracker (POST /v1/files/{id}/peers).  Each
one is a process of its own, stopped by its PID (SIGKILL to make one die
mid-download).  Loopback only; every wait is bounded.
"""

import base64
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from filekit import KIB, create_file, grant, make_share, pattern, split, upload
from helpers import expect, free_port, new_uuid, wait_until
from test_cli import Cli

EXIT_OK, EXIT_CONFLICT = 0, 5
PS = 16 * KIB
PEER_START_TIMEOUT = 15
GET_TIMEOUT = 120


# --- the fake peer (runs in its own process) ---------------------------------

def fake_peer_main(argv):
    """fake-peer HOST DATA PIECE_SIZE FILE_ID VERSION HAVE MODE STATUS [RATE]

    HAVE: piece indexes held, "a-b,c" or "all".  MODE: good, corrupt
    (one byte of every piece flipped), stall (half a piece, then
    silence), close (half a piece, then the connection is closed), slow
    (RATE bytes per second per connection).  STATUS: a file that gets the
    body bytes sent so far.  Prints "PORT n" once listening."""
    import http.server
    import threading
    import urllib.parse

    host, data_path, piece, fid, version, have_arg, mode, status = argv[:8]
    rate = int(argv[8]) if len(argv) > 8 else 0
    data = Path(data_path).read_bytes()
    piece, version = int(piece), int(version)
    count = -(-len(data) // piece)
    held = set(range(count)) if have_arg == "all" else parse_set(have_arg)
    lock = threading.Lock()
    sent = [0]

    def count_sent(n):
        with lock:
            sent[0] += n
            Path(status).write_text(str(sent[0]))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, code, body, headers=()):
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def error(self, code, name, msg):
            self.answer(code, {"error": {"code": name, "message": msg}})

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            m = re.fullmatch(r"/v1/files/([0-9a-f-]{36})/(content|have)", u.path)
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                return self.error(400, "session_missing", "no session")
            if not m or m.group(1) != fid or q.get("version", [str(version)]) != [str(version)]:
                return self.error(404, "not_found", "no such file or version")
            if m.group(2) == "have":
                bits = bytearray((count + 7) // 8)
                for i in held:
                    bits[i // 8] |= 0x80 >> (i % 8)
                return self.answer(200, {"file_id": fid, "version": version, "pieces": count,
                                         "have": base64.b64encode(bytes(bits)).decode(),
                                         "held": len(held), "complete": len(held) == count})
            r = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
            a, b = (int(r.group(1)), min(int(r.group(2)), len(data) - 1)) if r \
                else (0, len(data) - 1)
            if not set(range(a // piece, b // piece + 1)) <= held:
                return self.error(409, "incomplete", "a piece of that range is not held")
            body = bytearray(data[a:b + 1])
            if mode == "corrupt":
                for off in range(0, len(body), piece):
                    body[off] ^= 0xFF
            self.send_response(206 if r else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if r:
                self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
            self.end_headers()
            if mode in ("stall", "close"):
                half = bytes(body[:piece // 2])
                self.wfile.write(half)
                self.wfile.flush()
                count_sent(len(half))
                if mode == "stall":
                    time.sleep(60)
                self.close_connection = True
                return
            step = 4096 if rate else len(body)
            for off in range(0, len(body), step):
                chunk = bytes(body[off:off + step])
                self.wfile.write(chunk)
                count_sent(len(chunk))
                if rate:
                    self.wfile.flush()
                    time.sleep(len(chunk) / rate)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

    srv = Server((host, 0), Handler)
    print(f"PORT {srv.server_address[1]}", flush=True)
    srv.serve_forever()


def parse_set(text):
    """"0-3,7" -> {0, 1, 2, 3, 7}; "" -> set()."""
    out = set()
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def bits(n, held):
    raw = bytearray((n + 7) // 8)
    for i in held:
        raw[i // 8] |= 0x80 >> (i % 8)
    return base64.b64encode(bytes(raw)).decode()


# --- harness ------------------------------------------------------------------

class FakePeer:
    def __init__(self, proc, url, status):
        self.proc, self.url, self.status = proc, url, status

    @property
    def pid(self):
        return self.proc.pid

    def sent(self):
        try:
            return int(self.status.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def kill(self):
        """SIGKILL, by PID; waits until it is gone."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def peers(tmp_path):
    """start(data, fid, have="all", mode="good", rate=0, host=None) -> FakePeer,
    listening on 127.0.0.N (a new N for each).  Every one is stopped, by
    PID, at the end."""
    started = []

    def start(data, fid, have="all", mode="good", rate=0, host=None, version=1):
        n = len(started)
        host = host or f"127.0.0.{2 + n}"
        d = tmp_path / f"peer{n}"
        d.mkdir()
        (d / "data").write_bytes(data)
        have_arg = "all" if have == "all" else ",".join(map(str, sorted(have)))
        argv = [sys.executable, str(Path(__file__).resolve()), "fake-peer", host,
                str(d / "data"), str(PS), fid, str(version), have_arg, mode,
                str(d / "status")] + ([str(rate)] if rate else [])
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=open(d / "stderr", "wb"), text=True)
        peer = FakePeer(proc, None, d / "status")
        started.append(peer)
        ready, _, _ = select.select([proc.stdout], [], [], PEER_START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        m = re.fullmatch(r"PORT (\d+)\n", line)
        assert m, f"fake peer did not start: {line!r} {(d / 'stderr').read_text()}"
        peer.url = f"http://{host}:{m.group(1)}"
        return peer

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
            try:
                p.proc.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        p.proc.stdout.close()


@pytest.fixture(scope="module")
def shoal_path(bin_dir):
    p = bin_dir / "shoal"
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} does not exist: build it with 'make SAN=1 all'")
    return p


@pytest.fixture
def setup(shoal_path, broker, user, tmp_path):
    """make(pieces, broker_has) -> (cli, owner, fid, data): a file of that
    many pieces put by owner through the API, of which the broker holds
    broker_has ("all", or a set of indexes); cli is a registered CLI user
    who may read it."""
    def make(pieces=128, broker_has="all", tail=777):
        owner = user()
        share = make_share(owner)
        data = pattern((pieces - 1) * PS + tail, new_uuid().encode())
        fid = create_file(owner, share, data, PS)["file_id"]
        if broker_has == "all":
            upload(owner, fid, data, PS)
        elif broker_has:
            upload(owner, fid, data, PS, only=set(broker_has))
        cli = Cli(shoal_path, tmp_path / f"cli-{new_uuid()[:8]}", broker)
        cli.register()
        grant(owner, share, read=[SimpleNamespace(user_id=cli.identity()["user_id"])])
        return cli, owner, fid, data
    return make


def announce(owner, fid, peer, count, have="all"):
    held = range(count) if have == "all" else have
    expect(owner.http.post(f"/v1/files/{fid}/peers",
                           json={"url": peer.url, "have": bits(count, held), "version": 1}),
           201)


def sources_text(stderr):
    """The --sources lines: {url: (kind, pieces, bytes, why or None)}."""
    out = {}
    for m in re.finditer(r"^source (\S+) (\S+): (\d+) pieces?, (\d+) bytes(?:, dropped: (.*))?$",
                         stderr, re.M):
        out[m.group(2)] = (m.group(1), int(m.group(3)), int(m.group(4)), m.group(5))
    return out


def get(cli, fid, out, *extra, rc=EXIT_OK):
    """shoal --json get --sources; returns (JSON answer, stderr, seconds)."""
    t0 = time.monotonic()
    r = cli.run("--json", "get", fid, "-o", out, "--sources", *extra, rc=rc)
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0]), r.stderr, time.monotonic() - t0


def by_url(body):
    return {s["url"]: s for s in body["sources"]}


# --- tests ---------------------------------------------------------------------

def test_broker_and_two_peers(setup, peers, tmp_path):
    """The broker and two peers that hold everything: the copy is byte for
    byte the file, every source sent some of it, the pieces add up."""
    cli, owner, fid, data = setup()
    n = len(split(data, PS))
    a, b = peers(data, fid), peers(data, fid)
    for p in (a, b):
        announce(owner, fid, p, n)
    out = tmp_path / "out"
    body, err, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    assert (body["fetched"], body["downloaded"]) == (n, len(data))
    src = by_url(body)
    assert set(src) == {cli.broker.url, a.url, b.url}, body["sources"]
    assert src[cli.broker.url]["kind"] == "broker"
    assert src[a.url]["kind"] == src[b.url]["kind"] == "peer"
    for s in body["sources"]:
        assert s["dropped"] is None and s["pieces"] > 0 and s["bytes"] > 0, s
        assert s["held"] == n
    assert sum(s["pieces"] for s in body["sources"]) == n
    assert sum(s["bytes"] for s in body["sources"]) == len(data)
    assert a.sent() > 0 and b.sent() > 0
    # the same on stderr
    text = sources_text(err)
    assert {u: (k, p, by) for u, (k, p, by, _) in text.items()} == {
        s["url"]: (s["kind"], s["pieces"], s["bytes"]) for s in body["sources"]}


def test_bitfields_rarest_first(setup, peers, tmp_path):
    """The broker holds the first half, one peer the second, another peer
    the pieces in the middle: each piece comes from a source that holds
    it (a fake peer answers 409 for others, which would drop it)."""
    cli, owner, fid, data = setup(pieces=96, broker_has=set(range(48)))
    a = peers(data, fid, have=set(range(48, 96)))
    b = peers(data, fid, have=set(range(24, 72)))
    announce(owner, fid, a, 96, have=range(48, 96))
    announce(owner, fid, b, 96, have=range(24, 72))
    out = tmp_path / "out"
    body, _, _ = get(cli, fid, out, "-j", "2")
    assert out.read_bytes() == data
    src = by_url(body)
    assert all(s["dropped"] is None for s in body["sources"]), body["sources"]
    assert src[cli.broker.url]["held"] == 48 and src[b.url]["held"] == 48
    # pieces 0-23 only the broker holds, 72-95 only peer a
    assert src[cli.broker.url]["pieces"] >= 24 and src[a.url]["pieces"] >= 24
    assert sum(s["pieces"] for s in body["sources"]) == 96


def test_a_corrupting_peer_is_dropped_and_named(setup, peers, tmp_path):
    cli, owner, fid, data = setup()
    n = len(split(data, PS))
    good, bad = peers(data, fid), peers(data, fid, mode="corrupt")
    for p in (good, bad):
        announce(owner, fid, p, n)
    out = tmp_path / "out"
    body, err, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    src = by_url(body)
    assert src[bad.url]["pieces"] == 0 and src[bad.url]["bytes"] == 0
    assert "failed its hash check" in src[bad.url]["dropped"], src[bad.url]
    assert src[good.url]["dropped"] is None and src[cli.broker.url]["dropped"] is None
    assert bad.sent() > 0
    # named on stderr: a warning with its URL, and the --sources line
    assert re.search(rf"warning: peer '{re.escape(bad.url)}' \({owner.user_id}\) sent piece "
                     rf"\d+ of file '{fid}' with a wrong hash", err), err
    assert "failed its hash check" in sources_text(err)[bad.url][3]


def test_a_corrupting_peer_is_reported(setup, peers, broker, tmp_path):
    """shoal get reports the source it dropped for a bad piece to the
    broker (POST /v1/files/{id}/reports): the operator finds it, with the
    user who announced it; the good sources are not reported."""
    cli, owner, fid, data = setup()
    n = len(split(data, PS))
    good, bad = peers(data, fid), peers(data, fid, mode="corrupt")
    for p in (good, bad):
        announce(owner, fid, p, n)
    out = tmp_path / "out"
    body, err, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    assert "failed its hash check" in by_url(body)[bad.url]["dropped"]
    assert "cannot report" not in err, err
    reports = expect(broker.admin.get("/v1/reports", params={"file": fid}), 200)["reports"]
    assert len(reports) == 1, reports
    r = reports[0]
    assert (r["url"], r["version"], r["reporter_id"], r["peer_user_id"]) == \
        (bad.url, 1, cli.identity()["user_id"], owner.user_id)
    assert 0 <= r["piece"] < n
    assert r["reason"] == f"sent piece {r['piece']}, which failed its hash check"


def test_a_peer_killed_mid_download(setup, peers, tmp_path):
    """Two slow peers are the only holders (the broker holds nothing); one
    is killed (SIGKILL) once it has sent some bytes: the other sends the
    rest."""
    cli, owner, fid, data = setup(pieces=160, broker_has=set())
    rate = 96 * KIB                 # per connection: 3 to 7 s in all
    doomed, other = peers(data, fid, mode="slow", rate=rate), \
        peers(data, fid, mode="slow", rate=rate)
    for p in (doomed, other):
        announce(owner, fid, p, 160)
    out = tmp_path / "out"
    proc = subprocess.Popen([cli.bin, "--json", "get", fid, "-o", str(out), "--sources"],
                            env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        wait_until(lambda: doomed.sent() >= 128 * KIB, 30, interval=0.02,
                   what="the doomed peer to send something")
        doomed.kill()
        stdout, stderr = proc.communicate(timeout=GET_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stderr
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr
    body = json.loads(stdout)
    assert out.read_bytes() == data
    src = by_url(body)
    assert cli.broker.url not in src                    # it holds nothing
    assert src[doomed.url]["dropped"], src[doomed.url]
    assert src[other.url]["dropped"] is None
    assert src[doomed.url]["pieces"] + src[other.url]["pieces"] == 160
    assert src[other.url]["pieces"] > 80


def test_stalling_and_closing_peers_are_dropped(setup, peers, tmp_path):
    """A peer that goes silent mid-piece is dropped after --stall seconds,
    one that closes its connections mid-piece at once; their pieces come
    from the third, slow enough (4 s in all) that the download still needs
    them when --stall 1 has passed (the broker holds nothing)."""
    cli, owner, fid, data = setup(pieces=64, broker_has=set())
    stall, close, good = (peers(data, fid, mode="stall"), peers(data, fid, mode="close"),
                          peers(data, fid, mode="slow", rate=64 * KIB))
    for p in (stall, close, good):
        announce(owner, fid, p, 64)
    out = tmp_path / "out"
    body, err, secs = get(cli, fid, out, "--stall", "1")
    assert out.read_bytes() == data
    src = by_url(body)
    assert src[stall.url]["dropped"].startswith("stalled: no byte for"), src[stall.url]
    assert src[close.url]["dropped"], src[close.url]
    assert src[stall.url]["pieces"] == src[close.url]["pieces"] == 0
    assert src[good.url]["dropped"] is None and src[good.url]["pieces"] == 64
    assert secs < 30, secs
    assert "stalled" in sources_text(err)[stall.url][3]


def test_from_peers_alone(setup, peers, tmp_path):
    """The broker holds no piece (its /content answers 409 incomplete, and
    the tracker leaves it out): two peers serve the whole file."""
    cli, owner, fid, data = setup(pieces=40, broker_has=set())
    r = owner.http.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=0-99"})
    expect(r, 409, "incomplete")
    a, b = peers(data, fid, have=set(range(0, 30))), peers(data, fid, have=set(range(10, 40)))
    announce(owner, fid, a, 40, have=range(0, 30))
    announce(owner, fid, b, 40, have=range(10, 40))
    out = tmp_path / "out"
    body, _, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    assert [s["kind"] for s in body["sources"]] == ["peer", "peer"], body["sources"]
    assert sum(s["pieces"] for s in body["sources"]) == 40
    assert all(s["pieces"] >= 10 for s in body["sources"])


def test_a_piece_without_live_holder(setup, peers, tmp_path):
    """The broker lacks pieces 5 and 9-11; a peer that announced them is
    dead.  get names them and exits 5 (incomplete); what it could get is
    kept, and a later get with a live holder completes the file."""
    cli, owner, fid, data = setup(pieces=32, broker_has=set(range(32)) - {5, 9, 10, 11})
    dead = peers(data, fid)
    announce(owner, fid, dead, 32)
    dead.kill()
    out = tmp_path / "out"
    r = cli.run("get", fid, "-o", out, "--sources", rc=EXIT_CONFLICT)
    assert re.search(rf"no live source holds pieces 5, 9-11 of file '{fid}'", r.stderr), r.stderr
    text = sources_text(r.stderr)
    assert text[dead.url][3], text                    # dropped, and why
    err = cli.json("get", fid, "-o", out, rc=EXIT_CONFLICT)
    assert err["error"]["code"] == "incomplete" and "5, 9-11" in err["error"]["message"]
    got = out.read_bytes()
    assert len(got) == len(data)
    for i, (a, b) in enumerate(zip(split(got, PS), split(data, PS))):
        assert (a == b) == (i not in (5, 9, 10, 11)), i   # the others were fetched

    # with nobody holding them from the start: the same error, at once
    expect(owner.http.delete(f"/v1/files/{fid}/peers", params={"url": dead.url}), 200)
    err = cli.json("get", fid, "-o", tmp_path / "other", rc=EXIT_CONFLICT)
    assert err["error"]["code"] == "incomplete"
    assert "no source holds pieces 5, 9-11" in err["error"]["message"], err

    # a live holder of them: the first OUT is completed
    alive = peers(data, fid, have={5, 9, 10, 11})
    announce(owner, fid, alive, 32, have={5, 9, 10, 11})
    body, _, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    assert body["fetched"] == 4 and by_url(body)[alive.url]["pieces"] == 4


def test_the_sole_holder_of_some_pieces_stalls(setup, peers, tmp_path):
    """Pieces 32-47 only a peer holds, and it goes silent: it is dropped
    after --stall, the broker's pieces are all fetched, and get names the
    others (exit 5)."""
    cli, owner, fid, data = setup(pieces=48, broker_has=set(range(32)))
    stuck = peers(data, fid, mode="stall")
    announce(owner, fid, stuck, 48)
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = cli.run("get", fid, "-o", out, "--sources", "--stall", "1", rc=EXIT_CONFLICT)
    assert time.monotonic() - t0 < 30
    assert re.search(rf"no live source holds pieces 32-47 of file '{fid}' \(1 of 2 sources "
                     rf"dropped; last: peer '{re.escape(stuck.url)}': stalled", r.stderr), r.stderr
    assert sources_text(r.stderr)[cli.broker.url][1] == 32
    assert out.read_bytes()[:32 * PS] == data[:32 * PS]


def test_another_file_broker(setup, make_broker, tmp_path):
    """A second file broker on the same database holds pieces the first
    lacks: the tracker lists it without a bitfield, get asks its /have
    and takes those pieces from it."""
    cli, owner, fid, data = setup(pieces=48, broker_has=set(range(16)))
    b2 = make_broker()
    http2 = b2.session(token=owner.session_id)
    for n, blob in enumerate(split(data, PS)):
        if n >= 16:
            r = http2.put(f"/v1/files/{fid}/pieces/{n}", data=blob,
                          headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
    listed = expect(owner.http.get(f"/v1/files/{fid}/peers"), 200)["peers"]
    assert any(p["url"] == b2.url and p["have"] is None for p in listed), listed
    out = tmp_path / "out"
    body, _, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    src = by_url(body)
    assert src[cli.broker.url]["kind"] == "broker" and src[cli.broker.url]["held"] == 16
    assert src[b2.url]["kind"] == "file-broker" and src[b2.url]["held"] == 32
    assert src[cli.broker.url]["pieces"] == 16 and src[b2.url]["pieces"] == 32
    assert all(s["dropped"] is None for s in body["sources"]), body["sources"]


def test_without_peers_the_broker_alone(setup, tmp_path):
    """No peer: one source, the broker, as before; --json without
    --sources answers what it always did."""
    cli, owner, fid, data = setup(pieces=20)
    out = tmp_path / "out"
    body, err, _ = get(cli, fid, out)
    assert out.read_bytes() == data
    assert body["sources"] == [{"kind": "broker", "url": cli.broker.url,
                                "id": cli.identity()["broker_id"], "held": 20, "pieces": 20,
                                "bytes": len(data), "dropped": None}]
    assert err == f"source broker {cli.broker.url}: 20 pieces, {len(data)} bytes\n"
    body = cli.json("get", fid, "-o", out)
    assert "sources" not in body and body["reused"] == 20


def test_progress_shows_live_sources(setup, peers, tmp_path):
    """On a terminal, the progress line counts the live sources."""
    cli, owner, fid, data = setup(pieces=64)
    a = peers(data, fid, mode="slow", rate=256 * KIB)
    announce(owner, fid, a, 64)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([cli.bin, "get", fid, "-o", str(tmp_path / "out")],
                                env=cli.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = None
        seen = b""
        deadline = time.monotonic() + GET_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(GET_TIMEOUT)
        proc.stdout.close()
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0, seen
    assert b"2 sources" in seen, seen
    assert (tmp_path / "out").read_bytes() == data


# --- with real peers: shoal serve --------------------------------------------

class Serve:
    """One 'shoal serve' of a CLI user on host (a loopback address)."""

    def __init__(self, cli, host):
        self.cli = cli
        self.url = f"http://{host}:{free_port()}"
        self.log = open(cli.root / f"serve-{host}.log", "w+")
        self.proc = subprocess.Popen(
            [cli.bin, "serve", "--listen", self.url[7:], "--max-seed-ratio", "0"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=cli.env())

    def stop(self):
        """SIGTERM by PID, bounded wait, SIGKILL as a last resort; returns
        its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return text


def data_cli(shoal_path, root, broker):
    """A registered CLI user with a data folder of its own (for seed/serve)."""
    c = Cli(shoal_path, root, broker)
    c.register()
    base_env = c.env
    c.env = lambda extra=None: dict(base_env(extra), XDG_DATA_HOME=str(root / "data"))
    return c


def tracked_urls(cli, fid):
    ident = cli.identity()
    http = cli.broker.session()
    sid = expect(http.post("/v1/sessions", json={"user_id": ident["user_id"],
                                                 "auth_id": ident["auth_id"]}), 201)
    http = cli.broker.session(token=sid["session_id"])
    body = expect(http.get(f"/v1/files/{fid}/peers"), 200)
    return [p["url"] for p in body["peers"] if p["kind"] == "peer"]


def test_real_peers_then_without_the_file_broker(shoal_path, make_broker, tmp_path):
    """A puts a file and serves it (127.0.0.2); B gets it from the broker
    and A, then serves its copy (127.0.0.3); with the broker's file role
    switched off, C gets it from A and B alone."""
    b = make_broker()
    a, rb, c = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b", "c"))
    data = pattern(96 * PS + 321, new_uuid().encode())
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    fid = a.json("put", src, "--piece-size", "16K")["file_id"]
    for reader in (rb, c):
        a.run("share", "grant", "default", reader.identity()["user_id"], rc=0)
    a.json("seed", fid, src)
    serves = [Serve(a, "127.0.0.2")]
    try:
        wait_until(lambda: serves[0].url in tracked_urls(a, fid), 20,
                   what="A's announcement")
        out_b = tmp_path / "b.bin"
        body, _, _ = get(rb, fid, out_b)
        assert out_b.read_bytes() == data
        src_b = by_url(body)
        assert set(src_b) == {b.url, serves[0].url}, body["sources"]
        assert all(s["dropped"] is None for s in body["sources"]), body["sources"]
        assert sum(s["pieces"] for s in body["sources"]) == 97

        rb.json("seed", fid, out_b)
        serves.append(Serve(rb, "127.0.0.3"))
        wait_until(lambda: serves[1].url in tracked_urls(a, fid), 20,
                   what="B's announcement")
        b.flags["roles"] = "trust,metadata,accounting"
        b.restart()
        out_c = tmp_path / "c.bin"
        body, _, _ = get(c, fid, out_c)
        assert out_c.read_bytes() == data
        src_c = by_url(body)
        assert set(src_c) == {serves[0].url, serves[1].url}, body["sources"]
        assert all(s["kind"] == "peer" and s["dropped"] is None and s["pieces"] > 0
                   for s in body["sources"]), body["sources"]
        assert sum(s["pieces"] for s in body["sources"]) == 97
    finally:
        logs = [(s.cli, s.stop()) for s in serves]
    for who, text in logs:
        assert "Sanitizer" not in text and "runtime error" not in text, text
        who.learn_secrets()
        for secret, what in who.secrets.items():
            assert secret not in text, f"the {what} appears in the output of shoal serve"


def test_usage_errors(setup, tmp_path):
    cli, _, fid, _ = setup(pieces=2)
    for bad in ("0", "-1", "x", "4000"):
        r = cli.run("get", fid, "-o", tmp_path / "x", "--stall", bad, rc=2)
        assert "stall" in r.stderr
    cli.run("get", fid, "-o", tmp_path / "x", "--sources=yes", rc=2)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "fake-peer":
    fake_peer_main(sys.argv[2:])
