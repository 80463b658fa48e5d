"""The service broker directory: GET /v1/brokers, the broker's own entry and
signing key, and the admin endpoints POST/DELETE /v1/brokers."""

import base64
import os
import stat

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import UUID4_RE, UUID_RE, expect, make_user, new_uuid, random_key

ROLES = ["trust", "metadata", "file", "injector", "accounting"]


def list_brokers(u):
    r = u.http.get("/v1/brokers")
    body = expect(r, 200)
    return r, {b["broker_id"]: b for b in body["brokers"]}, body["brokers"]


def test_lists_itself(broker, user):
    u = user()
    r, by_id, entries = list_brokers(u)
    me = r.headers["X-Broker-Id"]
    assert me in by_id, entries
    entry = by_id[me]
    assert len(entry["public_key"]) == 44
    assert len(base64.b64decode(entry["public_key"], validate=True)) == 32
    assert entry["roles"] == ROLES                     # all roles on by default
    assert entry["url"] == broker.url                  # public_url defaults to http://<listen>
    # /healthz names the same broker
    health = expect(broker.api.get("/healthz"), 200)
    assert health["broker_id"] == me
    assert health["status"] == "ok"
    # ordered by broker_id
    ids = [b["broker_id"] for b in entries]
    assert ids == sorted(ids)


def test_brokers_needs_a_session(broker):
    expect(broker.api.get("/v1/brokers"), 400, "session_missing")


def test_signing_key_file_and_restart(module_brokers):
    b = module_brokers.start(fresh_db=True, public_url="http://broker.example:8080",
                             roles="trust,file")
    key_file = b.data_dir / "signing.key"
    assert key_file.exists(), list(b.data_dir.iterdir())
    mode = stat.S_IMODE(os.stat(key_file).st_mode)
    assert mode == 0o600, oct(mode)
    before = key_file.read_bytes()
    u = make_user(b)
    r, by_id, _ = list_brokers(u)
    bid = r.headers["X-Broker-Id"]
    entry = by_id[bid]
    assert entry["url"] == "http://broker.example:8080"
    assert entry["roles"] == ["trust", "file"]
    key_before = entry["public_key"]

    b.restart()
    assert key_file.read_bytes() == before, "signing.key changed across a restart"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    r, by_id, entries = list_brokers(u)              # the session survives a restart
    assert r.headers["X-Broker-Id"] == bid, "broker id changed across a restart"
    assert by_id[bid]["public_key"] == key_before
    # still exactly one entry with this key (no stale duplicate)
    assert [e["broker_id"] for e in entries if e["public_key"] == key_before] == [bid]


def test_signing_key_file_is_not_world_readable_even_with_loose_umask(module_brokers):
    old = os.umask(0)
    try:
        b = module_brokers.start(fresh_db=True)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(b.data_dir / "signing.key").st_mode)
    assert mode == 0o600, oct(mode)


# --- admin: POST /v1/brokers, DELETE /v1/brokers/{id} -------------------------------

def new_entry(**kw):
    e = {"url": "http://10.0.0.12:8080", "roles": ["file"], "public_key": random_key()}
    e.update(kw)
    return e


def test_add_list_delete(broker, user):
    u = user()
    bid = new_uuid()
    payload = new_entry(broker_id=bid.upper(), roles=["file", "trust", "file"])
    body = expect(broker.admin.post("/v1/brokers", json=payload), 201)
    assert body["broker_id"] == bid
    assert body["url"] == payload["url"]
    assert body["roles"] == ["trust", "file"]        # collapsed, in canonical order
    assert body["public_key"] == payload["public_key"]
    _, by_id, _ = list_brokers(u)
    assert by_id[bid] == body
    expect(broker.admin.post("/v1/brokers", json=new_entry(broker_id=bid)), 409,
           "already_exists")
    assert expect(broker.admin.delete(f"/v1/brokers/{bid}"), 200) == \
        {"broker_id": bid, "deleted": True}
    _, by_id, _ = list_brokers(u)
    assert bid not in by_id
    expect(broker.admin.delete(f"/v1/brokers/{bid}"), 404, "not_found")


def test_add_rolls_an_id(broker, user):
    body = expect(broker.admin.post("/v1/brokers", json=new_entry()), 201)
    assert UUID4_RE.match(body["broker_id"])
    _, by_id, _ = list_brokers(user())
    assert body["broker_id"] in by_id


def test_delete_unknown_404_and_bad_id_400(broker):
    expect(broker.admin.delete(f"/v1/brokers/{new_uuid()}"), 404, "not_found")
    expect(broker.admin.delete("/v1/brokers/not-a-uuid"), 400, "invalid_request")


def test_admin_token_required(broker, user):
    u = user()
    wrong = broker.session(token="wrong-" + os.urandom(8).hex())
    expect(wrong.post("/v1/brokers", json=new_entry()), 403, "forbidden")
    expect(wrong.delete(f"/v1/brokers/{new_uuid()}"), 403, "forbidden")
    expect(broker.api.post("/v1/brokers", json=new_entry()), 400, "session_missing")
    expect(broker.api.delete(f"/v1/brokers/{new_uuid()}"), 400, "session_missing")
    # a session is not the admin token
    expect(u.http.post("/v1/brokers", json=new_entry()), 403, "forbidden")
    # a token that merely starts like the admin token
    expect(broker.session(token=broker.admin_token + "x").post("/v1/brokers", json=new_entry()),
           403, "forbidden")
    expect(broker.session(token=broker.admin_token[:-1]).post("/v1/brokers", json=new_entry()),
           403, "forbidden")
    # the broker's own entry cannot be deleted without the token
    me = broker.api.get("/healthz").json()["broker_id"]
    expect(wrong.delete(f"/v1/brokers/{me}"), 403, "forbidden")
    assert me in list_brokers(u)[1]


@pytest.mark.parametrize("roles", [[], ["root"], ["trust", "admin"], "trust", [1], None,
                                   ["Trust"], [""]])
def test_bad_roles_400(broker, roles):
    r = broker.admin.post("/v1/brokers", json=new_entry(roles=roles))
    if r.status_code == 201:
        expect(broker.admin.delete(f"/v1/brokers/{r.json()['broker_id']}"), 200)
    body = expect(r, 400, "invalid_request")
    assert "roles" in body["error"]["message"]


@pytest.mark.parametrize("field,value", [
    ("public_key", "short"),
    ("public_key", base64.b64encode(os.urandom(31)).decode()),
    ("public_key", None),
    ("url", "ftp://x/"),
    ("url", "not a url"),
    ("url", ""),
    ("url", 5),
    ("url", "http://" + "a" * 2100),
    ("broker_id", "not-a-uuid"),
    ("broker_id", 7),
])
def test_bad_fields_400(broker, field, value):
    r = broker.admin.post("/v1/brokers", json=new_entry(**{field: value}))
    if r.status_code == 201:                 # keep the directory clean for other tests
        expect(broker.admin.delete(f"/v1/brokers/{r.json()['broker_id']}"), 200)
    body = expect(r, 400, "invalid_request")
    assert field in body["error"]["message"]


def test_missing_and_unknown_fields_400(broker):
    for field in ("url", "roles", "public_key"):
        e = new_entry()
        del e[field]
        body = expect(broker.admin.post("/v1/brokers", json=e), 400, "invalid_request")
        assert field in body["error"]["message"]
    body = expect(broker.admin.post("/v1/brokers", json=new_entry(region="eu")), 400,
                  "invalid_request")
    assert "region" in body["error"]["message"]


def test_ids_are_uuids(broker, user):
    for e in list_brokers(user())[2]:
        assert UUID_RE.match(e["broker_id"])
