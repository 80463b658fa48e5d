"""A serving peer and shoal get when something fails (issue 4, section 5):
an expired session is refused by the peer with 401 session_expired
(asked of the broker, from its cache, or from its trust bubble), and a
tracker that answers 5xx (the broker runs, its database does not) makes
shoal get use the holders known in its data folder.

Every server a test starts is stopped by its PID (SIGTERM, then SIGKILL
after a bounded wait); the database is let in again whatever happens.
Loopback only; every wait is bounded.
"""

import json
import time

from helpers import HttpSession, expect, make_user, metric, wait_until
from test_fetch import by_url, data_cli, get, shoal_path, tracked_urls  # noqa: F401
from test_pex import AUTH_TTL, data_dir, put_and_seed, serves  # noqa: F401

SESSION_TTL = 3


def refused(resp, status, code):
    assert resp.status_code == status, f"{resp.url}: {resp.status_code} {resp.text[:600]}"
    assert resp.json()["error"]["code"] == code, resp.text
    assert resp.headers.get("X-Peer-Id"), resp.headers


def test_expired_session_is_refused_with_401(shoal_path, make_broker, tmp_path, serves):
    """Sessions live SESSION_TTL seconds.  The peer keeps a yes for
    --auth-ttl (600 s) but never past the session's expiry; a session it
    never saw, expired, is refused as the broker says; one from its trust
    bubble is refused from the expiry the bubble gave."""
    b = make_broker(session_ttl=f"{SESSION_TTL}s")
    a = data_cli(shoal_path, tmp_path / "a", b)
    fid, data, _ = put_and_seed(a, tmp_path, npieces=4)
    reader, truster = make_user(b), make_user(b)
    for u in (reader, truster):
        a.run("share", "grant", "default", u.user_id, rc=0)
    a_id = a.identity()["user_id"]
    expect(truster.http.put(f"/v1/users/{truster.user_id}/trusted",
                            json={"user_ids": [a_id]}), 200)
    truster.login()                      # a session the bubble will hold
    reader.login()
    cached = reader.session_id
    unseen, _ = reader.new_session()
    peer = serves(a, "--auth-ttl", AUTH_TTL, "--trust-interval", "600")
    have = f"/v1/files/{fid}/have"
    content = f"/v1/files/{fid}/content"

    # Before the expiry: let in, by asking the broker, then from the cache.
    assert HttpSession(peer.url, token=cached).get(have).status_code == 200
    assert HttpSession(peer.url, token=cached).get(have).status_code == 200
    assert metric(peer.metrics(), "shoal_peer_auth_total", via="cache") >= 1
    assert metric(peer.metrics(), "shoal_peer_trust_bubble_sessions") >= 1
    assert HttpSession(peer.url, token=truster.session_id).get(have).status_code == 200

    # After it: every path answers 401 session_expired.
    time.sleep(SESSION_TTL + 1)
    m = peer.metrics()
    asked, refused_before = (metric(m, "shoal_peer_auth_total", via="broker"),
                             metric(m, "shoal_peer_auth_refused_total"))
    # the bubble's session: refused from the expiry the bubble gave,
    # without asking the broker
    s = HttpSession(peer.url, token=truster.session_id)
    refused(s.get(have), 401, "session_expired")
    refused(s.get(content), 401, "session_expired")
    assert metric(peer.metrics(), "shoal_peer_auth_total", via="broker") == asked
    # the cached yes does not outlive the session; the unseen one is
    # refused as the broker says
    for sid in (cached, unseen):
        s = HttpSession(peer.url, token=sid)
        refused(s.get(have), 401, "session_expired")
        refused(s.get(content), 401, "session_expired")
    assert metric(peer.metrics(), "shoal_peer_auth_refused_total") == refused_before + 6
    # a live session of the same user is still let in
    fresh, _ = reader.new_session()
    r = HttpSession(peer.url, token=fresh).get(content)
    assert r.status_code == 200 and r.content == data


def test_tracker_5xx_falls_back_to_the_holders_known(shoal_path, make_broker, tmp_path,
                                                     serves):
    """The broker keeps running but its database refuses connections: the
    tracker answers 5xx.  shoal get then downloads from the holders its
    data folder knows (peer/sources.c tracker_down), with the manifest it
    kept, and the serving peer lets B in from its cache."""
    b = make_broker(fresh_db=True)
    a, rb = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b"))
    fid, data, _ = put_and_seed(a, tmp_path)
    a.run("share", "grant", "default", rb.identity()["user_id"], rc=0)
    a1 = serves(a, "--auth-ttl", AUTH_TTL)
    wait_until(lambda: a1.url in tracked_urls(a, fid), 20, what="A's announcement")

    body, _, _ = get(rb, fid, tmp_path / "b1.bin")
    assert (tmp_path / "b1.bin").read_bytes() == data
    assert a1.url in by_url(body), body["sources"]
    known = json.loads((data_dir(rb) / "holders.json").read_text())["holders"]
    assert a1.url in {h["url"] for h in known}
    sid = rb.session()["session_id"]

    db = b.dbname
    try:
        b.pg.psql("postgres", f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        b.pg.psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{db}'")
        assert b.proc.poll() is None
        # The tracker fails with a 5xx while the broker runs.
        http = HttpSession(b.url, token=sid)
        wait_until(lambda: http.get(f"/v1/files/{fid}/peers", timeout=20).status_code >= 500,
                   30, what="the tracker to fail")

        out = tmp_path / "b2.bin"
        body, err, _ = get(rb, fid, out)
        assert out.read_bytes() == data
        src = by_url(body)
        assert a1.url in src and src[a1.url]["pieces"] > 0, body["sources"]
        assert sum(s["pieces"] for s in body["sources"]) >= -(-len(data) // (16 * 1024))
        assert b.proc.poll() is None
    finally:
        b.pg.psql("postgres", f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true', check=False)
