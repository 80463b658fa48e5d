"""The session cache of every broker stays exact when brokers share one
database: a session deleted through one broker, or straight in the
database, is refused by every other broker at once, not after the cache's
time to live (60 s by default)."""
import time

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import expect, make_user


def refused_within(http, path, seconds, status):
    """Poll until path answers status; the time it took."""
    start = time.monotonic()
    while True:
        r = http.get(path)
        if r.status_code == status:
            return time.monotonic() - start
        assert time.monotonic() - start < seconds, \
            f"{path} still answers {r.status_code} after {seconds} s"
        time.sleep(0.05)


def test_revoked_through_another_broker(make_broker):
    a = make_broker(fresh_db=True)
    b = make_broker(database=a.dbname)
    u = make_user(a)                         # logged in through broker a
    observer = make_user(b)
    check_path = f"/v1/sessions/{u.session_id}?ip=127.0.0.1"
    # both brokers now hold the session in their caches
    expect(observer.http.get(check_path), 200)
    on_b = b.session(token=u.session_id)
    expect(on_b.get("/v1/sessions"), 200)

    expect(u.http.delete(f"/v1/sessions/{u.session_id}"), 200)

    took = refused_within(observer.http, check_path, 5, 404)
    assert took < 5
    expect(on_b.get("/v1/sessions"), 403, "session_unknown")


def test_deleted_in_the_database(make_broker):
    a = make_broker(fresh_db=True)
    u = make_user(a)
    observer = make_user(a)
    check_path = f"/v1/sessions/{u.session_id}?ip=127.0.0.1"
    expect(observer.http.get(check_path), 200)
    expect(u.http.get("/v1/sessions"), 200)

    a.pg.psql(a.dbname, f"DELETE FROM sessions WHERE session_id = '{u.session_id}'")

    refused_within(observer.http, check_path, 5, 404)
    expect(u.http.get("/v1/sessions"), 403, "session_unknown")
