"""Registration: POST /v1/users, GET /v1/users/{id}, invite mode."""

import base64
import os
import time

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import (UUID4_RE, expect, make_invite, make_user, new_uuid, parse_time,
                     random_key, register, utcnow)


def test_register_returns_user_id_and_uuid4_auth_id(broker):
    uid = new_uuid()
    body = expect(register(broker, uid), 201)
    assert body["user_id"] == uid
    assert UUID4_RE.match(body["auth_id"]), body
    assert body["auth_id"] != uid


def test_auth_ids_are_fresh_per_user(broker):
    ids = {expect(register(broker), 201)["auth_id"] for _ in range(5)}
    assert len(ids) == 5


def test_duplicate_user_id_is_409(broker):
    uid = new_uuid()
    expect(register(broker, uid), 201)
    body = expect(register(broker, uid), 409, "already_exists")
    assert uid in body["error"]["message"]
    # a different key does not help either
    expect(register(broker, uid, random_key()), 409, "already_exists")


def test_uppercase_user_id_is_stored_lowercase(broker):
    uid = new_uuid()
    body = expect(register(broker, uid.upper()), 201)
    assert body["user_id"] == uid
    expect(register(broker, uid), 409, "already_exists")


@pytest.mark.parametrize("key", [
    pytest.param("not base64 at all!", id="not-base64"),
    pytest.param(base64.b64encode(os.urandom(31)).decode(), id="31-bytes"),
    pytest.param(base64.b64encode(os.urandom(33)).decode(), id="33-bytes"),
    pytest.param(base64.b64encode(os.urandom(64)).decode(), id="64-bytes"),
    pytest.param("", id="empty"),
    pytest.param(base64.b64encode(os.urandom(32)).decode().rstrip("="), id="unpadded"),
    pytest.param("-_" + base64.b64encode(os.urandom(32)).decode()[2:], id="urlsafe-alphabet"),
    pytest.param(base64.b64encode(os.urandom(32)).decode()[:-1] + " ", id="trailing-space"),
    pytest.param(32, id="number"),
    pytest.param(None, id="null"),
    pytest.param(["AAAA"], id="array"),
])
def test_bad_public_key_is_400(broker, key):
    uid = new_uuid()
    r = broker.api.post("/v1/users", json={"user_id": uid, "public_key": key})
    body = expect(r, 400, "invalid_request")
    assert "public_key" in body["error"]["message"]
    # nothing was registered
    expect(register(broker, uid), 201)


@pytest.mark.parametrize("uid", [
    "not-a-uuid",
    "",
    "12345678123456781234567812345678",                    # no dashes
    "{12345678-1234-1234-1234-123456789abc}",              # braces
    "12345678-1234-1234-1234-123456789abcd",               # too long
    "12345678-1234-1234-1234-123456789ab",                 # too short
    "1234567g-1234-1234-1234-123456789abc",                # not hex
    " 12345678-1234-1234-1234-123456789abc",               # leading space
    "12345678-1234-1234-1234-123456789abc\n",              # trailing newline
    "urn:uuid:12345678-1234-1234-1234-123456789abc",
    "12345678-1234-1234-1234-123456789abc' OR '1'='1",
    12345678,
    None,
])
def test_non_uuid_user_id_is_400(broker, uid):
    r = broker.api.post("/v1/users", json={"user_id": uid, "public_key": random_key()})
    body = expect(r, 400, "invalid_request")
    assert "user_id" in body["error"]["message"]


def test_missing_and_unknown_fields_are_400(broker):
    for payload, field in [({"public_key": random_key()}, "user_id"),
                           ({"user_id": new_uuid()}, "public_key"),
                           ({"user_id": new_uuid(), "public_key": random_key(), "admin": True},
                            "admin")]:
        body = expect(broker.api.post("/v1/users", json=payload), 400, "invalid_request")
        assert field in body["error"]["message"], (payload, body)


def test_invite_in_open_mode_must_be_a_uuid_but_is_not_checked(broker):
    expect(register(broker, invite=new_uuid()), 201)
    body = expect(register(broker, invite="not-an-invite"), 400, "invalid_request")
    assert "invite" in body["error"]["message"]


def test_get_user(broker, user):
    me, other = user(), user(login=False)
    body = expect(me.http.get(f"/v1/users/{other.user_id}"), 200)
    assert body["user_id"] == other.user_id
    assert body["public_key"] == other.public_key
    created = parse_time(body["created_at"])
    assert abs((utcnow() - created).total_seconds()) < 120
    # any case in the path; lowercase back
    body = expect(me.http.get(f"/v1/users/{other.user_id.upper()}"), 200)
    assert body["user_id"] == other.user_id
    expect(me.http.get(f"/v1/users/{new_uuid()}"), 404, "not_found")
    expect(me.http.get("/v1/users/not-a-uuid"), 400, "invalid_request")
    expect(broker.api.get(f"/v1/users/{other.user_id}"), 400, "session_missing")


# --- invite mode ----------------------------------------------------------

@pytest.fixture(scope="module")
def invite_broker(module_brokers):
    return module_brokers.start(registration="invite")


def test_invite_mode_without_invite_is_403(invite_broker):
    expect(register(invite_broker), 403, "forbidden")


def test_invite_mode_unknown_invite_is_403(invite_broker):
    expect(register(invite_broker, invite=new_uuid()), 403, "forbidden")


def test_invite_mode_flow(invite_broker):
    b = invite_broker
    body = expect(b.admin.post("/v1/invites", json={}), 201)
    invite = body["invite"]
    b.add_secret(invite, "invite")
    exp = parse_time(body["expires_at"])
    # default lifetime 7 days
    assert abs((exp - utcnow()).total_seconds() - 604800) < 120, body
    uid = new_uuid()
    created = expect(register(b, uid, invite=invite), 201)
    assert created["user_id"] == uid
    # the registered user can log in
    expect(b.api.post("/v1/sessions", json={"user_id": uid, "auth_id": created["auth_id"]}), 201)
    # single use
    expect(register(b, invite=invite), 403, "forbidden")


def test_invite_is_used_up_only_by_a_successful_registration(invite_broker):
    b = invite_broker
    invite = make_invite(b)
    existing = make_user(b, login=False, invite=make_invite(b))
    # the invite check comes first, then the existence check: 409, invite kept
    expect(register(b, existing.user_id, invite=invite), 409, "already_exists")
    expect(register(b, invite=invite), 201)
    expect(register(b, invite=invite), 403, "forbidden")


def test_invite_expires_in(invite_broker):
    b = invite_broker
    body = expect(b.admin.post("/v1/invites", json={"expires_in": 3600}), 201)
    b.add_secret(body["invite"], "invite")
    assert abs((parse_time(body["expires_at"]) - utcnow()).total_seconds() - 3600) < 120
    # an empty body is the same as {}
    r = b.admin.post("/v1/invites", data=b"", headers={"Content-Type": "application/json"})
    body = expect(r, 201)
    b.add_secret(body["invite"], "invite")
    assert abs((parse_time(body["expires_at"]) - utcnow()).total_seconds() - 604800) < 120


@pytest.mark.parametrize("bad", [0, -1, 31536001, 2**63, "3600", 1.5, None, True])
def test_invite_bad_expires_in_400(invite_broker, bad):
    r = invite_broker.admin.post("/v1/invites", json={"expires_in": bad})
    if r.status_code == 201:
        invite_broker.add_secret(r.json()["invite"], "invite")
    if bad == 2**63:
        # valid JSON, but past what the JSON parser holds: either 400 is fine
        expect(r, 400)
        assert r.json()["error"]["code"] in ("invalid_request", "malformed_json")
        return
    body = expect(r, 400, "invalid_request")
    assert "expires_in" in body["error"]["message"]


def test_invite_unknown_field_400(invite_broker):
    r = invite_broker.admin.post("/v1/invites", json={"expires_in": 60, "uses": 2})
    body = expect(r, 400, "invalid_request")
    assert "uses" in body["error"]["message"]


def test_invite_expired_is_403(invite_broker):
    b = invite_broker
    body = expect(b.admin.post("/v1/invites", json={"expires_in": 1}), 201)
    b.add_secret(body["invite"], "invite")
    exp = parse_time(body["expires_at"])
    # wait (bounded) until the expiry time has passed, with a second of margin
    wait = (exp - utcnow()).total_seconds() + 1.1
    assert wait < 5, body
    time.sleep(max(0.0, wait))
    expect(register(b, invite=body["invite"]), 403, "forbidden")


def test_invites_need_the_admin_token(invite_broker, broker):
    b = invite_broker
    wrong = b.session(token="wrong-" + os.urandom(8).hex())
    expect(wrong.post("/v1/invites", json={}), 403, "forbidden")
    expect(b.api.post("/v1/invites", json={}), 400, "session_missing")
    # a user's session is not the admin token
    u = make_user(broker)
    expect(broker.session(token=u.session_id).post("/v1/invites", json={}), 403, "forbidden")


def test_no_admin_token_configured_means_403(module_brokers):
    b = module_brokers.start(admin_token="")
    expect(b.session(token="anything").post("/v1/invites", json={}), 403, "forbidden")
    expect(b.session(token="").post("/v1/invites", json={}), 400, "session_missing")


# --- last: the auth ids never came back -------------------------------------

def test_auth_ids_never_appear_in_later_responses(broker, invite_broker):
    """Each auth_id shows up in exactly one response: its registration."""
    for b in (broker, invite_broker):
        auth_ids = [s for s, what in b.secrets.items() if what == "auth_id"]
        assert auth_ids, "no users were registered?"
        for a in auth_ids:
            hits = [(m, u, s) for m, u, s, h, body in b.responses if a in body or a in h]
            assert len(hits) == 1 and hits[0][0] == "POST" and hits[0][2] == 201, \
                f"auth_id {a} appears in {hits}"
