"""The peer command-line tool with files: put and get (round trips of
awkward sizes, resumed uploads and downloads, signatures checked against
the pinned broker key), ls, versions, rm, share and group.

Every run of bin/shoal gets its own XDG_CONFIG_HOME and HOME (a temporary
folder) and is checked for sanitizer reports and leaked secrets (the Cli
class of test_cli.py).
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import UUID_RE, expect, make_user, new_uuid, wait_until
from test_cli import Cli

EXIT_OK, EXIT_BROKER, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
EXIT_NOTFOUND, EXIT_CONFLICT, EXIT_NET, EXIT_LOCAL = 4, 5, 6, 7

DEFAULT_PIECE = 524288
SMALL_PIECE = 16384


@pytest.fixture(scope="module")
def shoal_path(bin_dir):
    p = bin_dir / "shoal"
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} does not exist: build it with 'make SAN=1 all'")
    return p


@pytest.fixture
def cli(shoal_path, broker, tmp_path):
    """A registered CLI user on the module's broker."""
    c = Cli(shoal_path, tmp_path / "cli", broker)
    c.register()
    return c


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    return d


def api_session(c):
    """A requests session logged in as the CLI's user."""
    ident = c.identity()
    body = expect(c.broker.api.post("/v1/sessions", json={"user_id": ident["user_id"],
                                                           "auth_id": ident["auth_id"]}), 201)
    return c.broker.session(token=body["session_id"])


def piece_hashes(data, piece):
    return [hashlib.sha256(data[i:i + piece]).digest() for i in range(0, len(data), piece)]


def merkle_root(hashes):
    if not hashes:
        return bytes(32)
    width = 1
    while width < len(hashes):
        width *= 2
    level = list(hashes) + [bytes(32)] * (width - len(hashes))
    while len(level) > 1:
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def have(http, fid, version=None):
    q = f"?version={version}" if version else ""
    body = expect(http.get(f"/v1/files/{fid}/have{q}"), 200)
    bits = base64.b64decode(body["have"])
    held = {i for i in range(body["pieces"]) if bits[i // 8] & (0x80 >> (i % 8))}
    assert len(held) == body["held"]
    return body, held


def write(path, data):
    path.write_bytes(data)
    return path


# --- put and get ---------------------------------------------------------------

SIZES = ["0", "1", "piece-1", "piece", "piece+1", "5MiB"]


def size_of(name, piece):
    return {"0": 0, "1": 1, "piece-1": piece - 1, "piece": piece, "piece+1": piece + 1,
            "5MiB": 5 << 20}[name]


@pytest.mark.parametrize("piece", [SMALL_PIECE, None], ids=["16K", "default"])
@pytest.mark.parametrize("size_name", SIZES)
def test_put_get_round_trip(cli, work, piece, size_name):
    ps = piece or DEFAULT_PIECE
    size = size_of(size_name, ps)
    data = os.urandom(size)
    src = write(work / f"in-{size_name}.bin", data)
    extra = ["--piece-size", str(piece)] if piece else []
    count = -(-size // ps)

    body = cli.json("put", src, *extra)
    assert UUID_RE.match(body["file_id"])
    assert body["name"] == src.name and body["path"] == ""
    assert body["size"] == size and body["piece_size"] == ps and body["pieces"] == count
    assert body["root"] == merkle_root(piece_hashes(data, ps)).hex()
    assert body["version"] == 1 and body["action"] == "created"
    assert body["uploaded"] == count and body["skipped"] == 0
    assert body["bytes_uploaded"] == size
    fid = body["file_id"]

    out = work / "out.bin"
    got = cli.json("get", fid, "-o", out)
    assert got == {"file_id": fid, "version": 1, "size": size, "path": str(out),
                   "downloaded": size, "fetched": count, "reused": 0}
    assert out.read_bytes() == data

    # text mode: put prints the id, get the path, nothing on stderr (not a tty)
    r = cli.run("put", src, *extra, rc=EXIT_OK)
    assert r.stdout.strip() == fid and r.stderr == ""
    out2 = work / "out2.bin"
    r = cli.run("get", fid, "-o", out2, "-j", "2", rc=EXIT_OK)
    assert r.stdout.strip() == str(out2) and r.stderr == ""
    assert out2.read_bytes() == data


def test_put_again_is_a_no_op_or_a_new_version(cli, work):
    v1 = os.urandom(3 * SMALL_PIECE + 5)
    src = write(work / "doc.bin", v1)
    first = cli.json("put", src, "--piece-size", "16K")
    fid = first["file_id"]
    same = cli.json("put", src)          # piece size taken from the file
    assert same["file_id"] == fid and same["action"] == "unchanged"
    assert same["version"] == 1 and same["uploaded"] == 0 and same["skipped"] == 4

    v2 = v1[:SMALL_PIECE] + os.urandom(2 * SMALL_PIECE)
    write(src, v2)
    second = cli.json("put", src)
    assert second["file_id"] == fid and second["action"] == "updated"
    assert second["version"] == 2 and second["size"] == len(v2)
    # the first piece is the same bytes: the broker holds it already
    assert second["skipped"] == 1 and second["uploaded"] == 2

    out = work / "out"
    assert cli.json("get", fid, "-o", out)["version"] == 2
    assert out.read_bytes() == v2
    old = cli.json("get", fid, "-o", work / "old", "--version", "1")
    assert old["version"] == 1 and (work / "old").read_bytes() == v1

    versions = cli.json("versions", fid)
    assert versions["file_id"] == fid
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert [v["size"] for v in versions["versions"]] == [len(v1), len(v2)]
    r = cli.run("versions", fid, rc=EXIT_OK)
    assert len(r.stdout.splitlines()) == 2 and second["root"] in r.stdout


def test_put_name_path_and_default_out(cli, work):
    data = os.urandom(1000)
    src = write(work / "local.txt", data)
    body = cli.json("put", src, "--path", "a/b", "--name", "remote.txt")
    assert body["path"] == "a/b" and body["name"] == "remote.txt"
    # without -o, get writes the file's name in the current folder
    here = work / "here"
    here.mkdir()
    r = subprocess.run([cli.bin, "--json", "get", body["file_id"]], cwd=here, env=cli.env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"] == "remote.txt"
    assert (here / "remote.txt").read_bytes() == data


def test_names_and_paths_that_need_escaping(cli, work):
    """put writes its create and update bodies as it sends them: a name and
    a path with quotes, backslashes, brackets and letters beyond ASCII
    arrive as given, and a list of piece hashes longer than one write of
    the body (or of the manifest get reads) still gives the root."""
    name = 'a "quoted" \\back\\slash {[\u00fc\u2603]}, ok'
    path = 'dir "x"/sub\\y/\u00e9t\u00e9'
    count = 1100                    # bodies of about 74 KB
    data = os.urandom(count * SMALL_PIECE - 7)
    src = write(work / "src.bin", data)
    body = cli.json("put", src, "--path", path, "--name", name, "--piece-size", "16K")
    assert body["name"] == name and body["path"] == path
    assert body["action"] == "created" and body["pieces"] == count
    assert body["root"] == merkle_root(piece_hashes(data, SMALL_PIECE)).hex()
    fid = body["file_id"]
    assert [(f["name"], f["path"]) for f in cli.json("ls")["files"]
            if f["file_id"] == fid] == [(name, path)]

    # found again at the same place; changed, it gets a new version
    assert cli.json("put", src, "--path", path, "--name", name)["action"] == "unchanged"
    data2 = data[:-SMALL_PIECE] + os.urandom(SMALL_PIECE + 3)
    write(src, data2)
    body = cli.json("put", src, "--path", path, "--name", name)
    assert body["file_id"] == fid and body["action"] == "updated" and body["version"] == 2
    assert body["uploaded"] == 2 and body["skipped"] == count - 2
    assert body["root"] == merkle_root(piece_hashes(data2, SMALL_PIECE)).hex()

    # without -o, get writes the file under its name
    here = work / "here"
    here.mkdir()
    r = subprocess.run([cli.bin, "--json", "get", fid], cwd=here, env=cli.env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"] == name
    assert (here / name).read_bytes() == data2


def test_default_share_is_made_once(cli, work):
    cli.json("put", write(work / "a", b"a"))
    cli.json("put", write(work / "b", b"b"))
    shares = cli.json("share", "ls")["shares"]
    assert [s["name"] for s in shares] == ["default"]
    assert shares[0]["access"] == "owner"
    names = sorted(f["name"] for f in cli.json("ls")["files"])
    assert names == ["a", "b"]


# --- resuming ----------------------------------------------------------------

def test_put_resumes_a_partial_upload(cli, work):
    """Some pieces were uploaded by hand (as an interrupted put would leave
    them): put sends only the others."""
    data = os.urandom(20 * SMALL_PIECE + 123)
    src = write(work / "big.bin", data)
    hashes = piece_hashes(data, SMALL_PIECE)
    http = api_session(cli)
    share = cli.json("share", "create", "default")
    body = expect(http.post("/v1/files", json={
        "share_id": share["share_id"], "path": "", "name": "big.bin", "size": len(data),
        "piece_size": SMALL_PIECE, "piece_hashes": [h.hex() for h in hashes]}), 201)
    fid = body["file_id"]
    sent = {0, 7, 20}
    for n in sent:
        expect(http.put(f"/v1/files/{fid}/pieces/{n}",
                        data=data[n * SMALL_PIECE:(n + 1) * SMALL_PIECE]), 201)
    before, held = have(http, fid)
    assert held == sent and not before["complete"]

    put = cli.json("put", src, "-j", "3")
    assert put["file_id"] == fid and put["action"] == "unchanged" and put["version"] == 1
    assert put["skipped"] == len(sent) and put["uploaded"] == len(hashes) - len(sent)
    after, held = have(http, fid)
    assert after["complete"] and held == set(range(len(hashes)))
    out = work / "out"
    cli.json("get", fid, "-o", out)
    assert out.read_bytes() == data


def test_put_killed_midway_resumes(cli, work):
    """A put killed while uploading leaves some pieces; the next put sends
    only the rest."""
    data = os.urandom(8 << 20)
    src = write(work / "killed.bin", data)
    count = -(-len(data) // SMALL_PIECE)
    http = api_session(cli)
    proc = subprocess.Popen([cli.bin, "put", str(src), "--piece-size", "16K", "-j", "1"],
                            env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def some_pieces():
            shares = expect(http.get("/v1/shares"), 200)["shares"]
            if not shares:
                return None
            files = expect(http.get(f"/v1/files?share={shares[0]['share_id']}"), 200)["files"]
            if not files:
                return None
            return files[0]["file_id"] if have(http, files[0]["file_id"])[0]["held"] > 0 else None
        fid = wait_until(some_pieces, 60, interval=0.02, what="the first pieces")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    before = have(http, fid)[0]["held"]
    assert 0 < before
    if before == count:
        pytest.skip("the put ended before it could be killed")
    put = cli.json("put", src)
    assert put["file_id"] == fid and put["action"] == "unchanged"
    assert put["skipped"] >= before
    assert put["skipped"] + put["uploaded"] == count
    assert have(http, fid)[0]["complete"]
    out = work / "out"
    cli.json("get", fid, "-o", out, "-j", "8")
    assert out.read_bytes() == data


def test_get_resumes_a_damaged_or_partial_file(cli, work):
    data = os.urandom(40 * SMALL_PIECE + 77)
    src = write(work / "src", data)
    count = 41
    fid = cli.json("put", src, "--piece-size", "16384")["file_id"]
    out = work / "out"
    cli.json("get", fid, "-o", out)

    # a damaged middle piece: only it is fetched again
    with open(out, "r+b") as f:
        f.seek(20 * SMALL_PIECE + 100)
        f.write(b"\xff" * 10)
    body = cli.json("get", fid, "-o", out)
    assert body["fetched"] == 1 and body["reused"] == count - 1
    assert body["downloaded"] == SMALL_PIECE
    assert out.read_bytes() == data

    # a hole (as an interrupted get leaves: the file is sized first)
    with open(out, "r+b") as f:
        f.seek(10 * SMALL_PIECE)
        f.write(bytes(3 * SMALL_PIECE))
    body = cli.json("get", fid, "-o", out)
    assert body["fetched"] == 3 and body["reused"] == count - 3
    assert out.read_bytes() == data

    # cut short: the whole pieces left are kept
    with open(out, "r+b") as f:
        f.truncate(15 * SMALL_PIECE + 5)
    body = cli.json("get", fid, "-o", out)
    assert body["reused"] == 15 and body["fetched"] == count - 15
    assert out.read_bytes() == data

    # too long: cut to size, nothing fetched
    with open(out, "ab") as f:
        f.write(b"junk" * 1000)
    body = cli.json("get", fid, "-o", out)
    assert body["fetched"] == 0 and out.read_bytes() == data

    # all fine: nothing fetched
    body = cli.json("get", fid, "-o", out)
    assert body["fetched"] == 0 and body["downloaded"] == 0 and body["reused"] == count


# --- signatures --------------------------------------------------------------

def test_get_refuses_a_manifest_not_signed_by_the_pinned_key(cli, work):
    data = os.urandom(5000)
    fid = cli.json("put", write(work / "f", data))["file_id"]
    ident = cli.identity()
    ident["broker_key"] = base64.b64encode(os.urandom(32)).decode()
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    out = work / "out"
    r = cli.run("get", fid, "-o", out, rc=EXIT_BROKER)
    assert "signature" in r.stderr and fid in r.stderr
    assert not out.exists()
    err = cli.json("get", fid, "-o", out, rc=EXIT_BROKER)
    assert "signature" in err["error"]["message"]
    assert err["error"]["code"] == "protocol_error"


def test_get_refuses_a_manifest_of_another_broker(cli, work):
    fid = cli.json("put", write(work / "f", b"x" * 100))["file_id"]
    ident = cli.identity()
    ident["broker_id"] = new_uuid()
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    r = cli.run("get", fid, "-o", work / "out", rc=EXIT_BROKER)
    assert "pinned broker" in r.stderr


class ManifestRewriter(http.server.ThreadingHTTPServer):
    """A proxy in front of a broker that passes every call through and
    hands the body of each 200 manifest to self.rewrite (bytes in, bytes
    out)."""

    daemon_threads = True

    def __init__(self, broker_url):
        u = urllib.parse.urlsplit(broker_url)
        self.target = (u.hostname, u.port)
        self.rewrite = lambda body: body
        super().__init__(("127.0.0.1", 0), _Forward)
        self.url = "http://127.0.0.1:%d" % self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        hop = ("host", "connection", "content-length", "transfer-encoding")
        conn = http.client.HTTPConnection(*self.server.target, timeout=30)
        conn.request(self.command, self.path, body=body,
                     headers={k: v for k, v in self.headers.items() if k.lower() not in hop})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        if r.status == 200 and urllib.parse.urlsplit(self.path).path.endswith("/manifest"):
            data = self.server.rewrite(data)
        self.send_response_only(r.status)
        for k, v in r.getheaders():
            if k.lower() not in hop:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = forward

    def log_message(self, *args):
        pass


def test_get_checks_the_piece_hashes_it_reads_as_they_arrive(cli, work):
    """get takes the manifest's piece hashes one by one as the answer
    arrives, wherever the list stands and however its name is written,
    and refuses a list that is malformed, too long or too short, holds a
    hash that is not hex, or does not give the signed root."""
    data = os.urandom(5 * SMALL_PIECE + 9)
    fid = cli.json("put", write(work / "f", data), "--piece-size", "16K")["file_id"]
    proxy = ManifestRewriter(cli.broker.url)
    try:
        ident = cli.identity()
        ident["broker"] = proxy.url
        cli.identity_path.write_text(json.dumps(ident))
        os.chmod(cli.identity_path, 0o600)

        def edit(fn):
            def rewrite(body):
                doc = json.loads(body)
                fn(doc)
                return json.dumps(doc).encode()
            return rewrite

        def first(doc):
            """the list first, its name escaped, spaces everywhere"""
            hashes = doc.pop("piece_hashes")
            rest = json.dumps(doc)[1:]
            return ('{ "piece\\u005fhashes" :\n [ %s\n ] , %s'
                    % (" ,\n ".join(json.dumps(h) for h in hashes), rest)).encode()

        proxy.rewrite = lambda body: first(json.loads(body))
        out = work / "out"
        got = cli.json("get", fid, "-o", out)
        assert got["fetched"] == 6 and out.read_bytes() == data

        def swap(doc):
            h = doc["piece_hashes"]
            h[1], h[2] = h[2], h[1]

        cases = [
            (edit(swap), "do not give its root"),
            (edit(lambda d: d["piece_hashes"].__setitem__(3, "zz" * 32)),
             "piece hash 3 is not 64 hex digits"),
            (edit(lambda d: d["piece_hashes"].__setitem__(3, 12)),
             "piece hash 3 is not 64 hex digits"),
            (edit(lambda d: d["piece_hashes"].append(d["piece_hashes"][0])),
             "lists 7 piece hashes"),
            (edit(lambda d: d["piece_hashes"].pop()), "lists 5 piece hashes"),
            (edit(lambda d: d.__setitem__("piece_hashes", ",".join(d["piece_hashes"]))),
             "missing or mistyped"),
            (lambda body: json.dumps(json.loads(body)).replace(
                '"piece_hashes": ["', '"piece_hashes": [,"').encode(), "malformed JSON"),
        ]
        for rewrite, why in cases:
            proxy.rewrite = rewrite
            r = cli.run("get", fid, "-o", work / "bad", rc=EXIT_BROKER)
            assert why in r.stderr, (why, r.stderr)
            assert not (work / "bad").exists()
    finally:
        proxy.shutdown()
        proxy.server_close()


# --- ls, rm, versions -----------------------------------------------------------

def test_ls_rm_versions(cli, work):
    assert cli.json("ls") == {"files": []}          # no default share yet
    assert cli.run("ls", rc=EXIT_OK).stdout == ""
    a = cli.json("put", write(work / "a.txt", b"alpha"), "--path", "docs")
    b = cli.json("put", write(work / "b.txt", b"beta"))
    listed = cli.json("ls")["files"]
    assert [(f["path"], f["name"]) for f in listed] == [("", "b.txt"), ("docs", "a.txt")]
    text = cli.run("ls", rc=EXIT_OK).stdout
    assert a["file_id"] in text and "docs/a.txt" in text and b["file_id"] in text

    assert cli.json("rm", a["file_id"]) == {"file_id": a["file_id"], "deleted": True}
    assert [f["file_id"] for f in cli.json("ls")["files"]] == [b["file_id"]]
    # gone: 410 -> 4
    err = cli.json("get", a["file_id"], "-o", work / "x", rc=EXIT_NOTFOUND)
    assert err["error"]["code"] == "gone"
    assert cli.json("versions", a["file_id"], rc=EXIT_NOTFOUND)["error"]["code"] == "gone"
    assert cli.json("rm", a["file_id"], rc=EXIT_NOTFOUND)["error"]["code"] == "gone"
    # unknown: 404 -> 4
    unknown = new_uuid()
    for args in (["get", unknown, "-o", work / "x"], ["versions", unknown], ["rm", unknown]):
        assert cli.json(*args, rc=EXIT_NOTFOUND)["error"]["code"] == "not_found"
    r = cli.run("rm", b["file_id"], rc=EXIT_OK)
    assert b["file_id"] in r.stdout


@pytest.mark.parametrize("args", [
    ["put"],
    ["put", "a", "b"],
    ["put", "f", "--piece-size", "1000"],
    ["put", "f", "--piece-size", "32M"],
    ["put", "f", "-j", "0"],
    ["put", "f", "-j", "x"],
    ["put", "f", "--bogus"],
    ["get"],
    ["get", "not-a-uuid"],
    ["get", "9b2f6c1e-0b7a-4c39-9f10-5d1f0a7c3e21", "--version", "0"],
    ["get", "9b2f6c1e-0b7a-4c39-9f10-5d1f0a7c3e21", "-j"],
    ["rm"],
    ["versions", "nope"],
    ["ls", "extra"],
    ["share"],
    ["share", "bogus"],
    ["share", "create"],
    ["share", "grant", "s"],
    ["group"],
    ["group", "add", "g"],
    ["group", "create", "g", "not-a-uuid"],
])
def test_usage_errors_are_2(cli, args):
    r = cli.run(*args, rc=EXIT_USAGE)
    assert r.stderr.startswith("shoal: ") and "usage: shoal" in r.stderr
    assert cli.json(*args, rc=EXIT_USAGE)["error"]["code"] == "usage"


def test_put_missing_file_is_7(cli, work):
    r = cli.run("put", work / "nope", rc=EXIT_LOCAL)
    assert "nope" in r.stderr
    assert cli.json("put", work, rc=EXIT_LOCAL)["error"]["code"] == "io_error"


def test_put_into_a_share_that_does_not_exist_is_4(cli, work):
    err = cli.json("put", write(work / "f", b"1"), "--share", "nosuch", rc=EXIT_NOTFOUND)
    assert "nosuch" in err["error"]["message"]


# --- shares and groups ---------------------------------------------------------

def test_share_create_ls_and_put_into_it(cli, work):
    s = cli.json("share", "create", "photos")
    assert UUID_RE.match(s["share_id"]) and s["name"] == "photos" and s["access"] == "owner"
    assert cli.run("share", "create", "photos", rc=EXIT_CONFLICT).stderr.startswith("shoal: ")
    r = cli.run("share", "create", "music", rc=EXIT_OK)
    assert UUID_RE.match(r.stdout.strip())
    names = sorted(x["name"] for x in cli.json("share", "ls")["shares"])
    assert names == ["music", "photos"]
    assert "photos" in cli.run("share", "ls", rc=EXIT_OK).stdout

    f = cli.json("put", write(work / "p.jpg", b"jpeg"), "--share", "photos")
    assert f["share_id"] == s["share_id"]
    g = cli.json("put", write(work / "q.jpg", b"jpeg2"), "--share", s["share_id"])
    assert g["share_id"] == s["share_id"]
    listed = cli.json("ls", "--share", "photos")["files"]
    assert sorted(x["name"] for x in listed) == ["p.jpg", "q.jpg"]
    assert cli.json("ls", "--share", s["share_id"])["files"][0]["share_id"] == s["share_id"]
    # a share that holds files cannot be deleted
    assert cli.json("share", "delete", "photos", rc=EXIT_CONFLICT)["error"]["code"] == "not_empty"
    assert cli.json("share", "delete", "music")["deleted"] is True


def test_share_grant_and_revoke_a_user(cli, shoal_path, broker, tmp_path, work):
    other = Cli(shoal_path, tmp_path / "other", broker)
    other_id = other.register()
    s = cli.json("share", "create", "team")
    f = cli.json("put", write(work / "plan.txt", b"the plan"), "--share", "team")

    # not granted: the share is invisible (404 -> 4)
    assert other.json("ls", "--share", s["share_id"], rc=EXIT_NOTFOUND)
    assert other.json("get", f["file_id"], "-o", work / "x", rc=EXIT_NOTFOUND)

    share = cli.json("share", "grant", "team", other_id)
    assert share["acl"]["read"]["users"] == [other_id]
    assert share["acl"]["write"]["users"] == []
    assert other.json("ls", "--share", s["share_id"])["files"][0]["file_id"] == f["file_id"]
    # a reader finds the share by name too, and can get but not put
    assert other.json("ls", "--share", "team")["files"][0]["name"] == "plan.txt"
    out = work / "got"
    other.json("get", f["file_id"], "-o", out)
    assert out.read_bytes() == b"the plan"
    err = other.json("put", write(work / "n.txt", b"n"), "--share", s["share_id"], rc=EXIT_AUTH)
    assert err["error"]["code"] == "forbidden"
    # a reader may not change the ACL
    assert other.json("share", "grant", s["share_id"], other_id, "--write", rc=EXIT_AUTH)

    share = cli.json("share", "grant", "team", other_id, "--write")
    assert share["acl"]["write"]["users"] == [other_id]
    assert share["acl"]["read"]["users"] == []
    other.json("put", write(work / "n.txt", b"n"), "--share", s["share_id"])
    assert len(cli.json("ls", "--share", "team")["files"]) == 2

    r = cli.run("share", "revoke", "team", other_id, rc=EXIT_OK)
    assert other_id in r.stdout
    assert other.json("ls", "--share", s["share_id"], rc=EXIT_NOTFOUND)
    # revoking again: nothing to revoke
    assert cli.json("share", "revoke", "team", other_id, rc=EXIT_NOTFOUND)


def test_groups_and_a_share_granted_to_a_group(cli, shoal_path, broker, tmp_path, work):
    m1 = Cli(shoal_path, tmp_path / "m1", broker)
    m1_id = m1.register()
    m2_id = make_user(broker, login=False).user_id
    m3_id = make_user(broker, login=False).user_id

    g = cli.json("group", "create", "friends", m2_id)
    assert UUID_RE.match(g["group_id"]) and g["name"] == "friends" and g["members"] == [m2_id]
    g = cli.json("group", "add", "friends", m1_id, m3_id)
    assert g["members"] == sorted([m1_id, m2_id, m3_id])
    g = cli.json("group", "rm", g["group_id"], m3_id)
    assert g["members"] == sorted([m1_id, m2_id])
    assert cli.json("group", "rm", "friends", m3_id, rc=EXIT_NOTFOUND)
    listed = cli.json("group", "ls")["groups"]
    assert [x["group_id"] for x in listed] == [g["group_id"]]
    assert "friends" in cli.run("group", "ls", rc=EXIT_OK).stdout
    # a member sees the group
    assert [x["name"] for x in m1.json("group", "ls")["groups"]] == ["friends"]
    assert cli.json("group", "create", "friends", rc=EXIT_CONFLICT)

    s = cli.json("share", "create", "club")
    f = cli.json("put", write(work / "c.txt", b"club"), "--share", "club")
    assert m1.json("get", f["file_id"], "-o", work / "x", rc=EXIT_NOTFOUND)
    share = cli.json("share", "grant", "club", "friends")       # group by name
    assert share["acl"]["read"]["groups"] == [g["group_id"]]
    m1.json("get", f["file_id"], "-o", work / "x")
    assert (work / "x").read_bytes() == b"club"
    share = cli.json("share", "revoke", s["share_id"], g["group_id"])  # group by id
    assert share["acl"]["read"]["groups"] == []
    assert m1.json("get", f["file_id"], "-o", work / "y", rc=EXIT_NOTFOUND)

    r = cli.run("group", "delete", "friends", rc=EXIT_OK)
    assert g["group_id"] in r.stdout
    assert cli.json("group", "ls") == {"groups": []}


# --- sessions during transfers -----------------------------------------------

def test_transfers_survive_a_revoked_session(cli, work):
    """The session is revoked between runs: the JSON calls log in again,
    and so do the piece transfers that use the new session."""
    data = os.urandom(8 * SMALL_PIECE)
    src = write(work / "s.bin", data)
    sid = cli.session()["session_id"]
    expect(cli.broker.session(token=sid).delete(f"/v1/sessions/{sid}"), 200)
    fid = cli.json("put", src, "--piece-size", "16K")["file_id"]
    assert cli.session()["session_id"] != sid
    sid = cli.session()["session_id"]
    expect(cli.broker.session(token=sid).delete(f"/v1/sessions/{sid}"), 200)
    out = work / "out"
    cli.json("get", fid, "-o", out)
    assert out.read_bytes() == data


def test_transfers_outlive_short_sessions(shoal_path, make_broker, tmp_path, work):
    """Sessions of 2 s, and a put stopped (SIGSTOP) for longer than that
    while its pieces go up: the next piece gets 401 session_expired, put
    logs in again and goes on."""
    b = make_broker(session_ttl="2s")
    c = Cli(shoal_path, tmp_path / "short", b)
    c.register()
    data = os.urandom(8 << 20)
    src = write(work / "long.bin", data)
    http = api_session(c)
    proc = subprocess.Popen([c.bin, "--json", "put", str(src), "--piece-size", "16K", "-j", "2"],
                            env=c.env({"SHOAL_LOG_LEVEL": "debug"}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def uploading():
            shares = expect(http.get("/v1/shares"), 200)["shares"]
            files = shares and expect(http.get(f"/v1/files?share={shares[0]['share_id']}"),
                                      200)["files"]
            return files and have(http, files[0]["file_id"])[0]["held"] > 0
        wait_until(uploading, 60, interval=0.02, what="the first pieces")
        proc.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0, err
    body = json.loads(out)
    if "session of a piece transfer (session_expired)" not in err:
        pytest.skip("every piece was up before the put was stopped")
    assert body["uploaded"] == 512
    got = work / "out"
    c.json("get", body["file_id"], "-o", got, "-j", "1")
    assert got.read_bytes() == data


def test_get_of_an_incomplete_upload_is_5(cli, work):
    data = os.urandom(3 * SMALL_PIECE)
    http = api_session(cli)
    share = cli.json("share", "create", "default")
    fid = expect(http.post("/v1/files", json={
        "share_id": share["share_id"], "path": "", "name": "half", "size": len(data),
        "piece_size": SMALL_PIECE,
        "piece_hashes": [h.hex() for h in piece_hashes(data, SMALL_PIECE)]}), 201)["file_id"]
    expect(http.put(f"/v1/files/{fid}/pieces/1", data=data[SMALL_PIECE:2 * SMALL_PIECE]), 201)
    err = cli.json("get", fid, "-o", work / "out", rc=EXIT_CONFLICT)
    assert err["error"]["code"] == "incomplete"
    # the upload is finished by put; the partial OUT is then completed
    write(work / "half", data)
    assert cli.json("put", work / "half")["uploaded"] == 2
    body = cli.json("get", fid, "-o", work / "out")
    assert (work / "out").read_bytes() == data and body["fetched"] <= 3


def test_put_survives_its_session_revoked_midway(cli, work):
    """The session is revoked while pieces are going up: the next piece
    gets 403 session_unknown, put logs in again and finishes."""
    data = os.urandom(8 << 20)
    src = write(work / "r.bin", data)
    http = api_session(cli)
    proc = subprocess.Popen([cli.bin, "--json", "put", str(src), "--piece-size", "16K", "-j", "2"],
                            env=cli.env({"SHOAL_LOG_LEVEL": "debug"}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def uploading():
            shares = expect(http.get("/v1/shares"), 200)["shares"]
            files = shares and expect(http.get(f"/v1/files?share={shares[0]['share_id']}"),
                                      200)["files"]
            return files and have(http, files[0]["file_id"])[0]["held"] > 0
        wait_until(uploading, 60, interval=0.02, what="the first pieces")
        sid = cli.session()["session_id"]
        expect(http.delete(f"/v1/sessions/{sid}"), 200)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0, err
    body = json.loads(out)
    assert have(http, body["file_id"])[0]["complete"]
    if "session of a piece transfer (session_unknown)" not in err:
        pytest.skip("every piece was up before the session was revoked")
    assert cli.session()["session_id"] != sid
    got = work / "out"
    cli.json("get", body["file_id"], "-o", got)
    assert got.read_bytes() == data
