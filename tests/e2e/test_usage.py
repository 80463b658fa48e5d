"""Usage metering (GET /v1/usage): ingress, egress, requests and stored
bytes per user and hour or day, as JSON and CSV; who may see whose; the
counts of several brokers add up."""

import csv
import datetime
import io
import os

import pytest

from filekit import (KIB, content_body, create_file, make_share, parse_xsign, pattern, put_piece,
                     split, upload)
from helpers import expect, new_uuid, parse_time, utcnow

PS = 16 * KIB
CSV_HEADER = ["user_id", "period_start", "ingress_bytes", "egress_bytes", "requests",
              "stored_bytes", "stored_byte_hours"]


def counting(u):
    """Count every answer u.http gets from now on (each is one
    authenticated request when the session is good)."""
    seen = []
    u.http.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    return seen


def totals(rows, user_id):
    mine = [r for r in rows if r["user_id"] == user_id]
    return {k: sum(r[k] for r in mine) for k in ("ingress_bytes", "egress_bytes", "requests")}


def usage(http, status=200, **params):
    return expect(http.get("/v1/usage", params=params), status)


def test_metering_of_one_user(broker, user):
    u = user()
    seen = counting(u)
    share = make_share(u)
    a = pattern(2 * PS + 100, os.urandom(16))
    f = create_file(u, share, a, PS)
    fid = f["file_id"]
    upload(u, fid, a, PS)                                        # ingress len(a)
    expect(put_piece(u, fid, 0, a[:PS]), 200)                    # accepted again: + PS
    expect(put_piece(u, fid, 1, a[:PS]), 422, "unprocessable")   # refused: nothing
    expect(put_piece(u, fid, 2, a[-100:] + b"x"), 413, "body_too_large")
    ingress = len(a) + PS

    r = u.http.get(f"/v1/files/{fid}/content")                   # egress len(a)
    assert r.status_code == 200 and len(r.content) == len(a)
    r = u.http.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=0-99"})    # + 100
    assert r.status_code == 206 and len(r.content) == 100
    assert u.http.head(f"/v1/files/{fid}/content").status_code == 200             # HEAD: 0
    assert u.http.head(f"/v1/files/{fid}/pieces/0").status_code == 200            # HEAD: 0
    r = u.http.get(f"/v1/files/{fid}/pieces/1")                                   # + PS
    assert r.status_code == 200 and len(r.content) == PS
    r = u.http.get(f"/v1/files/{fid}/pieces/2", headers={"Range": "bytes=-10"})    # + 10
    assert r.status_code == 206 and len(r.content) == 10
    r = u.http.get(f"/v1/files/{fid}/content", headers={"Range": f"bytes={len(a)}-"})
    assert r.status_code == 416                                                   # 0
    egress = len(a) + 100 + PS + 10

    # stored counts every version of every live file in full, dedup or not
    create_file(u, share, a, PS)                                  # same pieces, another file
    expect(u.http.put(f"/v1/files/{fid}", json=content_body(b"z" * 50, PS)), 200)
    gone = create_file(u, share, b"deleted", PS)
    expect(u.http.delete(f"/v1/files/{gone['file_id']}"), 200)
    stored = 2 * len(a) + 50

    rep = usage(u.http)                                 # counted itself: in 'requests'
    assert rep["user_id"] == u.user_id and rep["granularity"] == "hour"
    assert parse_time(rep["to"]) <= utcnow() and \
        parse_time(rep["to"]) - parse_time(rep["from"]) == datetime.timedelta(days=1)
    assert all(row["user_id"] == u.user_id for row in rep["rows"])
    got = totals(rep["rows"], u.user_id)
    assert got == {"ingress_bytes": ingress, "egress_bytes": egress, "requests": len(seen)}, \
        (got, seen)
    last = rep["rows"][-1]
    assert last["stored_bytes"] == stored
    if len(rep["rows"]) == 1:                           # the test did not straddle an hour
        assert last["stored_byte_hours"] == stored
        now = utcnow()
        assert parse_time(last["period_start"]) == now.replace(minute=0, second=0, microsecond=0)

    # the quota endpoint agrees on what is stored
    assert expect(broker.admin.get(f"/v1/users/{u.user_id}/quota"), 200)["used"] == stored


def test_csv_matches_json(broker, user):
    u = user()
    data = pattern(PS + 1, os.urandom(8))
    f = create_file(u, make_share(u), data, PS)
    upload(u, f["file_id"], data, PS)
    j = usage(u.http)
    r = u.http.get("/v1/usage", params={"format": "csv"})
    expect(r, 200)
    assert r.headers["Content-Type"].split(";")[0] == "text/csv"
    assert r.text.endswith("\r\n") and "\r\n" in r.text
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert rows[0] == CSV_HEADER
    body = [dict(zip(CSV_HEADER, row)) for row in rows[1:]]
    assert len(body) == len(j["rows"]) == 1, "an hour passed between the two reports?"
    for c, js in zip(body, j["rows"]):
        assert c["user_id"] == js["user_id"] and c["period_start"] == js["period_start"]
        parse_time(c["period_start"])
        for k in ("ingress_bytes", "egress_bytes", "stored_bytes", "stored_byte_hours"):
            assert int(c[k]) == js[k], k
    assert int(body[-1]["requests"]) == j["rows"][-1]["requests"] + 1   # the CSV request
    assert int(body[-1]["ingress_bytes"]) == len(data)


def test_day_granularity(broker, user):
    u = user()
    f = create_file(u, make_share(u), b"d" * 1000, PS)
    upload(u, f["file_id"], b"d" * 1000, PS)
    now = utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    frm = midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
    hours = usage(u.http, **{"from": frm})
    days = usage(u.http, **{"from": frm, "granularity": "day"})
    assert days["granularity"] == "day"
    assert len(days["rows"]) == 1 or utcnow().date() != now.date()
    d = days["rows"][0]
    assert parse_time(d["period_start"]) == midnight
    h = totals(hours["rows"], u.user_id)
    assert d["ingress_bytes"] == h["ingress_bytes"] == 1000
    assert d["egress_bytes"] == h["egress_bytes"] == 0
    assert d["requests"] == h["requests"] + 1             # the day report counted itself
    assert d["stored_bytes"] == max(r["stored_bytes"] for r in hours["rows"]) == 1000
    assert d["stored_byte_hours"] == sum(r["stored_byte_hours"] for r in hours["rows"])


def test_stored_follows_deletes(broker, user):
    u = user()
    share = make_share(u)
    f = create_file(u, share, b"a" * 3000, PS)
    g = create_file(u, share, b"b" * 500, PS)
    assert usage(u.http)["rows"][-1]["stored_bytes"] == 3500
    expect(u.http.delete(f"/v1/files/{f['file_id']}"), 200)
    assert usage(u.http)["rows"][-1]["stored_bytes"] == 500
    expect(u.http.delete(f"/v1/files/{g['file_id']}"), 200)
    assert usage(u.http)["rows"][-1]["stored_bytes"] == 0


def test_who_sees_whose_usage(broker, user):
    a, b = user(), user()
    create_file(a, make_share(a), b"a" * 10, PS)
    create_file(b, make_share(b), b"b" * 20, PS)
    expect(a.http.get("/v1/usage", params={"user": b.user_id}), 403, "forbidden")
    expect(a.http.get("/v1/usage", params={"user": b.user_id.upper(), "format": "csv"}), 403,
           "forbidden")
    mine = usage(a.http, user=a.user_id.upper())
    assert mine["user_id"] == a.user_id and {r["user_id"] for r in mine["rows"]} == {a.user_id}

    theirs = usage(broker.admin, user=b.user_id)
    assert theirs["user_id"] == b.user_id
    assert {r["user_id"] for r in theirs["rows"]} == {b.user_id}
    assert theirs["rows"][-1]["stored_bytes"] == 20
    everyone = usage(broker.admin)
    assert everyone["user_id"] is None
    users = {r["user_id"] for r in everyone["rows"]}
    assert {a.user_id, b.user_id} <= users
    r = broker.admin.get("/v1/usage", params={"format": "csv"})
    expect(r, 200)
    lines = list(csv.reader(io.StringIO(r.text, newline="")))
    assert lines[0] == CSV_HEADER and {a.user_id, b.user_id} <= {x[0] for x in lines[1:]}
    # rows are ordered by period, then user
    keys = [(x["period_start"], x["user_id"]) for x in everyone["rows"]]
    assert keys == sorted(keys)

    expect(broker.api.get("/v1/usage"), 400, "session_missing")
    expect(broker.session(token=new_uuid()).get("/v1/usage"), 403, "session_unknown")
    expect(broker.session(token="not-the-admin-token").get("/v1/usage"), 403)


@pytest.mark.parametrize("params", [
    {"from": "yesterday"}, {"to": "2026-13-01T00:00:00Z"}, {"from": "2026-11-21"},
    {"from": "2026-11-21T10:00:00Z", "to": "2026-11-21T10:00:00Z"},
    {"from": "2026-11-21T11:00:00Z", "to": "2026-11-21T10:00:00Z"},
    {"from": "2025-01-01T00:00:00Z", "to": "2026-11-21T00:00:00Z"},       # > 400 days
    {"granularity": "week"}, {"granularity": "HOUR"}, {"granularity": ""},
    {"format": "xml"}, {"format": "CSV"}, {"format": ""},
    {"user": "not-a-uuid"}, {"user": ""},
])
def test_bad_parameters(broker, user, params):
    u = user()
    expect(u.http.get("/v1/usage", params=params), 400, "invalid_request")
    expect(broker.admin.get("/v1/usage", params=params), 400, "invalid_request")


def test_window(broker, user):
    u = user()
    create_file(u, make_share(u), b"w" * 10, PS)
    past = usage(u.http, **{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"})
    assert past["rows"] == []
    assert past["from"] == "2020-01-01T00:00:00Z" and past["to"] == "2020-01-02T00:00:00Z"
    span = usage(u.http, **{"from": "2026-01-01T00:00:00+02:00",
                            "to": "2027-01-01T00:00:00Z"})               # 400 days at most
    assert span["from"] == "2025-12-31T22:00:00Z"


def test_several_brokers_add_up(broker, make_broker, user):
    """Two more brokers on the same database, each with its own store:
    their counts and this broker's add up in one report."""
    b2, b3 = make_broker(), make_broker()
    u = user()
    seen = counting(u)
    data = pattern(2 * PS, os.urandom(16))
    f = create_file(u, make_share(u), data, PS)
    fid = f["file_id"]
    on2, on3 = b2.session(token=u.session_id), b3.session(token=u.session_id)
    for http in (on2, on3):
        http.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    for http in (u.http, on2, on3):
        for n, blob in enumerate(split(data, PS)):
            r = http.put(f"/v1/files/{fid}/pieces/{n}", data=blob)
            assert r.status_code == 201, r.text           # each store is its own
    for http in (on2, on3):
        r = http.get(f"/v1/files/{fid}/content", headers={"Range": "bytes=0-999"})
        assert r.status_code == 206 and len(r.content) == 1000
    r = on2.get(f"/v1/files/{fid}/content")
    assert r.status_code == 200 and r.content == data
    # the X-Sign of another broker is its own statement, under its own key
    assert parse_xsign(r.headers["X-Sign"])["key"] == r.headers["X-Broker-Id"] != \
        u.http.get(f"/v1/files/{fid}/manifest").headers["X-Broker-Id"]

    # b3 stops: what it counted is written on the way out
    assert b3.stop() == []
    expect(on2.get("/v1/usage"), 200)                  # flushes b2
    rep = usage(u.http)                                 # flushes this broker
    got = totals(rep["rows"], u.user_id)
    assert got == {"ingress_bytes": 3 * len(data), "egress_bytes": 2000 + len(data),
                   "requests": len(seen)}, (got, len(seen))
