"""Bad input of every kind gets the right 4xx and a JSON error body, never a
500 or a crash; the broker stays alive; secrets never reach the log.

The module's broker runs with --body-limit 4096 and --log-level debug."""

import json
import socket
import subprocess

import pytest

import contract
from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import REQ_ID_RE, UUID_RE, expect, make_user, new_uuid, random_key

LIMIT = 4096


@pytest.fixture(scope="module")
def broker_flags():
    return {"body_limit": str(LIMIT)}


@pytest.fixture(scope="module")
def me(broker):
    return make_user(broker)


@pytest.fixture(autouse=True)
def still_alive(broker):
    yield
    assert broker.alive(), "the broker died"
    r = broker.api.get("/healthz", timeout=5)
    assert r.status_code == 200


def expect_unrouted(resp):
    """A 404 for a path the contract has no template for: error body shape
    and the headers every response carries."""
    assert resp.status_code == 404, f"{resp.request.path_url}: {resp.status_code} {resp.text}"
    assert REQ_ID_RE.match(resp.headers.get("X-Request-Id", ""))
    assert UUID_RE.match(resp.headers.get("X-Broker-Id", ""))
    assert resp.headers.get("Content-Type", "").split(";")[0] == "application/json"
    body = resp.json()
    contract.validate_schema("error.json", body)
    assert body["error"]["code"] == "not_found"


# The JSON routes: (method, path, who calls, a valid body)
def json_routes(broker, me):
    return [
        ("POST", "/v1/users", broker.api,
         lambda: {"user_id": new_uuid(), "public_key": random_key()}),
        ("POST", "/v1/sessions", broker.api,
         lambda: {"user_id": me.user_id, "auth_id": me.auth_id}),
        ("PUT", f"/v1/users/{me.user_id}/trusted", me.http, lambda: {"user_ids": []}),
        ("POST", "/v1/brokers", broker.admin,
         lambda: {"url": "http://10.1.1.1:8080", "roles": ["file"], "public_key": random_key()}),
        ("POST", "/v1/invites", broker.admin, lambda: {"expires_in": 60}),
    ]


ROUTE_IDS = ["users", "sessions", "trusted", "brokers", "invites"]
JSON_HEADERS = {"Content-Type": "application/json"}


def add_invite_secret(broker, r):
    if r.status_code == 201 and r.request.path_url == "/v1/invites":
        broker.add_secret(r.json()["invite"], "invite")


@pytest.mark.parametrize("route", range(5), ids=ROUTE_IDS)
@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b"nul", b"\xff\xfe{}", b'{"a":1} x',
                                 b'{"a":1,}', b"{\"a\": \"\xc3\x28\"}", b"\x00",
                                 b'{"user_ids": [}'],
                         ids=["open", "single-quotes", "nul", "bom-ish", "trailing", "comma",
                              "bad-utf8", "zero-byte", "broken-array"])
def test_malformed_json_400(broker, me, route, raw):
    method, path, http, _ = json_routes(broker, me)[route]
    expect(http.request(method, path, data=raw, headers=JSON_HEADERS), 400, "malformed_json")


@pytest.mark.parametrize("route", range(5), ids=ROUTE_IDS)
def test_json_not_an_object_400(broker, me, route):
    method, path, http, _ = json_routes(broker, me)[route]
    wrong = []
    for raw in (b"[]", b'"x"', b"1", b"null", b"true", b"[{}]"):
        r = http.request(method, path, data=raw, headers=JSON_HEADERS)
        body = expect(r, 400)
        if body["error"]["code"] != "invalid_request":
            wrong.append((raw, body["error"]))
    assert not wrong, f"JSON that is not an object must get invalid_request: {wrong}"


@pytest.mark.parametrize("route", range(5), ids=ROUTE_IDS)
def test_unknown_field_400(broker, me, route):
    method, path, http, valid = json_routes(broker, me)[route]
    body = dict(valid(), zz_unknown="1")
    msg = expect(http.request(method, path, json=body), 400, "invalid_request")
    assert "zz_unknown" in msg["error"]["message"]


@pytest.mark.parametrize("route", range(5), ids=ROUTE_IDS)
def test_wrong_types_400(broker, me, route):
    method, path, http, valid = json_routes(broker, me)[route]
    base = valid()
    for field in base:
        for bad in ([], {}, 3.5, False, None, "x", 1):
            if type(bad) is type(base[field]):
                continue
            r = http.request(method, path, json=dict(base, **{field: bad}))
            add_invite_secret(broker, r)
            msg = expect(r, 400, "invalid_request")
            assert field in msg["error"]["message"], (field, bad, msg)


@pytest.mark.parametrize("route", range(4), ids=ROUTE_IDS[:4])
def test_missing_fields_400(broker, me, route):
    method, path, http, valid = json_routes(broker, me)[route]
    base = valid()
    for field in base:
        body = {k: v for k, v in base.items() if k != field}
        msg = expect(http.request(method, path, json=body), 400, "invalid_request")
        assert field in msg["error"]["message"], (field, msg)
    # an empty body is not JSON (except for /v1/invites, where it means {})
    r = http.request(method, path, data=b"", headers=JSON_HEADERS)
    assert r.status_code == 400
    expect(r, 400)
    assert r.json()["error"]["code"] in ("malformed_json", "invalid_request")


@pytest.mark.parametrize("route", range(5), ids=ROUTE_IDS)
def test_valid_body_accepted(broker, me, route):
    """The control: the bodies used above are right apart from the defect."""
    method, path, http, valid = json_routes(broker, me)[route]
    r = http.request(method, path, json=valid())
    add_invite_secret(broker, r)
    assert r.status_code in (200, 201), r.text
    expect(r, r.status_code)


# --- content type ---------------------------------------------------------------

@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonx"])
def test_other_content_type_415(broker, ctype):
    body = json.dumps({"user_id": new_uuid(), "public_key": random_key()})
    r = broker.api.post("/v1/users", data=body, headers={"Content-Type": ctype})
    expect(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("ctype", [None, "application/json; charset=utf-8",
                                   "Application/JSON"])
def test_json_content_types_accepted(broker, ctype):
    body = json.dumps({"user_id": new_uuid(), "public_key": random_key()}).encode()
    headers = {} if ctype is None else {"Content-Type": ctype}
    r = broker.api.post("/v1/users", data=body, headers=headers)
    if ctype is None:
        assert "Content-Type" not in r.request.headers
    body = expect(r, 201)
    broker.add_secret(body["auth_id"], "auth_id")


# --- size limit --------------------------------------------------------------------

def padded_user(size):
    """A valid POST /v1/users body of exactly size bytes (spaces pad it)."""
    raw = json.dumps({"user_id": new_uuid(), "public_key": random_key()}).encode()
    assert len(raw) < size
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_body_at_the_limit_is_accepted(broker):
    r = broker.api.post("/v1/users", data=padded_user(LIMIT), headers=JSON_HEADERS)
    body = expect(r, 201)
    broker.add_secret(body["auth_id"], "auth_id")


def test_body_over_the_limit_413(broker):
    r = broker.api.post("/v1/users", data=padded_user(LIMIT + 1), headers=JSON_HEADERS)
    expect(r, 413, "body_too_large")


def test_chunked_body_over_the_limit_413(broker):
    raw = padded_user(LIMIT * 3)
    chunks = (raw[i:i + 1000] for i in range(0, len(raw), 1000))
    r = broker.api.post("/v1/users", data=chunks, headers=JSON_HEADERS)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    expect(r, 413, "body_too_large")


def test_chunked_body_under_the_limit_accepted(broker):
    raw = padded_user(LIMIT - 100)
    chunks = (raw[i:i + 500] for i in range(0, len(raw), 500))
    body = expect(broker.api.post("/v1/users", data=chunks, headers=JSON_HEADERS), 201)
    broker.add_secret(body["auth_id"], "auth_id")


def test_huge_content_length_413_without_the_whole_body(broker):
    """Announce 100 MB, send 8 KiB: the answer is 413 (not a wait for the rest)."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n" + b" " * 8192)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    assert data.startswith(b"HTTP/1.1 413"), data[:200]


def test_body_limit_applies_to_authenticated_and_admin_routes(broker, me):
    big = {"user_ids": [new_uuid() for _ in range(150)]}      # ~5.7 KB
    assert len(json.dumps(big)) > LIMIT
    expect(me.http.put(f"/v1/users/{me.user_id}/trusted", json=big), 413, "body_too_large")
    big = {"url": "http://x/" + "a" * LIMIT, "roles": ["file"], "public_key": random_key()}
    expect(broker.admin.post("/v1/brokers", json=big), 413, "body_too_large")


def test_body_on_a_get_is_ignored_or_refused_not_500(broker, me):
    r = me.http.request("GET", "/v1/sessions", data=b"x" * (LIMIT * 2))
    assert r.status_code in (200, 400, 413), r.text
    expect(r, r.status_code)


# --- ids that are not UUIDs ------------------------------------------------------

BAD_IDS = ["not-a-uuid", "1", "12345678-1234-1234-1234-12345678", "%27%20OR%201%3D1--",
           "..", "%00", "12345678-1234-1234-1234-123456789abcX", "x" * 2000]


@pytest.mark.parametrize("bad", BAD_IDS, ids=range(len(BAD_IDS)))
def test_path_ids_not_uuids_400(broker, me, bad):
    for http, method, path in [(me.http, "GET", f"/v1/users/{bad}"),
                               (me.http, "GET", f"/v1/users/{bad}/trusted"),
                               (me.http, "PUT", f"/v1/users/{bad}/trusted"),
                               (me.http, "GET", f"/v1/sessions/{bad}?ip=127.0.0.1"),
                               (me.http, "DELETE", f"/v1/sessions/{bad}"),
                               (broker.admin, "DELETE", f"/v1/brokers/{bad}")]:
        kw = {"json": {"user_ids": []}} if method == "PUT" else {}
        r = http.request(method, path, **kw)
        if bad == "..":
            # a dot segment may be resolved by the client; then it is another path
            assert r.status_code in (400, 404, 405), (method, path, r.status_code)
            continue
        expect(r, 400, "invalid_request")


# --- SQL metacharacters -------------------------------------------------------------

@pytest.mark.parametrize("url,valid_uri", [
    ("http://x/';DROP/**/TABLE/**/users;--", True),
    ("http://x/%27%3B%20DROP%20TABLE%20users%3B%20--", True),
    ("http://x/'%7C%7C(SELECT/**/pg_sleep(5))%7C%7C'", True),
    ("http://x/'||(SELECT/**/pg_sleep(5))||'", False),
    ("http://x/'; DROP TABLE users; --", False),
    ("http://x/\"); DELETE FROM sessions; --", False),
    ("http://x/\\'\\\\", False),
])
def test_sql_metacharacters_stored_verbatim(broker, me, url, valid_uri):
    r = broker.admin.post("/v1/brokers", json={"url": url, "roles": ["file"],
                                               "public_key": random_key()}, timeout=4)
    if valid_uri:
        assert r.status_code == 201, r.text
    else:
        # not a valid URI: refusing it is fine, breaking is not
        assert r.status_code in (201, 400), r.text
    if r.status_code == 201:
        bid = r.json()["broker_id"]
        try:
            listed = me.http.get("/v1/brokers").json()["brokers"]
            assert {b["broker_id"]: b["url"] for b in listed}[bid] == url
            assert r.json()["url"] == url
            expect(r, 201)
        finally:                              # keep the directory clean for other tests
            expect(broker.admin.delete(f"/v1/brokers/{bid}"), 200)
    else:
        expect(r, 400, "invalid_request")
    # the tables are intact
    u = make_user(broker)
    expect(u.http.get("/v1/sessions"), 200)
    expect(me.http.get("/v1/sessions"), 200)


# --- routing -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/", "/v1", "/v1/", "/v1/users/", "/v1/userss",
                                  "/healthz/", "/v1/sessions/x/y", f"/v1/users/{new_uuid()}/x",
                                  "/V1/USERS", "/v1/trust", "/v1/trust/sessions/x",
                                  "/%2e%2e/etc/passwd"])
def test_unknown_path_404(broker, path):
    for method in ("GET", "POST"):
        expect_unrouted(broker.api.request(method, path))


def test_wrong_method_405_for_every_route(broker, bin_dir, me):
    out = subprocess.run([str(bin_dir / "shoal-broker"), "--print-routes"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    by_path = {}
    for line in out.splitlines():
        if line.strip():
            method, path = line.split()
            by_path.setdefault(path, set()).add(method)
    assert len(by_path) >= 10, out
    for path, methods in by_path.items():
        concrete = path.replace("{id}", me.user_id).replace("{sid}", me.session_id)
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            if method in methods:
                continue
            r = me.http.request(method, concrete, json={})
            expect(r, 405, "method_not_allowed")     # the contract checks Allow
            allow = {m.strip() for m in r.headers["Allow"].split(",")}
            assert allow - {"HEAD"} == methods, (path, r.headers["Allow"])


def test_head_answers_like_get(broker):
    r = broker.api.head("/healthz")
    assert r.status_code == 200
    assert r.content == b""
    check(r)


# --- other nasty input that must not produce a 500 -----------------------------------

@pytest.mark.parametrize("raw", [
    b"[" * 2040 + b"]" * 2040,
    b'{"user_id": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"user_id": 1e999999, "public_key": "x"}',
    b'{"user_id": 123456789012345678901234567890, "public_key": "x"}',
    b'{"user_id": "\\u0000", "public_key": "x"}',
    b'{"user_id": "\\ud800", "public_key": "x"}',
    b'{"user_id": "a", "user_id": "b", "public_key": "x"}',
    b'{"\\u0000": 1}',
    b'{"user_id": "' + b"\\u00e9" * 600 + b'", "public_key": "x"}',
], ids=["deep-array", "deep-field", "huge-float", "huge-int", "nul-escape", "lone-surrogate",
        "duplicate-key", "nul-key", "long-unicode"])
def test_nasty_json_is_400(broker, raw):
    r = broker.api.post("/v1/users", data=raw, headers=JSON_HEADERS)
    expect(r, 400)
    assert r.json()["error"]["code"] in ("malformed_json", "invalid_request")


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer " + "a" * 3000},
    {"Authorization": "Bearer " + new_uuid() + " " + new_uuid()},
    {"Authorization": "Bearer\t" + new_uuid()},
    {"X-Forwarded-For": "1.2.3.4, ' OR 1=1"},
    {"Authorization": "Bearer " + new_uuid(), "X-Forwarded-For": "10.0.0.1"},
])
def test_odd_headers_never_500(broker, headers):
    r = broker.api.get("/v1/sessions", headers=headers)
    assert 400 <= r.status_code < 500, r.text
    expect(r, r.status_code)


def test_x_forwarded_for_is_ignored_without_trusted_proxies(broker, me):
    """Not a trusted proxy: XFF must not change the client address."""
    r = broker.api.post("/v1/sessions", json={"user_id": me.user_id, "auth_id": me.auth_id},
                        headers={"X-Forwarded-For": "10.9.8.7"})
    assert expect(r, 201)["ip"] == "127.0.0.1"
    r = me.http.get("/v1/sessions", headers={"X-Forwarded-For": "10.9.8.7"})
    expect(r, 200)


# --- last: module-wide checks ----------------------------------------------------

def test_no_500_in_this_module(broker):
    bad = [(m, u, s) for m, u, s, h, b in broker.responses if s >= 500]
    assert not bad, bad


def test_no_secret_in_the_log(broker):
    text = broker.log_text()
    assert text.strip(), "the broker wrote no log at all at debug level?"
    secrets = [(s, what) for s, what in broker.secrets.items() if s]
    assert any(what == "auth_id" for _, what in secrets)
    leaked = [(what, s) for s, what in secrets if s in text]
    assert not leaked, f"secrets in the broker log: {leaked}"
