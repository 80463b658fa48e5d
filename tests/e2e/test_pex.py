"""Peer exchange: GET /v1/peers?file=ID on shoal serve, the holders a peer
keeps in its data folder (holders.json, manifests/), and shoal get
without the broker: the manifest kept from an earlier run, the holders
found through the peers known there (one hop).

Every server a test starts is stopped by its PID (SIGTERM, then SIGKILL
after a bounded wait).  Loopback only; every wait is bounded.
"""

import base64
import json
import os
import shutil
import time

import pytest

from filekit import pattern
from helpers import HttpSession, new_uuid, wait_until
from test_fetch import PS, by_url, data_cli, get, shoal_path, tracked_urls  # noqa: F401
from test_serve import Peer

EXIT_NET = 6
AUTH_TTL = "600"                  # peers keep a yes while the broker is down


@pytest.fixture
def serves():
    """start(cli, *args, data_dir=None) -> a ready Peer (shoal serve on
    127.0.0.1); all are stopped by PID at the end."""
    started = []

    def start(cli, *args, data_dir=None):
        p = Peer(cli, args, data_dir)
        started.append(p)
        return p.wait_ready()
    yield start
    problems = []
    for p in started:
        if not p.out.closed:
            problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def ok(resp, status=200):
    """A peer's answer (expect() checks the broker's headers): status and
    JSON body."""
    assert resp.status_code == status, f"{resp.url}: {resp.status_code} {resp.text[:600]}"
    assert resp.headers.get("X-Peer-Id"), resp.headers
    return resp.json()


def sid_of(cli):
    return cli.session()["session_id"]


def data_dir(cli):
    return cli.root / "data" / "shoal"


def put_and_seed(a, tmp_path, npieces=24):
    data = pattern(npieces * PS + 123, new_uuid().encode())
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    fid = a.json("put", src, "--piece-size", "16K")["file_id"]
    a.json("seed", fid, src)
    return fid, data, src


# --- GET /v1/peers --------------------------------------------------------------

def test_v1_peers_answers_readers_only(shoal_path, make_broker, tmp_path, serves):
    b = make_broker()
    a, rb, stranger = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b", "s"))
    fid, data, src = put_and_seed(a, tmp_path)
    a.run("share", "grant", "default", rb.identity()["user_id"], rc=0)
    peer = serves(a, "--auth-ttl", AUTH_TTL, "--announce-interval", "0.3")
    rb.run("whoami", rc=0)                    # B and the stranger log in
    stranger.run("whoami", rc=0)

    # B may read the file: the peer lists itself, with its bitfield.
    s = HttpSession(peer.url, token=sid_of(rb))
    body = ok(s.get(f"/v1/peers?file={fid}"), 200)
    assert body["file_id"] == fid
    me = [p for p in body["peers"] if p["url"] == peer.url]
    assert len(me) == 1, body
    count = -(-len(data) // PS)
    assert me[0]["kind"] == "peer" and me[0]["version"] == 1 and me[0]["file_id"] == fid
    have = base64.b64decode(me[0]["have"])
    assert len(have) == (count + 7) // 8 and all(have[:count // 8]) and me[0]["seen_at"]
    # upper case id, a version filter
    assert ok(s.get(f"/v1/peers?file={fid.upper()}&version=1"), 200)["peers"]
    assert ok(s.get(f"/v1/peers?file={fid}&version=2"), 200)["peers"] == []

    # Bad inputs.
    r = HttpSession(peer.url).get(f"/v1/peers?file={fid}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "session_missing"
    r = HttpSession(peer.url, token=new_uuid()).get(f"/v1/peers?file={fid}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "session_unknown"
    for q in ("", "?file=", "?file=nope", "?version=1"):
        r = s.get(f"/v1/peers{q}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", q
    for v in ("0", "x", "-1"):
        r = s.get(f"/v1/peers?file={fid}&version={v}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", v
    # a user without read access learns nothing; an unknown file is 404
    r = HttpSession(peer.url, token=sid_of(stranger)).get(f"/v1/peers?file={fid}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = s.get(f"/v1/peers?file={new_uuid()}")
    assert r.status_code == 404
    # from another address, B's session is refused
    r = HttpSession(peer.url, token=sid_of(rb), source="127.0.0.2").get(
        f"/v1/peers?file={fid}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "ip_mismatch"
    assert s.post(f"/v1/peers?file={fid}").status_code == 405

    # Another holder, announced to the tracker: the peer learns of it at
    # its next round and lists it (with the bitfield the tracker gave).
    other_dir = tmp_path / "other-data"
    a.run("seed", fid, src, "--data-dir", other_dir, rc=0)
    other = serves(a, "--auth-ttl", AUTH_TTL, data_dir=other_dir)

    def listed():
        return {p["url"]: p for p in ok(s.get(f"/v1/peers?file={fid}"))["peers"]}
    wait_until(lambda: other.url in listed(), 20, what="the other holder listed")
    assert listed()[other.url]["have"] == me[0]["have"]
    assert listed()[other.url]["kind"] == "peer"
    kept = json.loads((data_dir(a) / "holders.json").read_text())["holders"]
    assert other.url in {h["url"] for h in kept} and peer.url not in {h["url"] for h in kept}


# --- get without the broker ------------------------------------------------------

def test_get_finds_peers_when_the_broker_is_down(shoal_path, make_broker, tmp_path,
                                                 serves):
    """A serves a file; B gets it with the broker up (its data folder keeps
    the manifest and who served it); a second serve of A (A2) knows A1
    only through its holders.json.  The broker stops: B gets the file
    again from A1 (known directly), and with a data folder that knows
    only A2, finds A1 through A2's /v1/peers."""
    b = make_broker()
    a, rb = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b"))
    fid, data, _ = put_and_seed(a, tmp_path)
    a.run("share", "grant", "default", rb.identity()["user_id"], rc=0)
    a1 = serves(a, "--auth-ttl", AUTH_TTL)
    wait_until(lambda: a1.url in tracked_urls(a, fid), 20, what="A's announcement")

    # B downloads with the broker up: the broker and A1 serve it.
    body, _, _ = get(rb, fid, tmp_path / "b1.bin")
    assert (tmp_path / "b1.bin").read_bytes() == data
    assert set(by_url(body)) == {b.url, a1.url}, body["sources"]
    known = json.loads((data_dir(rb) / "holders.json").read_text())["holders"]
    assert {(h["url"], h["kind"], h["file_id"], h["version"]) for h in known} == \
        {(b.url, "broker", fid, 1), (a1.url, "peer", fid, 1)}, known
    assert all(h["seen_at"] for h in known)
    kept = data_dir(rb) / "manifests" / fid / "1.json"
    assert json.loads(kept.read_text())["x_sign"].startswith("v=1; ")

    # A2: a serve of A with a data folder of its own that holds nothing
    # (--no-keep) but knows A1 (A's own get recorded it there).
    a2_dir = tmp_path / "a2-data"
    a.run("get", fid, "-o", tmp_path / "a2.bin", "--data-dir", a2_dir,
          "--no-keep", rc=0)
    a2 = serves(a, "--auth-ttl", AUTH_TTL, data_dir=a2_dir)
    s2 = HttpSession(a2.url, token=sid_of(rb))
    listed = ok(s2.get(f"/v1/peers?file={fid}"), 200)["peers"]
    assert a1.url in {p["url"] for p in listed} and a2.url not in {p["url"] for p in listed}
    # (B's session is now in A2's cache, as it is in A1's from the download)

    problems = b.stop()
    assert not problems, problems

    # 1. B again, into another file: the manifest kept, A1 known directly.
    body, err, _ = get(rb, fid, tmp_path / "b2.bin")
    assert (tmp_path / "b2.bin").read_bytes() == data
    assert "manifest" in err and "kept" in err, err
    src = by_url(body)
    assert set(src) == {a1.url}, body["sources"]
    assert src[a1.url]["pieces"] == -(-len(data) // PS)

    # 2. A data folder that knows only A2 (which holds nothing): A1 is
    # found through A2's /v1/peers, one hop.
    only = tmp_path / "b-only-a2"
    (only / "manifests" / fid).mkdir(parents=True)
    shutil.copy(kept, only / "manifests" / fid / "1.json")
    entry = next(h for h in known if h["kind"] == "peer")
    (only / "holders.json").write_text(json.dumps({"holders": [
        dict(entry, url=a2.url, have=base64.b64encode(bytes(len(
            base64.b64decode(entry["have"] or "AA==")))).decode())]}))
    body, _, _ = get(rb, fid, tmp_path / "b3.bin", "--data-dir", only)
    assert (tmp_path / "b3.bin").read_bytes() == data
    assert set(by_url(body)) == {a1.url}, body["sources"]
    # what this run learnt is kept: A1 now, next to A2
    urls = {h["url"] for h in json.loads((only / "holders.json").read_text())["holders"]}
    assert {a1.url, a2.url} <= urls

    # 3. Without a kept manifest there is nothing to verify against.
    r = rb.run("get", fid, "-o", tmp_path / "b4.bin", "--data-dir", tmp_path / "empty",
               rc=EXIT_NET)
    assert "b4" not in r.stdout


def test_holders_cache_is_bounded_and_ages(shoal_path, make_broker, tmp_path, serves):
    """Entries past their age are dropped on load; a get rewrites the file
    within its limits, whatever was there."""
    b = make_broker()
    a = data_cli(shoal_path, tmp_path / "a", b)
    fid, data, _ = put_and_seed(a, tmp_path, npieces=2)
    d = tmp_path / "cache"
    d.mkdir()
    old = {"url": "http://127.0.0.9:1", "kind": "peer", "file_id": fid, "version": 1,
           "have": None, "seen_at": "2000-01-01T00:00:00Z"}
    many = [dict(old, url=f"http://127.0.0.{3 + i // 200}:{1000 + i}",
                 seen_at="2099-01-01T00:00:00Z" if i == 0 else None, file_id=new_uuid())
            for i in range(1500)]
    (d / "holders.json").write_text(json.dumps({"holders": [old] + many}))
    now = time.time()
    for i in range(300):                         # kept manifests: 256 at most
        m = d / "manifests" / new_uuid() / "1.json"
        m.parent.mkdir(parents=True)
        m.write_text("{}")
        os.utime(m, (now - 3600 - i, now - 3600 - i))
    stale = d / "manifests" / new_uuid() / "3.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    os.utime(stale, (now - 8 * 86400, now - 8 * 86400))
    a.run("get", fid, "-o", tmp_path / "x.bin", "--data-dir", d, rc=0)
    assert (tmp_path / "x.bin").read_bytes() == data
    kept = json.loads((d / "holders.json").read_text())["holders"]
    assert [h["url"] for h in kept] == [b.url], kept     # old, undated, future: gone
    assert (d / "manifests" / fid / "1.json").exists()
    assert not stale.exists()
    assert len(list((d / "manifests").glob("*/*.json"))) == 256
    assert oct((d / "holders.json").stat().st_mode & 0o777) == "0o600"
