"""Bad-source reports: POST /v1/files/{id}/reports (a reader of the file
says which source sent a piece that failed its hash check), GET
/v1/reports (the admin's listing), and every bad input, which stores
nothing."""

import pytest

from filekit import KIB, add_file, create_file, grant, make_share, pattern
from helpers import expect, new_uuid, parse_time

PS = 16 * KIB
URL = "http://127.0.0.1:7070"


def ten_piece_file(u, share=None):
    share = share or make_share(u)
    data = pattern(9 * PS + 100, b"r" + new_uuid().encode())
    return create_file(u, share, data, PS)["file_id"]


def body(url=URL, piece=3, version=1, reason="sent piece 3, which failed its hash check",
         **extra):
    return {"url": url, "piece": piece, "version": version, "reason": reason, **extra}


def report(u, fid, status=201, code=None, **kw):
    return expect(u.http.post(f"/v1/files/{fid}/reports", json=body(**kw)), status, code)


def listing(broker, status=200, code=None, **params):
    return expect(broker.admin.get("/v1/reports", params=params), status, code)


def reports_of(broker, fid):
    return listing(broker, file=fid)["reports"]


# --- report, refresh, list ---------------------------------------------------------

def test_report_refresh_and_list(broker, user):
    owner, seeder, reader = user(), user(), user()
    share = make_share(owner)
    grant(owner, share, read=[seeder, reader])
    fid = ten_piece_file(owner, share)
    expect(seeder.http.post(f"/v1/files/{fid}/peers",
                            json={"url": URL, "have": "/8A="}), 201)

    got = report(reader, fid, status=201)
    assert {k: got[k] for k in ("file_id", "version", "piece", "url", "reason",
                                "reporter_id", "peer_user_id")} == {
        "file_id": fid, "version": 1, "piece": 3, "url": URL,
        "reason": "sent piece 3, which failed its hash check",
        "reporter_id": reader.user_id, "peer_user_id": seeder.user_id}
    first = parse_time(got["reported_at"])

    # the same reporter, piece and source again: refreshed, still one report
    again = report(reader, fid, status=200, reason="again")
    assert again["report_id"] == got["report_id"] and again["reason"] == "again"
    assert parse_time(again["reported_at"]) >= first
    # another piece, another reporter, another source: each its own report
    other = report(reader, fid, piece=9, status=201)
    mine = report(owner, fid, status=201)
    broker_src = report(owner, fid, url=broker.url, piece=0, status=201)
    assert broker_src["peer_user_id"] is None            # nobody announced it

    listed = reports_of(broker, fid)
    assert sorted(r["report_id"] for r in listed) == sorted(
        r["report_id"] for r in (again, other, mine, broker_src))
    times = [parse_time(r["reported_at"]) for r in listed]
    assert times == sorted(times, reverse=True)          # the latest first
    assert {r["report_id"]: r for r in listed}[got["report_id"]] == again
    # every file's, and a limit
    all_ids = [r["report_id"] for r in listing(broker, limit=1000)["reports"]]
    assert set(r["report_id"] for r in listed) <= set(all_ids)
    assert len(listing(broker, limit=1)["reports"]) == 1
    # the file id in any case
    assert len(reports_of(broker, fid.upper())) == 4
    # another file: none
    assert reports_of(broker, ten_piece_file(owner)) == []


def test_versions_and_last_piece(broker, user):
    u = user()
    fid = ten_piece_file(u)
    data = b"x" * (2 * PS)
    expect(u.http.put(f"/v1/files/{fid}", json={
        "size": len(data), "piece_size": PS,
        "piece_hashes": [__import__("hashlib").sha256(data[:PS]).hexdigest()] * 2}), 200)
    assert report(u, fid, piece=9, version=1)["version"] == 1      # v1 has 10 pieces
    assert report(u, fid, piece=1, version=2)["version"] == 2      # v2 has 2
    msg = report(u, fid, piece=2, version=2, status=400,
                 code="invalid_request")["error"]["message"]
    assert "past the last" in msg and "'piece'" in msg, msg
    report(u, fid, piece=10, version=1, status=400, code="invalid_request")
    report(u, fid, version=3, status=404, code="not_found")
    assert len(reports_of(broker, fid)) == 2


# --- bad input: 400, nothing stored ---------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"url": None}, {"url": 7}, {"url": ""}, {"url": "ftp://a/x"}, {"url": "http://a?q=1"},
    {"url": "http://a/#f"}, {"url": "127.0.0.1:7070"}, {"url": "http://a/" + "x" * 2040},
    {"url": "http://a\u0000b"},
    {"piece": None}, {"piece": -1}, {"piece": 1.0}, {"piece": "3"}, {"piece": True},
    {"version": None}, {"version": 0}, {"version": -1}, {"version": 1.0}, {"version": "1"},
    {"version": 2 ** 31},
    {"reason": None}, {"reason": ""}, {"reason": "x" * 256}, {"reason": "a\nb"},
    {"reason": "a\u007fb"}, {"reason": ["x"]},
    {"extra": 1},
])
def test_bad_body_400(broker, user, bad):
    u = user()
    fid = ten_piece_file(u)
    b = body()
    for k, v in bad.items():
        b[k] = v
    expect(u.http.post(f"/v1/files/{fid}/reports", json=b), 400, "invalid_request")
    assert reports_of(broker, fid) == []


@pytest.mark.parametrize("missing", ["url", "piece", "version", "reason"])
def test_missing_field_400(broker, user, missing):
    u = user()
    fid = ten_piece_file(u)
    b = body()
    del b[missing]
    msg = expect(u.http.post(f"/v1/files/{fid}/reports", json=b), 400,
                 "invalid_request")["error"]["message"]
    assert missing in msg, msg
    assert reports_of(broker, fid) == []


def test_longest_reason_and_url(broker, user):
    u = user()
    fid = ten_piece_file(u)
    url = "https://a/" + "x" * (2048 - len("https://a/"))
    got = report(u, fid, url=url, reason="é" * 127 + "x")       # 255 bytes
    assert (got["url"], len(got["reason"].encode())) == (url, 255)


def test_malformed_json_and_media_type(broker, user):
    u = user()
    fid = ten_piece_file(u)
    expect(u.http.post(f"/v1/files/{fid}/reports", data=b"{nope",
                       headers={"Content-Type": "application/json"}), 400, "malformed_json")
    expect(u.http.post(f"/v1/files/{fid}/reports", data=b"[]",
                       headers={"Content-Type": "application/json"}), 400, "invalid_request")
    expect(u.http.post(f"/v1/files/{fid}/reports", data=b'{}',
                       headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert reports_of(broker, fid) == []


@pytest.mark.parametrize("bad", ["not-a-uuid", new_uuid()[:-1], new_uuid() + "0"])
def test_non_uuid_file_400(broker, user, bad):
    u = user()
    expect(u.http.post(f"/v1/files/{bad}/reports", json=body()), 400, "invalid_request")


# --- who may ---------------------------------------------------------------------------

def test_needs_a_session(broker, user):
    u = user()
    fid = ten_piece_file(u)
    expect(broker.api.post(f"/v1/files/{fid}/reports", json=body()), 400, "session_missing")
    expect(broker.api.post(f"/v1/files/{fid}/reports", json=body(),
                           headers={"Authorization": f"Bearer {new_uuid()}"}), 403,
           "session_unknown")
    assert reports_of(broker, fid) == []


def test_unknown_another_users_and_deleted_file(broker, user):
    owner, reader, stranger = user(), user(), user()
    report(stranger, new_uuid(), status=404, code="not_found")
    share = make_share(owner)
    grant(owner, share, read=[reader])
    fid = ten_piece_file(owner, share)
    # who may not read the file learns nothing of it
    report(stranger, fid, status=404, code="not_found")
    assert report(reader, fid)["reporter_id"] == reader.user_id
    expect(owner.http.delete(f"/v1/files/{fid}"), 200)
    for u in (owner, reader):
        report(u, fid, piece=4, status=410, code="gone")
    report(stranger, fid, status=404, code="not_found")
    gone = add_file(broker, share, owner.user_id, [100], deleted=True)
    report(owner, gone, piece=0, status=410, code="gone")


def test_read_through_a_group(broker, user):
    owner, member = user(), user()
    group = expect(owner.http.post("/v1/groups", json={"name": "g-" + new_uuid(),
                                                       "members": [member.user_id]}), 201)
    share = make_share(owner)
    expect(owner.http.put(f"/v1/shares/{share}/acl", json={
        "read": {"users": [], "groups": [group["group_id"]]},
        "write": {"users": [], "groups": []}}), 200)
    fid = ten_piece_file(owner, share)
    assert report(member, fid)["reporter_id"] == member.user_id


# --- the listing is the admin's ------------------------------------------------------------

def test_listing_needs_the_admin_token(broker, user):
    u = user()
    expect(broker.api.get("/v1/reports"), 400, "session_missing")
    expect(u.http.get("/v1/reports"), 403, "forbidden")
    expect(broker.session(token="not-the-token").get("/v1/reports"), 403, "forbidden")


@pytest.mark.parametrize("params", [
    {"file": "nope"}, {"file": ""}, {"file": new_uuid() + "0"},
    {"limit": "0"}, {"limit": "1001"}, {"limit": "-1"}, {"limit": "01"}, {"limit": "x"},
    {"limit": ""}, {"limit": "1.0"},
])
def test_listing_bad_query_400(broker, params):
    listing(broker, status=400, code="invalid_request", **params)
