"""The dCDN policy of the web objects 'shoal fetch' keeps (issue 5, section
2; docs/protocol.md, section 13, "Seeding policy"), and the extra injector
keys a peer pins (issue 5, section 3).

A fetched object is kept as a cache ("kept_by": "fetch", with its URL and
injection time): 'shoal serve' seeds only the newest injection of a URL it
holds, stops a week (--max-web-age) after the injection, and may evict it
under --max-storage.  Content signed by an injector whose key
injectors.json (next to the identity) pins is accepted; by any other key,
refused.

Origins are small Python HTTP servers on 127.0.0.1 (test_fetch_url.py),
stopped by their PID; a second broker, the other injector, shares the
module's database and is stopped by the pool.  Loopback only; every wait
is bounded.
"""

import base64
import calendar
import json
import os
import time

import pytest

from filekit import KIB, pattern
from helpers import expect, make_user, metric, wait_until
from test_cli import Cli
from test_fetch_url import Origin
from test_serve import Peer


@pytest.fixture(scope="module")
def broker_flags():
    return {"inject_allow": "127.0.0.0/8", "inject_timeout": "3s"}


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


@pytest.fixture
def peers():
    """Every serve started is stopped by its PID; problems fail the test."""
    started = []
    yield started
    problems = []
    for p in started:
        problems += p.stop()
    assert problems == []


def fetch(cli, tmp_path, url, *args, rc=0, out="out.bin"):
    target = tmp_path / out
    if target.exists():
        target.unlink()
    body = cli.json("fetch", url, "-o", target, "--data-dir", tmp_path / "data", *args,
                    rc=rc)
    return body, (target.read_bytes() if rc == 0 else None)


def record(tmp_path, body):
    return tmp_path / "data" / "files" / body["file_id"] / f"{body['version']}.json"


def listed(user, file_id, version, url):
    """Is url among the tracker's holders of version?"""
    r = user.http.get(f"/v1/files/{file_id}/peers?version={version}")
    assert r.status_code == 200, r.text
    return any(p.get("url") == url for p in r.json()["peers"])


def retired(peer, reason):
    return metric(peer.metrics(), "shoal_peer_retired_versions_total", reason=reason)


# --- the seeding policy ---------------------------------------------------


def test_fetched_object_is_kept_as_a_web_cache(cli, tmp_path, origin):
    data = pattern(90 * KIB, seed=b"r")
    url = origin.put("r.bin", data)
    before = time.time()
    body, got = fetch(cli, tmp_path, url, "--no-origin")
    assert body["source"] == "injector" and got == data, body
    rec = json.loads(record(tmp_path, body).read_text())
    assert rec["kept_by"] == "fetch" and rec["url"] == url, rec
    at = calendar.timegm(time.strptime(rec["injected_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before - 2 <= at <= time.time() + 1, rec["injected_at"]
    assert "; meta=" in rec["inject_x_sign"] and f"ver={body['version']};" in rec["inject_x_sign"]
    # the broker's signature of the file: what the checks look at
    assert "; meta=" not in rec["x_sign"]


def test_newer_injection_supersedes_the_older(cli, tmp_path, origin, broker, peers):
    url = origin.put("n.bin", pattern(600 * KIB, seed=b"n1"))
    first, _ = fetch(cli, tmp_path, url, "--no-origin")
    assert first["source"] == "injector", first
    peer = Peer(cli, ["--announce-interval", "0.5"], data_dir=tmp_path / "data").wait_ready()
    peers.append(peer)
    u = make_user(broker)
    fid, v1 = first["file_id"], first["version"]
    wait_until(lambda: listed(u, fid, v1, peer.url), 20, what="version 1 announced")

    # a newer injection of the URL, then fetched (from the swarm) into the
    # same data folder
    new = pattern(700 * KIB, seed=b"n2")
    origin.put("n.bin", new)
    r = u.http.post("/v1/inject", json={"url": url})
    assert r.status_code == 200 and r.content == new
    second, got = fetch(cli, tmp_path, url, "--no-origin", out="n2.bin")
    assert got == new and second["source"] == "swarm", second
    assert second["file_id"] == fid and second["version"] > v1
    v2 = second["version"]

    wait_until(lambda: listed(u, fid, v2, peer.url), 20, what="version 2 announced")
    wait_until(lambda: not listed(u, fid, v1, peer.url), 20, what="version 1 withdrawn")
    assert retired(peer, "superseded") == 1
    assert not record(tmp_path, first).exists()
    assert record(tmp_path, second).exists()
    s = peer.session(token=u.session_id)
    assert s.get(f"/v1/files/{fid}/pieces/0?version={v1}").status_code == 404
    r = s.get(f"/v1/files/{fid}/pieces/1?version={v2}")
    assert r.status_code == 200 and r.content == new[512 * KIB:]


def test_object_past_its_age_is_withdrawn(cli, tmp_path, origin, broker, peers):
    age = 6
    url = origin.put("w.bin", pattern(100 * KIB, seed=b"w"))
    body, _ = fetch(cli, tmp_path, url, "--no-origin")
    rec = json.loads(record(tmp_path, body).read_text())
    injected = calendar.timegm(time.strptime(rec["injected_at"], "%Y-%m-%dT%H:%M:%SZ"))
    peer = Peer(cli, ["--announce-interval", "0.5", "--max-web-age", f"{age}s"],
                data_dir=tmp_path / "data").wait_ready()
    peers.append(peer)
    u = make_user(broker)
    fid, v = body["file_id"], body["version"]
    wait_until(lambda: listed(u, fid, v, peer.url), age - 1, what="the object announced")
    s = peer.session(token=u.session_id)
    assert s.get(f"/v1/files/{fid}/pieces/0?version={v}").status_code == 200
    wait_until(lambda: not listed(u, fid, v, peer.url), 20, what="the object withdrawn")
    assert time.time() >= injected + age - 1          # not before its time
    assert retired(peer, "age") == 1
    assert retired(peer, "superseded") == 0
    assert not record(tmp_path, body).exists()
    assert s.get(f"/v1/files/{fid}/pieces/0?version={v}").status_code == 404


def test_max_web_age_must_be_a_duration(cli, tmp_path):
    r = cli.run("serve", "--max-web-age", "a week", "--data-dir", tmp_path / "d", rc=2)
    assert "--max-web-age" in r.stderr, r.stderr


def test_fetched_objects_are_evictable(cli, tmp_path, origin, peers):
    bodies = []
    for name, seed in (("e1.bin", b"e1"), ("e2.bin", b"e2")):
        url = origin.put(name, pattern(300 * KIB, seed=seed))
        body, _ = fetch(cli, tmp_path, url, "--no-origin", out=name)
        bodies.append(body)
    peer = Peer(cli, ["--announce-interval", "0.5", "--max-storage", "400K"],
                data_dir=tmp_path / "data").wait_ready()
    peers.append(peer)
    wait_until(lambda: metric(peer.metrics(), "shoal_peer_evicted_versions_total") == 1, 20,
               what="one fetched object evicted")
    left = [b for b in bodies if record(tmp_path, b).exists()]
    assert len(left) == 1, left
    assert json.loads(record(tmp_path, left[0]).read_text())["kept_by"] == "fetch"
    assert metric(peer.metrics(), "shoal_peer_storage_bytes") == 300 * KIB


# --- extra pinned injector keys -------------------------------------------


def other_injector(module_brokers, broker_flags):
    """A second injector on the module's database: (broker, id, key)."""
    b = module_brokers.start(**broker_flags)
    nonce = base64.b64encode(os.urandom(16)).decode()
    ch = expect(b.api.post("/v1/challenge", json={"nonce": nonce}), 200)
    return b, ch["broker_id"], ch["public_key"]


def pin(cli, entries):
    (cli.identity_path.parent / "injectors.json").write_text(json.dumps({"injectors": entries}))


def test_content_of_an_extra_pinned_injector(cli, tmp_path, origin, broker, module_brokers,
                                             broker_flags):
    b, bid, bkey = other_injector(module_brokers, broker_flags)
    assert bid != cli.identity()["broker_id"]
    data = pattern(600 * KIB, seed=b"x")
    url = origin.put("x.bin", data)
    u = make_user(broker)
    r = b.session(token=u.session_id).post("/v1/inject", json={"url": url})
    assert r.status_code == 200 and r.content == data
    origin.stop()

    # not pinned: refused (and the identity's injector cannot reach the origin)
    r = cli.run("--json", "fetch", url, "-o", tmp_path / "x0.bin", "--data-dir",
                tmp_path / "data", "--no-origin")
    assert r.returncode != 0, r.stdout
    assert f"not signed by a pinned injector (by '{bid}')" in r.stderr, r.stderr

    # pinned with another key: refused
    pin(cli, [{"url": b.url, "broker_id": bid, "public_key": "A" * 43 + "="}])
    r = cli.run("--json", "fetch", url, "-o", tmp_path / "x1.bin", "--data-dir",
                tmp_path / "data", "--no-origin")
    assert r.returncode != 0, r.stdout
    assert "signature invalid (pinned injector key)" in r.stderr, r.stderr

    # pinned with its key (beside a wrong one): accepted, and kept
    pin(cli, [{"url": b.url, "broker_id": bid, "public_key": "A" * 43 + "="},
              {"url": b.url, "broker_id": bid.upper(), "public_key": bkey}])
    body, got = fetch(cli, tmp_path, url, "--no-origin", out="x2.bin")
    assert got == data
    assert body["source"] == "swarm" and body["signed_by"] == bid, body
    rec = json.loads(record(tmp_path, body).read_text())
    assert rec["kept_by"] == "fetch" and f"key={bid}" in rec["inject_x_sign"]
