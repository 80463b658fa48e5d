"""Pieces (spec3 "Pieces and content"): PUT verified against the manifest
and stored by hash, nothing kept on any refusal, the have bitfield, GET of
one piece, deduplication across files and versions, and what a delete
frees."""

import base64
import os
import socket
import time

import pytest

from filekit import (KIB, assert_store_sound, content_body, create_file, grant, have_bits,
                     make_share, pattern, put_piece, raw_connect, raw_head, read_response, sha,
                     split, stored_pieces, tmp_files, upload, verify_xsign)
from helpers import expect, new_uuid

PS = 16 * KIB


def have(u, fid, version=None):
    q = "" if version is None else f"?version={version}"
    return expect(u.http.get(f"/v1/files/{fid}/have{q}"), 200)


def test_upload_have_and_repeat(broker, user):
    u = user()
    share = make_share(u)
    data = pattern(9 * PS + 123, b"have")           # 10 pieces: two bitfield bytes
    f = create_file(u, share, data, PS)
    fid = f["file_id"]
    pieces = split(data, PS)

    h = have(u, fid)
    assert h == {"file_id": fid, "version": 1, "pieces": 10, "have": "AAA=", "held": 0,
                 "complete": False}
    for n in (0, 3, 9, 8):
        r = put_piece(u, fid, n, pieces[n])
        assert expect(r, 201) == {"file_id": fid, "version": 1, "piece": n,
                                  "hash": sha(pieces[n]), "stored": True}
    h = have(u, fid)
    assert have_bits(h) == {0, 3, 8, 9}
    assert base64.b64decode(h["have"]) == bytes([0b10010000, 0b11000000])
    assert (h["held"], h["complete"]) == (4, False)
    assert stored_pieces(broker).get(sha(pieces[9])) == len(pieces[9]) == 123

    # the same piece again: 200, nothing new
    before = stored_pieces(broker)
    expect(put_piece(u, fid, 3, pieces[3]), 200)
    assert stored_pieces(broker) == before

    upload(u, fid, data, PS)
    h = have(u, fid)
    assert h["have"] == base64.b64encode(bytes([0xff, 0xc0])).decode()
    assert (h["held"], h["complete"]) == (10, True)
    assert_store_sound(broker)


def test_any_content_type_and_no_content_type(broker, user):
    u = user()
    share = make_share(u)
    data = pattern(2 * PS, b"ctype")
    f = create_file(u, share, data, PS)
    p = split(data, PS)
    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/0", data=p[0],
                   headers={"Content-Type": "text/plain; charset=utf-8"})
    expect(r, 201)
    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/1", data=p[1])
    assert "Content-Type" not in r.request.headers
    expect(r, 201)


def test_pieces_are_bigger_than_body_limit(make_broker, user):
    """The piece's own length is the limit of a piece upload, not
    body_limit (which still holds for the other routes)."""
    b = make_broker(body_limit="4096")
    u = user(b)
    share = make_share(u)
    data = pattern(64 * KIB, os.urandom(16))
    f = create_file(u, share, data, 64 * KIB)
    expect(put_piece(u, f["file_id"], 0, data), 201)
    expect(u.http.post("/v1/shares", json={"name": "x" * 5000}), 413, "body_too_large")


@pytest.fixture
def one_file(broker, user):
    u = user()
    share = make_share(u)
    data = pattern(2 * PS + 1000, os.urandom(16))      # pieces no other test has
    f = create_file(u, share, data, PS)
    return u, f, data


def assert_nothing_kept(broker, u, f, blob_hash):
    assert blob_hash not in stored_pieces(broker)
    assert tmp_files(broker) == []
    assert have(u, f["file_id"])["held"] == 0


def test_wrong_bytes_422(broker, one_file):
    u, f, data = one_file
    good = split(data, PS)[0]
    bad = bytes([good[0] ^ 1]) + good[1:]
    r = put_piece(u, f["file_id"], 0, bad)
    msg = expect(r, 422, "unprocessable")["error"]["message"]
    assert "hash" in msg
    assert_nothing_kept(broker, u, f, sha(good))
    assert sha(bad) not in stored_pieces(broker)
    # another piece's bytes (right length, wrong hash) are refused as well
    expect(put_piece(u, f["file_id"], 0, split(data, PS)[1]), 422, "unprocessable")
    assert_nothing_kept(broker, u, f, sha(good))
    # the last piece with the bytes of the first (wrong length and hash)
    expect(put_piece(u, f["file_id"], 2, data[:1000][::-1]), 422, "unprocessable")
    assert_nothing_kept(broker, u, f, sha(good))
    # then the right bytes go in
    expect(put_piece(u, f["file_id"], 0, good), 201)
    assert sha(good) in stored_pieces(broker)


def test_shorter_422_longer_413(broker, one_file):
    u, f, data = one_file
    p0, _, p2 = split(data, PS)
    for short in (p0[:-1], p0[:1], b""):
        expect(put_piece(u, f["file_id"], 0, short), 422, "unprocessable")
        assert_nothing_kept(broker, u, f, sha(p0))
    expect(put_piece(u, f["file_id"], 2, p2[:-1]), 422, "unprocessable")
    # longer: refused from Content-Length, before the body is read
    for long in (p0 + b"x", p0 + p0):
        expect(put_piece(u, f["file_id"], 0, long), 413, "body_too_large")
        assert_nothing_kept(broker, u, f, sha(p0))
    expect(put_piece(u, f["file_id"], 2, p2 + b"\0"), 413, "body_too_large")
    assert_nothing_kept(broker, u, f, sha(p2))


def test_longer_chunked_body_413(broker, one_file):
    """Without Content-Length (chunked), the extra byte is found while
    streaming: 413 all the same, nothing kept."""
    u, f, data = one_file
    p0 = split(data, PS)[0]

    def chunks(blob, size=4096):
        for i in range(0, len(blob), size):
            yield blob[i:i + size]

    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/0", data=chunks(p0 + b"extra"))
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    expect(r, 413, "body_too_large")
    assert_nothing_kept(broker, u, f, sha(p0))
    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/0", data=chunks(p0[:-5]))
    expect(r, 422, "unprocessable")
    assert_nothing_kept(broker, u, f, sha(p0))
    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/0", data=chunks(p0))
    expect(r, 201)


@pytest.mark.parametrize("n", ["3", "4", "1000", "18446744073709551615", "18446744073709551616",
                               "99999999999999999999999999", "-1", "01", "00", "1.0", "1e0",
                               "+1", "0x1", "abc", "%201", "1%20", "%00", "１"])
def test_bad_piece_index(broker, one_file, n):
    u, f, data = one_file
    blob = split(data, PS)[0]
    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/{n}", data=blob)
    msg = expect(r, 400, "invalid_request")["error"]["message"]
    if n in ("3", "4", "1000"):
        assert f"piece {n} out of range" in msg, msg
    expect(u.http.get(f"/v1/files/{f['file_id']}/pieces/{n}"), 400, "invalid_request")
    assert_nothing_kept(broker, u, f, sha(blob))


@pytest.mark.parametrize("v", ["0", "-1", "01", "1.0", "abc", "", "2147483648", "1 "])
def test_bad_version_param(broker, one_file, v):
    u, f, data = one_file
    blob = split(data, PS)[0]
    for path in (f"/v1/files/{f['file_id']}/pieces/0", f"/v1/files/{f['file_id']}/have",
                 f"/v1/files/{f['file_id']}/content", f"/v1/files/{f['file_id']}/manifest"):
        expect(u.http.get(path, params={"version": v}), 400, "invalid_request")
    r = u.http.put(f"/v1/files/{f['file_id']}/pieces/0", params={"version": v}, data=blob)
    expect(r, 400, "invalid_request")
    assert_nothing_kept(broker, u, f, sha(blob))


def test_missing_version_404(broker, one_file):
    u, f, data = one_file
    blob = split(data, PS)[0]
    for path in (f"/v1/files/{f['file_id']}/pieces/0", f"/v1/files/{f['file_id']}/have",
                 f"/v1/files/{f['file_id']}/content"):
        expect(u.http.get(path + "?version=2"), 404, "not_found")
    expect(put_piece(u, f["file_id"], 0, blob, version=2), 404, "not_found")
    assert_nothing_kept(broker, u, f, sha(blob))
    expect(put_piece(u, f["file_id"], 0, blob, version=1), 201)


def test_upload_to_an_older_version(broker, user):
    u = user()
    share = make_share(u)
    v1, v2 = pattern(PS + 1, b"old"), pattern(PS + 2, b"new")
    f = create_file(u, share, v1, PS)
    expect(u.http.put(f"/v1/files/{f['file_id']}", json=content_body(v2, PS)), 200)
    # version 2's piece 0 is not version 1's piece 0
    expect(put_piece(u, f["file_id"], 0, split(v1, PS)[0]), 422, "unprocessable")
    r = put_piece(u, f["file_id"], 0, split(v1, PS)[0], version=1)
    assert expect(r, 201)["version"] == 1
    assert have_bits(have(u, f["file_id"], 1)) == {0}
    assert have_bits(have(u, f["file_id"], 2)) == set()
    assert have(u, f["file_id"])["version"] == 2


def test_get_piece(broker, user):
    u, reader = user(), user()
    share = make_share(u)
    grant(u, share, read=[reader])
    data = pattern(2 * PS + 777, b"getp")
    f = create_file(u, share, data, PS)
    fid = f["file_id"]
    pieces = split(data, PS)
    expect(u.http.get(f"/v1/files/{fid}/pieces/1"), 409, "incomplete")
    upload(u, fid, data, PS)
    for n, blob in enumerate(pieces):
        r = reader.http.get(f"/v1/files/{fid}/pieces/{n}")
        expect(r, 200)
        assert r.content == blob
        assert r.headers["X-Piece-Hash"] == sha(blob)
        assert r.headers["ETag"] == f'"{sha(blob)}"'
        assert r.headers["Accept-Ranges"] == "bytes"
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert int(r.headers["Content-Length"]) == len(blob)
        verify_xsign(reader, r.headers["X-Sign"], fid, 1, len(data), PS, f["root"])
        h = reader.http.head(f"/v1/files/{fid}/pieces/{n}")
        expect(h, 200)
        assert h.content == b"" and int(h.headers["Content-Length"]) == len(blob)
        assert h.headers["X-Piece-Hash"] == sha(blob)
    # Range within a piece
    r = reader.http.get(f"/v1/files/{fid}/pieces/1", headers={"Range": "bytes=10-19"})
    expect(r, 206)
    assert r.content == pieces[1][10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{PS}"
    r = reader.http.get(f"/v1/files/{fid}/pieces/2", headers={"Range": "bytes=-7"})
    expect(r, 206)
    assert r.content == pieces[2][-7:]
    assert r.headers["Content-Range"] == "bytes 770-776/777"
    r = reader.http.get(f"/v1/files/{fid}/pieces/2", headers={"Range": "bytes=777-"})
    expect(r, 416)
    assert r.headers["Content-Range"] == "bytes */777"


# --------------------------------------------------------------------------
# deduplication and what a delete frees


def test_dedup_across_files(broker, user):
    u, other = user(), user()
    shared = pattern(PS, b"shared piece")
    a = shared + pattern(PS, b"only in a")
    b = pattern(PS, b"only in b") + shared
    fa = create_file(u, make_share(u), a, PS)
    fb = create_file(other, make_share(other), b, PS)   # another user, another share
    assert upload(u, fa["file_id"], a, PS) == [201, 201]
    before = stored_pieces(broker)
    # the shared piece is held already: 200, stored once
    assert upload(other, fb["file_id"], b, PS) == [201, 200]
    after = stored_pieces(broker)
    assert set(after) - set(before) == {sha(b[:PS])}
    assert list(after).count(sha(shared)) == 1
    assert have(other, fb["file_id"])["complete"] is True
    # a file made of one piece repeated: stored once, all bits set
    rep = shared * 3
    fr = create_file(u, make_share(u), rep, PS)
    h = have(u, fr["file_id"])
    assert (h["held"], h["complete"]) == (3, True)     # held before any upload
    assert upload(u, fr["file_id"], rep, PS) == [200, 200, 200]
    assert stored_pieces(broker) == after
    assert_store_sound(broker)


def test_delete_frees_unshared_pieces(broker, user):
    u = user()
    share = make_share(u)
    salt = os.urandom(16)
    p1, p2, p3, p4 = (pattern(PS, salt + bytes([i])) for i in range(4))
    fa = create_file(u, share, p1 + p2, PS, name="a")
    fb = create_file(u, share, p2 + p3, PS, name="b")
    upload(u, fa["file_id"], p1 + p2, PS)
    upload(u, fb["file_id"], p2 + p3, PS)
    # a second version of b: p3 stays referenced by version 1, p4 is new
    expect(u.http.put(f"/v1/files/{fb['file_id']}", json=content_body(p4 + p3, PS)), 200)
    upload(u, fb["file_id"], p4 + p3, PS)
    names = {sha(p) for p in (p1, p2, p3, p4)}
    assert names <= set(stored_pieces(broker))

    expect(u.http.delete(f"/v1/files/{fa['file_id']}"), 200)
    held = set(stored_pieces(broker))
    assert sha(p1) not in held, "a piece no version references any more was kept"
    assert {sha(p2), sha(p3), sha(p4)} <= held, "a piece still referenced was removed"
    r = u.http.get(f"/v1/files/{fb['file_id']}/content?version=1")
    expect(r, 200)
    assert r.content == p2 + p3

    # p1 can come back in a new file
    fc = create_file(u, share, p1, PS, name="c")
    assert upload(u, fc["file_id"], p1, PS) == [201]

    expect(u.http.delete(f"/v1/files/{fb['file_id']}"), 200)
    held = set(stored_pieces(broker))
    assert not held & {sha(p2), sha(p3), sha(p4)}
    assert sha(p1) in held
    assert_store_sound(broker)


def test_delete_keeps_pieces_of_unrelated_users(broker, user):
    a, b = user(), user()
    blob = pattern(PS, b"common")
    fa = create_file(a, make_share(a), blob, PS)
    fb = create_file(b, make_share(b), blob, PS)
    upload(a, fa["file_id"], blob, PS)
    expect(a.http.delete(f"/v1/files/{fa['file_id']}"), 200)
    assert sha(blob) in stored_pieces(broker)
    r = b.http.get(f"/v1/files/{fb['file_id']}/content")
    expect(r, 200)
    assert r.content == blob


def test_pieces_need_write(broker, user):
    owner, reader, writer, stranger = user(), user(), user(), user()
    share = make_share(owner)
    grant(owner, share, read=[reader], write=[writer])
    data = pattern(2 * PS, b"acl")
    f = create_file(owner, share, data, PS)
    p0, p1 = split(data, PS)
    expect(put_piece(reader, f["file_id"], 0, p0), 403, "forbidden")
    expect(put_piece(stranger, f["file_id"], 0, p0), 404, "not_found")
    expect(put_piece(stranger, new_uuid(), 0, p0), 404, "not_found")
    assert sha(p0) not in stored_pieces(broker)
    expect(put_piece(writer, f["file_id"], 0, p0), 201)
    expect(put_piece(owner, f["file_id"], 1, p1), 201)
    assert have(reader, f["file_id"])["complete"] is True


def test_refused_before_the_body(broker, one_file):
    """Who, which piece and how long are checked from the headers: the
    answer comes before the body is sent (Expect: 100-continue)."""
    u, f, data = one_file
    p0 = split(data, PS)[0]
    cases = [({"Authorization": f"Bearer {new_uuid()}"}, 0, len(p0), 403),
             ({"Authorization": f"Bearer {u.session_id}"}, 7, len(p0), 400),
             ({"Authorization": f"Bearer {u.session_id}"}, 0, len(p0) + 1, 413)]
    for auth, n, length, status in cases:
        with raw_connect(broker) as s:
            s.sendall(raw_head(broker, "PUT", f"/v1/files/{f['file_id']}/pieces/{n}",
                               dict(auth, **{"Content-Length": str(length),
                                             "Expect": "100-continue"})))
            got, hdrs, body = read_response(s)
            assert got == status, (got, body)
    assert_nothing_kept(broker, u, f, sha(p0))


def test_abandoned_upload_leaves_nothing(broker, one_file):
    """A client that sends half a piece and hangs up while the broker is
    writing it: the temporary file goes at once, no piece appears."""
    u, f, data = one_file
    p0 = split(data, PS)[0]
    with raw_connect(broker) as s:
        s.sendall(raw_head(broker, "PUT", f"/v1/files/{f['file_id']}/pieces/0",
                           {"Authorization": f"Bearer {u.session_id}",
                            "Content-Length": str(len(p0))}) + p0[:len(p0) // 2])
        deadline = time.monotonic() + 10
        while not tmp_files(broker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tmp_files(broker), "the broker did not start writing the piece"
        s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 5
    while tmp_files(broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_nothing_kept(broker, u, f, sha(p0))
    expect(put_piece(u, f["file_id"], 0, p0), 201)


def test_concurrent_uploads_of_one_piece(broker, user):
    """Eight clients send the same new piece at once: it is stored once,
    exactly one of them is told 201, the others 200."""
    from concurrent.futures import ThreadPoolExecutor
    u = user()
    data = pattern(256 * KIB, os.urandom(16))
    f = create_file(u, make_share(u), data, 256 * KIB)
    sessions = [broker.session(token=u.session_id) for _ in range(8)]
    path = f"/v1/files/{f['file_id']}/pieces/0"
    with ThreadPoolExecutor(max_workers=8) as pool:
        rs = list(pool.map(lambda s: s.put(path, data=data), sessions))
    statuses = sorted(r.status_code for r in rs)
    assert statuses == [200] * 7 + [201], statuses
    for r in rs:
        expect(r, r.status_code)
    assert stored_pieces(broker)[sha(data)] == len(data)
    assert tmp_files(broker) == [], f"temporary files left after 8 uploads of {sha(data)}"
    assert_store_sound(broker)


def test_delete_frees_pieces_on_every_file_broker(broker, make_broker, user):
    """A piece whose last reference goes is removed from the stores of the
    file brokers (schemas/sql/002_files.sql: "deleted here and from the
    file brokers' stores"), not only from the broker that took the
    DELETE."""
    other = make_broker()
    u = user()
    data = pattern(PS, os.urandom(16))
    f = create_file(u, make_share(u), data, PS)
    upload(u, f["file_id"], data, PS)
    r = other.session(token=u.session_id).put(f"/v1/files/{f['file_id']}/pieces/0", data=data)
    expect(r, 201)
    assert sha(data) in stored_pieces(other)
    expect(u.http.delete(f"/v1/files/{f['file_id']}"), 200)
    assert sha(data) not in stored_pieces(broker)
    deadline = time.monotonic() + 15
    while sha(data) in stored_pieces(other) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sha(data) not in stored_pieces(other), \
        "the other file broker still stores a piece that no version references"


def test_orphans_are_removed_when_a_broker_starts(broker, make_broker, user):
    """A broker that was down while a piece was freed and its row expired
    finds the orphan in its store when it starts, and removes it; a piece
    still counted by a version stays."""
    other = make_broker()
    u = user()
    keep = pattern(PS, os.urandom(16))
    gone = pattern(PS, os.urandom(16))
    share = make_share(u)
    f_keep = create_file(u, share, keep, PS)
    f_gone = create_file(u, share, gone, PS)
    http = other.session(token=u.session_id)
    expect(http.put(f"/v1/files/{f_keep['file_id']}/pieces/0", data=keep), 201)
    expect(http.put(f"/v1/files/{f_gone['file_id']}/pieces/0", data=gone), 201)
    other.stop()
    expect(u.http.delete(f"/v1/files/{f_gone['file_id']}"), 200)
    # as after a day: the freed row is gone too
    broker.pg.psql(broker.dbname, "DELETE FROM pieces WHERE refs = 0")
    assert {sha(keep), sha(gone)} <= set(stored_pieces(other))
    other.start()
    deadline = time.monotonic() + 15
    while sha(gone) in stored_pieces(other) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sha(gone) not in stored_pieces(other), "an orphan piece survived a restart"
    assert sha(keep) in stored_pieces(other), "a counted piece was removed"
