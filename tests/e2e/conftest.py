"""conftest.py - fixtures of the end-to-end suite.

Everything started here is stopped here, by PID, in finalizers:
  pg            (session) a private PostgreSQL cluster in a temporary folder
  database      (module)  a fresh database for the test module
  broker_flags  (module)  extra flags of the module's default broker; a
                          module overrides it, e.g. {"body_limit": "4096"}
  broker        (module)  the module's default broker on that database
  module_brokers (module) a BrokerPool whose brokers live for the module
  make_broker   (function) factory: make_broker(session_ttl="2s", ...)
  user          (function) factory: user() -> helpers.User, registered and
                          logged in on the module's broker (or user(b) on b)

Environment: SHOAL_BIN (folder holding shoal-broker; default
build/asan/bin), SHOAL_E2E_KEEP=1 keeps the temporary folder.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402


@pytest.fixture(scope="session")
def bin_dir():
    d = Path(os.environ.get("SHOAL_BIN") or helpers.REPO / "build" / "asan" / "bin")
    if not (d / "shoal-broker").exists():
        pytest.fail(f"{d}/shoal-broker does not exist: build it with 'make SAN=1 all' "
                    f"or point SHOAL_BIN at its folder")
    return d


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="shoal-e2e-"))
    os.chmod(d, 0o755)       # PostgreSQL runs as another user below it
    yield d
    if not os.environ.get("SHOAL_E2E_KEEP"):
        helpers.cleanup_dir(d)


_session_problems = []


@pytest.fixture(scope="session")
def pg(workdir):
    cluster = helpers.PgCluster(workdir / "pg")
    try:
        cluster.start()
        yield cluster
    finally:
        # pytest cannot fail a test from a session teardown: the problem is
        # reported and the exit status set in pytest_sessionfinish.
        _session_problems.extend("PostgreSQL: " + p for p in cluster.stop())


def pytest_sessionfinish(session, exitstatus):
    if _session_problems:
        sys.stderr.write("\n".join(["", "e2e harness problems:"] + _session_problems) + "\n")
        if session.exitstatus == 0:
            session.exitstatus = 1


def _module_prefix(request):
    return request.module.__name__.rsplit(".", 1)[-1]


@pytest.fixture(scope="module")
def database(pg, request):
    return pg.create_db(_module_prefix(request))


@pytest.fixture(scope="module")
def broker_flags():
    return {}


@pytest.fixture(scope="module")
def module_brokers(bin_dir, pg, database, workdir, request):
    pool = helpers.BrokerPool(bin_dir, pg, database, workdir, _module_prefix(request))
    yield pool
    problems = pool.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def broker(module_brokers, broker_flags):
    return module_brokers.start(**broker_flags)


@pytest.fixture
def make_broker(bin_dir, pg, database, workdir, request):
    pool = helpers.BrokerPool(bin_dir, pg, database, workdir,
                              _module_prefix(request) + "-" + request.node.name[:40])
    yield pool.start
    problems = pool.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def user(request):
    """user(broker=None, login=True, invite=None) -> helpers.User."""
    def make(b=None, login=True, invite=None, source=None):
        if b is None:
            b = request.getfixturevalue("broker")
        return helpers.make_user(b, login=login, invite=invite, source=source)
    return make
