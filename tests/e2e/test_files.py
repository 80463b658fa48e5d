"""Files and versions (spec3 "Files"): create, new version, list, get,
versions, the signed manifest, delete; who sees what; quotas and
allocations; every validation rule of path, name, size, piece size and
piece hashes."""

import time

import pytest

from filekit import (KIB, MIB, ZERO_ROOT, content_body, create_file, file_body, grant,
                     make_share, merkle_root, pattern, put_piece, sha, split, upload,
                     verify_xsign)
from helpers import expect, new_uuid, parse_time, utcnow

PS = 16 * KIB


def list_files(u, share):
    return expect(u.http.get(f"/v1/files?share={share}"), 200)["files"]


def used(broker, u):
    return expect(broker.admin.get(f"/v1/users/{u.user_id}/quota"), 200)["used"]


# --------------------------------------------------------------------------
# the life of a file


def test_create_get_list_versions_manifest(broker, user):
    u = user()
    share = make_share(u)
    data = pattern(2 * PS + 100, b"cglvm")
    before = utcnow().replace(microsecond=0)
    f = create_file(u, share, data, PS, path="docs/a", name="report.pdf")
    assert f["pieces"] == 3
    assert parse_time(f["created_at"]) >= before and f["updated_at"] == f["created_at"]

    assert expect(u.http.get(f"/v1/files/{f['file_id']}"), 200) == f
    assert expect(u.http.get(f"/v1/files/{f['file_id'].upper()}"), 200) == f
    assert list_files(u, share) == [f]

    vs = expect(u.http.get(f"/v1/files/{f['file_id']}/versions"), 200)
    assert vs["file_id"] == f["file_id"]
    assert vs["versions"] == [{"version": 1, "size": len(data), "piece_size": PS, "pieces": 3,
                               "root": f["root"], "created_by": u.user_id,
                               "created_at": f["created_at"]}]

    r = u.http.get(f"/v1/files/{f['file_id']}/manifest")
    m = expect(r, 200)
    hashes = [sha(p) for p in split(data, PS)]
    assert m["piece_hashes"] == hashes
    assert (m["file_id"], m["version"], m["size"], m["piece_size"], m["pieces"], m["root"]) == \
        (f["file_id"], 1, len(data), PS, 3, merkle_root(hashes))
    assert m["broker_id"] == r.headers["X-Broker-Id"]
    assert r.headers["X-Sign"] == m["x_sign"]
    x = verify_xsign(u, m["x_sign"], f["file_id"], 1, len(data), PS, m["root"])
    assert x["key"] == m["broker_id"]
    assert parse_time(m["expires_at"]).timestamp() == x["exp"]
    # sign_ttl defaults to 7 days; the expiry is rounded up to a whole hour
    now = time.time()
    assert x["exp"] % 3600 == 0
    assert now + 7 * 86400 - 5 <= x["exp"] <= now + 7 * 86400 + 3600 + 5


def test_default_piece_size_and_empty_file(broker, user):
    u = user()
    share = make_share(u)
    data = pattern(600 * KIB, b"default")
    body = file_body(share, data, 512 * KIB)
    del body["piece_size"]
    f = expect(u.http.post("/v1/files", json=body), 201)
    assert (f["piece_size"], f["pieces"], f["root"]) == \
        (524288, 2, merkle_root(body["piece_hashes"]))

    e = create_file(u, share, b"", PS, name="empty")
    assert (e["size"], e["pieces"], e["root"]) == (0, 0, ZERO_ROOT)
    m = expect(u.http.get(f"/v1/files/{e['file_id']}/manifest"), 200)
    assert m["piece_hashes"] == [] and m["root"] == ZERO_ROOT
    verify_xsign(u, m["x_sign"], e["file_id"], 1, 0, PS, ZERO_ROOT)


def test_new_versions(broker, user):
    owner, writer = user(), user()
    share = make_share(owner)
    grant(owner, share, write=[writer])
    v1 = pattern(PS + 1, b"v1")
    f = create_file(owner, share, v1, PS, name="doc")
    time.sleep(1.1)                      # updated_at moves on (second resolution)

    v2 = pattern(3 * PS, b"v2")
    r = writer.http.put(f"/v1/files/{f['file_id']}", json=content_body(v2, 32 * KIB))
    g = expect(r, 200)
    assert (g["version"], g["size"], g["piece_size"], g["pieces"]) == (2, 3 * PS, 32 * KIB, 2)
    assert g["root"] == merkle_root([sha(p) for p in split(v2, 32 * KIB)])
    assert g["owner_id"] == owner.user_id          # the owner stays the owner
    assert g["created_at"] == f["created_at"] and g["updated_at"] > f["updated_at"]
    assert expect(owner.http.get(f"/v1/files/{f['file_id']}"), 200) == g

    vs = expect(owner.http.get(f"/v1/files/{f['file_id']}/versions"), 200)["versions"]
    assert [v["version"] for v in vs] == [1, 2]
    assert [v["created_by"] for v in vs] == [owner.user_id, writer.user_id]
    assert vs[0]["root"] == f["root"] and vs[1]["root"] == g["root"]

    m1 = expect(owner.http.get(f"/v1/files/{f['file_id']}/manifest?version=1"), 200)
    assert m1["version"] == 1 and m1["piece_hashes"] == [sha(p) for p in split(v1, PS)]
    verify_xsign(owner, m1["x_sign"], f["file_id"], 1, len(v1), PS, f["root"])
    m2 = expect(owner.http.get(f"/v1/files/{f['file_id']}/manifest"), 200)
    assert m2["version"] == 2 and m2["root"] == g["root"]

    expect(owner.http.get(f"/v1/files/{f['file_id']}/manifest?version=3"), 404, "not_found")
    expect(owner.http.get(f"/v1/files/{f['file_id']}/manifest?version=2147483647"), 404,
           "not_found")
    for bad in ("0", "-1", "01", "1.0", "abc", "", "2147483648", "1 ", "0x1"):
        expect(owner.http.get(f"/v1/files/{f['file_id']}/manifest", params={"version": bad}),
               400, "invalid_request")

    # an empty new version
    h = expect(owner.http.put(f"/v1/files/{f['file_id']}", json=content_body(b"")), 200)
    assert (h["version"], h["size"], h["pieces"], h["root"]) == (3, 0, 0, ZERO_ROOT)


def test_delete(broker, user):
    owner, reader, writer, stranger = user(), user(), user(), user()
    share = make_share(owner)
    grant(owner, share, read=[reader], write=[writer])
    data = pattern(PS + 5, b"del")
    f = create_file(owner, share, data, PS, name="gone")
    upload(owner, f["file_id"], data, PS)
    fid = f["file_id"]

    expect(reader.http.delete(f"/v1/files/{fid}"), 403, "forbidden")
    expect(stranger.http.delete(f"/v1/files/{fid}"), 404, "not_found")
    assert expect(writer.http.delete(f"/v1/files/{fid}"), 200) == {"file_id": fid,
                                                                   "deleted": True}
    assert list_files(owner, share) == []

    calls = [("GET", f"/v1/files/{fid}", None), ("GET", f"/v1/files/{fid}/versions", None),
             ("GET", f"/v1/files/{fid}/manifest", None), ("GET", f"/v1/files/{fid}/have", None),
             ("GET", f"/v1/files/{fid}/content", None), ("HEAD", f"/v1/files/{fid}/content", None),
             ("GET", f"/v1/files/{fid}/pieces/0", None),
             ("PUT", f"/v1/files/{fid}", {"json": content_body(data, PS)}),
             ("PUT", f"/v1/files/{fid}/pieces/0", {"data": data[:PS]}),
             ("DELETE", f"/v1/files/{fid}", None)]
    for who in (owner, reader, writer):
        for method, path, kw in calls:
            r = who.http.request(method, path, **(kw or {}))
            if method == "HEAD":
                assert r.status_code == 410 and r.content == b"", (method, path)
                expect(r, 410)
            else:
                expect(r, 410, "gone")
    for method, path, kw in calls:
        r = stranger.http.request(method, path, **(kw or {}))
        expect(r, 404, None if method == "HEAD" else "not_found")

    # the name is free again; the new file is another file
    g = create_file(owner, share, data, PS, name="gone")
    assert g["file_id"] != fid and g["version"] == 1
    assert [x["file_id"] for x in list_files(owner, share)] == [g["file_id"]]


def test_list(broker, user):
    u, stranger = user(), user()
    share, other = make_share(u), make_share(u)
    made = [create_file(u, share, pattern(10, n.encode()), PS, path=p, name=n)
            for p, n in [("b", "a"), ("", "z"), ("a/b", "c"), ("a", "d"), ("", "B"), ("a", "c")]]
    create_file(u, other, b"x", PS, name="elsewhere")
    got = list_files(u, share)
    assert [(x["path"], x["name"]) for x in got] == \
        [("", "B"), ("", "z"), ("a", "c"), ("a", "d"), ("a/b", "c"), ("b", "a")]
    assert {x["file_id"] for x in got} == {x["file_id"] for x in made}
    assert list_files(u, share.upper()) == got

    expect(u.http.get("/v1/files"), 400, "invalid_request")
    expect(u.http.get("/v1/files?share="), 400, "invalid_request")
    expect(u.http.get("/v1/files?share=not-a-uuid"), 400, "invalid_request")
    expect(u.http.get(f"/v1/files?share={new_uuid()}"), 404, "not_found")
    expect(stranger.http.get(f"/v1/files?share={share}"), 404, "not_found")
    expect(broker.api.get(f"/v1/files?share={share}"), 400, "session_missing")


# --------------------------------------------------------------------------
# visibility


def test_visibility(broker, user):
    owner, reader, stranger = user(), user(), user()
    share = make_share(owner)
    grant(owner, share, read=[reader])
    data = pattern(PS + 1, b"vis")
    f = create_file(owner, share, data, PS, name="secret")
    upload(owner, f["file_id"], data, PS)
    fid = f["file_id"]
    reads = [f"/v1/files/{fid}", f"/v1/files/{fid}/versions", f"/v1/files/{fid}/manifest",
             f"/v1/files/{fid}/have", f"/v1/files/{fid}/content", f"/v1/files/{fid}/pieces/0",
             f"/v1/files?share={share}"]
    writes = [("PUT", f"/v1/files/{fid}", {"json": content_body(b"new")}),
              ("DELETE", f"/v1/files/{fid}", {}),
              ("PUT", f"/v1/files/{fid}/pieces/0", {"data": data[:PS]}),
              ("POST", "/v1/files", {"json": file_body(share, b"new", name="new")})]

    # a stranger: 404 on every route, as for an unknown id
    for path in reads:
        expect(stranger.http.get(path), 404, "not_found")
        r = stranger.http.head(path)
        assert r.status_code == 404 and r.content == b""
    for method, path, kw in writes:
        expect(stranger.http.request(method, path, **kw), 404, "not_found")
    # an unknown id is answered exactly the same way
    for path in reads[:-1]:
        expect(owner.http.get(path.replace(fid, new_uuid())), 404, "not_found")

    # a reader: reads everything, writes nothing (403)
    for path in reads:
        assert reader.http.get(path).status_code == 200, path
    for method, path, kw in writes:
        expect(reader.http.request(method, path, **kw), 403, "forbidden")
    assert [x["file_id"] for x in list_files(owner, share)] == [fid]
    assert expect(owner.http.get(f"/v1/files/{fid}"), 200)["version"] == 1

    # once the reader is dropped from the ACL, it is a stranger
    grant(owner, share)
    expect(reader.http.get(f"/v1/files/{fid}"), 404, "not_found")

    # no session at all
    expect(broker.api.get(f"/v1/files/{fid}"), 400, "session_missing")
    expect(broker.api.get(f"/v1/files/{fid}", headers={"Authorization": f"Bearer {new_uuid()}"}),
           403, "session_unknown")


def test_malformed_file_ids(broker, user):
    u = user()
    for bad in ("nope", new_uuid()[:-1], new_uuid() + "0", "1" * 36):
        for path in (f"/v1/files/{bad}", f"/v1/files/{bad}/versions", f"/v1/files/{bad}/manifest",
                     f"/v1/files/{bad}/have", f"/v1/files/{bad}/content",
                     f"/v1/files/{bad}/pieces/0"):
            expect(u.http.get(path), 400, "invalid_request")
        expect(u.http.delete(f"/v1/files/{bad}"), 400, "invalid_request")
        expect(u.http.put(f"/v1/files/{bad}", json=content_body(b"x")), 400, "invalid_request")


# --------------------------------------------------------------------------
# quotas and allocations


def test_user_quota(broker, user):
    u = user()
    share = make_share(u)
    expect(broker.admin.put(f"/v1/users/{u.user_id}/quota", json={"quota": 3000}), 200)
    f = create_file(u, share, pattern(1000, b"q1"), PS, name="one")

    # a file that would pass the quota: 412, nothing created
    r = u.http.post("/v1/files", json=file_body(share, pattern(2001, b"q2"), PS, name="two"))
    expect(r, 412, "over_quota")
    assert [x["file_id"] for x in list_files(u, share)] == [f["file_id"]]
    assert used(broker, u) == 1000

    # versions count in full, every one of them
    expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(pattern(1000, b"q3"))), 200)
    assert used(broker, u) == 2000
    r = u.http.put(f"/v1/files/{f['file_id']}", json=content_body(pattern(1001, b"q4")))
    expect(r, 412, "over_quota")
    g = expect(u.http.get(f"/v1/files/{f['file_id']}"), 200)
    assert g["version"] == 2 and g["size"] == 1000
    assert len(expect(u.http.get(f"/v1/files/{f['file_id']}/versions"), 200)["versions"]) == 2
    # exactly at the quota is allowed
    expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(pattern(1000, b"q5"))), 200)
    assert used(broker, u) == 3000
    expect(u.http.post("/v1/files", json=file_body(share, b"", PS, name="zero")), 201)
    expect(u.http.post("/v1/files", json=file_body(share, b"x", PS, name="x")), 412, "over_quota")

    # the same content twice still counts twice (dedup does not lower the bill)
    expect(broker.admin.put(f"/v1/users/{u.user_id}/quota", json={"quota": None}), 200)
    same = pattern(500, b"same")
    create_file(u, share, same, PS, name="same1")
    create_file(u, share, same, PS, name="same2")
    assert used(broker, u) == 4000

    # deleting frees quota
    expect(broker.admin.put(f"/v1/users/{u.user_id}/quota", json={"quota": 4000}), 200)
    expect(u.http.post("/v1/files", json=file_body(share, b"y", PS, name="y")), 412, "over_quota")
    expect(u.http.delete(f"/v1/files/{f['file_id']}"), 200)
    assert used(broker, u) == 1000
    expect(u.http.post("/v1/files", json=file_body(share, b"y", PS, name="y")), 201)


def test_quota_counts_the_owner_not_the_writer(broker, user):
    owner, writer = user(), user()
    share = make_share(owner)
    grant(owner, share, write=[writer])
    expect(broker.admin.put(f"/v1/users/{writer.user_id}/quota", json={"quota": 100}), 200)
    f = create_file(writer, share, pattern(100, b"w"), PS, name="w")
    # the writer created it: it owns the file, and its quota is full now
    assert f["owner_id"] == writer.user_id and used(broker, writer) == 100
    # a new version by the owner of the share counts against the file's owner
    r = owner.http.put(f"/v1/files/{f['file_id']}", json=content_body(b"z"))
    expect(r, 412, "over_quota")
    assert used(broker, owner) == 0


def test_share_allocation(broker, user):
    u = user()
    share, other = make_share(u), make_share(u)
    s = expect(broker.admin.put(f"/v1/shares/{share}/allocation", json={"allocation": 2 * PS}),
               200)
    assert s["allocation"] == 2 * PS and s["used"] == 0
    f = create_file(u, share, pattern(PS, b"a1"), PS, name="a1")
    expect(u.http.post("/v1/files", json=file_body(share, pattern(PS + 1, b"a2"), PS, name="a2")),
           412, "over_quota")
    assert [x["file_id"] for x in list_files(u, share)] == [f["file_id"]]
    expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(pattern(PS + 1, b"a3"))),
           412, "over_quota")
    assert expect(u.http.get(f"/v1/files/{f['file_id']}"), 200)["version"] == 1
    # the other share has no allocation
    create_file(u, other, pattern(3 * PS, b"a4"), PS, name="big")
    assert expect(u.http.get(f"/v1/shares/{share}"), 200)["used"] == PS
    assert expect(u.http.get(f"/v1/shares/{other}"), 200)["used"] == 3 * PS


# --------------------------------------------------------------------------
# validation


def count_files(u, share):
    return len(list_files(u, share))


@pytest.fixture
def owner_share(user):
    u = user()
    return u, make_share(u)


BAD_HASHES = [
    ("uppercase", sha(b"x").upper()),
    ("63 chars", sha(b"x")[:63]),
    ("65 chars", sha(b"x") + "0"),
    ("non-hex", "g" + sha(b"x")[1:]),
    ("spaces", " " + sha(b"x")[1:]),
    ("empty", ""),
    ("number", 12),
    ("null", None),
]


@pytest.mark.parametrize("what, bad", BAD_HASHES, ids=[b[0] for b in BAD_HASHES])
def test_bad_piece_hash(owner_share, what, bad):
    u, share = owner_share
    data = pattern(3 * PS, b"h")
    body = file_body(share, data, PS)
    body["piece_hashes"][1] = bad
    r = u.http.post("/v1/files", json=body)
    msg = expect(r, 400, "invalid_request")["error"]["message"]
    assert "piece_hashes[1]" in msg, msg
    assert count_files(u, share) == 0
    # the same rule for a new version
    f = create_file(u, share, b"ok", PS)
    c = content_body(data, PS)
    c["piece_hashes"][2] = bad
    msg = expect(u.http.put(f"/v1/files/{f['file_id']}", json=c), 400,
                 "invalid_request")["error"]["message"]
    assert "piece_hashes[2]" in msg, msg
    assert expect(u.http.get(f"/v1/files/{f['file_id']}"), 200)["version"] == 1


@pytest.mark.parametrize("size, n", [(3 * PS, 2), (3 * PS, 4), (3 * PS + 1, 3), (0, 1),
                                     (1, 0), (PS, 2)])
def test_piece_count_mismatch(owner_share, size, n):
    u, share = owner_share
    body = {"share_id": share, "path": "", "name": "n", "size": size, "piece_size": PS,
            "piece_hashes": [sha(bytes([i])) for i in range(n)]}
    expect(u.http.post("/v1/files", json=body), 400, "invalid_request")
    assert count_files(u, share) == 0


@pytest.mark.parametrize("size", [-1, 2 ** 53 + 1, 2 ** 63, 1.5, 1e3, "10", None, True])
def test_bad_size(owner_share, size):
    u, share = owner_share
    body = {"share_id": share, "path": "", "name": "n", "size": size, "piece_size": PS,
            "piece_hashes": []}
    msg = expect(u.http.post("/v1/files", json=body), 400, "invalid_request")["error"]["message"]
    if size != 2 ** 63:             # past int64, the JSON parser refuses the number itself
        assert "size" in msg, msg
    assert count_files(u, share) == 0


def test_large_manifest(broker, user):
    """A manifest is not held to body_limit (1 MiB by default): 20 000
    piece hashes (1.3 MB of JSON) go in and come back whole; past 32 MiB of
    JSON the body is refused before it is read."""
    from filekit import as_response, put_continue
    u = user()
    share = make_share(u)
    ps = 16 * KIB
    n = 20000
    hashes = [sha(i.to_bytes(4, "big")) for i in range(n)]
    body = {"share_id": share, "path": "", "name": "many", "size": n * ps - 1,
            "piece_size": ps, "piece_hashes": hashes}
    f = expect(u.http.post("/v1/files", json=body), 201)
    assert (f["pieces"], f["root"]) == (n, merkle_root(hashes))
    m = expect(u.http.get(f"/v1/files/{f['file_id']}/manifest"), 200)
    assert m["piece_hashes"] == hashes
    h = expect(u.http.get(f"/v1/files/{f['file_id']}/have"), 200)
    assert (h["pieces"], h["held"], len(h["have"])) == (n, 0, 4 * ((n // 8 + 2) // 3))
    g = expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(b"", ps)), 200)
    assert g["version"] == 2
    big = ('{"size": 0, "piece_hashes": [], "pad": "' + "x" * (32 * MIB) + '"}').encode()
    path = f"/v1/files/{f['file_id']}"
    status, hdrs, rbody = put_continue(broker, u.session_id, path, big,
                                       content_type="application/json")
    expect(as_response(broker, "PUT", path, status, hdrs, rbody), 413, "body_too_large")
    assert expect(u.http.get(path), 200)["version"] == 2


def test_largest_size(owner_share):
    """2^53 bytes is allowed: 2^29 pieces of 16 MiB would be 16 GiB of JSON,
    so only the count check is reached; the limit itself is checked by
    test_bad_size."""
    u, share = owner_share
    body = {"share_id": share, "path": "", "name": "n", "size": 2 ** 53, "piece_size": 16 * MIB,
            "piece_hashes": []}
    msg = expect(u.http.post("/v1/files", json=body), 400, "invalid_request")["error"]["message"]
    assert "piece" in msg and "size" not in msg.split("piece")[0], msg


@pytest.mark.parametrize("ps", [0, 1, 1000, 8 * KIB, 16 * KIB - 1, 16 * KIB + 1, 3 * 16 * KIB,
                                32 * MIB, 2 ** 31, -16384, 16384.0, "16384", None])
def test_bad_piece_size(owner_share, ps):
    u, share = owner_share
    body = {"share_id": share, "path": "", "name": "n", "size": 0, "piece_size": ps,
            "piece_hashes": []}
    msg = expect(u.http.post("/v1/files", json=body), 400, "invalid_request")["error"]["message"]
    assert "piece_size" in msg, msg
    assert count_files(u, share) == 0


@pytest.mark.parametrize("ps", [16 * KIB, 32 * KIB, 64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB,
                                MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB])
def test_every_piece_size(owner_share, ps):
    u, share = owner_share
    data = pattern(ps + 3, b"ps")
    f = create_file(u, share, data, ps)
    assert f["pieces"] == 2


SEG = "s" * 255
BAD_PATHS = [
    ("dotdot", "a/../b"), ("dotdot-only", ".."), ("dot", "a/./b"), ("dot-only", "."),
    ("double-slash", "a//b"), ("leading-slash", "/a"), ("trailing-slash", "a/"),
    ("slash-only", "/"), ("nul", "a\u0000b"), ("newline", "a\nb"), ("tab", "a\tb"),
    ("escape", "a\u001bb"), ("del", "a\u007fb"), ("cr", "\r"),
    ("256-byte segment", "a/" + "s" * 256), ("1025 bytes", "/".join([SEG] * 4) + "/a"),
    ("256 bytes in 2-byte chars", "é" * 128),
]


@pytest.mark.parametrize("what, path", BAD_PATHS, ids=[b[0] for b in BAD_PATHS])
def test_bad_path(owner_share, what, path):
    u, share = owner_share
    msg = expect(u.http.post("/v1/files", json=file_body(share, b"x", PS, path=path)), 400,
                 "invalid_request")["error"]["message"]
    assert "path" in msg, msg
    assert count_files(u, share) == 0


BAD_NAMES = [
    ("empty", ""), ("slash", "a/b"), ("slash-only", "/"), ("dot", "."), ("dotdot", ".."),
    ("nul", "a\u0000"), ("newline", "a\n"), ("del", "\u007f"), ("256 bytes", "n" * 256),
    ("256 bytes in 2-byte chars", "é" * 128), ("number", 5), ("null", None),
]


@pytest.mark.parametrize("what, name", BAD_NAMES, ids=[b[0] for b in BAD_NAMES])
def test_bad_name(owner_share, what, name):
    u, share = owner_share
    body = file_body(share, b"x", PS)
    body["name"] = name
    msg = expect(u.http.post("/v1/files", json=body), 400, "invalid_request")["error"]["message"]
    assert "name" in msg, msg
    assert count_files(u, share) == 0


def test_longest_path_and_name(owner_share):
    u, share = owner_share
    path = "/".join([SEG] * 3 + ["s" * 253]) + "/ab"        # 1024 bytes
    assert len(path) == 1024
    f = create_file(u, share, b"x", PS, path=path, name="n" * 255)
    assert f["path"] == path and f["name"] == "n" * 255
    g = create_file(u, share, b"x", PS, path="é" * 127, name="ü" * 127)  # 254 bytes each
    assert g["path"] == "é" * 127 and g["name"] == "ü" * 127
    h = create_file(u, share, b"x", PS, path="...a/..b/.c", name="...")
    assert (h["path"], h["name"]) == ("...a/..b/.c", "...")


def test_other_body_errors(owner_share):
    u, share = owner_share
    good = file_body(share, b"x", PS)
    for key in ("share_id", "path", "name", "size", "piece_hashes"):
        body = dict(good)
        del body[key]
        msg = expect(u.http.post("/v1/files", json=body), 400,
                     "invalid_request")["error"]["message"]
        assert key in msg, msg
    expect(u.http.post("/v1/files", json=dict(good, extra=1)), 400, "invalid_request")
    expect(u.http.post("/v1/files", json=dict(good, share_id="nope")), 400, "invalid_request")
    expect(u.http.post("/v1/files", json=dict(good, piece_hashes="abc")), 400, "invalid_request")
    expect(u.http.post("/v1/files", json=[good]), 400, "invalid_request")
    expect(u.http.post("/v1/files", data="{", headers={"Content-Type": "application/json"}),
           400, "malformed_json")
    expect(u.http.post("/v1/files", data="{}", headers={"Content-Type": "text/plain"}),
           415, "unsupported_media_type")
    expect(u.http.post("/v1/files", json=dict(good, share_id=new_uuid())), 404, "not_found")
    f = create_file(u, share, b"x", PS)
    for bad in ({"size": 1}, {"size": 1, "piece_hashes": [sha(b"y")], "name": "n"},
                {"size": 1, "piece_size": 100, "piece_hashes": [sha(b"y")]}):
        expect(u.http.put(f"/v1/files/{f['file_id']}", json=bad), 400, "invalid_request")
    assert count_files(u, share) == 1
    assert expect(u.http.get(f"/v1/files/{f['file_id']}"), 200)["version"] == 1


def test_sql_metacharacters_stored_verbatim(owner_share):
    u, share = owner_share
    path = "a'; DROP TABLE files; --/b\"c\\d/%_*?$1::text"
    name = "x'); DELETE FROM versions; -- 😀 <script>"
    f = create_file(u, share, b"meta", PS, path=path, name=name)
    assert (f["path"], f["name"]) == (path, name)
    assert expect(u.http.get(f"/v1/files/{f['file_id']}"), 200) == f
    assert list_files(u, share) == [f]
    # '%' and '_' are no wildcards: a name that differs only there is another file
    g = create_file(u, share, b"meta", PS, path=path, name=name.replace("x", "%"))
    assert g["file_id"] != f["file_id"]
    assert len(list_files(u, share)) == 2


def test_duplicates(user):
    u, other = user(), user()
    share, share2 = make_share(u), make_share(u)
    f = create_file(u, share, b"dup", PS, path="p", name="n")
    r = u.http.post("/v1/files", json=file_body(share, b"other", PS, path="p", name="n"))
    msg = expect(r, 409, "already_exists")["error"]["message"]
    assert "n" in msg
    assert list_files(u, share) == [f]
    # same name elsewhere is fine: another path, another share, another case
    create_file(u, share, b"dup", PS, path="q", name="n")
    create_file(u, share, b"dup", PS, path="", name="n")
    create_file(u, share, b"dup", PS, path="p", name="N")
    create_file(u, share2, b"dup", PS, path="p", name="n")
    # a writer of the share hits the same uniqueness
    grant(u, share, write=[other])
    expect(other.http.post("/v1/files", json=file_body(share, b"x", PS, path="p", name="n")),
           409, "already_exists")
    assert len(list_files(u, share)) == 4


def test_files_of_a_share_cannot_be_deleted_with_it(owner_share):
    u, share = owner_share
    f = create_file(u, share, b"keep", PS)
    expect(u.http.delete(f"/v1/shares/{share}"), 409, "not_empty")
    assert expect(u.http.get(f"/v1/files/{f['file_id']}"), 200) == f
    expect(u.http.delete(f"/v1/files/{f['file_id']}"), 200)
    expect(u.http.delete(f"/v1/shares/{share}"), 200)


def test_piece_data_not_needed_for_metadata(broker, user):
    """Creating a file sends no byte: its pieces are not on the broker until
    uploaded, and the upload goes to the version it names."""
    u = user()
    share = make_share(u)
    data = pattern(2 * PS, b"meta-only")
    f = create_file(u, share, data, PS)
    h = expect(u.http.get(f"/v1/files/{f['file_id']}/have"), 200)
    assert (h["held"], h["complete"]) == (0, False)
    upload(u, f["file_id"], data, PS)
    r = put_piece(u, f["file_id"], 0, data[:PS], version=1)
    expect(r, 200)


# --------------------------------------------------------------------------
# concurrency


def in_parallel(u, n, call):
    """Run call(http, i) for i in range(n) on n threads, each with its own
    HTTP session of user u; returns the responses in order."""
    from concurrent.futures import ThreadPoolExecutor
    sessions = [u.broker.session(token=u.session_id) for _ in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda i: call(sessions[i], i), range(n)))


@pytest.mark.parametrize("limit", ["quota", "allocation"])
def test_concurrent_creations_respect_the_limit(broker, user, limit):
    """12 creations of 1000 bytes at once against a limit of 5000: exactly
    5 get in, whatever the interleaving."""
    u = user()
    share = make_share(u)
    if limit == "quota":
        expect(broker.admin.put(f"/v1/users/{u.user_id}/quota", json={"quota": 5000}), 200)
    else:
        expect(broker.admin.put(f"/v1/shares/{share}/allocation", json={"allocation": 5000}),
               200)
    rs = in_parallel(u, 12, lambda http, i: http.post(
        "/v1/files", json=file_body(share, pattern(1000, bytes([i])), PS, name=f"c{i}")))
    statuses = sorted(r.status_code for r in rs)
    for r in rs:
        expect(r, r.status_code, None if r.status_code == 201 else "over_quota")
    assert statuses == [201] * 5 + [412] * 7, f"{statuses}; used {used(broker, u)} of 5000"
    assert used(broker, u) == 5000
    assert len(list_files(u, share)) == 5


def test_concurrent_creations_of_one_name(broker, user):
    u = user()
    share = make_share(u)
    rs = in_parallel(u, 10, lambda http, i: http.post(
        "/v1/files", json=file_body(share, pattern(10, bytes([i])), PS, path="p", name="same")))
    statuses = sorted(r.status_code for r in rs)
    for r in rs:
        expect(r, r.status_code, None if r.status_code == 201 else "already_exists")
    assert statuses == [201] + [409] * 9, statuses
    assert len(list_files(u, share)) == 1


def test_concurrent_versions_are_numbered_in_turn(broker, user):
    u = user()
    f = create_file(u, make_share(u), b"v", PS)
    rs = in_parallel(u, 10, lambda http, i: http.put(
        f"/v1/files/{f['file_id']}", json=content_body(pattern(100 + i, b"cv"), PS)))
    got = sorted(expect(r, 200)["version"] for r in rs)
    assert got == list(range(2, 12)), got
    vs = expect(u.http.get(f"/v1/files/{f['file_id']}/versions"), 200)["versions"]
    assert [v["version"] for v in vs] == list(range(1, 12))
    assert {v["size"] for v in vs[1:]} == set(range(100, 110))


# --------------------------------------------------------------------------
# sign_ttl


def test_sign_ttl_sets_the_expiry(make_broker, user):
    b = make_broker(sign_ttl="2h")
    u = user(b)
    f = create_file(u, make_share(u), b"ttl", PS)
    m = expect(u.http.get(f"/v1/files/{f['file_id']}/manifest"), 200)
    x = verify_xsign(u, m["x_sign"], f["file_id"], 1, 3, PS, f["root"])
    now = time.time()
    assert x["exp"] % 3600 == 0
    assert now + 2 * 3600 - 5 <= x["exp"] <= now + 3 * 3600 + 5, (x["exp"] - now)


@pytest.mark.parametrize("ttl", ["59s", "3651d", "0", "-1h", "soon"])
def test_bad_sign_ttl_stops_the_broker(bin_dir, pg, database, workdir, ttl):
    from helpers import BrokerPool
    b = BrokerPool(bin_dir, pg, database, workdir, "sign-ttl").new(sign_ttl=ttl)
    b.launch()
    try:
        rc = b.proc.wait(15)
    finally:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)
    assert rc != 0
    assert "sign_ttl" in b.log_text()


def test_access_through_a_group(broker, user):
    owner, member, writer_member = user(), user(), user()
    share = make_share(owner)
    readers = expect(owner.http.post("/v1/groups", json={"name": "r-" + new_uuid(),
                                                          "members": [member.user_id]}), 201)
    writers = expect(owner.http.post("/v1/groups", json={"name": "w-" + new_uuid(),
                                                          "members": [writer_member.user_id]}),
                     201)
    acl = {"read": {"users": [], "groups": [readers["group_id"]]},
           "write": {"users": [], "groups": [writers["group_id"]]}}
    expect(owner.http.put(f"/v1/shares/{share}/acl", json=acl), 200)
    data = pattern(PS + 1, b"grp")
    f = create_file(writer_member, share, data, PS)
    upload(writer_member, f["file_id"], data, PS)
    r = member.http.get(f"/v1/files/{f['file_id']}/content")
    expect(r, 200)
    assert r.content == data
    assert [x["file_id"] for x in list_files(member, share)] == [f["file_id"]]
    expect(member.http.put(f"/v1/files/{f['file_id']}", json=content_body(b"no")), 403,
           "forbidden")
    # out of the group: a stranger again
    expect(owner.http.put(f"/v1/groups/{readers['group_id']}", json={"members": []}), 200)
    expect(member.http.get(f"/v1/files/{f['file_id']}"), 404, "not_found")
    expect(member.http.get(f"/v1/files/{f['file_id']}/content"), 404, "not_found")
