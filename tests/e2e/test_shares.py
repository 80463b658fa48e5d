"""Shares (/v1/shares) and their access lists: create, list, get, rename,
delete; grants to users and groups, read and write; the visibility rule
(404 for whoever may not read, 403 for readers and writers doing what only
the owner may); names verbatim; bad bodies; 'used' and 'not_empty' with
files written straight into the database."""

import threading

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from filekit import add_file
from helpers import UUID_RE, expect, new_uuid, parse_time

EMPTY_ACL = {"read": {"users": [], "groups": []}, "write": {"users": [], "groups": []}}


def create(u, name):
    return u.http.post("/v1/shares", json={"name": name})


def make_share(u, name=None):
    return expect(create(u, name or "s-" + new_uuid()), 201)


def acl(read_users=(), read_groups=(), write_users=(), write_groups=()):
    return {"read": {"users": list(read_users), "groups": list(read_groups)},
            "write": {"users": list(write_users), "groups": list(write_groups)}}


def put_acl(u, share_id, body):
    return u.http.put(f"/v1/shares/{share_id}/acl", json=body)


def make_group(u, members):
    return expect(u.http.post("/v1/groups", json={"name": "g-" + new_uuid(),
                                                  "members": members}), 201)["group_id"]


# --- create, get, list ------------------------------------------------------


def test_create_returns_the_share(broker, user):
    a = user()
    s = expect(create(a, "photos"), 201)
    assert UUID_RE.match(s["share_id"])
    assert s["name"] == "photos"
    assert s["owner_id"] == a.user_id
    assert s["allocation"] is None
    assert s["used"] == 0
    assert s["access"] == "owner"
    assert s["acl"] == EMPTY_ACL
    assert s["created_at"] == s["updated_at"]
    parse_time(s["created_at"])
    assert expect(a.http.get(f"/v1/shares/{s['share_id']}"), 200) == s
    assert expect(a.http.get(f"/v1/shares/{s['share_id'].upper()}"), 200) == s


def test_duplicate_name_409_other_owner_fine(broker, user):
    a, b = user(), user()
    make_share(a, "docs")
    expect(create(a, "docs"), 409, "already_exists")
    make_share(b, "docs")
    make_share(a, "Docs")


NASTY_NAMES = ["it's \"quoted\"", "x'; DELETE FROM shares; --", "a;b;c", "\\", "%00",
               "ünïcødé ✓ 写真 🐟", "y" * 255, " spaced "]


@pytest.mark.parametrize("name", NASTY_NAMES, ids=range(len(NASTY_NAMES)))
def test_names_are_stored_verbatim(broker, user, name):
    a = user()
    s = make_share(a, name)
    assert s["name"] == name
    assert expect(a.http.get(f"/v1/shares/{s['share_id']}"), 200)["name"] == name
    assert [x["name"] for x in expect(a.http.get("/v1/shares"), 200)["shares"]] == [name]
    expect(create(a, name), 409, "already_exists")


BAD_NAMES = ["", "x" * 256, "é" * 128, "line\nbreak", "\t", "\u007f", "\u001f",
             7, None, [], {}, False]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_names_400(broker, user, name):
    a = user()
    expect(a.http.post("/v1/shares", json={"name": name}), 400, "invalid_request")
    s = make_share(a)
    expect(a.http.put(f"/v1/shares/{s['share_id']}", json={"name": name}), 400,
           "invalid_request")
    assert expect(a.http.get("/v1/shares"), 200)["shares"] == [s]


@pytest.mark.parametrize("body", [{}, {"name": "x", "owner_id": new_uuid()},
                                  {"name": "x", "allocation": 5}, {"nom": "x"}])
def test_bad_create_bodies_400(broker, user, body):
    a = user()
    expect(a.http.post("/v1/shares", json=body), 400, "invalid_request")
    assert expect(a.http.get("/v1/shares"), 200)["shares"] == []


def test_not_json_400(broker, user):
    a = user()
    r = a.http.post("/v1/shares", data=b"name=x", headers={"Content-Type": "application/json"})
    expect(r, 400, "malformed_json")
    r = a.http.post("/v1/shares", data=b"{}", headers={"Content-Type": "text/plain"})
    expect(r, 415, "unsupported_media_type")


def test_session_needed(broker):
    expect(broker.api.get("/v1/shares"), 400, "session_missing")
    expect(broker.api.post("/v1/shares", json={"name": "x"}), 400, "session_missing")
    s = broker.session(token=new_uuid())
    expect(s.get(f"/v1/shares/{new_uuid()}"), 403, "session_unknown")
    expect(s.put(f"/v1/shares/{new_uuid()}/acl", json=EMPTY_ACL), 403, "session_unknown")


@pytest.mark.parametrize("bad", ["not-a-uuid", "42", "%27--"])
def test_bad_ids_400(broker, user, bad):
    a = user()
    expect(a.http.get(f"/v1/shares/{bad}"), 400, "invalid_request")
    expect(a.http.put(f"/v1/shares/{bad}", json={"name": "x"}), 400, "invalid_request")
    expect(a.http.delete(f"/v1/shares/{bad}"), 400, "invalid_request")
    expect(put_acl(a, bad, EMPTY_ACL), 400, "invalid_request")


def test_list_only_shows_readable_shares(broker, user):
    a, b, c = user(), user(), user()
    mine = make_share(a, "b-mine")
    theirs = make_share(b, "a-theirs")
    hidden = make_share(b, "hidden")
    via_group = make_share(c, "c-group")
    expect(put_acl(b, theirs["share_id"], acl(read_users=[a.user_id])), 200)
    gid = make_group(c, [a.user_id])
    expect(put_acl(c, via_group["share_id"], acl(write_groups=[gid])), 200)
    got = expect(a.http.get("/v1/shares"), 200)["shares"]
    assert [(s["share_id"], s["access"]) for s in got] == [
        (theirs["share_id"], "read"), (mine["share_id"], "owner"),
        (via_group["share_id"], "write")]
    # the ACL is the owner's business
    assert [s["acl"] for s in got] == [None, EMPTY_ACL, None]
    assert hidden["share_id"] not in [s["share_id"] for s in got]
    assert [s["share_id"] for s in expect(b.http.get("/v1/shares"), 200)["shares"]] == \
        [theirs["share_id"], hidden["share_id"]]


def test_list_is_empty_for_a_new_user(broker, user):
    assert expect(user().http.get("/v1/shares"), 200) == {"shares": []}


# --- rename and delete -------------------------------------------------------


def test_owner_renames(broker, user):
    a = user()
    s = make_share(a, "old")
    make_share(a, "taken")
    r = expect(a.http.put(f"/v1/shares/{s['share_id']}", json={"name": "new"}), 200)
    assert r["name"] == "new" and r["share_id"] == s["share_id"]
    assert parse_time(r["updated_at"]) >= parse_time(s["updated_at"])
    expect(a.http.put(f"/v1/shares/{s['share_id']}", json={"name": "new"}), 200)
    expect(a.http.put(f"/v1/shares/{s['share_id']}", json={"name": "taken"}), 409,
           "already_exists")
    expect(a.http.put(f"/v1/shares/{s['share_id']}", json={}), 400, "invalid_request")
    expect(a.http.put(f"/v1/shares/{s['share_id']}", json={"name": "x", "acl": None}), 400,
           "invalid_request")
    assert expect(a.http.get(f"/v1/shares/{s['share_id']}"), 200)["name"] == "new"
    make_share(a, "old")                        # the old name is free


def test_owner_deletes(broker, user):
    a, b = user(), user()
    s = make_share(a, "bye")
    expect(put_acl(a, s["share_id"], acl(read_users=[b.user_id])), 200)
    assert expect(a.http.delete(f"/v1/shares/{s['share_id']}"), 200) == \
        {"share_id": s["share_id"], "deleted": True}
    for u in (a, b):
        expect(u.http.get(f"/v1/shares/{s['share_id']}"), 404, "not_found")
    expect(a.http.delete(f"/v1/shares/{s['share_id']}"), 404, "not_found")
    assert expect(b.http.get("/v1/shares"), 200)["shares"] == []
    make_share(a, "bye")


# --- visibility --------------------------------------------------------------


def test_stranger_gets_404_everywhere(broker, user):
    a, stranger = user(), user()
    s = make_share(a)
    sid = s["share_id"]
    ghost = new_uuid()
    pairs = [
        (stranger.http.get(f"/v1/shares/{sid}"), stranger.http.get(f"/v1/shares/{ghost}")),
        (stranger.http.put(f"/v1/shares/{sid}", json={"name": "mine"}),
         stranger.http.put(f"/v1/shares/{ghost}", json={"name": "mine"})),
        (stranger.http.delete(f"/v1/shares/{sid}"), stranger.http.delete(f"/v1/shares/{ghost}")),
        (put_acl(stranger, sid, acl(read_users=[stranger.user_id])),
         put_acl(stranger, ghost, acl(read_users=[stranger.user_id]))),
    ]
    for real, unknown in pairs:
        m1 = expect(real, 404, "not_found")["error"]["message"]
        m2 = expect(unknown, 404, "not_found")["error"]["message"]
        assert m1.replace(sid, "X") == m2.replace(ghost, "X")
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200) == s


@pytest.mark.parametrize("perm", ["read", "write"])
def test_reader_and_writer_get_403_for_owner_things(broker, user, perm):
    a, b = user(), user()
    s = make_share(a)
    sid = s["share_id"]
    grant = acl(read_users=[b.user_id]) if perm == "read" else acl(write_users=[b.user_id])
    s = expect(put_acl(a, sid, grant), 200)
    seen = expect(b.http.get(f"/v1/shares/{sid}"), 200)
    assert seen["access"] == perm and seen["acl"] is None
    assert {k: v for k, v in seen.items() if k not in ("access", "acl")} == \
        {k: v for k, v in s.items() if k not in ("access", "acl")}
    expect(b.http.put(f"/v1/shares/{sid}", json={"name": "pwned"}), 403, "forbidden")
    expect(put_acl(b, sid, acl(write_users=[b.user_id])), 403, "forbidden")
    expect(b.http.delete(f"/v1/shares/{sid}"), 403, "forbidden")
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200) == s


# --- ACLs --------------------------------------------------------------------


def test_acl_grants_via_users_and_groups(broker, user):
    a, r1, w1, gr, gw, other = user(), user(), user(), user(), user(), user()
    s = make_share(a)
    sid = s["share_id"]
    g_read = make_group(a, [gr.user_id])
    g_write = make_group(a, [gw.user_id])
    body = acl(read_users=[r1.user_id], read_groups=[g_read],
               write_users=[w1.user_id], write_groups=[g_write])
    got = expect(put_acl(a, sid, body), 200)
    assert got["acl"] == body
    assert got["access"] == "owner"
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["acl"] == body
    for u, want in ((r1, "read"), (gr, "read"), (w1, "write"), (gw, "write")):
        assert expect(u.http.get(f"/v1/shares/{sid}"), 200)["access"] == want
    expect(other.http.get(f"/v1/shares/{sid}"), 404, "not_found")


def test_acl_replaces_the_whole_list(broker, user):
    a, b, c = user(), user(), user()
    sid = make_share(a)["share_id"]
    expect(put_acl(a, sid, acl(read_users=[b.user_id])), 200)
    expect(b.http.get(f"/v1/shares/{sid}"), 200)
    got = expect(put_acl(a, sid, acl(write_users=[c.user_id])), 200)
    assert got["acl"] == acl(write_users=[c.user_id])
    expect(b.http.get(f"/v1/shares/{sid}"), 404, "not_found")
    assert expect(put_acl(a, sid, EMPTY_ACL), 200)["acl"] == EMPTY_ACL
    expect(c.http.get(f"/v1/shares/{sid}"), 404, "not_found")


def test_acl_normalises(broker, user):
    a, b, c, d = user(), user(login=False), user(login=False), user(login=False)
    sid = make_share(a)["share_id"]
    g = make_group(a, [])
    body = acl(read_users=[c.user_id, b.user_id.upper(), b.user_id, a.user_id, d.user_id],
               write_users=[d.user_id, a.user_id.upper()],
               read_groups=[g.upper(), g], write_groups=[g])
    got = expect(put_acl(a, sid, body), 200)["acl"]
    # sorted, lowercase, no duplicates, no owner; write wins over read
    assert got == acl(read_users=sorted([b.user_id, c.user_id]), write_users=[d.user_id],
                      write_groups=[g])
    # the reply is a valid request that changes nothing
    assert expect(put_acl(a, sid, got), 200)["acl"] == got


def test_group_membership_change_takes_effect_at_once(broker, user):
    a, b = user(), user()
    sid = make_share(a)["share_id"]
    gid = make_group(a, [b.user_id])
    expect(put_acl(a, sid, acl(read_groups=[gid])), 200)
    assert expect(b.http.get(f"/v1/shares/{sid}"), 200)["access"] == "read"
    expect(a.http.put(f"/v1/groups/{gid}", json={"members": []}), 200)
    expect(b.http.get(f"/v1/shares/{sid}"), 404, "not_found")
    assert expect(b.http.get("/v1/shares"), 200)["shares"] == []
    expect(a.http.put(f"/v1/groups/{gid}", json={"members": [b.user_id]}), 200)
    assert expect(b.http.get(f"/v1/shares/{sid}"), 200)["access"] == "read"
    # a group in both lists, and a direct grant: the best wins
    expect(put_acl(a, sid, acl(read_users=[b.user_id], write_groups=[gid])), 200)
    assert expect(b.http.get(f"/v1/shares/{sid}"), 200)["access"] == "write"
    # deleting the group drops its entries
    expect(a.http.delete(f"/v1/groups/{gid}"), 200)
    assert expect(b.http.get(f"/v1/shares/{sid}"), 200)["access"] == "read"
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["acl"] == acl(read_users=[b.user_id])


def test_group_the_owner_belongs_to_may_be_granted(broker, user):
    a, b, c = user(), user(), user()
    gid = make_group(b, [a.user_id, c.user_id])        # b's group, a is a member
    sid = make_share(a)["share_id"]
    expect(put_acl(a, sid, acl(read_groups=[gid])), 200)
    assert expect(c.http.get(f"/v1/shares/{sid}"), 200)["access"] == "read"


def test_unknown_or_unseen_ids_404_and_nothing_changes(broker, user):
    a, b, c = user(), user(), user()
    sid = make_share(a)["share_id"]
    before = expect(put_acl(a, sid, acl(read_users=[b.user_id])), 200)
    ghost = new_uuid()
    body = expect(put_acl(a, sid, acl(read_users=[c.user_id], write_users=[ghost])), 404,
                  "not_found")
    assert ghost in body["error"]["message"]
    body = expect(put_acl(a, sid, acl(read_groups=[ghost])), 404, "not_found")
    assert ghost in body["error"]["message"]
    # a group a neither owns nor belongs to is unknown to a
    hidden = make_group(c, [b.user_id])
    body = expect(put_acl(a, sid, acl(read_groups=[hidden])), 404, "not_found")
    assert hidden in body["error"]["message"]
    # a user id is not a group id, nor the other way round
    expect(put_acl(a, sid, acl(read_groups=[b.user_id])), 404, "not_found")
    g = make_group(a, [])
    expect(put_acl(a, sid, acl(read_users=[g])), 404, "not_found")
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200) == before


BAD_ACLS = [
    {},
    {"read": {"users": [], "groups": []}},
    {"write": {"users": [], "groups": []}},
    {"read": {"users": []}, "write": {"users": [], "groups": []}},
    {"read": {"users": [], "groups": []}, "write": {"groups": []}},
    {"read": None, "write": {"users": [], "groups": []}},
    {"read": [], "write": {"users": [], "groups": []}},
    {"read": {"users": "x", "groups": []}, "write": {"users": [], "groups": []}},
    {"read": {"users": [1], "groups": []}, "write": {"users": [], "groups": []}},
    {"read": {"users": ["nope"], "groups": []}, "write": {"users": [], "groups": []}},
    {"read": {"users": [], "groups": [None]}, "write": {"users": [], "groups": []}},
    {"read": {"users": [], "groups": ["' OR 1=1 --"]}, "write": {"users": [], "groups": []}},
    {"read": {"users": [], "groups": [], "x": 1}, "write": {"users": [], "groups": []}},
    {"read": {"users": [], "groups": []}, "write": {"users": [], "groups": []}, "admin": []},
    {"read": {"users": [], "groups": []}, "write": True},
]


@pytest.mark.parametrize("body", BAD_ACLS, ids=range(len(BAD_ACLS)))
def test_bad_acl_bodies_400(broker, user, body):
    a, b = user(), user(login=False)
    sid = make_share(a)["share_id"]
    before = expect(put_acl(a, sid, acl(read_users=[b.user_id])), 200)
    expect(put_acl(a, sid, body), 400, "invalid_request")
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200) == before


def test_acl_bounded_to_1000_entries(broker, user):
    a, b = user(), user(login=False)
    sid = make_share(a)["share_id"]
    expect(put_acl(a, sid, acl(read_users=[new_uuid() for _ in range(1001)])), 400,
           "invalid_request")
    expect(put_acl(a, sid, acl(read_users=[new_uuid() for _ in range(600)],
                               write_users=[new_uuid() for _ in range(401)])), 400,
           "invalid_request")
    # 1000 entries (duplicates of one user) are fine
    got = expect(put_acl(a, sid, acl(read_users=[b.user_id] * 500,
                                     write_users=[b.user_id] * 500)), 200)
    assert got["acl"] == acl(write_users=[b.user_id])


def test_concurrent_acl_replacements(broker, user):
    a = user()
    others = [user(login=False) for _ in range(5)]
    sid = make_share(a)["share_id"]
    bodies = [acl(read_users=[o.user_id for o in others[:k]]) for k in range(1, 6)]
    results = []

    def put(body):
        s = broker.session(token=a.session_id)
        results.append(s.put(f"/v1/shares/{sid}/acl", json=body).status_code)
        s.close()

    threads = [threading.Thread(target=put, args=(b,)) for b in bodies * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * len(threads)
    final = expect(a.http.get(f"/v1/shares/{sid}"), 200)["acl"]
    assert final in [acl(read_users=sorted(b["read"]["users"])) for b in bodies]


def test_acl_put_racing_a_group_deletion(broker, user):
    a, b = user(), user(login=False)
    sid = make_share(a)["share_id"]
    codes = []
    for _ in range(15):
        gid = make_group(a, [b.user_id])
        expect(put_acl(a, sid, acl(read_groups=[gid])), 200)
        s1, s2 = broker.session(token=a.session_id), broker.session(token=a.session_id)
        t1 = threading.Thread(target=lambda: codes.append(
            s1.put(f"/v1/shares/{sid}/acl", json=acl(write_groups=[gid])).status_code))
        t2 = threading.Thread(target=lambda: codes.append(
            s2.delete(f"/v1/groups/{gid}").status_code))
        t1.start()
        t2.start()
        t1.join(30)
        t2.join(30)
        s1.close()
        s2.close()
        got = expect(a.http.get(f"/v1/shares/{sid}"), 200)["acl"]
        assert got == EMPTY_ACL, got             # the group is gone either way
    assert set(codes) <= {200, 404}, codes


# --- files: used, not_empty ---------------------------------------------------


def test_used_counts_every_version_of_live_files(broker, user):
    a, w = user(), user()
    s = make_share(a)
    sid = s["share_id"]
    expect(put_acl(a, sid, acl(write_users=[w.user_id])), 200)
    add_file(broker, sid, a.user_id, [100, 200])
    add_file(broker, sid, w.user_id, [7])
    add_file(broker, sid, a.user_id, [5000], deleted=True)
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["used"] == 307
    assert expect(w.http.get(f"/v1/shares/{sid}"), 200)["used"] == 307
    assert [x["used"] for x in expect(a.http.get("/v1/shares"), 200)["shares"]] == [307]


def test_delete_refused_while_live_files_remain(broker, user):
    a = user()
    sid = make_share(a)["share_id"]
    fid = add_file(broker, sid, a.user_id, [10])
    add_file(broker, sid, a.user_id, [10], deleted=True)
    body = expect(a.http.delete(f"/v1/shares/{sid}"), 409, "not_empty")
    assert sid in body["error"]["message"]
    assert expect(a.http.get(f"/v1/shares/{sid}"), 200)["used"] == 10
    # once its files are deleted the share goes, deleted files with it
    broker.pg.psql(broker.dbname, f"UPDATE files SET deleted_at = now() WHERE file_id = '{fid}'")
    expect(a.http.delete(f"/v1/shares/{sid}"), 200)
    expect(a.http.get(f"/v1/shares/{sid}"), 404, "not_found")
    assert broker.pg.psql(broker.dbname,
                          f"SELECT count(*) FROM files WHERE share_id = '{sid}'").strip() == "0"


def test_no_500_in_this_module(broker):
    bad = [r for r in broker.responses if r[2] >= 500]
    assert not bad, bad[:3]
