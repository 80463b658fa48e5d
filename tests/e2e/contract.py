"""contract.py - check real broker answers against api/openapi.yaml.

The end-to-end tests pass every requests.Response they get to check():

    r = session.post(url + "/v1/users", json=body)
    reply = contract.check(r)          # AssertionError when off-contract

check() finds the operation (method + path template), the response declared
for the status, checks the declared required headers, the media type, and
validates a JSON body against its JSON Schema (schemas/*.json, draft
2020-12, with format checking).  It returns the parsed JSON body, or None.

Works with Debian 12's python3-jsonschema 4.10 and python3-yaml; only the
standard library otherwise (requests objects are only read).
"""

import datetime
import functools
import json
import re
import subprocess
import warnings
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC_PATH = ROOT / "api" / "openapi.yaml"
SCHEMA_DIR = ROOT / "schemas"
SPEC_URI = SPEC_PATH.as_uri()

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch",
                "trace")

# --- loading ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def spec():
    """The parsed api/openapi.yaml (cached: do not modify it)."""
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.lru_cache(maxsize=None)
def schema_files():
    """{file URI: parsed JSON} for every schemas/*.json (cached)."""
    store = {}
    for p in sorted(SCHEMA_DIR.glob("*.json")):
        with open(p, encoding="utf-8") as f:
            store[p.as_uri()] = json.load(f)
    return store


def spec_routes():
    """Set of (METHOD, path template) of every operation in the spec."""
    routes = set()
    for path, item in spec()["paths"].items():
        for m in item:
            if m in HTTP_METHODS:
                routes.add((m.upper(), path))
    return routes


def broker_routes(bin_path):
    """Run '<bin_path> --print-routes' and return its routes as a set of
    (METHOD, path template).  The broker prints one route per line,
    "METHOD PATH"; HEAD is not listed (GET routes answer it)."""
    proc = subprocess.run([str(bin_path), "--print-routes"],
                          capture_output=True, text=True, timeout=30,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(
            f"'{bin_path} --print-routes' exited with {proc.returncode}: "
            f"{proc.stderr.strip()}")
    routes = set()
    for n, line in enumerate(proc.stdout.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split()
        if (len(parts) != 2 or not re.fullmatch(r"[A-Z]+", parts[0])
                or not parts[1].startswith("/")):
            raise AssertionError(
                f"--print-routes line {n} is not 'METHOD PATH': {line!r}")
        route = (parts[0], parts[1])
        if route in routes:
            raise AssertionError(f"--print-routes lists {line!r} twice")
        routes.add(route)
    return routes


# --- references and validation ----------------------------------------------


def _pointer(doc, fragment, where):
    """The value at JSON pointer 'fragment' ("" or "/a/b") in doc."""
    if fragment in ("", "/"):
        return doc
    if not fragment.startswith("/"):
        raise AssertionError(f"{where}: unsupported fragment '#{fragment}'")
    node = doc
    for token in fragment[1:].split("/"):
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise AssertionError(f"{where}: '#{fragment}' does not resolve")
    return node


def resolve_ref(ref, base_uri=SPEC_URI):
    """(absolute URI, target) of a $ref written in the document at
    base_uri: a local pointer ("#/components/…") or a schema file
    ("../schemas/x.json", optionally with a fragment).  AssertionError when
    it does not resolve."""
    uri = urljoin(base_uri, ref)
    doc_uri, fragment = urldefrag(uri)
    if doc_uri == SPEC_URI:
        doc = spec()
    elif doc_uri in schema_files():
        doc = schema_files()[doc_uri]
    else:
        raise AssertionError(f"$ref '{ref}' in {base_uri}: no such document "
                             f"({doc_uri})")
    return uri, _pointer(doc, fragment, f"$ref '{ref}' in {base_uri}")


def deref(obj):
    """Follow $ref of an OpenAPI object (response, header, parameter) that
    is only a reference, until a real object."""
    seen = set()
    while isinstance(obj, dict) and "$ref" in obj and len(obj) == 1:
        ref = obj["$ref"]
        if ref in seen:
            raise AssertionError(f"$ref loop at '{ref}'")
        seen.add(ref)
        obj = resolve_ref(ref)[1]
    return obj


def _date_time_ok(s):
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})"
                     r"(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))", s)
    if not m:
        raise ValueError(f"{s!r} is not an RFC 3339 date-time")
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    datetime.datetime(y, mo, d, h, mi, min(sec, 59))  # 60: leap second
    if sec > 60:
        raise ValueError(f"{s!r}: seconds out of range")
    if m.group(9) is not None and (int(m.group(9)) > 23
                                   or int(m.group(10)) > 59):
        raise ValueError(f"{s!r}: offset out of range")
    return True


_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:"
                     r"(?:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*")


def _uri_ok(s):
    """An absolute URI made only of the characters RFC 3986 allows."""
    return _URI_RE.fullmatch(s) is not None


@functools.lru_cache(maxsize=None)
def format_checker():
    """A FormatChecker asserting uuid, ipv4, ipv6 (jsonschema's own,
    standard library only), date-time and uri (ours: jsonschema's need
    optional modules that a machine may lack, so results would differ
    between machines)."""
    fc = jsonschema.FormatChecker()
    fc.checks("date-time", raises=(ValueError, TypeError))(
        lambda v: not isinstance(v, str) or _date_time_ok(v))
    fc.checks("uri")(lambda v: not isinstance(v, str) or _uri_ok(v))
    return fc


def _resolver():
    with warnings.catch_warnings():  # RefResolver is deprecated after 4.17
        warnings.simplefilter("ignore", DeprecationWarning)
        return jsonschema.RefResolver(SPEC_URI, spec(),
                                      store=dict(schema_files()))


def validator(schema):
    """A Draft202012Validator for a schema written inside openapi.yaml
    (its $refs are relative to api/), with format checking."""
    return jsonschema.Draft202012Validator(
        schema, resolver=_resolver(), format_checker=format_checker())


def _describe(schema):
    if isinstance(schema, dict) and "$ref" in schema:
        return schema["$ref"]
    return "the schema in api/openapi.yaml"


def _errors(schema, instance):
    """Short lines describing why instance fails schema ([] when valid)."""
    errs = sorted(validator(schema).iter_errors(instance),
                  key=lambda e: list(e.absolute_path))
    lines = []
    for e in errs[:5]:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        lines.append(f"at {where}: {e.message}")
    if len(errs) > 5:
        lines.append(f"… and {len(errs) - 5} more")
    return lines


def validate_schema(name, instance):
    """Validate instance against schemas/<name> (e.g. "user.json");
    AssertionError when it does not match."""
    errs = _errors({"$ref": f"../schemas/{name}"}, instance)
    if errs:
        raise AssertionError(f"does not match schemas/{name}:\n  "
                             + "\n  ".join(errs))


# --- matching requests to operations ----------------------------------------


@functools.lru_cache(maxsize=None)
def _templates():
    """[(compiled regex, template)], most literal templates first."""
    out = []
    for t in spec()["paths"]:
        rx = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                     for part in re.split(r"(\{[^}/]+\})", t))
        nparams = t.count("{")
        first = t.find("{") if nparams else len(t)
        out.append((re.compile(rx), t, nparams, -first))
    out.sort(key=lambda x: (x[2], x[3]))
    return [(rx, t) for rx, t, _, _ in out]


def match_path(path):
    """The path template of the spec that a concrete path matches, or
    None.  {x} matches one non-empty segment; the most literal template
    wins."""
    for rx, t in _templates():
        if rx.fullmatch(path):
            return t
    return None


def _find_response(responses, status):
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        for k in (key, key.lower()):
            if k in responses:
                return k, deref(responses[k])
        if key.isdigit() and int(key) in responses:  # unquoted YAML key
            return key, deref(responses[int(key)])
    return None, None


def _media(content_type):
    return (content_type or "").split(";")[0].strip().lower()


def _is_json(media):
    return media == "application/json" or media.endswith("+json")


def _body_excerpt(resp):
    text = resp.text if resp.content else ""
    return text[:500] + ("…" if len(text) > 500 else "")


# --- the check --------------------------------------------------------------


def check(resp):
    """Check a requests.Response against the spec; return its parsed JSON
    body (None when the response has no JSON body, or for HEAD).

    AssertionError when: no path template matches; the method is not an
    operation of the path (except a 405 answer, checked against
    components/responses/MethodNotAllowed with an Allow header naming the
    path's methods); the status is not declared; a required header is
    missing or malformed; the media type is not declared; the body does not
    validate."""
    req = resp.request
    method = req.method.upper()
    path = urlsplit(req.url).path
    status = resp.status_code
    what = f"{method} {path} -> {status}"

    template = match_path(path)
    if template is None:
        raise AssertionError(f"{what}: no path of api/openapi.yaml matches "
                             f"'{path}'; body: {_body_excerpt(resp)}")
    item = spec()["paths"][template]
    op = item.get("get" if method == "HEAD" else method.lower())
    if op is None:
        if status != 405:
            raise AssertionError(
                f"{what}: operation '{method} {template}' is not in "
                f"api/openapi.yaml; body: {_body_excerpt(resp)}")
        response = deref(spec()["components"]["responses"]["MethodNotAllowed"])
        declared = {m.upper() for m in item if m in HTTP_METHODS}
        allow = {m.strip().upper()
                 for m in resp.headers.get("Allow", "").split(",") if m.strip()}
        if allow - {"HEAD"} != declared:
            raise AssertionError(
                f"{what}: Allow is {resp.headers.get('Allow')!r}, the spec "
                f"has {', '.join(sorted(declared))} for '{template}'")
        label = "components/responses/MethodNotAllowed"
    else:
        key, response = _find_response(op["responses"], status)
        if response is None:
            declared = ", ".join(str(k) for k in op["responses"])
            raise AssertionError(
                f"{what}: status {status} is not declared for "
                f"'{method} {template}' (declared: {declared}); "
                f"body: {_body_excerpt(resp)}")
        label = f"'{method} {template}' response {key}"

    _check_headers(resp, response, what, label)
    if method == "HEAD":
        return None
    return _check_body(resp, response, what, label)


def _check_headers(resp, response, what, label):
    for name, header in (response.get("headers") or {}).items():
        header = deref(header)
        value = resp.headers.get(name)
        if value is None:
            if header.get("required"):
                raise AssertionError(f"{what}: header {name} missing "
                                     f"(required by {label})")
            continue
        if "schema" in header:
            errs = _errors(header["schema"], value)
            if errs:
                raise AssertionError(f"{what}: header {name}: {value!r} "
                                     f"does not match: " + "; ".join(errs))


def _check_body(resp, response, what, label):
    content = response.get("content") or {}
    got = _media(resp.headers.get("Content-Type"))
    if not content:
        if resp.content:
            raise AssertionError(f"{what}: {label} declares no body but "
                                 f"{len(resp.content)} bytes came "
                                 f"({got or 'no Content-Type'})")
        return None
    media = {_media(k): v for k, v in content.items()}
    if got not in media and "*/*" in media and got:
        got = "*/*"                   # any type (an injected object's own)
    if got not in media:
        raise AssertionError(f"{what}: Content-Type {got or '(none)'} is "
                             f"not declared by {label} "
                             f"({', '.join(content)})")
    if not _is_json(got):
        return None
    try:
        data = resp.json()
    except ValueError as e:
        raise AssertionError(f"{what}: body is not JSON ({e}): "
                             f"{_body_excerpt(resp)}") from None
    schema = media[got].get("schema")
    if schema is not None:
        errs = _errors(schema, data)
        if errs:
            raise AssertionError(
                f"{what}: body does not match {_describe(schema)} "
                f"({label}):\n  " + "\n  ".join(errs)
                + f"\n  body: {json.dumps(data)[:1000]}")
    return data


def expect_error(resp, status, code):
    """check(resp), then assert it is an error with this status and code.
    Returns the message."""
    body = check(resp)
    got = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
    if resp.status_code != status or got != code:
        raise AssertionError(
            f"{resp.request.method} {urlsplit(resp.request.url).path}: "
            f"expected {status} {code}, got {resp.status_code} {got}: "
            f"{_body_excerpt(resp)}")
    return body["error"]["message"]
