"""Content (spec3 "Pieces and content"): GET and HEAD of a version's bytes
with and without Range, the headers that go with them (ETag, X-Sign,
Accept-Ranges, Content-Range), 409 while pieces are missing, plain HTTP
clients (curl, aria2c), and a sparse 12 GiB file read past 4 and 10 GiB."""

import os
import shutil
import subprocess

import pytest

from filekit import (GIB, KIB, MIB, ZERO_ROOT, bulk_session, content_body, create_file, env_no_proxy, grant,
                     make_share, parse_xsign, pattern, sha, split, stored_pieces, upload,
                     verify_xsign)
from helpers import expect

PS = 16 * KIB


@pytest.fixture(scope="module")
def sample(broker):
    """A complete file of 3 pieces and a bit, readable by a second user."""
    from helpers import make_user
    u, reader = make_user(broker), make_user(broker)
    share = make_share(u)
    grant(u, share, read=[reader])
    data = pattern(3 * PS + 1234, os.urandom(16))
    f = create_file(u, share, data, PS)
    upload(u, f["file_id"], data, PS)
    return u, reader, f, data


def get(u, fid, rng=None, method="GET", version=None):
    headers = {} if rng is None else {"Range": rng}
    q = "" if version is None else f"?version={version}"
    return u.http.request(method, f"/v1/files/{fid}/content{q}", headers=headers)


def test_whole(sample):
    u, reader, f, data = sample
    r = get(reader, f["file_id"])
    expect(r, 200)
    assert r.content == data
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == f'"{f["root"]}"'
    assert "Content-Range" not in r.headers
    x = verify_xsign(reader, r.headers["X-Sign"], f["file_id"], 1, len(data), PS, f["root"])
    m = expect(reader.http.get(f"/v1/files/{f['file_id']}/manifest"), 200)
    mx = parse_xsign(m["x_sign"])
    for k in ("key", "ver", "size", "piece", "root"):
        assert x[k] == mx[k], k
    assert abs(x["exp"] - mx["exp"]) in (0, 3600)     # the same whole hour, unless one passed


def test_head(sample):
    u, reader, f, data = sample
    r = get(reader, f["file_id"], method="HEAD")
    expect(r, 200)
    assert r.content == b""
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.headers["ETag"] == f'"{f["root"]}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    verify_xsign(reader, r.headers["X-Sign"], f["file_id"], 1, len(data), PS, f["root"])
    r = get(reader, f["file_id"], "bytes=10-19", method="HEAD")
    expect(r, 206)
    assert r.content == b"" and r.headers["Content-Length"] == "10"
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = get(reader, f["file_id"], f"bytes={len(data)}-", method="HEAD")
    expect(r, 416)
    assert r.content == b"" and r.headers["Content-Range"] == f"bytes */{len(data)}"


def ranges(size):
    """(Range value, first, last) of satisfiable single ranges."""
    return [
        ("bytes=0-99", 0, 99),
        ("bytes=0-0", 0, 0),
        ("bytes=100-", 100, size - 1),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=-1", size - 1, size - 1),
        (f"bytes=-{size + 50}", 0, size - 1),            # suffix longer than the file
        (f"bytes=0-{size + 1000}", 0, size - 1),         # last past the end: clamped
        (f"bytes={size - 1}-{size - 1}", size - 1, size - 1),
        (f"bytes={PS - 5}-{PS + 4}", PS - 5, PS + 4),    # across a piece boundary
        (f"bytes={PS}-{2 * PS - 1}", PS, 2 * PS - 1),    # exactly one piece
        (f"bytes=100-{3 * PS + 100}", 100, 3 * PS + 100),  # across four pieces
        (f"bytes={3 * PS - 1}-", 3 * PS - 1, size - 1),  # into the short last piece
        ("Bytes=5-9", 5, 9),                               # the unit is case-insensitive
    ]


@pytest.mark.parametrize("i", range(13))
def test_range(sample, i):
    u, reader, f, data = sample
    rng, first, last = ranges(len(data))[i]
    r = get(reader, f["file_id"], rng)
    expect(r, 206)
    assert r.content == data[first:last + 1], rng
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert int(r.headers["Content-Length"]) == last + 1 - first
    assert r.headers["ETag"] == f'"{f["root"]}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    verify_xsign(reader, r.headers["X-Sign"], f["file_id"], 1, len(data), PS, f["root"])


def test_unsatisfiable(sample):
    u, reader, f, data = sample
    n = len(data)
    for rng in (f"bytes={n}-", f"bytes={n}-{n + 10}", f"bytes={n + 1000}-", "bytes=10-5",
                "bytes=-0", f"bytes={2 ** 64 - 1}-"):
        r = get(reader, f["file_id"], rng)
        expect(r, 416, "range_not_satisfiable")
        assert r.headers["Content-Range"] == f"bytes */{n}", rng


@pytest.mark.parametrize("rng", ["bytes=0-1,5-6", "bytes=0-1, 3-4", "bytes=abc", "pages=0-1",
                                 "bytes 0-1", "bytes=5", "bytes=--1", "bytes=1-2-3", "bytes=",
                                 "bytes=-", "", "bytes=0x10-20", "bytes=99999999999999999999999-"])
def test_ignored_ranges_give_the_whole(sample, rng):
    u, reader, f, data = sample
    r = get(reader, f["file_id"], rng)
    expect(r, 200)
    assert r.content == data
    assert "Content-Range" not in r.headers


def test_incomplete(broker, user):
    u = user()
    share = make_share(u)
    data = pattern(4 * PS, os.urandom(16))
    f = create_file(u, share, data, PS)
    fid = f["file_id"]
    expect(get(u, fid), 409, "incomplete")
    upload(u, fid, data, PS, only={0, 2})
    expect(get(u, fid), 409, "incomplete")
    expect(get(u, fid, method="HEAD"), 409)
    for rng in (f"bytes={PS - 1}-{PS}", f"bytes={PS}-{PS}", "bytes=-1", f"bytes=0-{4 * PS}"):
        expect(get(u, fid, rng), 409, "incomplete")
    for rng, a, b in (("bytes=0-10", 0, 10), (f"bytes={2 * PS}-{3 * PS - 1}", 2 * PS, 3 * PS - 1),
                      (f"bytes=0-{PS - 1}", 0, PS - 1)):
        r = get(u, fid, rng)
        expect(r, 206)
        assert r.content == data[a:b + 1]
    # an unsatisfiable range is that, whatever the broker holds
    r = get(u, fid, f"bytes={4 * PS}-")
    expect(r, 416, "range_not_satisfiable")
    upload(u, fid, data, PS)
    r = get(u, fid)
    expect(r, 200)
    assert r.content == data


@pytest.mark.parametrize("map_cache", ["0", "32KiB", "1GiB"])
def test_ranges_across_pieces_with_and_without_maps(make_broker, map_cache):
    """Ranges across up to 4 pieces go out from memory maps of the pieces
    (map_cache), longer ones and every range with map_cache 0 are read
    piece after piece: the bytes are the same, also when the maps cannot
    all stay (32 KiB: two pieces) and after a version's pieces are
    replaced."""
    from helpers import make_user
    import random
    b = make_broker(map_cache=map_cache)
    u = make_user(b)
    share = make_share(u)
    data = pattern(7 * PS + 321, os.urandom(16))
    f = create_file(u, share, data, PS)
    upload(u, f["file_id"], data, PS)
    rnd = random.Random(map_cache)
    for _ in range(40):
        a = rnd.randrange(len(data))
        last = min(len(data) - 1, a + rnd.randrange(1, 6 * PS))
        r = get(u, f["file_id"], f"bytes={a}-{last}")
        expect(r, 206)
        assert r.content == data[a:last + 1], (a, last)
    r = get(u, f["file_id"], f"bytes={PS - 1}-{2 * PS}", method="HEAD")
    expect(r, 206)
    assert r.content == b"" and int(r.headers["Content-Length"]) == PS + 2
    # a second version with other bytes: its ranges show them
    data2 = pattern(3 * PS + 5, os.urandom(16))
    expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(data2, PS)), 200)
    upload(u, f["file_id"], data2, PS)
    r = get(u, f["file_id"], f"bytes=10-{2 * PS + 10}")
    expect(r, 206)
    assert r.content == data2[10:2 * PS + 11]


def test_empty_file(broker, user):
    u = user()
    f = create_file(u, make_share(u), b"", PS)
    r = get(u, f["file_id"])
    expect(r, 200)
    assert r.content == b"" and r.headers["Content-Length"] == "0"
    assert r.headers["ETag"] == f'"{ZERO_ROOT}"'
    verify_xsign(u, r.headers["X-Sign"], f["file_id"], 1, 0, PS, ZERO_ROOT)
    for rng in ("bytes=0-", "bytes=0-0", "bytes=-1"):
        r = get(u, f["file_id"], rng)
        expect(r, 416, "range_not_satisfiable")
        assert r.headers["Content-Range"] == "bytes */0"


def test_versions_of_content(broker, user):
    u = user()
    share = make_share(u)
    v1, v2 = pattern(PS + 10, os.urandom(8)), pattern(2 * PS + 20, os.urandom(8))
    f = create_file(u, share, v1, PS)
    upload(u, f["file_id"], v1, PS)
    g = expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(v2, 32 * KIB)), 200)
    expect(get(u, f["file_id"]), 409, "incomplete")            # the latest is version 2
    r = get(u, f["file_id"], version=1)
    expect(r, 200)
    assert r.content == v1 and r.headers["ETag"] == f'"{f["root"]}"'
    verify_xsign(u, r.headers["X-Sign"], f["file_id"], 1, len(v1), PS, f["root"])
    upload(u, f["file_id"], v2, 32 * KIB)
    r = get(u, f["file_id"], "bytes=-5")
    expect(r, 206)
    assert r.content == v2[-5:] and r.headers["ETag"] == f'"{g["root"]}"'
    assert r.headers["Content-Range"] == f"bytes {len(v2) - 5}-{len(v2) - 1}/{len(v2)}"
    verify_xsign(u, r.headers["X-Sign"], f["file_id"], 2, len(v2), 32 * KIB, g["root"])
    expect(get(u, f["file_id"], version=3), 404, "not_found")


# --------------------------------------------------------------------------
# plain HTTP clients


def test_curl(broker, sample, tmp_path):
    u, reader, f, data = sample
    url = f"{broker.url}/v1/files/{f['file_id']}/content"
    auth = f"Authorization: Bearer {reader.session_id}"
    out, hdr = tmp_path / "out", tmp_path / "hdr"
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "-H", auth, "-r", "0-99", "-o", str(out),
                        "-D", str(hdr), "-w", "%{http_code}", url],
                       capture_output=True, text=True, timeout=30, env=env_no_proxy())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "206"
    assert out.read_bytes() == data[:100]
    headers = hdr.read_text().lower()
    assert f"content-range: bytes 0-99/{len(data)}" in headers
    assert f'etag: "{f["root"]}"' in headers and "x-sign: v=1; " in headers
    # the whole file, then a resumed download (-C -) of a truncated copy
    r = subprocess.run(["curl", "-sS", "--fail", "--noproxy", "*", "-H", auth, "-o", str(out), url],
                       capture_output=True, timeout=30, env=env_no_proxy())
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data
    out.write_bytes(data[:PS + 77])
    r = subprocess.run(["curl", "-sS", "--fail", "--noproxy", "*", "-H", auth, "-C", "-",
                        "-o", str(out), url], capture_output=True, timeout=30, env=env_no_proxy())
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data
    # without the session: 400, and curl --fail says so
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                        url], capture_output=True, text=True, timeout=30, env=env_no_proxy())
    assert r.stdout == "400"


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c is not installed")
def test_aria2c_segmented_download(broker, user, tmp_path):
    """aria2c splits the download over 4 connections with Range requests."""
    u = user()
    data = pattern(5 * MIB + 4321, os.urandom(16))
    f = create_file(u, make_share(u), data, 64 * KIB)
    upload(u, f["file_id"], data, 64 * KIB)
    def partial_answers():
        return sum(1 for line in broker.log_text().splitlines()
                   if '"route":"/v1/files/{id}/content"' in line and '"status":206' in line)

    before = partial_answers()
    r = subprocess.run(["aria2c", "--no-conf", "--console-log-level=warn", "--summary-interval=0",
                        "--header", f"Authorization: Bearer {u.session_id}",
                        "-x", "4", "-s", "4", "-k", "1M", "--min-split-size=1M",
                        "--max-tries=1", "--timeout=20", "--allow-overwrite=true",
                        "--auto-file-renaming=false", "--file-allocation=none",
                        "-d", str(tmp_path), "-o", "out",
                        f"{broker.url}/v1/files/{f['file_id']}/content"],
                       capture_output=True, text=True, timeout=120, env=env_no_proxy())
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out").read_bytes() == data
    # it did split the download: several 206 answers
    assert partial_answers() - before >= 2, "aria2c made fewer than two range requests"


# --------------------------------------------------------------------------
# a 12 GiB file


def test_sparse_12gib_by_range(broker, user):
    """12 GiB in 16 MiB pieces: all zeros but a few distinct pieces.  Every
    zero piece has one hash, so one upload holds all 764 of them; the
    distinct pieces sit at 4 GiB, 10 GiB and the end.  Read back by Range
    past 4 GiB and 10 GiB, across piece boundaries, and the last byte."""
    u = user()
    ps = 16 * MIB
    size = 12 * GIB
    count = size // ps                                   # 768
    zero = bytes(ps)
    distinct = {0: pattern(ps, b"first" + os.urandom(8)),
                (4 * GIB) // ps: pattern(ps, b"4GiB" + os.urandom(8)),
                (10 * GIB) // ps: pattern(ps, b"10GiB" + os.urandom(8)),
                count - 1: pattern(ps, b"last" + os.urandom(8))}
    hashes = [sha(distinct[i]) if i in distinct else sha(zero) for i in range(count)]
    body = {"share_id": make_share(u), "path": "big", "name": "sparse.img", "size": size,
            "piece_size": ps, "piece_hashes": hashes}
    f = expect(u.http.post("/v1/files", json=body), 201)
    assert (f["size"], f["pieces"]) == (size, count)
    fid = f["file_id"]

    for n in [1] + sorted(distinct):                     # piece 1 is a zero piece
        blob = distinct.get(n, zero)
        r = bulk_session(u).put(f"/v1/files/{fid}/pieces/{n}", data=blob, timeout=120)
        assert expect(r, 201 if n in distinct or n == 1 else 200)["hash"] == sha(blob)
    h = expect(u.http.get(f"/v1/files/{fid}/have"), 200)
    assert (h["pieces"], h["held"], h["complete"]) == (count, count, True)
    assert sha(zero) in stored_pieces(broker)

    def piece_byte(off):
        n, i = divmod(off, ps)
        return (distinct.get(n, zero))[i]

    def expected(a, b):
        out = bytearray()
        off = a
        while off <= b:
            n, i = divmod(off, ps)
            take = min(b + 1 - off, ps - i)
            out += distinct.get(n, zero)[i:i + take]
            off += take
        return bytes(out)

    cases = [(4 * GIB, 4 * GIB + 99), (4 * GIB - 10, 4 * GIB + 10), (4 * GIB + 12345, 4 * GIB + 12345),
             (10 * GIB + ps - 50, 10 * GIB + ps + 49), (10 * GIB + 777, 10 * GIB + 1777),
             (5 * GIB + 3, 5 * GIB + 1000), (size - 1, size - 1), (size - 100, size - 1),
             (ps - 1, ps)]
    for a, b in cases:
        r = u.http.get(f"/v1/files/{fid}/content", headers={"Range": f"bytes={a}-{b}"})
        expect(r, 206)
        assert r.headers["Content-Range"] == f"bytes {a}-{b}/{size}"
        assert r.content == expected(a, b), (a, b)
    assert piece_byte(size - 1) == distinct[count - 1][-1]
    r = u.http.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=-1"})
    expect(r, 206)
    assert r.content == distinct[count - 1][-1:]
    assert r.headers["Content-Range"] == f"bytes {size - 1}-{size - 1}/{size}"
    r = u.http.get(f"/v1/files/{fid}/content", headers={"Range": f"bytes={size}-"})
    expect(r, 416, "range_not_satisfiable")
    assert r.headers["Content-Range"] == f"bytes */{size}"
    r = u.http.head(f"/v1/files/{fid}/content")
    expect(r, 200)
    assert r.headers["Content-Length"] == str(size)
    verify_xsign(u, r.headers["X-Sign"], fid, 1, size, ps, f["root"])
    # one whole piece past 10 GiB, and a 40 MiB range across three pieces
    bulk = bulk_session(u)
    r = bulk.get(f"/v1/files/{fid}/pieces/{(10 * GIB) // ps}", timeout=60)
    expect(r, 200)
    assert r.content == distinct[(10 * GIB) // ps]
    a = 10 * GIB - 8 * MIB
    r = bulk.get(f"/v1/files/{fid}/content", headers={"Range": f"bytes={a}-{a + 40 * MIB - 1}"},
                 timeout=60)
    expect(r, 206)
    assert r.content == expected(a, a + 40 * MIB - 1)


def test_other_broker_sees_new_versions_and_deletes_at_once(broker, make_broker, user):
    """Two brokers on one database: what one broker changes, the other
    answers at once (nothing it remembers about a file outlives a new
    version or a delete)."""
    other = make_broker()
    u = user()
    on2 = other.session(token=u.session_id)
    v1, v2 = pattern(PS + 3, os.urandom(8)), pattern(2 * PS + 9, os.urandom(8))
    f = create_file(u, make_share(u), v1, PS)
    fid = f["file_id"]
    for http in (u.http, on2):
        for n, blob in enumerate(split(v1, PS)):
            assert http.put(f"/v1/files/{fid}/pieces/{n}", data=blob).status_code == 201
    r = on2.get(f"/v1/files/{fid}/content")
    assert r.status_code == 200 and r.content == v1
    assert expect(on2.get(f"/v1/files/{fid}/manifest"), 200)["version"] == 1

    g = expect(u.http.put(f"/v1/files/{fid}", json=content_body(v2, PS)), 200)
    assert expect(on2.get(f"/v1/files/{fid}"), 200)["version"] == 2
    m = expect(on2.get(f"/v1/files/{fid}/manifest"), 200)
    assert (m["version"], m["root"]) == (2, g["root"])
    expect(on2.get(f"/v1/files/{fid}/content"), 409, "incomplete")
    for n, blob in enumerate(split(v2, PS)):
        expect(on2.put(f"/v1/files/{fid}/pieces/{n}", data=blob), 201)
    r = on2.get(f"/v1/files/{fid}/content")
    expect(r, 200)
    assert r.content == v2 and r.headers["ETag"] == f'"{g["root"]}"'
    r = on2.get(f"/v1/files/{fid}/content?version=1")
    assert r.status_code == 200 and r.content == v1

    expect(u.http.delete(f"/v1/files/{fid}"), 200)
    for path in (f"/v1/files/{fid}", f"/v1/files/{fid}/manifest", f"/v1/files/{fid}/content",
                 f"/v1/files/{fid}/content?version=1", f"/v1/files/{fid}/pieces/0",
                 f"/v1/files/{fid}/have", f"/v1/files/{fid}/versions"):
        expect(on2.get(path), 410, "gone")
    expect(on2.put(f"/v1/files/{fid}/pieces/0", data=split(v2, PS)[0]), 410, "gone")
