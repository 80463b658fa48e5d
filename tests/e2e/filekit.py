"""filekit.py - what the file, piece, content, usage and fault tests share:
hashing and Merkle roots as the broker computes them (api/manifest.h),
shares and files made over the API, the piece store on disk, and X-Sign.

Everything here talks to a broker started by the harness (conftest.py) on
127.0.0.1 and asserts every answer against the contract with expect().
"""

import base64
import hashlib
import math
import os
import re
import socket
import time
from pathlib import Path

from helpers import DEFAULT_TIMEOUT, HttpSession, expect, new_uuid

try:                                    # Ed25519 for X-Sign (python3-cryptography)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.exceptions import InvalidSignature
except ImportError:                     # pragma: no cover - see verify_xsign
    Ed25519PublicKey = None
    InvalidSignature = Exception

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
ZERO_ROOT = "00" * 32


# --------------------------------------------------------------------------
# hashing


def sha(data):
    return hashlib.sha256(data).hexdigest()


def split(data, piece_size):
    """The pieces of data: piece_size bytes each but the last."""
    return [data[i:i + piece_size] for i in range(0, len(data), piece_size)]


def merkle_root(hexes):
    """SHA-256 Merkle root of piece hashes (hex), leaves padded with zero
    hashes to a power of two; 32 zero bytes for none (api/manifest.h)."""
    if not hexes:
        return ZERO_ROOT
    level = [bytes.fromhex(h) for h in hexes]
    width = 1
    while width < len(level):
        width *= 2
    level += [bytes(32)] * (width - len(level))
    while len(level) > 1:
        level = [hashlib.sha256(level[i] + level[i + 1]).digest()
                 for i in range(0, len(level), 2)]
    return level[0].hex()


def piece_count(size, piece_size):
    return math.ceil(size / piece_size)


def pattern(n, seed=b""):
    """n deterministic, non-repeating bytes (different for each seed)."""
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(seed + block.to_bytes(8, "big")).digest()
        block += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------
# shares and files


def make_share(u, name=None):
    body = expect(u.http.post("/v1/shares", json={"name": name or "s-" + new_uuid()}), 201)
    return body["share_id"]


def grant(owner, share_id, read=(), write=()):
    """Replace the ACL of share_id: read and write are lists of User."""
    acl = {"read": {"users": [u.user_id for u in read], "groups": []},
           "write": {"users": [u.user_id for u in write], "groups": []}}
    return expect(owner.http.put(f"/v1/shares/{share_id}/acl", json=acl), 200)


def file_body(share_id, data, piece_size=16 * KIB, path="", name=None):
    body = {"share_id": share_id, "path": path, "name": name or "f-" + new_uuid(),
            "size": len(data), "piece_hashes": [sha(p) for p in split(data, piece_size)]}
    if piece_size is not None:
        body["piece_size"] = piece_size
    return body


def content_body(data, piece_size=16 * KIB):
    return {"size": len(data), "piece_size": piece_size,
            "piece_hashes": [sha(p) for p in split(data, piece_size)]}


def create_file(u, share_id, data, piece_size=16 * KIB, path="", name=None):
    """POST /v1/files for data; asserts 201 and the reply; returns it."""
    body = file_body(share_id, data, piece_size, path, name)
    f = expect(u.http.post("/v1/files", json=body), 201)
    hashes = body["piece_hashes"]
    assert f["share_id"] == share_id and f["path"] == body["path"] and f["name"] == body["name"]
    assert f["owner_id"] == u.user_id and f["version"] == 1
    assert (f["size"], f["piece_size"], f["pieces"]) == (len(data), piece_size, len(hashes))
    assert f["root"] == merkle_root(hashes)
    return f


def add_file(broker, share_id, owner_id, sizes, deleted=False):
    """A file with one version per size, written straight into the
    database (as the file handlers would)."""
    fid = new_uuid()
    broker.pg.psql(broker.dbname,
                   "INSERT INTO files (file_id, share_id, owner_id, path, name, latest,"
                   f" deleted_at) VALUES ('{fid}', '{share_id}', '{owner_id}', '', '{fid}',"
                   f" {len(sizes)}, {'now()' if deleted else 'NULL'})")
    for v, size in enumerate(sizes, 1):
        broker.pg.psql(broker.dbname,
                       "INSERT INTO versions (file_id, version, size, piece_size, npieces,"
                       " root, hashes, created_by) VALUES"
                       f" ('{fid}', {v}, {size}, 524288, 0, decode(repeat('00', 32), 'hex'),"
                       f" ''::bytea, '{owner_id}')")
    return fid


def bulk_session(u):
    """A session of user u for large binary bodies.  The harness's own
    sessions record resp.text of every answer, and requests guesses the
    charset of a binary body for that: tens of seconds for 16 MiB of zeros."""
    return HttpSession(lambda: u.broker.url, token=u.session_id)


def put_piece(u, file_id, n, blob, version=None, **kw):
    q = "" if version is None else f"?version={version}"
    return u.http.put(f"/v1/files/{file_id}/pieces/{n}{q}", data=blob,
                      headers={"Content-Type": "application/octet-stream"}, **kw)


def upload(u, file_id, data, piece_size, version=None, only=None):
    """PUT every piece of data (or those whose index is in only); returns
    the statuses (201 new, 200 held already)."""
    statuses = []
    for n, blob in enumerate(split(data, piece_size)):
        if only is not None and n not in only:
            continue
        r = put_piece(u, file_id, n, blob, version)
        assert r.status_code in (200, 201), f"piece {n}: {r.status_code} {r.text[:300]}"
        body = expect(r, r.status_code)
        assert body == {"file_id": file_id, "version": body["version"], "piece": n,
                        "hash": sha(blob), "stored": True}
        statuses.append(r.status_code)
    return statuses


def have_bits(body):
    """The indexes whose bit is set in a /have reply."""
    raw = base64.b64decode(body["have"], validate=True)
    assert len(raw) == (body["pieces"] + 7) // 8, body
    return {i for i in range(len(raw) * 8) if raw[i // 8] & (0x80 >> (i % 8))}


# --------------------------------------------------------------------------
# the piece store under data_dir/store


def store_dir(broker):
    return Path(broker.data_dir) / "store"


def stored_pieces(broker):
    """{hex name: size} of every file under store/pieces."""
    out = {}
    root = store_dir(broker) / "pieces"
    for p in root.rglob("*"):
        if p.is_file():
            out[p.name] = p.stat().st_size
    return out


def tmp_files(broker):
    d = store_dir(broker) / "tmp"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def assert_store_sound(broker):
    """Every piece file sits at pieces/<2 hex>/<hex>, hashes to its name,
    and store/tmp holds nothing."""
    root = store_dir(broker) / "pieces"
    for p in root.rglob("*"):
        if p.is_file():
            assert re.fullmatch(r"[0-9a-f]{64}", p.name), p
            assert p.parent.name == p.name[:2] and p.parent.parent == root, p
            assert sha(p.read_bytes()) == p.name, f"{p} does not hash to its name"
    assert tmp_files(broker) == [], f"left in store/tmp: {tmp_files(broker)}"


# --------------------------------------------------------------------------
# X-Sign

XSIGN_RE = re.compile(r"^v=1; key=([0-9a-f-]{36}); ver=(\d+); size=(\d+); piece=(\d+); "
                      r"root=([0-9a-f]{64}); exp=(\d+); sig=([A-Za-z0-9+/]+=*)$")


def parse_xsign(value):
    m = XSIGN_RE.match(value or "")
    assert m, f"X-Sign does not parse: {value!r}"
    key, ver, size, piece, root, exp, sig = m.groups()
    return {"key": key, "ver": int(ver), "size": int(size), "piece": int(piece),
            "root": root, "exp": int(exp), "sig": base64.b64decode(sig, validate=True)}


def broker_key(u, broker_id):
    """The public key (raw bytes) of broker_id from GET /v1/brokers."""
    body = expect(u.http.get("/v1/brokers"), 200)
    for b in body["brokers"]:
        if b["broker_id"] == broker_id:
            return base64.b64decode(b["public_key"])
    raise AssertionError(f"broker {broker_id} is not in GET /v1/brokers")


def verify_xsign(u, value, file_id, version, size, piece_size, root):
    """Assert X-Sign names this version and its signature is the broker's
    and unexpired.  Returns the parsed fields."""
    x = parse_xsign(value)
    assert (x["ver"], x["size"], x["piece"], x["root"]) == (version, size, piece_size, root), x
    now = time.time()
    assert x["exp"] > now, f"X-Sign expired: {x['exp']} <= {now}"
    assert Ed25519PublicKey is not None, "python3-cryptography is needed to verify X-Sign"
    text = (f"shoal-manifest-v1\n{file_id}\n{version}\n{size}\n{piece_size}\n"
            f"{root}\n{x['exp']}\n").encode()
    pk = Ed25519PublicKey.from_public_bytes(broker_key(u, x["key"]))
    try:
        pk.verify(x["sig"], text)
    except InvalidSignature:
        raise AssertionError(f"X-Sign signature does not verify over {text!r}") from None
    return x


# --------------------------------------------------------------------------
# raw HTTP, for what requests does not do (partial bodies, chunked bodies)


def raw_connect(broker):
    return socket.create_connection(("127.0.0.1", broker.port), timeout=DEFAULT_TIMEOUT)


def raw_head(broker, method, path, headers):
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{broker.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock):
    """(status, headers with lower-case names, body) of one answer with a
    Content-Length, read from sock."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    length = int(hdrs.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, hdrs, rest[:length]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def env_no_proxy():
    return {k: v for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}


def put_continue(broker, token, path, blob, method="PUT",
                 content_type="application/octet-stream"):
    """PUT blob with 'Expect: 100-continue' over a raw socket: the body is
    sent only when the broker says 100 Continue, so that an answer it gives
    from the headers alone (401, 404, 413, 507, ...) is read whole instead
    of being lost to a reset.  Returns (status, headers, body bytes)."""
    with raw_connect(broker) as s:
        s.sendall(raw_head(broker, method, path, {
            "Authorization": f"Bearer {token}", "Content-Length": str(len(blob)),
            "Content-Type": content_type, "Expect": "100-continue"}))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed before an answer: {data!r}"
            data += chunk
        if data.startswith(b"HTTP/1.1 100"):
            rest = data.split(b"\r\n\r\n", 1)[1]
            s.sendall(blob)
            status, hdrs, body = _read_after(s, rest)
        else:
            status, hdrs, body = _read_after(s, data)
        return status, hdrs, body


def _read_after(sock, data):
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk

    class _Pre:                                   # read_response on bytes already read
        def __init__(self, first, sock):
            self.buf, self.sock = first, sock

        def recv(self, n):
            if self.buf:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            return self.sock.recv(n)
    return read_response(_Pre(data, sock))


def as_response(broker, method, path, status, hdrs, body):
    """A requests.Response made of a raw answer, for expect()/contract.check."""
    import requests
    from requests.structures import CaseInsensitiveDict
    r = requests.Response()
    r.status_code = status
    r.request = requests.Request(method, broker.url + path).prepare()
    r.headers = CaseInsensitiveDict(hdrs)
    r._content = body
    r.encoding = "utf-8"
    return r
