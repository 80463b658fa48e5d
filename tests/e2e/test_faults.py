"""Faults of the file role: a broker killed (SIGKILL) in the middle of a
piece upload, and a full disk.  Neither may leave a partial piece under a
real name, and both must let the upload complete afterwards."""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from filekit import (KIB, MIB, as_response, assert_store_sound, create_file, have_bits,
                     make_share, pattern, put_continue, raw_connect, raw_head, sha, split,
                     stored_pieces, tmp_files, upload, wait_for)
from helpers import START_TIMEOUT, expect


def kill9(b):
    """SIGKILL the broker b and reap it; b can launch() again afterwards."""
    b.proc.send_signal(signal.SIGKILL)
    assert b.proc.wait(10) == -signal.SIGKILL
    b.proc = None


def test_sigkill_in_the_middle_of_a_piece(make_broker, user):
    b = make_broker()
    u = user(b)
    ps = MIB
    data = pattern(2 * ps + 5000, os.urandom(16))
    f = create_file(u, make_share(u), data, ps)
    fid = f["file_id"]
    upload(u, fid, data, ps, only={0})
    p1 = split(data, ps)[1]

    # headers and half of piece 1, then the broker dies
    s = raw_connect(b)
    try:
        s.sendall(raw_head(b, "PUT", f"/v1/files/{fid}/pieces/1",
                           {"Authorization": f"Bearer {u.session_id}",
                            "Content-Length": str(len(p1))}) + p1[:len(p1) // 2])
        wait_for(lambda: tmp_files(b), 10, "the temporary file of the upload")
        time.sleep(0.3)                   # let the broker take in what was sent
        kill9(b)
    finally:
        s.close()
    assert sha(p1) not in stored_pieces(b), "a half piece sits under its real name"
    left = tmp_files(b)
    assert len(left) == 1 and left[0].startswith(sha(p1) + "."), left

    # the same data_dir and database: the leftover goes, the upload completes
    b.launch().wait_ready(START_TIMEOUT)
    assert tmp_files(b) == [], "the restarted broker kept a dead writer's temporary file"
    assert sha(p1) not in stored_pieces(b)
    u.login()                             # the session survives, but take a fresh connection
    h = expect(u.http.get(f"/v1/files/{fid}/have"), 200)
    assert have_bits(h) == {0}
    assert upload(u, fid, data, ps) == [200, 201, 201]
    r = u.http.get(f"/v1/files/{fid}/content")
    expect(r, 200)
    assert r.content == data
    assert_store_sound(b)


def test_sigkill_while_idle_keeps_every_piece(make_broker, user):
    """Pieces acknowledged (201) before a SIGKILL are all there after it:
    they were fsynced before the answer."""
    b = make_broker()
    u = user(b)
    data = pattern(8 * 64 * KIB, os.urandom(16))
    f = create_file(u, make_share(u), data, 64 * KIB)
    upload(u, f["file_id"], data, 64 * KIB)
    kill9(b)
    b.launch().wait_ready(START_TIMEOUT)
    assert {sha(p) for p in split(data, 64 * KIB)} <= set(stored_pieces(b))
    assert_store_sound(b)
    u.login()
    assert expect(u.http.get(f"/v1/files/{f['file_id']}/have"), 200)["complete"] is True


@pytest.fixture
def tiny_fs():
    """A 2 MiB tmpfs (root only); unmounted afterwards."""
    d = Path(tempfile.mkdtemp(prefix="shoal-tinyfs-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(d)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield d
    finally:
        r = subprocess.run(["umount", str(d)], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)
        os.rmdir(d)


def test_full_disk_507(tiny_fs, make_broker, user):
    b = make_broker(data_dir=str(tiny_fs / "data"))
    try:
        u = user(b)
        ps = 256 * KIB
        data = pattern(12 * ps, os.urandom(16))          # 3 MiB: more than the disk
        f = create_file(u, make_share(u), data, ps)
        fid = f["file_id"]
        pieces = split(data, ps)
        stored, full_at = [], None
        for n, blob in enumerate(pieces):               # bounded: 12 pieces
            path = f"/v1/files/{fid}/pieces/{n}"
            status, hdrs, body = put_continue(b, u.session_id, path, blob)
            expect(as_response(b, "PUT", path, status, hdrs, body), status)
            if status == 507:
                full_at = n
                err = expect(as_response(b, "PUT", path, status, hdrs, body), 507,
                             "insufficient_storage")
                assert "/" not in err["error"]["message"], "a path in the message"
                break
            assert status == 201, body
            stored.append(n)
        assert full_at is not None, "12 pieces of 256 KiB fit on a 2 MiB disk?"
        assert stored, "not even one piece fitted"

        # nothing partial: every stored piece is whole, nothing in tmp
        assert_store_sound(b)
        held = set(stored_pieces(b))
        assert sha(pieces[full_at]) not in held
        assert {sha(pieces[n]) for n in stored} <= held
        h = expect(u.http.get(f"/v1/files/{fid}/have"), 200)
        assert have_bits(h) == set(stored)

        # a piece held already is only hashed: it goes through on a full disk
        path = f"/v1/files/{fid}/pieces/{stored[0]}"
        status, hdrs, body = put_continue(b, u.session_id, path, pieces[stored[0]])
        expect(as_response(b, "PUT", path, status, hdrs, body), 200)
        # the same refusal again, and still nothing partial
        path = f"/v1/files/{fid}/pieces/{full_at}"
        status, hdrs, body = put_continue(b, u.session_id, path, pieces[full_at])
        expect(as_response(b, "PUT", path, status, hdrs, body), 507, "insufficient_storage")
        assert_store_sound(b)

        # deleting the file frees its pieces: a new piece fits again
        expect(u.http.delete(f"/v1/files/{fid}"), 200)
        assert stored_pieces(b) == {}
        g = create_file(u, make_share(u), pieces[full_at], ps)
        path = f"/v1/files/{g['file_id']}/pieces/0"
        status, hdrs, body = put_continue(b, u.session_id, path, pieces[full_at])
        expect(as_response(b, "PUT", path, status, hdrs, body), 201)
        assert_store_sound(b)
    finally:
        b.stop()


def test_full_disk_with_a_plain_client(tiny_fs, make_broker, user):
    """The same with requests, which sends the body at once: the 507 must
    still reach the client."""
    b = make_broker(data_dir=str(tiny_fs / "data"))
    try:
        u = user(b)
        ps = 256 * KIB
        data = pattern(12 * ps, os.urandom(16))
        f = create_file(u, make_share(u), data, ps)
        got = []
        for n, blob in enumerate(split(data, ps)):
            r = u.http.put(f"/v1/files/{f['file_id']}/pieces/{n}", data=blob)
            got.append(r.status_code)
            if r.status_code != 201:
                expect(r, 507, "insufficient_storage")
                break
        assert got[-1] == 507 and set(got[:-1]) == {201}, got
        assert_store_sound(b)
    finally:
        b.stop()


def test_stalled_upload_is_dropped(make_broker, user):
    """A client that sends half a piece and then nothing: request_timeout
    closes the connection and the temporary file goes with it."""
    b = make_broker(request_timeout="2s")
    u = user(b)
    data = pattern(2 * 64 * KIB, os.urandom(16))
    f = create_file(u, make_share(u), data, 64 * KIB)
    p0 = split(data, 64 * KIB)[0]
    with raw_connect(b) as s:
        s.sendall(raw_head(b, "PUT", f"/v1/files/{f['file_id']}/pieces/0",
                           {"Authorization": f"Bearer {u.session_id}",
                            "Content-Length": str(len(p0))}) + p0[:1000])
        wait_for(lambda: tmp_files(b), 5, "the temporary file of the upload")
        s.settimeout(10)
        t0 = time.monotonic()
        try:
            while s.recv(65536):              # whatever comes, until the close
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 9, "the stalled upload was not cut"
    wait_for(lambda: tmp_files(b) == [], 5, "the temporary file to go")
    assert sha(p0) not in stored_pieces(b)
    assert upload(u, f["file_id"], data, 64 * KIB) == [201, 201]
    assert_store_sound(b)
