"""Groups (/v1/groups): create, list, get, rename, replace members,
delete; visibility (404 for strangers, 403 for members); names stored
verbatim; bad bodies."""

import json
import threading

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import UUID_RE, expect, new_uuid, parse_time

NASTY_NAMES = [
    "it's \"quoted\"",
    "a; DROP TABLE groups; --",
    "' OR '1'='1",
    "%s %n \\x00 \\",
    "ünïcødé ✓ 家族 🐟",
    "x" * 255,
    "é" * 127,                  # 254 bytes
    " leading and trailing ",
]


def create(u, name, members=None):
    body = {"name": name}
    if members is not None:
        body["members"] = members
    return u.http.post("/v1/groups", json=body)


def make_group(u, name=None, members=None):
    return expect(create(u, name or "g-" + new_uuid(), members), 201)


# --- create, get, list ------------------------------------------------------


def test_create_returns_the_group(broker, user):
    a, b, c = user(), user(login=False), user(login=False)
    g = expect(create(a, "family", [c.user_id, b.user_id.upper(), b.user_id]), 201)
    assert UUID_RE.match(g["group_id"])
    assert g["name"] == "family"
    assert g["owner_id"] == a.user_id
    assert g["members"] == sorted([b.user_id, c.user_id])
    assert g["created_at"] == g["updated_at"]
    parse_time(g["created_at"])
    assert expect(a.http.get(f"/v1/groups/{g['group_id']}"), 200) == g
    assert expect(a.http.get(f"/v1/groups/{g['group_id'].upper()}"), 200) == g


def test_owner_is_not_implicitly_a_member(broker, user):
    a = user()
    g = make_group(a)
    assert g["members"] == []
    g = make_group(a, members=[a.user_id])
    assert g["members"] == [a.user_id]


def test_members_see_the_group_strangers_do_not(broker, user):
    a, b, stranger = user(), user(), user()
    g = make_group(a, members=[b.user_id])
    gid = g["group_id"]
    assert expect(b.http.get(f"/v1/groups/{gid}"), 200) == g
    expect(stranger.http.get(f"/v1/groups/{gid}"), 404, "not_found")
    expect(a.http.get(f"/v1/groups/{new_uuid()}"), 404, "not_found")
    # the 404 of a stranger is exactly that of an unknown id
    ghost = new_uuid()
    m1 = expect(stranger.http.get(f"/v1/groups/{gid}"), 404, "not_found")
    m2 = expect(stranger.http.get(f"/v1/groups/{ghost}"), 404, "not_found")
    assert m1["error"]["message"].replace(gid, "X") == m2["error"]["message"].replace(ghost, "X")


def test_list_holds_owned_and_member_groups_by_name(broker, user):
    a, b, c = user(), user(), user()
    g1 = make_group(a, "zebra")
    g2 = make_group(b, "Apple", members=[a.user_id])
    g3 = make_group(a, "apple")
    make_group(c, "other")                          # not a's
    make_group(b, "b-only")                         # a is not a member
    got = expect(a.http.get("/v1/groups"), 200)["groups"]
    assert [g["group_id"] for g in got] == [g2["group_id"], g3["group_id"], g1["group_id"]]
    assert got[0] == g2
    assert [g["name"] for g in expect(c.http.get("/v1/groups"), 200)["groups"]] == ["other"]


def test_list_is_empty_for_a_new_user(broker, user):
    assert expect(user().http.get("/v1/groups"), 200) == {"groups": []}


def test_same_name_for_two_owners_is_fine(broker, user):
    a, b = user(), user()
    make_group(a, "team")
    make_group(b, "team")


def test_duplicate_name_409(broker, user):
    a = user()
    make_group(a, "dup")
    expect(create(a, "dup"), 409, "already_exists")
    expect(create(a, "Dup"), 201)                   # names are case-sensitive


@pytest.mark.parametrize("name", NASTY_NAMES, ids=range(len(NASTY_NAMES)))
def test_names_are_stored_verbatim(broker, user, name):
    a = user()
    g = make_group(a, name)
    assert g["name"] == name
    assert expect(a.http.get(f"/v1/groups/{g['group_id']}"), 200)["name"] == name
    assert [x["name"] for x in expect(a.http.get("/v1/groups"), 200)["groups"]] == [name]
    expect(create(a, name), 409, "already_exists")


# --- bad bodies --------------------------------------------------------------

BAD_NAMES = ["", "x" * 256, "é" * 128, "a\nb", "tab\there", "nul\u0000", "del\u007f",
             "\u001b[31m", 5, None, ["x"], {"a": 1}, True]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_names_400(broker, user, name):
    code = "invalid_request"           # "\u0000" is valid JSON, but not a name
    a = user()
    expect(a.http.post("/v1/groups", json={"name": name}), 400, code)
    g = make_group(a)
    expect(a.http.put(f"/v1/groups/{g['group_id']}", json={"name": name}), 400, code)
    assert expect(a.http.get("/v1/groups"), 200)["groups"] == [g]


@pytest.mark.parametrize("body", [
    {},
    {"members": []},
    {"name": "x", "members": "not-a-list"},
    {"name": "x", "members": [5]},
    {"name": "x", "members": [None]},
    {"name": "x", "members": ["not-a-uuid"]},
    {"name": "x", "members": ["12345678-1234-1234-1234-123456789abc' --"]},
    {"name": "x", "members": None},
    {"name": "x", "owner_id": "25ce141b-7c2b-4f65-a702-4d170590a3cc"},
    {"name": "x", "extra": 1},
], ids=range(10))
def test_bad_bodies_400(broker, user, body):
    a = user()
    expect(a.http.post("/v1/groups", json=body), 400, "invalid_request")
    assert expect(a.http.get("/v1/groups"), 200)["groups"] == []


def test_not_json_400(broker, user):
    a = user()
    r = a.http.post("/v1/groups", data=b"{name:", headers={"Content-Type": "application/json"})
    expect(r, 400, "malformed_json")
    expect(a.http.post("/v1/groups", json=["name"]), 400, "invalid_request")


def test_too_many_members_400(broker, user):
    a = user()
    body = expect(create(a, "big", [new_uuid() for _ in range(1001)]), 400, "invalid_request")
    assert "1000" in body["error"]["message"]


def test_a_thousand_entries_that_collapse(broker, user):
    a, b = user(), user(login=False)
    g = expect(create(a, "one", [b.user_id] * 1000), 201)
    assert g["members"] == [b.user_id]


def test_unknown_member_404_names_it(broker, user):
    a, b = user(), user(login=False)
    ghost = new_uuid()
    body = expect(create(a, "ghosts", [b.user_id, ghost]), 404, "not_found")
    assert ghost in body["error"]["message"]
    # nothing was created
    assert expect(a.http.get("/v1/groups"), 200)["groups"] == []
    make_group(a, "ghosts", [b.user_id])


def test_unauthenticated_400_and_bad_session_403(broker, user):
    expect(broker.api.post("/v1/groups", json={"name": "x"}), 400, "session_missing")
    expect(broker.api.get("/v1/groups"), 400, "session_missing")
    s = broker.session(token=new_uuid())
    expect(s.get("/v1/groups"), 403, "session_unknown")
    expect(s.get(f"/v1/groups/{new_uuid()}"), 403, "session_unknown")


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "%27%20OR%201%3D1--"])
def test_bad_ids_400(broker, user, bad):
    a = user()
    expect(a.http.get(f"/v1/groups/{bad}"), 400, "invalid_request")
    expect(a.http.put(f"/v1/groups/{bad}", json={"name": "x"}), 400, "invalid_request")
    expect(a.http.delete(f"/v1/groups/{bad}"), 400, "invalid_request")


# --- update ------------------------------------------------------------------


def test_owner_renames_and_replaces_members(broker, user):
    a, b, c = user(), user(login=False), user(login=False)
    g = make_group(a, "before", [b.user_id])
    gid = g["group_id"]
    g2 = expect(a.http.put(f"/v1/groups/{gid}", json={"name": "after"}), 200)
    assert g2["name"] == "after" and g2["members"] == [b.user_id]
    assert parse_time(g2["updated_at"]) >= parse_time(g["updated_at"])
    g3 = expect(a.http.put(f"/v1/groups/{gid}", json={"members": [c.user_id]}), 200)
    assert g3["name"] == "after" and g3["members"] == [c.user_id]
    g4 = expect(a.http.put(f"/v1/groups/{gid}", json={"name": "both", "members": []}), 200)
    assert g4["name"] == "both" and g4["members"] == []
    g5 = expect(a.http.put(f"/v1/groups/{gid}", json={}), 200)
    assert g5["name"] == "both" and g5["members"] == []
    assert g5["created_at"] == g["created_at"]
    assert expect(a.http.get(f"/v1/groups/{gid}"), 200) == g5
    # renaming to its own name is not a conflict
    expect(a.http.put(f"/v1/groups/{gid}", json={"name": "both"}), 200)


def test_rename_to_a_taken_name_409(broker, user):
    a = user()
    make_group(a, "taken")
    g = make_group(a, "free")
    expect(a.http.put(f"/v1/groups/{g['group_id']}", json={"name": "taken"}), 409,
           "already_exists")
    assert expect(a.http.get(f"/v1/groups/{g['group_id']}"), 200)["name"] == "free"


def test_update_with_unknown_member_changes_nothing(broker, user):
    a, b = user(), user(login=False)
    g = make_group(a, "keep", [b.user_id])
    ghost = new_uuid()
    body = expect(a.http.put(f"/v1/groups/{g['group_id']}",
                             json={"name": "renamed", "members": [ghost]}), 404, "not_found")
    assert ghost in body["error"]["message"]
    assert expect(a.http.get(f"/v1/groups/{g['group_id']}"), 200) == g


def test_members_get_403_strangers_404_on_changes(broker, user):
    a, b, stranger = user(), user(), user()
    g = make_group(a, "mine", [b.user_id])
    gid = g["group_id"]
    expect(b.http.put(f"/v1/groups/{gid}", json={"name": "theirs"}), 403, "forbidden")
    expect(b.http.put(f"/v1/groups/{gid}", json={"members": [b.user_id, stranger.user_id]}),
           403, "forbidden")
    expect(b.http.delete(f"/v1/groups/{gid}"), 403, "forbidden")
    expect(stranger.http.put(f"/v1/groups/{gid}", json={"name": "theirs"}), 404, "not_found")
    expect(stranger.http.delete(f"/v1/groups/{gid}"), 404, "not_found")
    expect(a.http.put(f"/v1/groups/{new_uuid()}", json={"name": "x"}), 404, "not_found")
    assert expect(a.http.get(f"/v1/groups/{gid}"), 200) == g


def test_removed_member_loses_sight(broker, user):
    a, b = user(), user()
    g = make_group(a, "shrinking", [b.user_id])
    expect(b.http.get(f"/v1/groups/{g['group_id']}"), 200)
    expect(a.http.put(f"/v1/groups/{g['group_id']}", json={"members": []}), 200)
    expect(b.http.get(f"/v1/groups/{g['group_id']}"), 404, "not_found")
    assert expect(b.http.get("/v1/groups"), 200)["groups"] == []


# --- delete ------------------------------------------------------------------


def test_owner_deletes(broker, user):
    a, b = user(), user()
    g = make_group(a, "gone", [b.user_id])
    gid = g["group_id"]
    assert expect(a.http.delete(f"/v1/groups/{gid}"), 200) == {"group_id": gid, "deleted": True}
    expect(a.http.get(f"/v1/groups/{gid}"), 404, "not_found")
    expect(b.http.get(f"/v1/groups/{gid}"), 404, "not_found")
    expect(a.http.delete(f"/v1/groups/{gid}"), 404, "not_found")
    # the name is free again
    make_group(a, "gone")


# --- concurrency -------------------------------------------------------------


def test_concurrent_member_replacements(broker, user):
    a = user()
    others = [user(login=False) for _ in range(6)]
    g = make_group(a, "busy")
    lists = [[o.user_id for o in others[:k]] for k in range(1, 7)]
    results = []

    def put(members):
        s = broker.session(token=a.session_id)
        r = s.put(f"/v1/groups/{g['group_id']}", json={"members": members})
        results.append((r.status_code, r.text))
        s.close()

    threads = [threading.Thread(target=put, args=(m,)) for m in lists * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(code == 200 for code, _ in results), results
    final = expect(a.http.get(f"/v1/groups/{g['group_id']}"), 200)["members"]
    assert final in [sorted(m) for m in lists]
    assert all(json.loads(text)["members"] in [sorted(m) for m in lists] for _, text in results)


def test_no_500_in_this_module(broker):
    bad = [r for r in broker.responses if r[2] >= 500]
    assert not bad, bad[:3]
