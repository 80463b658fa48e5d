"""Sessions: log in, list, revoke, the inner circle check, Bearer handling,
expiry, purging, and the binding of a session to its IP address."""

import json
import time

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import (UUID4_RE, expect, make_user, new_uuid, parse_time, raw_request,
                     utcnow, wait_until)


def wait_past(expires_at, margin=1.05, limit=6):
    """Sleep until expires_at (RFC 3339, to the second) is over, plus a margin."""
    secs = (parse_time(expires_at) - utcnow()).total_seconds() + margin
    assert secs < limit, f"expiry {expires_at} is too far away for this test"
    time.sleep(max(0.0, secs))


# --- POST /v1/sessions ------------------------------------------------------

def test_login_201(broker, user):
    u = user(login=False)
    r = broker.api.post("/v1/sessions", json={"user_id": u.user_id, "auth_id": u.auth_id})
    body = expect(r, 201)
    assert UUID4_RE.match(body["session_id"])
    assert body["user_id"] == u.user_id
    assert body["ip"] == "127.0.0.1"
    ttl = (parse_time(body["expires_at"]) - utcnow()).total_seconds()
    assert abs(ttl - 24 * 3600) < 120, body        # default session_ttl 24h


def test_login_any_case(broker, user):
    u = user(login=False)
    r = broker.api.post("/v1/sessions", json={"user_id": u.user_id.upper(),
                                              "auth_id": u.auth_id.upper()})
    assert expect(r, 201)["user_id"] == u.user_id


def test_each_login_is_a_new_session(broker, user):
    u = user()
    sid2, _ = u.new_session()
    assert sid2 != u.session_id


@pytest.mark.parametrize("payload,field", [
    ({}, None),
    ({"user_id": "X"}, "auth_id"),
    ({"auth_id": "X"}, "user_id"),
    ({"user_id": "X", "auth_id": "not-a-uuid"}, "auth_id"),
    ({"user_id": "not-a-uuid", "auth_id": "A"}, "user_id"),
    ({"user_id": "X", "auth_id": 7}, "auth_id"),
    ({"user_id": "X", "auth_id": "A", "ip": "10.0.0.1"}, "ip"),
])
def test_login_bad_body_400(broker, user, payload, field):
    u = user(login=False)
    subst = {"X": u.user_id, "A": u.auth_id}
    payload = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}
    body = expect(broker.api.post("/v1/sessions", json=payload), 400, "invalid_request")
    if field:
        assert field in body["error"]["message"], body
    else:
        assert "user_id" in body["error"]["message"] or "auth_id" in body["error"]["message"]


def test_login_wrong_auth_id_401(broker, user):
    u, other = user(login=False), user(login=False)
    expect(broker.api.post("/v1/sessions", json={"user_id": u.user_id, "auth_id": new_uuid()}),
           401, "invalid_auth_id")
    # another user's auth id does not open this account
    expect(broker.api.post("/v1/sessions", json={"user_id": u.user_id,
                                                 "auth_id": other.auth_id}),
           401, "invalid_auth_id")


def test_login_unknown_user_404(broker):
    expect(broker.api.post("/v1/sessions", json={"user_id": new_uuid(), "auth_id": new_uuid()}),
           404, "not_found")


# --- GET /v1/sessions ---------------------------------------------------------

def test_list_own_sessions_only(broker, user):
    a, b = user(), user()
    a2, _ = a.new_session()
    b2, _ = b.new_session()
    body = expect(a.http.get("/v1/sessions"), 200)
    ids = [s["session_id"] for s in body["sessions"]]
    assert sorted(ids) == sorted([a.session_id, a2]), body
    assert b.session_id not in ids and b2 not in ids
    cur = {s["session_id"]: s["current"] for s in body["sessions"]}
    assert cur == {a.session_id: True, a2: False}
    for s in body["sessions"]:
        assert s["ip"] == "127.0.0.1"
        assert parse_time(s["created_at"]) <= parse_time(s["expires_at"])
    # oldest first
    assert ids == [a.session_id, a2] or \
        body["sessions"][0]["created_at"] == body["sessions"][1]["created_at"]


# --- DELETE /v1/sessions/{sid} -------------------------------------------------

def test_revoke_own_session_then_it_is_unknown(broker, user):
    u = user()
    s2, http2 = u.new_session()
    expect(http2.get("/v1/sessions"), 200)
    body = expect(u.http.delete(f"/v1/sessions/{s2}"), 200)
    assert body == {"session_id": s2, "revoked": True}
    expect(http2.get("/v1/sessions"), 403, "session_unknown")
    # revoked: 404 on a second delete, and gone from the list
    expect(u.http.delete(f"/v1/sessions/{s2}"), 404, "not_found")
    ids = [s["session_id"] for s in expect(u.http.get("/v1/sessions"), 200)["sessions"]]
    assert ids == [u.session_id]


def test_logout_current_session(broker, user):
    u = user()
    expect(u.http.delete(f"/v1/sessions/{u.session_id}"), 200)
    expect(u.http.get("/v1/sessions"), 403, "session_unknown")


def test_revoke_other_users_session_is_404(broker, user):
    a, b = user(), user()
    expect(a.http.delete(f"/v1/sessions/{b.session_id}"), 404, "not_found")
    expect(a.http.delete(f"/v1/sessions/{new_uuid()}"), 404, "not_found")
    expect(a.http.delete("/v1/sessions/not-a-uuid"), 400, "invalid_request")
    # b's session still works
    expect(b.http.get("/v1/sessions"), 200)


# --- inner circle: GET /v1/sessions/{sid}?ip= -----------------------------------

def test_inner_circle_ok(broker, user):
    a, b = user(), user()
    body = expect(a.http.get(f"/v1/sessions/{b.session_id}", params={"ip": "127.0.0.1"}), 200)
    assert body["session_id"] == b.session_id
    assert body["user_id"] == b.user_id
    assert body["public_key"] == b.public_key
    assert body["ip"] == "127.0.0.1"
    assert body["expires_at"] == b.expires_at
    # a session may ask about itself; the path id in any case
    expect(b.http.get(f"/v1/sessions/{b.session_id.upper()}", params={"ip": "127.0.0.1"}), 200)
    # compared as addresses
    expect(a.http.get(f"/v1/sessions/{b.session_id}", params={"ip": "::ffff:127.0.0.1"}), 200)


def test_inner_circle_ip_mismatch_keeps_connection(broker, user):
    a, b = user(), user()
    r = a.http.get(f"/v1/sessions/{b.session_id}", params={"ip": "127.0.0.2"})
    expect(r, 409, "ip_mismatch")
    assert r.headers.get("Connection", "").lower() != "close", r.headers
    # the caller's own connection and session are unaffected
    status, hdrs, data, closed = raw_request(
        broker, "GET", f"/v1/sessions/{b.session_id}?ip=127.0.0.2",
        headers={"Authorization": f"Bearer {a.session_id}"}, close_wait=1.0)
    assert status == 409 and json.loads(data)["error"]["code"] == "ip_mismatch"
    assert hdrs.get("connection", "").lower() != "close"
    assert not closed, "the broker closed the caller's connection after an inner-circle 409"


def test_inner_circle_unknown_and_revoked_404(broker, user):
    a, b = user(), user()
    expect(a.http.get(f"/v1/sessions/{new_uuid()}", params={"ip": "127.0.0.1"}), 404,
           "not_found")
    s2, _ = b.new_session()
    expect(b.http.delete(f"/v1/sessions/{s2}"), 200)
    expect(a.http.get(f"/v1/sessions/{s2}", params={"ip": "127.0.0.1"}), 404, "not_found")


@pytest.mark.parametrize("params", [
    {},
    {"ip": ""},
    {"ip": "localhost"},
    {"ip": "127.0.0.256"},
    {"ip": "127.0.0"},
    {"ip": "1.2.3.4.5"},
    {"ip": "::g"},
    {"ip": "127.0.0.1' OR '1'='1"},
    {"ip": "127.0.0.1/8"},
    {"ip": "127.0.0.1:80"},
    {"ip": "x" * 300},
])
def test_inner_circle_bad_ip_400(broker, user, params):
    a, b = user(), user()
    expect(a.http.get(f"/v1/sessions/{b.session_id}", params=params), 400, "invalid_request")


def test_inner_circle_bad_sid_400(broker, user):
    a = user()
    expect(a.http.get("/v1/sessions/not-a-uuid", params={"ip": "127.0.0.1"}), 400,
           "invalid_request")


def test_inner_circle_needs_a_session(broker, user):
    b = user()
    expect(broker.api.get(f"/v1/sessions/{b.session_id}", params={"ip": "127.0.0.1"}), 400,
           "session_missing")


# --- Bearer handling -----------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
                                    "bearer-ish"])
def test_bearer_missing_400(broker, header):
    headers = {} if header is None else {"Authorization": header}
    expect(broker.api.get("/v1/sessions", headers=headers), 400, "session_missing")


@pytest.mark.parametrize("token", ["garbage", "12345", "' OR 1=1 --",
                                   "00000000-0000-0000-0000-00000000000g", None])
def test_bearer_unknown_403(broker, token):
    token = token or new_uuid()
    expect(broker.api.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"}), 403,
           "session_unknown")


# --- binding to the address -----------------------------------------------------

def test_session_from_another_ip_is_409_and_connection_closed(broker, user):
    u = user()
    status, hdrs, data, closed = raw_request(
        broker, "GET", "/v1/sessions", headers={"Authorization": f"Bearer {u.session_id}"},
        source="127.0.0.2")
    assert status == 409, data
    assert json.loads(data)["error"]["code"] == "ip_mismatch"
    assert hdrs.get("connection", "").lower() == "close", hdrs
    assert closed, "the broker did not close the connection after ip_mismatch"
    # through requests too, with the contract check
    r = broker.session(token=u.session_id, source="127.0.0.2").get("/v1/sessions")
    expect(r, 409, "ip_mismatch")
    assert r.headers.get("Connection", "").lower() == "close"
    # the session still works from its own address
    expect(u.http.get("/v1/sessions"), 200)


def test_session_created_from_127_0_0_2_is_bound_there(broker):
    u = make_user(broker, source="127.0.0.2")
    assert u.expires_at
    body = expect(u.http.get("/v1/sessions"), 200)
    assert [s["ip"] for s in body["sessions"]] == ["127.0.0.2"]
    expect(broker.session(token=u.session_id).get("/v1/sessions"), 409, "ip_mismatch")
    other = make_user(broker)
    expect(other.http.get(f"/v1/sessions/{u.session_id}", params={"ip": "127.0.0.2"}), 200)
    expect(other.http.get(f"/v1/sessions/{u.session_id}", params={"ip": "127.0.0.1"}), 409,
           "ip_mismatch")


# --- expiry and purging --------------------------------------------------------

@pytest.fixture(scope="module")
def ttl_broker(module_brokers):
    return module_brokers.start(session_ttl="2s")


def test_short_ttl_expires_at(ttl_broker):
    u = make_user(ttl_broker)
    ttl = (parse_time(u.expires_at) - utcnow()).total_seconds()
    assert -1 <= ttl <= 3, u.expires_at


def test_expired_session_401_and_inner_circle_410(ttl_broker):
    b = ttl_broker
    target = make_user(b)
    expect(target.http.get("/v1/sessions"), 200)
    wait_past(target.expires_at)
    expect(target.http.get("/v1/sessions"), 401, "session_expired")
    checker = make_user(b)      # a fresh session, valid for 2 s
    expect(checker.http.get(f"/v1/sessions/{target.session_id}", params={"ip": "127.0.0.1"}),
           410, "gone")
    # 410 comes before the address comparison
    expect(checker.http.get(f"/v1/sessions/{target.session_id}", params={"ip": "127.0.0.2"}),
           410, "gone")
    # expired sessions are not listed, and cannot be revoked
    old = target.session_id
    target.login()
    body = expect(target.http.get("/v1/sessions"), 200)
    assert [s["session_id"] for s in body["sessions"]] == [target.session_id]
    expect(target.http.delete(f"/v1/sessions/{old}"), 404, "not_found")


def test_expired_sessions_are_purged(module_brokers):
    """200 while live, 410 once expired, 404 once purged (purge_after 1 s)."""
    b = module_brokers.start(session_ttl="1s", session_purge_after="1s")
    target = make_user(b)
    seen = []

    def purged():
        checker = make_user(b)          # sessions live 1 s: a fresh one each time
        r = checker.http.get(f"/v1/sessions/{target.session_id}", params={"ip": "127.0.0.1"})
        assert r.status_code in (200, 404, 410), r.text
        expect(r, r.status_code, {200: None, 410: "gone", 404: "not_found"}[r.status_code])
        seen.append(r.status_code)
        return r.status_code == 404

    wait_until(purged, timeout=15, interval=0.2, what="the expired session to be purged")
    rank = {200: 0, 410: 1, 404: 2}
    assert [rank[c] for c in seen] == sorted(rank[c] for c in seen), seen
    assert 410 in seen, f"never saw 410 between expiry and purge: {seen}"
