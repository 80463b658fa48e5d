"""Migrations: brokers started together on one fresh database take turns
(advisory lock); every migration is applied once; restarts apply nothing."""

import re

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import REPO, expect, make_user

MIGRATIONS = sorted(p.stem for p in (REPO / "schemas" / "sql").glob("[0-9]*.sql"))


def applied(pg, db):
    rows = pg.psql(db, "SELECT version, name FROM schema_migrations ORDER BY version, name")
    return [tuple(line.split("|", 1)) for line in rows.splitlines() if line]


def expected_rows():
    rows = []
    for stem in MIGRATIONS:
        m = re.match(r"^(\d+)_(.+)$", stem)
        rows.append((str(int(m.group(1))), m.group(2)))
    return rows


def test_there_are_migrations():
    assert MIGRATIONS, "no schemas/sql/NNN_*.sql files"
    versions = [int(s.split("_", 1)[0]) for s in MIGRATIONS]
    assert len(set(versions)) == len(versions), f"two migrations share a number: {MIGRATIONS}"


def test_two_brokers_on_one_empty_database(pg, module_brokers):
    db = pg.create_db("migrations_race")
    assert pg.psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").strip() == "0"
    b1 = module_brokers.new(database=db)
    b2 = module_brokers.new(database=db)
    b1.launch()
    b2.launch()                     # at the same moment, before either is ready
    b1.wait_ready()
    b2.wait_ready()

    rows = applied(pg, db)
    versions = [v for v, _ in rows]
    assert len(versions) == len(set(versions)), f"a migration recorded twice: {rows}"
    want = expected_rows()
    got = [(v, n) for v, n in rows]
    assert [v for v, _ in got] == [v for v, _ in want], (got, want)
    for (_, name), (_, want_name) in zip(got, want):
        assert want_name in name or name in want_name, (got, want)
    # the log of each broker says how many it applied; together: each once
    applied_lines = sum(len(re.findall(r"applied migration", b.log_text())) for b in (b1, b2))
    assert applied_lines == len(MIGRATIONS), applied_lines

    # both work, on the same data, and list each other
    u = make_user(b1)
    sid2, http2 = u.new_session()
    expect(b2.session(token=u.session_id).get("/v1/sessions"), 200)
    brokers = expect(b2.session(token=sid2).get("/v1/brokers"), 200)["brokers"]
    ids = {b["broker_id"] for b in brokers}
    id1 = b1.api.get("/healthz").headers["X-Broker-Id"]
    id2 = b2.api.get("/healthz").headers["X-Broker-Id"]
    assert id1 != id2, "two brokers with different data dirs share an id"
    assert {id1, id2} <= ids, brokers


def test_restart_applies_nothing_new(pg, module_brokers):
    db = pg.create_db("migrations_restart")
    b = module_brokers.start(database=db)
    before = pg.psql(db, "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")
    u = make_user(b)
    b.restart()
    after = pg.psql(db, "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")
    assert before == after
    # the data survived
    expect(b.session(token=u.session_id).get("/v1/sessions"), 200)
