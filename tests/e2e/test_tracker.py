"""The tracker: POST /v1/files/{id}/peers (announce and refresh), GET (who
holds what, file brokers first), DELETE (withdraw), the peer_ttl after
which a silent peer is forgotten, and every bad input, which changes
nothing."""

import base64
import subprocess
import time
from urllib.parse import quote

import pytest

from filekit import KIB, add_file, create_file, grant, make_share, pattern, put_piece, split
from helpers import expect, make_user, new_uuid, parse_time, random_key, wait_until

PS = 16 * KIB
URL = "http://127.0.0.1:7070"


def bits(n, held):
    """The base64 bitfield of n pieces with the indexes in held set."""
    raw = bytearray((n + 7) // 8)
    for i in held:
        raw[i // 8] |= 0x80 >> (i % 8)
    return base64.b64encode(bytes(raw)).decode()


def announce(u, fid, url=URL, have="", status=None, **extra):
    body = {"url": url, "have": have, **extra}
    r = u.http.post(f"/v1/files/{fid}/peers", json=body)
    return expect(r, status or r.status_code)


def peers(u, fid, version=None, status=200, code=None):
    params = {} if version is None else {"version": version}
    return expect(u.http.get(f"/v1/files/{fid}/peers", params=params), status, code)


def peer_urls(u, fid, version=None):
    return [p["url"] for p in peers(u, fid, version)["peers"] if p["kind"] == "peer"]


def withdraw(u, fid, url=URL, status=200, code=None, **params):
    r = u.http.delete(f"/v1/files/{fid}/peers", params={"url": url, **params})
    return expect(r, status, code)


def ten_piece_file(u, share=None, seed=b"t"):
    """A file of 10 pieces (two bitfield bytes); returns (file_id, data)."""
    share = share or make_share(u)
    data = pattern(9 * PS + 100, seed + new_uuid().encode())
    return create_file(u, share, data, PS)["file_id"], data


# --- announce, refresh, list --------------------------------------------------

def test_announce_refresh_and_list(broker, user):
    owner, seeder = user(), user()
    share = make_share(owner)
    grant(owner, share, read=[seeder])
    fid, data = ten_piece_file(owner, share)
    for n in (0, 9):
        expect(put_piece(owner, fid, n, split(data, PS)[n]), 201)

    got = announce(seeder, fid, have=bits(10, {1, 2, 3, 8}), status=201)
    assert {k: got[k] for k in ("file_id", "version", "pieces", "user_id", "url", "have",
                                "held", "complete")} == {
        "file_id": fid, "version": 1, "pieces": 10, "user_id": seeder.user_id, "url": URL,
        "have": bits(10, {1, 2, 3, 8}), "held": 4, "complete": False}
    first = parse_time(got["announced_at"])
    ttl = (parse_time(got["expires_at"]) - first).total_seconds()
    assert ttl == 300, got                                 # default peer_ttl 5m

    body = peers(owner, fid)
    assert (body["file_id"], body["version"], body["pieces"]) == (fid, 1, 10)
    me = expect(broker.api.get("/healthz"), 200)["broker_id"]
    assert body["peers"][0]["kind"] == "broker" and body["peers"][0]["url"] == broker.url
    assert body["peers"][0]["broker_id"] == me
    assert body["peers"][0]["have"] == bits(10, {0, 9})
    assert (body["peers"][0]["held"], body["peers"][0]["complete"]) == (2, False)
    assert [p for p in body["peers"] if p["kind"] == "peer"] == [{
        "kind": "peer", "user_id": seeder.user_id, "url": URL, "have": bits(10, {1, 2, 3, 8}),
        "held": 4, "complete": False, "announced_at": got["announced_at"],
        "expires_at": got["expires_at"]}]

    # announcing again replaces the bitfield and refreshes: 200, still one entry
    time.sleep(1.05)
    again = announce(seeder, fid, have=bits(10, range(10)), status=200)
    assert (again["held"], again["complete"]) == (10, True)
    assert parse_time(again["announced_at"]) > first
    entries = [p for p in peers(seeder, fid)["peers"] if p["kind"] == "peer"]
    assert [(p["url"], p["held"], p["complete"]) for p in entries] == [(URL, 10, True)]

    # another URL of the same user is another holder
    announce(seeder, fid, url=URL + "/b", have=bits(10, {5}), status=201)
    assert peer_urls(owner, fid) == [URL, URL + "/b"]


def test_order_file_brokers_first_then_most_pieces(broker, user):
    owner, a, b, c = user(), user(), user(), user()
    share = make_share(owner)
    grant(owner, share, read=[a, b, c])
    fid, data = ten_piece_file(owner, share)

    other_file = expect(broker.admin.post("/v1/brokers", json={
        "url": "http://127.0.0.9:9000", "roles": ["metadata", "file"],
        "public_key": random_key()}), 201)
    not_file = expect(broker.admin.post("/v1/brokers", json={
        "url": "http://127.0.0.8:9000", "roles": ["trust", "metadata"],
        "public_key": random_key()}), 201)
    try:
        announce(a, fid, url="http://127.0.0.1:7001", have=bits(10, {1}), status=201)
        announce(b, fid, url="http://127.0.0.1:7002", have=bits(10, range(10)), status=201)
        announce(c, fid, url="http://127.0.0.1:7003", have=bits(10, {2}), status=201)
        announce(c, fid, url="http://127.0.0.1:7004", have="AAA=", status=201)

        # this broker holds nothing of the file yet: it is left out
        body = peers(a, fid)
        kinds = [p["kind"] for p in body["peers"]]
        assert kinds == sorted(kinds), kinds               # "broker" < "peer"
        brokers = [p for p in body["peers"] if p["kind"] == "broker"]
        ids = [p["broker_id"] for p in brokers]
        assert other_file["broker_id"] in ids and not_file["broker_id"] not in ids
        assert broker.url not in [p["url"] for p in brokers]
        assert ids == sorted(ids)
        for p in brokers:
            assert (p["have"], p["held"], p["complete"]) == (None, None, None), p
        # most pieces first; equal counts: the latest announcement first
        assert [p["url"] for p in body["peers"] if p["kind"] == "peer"] == [
            "http://127.0.0.1:7002", "http://127.0.0.1:7003", "http://127.0.0.1:7001",
            "http://127.0.0.1:7004"]

        # once it holds a piece, this broker comes first of all
        expect(put_piece(owner, fid, 4, split(data, PS)[4]), 201)
        first = peers(a, fid)["peers"][0]
        assert (first["kind"], first["url"], first["have"], first["held"]) == \
            ("broker", broker.url, bits(10, {4}), 1)
    finally:
        for x in (other_file, not_file):
            expect(broker.admin.delete(f"/v1/brokers/{x['broker_id']}"), 200)


def test_empty_file(broker, user):
    u = user()
    f = create_file(u, make_share(u), b"", PS)
    got = announce(u, f["file_id"], have="", status=201)
    assert (got["pieces"], got["have"], got["held"], got["complete"]) == (0, "", 0, True)
    body = peers(u, f["file_id"])
    # this broker holds every piece of an empty file
    assert body["peers"][0]["kind"] == "broker" and body["peers"][0]["complete"] is True
    expect(u.http.post(f"/v1/files/{f['file_id']}/peers", json={"url": URL, "have": "AA=="}),
           400, "invalid_request")


def test_versions(broker, user):
    u = user()
    fid, data = ten_piece_file(u)
    v2 = pattern(3 * PS, b"v2")
    expect(u.http.put(f"/v1/files/{fid}", json={
        "size": len(v2), "piece_size": PS,
        "piece_hashes": [__import__("hashlib").sha256(p).hexdigest() for p in split(v2, PS)]}),
        200)
    # without version: the latest (3 pieces: one byte)
    expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": bits(10, {0})}),
           400, "invalid_request")
    got = announce(u, fid, url=URL + "/v2", have=bits(3, {0, 1, 2}), status=201)
    assert (got["version"], got["pieces"], got["complete"]) == (2, 3, True)
    got = announce(u, fid, url=URL + "/v1", have=bits(10, {7}), version=1, status=201)
    assert (got["version"], got["pieces"]) == (1, 10)
    assert peer_urls(u, fid) == [URL + "/v2"]
    assert peer_urls(u, fid, version=2) == [URL + "/v2"]
    assert peer_urls(u, fid, version=1) == [URL + "/v1"]
    # the same URL for both versions: two announcements
    announce(u, fid, url=URL + "/v2", have=bits(10, {1}), version=1, status=201)
    assert peer_urls(u, fid, version=1) == [URL + "/v2", URL + "/v1"]    # the latest first
    # no such version
    expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": "", "version": 3}),
           404, "not_found")
    peers(u, fid, version=3, status=404, code="not_found")
    for bad in ("0", "-1", "01", "x", "1.0"):
        peers(u, fid, version=bad, status=400, code="invalid_request")


# --- bad input: 400, nothing stored ------------------------------------------------

@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/x", "127.0.0.1:7070", "http://", "http:///path", "https://",
    "http://a b", "http://a\u00e9", "http://a\"b", "http://a<b>", "http://a\\b",
    "http://a?q=1", "http://a/#frag", "http://a%zz", "http://a\u0000b", "http://a\nb",
    "http://a/" + "x" * 2040, "", "javascript:alert(1)", " http://a",
])
def test_bad_url_400(broker, user, url):
    u = user()
    fid, _ = ten_piece_file(u)
    msg = expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": url, "have": "AAA="}),
                 400, "invalid_request")["error"]["message"]
    assert "url" in msg
    assert peer_urls(u, fid) == []


def test_longest_url_accepted(broker, user):
    u = user()
    fid, _ = ten_piece_file(u)
    url = "https://a/" + "x" * (2048 - len("https://a/"))
    assert announce(u, fid, url=url, have="AAA=", status=201)["url"] == url
    expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": url + "x", "have": "AAA="}),
           400, "invalid_request")


@pytest.mark.parametrize("have,words", [
    ("!!!=", "base64"),
    ("AAA", "base64"),                        # no padding
    ("AA==", "base64"),                       # one byte of two
    ("AAAA", "base64"),                       # three bytes of two
    ("AA A=", "base64"),
    ("AAA=\n", "base64"),
    ("AAB=", "base64"),                       # padding bits set: not canonical
    ("AEA=", "past the last"),                # bit 9 of 10 is fine...
    ("AGA=", "past the last"),                # ...bit 10 is not
    ("////", "base64"),
])
def test_bad_have_400(broker, user, have, words):
    u = user()
    fid, _ = ten_piece_file(u)
    if have == "AEA=":                        # 0x00 0x40: piece 9, the last: accepted
        assert announce(u, fid, have=have, status=201)["held"] == 1
        withdraw(u, fid)
        return
    msg = expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": have}),
                 400, "invalid_request")["error"]["message"]
    assert words in msg and "'have'" in msg, msg
    assert peer_urls(u, fid) == []


@pytest.mark.parametrize("body", [
    {"have": "AAA="},
    {"url": URL},
    {"url": 7, "have": "AAA="},
    {"url": None, "have": "AAA="},
    {"url": URL, "have": None},
    {"url": URL, "have": ["AAA="]},
    {"url": URL, "have": "AAA=", "version": 0},
    {"url": URL, "have": "AAA=", "version": -1},
    {"url": URL, "have": "AAA=", "version": 1.0},
    {"url": URL, "have": "AAA=", "version": "1"},
    {"url": URL, "have": "AAA=", "version": True},
    {"url": URL, "have": "AAA=", "version": 2 ** 31},
    {"url": URL, "have": "AAA=", "ip": "127.0.0.1"},
    [URL, "AAA="],
    "x",
])
def test_bad_body_400(broker, user, body):
    u = user()
    fid, _ = ten_piece_file(u)
    expect(u.http.post(f"/v1/files/{fid}/peers", json=body), 400, "invalid_request")
    assert peer_urls(u, fid) == []


def test_malformed_json_and_media_type(broker, user):
    u = user()
    fid, _ = ten_piece_file(u)
    expect(u.http.post(f"/v1/files/{fid}/peers", data=b"{nope",
                       headers={"Content-Type": "application/json"}), 400, "malformed_json")
    expect(u.http.post(f"/v1/files/{fid}/peers", data=b'{"url":"http://a","have":"AAA="}',
                       headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert peer_urls(u, fid) == []


@pytest.mark.parametrize("bad", ["not-a-uuid", "1234", new_uuid()[:-1], new_uuid() + "0",
                                 "%20" + new_uuid()])
def test_non_uuid_ids_400(broker, user, bad):
    u = user()
    expect(u.http.post(f"/v1/files/{bad}/peers", json={"url": URL, "have": ""}), 400,
           "invalid_request")
    expect(u.http.get(f"/v1/files/{bad}/peers"), 400, "invalid_request")
    expect(u.http.delete(f"/v1/files/{bad}/peers", params={"url": URL}), 400,
           "invalid_request")


def test_needs_a_session(broker, user):
    u = user()
    fid, _ = ten_piece_file(u)
    expect(broker.api.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": "AAA="}), 400,
           "session_missing")
    expect(broker.api.get(f"/v1/files/{fid}/peers"), 400, "session_missing")
    expect(broker.api.delete(f"/v1/files/{fid}/peers", params={"url": URL}), 400,
           "session_missing")
    expect(broker.api.get(f"/v1/files/{fid}/peers",
                          headers={"Authorization": f"Bearer {new_uuid()}"}), 403,
           "session_unknown")


# --- who may: unknown, deleted, another user's, grantees ------------------------------

def test_unknown_file_404(broker, user):
    u = user()
    fid = new_uuid()
    expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": ""}), 404,
           "not_found")
    peers(u, fid, status=404, code="not_found")
    withdraw(u, fid, status=404, code="not_found")


def test_deleted_file_410(broker, user, pg, database):
    owner, reader, stranger = user(), user(), user()
    share = make_share(owner)
    grant(owner, share, read=[reader])
    fid, _ = ten_piece_file(owner, share)
    announce(reader, fid, have="AAA=", status=201)
    expect(owner.http.delete(f"/v1/files/{fid}"), 200)
    for u in (owner, reader):
        expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": "AAA="}), 410,
               "gone")
        peers(u, fid, status=410, code="gone")
    # who may not read the share does not learn that it existed
    expect(stranger.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": "AAA="}),
           404, "not_found")
    peers(stranger, fid, status=404, code="not_found")
    withdraw(stranger, fid, status=404, code="not_found")
    # the file's announcements went with it: nothing to withdraw, 410
    withdraw(reader, fid, status=410, code="gone")
    assert pg.psql(database, f"SELECT count(*) FROM peers WHERE file_id = '{fid}'").strip() == "0"
    # a file deleted before any announcement (written as the handlers would)
    gone = add_file(broker, share, owner.user_id, [100], deleted=True)
    peers(owner, gone, status=410, code="gone")


def test_another_users_file_404(broker, user):
    owner, other = user(), user()
    fid, _ = ten_piece_file(owner)
    announce(owner, fid, have=bits(10, {0}), status=201)
    expect(other.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": "AAA="}), 404,
           "not_found")
    peers(other, fid, status=404, code="not_found")
    withdraw(other, fid, status=404, code="not_found")
    # nothing changed: the owner's announcement is the only one
    assert [(p["user_id"], p["url"]) for p in peers(owner, fid)["peers"]
            if p["kind"] == "peer"] == [(owner.user_id, URL)]


def test_grantees_announce_and_list(broker, user):
    owner, direct, member, writer = user(), user(), user(), user()
    group = expect(owner.http.post("/v1/groups", json={"name": "g-" + new_uuid(),
                                                       "members": [member.user_id]}), 201)
    share = make_share(owner)
    acl = {"read": {"users": [direct.user_id], "groups": [group["group_id"]]},
           "write": {"users": [writer.user_id], "groups": []}}
    expect(owner.http.put(f"/v1/shares/{share}/acl", json=acl), 200)
    fid, _ = ten_piece_file(owner, share)
    for i, u in enumerate((direct, member, writer)):
        announce(u, fid, url=f"http://127.0.0.1:{7100 + i}", have=bits(10, {i}), status=201)
    for u in (owner, direct, member, writer):
        assert sorted(peer_urls(u, fid)) == [f"http://127.0.0.1:{7100 + i}" for i in range(3)]

    # access taken away: 404 at once, for announcing and for listing
    expect(owner.http.put(f"/v1/shares/{share}/acl", json={
        "read": {"users": [], "groups": []}, "write": {"users": [], "groups": []}}), 200)
    for u in (direct, member, writer):
        peers(u, fid, status=404, code="not_found")
        expect(u.http.post(f"/v1/files/{fid}/peers", json={"url": URL, "have": "AAA="}), 404,
               "not_found")
    # ... but each may still withdraw its own announcement
    assert withdraw(direct, fid, url="http://127.0.0.1:7100")["withdrawn"] == 1
    assert sorted(peer_urls(owner, fid)) == ["http://127.0.0.1:7101", "http://127.0.0.1:7102"]


# --- withdraw ----------------------------------------------------------------------

def test_withdraw(broker, user):
    u, other = user(), user()
    share = make_share(u)
    grant(u, share, read=[other])
    fid, _ = ten_piece_file(u, share)
    v2 = b"x" * 10
    expect(u.http.put(f"/v1/files/{fid}", json={
        "size": 10, "piece_size": PS,
        "piece_hashes": [__import__("hashlib").sha256(v2).hexdigest()]}), 200)
    announce(u, fid, have=bits(10, {0}), version=1, status=201)
    announce(u, fid, have=bits(1, {0}), status=201)
    announce(other, fid, have=bits(1, {0}), status=201)       # the same URL, another user

    body = withdraw(u, fid, version=1)
    assert body == {"file_id": fid, "url": URL, "withdrawn": 1}
    assert peer_urls(u, fid, version=1) == []
    assert peer_urls(u, fid, version=2) == [URL, URL]
    withdraw(u, fid, version=1, status=404, code="not_found")
    # every version, the caller's own only
    assert withdraw(u, fid)["withdrawn"] == 1
    assert [p["user_id"] for p in peers(u, fid)["peers"] if p["kind"] == "peer"] == \
        [other.user_id]
    withdraw(u, fid, status=404, code="not_found")
    # in any case of the file id
    assert withdraw(other, fid.upper())["file_id"] == fid


def test_withdraw_url_percent_encoded(broker, user):
    u = user()
    fid, _ = ten_piece_file(u)
    url = "http://[::1]:7070/a%20b/c;d=e"
    announce(u, fid, url=url, have="AAA=", status=201)
    r = u.http.delete(f"/v1/files/{fid}/peers?url={quote(url, safe='')}")
    assert expect(r, 200)["url"] == url


@pytest.mark.parametrize("query", [
    "", "?url=", "?version=1", "?url=ftp%3A%2F%2Fa", "?url=http%3A%2F%2Fa%3Fq",
    "?url=http%3A%2F%2Fa&version=0", "?url=http%3A%2F%2Fa&version=x",
    "?url=" + "h" * 3000,
])
def test_withdraw_bad_query_400(broker, user, query):
    u = user()
    fid, _ = ten_piece_file(u)
    announce(u, fid, url="http://a", have="AAA=", status=201)
    expect(u.http.delete(f"/v1/files/{fid}/peers{query}"), 400, "invalid_request")
    assert peer_urls(u, fid) == ["http://a"]


# --- the announcement's life: peer_ttl ---------------------------------------------

def test_silent_peer_forgotten_after_ttl(make_broker, pg, database):
    b = make_broker(peer_ttl="2s")
    owner, reader = make_user(b), make_user(b)
    share = make_share(owner)
    grant(owner, share, read=[reader])
    fid, _ = ten_piece_file(owner, share)

    got = announce(reader, fid, url=URL + "/quiet", have=bits(10, {0}), status=201)
    assert (parse_time(got["expires_at"]) - parse_time(got["announced_at"])).total_seconds() == 2
    announce(owner, fid, url=URL + "/busy", have=bits(10, {1}), status=201)
    assert sorted(peer_urls(owner, fid)) == [URL + "/busy", URL + "/quiet"]

    # the owner keeps refreshing, the reader falls silent
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        time.sleep(0.7)
        expect(owner.http.post(f"/v1/files/{fid}/peers",
                               json={"url": URL + "/busy", "have": bits(10, {1})}), 200)
    assert peer_urls(reader, fid) == [URL + "/busy"]
    # and is purged from the database, not only hidden
    wait_until(lambda: pg.psql(database, "SELECT count(*) FROM peers WHERE file_id = "
                                         f"'{fid}' AND url = '{URL}/quiet'").strip() == "0",
               timeout=5, what="the lapsed announcement to be purged")
    # nothing to withdraw any more; announcing again is new (201)
    withdraw(reader, fid, url=URL + "/quiet", status=404, code="not_found")
    announce(reader, fid, url=URL + "/quiet", have=bits(10, {0}), status=201)


def test_lapsed_announcement_is_not_listed(broker, user, pg, database):
    u = user()
    fid, _ = ten_piece_file(u)
    announce(u, fid, have="AAA=", status=201)
    # as if it lapsed a minute ago and the purge had not come yet
    pg.psql(database, "UPDATE peers SET expires_at = now() - interval '1 minute'"
                      f" WHERE file_id = '{fid}'")
    assert peer_urls(u, fid) == []
    withdraw(u, fid, status=404, code="not_found")         # nothing live to withdraw
    assert announce(u, fid, have="AAA=", status=201)["held"] == 0


@pytest.mark.parametrize("value", ["0s", "2d", "soon", "-1s"])
def test_bad_peer_ttl_refused(bin_dir, pg, database, tmp_path, value):
    p = subprocess.run(
        [str(bin_dir / "shoal-broker"), "--listen", "127.0.0.1:0",
         "--database-url", pg.conninfo(database), "--data-dir", str(tmp_path / "d"),
         "--peer-ttl", value],
        capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, f"started with --peer-ttl {value}"
    assert "peer_ttl" in p.stderr, p.stderr
