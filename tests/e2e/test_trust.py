"""Trusted lists (PUT/GET /v1/users/{id}/trusted) and trust bubbles
(GET /v1/trust/sessions)."""

import time

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import expect, make_user, new_uuid, parse_time, utcnow


def put_trusted(u, ids, owner=None):
    return u.http.put(f"/v1/users/{owner or u.user_id}/trusted", json={"user_ids": ids})


def test_empty_list_when_never_set(broker, user):
    a = user()
    assert expect(a.http.get(f"/v1/users/{a.user_id}/trusted"), 200) == \
        {"user_id": a.user_id, "user_ids": []}


def test_put_then_get_sorted_and_deduplicated(broker, user):
    a, b, c = user(), user(login=False), user(login=False)
    body = expect(put_trusted(a, [c.user_id, b.user_id.upper(), b.user_id, c.user_id]), 200)
    want = sorted([b.user_id, c.user_id])
    assert body == {"user_id": a.user_id, "user_ids": want}
    assert expect(a.http.get(f"/v1/users/{a.user_id}/trusted"), 200) == body
    # the owner in the path in upper case is still the caller
    assert expect(a.http.get(f"/v1/users/{a.user_id.upper()}/trusted"), 200)["user_ids"] == want


def test_put_replaces_the_list(broker, user):
    a, b, c = user(), user(login=False), user(login=False)
    expect(put_trusted(a, [b.user_id, c.user_id]), 200)
    assert expect(put_trusted(a, [c.user_id]), 200)["user_ids"] == [c.user_id]
    assert expect(a.http.get(f"/v1/users/{a.user_id}/trusted"), 200)["user_ids"] == [c.user_id]
    assert expect(put_trusted(a, []), 200)["user_ids"] == []
    assert expect(a.http.get(f"/v1/users/{a.user_id}/trusted"), 200)["user_ids"] == []


def test_body_user_id_must_match(broker, user):
    a, b = user(), user(login=False)
    r = a.http.put(f"/v1/users/{a.user_id}/trusted",
                   json={"user_id": a.user_id, "user_ids": [b.user_id]})
    assert expect(r, 200)["user_ids"] == [b.user_id]
    r = a.http.put(f"/v1/users/{a.user_id}/trusted",
                   json={"user_id": b.user_id, "user_ids": [b.user_id]})
    expect(r, 400, "invalid_request")


def test_another_users_list_is_403(broker, user):
    a, b, c = user(), user(), user(login=False)
    expect(put_trusted(b, [c.user_id]), 200)
    expect(a.http.get(f"/v1/users/{b.user_id}/trusted"), 403, "forbidden")
    expect(put_trusted(a, [c.user_id], owner=b.user_id), 403, "forbidden")
    # b's list is unchanged
    assert expect(b.http.get(f"/v1/users/{b.user_id}/trusted"), 200)["user_ids"] == [c.user_id]
    # an unknown owner is not the caller either
    expect(a.http.get(f"/v1/users/{new_uuid()}/trusted"), 403, "forbidden")


def test_unknown_user_in_list_is_404_naming_it(broker, user):
    a, b = user(), user(login=False)
    expect(put_trusted(a, [b.user_id]), 200)
    ghost = new_uuid()
    body = expect(put_trusted(a, [b.user_id, ghost]), 404, "not_found")
    assert ghost in body["error"]["message"]
    # nothing changed
    assert expect(a.http.get(f"/v1/users/{a.user_id}/trusted"), 200)["user_ids"] == [b.user_id]


def test_self_in_list_is_400(broker, user):
    a, b = user(), user(login=False)
    expect(put_trusted(a, [b.user_id, a.user_id]), 400, "invalid_request")
    expect(put_trusted(a, [a.user_id.upper()]), 400, "invalid_request")


@pytest.mark.parametrize("entry", ["not-a-uuid", "", 42, None, ["x"],
                                   "12345678-1234-1234-1234-123456789abc' --"])
def test_non_uuid_entry_is_400(broker, user, entry):
    a, b = user(), user(login=False)
    expect(put_trusted(a, [b.user_id, entry]), 400, "invalid_request")


@pytest.mark.parametrize("payload", [{}, {"user_ids": "x"}, {"user_ids": None},
                                     {"user_ids": {}}, {"user_ids": [], "extra": 1}])
def test_bad_body_is_400(broker, user, payload):
    a = user()
    r = a.http.put(f"/v1/users/{a.user_id}/trusted", json=payload)
    expect(r, 400, "invalid_request")


def test_non_uuid_owner_is_400(broker, user):
    a = user()
    expect(a.http.get("/v1/users/not-a-uuid/trusted"), 400, "invalid_request")
    expect(a.http.put("/v1/users/not-a-uuid/trusted", json={"user_ids": []}), 400,
           "invalid_request")


def test_at_most_1000_entries_as_sent(broker, user):
    a, b = user(), user(login=False)
    # duplicates collapse to one valid entry, but 1001 entries were sent
    expect(put_trusted(a, [b.user_id] * 1001), 400, "invalid_request")
    assert expect(put_trusted(a, [b.user_id] * 1000), 200)["user_ids"] == [b.user_id]


def test_trusted_needs_a_session(broker, user):
    a = user()
    expect(broker.api.get(f"/v1/users/{a.user_id}/trusted"), 400, "session_missing")
    expect(broker.api.put(f"/v1/users/{a.user_id}/trusted", json={"user_ids": []}), 400,
           "session_missing")


# --- GET /v1/trust/sessions ---------------------------------------------------

def trust_sessions(u):
    body = expect(u.http.get("/v1/trust/sessions"), 200)
    return body["sessions"]


def test_trust_sessions_are_exactly_those_of_users_who_trust_me(broker, user):
    me = user()
    b, c, d, e = user(), user(), user(), user()
    b2, _ = b.new_session()
    b3, _ = b.new_session()
    expect(b.http.delete(f"/v1/sessions/{b3}"), 200)      # revoked: not listed
    expect(put_trusted(b, [me.user_id]), 200)
    expect(put_trusted(c, [me.user_id, d.user_id]), 200)
    expect(put_trusted(d, [c.user_id]), 200)              # d does not trust me
    expect(put_trusted(me, [e.user_id]), 200)             # I trust e: irrelevant
    sessions = trust_sessions(me)
    got = {s["session_id"]: s for s in sessions}
    assert set(got) == {b.session_id, b2, c.session_id}, sessions
    for sid, owner in ((b.session_id, b), (b2, b), (c.session_id, c)):
        s = got[sid]
        assert s["user_id"] == owner.user_id
        assert s["public_key"] == owner.public_key
        assert s["ip"] == "127.0.0.1"
        assert parse_time(s["expires_at"]) > utcnow()
    # ordered by user_id, then session_id
    keys = [(s["user_id"], s["session_id"]) for s in sessions]
    assert keys == sorted(keys)
    # c and d trust each other; nobody trusts b
    assert {s["session_id"] for s in trust_sessions(d)} == {c.session_id}
    assert {s["session_id"] for s in trust_sessions(c)} == {d.session_id}
    assert trust_sessions(b) == []
    # e is trusted by me: e sees my session
    assert {s["session_id"] for s in trust_sessions(e)} == {me.session_id}


def test_trust_sessions_follow_list_changes_and_logouts(broker, user):
    me, b = user(), user()
    assert trust_sessions(me) == []
    expect(put_trusted(b, [me.user_id]), 200)
    assert [s["session_id"] for s in trust_sessions(me)] == [b.session_id]
    b2, http2 = b.new_session()
    assert {s["session_id"] for s in trust_sessions(me)} == {b.session_id, b2}
    expect(http2.delete(f"/v1/sessions/{b2}"), 200)
    assert [s["session_id"] for s in trust_sessions(me)] == [b.session_id]
    expect(put_trusted(b, []), 200)
    assert trust_sessions(me) == []


def test_trust_sessions_leave_out_expired(module_brokers):
    br = module_brokers.start(session_ttl="2s")
    b = make_user(br)
    old = b.session_id
    me = make_user(br, login=False)
    expect(put_trusted(b, [me.user_id]), 200)
    secs = (parse_time(b.expires_at) - utcnow()).total_seconds() + 1.05
    assert secs < 5
    time.sleep(max(0.0, secs))
    b.login()
    me.login()
    sessions = trust_sessions(me)
    assert [s["session_id"] for s in sessions] == [b.session_id], (old, sessions)


def test_concurrent_replacements_take_turns(broker, user):
    """Twelve replacements of one list at once: each answers 200 with the
    list it sent, and the list that stays is exactly one of them (never a
    mixture, never a 409 or 500)."""
    import concurrent.futures

    me = user()
    others = [user(login=False).user_id for _ in range(6)]
    lists = [sorted(others[i % 6:i % 6 + 3]) for i in range(12)]
    http = [broker.session(token=me.session_id) for _ in lists]

    def put(i):
        return http[i].put(f"/v1/users/{me.user_id}/trusted", json={"user_ids": lists[i]})

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(put, range(12)))
    for i, r in enumerate(answers):
        assert expect(r, 200)["user_ids"] == lists[i]
    final = expect(me.http.get(f"/v1/users/{me.user_id}/trusted"), 200)["user_ids"]
    assert final in lists
