"""The inner circle check with a file: GET /v1/sessions/{sid}?ip=…&file=…
also says whether the session's user may read that file (owner, ACL,
group), without telling anyone about a file nobody involved may read."""

import pytest

from filekit import add_file, create_file, grant, make_share, pattern
from helpers import expect, make_user, new_uuid, wait_until

IP = "127.0.0.1"


def check(asker, target, fid, ip=IP, status=200, code=None):
    """asker (a serving peer) asks about target's session and file fid."""
    r = asker.http.get(f"/v1/sessions/{target.session_id}", params={"ip": ip, "file": fid})
    return expect(r, status, code)


@pytest.fixture
def world(user):
    """owner's file in a share read by 'reader', written by 'writer', read by
    the members of a group ('member'); 'peer' and 'stranger' have no access."""
    w = {n: user() for n in ("owner", "reader", "writer", "member", "peer", "stranger")}
    group = expect(w["owner"].http.post("/v1/groups", json={
        "name": "g-" + new_uuid(), "members": [w["member"].user_id]}), 201)
    share = make_share(w["owner"])
    expect(w["owner"].http.put(f"/v1/shares/{share}/acl", json={
        "read": {"users": [w["reader"].user_id], "groups": [group["group_id"]]},
        "write": {"users": [w["writer"].user_id], "groups": []}}), 200)
    w["share"], w["group"] = share, group["group_id"]
    w["fid"] = create_file(w["owner"], share, pattern(1000, b"sf"))["file_id"]
    return w


def test_readers_get_200_with_their_access(world):
    w, fid = world, world["fid"]
    for name, access in (("owner", "owner"), ("reader", "read"), ("writer", "write"),
                         ("member", "read")):
        body = check(w["peer"], w[name], fid)
        assert body["user_id"] == w[name].user_id
        assert (body["file_id"], body["access"]) == (fid, access)
        assert set(body) == {"session_id", "user_id", "public_key", "ip", "expires_at",
                             "file_id", "access"}
    # the file id in any case; answered in lowercase
    assert check(w["peer"], w["reader"], fid.upper())["file_id"] == fid
    # a session may ask about itself
    assert check(w["reader"], w["reader"], fid)["access"] == "read"


def test_without_file_nothing_about_files(world):
    w = world
    r = w["peer"].http.get(f"/v1/sessions/{w['reader'].session_id}", params={"ip": IP})
    assert set(expect(r, 200)) == {"session_id", "user_id", "public_key", "ip", "expires_at"}


def test_no_read_access(world):
    w, fid = world, world["fid"]
    # neither the asker nor the session's user may read it: as if it did not exist
    msg = check(w["peer"], w["stranger"], fid, status=404, code="not_found")["error"]["message"]
    assert msg == f"file '{fid}' not found"
    # the asker may read it, the session's user may not: 403
    for asker in ("owner", "reader", "member"):
        msg = check(w[asker], w["stranger"], fid, status=403,
                    code="forbidden")["error"]["message"]
        assert w["stranger"].user_id in msg and fid in msg


def test_unknown_file_404(world):
    w = world
    fid = new_uuid()
    msg = check(w["peer"], w["reader"], fid, status=404, code="not_found")["error"]["message"]
    assert fid in msg
    check(w["owner"], w["owner"], fid, status=404, code="not_found")


def test_deleted_file(world, broker):
    w, fid = world, world["fid"]
    expect(w["owner"].http.delete(f"/v1/files/{fid}"), 200)
    # 410 when the asker or the session's user may read the share
    check(w["peer"], w["reader"], fid, status=410, code="gone")
    check(w["reader"], w["stranger"], fid, status=410, code="gone")
    check(w["owner"], w["owner"], fid, status=410, code="gone")
    # 404 when neither may
    check(w["peer"], w["stranger"], fid, status=404, code="not_found")
    gone = add_file(broker, w["share"], w["owner"].user_id, [10], deleted=True)
    check(w["peer"], w["member"], gone, status=410, code="gone")


def test_access_changes_apply_at_once(world):
    w, fid = world, world["fid"]
    assert check(w["peer"], w["reader"], fid)["access"] == "read"
    assert check(w["peer"], w["member"], fid)["access"] == "read"
    grant(w["owner"], w["share"], read=[w["peer"]])           # reader and group gone
    check(w["peer"], w["reader"], fid, status=403, code="forbidden")
    check(w["peer"], w["member"], fid, status=403, code="forbidden")
    assert check(w["reader"], w["peer"], fid)["access"] == "read"
    grant(w["owner"], w["share"], write=[w["reader"]])
    assert check(w["peer"], w["reader"], fid)["access"] == "write"


def test_group_membership_changes_apply_at_once(world):
    w, fid, gid = world, world["fid"], world["group"]
    assert check(w["owner"], w["member"], fid)["access"] == "read"
    expect(w["owner"].http.put(f"/v1/groups/{gid}", json={"members": []}), 200)
    check(w["owner"], w["member"], fid, status=403, code="forbidden")


@pytest.mark.parametrize("bad", ["", "x", "not-a-uuid", "1234", new_uuid()[:-1] + "g",
                                 new_uuid() + "0", "' OR 1=1 --"])
def test_bad_file_400(world, bad):
    w = world
    r = w["peer"].http.get(f"/v1/sessions/{w['reader'].session_id}",
                           params={"ip": IP, "file": bad})
    assert "file" in expect(r, 400, "invalid_request")["error"]["message"]


def test_session_answers_come_first(world, user):
    w, fid = world, world["fid"]
    peer = w["peer"]
    # unknown session, with an unknown file or one nobody may read: the session's 404
    r = peer.http.get(f"/v1/sessions/{new_uuid()}", params={"ip": IP, "file": fid})
    assert "session" in expect(r, 404, "not_found")["error"]["message"]
    # bound to another address: 409, whatever the file
    check(peer, w["stranger"], new_uuid(), ip="127.0.0.2", status=409, code="ip_mismatch")
    check(peer, w["reader"], fid, ip="127.0.0.2", status=409, code="ip_mismatch")
    # a revoked session: 404
    sid, _ = w["reader"].new_session()
    expect(w["reader"].http.delete(f"/v1/sessions/{sid}"), 200)
    r = peer.http.get(f"/v1/sessions/{sid}", params={"ip": IP, "file": fid})
    expect(r, 404, "not_found")


def test_expired_session_410_before_the_file(make_broker):
    b = make_broker(session_ttl="2s")
    owner = make_user(b)
    fid = create_file(owner, make_share(owner), b"abc")["file_id"]
    target = make_user(b)

    def expired():
        asker = make_user(b)
        r = asker.http.get(f"/v1/sessions/{target.session_id}",
                           params={"ip": IP, "file": fid})
        return r.status_code == 410 and expect(r, 410, "gone")
    body = wait_until(expired, timeout=8, interval=0.3, what="the session to expire")
    assert "session" in body["error"]["message"]
