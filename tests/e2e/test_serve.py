"""shoal seed and shoal serve: a peer serves what it holds with the file
broker's piece endpoints (content with Range, pieces, have, HEAD, X-Sign),
lets in only sessions the trust broker vouches for (inner circle, cached
for --auth-ttl) or that its trust bubble holds, announces what it holds to
the tracker and withdraws on SIGTERM; /metrics counts the bytes; the seed
ratio and --max-storage hold.

Every peer a test starts is stopped by its PID (SIGTERM, then SIGKILL
after a bounded wait) and its output checked for sanitizer reports and
leaked secrets.  Loopback only; every wait is bounded.
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

from filekit import KIB, merkle_root, pattern, sha, split, verify_xsign
from helpers import (DEFAULT_TIMEOUT, SANITIZER_MARKERS, HttpSession, expect, free_port,
                     make_user, new_uuid, parse_metrics, metric, wait_until)
from test_cli import Cli

PS = 16 * KIB
SIZE = 6 * PS + 1234                  # 7 pieces, the last one short
STOP_TIMEOUT = 10
START_TIMEOUT = 20


@pytest.fixture(scope="module")
def shoal_path(bin_dir):
    p = bin_dir / "shoal"
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} does not exist: build it with 'make SAN=1 all'")
    return p


class Peer:
    """One 'shoal serve' process of a Cli user, on a free loopback port."""

    def __init__(self, cli, args=(), data_dir=None):
        self.cli = cli
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        args = list(map(str, args))
        if "--max-seed-ratio" not in args:     # tests serve the file many times
            args += ["--max-seed-ratio", "0"]
        argv = [cli.bin, "serve", "--listen", f"127.0.0.1:{self.port}", *args]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        self.out = open(cli.root / f"serve-{self.port}.out", "w+")
        self.err = open(cli.root / f"serve-{self.port}.err", "w+")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.err,
                                     stdin=subprocess.DEVNULL,
                                     env=cli.env({"SHOAL_LOG_LEVEL": "debug"}))

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        s = HttpSession(self.url)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"shoal serve exited with {self.proc.returncode}:\n"
                                     f"{self.stderr()}")
            try:
                if s.get("/healthz", timeout=1).status_code == 200:
                    return self
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"shoal serve did not answer within {START_TIMEOUT}s:\n"
                                     f"{self.stderr()}")
            time.sleep(0.05)

    def stderr(self):
        self.err.flush()
        self.err.seek(0)
        return self.err.read()

    def stdout(self):
        self.out.flush()
        self.out.seek(0)
        return self.out.read()

    def session(self, token=None, source=None):
        return HttpSession(self.url, token=token, source=source)

    def metrics(self):
        r = self.session().get("/metrics")
        assert r.status_code == 200, r.text
        return parse_metrics(r.text)

    def stop(self, sig=signal.SIGTERM):
        """Signal, bounded wait, SIGKILL as a last resort; returns problems."""
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(STOP_TIMEOUT)
                if rc != 0:
                    problems.append(f"shoal serve exited with {rc} after {sig!r}")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
                problems.append(f"shoal serve ignored {sig!r} for {STOP_TIMEOUT}s; killed")
        text = self.stderr() + self.stdout()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                i = text.index(marker)
                problems.append(f"sanitizer report:\n{text[max(0, i - 200):i + 3000]}")
        self.cli.learn_secrets()
        for secret, what in self.cli.secrets.items():
            if secret in text:
                problems.append(f"the {what} appears in the output of shoal serve")
        self.out.close()
        self.err.close()
        return problems


@pytest.fixture
def peers():
    """start(cli, *args) -> a ready Peer; all are stopped at the end."""
    started = []

    def start(cli, *args, data_dir=None, ready=True):
        p = Peer(cli, args, data_dir)
        started.append(p)
        return p.wait_ready() if ready else p
    yield start
    problems = []
    for p in started:
        if not p.out.closed:
            problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def owner(shoal_path, broker, tmp_path):
    """A, a registered CLI user with its own data folder."""
    c = Cli(shoal_path, tmp_path / "a", broker)
    c.register()
    c.data_home = tmp_path / "a" / "data"
    base_env = c.env

    def env(extra=None):
        e = base_env(extra)
        e["XDG_DATA_HOME"] = str(c.data_home)
        return e
    c.env = env
    return c


def put_file(cli, tmp_path, data=None, name="f.bin"):
    """cli puts a file of SIZE bytes (16 KiB pieces); (file_id, data, path)."""
    data = data if data is not None else pattern(SIZE, new_uuid().encode())
    src = tmp_path / name
    src.write_bytes(data)
    fid = cli.json("put", src, "--piece-size", "16K")["file_id"]
    return fid, data, src


def grant_read(cli, *users):
    for u in users:
        cli.run("share", "grant", "default", u.user_id, rc=0)


@pytest.fixture
def seeded(owner, tmp_path, broker, user):
    """A's file, seeded into A's data folder; B may read it."""
    fid, data, src = put_file(owner, tmp_path)
    b = user()
    grant_read(owner, b)
    body = owner.json("seed", fid, src)
    assert body["file_id"] == fid and body["version"] == 1 and body["size"] == SIZE
    assert body["pieces"] == 7 and body["added"] == 7
    assert body["data_dir"] == str(owner.data_home / "shoal")
    return {"fid": fid, "data": data, "src": src, "b": b}


def tracked(u, fid):
    body = expect(u.http.get(f"/v1/files/{fid}/peers"), 200)
    return [p for p in body["peers"] if p["kind"] == "peer"]


# --- seed ----------------------------------------------------------------------

def test_seed_lays_out_the_data_folder(owner, seeded):
    fid = seeded["fid"]
    root = owner.data_home / "shoal"
    record = json.loads((root / "files" / fid / "1.json").read_text())
    assert record["file_id"] == fid and record["version"] == 1
    hashes = [sha(p) for p in split(seeded["data"], PS)]
    assert record["piece_hashes"] == hashes and record["root"] == merkle_root(hashes)
    assert record["x_sign"].startswith("v=1; ")
    for h in hashes:
        p = root / "store" / "pieces" / h[:2] / h
        assert hashlib.sha256(p.read_bytes()).hexdigest() == h
    assert os.stat(root).st_mode & 0o077 == 0
    assert os.stat(root / "files" / fid / "1.json").st_mode & 0o777 == 0o600
    # Seeding again adds nothing new.
    again = owner.json("seed", fid, seeded["src"])
    assert again["added"] == 0


def test_seed_refuses_a_file_that_does_not_match(owner, tmp_path, broker):
    fid, data, src = put_file(owner, tmp_path)
    bad = bytearray(data)
    bad[3 * PS + 5] ^= 0x01
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(bytes(bad))
    body = owner.json("seed", fid, wrong, rc=1)
    assert "piece 3 of" in body["error"]["message"], body
    assert not (owner.data_home / "shoal" / "files" / fid).exists()
    short = tmp_path / "short.bin"
    short.write_bytes(data[:-1])
    body = owner.json("seed", fid, short, rc=7)
    assert f"is {SIZE - 1} bytes" in body["error"]["message"], body
    owner.json("seed", fid, tmp_path / "absent", rc=7)
    owner.json("seed", "not-a-uuid", src, rc=2)
    owner.json("seed", fid, rc=2)
    owner.json("seed", new_uuid(), src, rc=4)
    owner.json("seed", fid, src, "--version", "2", rc=4)
    owner.json("seed", fid, src, "--version", "x", rc=2)


# --- serving -----------------------------------------------------------------

def test_serves_content_pieces_and_have(owner, seeded, peers, broker):
    fid, data, b = seeded["fid"], seeded["data"], seeded["b"]
    peer = peers(owner)
    s = peer.session(token=b.session_id)
    hashes = [sha(p) for p in split(data, PS)]
    root = merkle_root(hashes)

    r = s.get(f"/v1/files/{fid}/content")
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == f'"{root}"'
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["X-Peer-Id"] == owner.identity()["user_id"]
    verify_xsign(b, r.headers["X-Sign"], fid, 1, SIZE, PS, root)

    # A range across pieces, one inside a piece, a suffix, an open end.
    for rng, lo, hi in ((f"bytes=100-{3 * PS + 7}", 100, 3 * PS + 7),
                        (f"bytes={PS + 1}-{PS + 99}", PS + 1, PS + 99),
                        ("bytes=-1000", SIZE - 1000, SIZE - 1),
                        (f"bytes={5 * PS}-", 5 * PS, SIZE - 1)):
        r = s.get(f"/v1/files/{fid}/content", headers={"Range": rng})
        assert r.status_code == 206, (rng, r.text)
        assert r.content == data[lo:hi + 1], rng
        assert r.headers["Content-Range"] == f"bytes {lo}-{hi}/{SIZE}"
    r = s.get(f"/v1/files/{fid}/content", headers={"Range": f"bytes={SIZE}-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "range_not_satisfiable"
    assert r.headers["Content-Range"] == f"bytes */{SIZE}"

    # HEAD: the headers, no body.
    r = s.head(f"/v1/files/{fid}/content")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == SIZE and r.headers["ETag"] == f'"{root}"'
    verify_xsign(b, r.headers["X-Sign"], fid, 1, SIZE, PS, root)

    # Single pieces, with a range inside one.
    for n in (0, 6):
        r = s.get(f"/v1/files/{fid}/pieces/{n}")
        assert r.status_code == 200, r.text
        assert r.content == data[n * PS:(n + 1) * PS]
        assert r.headers["X-Piece-Hash"] == hashes[n] and r.headers["ETag"] == f'"{hashes[n]}"'
    r = s.get(f"/v1/files/{fid}/pieces/2", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[2 * PS + 10:2 * PS + 20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{PS}"
    for bad in ("7", "01", "-1", "x"):
        r = s.get(f"/v1/files/{fid}/pieces/{bad}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", bad

    r = s.get(f"/v1/files/{fid}/have")
    assert r.status_code == 200
    assert r.json() == {"file_id": fid, "version": 1, "pieces": 7, "have": "/g==",
                        "held": 7, "complete": True}
    assert s.get(f"/v1/files/{fid}/have?version=1").status_code == 200

    # What the peer does not hold, and what it does not do.
    r = s.get(f"/v1/files/{fid}/content?version=2")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = s.get(f"/v1/files/{new_uuid()}/content")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = s.get(f"/v1/files/{fid}/content?version=0")
    assert r.status_code == 400
    r = s.get("/v1/files/nope/content")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = s.put(f"/v1/files/{fid}/pieces/0", data=b"x")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert s.get("/v1/users").status_code == 404

    # The same bytes as the broker's own answer.
    rb = b.http.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=5000-40000"})
    rp = s.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=5000-40000"})
    assert (rb.status_code, rb.content, rb.headers["ETag"], rb.headers["Content-Range"]) == \
        (rp.status_code, rp.content, rp.headers["ETag"], rp.headers["Content-Range"])


def test_metrics_count_uploaded_bytes(owner, seeded, peers):
    fid, b = seeded["fid"], seeded["b"]
    peer = peers(owner)
    before = metric(peer.metrics(), "shoal_peer_upload_bytes_total")
    s = peer.session(token=b.session_id)
    assert s.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=0-999"}).status_code == 206
    assert s.get(f"/v1/files/{fid}/pieces/1").status_code == 200
    assert s.head(f"/v1/files/{fid}/content").status_code == 200     # counts nothing
    m = peer.metrics()
    assert metric(m, "shoal_peer_upload_bytes_total") == before + 1000 + PS
    assert metric(m, "shoal_peer_download_bytes_total") == 0
    assert metric(m, "shoal_peer_versions", state="served") == 1
    assert metric(m, "shoal_peer_storage_bytes") == SIZE
    assert metric(m, "shoal_http_requests_total", route="/v1/files/{id}/content",
                  status="206") == 1
    # The second request of the same session came from the cache.
    assert metric(m, "shoal_peer_auth_total", via="broker") == 1
    assert metric(m, "shoal_peer_auth_total", via="cache") == 2


# --- who may read ------------------------------------------------------------

def test_sessions_are_checked(owner, seeded, peers, broker, user):
    fid, b = seeded["fid"], seeded["b"]
    peer = peers(owner, "--auth-ttl", "2")
    path = f"/v1/files/{fid}/content"

    # No session, a token that is no session, an unknown session.
    r = peer.session().get(path)
    assert r.status_code == 400 and r.json()["error"]["code"] == "session_missing"
    for token in ("nope", new_uuid()):
        r = peer.session(token=token).get(path)
        assert r.status_code == 403 and r.json()["error"]["code"] == "session_unknown"

    # A user who may not read the file.
    stranger = user()
    r = peer.session(token=stranger.session_id).get(path)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # ... who may still learn that an unknown file is not here.
    r = peer.session(token=stranger.session_id).get(f"/v1/files/{new_uuid()}/content")
    assert r.status_code == 404

    # B's session from another address: 409, and the connection closes.
    r = peer.session(token=b.session_id, source="127.0.0.2").get(path)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ip_mismatch"
    assert r.headers.get("Connection", "").lower() == "close"

    # A session that works, then is revoked: the cached yes lasts at most
    # --auth-ttl, then the broker's no comes through.
    sid, _ = b.new_session()
    assert peer.session(token=sid).get(path).status_code == 200
    expect(b.http.delete(f"/v1/sessions/{sid}"), 200)
    deadline = time.monotonic() + 10
    while True:
        r = peer.session(token=sid).get(path)
        if r.status_code != 200:
            break
        assert time.monotonic() < deadline, "a revoked session is still let in after 10 s"
        time.sleep(0.2)
    assert r.status_code == 403 and r.json()["error"]["code"] == "session_unknown"
    # B's own session still works.
    assert peer.session(token=b.session_id).get(path).status_code == 200


def test_read_access_taken_away_shows_after_the_ttl(owner, seeded, peers):
    fid, b = seeded["fid"], seeded["b"]
    peer = peers(owner, "--auth-ttl", "1")
    s = peer.session(token=b.session_id)
    assert s.get(f"/v1/files/{fid}/have").status_code == 200
    owner.run("share", "revoke", "default", b.user_id, rc=0)
    wait_until(lambda: s.get(f"/v1/files/{fid}/have").status_code == 403, 10,
               what="the revoked read access to be refused")


def test_trust_bubble_lets_sessions_in_without_asking(owner, seeded, peers, user):
    fid = seeded["fid"]
    c = user()
    grant_read(owner, seeded["b"], c)
    a_id = owner.identity()["user_id"]
    expect(c.http.put(f"/v1/users/{c.user_id}/trusted", json={"user_ids": [a_id]}), 200)
    peer = peers(owner, "--trust-interval", "0.3")
    path = f"/v1/files/{fid}/pieces/0"

    wait_until(lambda: metric(peer.metrics(), "shoal_peer_trust_bubble_sessions") >= 1, 10,
               what="the trust bubble to hold C's session")
    assert peer.session(token=c.session_id).get(path).status_code == 200
    asked = metric(peer.metrics(), "shoal_peer_auth_total", via="broker")

    # A new session of C: known from the bubble, its read access cached.
    sid2, _ = c.new_session()
    wait_until(lambda: metric(peer.metrics(), "shoal_peer_trust_bubble_sessions") >= 2, 10,
               what="the trust bubble to hold C's new session")
    assert peer.session(token=sid2).get(path).status_code == 200
    m = peer.metrics()
    assert metric(m, "shoal_peer_auth_total", via="broker") == asked
    assert metric(m, "shoal_peer_auth_total", via="bubble") == 1
    # The bubble still checks the address, without asking either.
    r = peer.session(token=sid2, source="127.0.0.2").get(path)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ip_mismatch"
    assert metric(peer.metrics(), "shoal_peer_auth_total", via="broker") == asked


# --- the tracker -------------------------------------------------------------

def test_announces_and_withdraws_on_sigterm(owner, seeded, peers):
    fid, b = seeded["fid"], seeded["b"]
    peer = peers(owner)
    mine = [p for p in tracked(b, fid) if p["url"] == peer.url]
    assert len(mine) == 1, tracked(b, fid)
    assert mine[0]["complete"] is True and mine[0]["held"] == 7 and mine[0]["have"] == "/g=="
    assert mine[0]["user_id"] == owner.identity()["user_id"]
    assert peer.stop() == []
    assert [p for p in tracked(b, fid) if p["url"] == peer.url] == []


def test_advertise_and_refresh(owner, seeded, peers):
    fid, b = seeded["fid"], seeded["b"]
    url = "http://peer.example:7070"
    peer = peers(owner, "--advertise", url + "/", "--announce-interval", "0.5")
    first = [p for p in tracked(b, fid) if p["url"] == url]
    assert len(first) == 1, tracked(b, fid)
    wait_until(lambda: [p for p in tracked(b, fid) if p["url"] == url][0]["announced_at"]
               != first[0]["announced_at"], 10, what="the announcement to be refreshed")
    assert peer.stop(signal.SIGINT) == []
    assert [p for p in tracked(b, fid) if p["url"] == url] == []


def test_seed_while_serving_then_sighup(owner, tmp_path, peers, user):
    peer = peers(owner, "--announce-interval", "600")
    fid, data, src = put_file(owner, tmp_path, name="late.bin")
    b = user()
    grant_read(owner, b)
    s = peer.session(token=b.session_id)
    assert s.get(f"/v1/files/{fid}/have").status_code == 404
    owner.json("seed", fid, src)
    peer.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: s.get(f"/v1/files/{fid}/have").status_code == 200, 10,
               what="the peer to take in the seeded file")
    assert s.get(f"/v1/files/{fid}/content").content == data
    wait_until(lambda: any(p["url"] == peer.url for p in tracked(b, fid)), 10,
               what="the announcement")


# --- seeding policy -----------------------------------------------------------

def test_seed_ratio_stops_serving_and_announcing(owner, seeded, peers):
    fid, data, b = seeded["fid"], seeded["data"], seeded["b"]
    peer = peers(owner, "--max-seed-ratio", "1.5", "--announce-interval", "0.3")
    s = peer.session(token=b.session_id)
    assert s.get(f"/v1/files/{fid}/content").content == data
    assert s.get(f"/v1/files/{fid}/content").content == data       # 2 x size served
    r = s.get(f"/v1/files/{fid}/content")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert "seed ratio" in r.json()["error"]["message"]
    assert s.get(f"/v1/files/{fid}/have").status_code == 200      # still says what it has
    wait_until(lambda: not any(p["url"] == peer.url for p in tracked(b, fid)), 10,
               what="the announcement to be withdrawn")
    assert metric(peer.metrics(), "shoal_peer_versions", state="seeded_out") == 1
    # The count survives a restart.
    assert peer.stop() == []
    again = peers(owner, "--max-seed-ratio", "1.5")
    r = again.session(token=b.session_id).get(f"/v1/files/{fid}/pieces/0")
    assert r.status_code == 503


def test_max_storage(owner, seeded, peers):
    fid, b = seeded["fid"], seeded["b"]
    peer = peers(owner, "--max-storage", "64K")
    r = peer.session(token=b.session_id).get(f"/v1/files/{fid}/content")
    assert r.status_code == 404
    m = peer.metrics()
    assert metric(m, "shoal_peer_versions", state="held") == 1
    assert metric(m, "shoal_peer_versions", state="served") == 0
    assert metric(m, "shoal_peer_max_storage_bytes") == 64 * KIB
    assert not any(p["url"] == peer.url for p in tracked(b, fid))
    peer.stop()
    big = peers(owner, "--max-storage", "1MiB")
    assert big.session(token=b.session_id).get(f"/v1/files/{fid}/have").status_code == 200


def test_bad_options(owner):
    for args in (("--max-storage", "lots"), ("--max-seed-ratio", "-1"),
                 ("--auth-ttl", "x"), ("--announce-interval", "0"),
                 ("--advertise", "ftp://x"), ("--listen", "0.0.0.0:0"),
                 ("extra",), ("--nope",)):
        body = owner.json("serve", *args, rc=2)
        assert body["error"]["code"] == "usage", (args, body)
    for listen in ("nonsense", "localhost:80", "127.0.0.1:99999", "127.0.0.1:"):
        body = owner.json("serve", "--listen", listen, rc=2)
        assert listen in body["error"]["message"], body


# --- upload limit ---------------------------------------------------------------

def test_max_upload_rate(owner, tmp_path, peers, user):
    """--max-upload-rate 2M: 4 MiB of content take about 2 s, whole or as
    two ranges at once (one limit for every connection), and arrive
    intact; a piece and a range inside one piece are paced too."""
    import threading

    data = pattern(4 << 20, new_uuid().encode())
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    fid = owner.json("put", src, "--piece-size", "256K")["file_id"]
    b = user()
    grant_read(owner, b)
    assert owner.json("seed", fid, src)["pieces"] == 16
    peer = peers(owner, "--max-upload-rate", "2M")
    s = peer.session(token=b.session_id)
    assert s.get(f"/v1/files/{fid}/have").status_code == 200       # session checked

    t0 = time.monotonic()
    r = s.get(f"/v1/files/{fid}/content", timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.content == data
    assert 1.5 <= took < 6, took

    # two halves at once, on two connections: the same limit for both
    got = {}

    def fetch(i):
        lo, hi = i * (2 << 20), (i + 1) * (2 << 20) - 1
        ri = peer.session(token=b.session_id).get(
            f"/v1/files/{fid}/content", headers={"Range": f"bytes={lo}-{hi}"}, timeout=30)
        got[i] = (ri.status_code, ri.content == data[lo:hi + 1])
    t0 = time.monotonic()
    threads = [threading.Thread(target=fetch, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    took = time.monotonic() - t0
    assert got == {0: (206, True), 1: (206, True)}, got
    assert 1.5 <= took < 6, took

    # one piece (sendfile without a limit) and a range inside it
    t0 = time.monotonic()
    r = s.get(f"/v1/files/{fid}/pieces/3", timeout=30)
    assert r.status_code == 200 and r.content == data[3 << 18:4 << 18]
    r = s.get(f"/v1/files/{fid}/pieces/5", headers={"Range": "bytes=100-199"}, timeout=30)
    assert r.status_code == 206 and r.content == data[(5 << 18) + 100:(5 << 18) + 200]
    assert time.monotonic() - t0 >= 0.08                  # 256 KiB at 2 MiB/s: 0.125 s
    assert metric(peer.metrics(), "shoal_peer_upload_bytes_total") >= 2 * len(data)

    # JSON answers are not held back
    t0 = time.monotonic()
    for _ in range(5):
        assert s.get(f"/v1/files/{fid}/have").status_code == 200
    assert time.monotonic() - t0 < 2


def test_max_upload_rate_bad_values(owner):
    for bad in ("0", "0.1", "x", "-1", "2Q", "", "1M/s", "+5"):
        body = owner.json("serve", "--max-upload-rate", bad, rc=2)
        assert body["error"]["code"] == "usage", (bad, body)
        assert "--max-upload-rate" in body["error"]["message"], body
