"""shoal serve --max-storage evicts what `shoal get` kept, least recently
used first, and never what the peer owns (`shoal seed`), and withdraws
the evicted version from the tracker (peer/evict.c).

Every serve runs on a loopback address of its own and is stopped by its
PID; every wait is bounded.
"""

import json

from filekit import pattern
from helpers import HttpSession, expect, metric, new_uuid, parse_metrics, wait_until
from test_fetch import PS, data_cli, shoal_path, tracked_urls  # noqa: F401
from test_swarm import Serve, check_logs, data_of

NPIECES = 4
SIZE = NPIECES * PS + 123            # put_file's size: 5 pieces


def put_file(a, tmp_path, name, npieces):
    """a puts a file of its own name (a new file, not a new version)."""
    data = pattern(npieces * PS + 123, new_uuid().encode())
    src = tmp_path / f"{name}.src"
    src.write_bytes(data)
    fid = a.json("put", src, "--piece-size", "16K")["file_id"]
    return fid, data, src


def record(cli, fid):
    path = data_of(cli) / "files" / fid / "1.json"
    return json.loads(path.read_text()) if path.exists() else None


def session_of(cli):
    ident = cli.identity()
    body = expect(cli.broker.session().post(
        "/v1/sessions", json={"user_id": ident["user_id"], "auth_id": ident["auth_id"]}), 201)
    return body["session_id"]


def pieces_of(rec):
    return set(rec["piece_hashes"])


def stored(cli):
    return {p.name for p in (data_of(cli) / "store" / "pieces").rglob("*") if p.is_file()}


def test_max_storage_evicts_the_least_recently_used_get(shoal_path, make_broker, tmp_path):
    b = make_broker()
    a, rb = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b"))
    rb_id = rb.identity()["user_id"]
    files = {}
    for name in ("owned", "f1", "f2", "f3", "f4"):
        fid, data, src = put_file(a, tmp_path, name, NPIECES)
        files[name] = (fid, data, src)
    a.run("share", "grant", "default", rb_id, rc=0)
    fid = {k: v[0] for k, v in files.items()}

    # B gets "owned" (a cache), then seeds it: the peer owns it now.
    rb.run("get", fid["owned"], "-o", tmp_path / "owned.bin", "--keep", rc=0)
    assert record(rb, fid["owned"])["kept_by"] == "get"
    rb.run("seed", fid["owned"], tmp_path / "owned.bin", rc=0)
    assert "kept_by" not in record(rb, fid["owned"])

    # Room for the owned version and two others.
    limit = 3 * SIZE + 1000
    serves = [Serve(rb, "127.0.0.3", "--max-seed-ratio", "0", "--max-storage", limit,
                    "--announce-interval", "0.5")]
    s = serves[0]
    peer = HttpSession(s.url, token=session_of(a))

    def has(name):
        return peer.get(f"/v1/files/{fid[name]}/have").status_code == 200

    def metrics():
        r = HttpSession(s.url).get("/metrics")
        assert r.status_code == 200, r.text
        return parse_metrics(r.text)

    try:
        assert has("owned")
        for name in ("f1", "f2"):
            rb.run("get", fid[name], "-o", tmp_path / f"{name}.bin", "--keep", rc=0)
            assert record(rb, fid[name])["kept_by"] == "get"
            wait_until(lambda: has(name) and s.url in tracked_urls(a, fid[name]), 20,
                       what=f"{name} served and announced")
        f2_only = pieces_of(record(rb, fid["f2"])) - pieces_of(record(rb, fid["owned"]))
        assert f2_only and f2_only <= stored(rb)
        # f1 is used: f2 is now the least recently used.
        r = peer.get(f"/v1/files/{fid['f1']}/content")
        assert r.status_code == 200 and r.content == files["f1"][1]
        assert metric(metrics(), "shoal_peer_evicted_versions_total") == 0

        # f3 arrives: f2 goes, f1 and the owned version stay.
        rb.run("get", fid["f3"], "-o", tmp_path / "f3.bin", "--keep", rc=0)
        wait_until(lambda: has("f3"), 20, what="f3 served")
        wait_until(lambda: not has("f2"), 20, what="f2 evicted")
        assert has("f1") and has("owned")
        assert record(rb, fid["f2"]) is None
        assert not (f2_only & stored(rb))
        m = metrics()
        assert metric(m, "shoal_peer_evicted_versions_total") == 1
        assert metric(m, "shoal_peer_evicted_bytes_total") == SIZE
        assert metric(m, "shoal_peer_storage_bytes") == 3 * SIZE
        wait_until(lambda: s.url not in tracked_urls(a, fid["f2"]), 20,
                   what="f2's announcement withdrawn")
        assert s.url in tracked_urls(a, fid["f1"])

        # f4: now f1 is the least recently used of the cache; the owned
        # version, used longest ago of all, stays.
        rb.run("get", fid["f4"], "-o", tmp_path / "f4.bin", "--keep", rc=0)
        wait_until(lambda: has("f4"), 20, what="f4 served")
        wait_until(lambda: not has("f1"), 20, what="f1 evicted")
        assert has("owned") and has("f3")
        assert record(rb, fid["owned"]) is not None and record(rb, fid["f1"]) is None
        r = peer.get(f"/v1/files/{fid['owned']}/content")
        assert r.status_code == 200 and r.content == files["owned"][1]
        assert metric(metrics(), "shoal_peer_evicted_versions_total") == 2
        wait_until(lambda: s.url not in tracked_urls(a, fid["f1"]), 20,
                   what="f1's announcement withdrawn")
        # The evicted one can be got again (from the broker).
        rb.run("get", fid["f2"], "-o", tmp_path / "f2again.bin", "--no-keep", rc=0)
        assert (tmp_path / "f2again.bin").read_bytes() == files["f2"][1]
        text = s.text()
    finally:
        check_logs(serves)
    assert "evicted version 1 of file '%s'" % fid["f2"] in text, text[-3000:]
    assert "evicted version 1 of file '%s'" % fid["owned"] not in text


def test_owned_alone_over_the_limit_is_not_served(shoal_path, make_broker, tmp_path):
    """A seeded version bigger than --max-storage waits (a warning), and
    a version kept by get that fits in the room is served beside it: the
    owned one is never evicted, nor does the cache go for nothing."""
    b = make_broker()
    a, rb = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b"))
    big, big_data, big_src = put_file(a, tmp_path, "big", 3 * NPIECES)
    small, small_data, _ = put_file(a, tmp_path, "small", NPIECES)
    a.run("share", "grant", "default", rb.identity()["user_id"], rc=0)
    rb.run("seed", big, big_src, rc=0)
    rb.run("get", small, "-o", tmp_path / "small.bin", "--keep", rc=0)

    serves = [Serve(rb, "127.0.0.3", "--max-seed-ratio", "0", "--max-storage",
                    2 * SIZE, "--announce-interval", "0.5")]
    s = serves[0]
    peer = HttpSession(s.url, token=session_of(a))
    try:
        wait_until(lambda: s.url in tracked_urls(a, small), 20, what="small announced")
        assert peer.get(f"/v1/files/{small}/content").content == small_data
        assert peer.get(f"/v1/files/{big}/have").status_code == 404
        assert s.url not in tracked_urls(a, big)
        m = parse_metrics(HttpSession(s.url).get("/metrics").text)
        assert metric(m, "shoal_peer_evicted_versions_total") == 0
        assert metric(m, "shoal_peer_versions", state="served") == 1
        assert metric(m, "shoal_peer_versions", state="held") == 2
        assert record(rb, big) is not None and record(rb, small) is not None
        text = s.text()
    finally:
        check_logs(serves)
    assert "not serving version 1 of file '%s'" % big in text
    assert "evicted" not in text
