"""Static checks of the contract: api/openapi.yaml and schemas/*.json, and
of contract.py itself.  No broker, no database."""

import json
import stat

import jsonschema
import pytest
import requests
from requests.structures import CaseInsensitiveDict

import contract

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILES = sorted(contract.SCHEMA_DIR.glob("*.json"))

# The endpoint list of the working API spec (issue 2), as written there.
# A sample of routes for testing the --print-routes parser; whether the
# broker's routes and the spec agree is test_routes.py's question.
SAMPLE_ROUTES = {
    ("GET", "/healthz"),
    ("POST", "/v1/users"),
    ("GET", "/v1/sessions/{sid}"),
    ("PUT", "/v1/files/{id}/pieces/{n}"),
}


def operations():
    for path, item in contract.spec()["paths"].items():
        for m, op in item.items():
            if m in contract.HTTP_METHODS:
                yield m.upper(), path, item, op


def walk(node, where=""):
    """Yield (where, dict) for every dict in a JSON-like tree."""
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            yield from walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}/{i}")


def media_types():
    """(where, media type object) of every request and response body."""
    for m, path, _, op in operations():
        body = contract.deref(op.get("requestBody", {}))
        for mt, obj in body.get("content", {}).items():
            yield f"{m} {path} request {mt}", obj
        for status, resp in op["responses"].items():
            for mt, obj in contract.deref(resp).get("content", {}).items():
                yield f"{m} {path} {status} {mt}", obj
    for name, resp in contract.spec()["components"]["responses"].items():
        for mt, obj in resp.get("content", {}).items():
            yield f"components/responses/{name} {mt}", obj


# --- the OpenAPI file -------------------------------------------------------


def test_openapi_parses():
    s = contract.spec()
    assert str(s["openapi"]).startswith("3.1."), s["openapi"]
    assert s["info"]["title"] and s["info"]["version"]
    assert s["paths"]
    # Plain JSON data: YAML did not turn a time or a status into another type.
    json.dumps(s)
    for m, path, _, op in operations():
        for status in op["responses"]:
            assert isinstance(status, str), f"{m} {path}: status {status!r} must be quoted"


def test_sample_routes_are_in_the_spec():
    assert SAMPLE_ROUTES <= contract.spec_routes()


def test_every_ref_resolves():
    count = 0
    for where, node in walk(contract.spec()):
        if isinstance(node.get("$ref"), str):
            contract.resolve_ref(node["$ref"])
            count += 1
    for uri, doc in contract.schema_files().items():
        for where, node in walk(doc):
            if isinstance(node.get("$ref"), str):
                contract.resolve_ref(node["$ref"], uri)
                count += 1
    assert count > 0


def test_every_schema_file_is_referenced():
    reached, todo = set(), [contract.SPEC_URI]
    while todo:
        uri = todo.pop()
        doc = contract.spec() if uri == contract.SPEC_URI else contract.schema_files()[uri]
        for _, node in walk(doc):
            if isinstance(node.get("$ref"), str):
                target, _ = contract.resolve_ref(node["$ref"], uri)
                doc_uri = target.split("#")[0]
                if doc_uri != contract.SPEC_URI and doc_uri not in reached:
                    reached.add(doc_uri)
                    todo.append(doc_uri)
    unused = set(contract.schema_files()) - reached
    assert not unused, f"schema files not referenced from api/openapi.yaml: {sorted(unused)}"


def test_operations_are_complete():
    ids = set()
    for m, path, item, op in operations():
        where = f"{m} {path}"
        assert op.get("operationId") and op["operationId"] not in ids, where
        ids.add(op["operationId"])
        assert op.get("summary"), where
        assert "security" in op, f"{where}: security must be explicit"
        params = [contract.deref(p) for p in item.get("parameters", []) + op.get("parameters", [])]
        declared = {p["name"] for p in params if p["in"] == "path"}
        in_path = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        assert declared == in_path, f"{where}: path parameters {declared} vs {in_path}"
        if m in ("POST", "PUT"):
            assert "requestBody" in op, where
        # body_limit is enforced on every route, before authentication
        assert "413" in op["responses"], f"{where}: must declare 413"


def test_security_schemes():
    schemes = contract.spec()["components"]["securitySchemes"]
    assert schemes["session"]["scheme"] == "bearer"
    assert schemes["admin"]["scheme"] == "bearer"
    for m, path, _, op in operations():
        for req in op["security"]:
            assert set(req) <= set(schemes), f"{m} {path}"
        if op["security"]:
            assert "400" in op["responses"] and "403" in op["responses"], f"{m} {path}"
        if {"session": []} in op["security"]:
            for s in ("401", "409"):
                assert s in op["responses"], f"{m} {path}: session routes declare {s}"


def test_every_operation_declares_an_error_response():
    for m, path, _, op in operations():
        errors = [s for s in op["responses"] if s[0] in "45"]
        assert errors, f"{m} {path} declares no error response"


def test_every_error_response_uses_the_error_schema():
    def uses_error_schema(schema):
        return contract.resolve_ref(schema["$ref"])[0].endswith("/schemas/error.json")

    for m, path, _, op in operations():
        for status, resp in op["responses"].items():
            resp = contract.deref(resp)
            if status[0] not in "45":
                continue
            schema = resp["content"]["application/json"]["schema"]
            assert uses_error_schema(schema), f"{m} {path} {status}"
            codes = schema["properties"]["error"]["properties"]["code"]["enum"]
            assert codes, f"{m} {path} {status}: no error code listed"


def test_every_response_declares_the_common_headers():
    for m, path, _, op in operations():
        for status, resp in op["responses"].items():
            headers = contract.deref(resp).get("headers", {})
            for h in ("X-Request-Id", "X-Broker-Id"):
                assert h in headers, f"{m} {path} {status}: header {h}"


def test_inline_schemas_are_valid():
    for where, obj in media_types():
        jsonschema.Draft202012Validator.check_schema(obj["schema"])
    comps = contract.spec()["components"]
    for name, schema in comps.get("schemas", {}).items():
        jsonschema.Draft202012Validator.check_schema(schema)
    for name, h in comps.get("headers", {}).items():
        jsonschema.Draft202012Validator.check_schema(h["schema"])
    for name, p in comps.get("parameters", {}).items():
        jsonschema.Draft202012Validator.check_schema(p["schema"])


def test_examples_match_their_schemas():
    n = 0
    for where, obj in media_types():
        if "example" in obj and isinstance(obj["example"], (dict, list)):
            errs = contract._errors(obj["schema"], obj["example"])
            assert not errs, f"{where}: example: {errs}"
            n += 1
    for m, path, item, op in operations():
        for p in item.get("parameters", []) + op.get("parameters", []):
            p = contract.deref(p)
            if "example" in p:
                assert not contract._errors(p["schema"], p["example"]), f"{m} {path} {p['name']}"
    assert n >= 15


# --- the schema files -------------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_file_is_valid(path):
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == path.name
    assert schema.get("title") and schema.get("description")
    for where, node in walk(schema):
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, f"{path.name}{where}"
        if node.get("format") == "uuid":
            assert "pattern" in node, f"{path.name}{where}: uuid without pattern"
        if node.get("format") == "date-time":
            assert node.get("pattern", "").endswith("Z$"), f"{path.name}{where}"


def test_expected_schema_files_exist():
    names = {p.name for p in SCHEMA_FILES}
    for n in ("error.json", "user_create.json", "user_created.json", "user.json",
              "session_create.json", "session.json", "session_list.json",
              "session_check.json", "session_revoked.json", "trusted.json",
              "trust_sessions.json", "broker.json", "broker_list.json",
              "broker_create.json", "broker_deleted.json", "invite_create.json",
              "invite.json", "health.json"):
        assert n in names, n


# --- contract.py itself -----------------------------------------------------

BROKER = "5b0c6a63-4f0e-4d7c-9a43-0d1f2f9f6e21"
HEADERS = {"X-Request-Id": "0123456789abcdef", "X-Broker-Id": BROKER}
UID = "0f8e7c7a-3f55-4a8e-9d0b-4c7f2d7d9a11"
AID = "6d1c2b9e-8a7f-4e3d-b2c1-0a9f8e7d6c5b"


def fake(method, path, status, body=None, headers=None, raw=None,
         ctype="application/json"):
    r = requests.Response()
    r.status_code = status
    r.request = requests.Request(method, "http://127.0.0.1:8080" + path).prepare()
    h = dict(HEADERS)
    if ctype:
        h["Content-Type"] = ctype
    h.update(headers or {})
    r.headers = CaseInsensitiveDict({k: v for k, v in h.items() if v is not None})
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode()
    r._content = raw
    r.encoding = "utf-8"
    return r


def err(code, message="something 'x' failed"):
    return {"error": {"code": code, "message": message}}


def test_check_accepts_valid_answers():
    body = {"user_id": UID, "auth_id": AID}
    assert contract.check(fake("POST", "/v1/users", 201, body)) == body
    assert contract.check(fake("GET", "/v1/users/" + UID, 404, err("not_found")))
    assert contract.check(fake("DELETE", "/v1/sessions/" + AID, 409, err("ip_mismatch"),
                               headers={"Connection": "close"}))
    assert contract.check(fake("GET", "/healthz", 200,
                               {"status": "ok", "broker_id": BROKER, "version": "0.1.0"}))
    assert contract.check(fake("HEAD", "/healthz", 200, ctype=None)) is None
    assert contract.check(fake("GET", "/metrics", 200, raw=b"shoal_users_total 1\n",
                               ctype="text/plain; version=0.0.4; charset=utf-8")) is None
    assert contract.check(fake("PATCH", "/v1/users", 405, err("method_not_allowed"),
                               headers={"Allow": "POST"}))
    assert contract.check(fake("POST", "/healthz", 405, err("method_not_allowed"),
                               headers={"Allow": "GET, HEAD"}))
    trusted = {"user_id": UID, "user_ids": [AID]}
    assert contract.check(fake("PUT", f"/v1/users/{UID}/trusted", 200, trusted)) == trusted


@pytest.mark.parametrize("resp, words", [
    (lambda: fake("GET", "/v1/nothing", 404, err("not_found")), "no path"),
    (lambda: fake("PATCH", "/v1/users", 400, err("invalid_request")), "not in api/openapi.yaml"),
    (lambda: fake("PATCH", "/v1/users", 405, err("method_not_allowed"),
                  headers={"Allow": "GET, POST"}), "Allow"),
    (lambda: fake("POST", "/v1/users", 418, err("internal")), "not declared"),
    (lambda: fake("POST", "/v1/users", 201, {"user_id": UID, "auth_id": AID, "x": 1}),
     "does not match"),
    (lambda: fake("POST", "/v1/users", 201, {"user_id": UID.upper(), "auth_id": AID}),
     "does not match"),
    (lambda: fake("POST", "/v1/users", 409, err("forbidden")), "does not match"),
    (lambda: fake("POST", "/v1/users", 201, {"user_id": UID, "auth_id": AID},
                  headers={"X-Request-Id": None}), "X-Request-Id"),
    (lambda: fake("POST", "/v1/users", 201, {"user_id": UID, "auth_id": AID},
                  headers={"X-Broker-Id": "nope"}), "X-Broker-Id"),
    (lambda: fake("POST", "/v1/users", 201, {"user_id": UID, "auth_id": AID},
                  ctype="text/html"), "Content-Type"),
    (lambda: fake("POST", "/v1/users", 201, raw=b"{not json"), "not JSON"),
    (lambda: fake("POST", "/v1/sessions", 201, {
        "session_id": AID, "user_id": UID, "ip": "127.0.0.1",
        "expires_at": "2026-13-22T19:48:35Z"}), "date-time"),
    (lambda: fake("POST", "/v1/sessions", 201, {
        "session_id": AID, "user_id": UID, "ip": "300.1.2.3",
        "expires_at": "2026-11-22T19:48:35Z"}), "does not match"),
    (lambda: fake("PUT", f"/v1/users/{UID}/trusted", 200, {"user_ids": []}), "user_id"),
    (lambda: fake("POST", "/v1/brokers", 201, {
        "broker_id": BROKER, "url": "http://x/a b", "roles": ["file"],
        "public_key": "9+F55uO18VfpXxqEDdyl2mfQdt8/0nEczf4F6HR5Yh0=",
        "updated_at": "2026-11-21T19:48:35Z"}), "'uri'"),
])
def test_check_refuses_off_contract_answers(resp, words):
    with pytest.raises(AssertionError) as e:
        contract.check(resp())
    assert words in str(e.value)


def test_expect_error():
    msg = contract.expect_error(fake("GET", "/v1/sessions", 403, err("session_unknown")),
                                403, "session_unknown")
    assert msg
    with pytest.raises(AssertionError):
        contract.expect_error(fake("GET", "/v1/sessions", 403, err("session_unknown")),
                              400, "session_missing")


def test_match_path_prefers_literal_segments():
    assert contract.match_path("/v1/sessions") == "/v1/sessions"
    assert contract.match_path("/v1/sessions/" + AID) == "/v1/sessions/{sid}"
    assert contract.match_path(f"/v1/users/{UID}/trusted") == "/v1/users/{id}/trusted"
    assert contract.match_path("/v1/users/") is None
    assert contract.match_path("/v1/sessions/a/b") is None


def write_script(tmp_path, text):
    p = tmp_path / "fake-broker"
    p.write_text("#!/bin/sh\n" + text)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_broker_routes_parses_print_routes(tmp_path):
    lines = "".join(f"{m} {p}\\n" for m, p in sorted(SAMPLE_ROUTES))
    p = write_script(tmp_path, f'[ "$1" = --print-routes ] || exit 2\nprintf "{lines}"\n')
    assert contract.broker_routes(p) == SAMPLE_ROUTES


@pytest.mark.parametrize("text", [
    "exit 3\n",
    "echo 'GET'\n",
    "echo 'get /healthz'\n",
    "echo 'GET /healthz'; echo 'GET /healthz'\n",
])
def test_broker_routes_refuses_bad_output(tmp_path, text):
    with pytest.raises(AssertionError):
        contract.broker_routes(write_script(tmp_path, text))


@pytest.mark.parametrize("fmt, good, bad", [
    ("date-time", "2026-11-21T19:48:35Z", "2026-11-21 19:48:35"),
    ("date-time", "2026-11-21T19:48:35.5+01:00", "2026-02-30T00:00:00Z"),
    ("uri", "http://x/';DROP/**/TABLE/**/users;--", "http://x/'; DROP TABLE users; --"),
    ("uri", "https://[::1]:8080/a?b#c", "not a url"),
    ("uuid", "25ce141b-7c2b-4f65-a702-4d170590a3cc", "25ce141b7c2b4f65a7024d170590a3cc"),
    ("ipv6", "2001:db8::7", "2001:db8::7::1"),
])
def test_format_checker_asserts_formats(fmt, good, bad):
    fc = contract.format_checker()
    assert fc.conforms(good, fmt)
    assert not fc.conforms(bad, fmt)
