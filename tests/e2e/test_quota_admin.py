"""Operator limits: PUT/GET /v1/users/{id}/quota and
PUT /v1/shares/{id}/allocation.  'used' is counted from the versions of
live files, written here straight into the database."""

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from filekit import add_file
from helpers import expect, new_uuid

MAX = 2 ** 53


def quota_url(u):
    return f"/v1/users/{u if isinstance(u, str) else u.user_id}/quota"


def make_share(u, name=None):
    return expect(u.http.post("/v1/shares", json={"name": name or "s-" + new_uuid()}), 201)


# --- user quota ---------------------------------------------------------------


def test_quota_starts_unset(broker, user):
    a = user()
    want = {"user_id": a.user_id, "quota": None, "used": 0}
    assert expect(broker.admin.get(quota_url(a)), 200) == want
    assert expect(a.http.get(quota_url(a)), 200) == want
    assert expect(a.http.get(quota_url(a.user_id.upper())), 200) == want


def test_admin_sets_and_clears(broker, user):
    a = user()
    for q in (0, 1, 10 * 2 ** 30, MAX):
        assert expect(broker.admin.put(quota_url(a), json={"quota": q}), 200) == \
            {"user_id": a.user_id, "quota": q, "used": 0}
        assert expect(a.http.get(quota_url(a)), 200)["quota"] == q
        assert expect(broker.admin.get(quota_url(a)), 200)["quota"] == q
    assert expect(broker.admin.put(quota_url(a), json={"quota": None}), 200)["quota"] is None
    assert expect(a.http.get(quota_url(a)), 200)["quota"] is None


BAD_VALUES = [-1, 1.5, 1.0, "10", True, [], {}, MAX + 1, 2 ** 63 - 1]


@pytest.mark.parametrize("value", BAD_VALUES, ids=range(len(BAD_VALUES)))
def test_bad_quota_values_400(broker, user, value):
    a = user()
    expect(broker.admin.put(quota_url(a), json={"quota": 5}), 200)
    expect(broker.admin.put(quota_url(a), json={"quota": value}), 400, "invalid_request")
    assert expect(a.http.get(quota_url(a)), 200)["quota"] == 5


@pytest.mark.parametrize("body", [{}, {"quota": 1, "used": 0}, {"limit": 1}])
def test_bad_quota_bodies_400(broker, user, body):
    a = user()
    expect(broker.admin.put(quota_url(a), json=body), 400, "invalid_request")


def test_overflowing_number_400(broker, user):
    a = user()
    r = broker.admin.put(quota_url(a), data=b'{"quota": 99999999999999999999999}',
                         headers={"Content-Type": "application/json"})
    expect(r, 400, "invalid_request")
    r = broker.admin.put(quota_url(a), data=b'{"quota": ', headers={"Content-Type": "application/json"})
    expect(r, 400, "malformed_json")


def test_unknown_user_404_bad_id_400(broker):
    expect(broker.admin.put(quota_url(new_uuid()), json={"quota": 1}), 404, "not_found")
    expect(broker.admin.get(quota_url(new_uuid())), 404, "not_found")
    expect(broker.admin.put("/v1/users/nope/quota", json={"quota": 1}), 400, "invalid_request")
    expect(broker.admin.get("/v1/users/nope/quota"), 400, "invalid_request")


def test_put_needs_the_admin_token(broker, user):
    a = user()
    expect(broker.api.put(quota_url(a), json={"quota": 1}), 400, "session_missing")
    expect(a.http.put(quota_url(a), json={"quota": 1}), 403, "forbidden")
    wrong = broker.session(token="adm-wrong")
    expect(wrong.put(quota_url(a), json={"quota": 1}), 403, "forbidden")
    assert expect(a.http.get(quota_url(a)), 200)["quota"] is None


def test_get_by_admin_or_the_user_only(broker, user):
    a, b = user(), user()
    expect(broker.admin.put(quota_url(a), json={"quota": 42}), 200)
    expect(broker.api.get(quota_url(a)), 400, "session_missing")
    expect(broker.session(token="").get(quota_url(a)), 400, "session_missing")
    expect(b.http.get(quota_url(a)), 403, "forbidden")
    expect(broker.session(token="adm-wrong").get(quota_url(a)), 403, "forbidden")
    expect(broker.session(token=new_uuid()).get(quota_url(a)), 403, "session_unknown")
    # the user's own session goes through the whole session check
    sid, s = a.new_session()
    expect(s.delete(f"/v1/sessions/{sid}"), 200)
    expect(s.get(quota_url(a)), 403, "session_unknown")
    assert expect(a.http.get(quota_url(a)), 200)["quota"] == 42


def test_get_session_from_another_address_409(broker, user):
    a = user()
    s = broker.session(token=a.session_id, source="127.0.0.2")
    r = s.get(quota_url(a))
    expect(r, 409, "ip_mismatch")
    assert r.headers.get("Connection", "").lower() == "close"


def test_broker_without_admin_token(make_broker, user):
    b = make_broker(admin_token="")
    a = user(b)
    expect(b.session(token="anything").put(quota_url(a), json={"quota": 1}), 403, "forbidden")
    expect(b.session(token="anything").get(quota_url(a)), 403, "forbidden")
    assert expect(a.http.get(quota_url(a)), 200)["quota"] is None


def test_used_counts_every_version_of_live_files_in_every_share(broker, user):
    a, b = user(), user()
    s1, s2 = make_share(a)["share_id"], make_share(b)["share_id"]
    expect(b.http.put(f"/v1/shares/{s2}/acl",
                      json={"read": {"users": [], "groups": []},
                            "write": {"users": [a.user_id], "groups": []}}), 200)
    add_file(broker, s1, a.user_id, [1000, 2000, 3000])
    add_file(broker, s2, a.user_id, [500])               # a's file in b's share
    add_file(broker, s2, b.user_id, [70])
    add_file(broker, s1, a.user_id, [99999], deleted=True)
    assert expect(broker.admin.get(quota_url(a)), 200)["used"] == 6500
    assert expect(a.http.get(quota_url(a)), 200)["used"] == 6500
    assert expect(b.http.get(quota_url(b)), 200)["used"] == 70
    assert expect(broker.admin.put(quota_url(a), json={"quota": 100}), 200) == \
        {"user_id": a.user_id, "quota": 100, "used": 6500}


# --- share allocation --------------------------------------------------------


def alloc_url(sid):
    return f"/v1/shares/{sid}/allocation"


def test_admin_sets_and_clears_an_allocation(broker, user):
    a, r = user(), user()
    s = make_share(a)
    sid = s["share_id"]
    expect(a.http.put(f"/v1/shares/{sid}/acl",
                      json={"read": {"users": [r.user_id], "groups": []},
                            "write": {"users": [], "groups": []}}), 200)
    add_file(broker, sid, a.user_id, [10, 20])
    got = expect(broker.admin.put(alloc_url(sid), json={"allocation": 1 << 30}), 200)
    # the operator sees the share as its owner does
    assert got["allocation"] == 1 << 30 and got["used"] == 30
    assert got["access"] == "owner" and got["owner_id"] == a.user_id
    assert got["acl"]["read"]["users"] == [r.user_id]
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200) == got
    assert expect(r.http.get(f"/v1/shares/{sid}"), 200)["allocation"] == 1 << 30
    got = expect(broker.admin.put(alloc_url(sid.upper()), json={"allocation": None}), 200)
    assert got["allocation"] is None
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["allocation"] is None
    assert expect(broker.admin.put(alloc_url(sid), json={"allocation": 0}), 200)["allocation"] == 0


@pytest.mark.parametrize("value", BAD_VALUES, ids=range(len(BAD_VALUES)))
def test_bad_allocation_values_400(broker, user, value):
    a = user()
    sid = make_share(a)["share_id"]
    expect(broker.admin.put(alloc_url(sid), json={"allocation": value}), 400, "invalid_request")
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["allocation"] is None


@pytest.mark.parametrize("body", [{}, {"allocation": 1, "name": "x"}, {"quota": 1}])
def test_bad_allocation_bodies_400(broker, user, body):
    a = user()
    sid = make_share(a)["share_id"]
    expect(broker.admin.put(alloc_url(sid), json=body), 400, "invalid_request")


def test_allocation_needs_the_admin_token(broker, user):
    a = user()
    sid = make_share(a)["share_id"]
    expect(broker.api.put(alloc_url(sid), json={"allocation": 1}), 400, "session_missing")
    expect(a.http.put(alloc_url(sid), json={"allocation": 1}), 403, "forbidden")
    expect(broker.session(token="adm-wrong").put(alloc_url(sid), json={"allocation": 1}),
           403, "forbidden")
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["allocation"] is None


def test_allocation_of_unknown_share_404_bad_id_400(broker):
    expect(broker.admin.put(alloc_url(new_uuid()), json={"allocation": 1}), 404, "not_found")
    expect(broker.admin.put(alloc_url("x'--"), json={"allocation": 1}), 400, "invalid_request")


def test_no_500_in_this_module(broker):
    bad = [r for r in broker.responses if r[2] >= 500]
    assert not bad, bad[:3]
