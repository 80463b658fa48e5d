"""The peer command-line tool, bin/shoal, against a real broker: register,
login and logout, whoami, sessions, trust, --json, --help, exit codes, the
identity file and its session cache, and logging in again by itself.

Every run gets its own XDG_CONFIG_HOME and HOME (a temporary folder), and
is checked for sanitizer reports and for the secrets of the identity (the
Authentication ID and the secret key) in its output.
"""

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (SANITIZER_MARKERS, UUID4_RE, UUID_RE, expect, free_port,
                     make_invite, make_user, new_uuid, parse_time, utcnow)

EXIT_OK, EXIT_BROKER, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
EXIT_NOTFOUND, EXIT_CONFLICT, EXIT_NET, EXIT_LOCAL = 4, 5, 6, 7

RUN_TIMEOUT = 30


@pytest.fixture(scope="session")
def shoal_bin(bin_dir):
    p = Path(bin_dir) / "shoal"
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} does not exist: build it with 'make SAN=1 all' "
                    f"or point SHOAL_BIN at its folder")
    return p


class Cli:
    """bin/shoal with a private configuration folder."""

    def __init__(self, binary, root, broker=None):
        self.bin = str(binary)
        self.root = Path(root)
        self.home = self.root / "home"
        self.cfg = self.root / "cfg"
        self.home.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.secrets = {}

    @property
    def identity_path(self):
        return self.cfg / "shoal" / "identity.json"

    @property
    def session_path(self):
        return Path(str(self.identity_path) + ".session")

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SHOAL_") and k != "XDG_CONFIG_HOME"}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.cfg))
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update(extra or {})
        return env

    def run(self, *args, rc=None, env=None):
        """Run shoal with args; check rc when given.  Returns the
        CompletedProcess (text)."""
        r = subprocess.run([self.bin, *map(str, args)], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, env=self.env(env), stdin=subprocess.DEVNULL)
        where = f"shoal {' '.join(map(str, args))}"
        for marker in SANITIZER_MARKERS:
            assert marker not in r.stderr, f"{where}: sanitizer report:\n{r.stderr}"
        self.learn_secrets()
        for secret, what in self.secrets.items():
            assert secret not in r.stdout and secret not in r.stderr, \
                f"{where}: the {what} appears in the output"
        if rc is not None:
            assert r.returncode == rc, \
                f"{where}: exit {r.returncode}, expected {rc}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        return r

    def json(self, *args, rc=0, env=None):
        """Run shoal --json args; the output must be one JSON object."""
        r = self.run("--json", *args, rc=rc, env=env)
        lines = r.stdout.splitlines()
        assert len(lines) == 1, f"shoal --json {' '.join(args)}: not one line: {r.stdout!r}"
        body = json.loads(lines[0])
        assert isinstance(body, dict), body
        if rc != 0:
            assert set(body) == {"error"}, body
            assert set(body["error"]) == {"code", "message"}, body
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        return body

    def register(self, *extra, broker=None):
        broker = broker or self.broker
        r = self.run("register", "--broker", broker.url, *extra, rc=0)
        return r.stdout.strip()

    def identity(self):
        return json.loads(self.identity_path.read_text())

    def session(self):
        return json.loads(self.session_path.read_text())

    def learn_secrets(self):
        """Remember the secrets of the identity, and tell the broker's log
        checker about them."""
        try:
            ident = self.identity()
        except (FileNotFoundError, ValueError):
            return
        for key, what in (("auth_id", "auth_id"), ("secret_key", "secret key")):
            value = ident.get(key)
            if value and value not in self.secrets:
                self.secrets[value] = what
                if self.broker is not None:
                    self.broker.add_secret(value, f"{what} of a CLI identity")


@pytest.fixture
def cli(shoal_bin, broker, tmp_path):
    return Cli(shoal_bin, tmp_path, broker)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def session_alive(broker, sid):
    """True when the broker still accepts sid."""
    r = broker.session(token=sid).get("/v1/sessions")
    if r.status_code == 200:
        return True
    assert r.status_code in (401, 403), r.text
    return False


# --- register ---------------------------------------------------------------

def test_register_writes_a_private_identity(cli, broker, user):
    uid = cli.register()
    assert UUID4_RE.match(uid), uid
    ident = cli.identity()
    assert set(ident) == {"user_id", "public_key", "secret_key", "auth_id", "broker",
                          "broker_id", "broker_key"}
    assert ident["user_id"] == uid
    assert ident["broker"] == broker.url
    assert UUID4_RE.match(ident["auth_id"])
    assert len(ident["public_key"]) == 44 and len(ident["secret_key"]) == 88
    assert mode(cli.identity_path) == 0o600
    assert mode(cli.identity_path.parent) == 0o700
    # the broker knows the user with that key
    other = user()
    body = expect(other.http.get(f"/v1/users/{uid}"), 200)
    assert body["public_key"] == ident["public_key"]
    # the answering broker is pinned, with the key it lists for itself
    bid = broker.get("/healthz").headers["X-Broker-Id"]
    assert ident["broker_id"] == bid
    listed = {b["broker_id"]: b for b in expect(other.http.get("/v1/brokers"), 200)["brokers"]}
    assert ident["broker_key"] == listed[bid]["public_key"]
    # and a live session is cached beside it
    sess = cli.session()
    assert set(sess) == {"session_id", "expires_at", "broker"}
    assert sess["broker"] == broker.url
    assert mode(cli.session_path) == 0o600
    assert parse_time(sess["expires_at"]) > utcnow()
    assert session_alive(broker, sess["session_id"])


def test_register_trailing_slash_is_the_same_broker(cli, broker):
    cli.run("register", "--broker", broker.url + "/", rc=EXIT_OK)
    assert cli.identity()["broker"] == broker.url


def test_register_json_never_shows_secrets(cli, broker):
    body = cli.json("register", "--broker", broker.url)
    ident = cli.identity()
    assert body["user_id"] == ident["user_id"]
    assert body["public_key"] == ident["public_key"]
    assert body["broker"] == broker.url
    assert body["broker_id"] == ident["broker_id"]
    assert "auth_id" not in body and "secret_key" not in body
    assert ident["auth_id"] not in json.dumps(body)


def test_register_refuses_an_existing_identity(cli, broker):
    uid = cli.register()
    before = cli.identity_path.read_bytes()
    r = cli.run("register", "--broker", broker.url, rc=EXIT_CONFLICT)
    assert "--force" in r.stderr and r.stdout == ""
    assert cli.identity_path.read_bytes() == before
    err = cli.json("register", "--broker", broker.url, rc=EXIT_CONFLICT)
    assert "--force" in err["error"]["message"]
    assert cli.identity_path.read_bytes() == before

    old_sid = cli.session()["session_id"]
    uid2 = cli.register("--force")
    assert uid2 != uid and UUID4_RE.match(uid2)
    assert cli.identity()["user_id"] == uid2
    assert mode(cli.identity_path) == 0o600
    # the cached session is the new user's
    assert cli.session()["session_id"] != old_sid
    assert cli.json("whoami")["user_id"] == uid2


def test_register_with_invite(shoal_bin, make_broker, tmp_path):
    b = make_broker(registration="invite")
    cli = Cli(shoal_bin, tmp_path, b)
    r = cli.run("register", "--broker", b.url, rc=EXIT_AUTH)
    assert r.stderr.startswith("shoal: ")
    assert not cli.identity_path.exists()
    uid = cli.register("--invite", make_invite(b))
    assert cli.identity()["user_id"] == uid


def test_register_unreachable_broker_is_6(cli):
    url = f"http://127.0.0.1:{free_port()}"
    r = cli.run("register", "--broker", url, rc=EXIT_NET)
    assert r.stderr.startswith("shoal: ") and r.stdout == ""
    assert not cli.identity_path.exists()
    err = cli.json("register", "--broker", url, rc=EXIT_NET)
    assert err["error"]["code"] == "network_error"


@pytest.mark.parametrize("args", [
    ["register"],
    ["register", "--broker"],
    ["register", "--broker", "ftp://example.org"],
    ["register", "--broker", "http://127.0.0.1:1", "extra"],
    ["register", "--brokr", "http://127.0.0.1:1"],
])
def test_register_usage_errors_are_2(cli, args):
    r = cli.run(*args, rc=EXIT_USAGE)
    assert r.stderr.startswith("shoal: ")
    assert "usage: shoal register" in r.stderr
    assert not cli.identity_path.exists()
    assert cli.json(*args, rc=EXIT_USAGE)["error"]["code"] == "usage"


# --- identity file ------------------------------------------------------------

def test_no_identity_is_7(cli):
    for args in (["whoami"], ["login"], ["sessions"], ["trust", "ls"]):
        r = cli.run(*args, rc=EXIT_LOCAL)
        assert "register" in r.stderr
        assert cli.json(*args, rc=EXIT_LOCAL)["error"]["message"]


def test_identity_readable_by_others_is_refused(cli):
    cli.register()
    os.chmod(cli.identity_path, 0o644)
    r = cli.run("whoami", rc=EXIT_LOCAL)
    assert "chmod 600" in r.stderr
    os.chmod(cli.identity_path, 0o640)
    cli.run("whoami", rc=EXIT_LOCAL)
    os.chmod(cli.identity_path, 0o600)
    cli.run("whoami", rc=EXIT_OK)


def test_damaged_identity_is_7(cli):
    cli.register()
    ident = cli.identity()
    ident["public_key"] = "not base64"
    cli.identity_path.write_text(json.dumps(ident))
    r = cli.run("whoami", rc=EXIT_LOCAL)
    assert "public_key" in r.stderr


def test_identity_flag_overrides_the_default(cli, broker, tmp_path):
    path = tmp_path / "elsewhere" / "me.json"
    r = cli.run("--identity", path, "register", "--broker", broker.url, rc=EXIT_OK)
    uid = r.stdout.strip()
    assert path.exists() and mode(path) == 0o600
    assert Path(str(path) + ".session").exists()
    assert not cli.identity_path.exists()
    # before or after the command, with = or not
    assert cli.json("whoami", f"--identity={path}")["user_id"] == uid
    cli.run("whoami", rc=EXIT_LOCAL)


def test_home_is_used_without_xdg(cli, broker):
    env = {"XDG_CONFIG_HOME": ""}
    r = cli.run("register", "--broker", broker.url, rc=EXIT_OK, env=env)
    path = cli.home / ".config" / "shoal" / "identity.json"
    assert json.loads(path.read_text())["user_id"] == r.stdout.strip()


# --- whoami -------------------------------------------------------------------

def test_whoami(cli, broker):
    uid = cli.register()
    ident = cli.identity()
    r = cli.run("whoami", rc=EXIT_OK)
    for value in (uid, ident["public_key"], broker.url, ident["broker_id"]):
        assert value in r.stdout
    body = cli.json("whoami")
    assert body["user_id"] == uid
    assert body["public_key"] == ident["public_key"]
    assert body["broker"] == broker.url
    assert body["broker_id"] == ident["broker_id"]
    assert body["broker_key"] == ident["broker_key"]
    assert body["session"]["session_id"] == cli.session()["session_id"]
    assert body["session"]["state"] == "cached"
    parse_time(body["created_at"])


def test_whoami_unknown_to_the_broker(shoal_bin, make_broker, tmp_path):
    """An identity from another database: the broker does not know it."""
    a = make_broker(fresh_db=True)
    b = make_broker(fresh_db=True)
    cli = Cli(shoal_bin, tmp_path, a)
    cli.register(broker=a)
    ident = cli.identity()
    ident["broker"] = b.url
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    err = cli.json("whoami", rc=EXIT_NOTFOUND)     # POST /v1/sessions: 404 unknown user
    assert err["error"]["code"] == "not_found"


def test_broker_gone_is_6(cli):
    cli.register()
    sid = cli.session()["session_id"]
    ident = cli.identity()
    ident["broker"] = f"http://127.0.0.1:{free_port()}"
    cli.identity_path.write_text(json.dumps(ident))
    for args in (["whoami"], ["sessions"], ["trust", "ls"], ["login"]):
        assert cli.json(*args, rc=EXIT_NET)["error"]["code"] == "network_error"
    # the cache names another broker: nothing to revoke there, it is dropped
    cli.json("logout")
    assert not cli.session_path.exists()
    # a session of this broker that cannot be revoked now is kept for later
    cli.session_path.write_text(json.dumps({"session_id": sid, "expires_at": "2099-01-01T00:00:00Z",
                                            "broker": ident["broker"]}))
    os.chmod(cli.session_path, 0o600)
    cli.run("logout", rc=EXIT_NET)
    assert cli.session()["session_id"] == sid


def test_wrong_auth_id_is_3(cli):
    cli.register()
    ident = cli.identity()
    ident["auth_id"] = new_uuid()
    cli.identity_path.write_text(json.dumps(ident))
    os.chmod(cli.identity_path, 0o600)
    cli.session_path.unlink()
    err = cli.json("login", rc=EXIT_AUTH)
    assert err["error"]["code"] == "invalid_auth_id"


# --- login, logout, sessions -------------------------------------------------

def test_login_opens_and_caches_a_new_session(cli, broker):
    cli.register()
    first = cli.session()["session_id"]
    r = cli.run("login", rc=EXIT_OK)
    sid = cli.session()["session_id"]
    assert sid != first and sid in r.stdout
    assert cli.session()["expires_at"] in r.stdout
    body = cli.json("login")
    assert UUID4_RE.match(body["session_id"])
    assert body["session_id"] == cli.session()["session_id"]
    assert body["user_id"] == cli.identity()["user_id"]
    parse_time(body["expires_at"])
    assert mode(cli.session_path) == 0o600


def test_logout_revokes_and_forgets_the_session(cli, broker):
    cli.register()
    sid = cli.session()["session_id"]
    r = cli.run("logout", rc=EXIT_OK)
    assert sid in r.stdout
    assert not cli.session_path.exists()
    assert not session_alive(broker, sid)
    # nothing left to log out
    assert cli.json("logout") == {"session_id": None, "revoked": False}
    cli.run("login", rc=EXIT_OK)
    sid2 = cli.session()["session_id"]
    assert cli.json("logout") == {"session_id": sid2, "revoked": True}
    assert not session_alive(broker, sid2)


def test_logout_of_a_session_already_revoked(cli, broker):
    cli.register()
    sid = cli.session()["session_id"]
    expect(broker.session(token=sid).delete(f"/v1/sessions/{sid}"), 200)
    assert cli.json("logout") == {"session_id": sid, "revoked": False}
    assert not cli.session_path.exists()


def test_sessions_lists_own_sessions_and_marks_this_one(cli, broker):
    cli.register()
    first = cli.session()["session_id"]
    cli.run("login", rc=EXIT_OK)
    current = cli.session()["session_id"]
    body = cli.json("sessions")
    ids = {s["session_id"]: s for s in body["sessions"]}
    assert {first, current} <= set(ids)
    assert ids[current]["current"] is True and ids[first]["current"] is False
    r = cli.run("sessions", rc=EXIT_OK)
    marked = [line for line in r.stdout.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and current in marked[0]
    assert any(first in line and not line.startswith("*") for line in r.stdout.splitlines())


# --- logging in again by itself ----------------------------------------------

def test_logs_in_again_after_the_session_was_revoked(cli, broker):
    uid = cli.register()
    old = cli.session()["session_id"]
    expect(broker.session(token=old).delete(f"/v1/sessions/{old}"), 200)
    body = cli.json("whoami")
    assert body["user_id"] == uid and body["session"]["state"] == "new"
    new = cli.session()["session_id"]
    assert new != old and body["session"]["session_id"] == new
    assert session_alive(broker, new)
    # every command does it
    expect(broker.session(token=new).delete(f"/v1/sessions/{new}"), 200)
    cli.json("trust", "ls")
    assert cli.session()["session_id"] != new


def test_logs_in_again_after_the_session_expired(shoal_bin, make_broker, tmp_path):
    b = make_broker(session_ttl="2s")
    cli = Cli(shoal_bin, tmp_path, b)
    cli.register()
    # a cache that expires soon is not even tried
    old = cli.session()["session_id"]
    assert cli.json("whoami")["session"]["state"] == "new"
    assert cli.session()["session_id"] != old
    # a cache that claims a longer life than the broker gave: the broker
    # answers 401 session_expired and the command logs in again
    sess = cli.session()
    sess["expires_at"] = "2099-01-01T00:00:00Z"
    cli.session_path.write_text(json.dumps(sess))
    os.chmod(cli.session_path, 0o600)
    time.sleep(3)
    body = cli.json("sessions")
    assert cli.session()["session_id"] != sess["session_id"]
    assert any(s["current"] for s in body["sessions"])


def test_logs_in_again_when_the_session_is_bound_elsewhere(cli, broker):
    cli.register()
    ident = cli.identity()
    r = broker.session(source="127.0.0.2").post(
        "/v1/sessions", json={"user_id": ident["user_id"], "auth_id": ident["auth_id"]})
    other = expect(r, 201)
    assert other["ip"] == "127.0.0.2"
    cli.session_path.write_text(json.dumps({"session_id": other["session_id"],
                                            "expires_at": other["expires_at"],
                                            "broker": broker.url}))
    os.chmod(cli.session_path, 0o600)
    body = cli.json("sessions")
    assert cli.session()["session_id"] != other["session_id"]
    assert other["session_id"] in {s["session_id"] for s in body["sessions"]}


def test_a_cache_readable_by_others_is_not_used(cli, broker):
    cli.register()
    old = cli.session()["session_id"]
    os.chmod(cli.session_path, 0o644)
    cli.run("whoami", rc=EXIT_OK)
    assert cli.session()["session_id"] != old
    assert mode(cli.session_path) == 0o600


# --- trust --------------------------------------------------------------------

def test_trust_add_ls_rm(cli, broker):
    me = cli.register()
    a = make_user(broker, login=False)
    b = make_user(broker, login=False)
    assert cli.json("trust", "ls") == {"user_id": me, "user_ids": []}
    assert cli.run("trust", "ls", rc=EXIT_OK).stdout == ""

    r = cli.run("trust", "add", a.user_id, rc=EXIT_OK)
    assert a.user_id in r.stdout
    body = cli.json("trust", "add", b.user_id.upper())
    assert body == {"user_id": me, "user_ids": sorted([a.user_id, b.user_id])}
    # adding again changes nothing
    assert cli.json("trust", "add", a.user_id) == body
    assert cli.run("trust", "ls", rc=EXIT_OK).stdout.split() == body["user_ids"]

    assert cli.json("trust", "rm", a.user_id) == {"user_id": me, "user_ids": [b.user_id]}
    err = cli.json("trust", "rm", a.user_id, rc=EXIT_NOTFOUND)
    assert a.user_id in err["error"]["message"]
    cli.run("trust", "rm", b.user_id, rc=EXIT_OK)
    assert cli.json("trust", "ls")["user_ids"] == []


def test_trust_unknown_user_is_4(cli, broker):
    cli.register()
    unknown = new_uuid()
    r = cli.run("trust", "add", unknown, rc=EXIT_NOTFOUND)
    assert r.stderr.startswith("shoal: ") and unknown in r.stderr
    err = cli.json("trust", "add", unknown, rc=EXIT_NOTFOUND)
    assert err["error"]["code"] == "not_found"
    assert cli.json("trust", "ls")["user_ids"] == []


def test_trust_self_is_refused_by_the_broker(cli):
    me = cli.register()
    err = cli.json("trust", "add", me, rc=EXIT_BROKER)
    assert err["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("args", [
    ["trust"],
    ["trust", "bogus"],
    ["trust", "add"],
    ["trust", "add", "not-a-uuid"],
    ["trust", "add", "11111111-2222-4333-8444-555555555555", "extra"],
    ["trust", "rm"],
    ["trust", "ls", "extra"],
    ["trust", "ls", "--all"],
])
def test_trust_usage_errors_are_2(cli, args):
    cli.register()
    r = cli.run(*args, rc=EXIT_USAGE)
    assert "usage: shoal trust" in r.stderr
    assert cli.json(*args, rc=EXIT_USAGE)["error"]["code"] == "usage"


# --- help, version, usage -------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--help"], ["-h"], ["help"], ["register", "--help"], ["login", "--help"],
    ["logout", "--help"], ["whoami", "--help"], ["sessions", "--help"],
    ["trust", "--help"], ["trust", "add", "--help"], ["trust", "rm", "-h"],
    ["trust", "ls", "--help"], ["help", "trust"], ["--help", "whoami"],
])
def test_help_everywhere(cli, args):
    r = cli.run(*args, rc=EXIT_OK)
    assert r.stdout.startswith("usage: shoal") and r.stderr == ""
    body = cli.json(*args)
    assert body["usage"].startswith("usage: shoal")
    assert not cli.identity_path.exists()


def test_version(cli):
    assert cli.run("--version", rc=EXIT_OK).stdout.startswith("shoal ")
    assert "version" in cli.json("--version")


@pytest.mark.parametrize("args", [[], ["bogus"], ["--bogus"], ["whoami", "--bogus"],
                                  ["login", "extra"], ["help", "bogus"]])
def test_usage_errors_are_2(cli, args):
    if args and args[0] in ("whoami", "login"):
        cli.register()
    r = cli.run(*args, rc=EXIT_USAGE)
    assert r.stderr.startswith("shoal: ")
    assert cli.json(*args, rc=EXIT_USAGE)["error"]["code"] == "usage"


def test_every_command_speaks_json(cli, broker):
    """Every command prints exactly one JSON object with --json, given
    before or after the command."""
    cli.json("register", "--broker", broker.url)
    other = make_user(broker, login=False)
    for args in (["whoami"], ["login"], ["sessions"], ["trust", "ls"],
                 ["trust", "add", other.user_id], ["trust", "rm", other.user_id],
                 ["logout"]):
        cli.json(*args)
    for args in (["whoami", "--json"], ["trust", "ls", "--json"]):
        assert isinstance(json.loads(cli.run(*args, rc=EXIT_OK).stdout), dict)
