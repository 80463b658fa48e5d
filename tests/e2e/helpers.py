"""helpers.py - the pieces of the end-to-end harness that tests use directly.

* PgCluster: a private PostgreSQL cluster (schemas/pg.sh) and psql access.
* Broker: one shoal-broker process on a free loopback port.
* BrokerPool: starts brokers and stops every one of them, by PID.
* User: a registered user with a logged-in requests.Session.
* expect(): status, error code, contract check and common headers in one call.
* parse_metrics(): Prometheus text to a dict.

Nothing here sleeps unboundedly: every wait has a deadline.
"""

import base64
import datetime
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 10            # seconds for one HTTP request
START_TIMEOUT = 15              # seconds for a broker to answer /healthz
STOP_TIMEOUT = 10               # seconds between SIGTERM and SIGKILL

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
REQ_ID_RE = re.compile(r"^[0-9a-f]{16}$")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


# --------------------------------------------------------------------------
# small utilities

def new_uuid():
    return str(uuid.uuid4())


def random_key(nbytes=32):
    """Standard padded base64 of nbytes random bytes (a stand-in public key)."""
    return base64.b64encode(os.urandom(nbytes)).decode()


def parse_time(text):
    """RFC 3339 UTC 'YYYY-MM-DDTHH:MM:SS[.f]Z' to an aware datetime."""
    assert isinstance(text, str) and TIME_RE.match(text), f"not an RFC 3339 UTC time: {text!r}"
    return datetime.datetime.fromisoformat(text[:-1]).replace(tzinfo=datetime.timezone.utc)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    """Call predicate() until it returns a true value or timeout seconds pass.
    Returns the value; raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# PostgreSQL

def pg_bindir():
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                  key=lambda p: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", str(p))])
    if not dirs:
        raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
    return dirs[-1]


class PgCluster:
    """A private cluster in dir, driven by schemas/pg.sh."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.pid = None
        self.psql_bin = str(pg_bindir() / "psql")
        self._names = itertools.count(1)

    def _pg_sh(self, cmd, timeout=120):
        env = dict(os.environ, SHOAL_PG_FSYNC="off")
        return subprocess.run(["sh", str(REPO / "schemas" / "pg.sh"), cmd, str(self.dir)],
                              env=env, capture_output=True, text=True, timeout=timeout)

    def start(self):
        r = self._pg_sh("start")
        if r.returncode != 0:
            raise RuntimeError(f"pg.sh start failed ({r.returncode}): {r.stderr}{r.stdout}")
        pidfile = self.dir / "pg" / "postmaster.pid"
        self.pid = int(pidfile.read_text().split()[0])

    def stop(self):
        """Stop the cluster; returns a list of problems (empty when clean)."""
        problems = []
        if self.pid is None:
            return problems
        try:
            r = self._pg_sh("stop", timeout=60)
            if r.returncode != 0:
                problems.append(f"pg.sh stop failed: {r.stderr}")
        except subprocess.TimeoutExpired:
            problems.append("pg.sh stop timed out")
        # pg_ctl -w returns once the postmaster has removed its pid file,
        # a moment before the process exits: give it that moment.
        if _pid_alive(self.pid) and not _wait_pid_gone(self.pid, 10):
            # pg_ctl did not manage: stop the postmaster we started, by PID.
            _signal(self.pid, signal.SIGQUIT)
            if not _wait_pid_gone(self.pid, 10):
                _signal(self.pid, signal.SIGKILL)
                _wait_pid_gone(self.pid, 10)
            problems.append(f"postmaster {self.pid} had to be signalled")
        self.pid = None
        return problems

    def conninfo(self, dbname="shoal"):
        return f"host={self.dir} dbname={dbname} user=shoal"

    def psql(self, dbname, sql, check=True):
        """Run sql in dbname; returns stdout (unaligned, tuples only, '|' separated)."""
        r = subprocess.run([self.psql_bin, "-h", str(self.dir), "-U", "shoal", "-d", dbname,
                            "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PGCONNECT_TIMEOUT="10"))
        if check and r.returncode != 0:
            raise AssertionError(f"psql failed on {sql!r}: {r.stderr}")
        return r.stdout

    def create_db(self, prefix="t"):
        name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{next(self._names)}".lower())[:60]
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return name


def _pid_alive(pid):
    """True while pid runs (a zombie that nobody reaps counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (FileNotFoundError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


# --------------------------------------------------------------------------
# HTTP sessions

class SourceAddressAdapter(HTTPAdapter):
    """Connect from a given local address, e.g. ('127.0.0.2', 0)."""

    def __init__(self, source_address, **kwargs):
        self._source_address = source_address
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["source_address"] = self._source_address
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


class HttpSession(requests.Session):
    """A requests.Session with a base URL, a default timeout, an optional
    Bearer token and an optional source address."""

    def __init__(self, base, token=None, source=None, recorder=None):
        super().__init__()
        self.base = base
        self.trust_env = False          # no proxies from the environment
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        if source is not None:
            adapter = SourceAddressAdapter((source, 0))
            self.mount("http://", adapter)
        if recorder is not None:
            self.hooks["response"].append(recorder)

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        if url.startswith("/"):
            url = (self.base() if callable(self.base) else self.base) + url
        return super().request(method, url, *args, **kwargs)


def expect(resp, status, code=None):
    """Assert the status (and the error code), the headers every response
    carries, and the body against the contract.  Returns the parsed body."""
    from contract import check  # tests/e2e/contract.py, the OpenAPI checker
    where = f"{resp.request.method} {resp.request.path_url}"
    assert resp.status_code == status, \
        f"{where}: expected {status}, got {resp.status_code}: {resp.text[:600]}"
    rid = resp.headers.get("X-Request-Id")
    assert rid is not None and REQ_ID_RE.match(rid), f"{where}: bad X-Request-Id {rid!r}"
    bid = resp.headers.get("X-Broker-Id")
    assert bid is not None and UUID_RE.match(bid), f"{where}: bad X-Broker-Id {bid!r}"
    body = check(resp)
    if code is not None:
        assert isinstance(body, dict) and "error" in body, f"{where}: no error body: {resp.text[:300]}"
        assert body["error"]["code"] == code, \
            f"{where}: expected error code {code!r}, got {body['error']!r}"
    return body


# --------------------------------------------------------------------------
# brokers

class Broker:
    """One shoal-broker process.  Construct, then launch() and wait_ready()
    (or start()).  stop() returns a list of problems found (sanitizer
    reports, leaked secrets, a broker that would not stop)."""

    def __init__(self, bin_dir, pg, dbname, workdir, admin_token=None, data_dir=None,
                 log_level="debug", args=(), flags=None):
        self.bin = str(Path(bin_dir).resolve() / "shoal-broker")
        self.pg = pg
        self.dbname = dbname
        self.database_url = pg.conninfo(dbname)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.log_file = self.workdir / "broker.log"
        self.stderr_file = self.workdir / "stderr.log"
        self.admin_token = admin_token if admin_token is not None else "adm-" + os.urandom(16).hex()
        self.log_level = log_level
        self.args = list(args)
        self.flags = dict(flags or {})
        self.port = None
        self.proc = None
        self.problems = []
        self.secrets = {self.admin_token: "admin token"} if self.admin_token else {}
        self.responses = []             # (method, url, status, headers, body) of every response
        self.api = self.session()
        self.admin = self.session(token=self.admin_token)

    # --- process ---

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def argv(self):
        argv = [self.bin, "--listen", f"127.0.0.1:{self.port}",
                "--database-url", self.database_url,
                "--data-dir", str(self.data_dir),
                "--log-file", str(self.log_file)]
        if self.admin_token:
            argv += ["--admin-token", self.admin_token]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        for key, value in self.flags.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        return argv + self.args

    def launch(self, port=None):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not os.access(self.bin, os.X_OK):
            raise AssertionError(f"{self.bin} does not exist or is not executable "
                                 f"(build it: make SAN=1 all)")
        self.port = port or self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        with open(self.stderr_file, "ab") as err:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=err, env=env, cwd=str(self.workdir))
        return self

    def wait_ready(self, timeout=START_TIMEOUT, retries=3):
        """Wait for GET /healthz == 200; relaunch on another port when the
        chosen one turned out to be taken."""
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                text = self.log_text()
                if retries > 0 and re.search(r"in use", text[-2000:], re.I):
                    retries -= 1
                    self.launch(port=free_port())
                    continue
                raise AssertionError(f"shoal-broker exited with {rc} before answering /healthz:\n"
                                     f"{' '.join(self.argv())}\n{tail(text)}")
            try:
                r = requests.get(self.url + "/healthz", timeout=1)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise AssertionError(f"shoal-broker did not answer /healthz with 200 within "
                                     f"{timeout}s:\n{tail(self.log_text())}")
            time.sleep(0.05)

    def start(self, timeout=START_TIMEOUT):
        return self.launch().wait_ready(timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, a bounded wait, SIGKILL as a last resort.  Returns the
        problems found (also accumulated in self.problems)."""
        problems = []
        if self.proc is None:
            return problems
        rc = self.proc.poll()
        if rc is not None:
            problems.append(f"broker {self.proc.pid} had exited by itself with status {rc}")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(STOP_TIMEOUT)
                if rc not in (0, -signal.SIGTERM):
                    problems.append(f"broker {self.proc.pid} exited with status {rc} after SIGTERM")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
                problems.append(f"broker {self.proc.pid} ignored SIGTERM for {STOP_TIMEOUT}s; killed")
        self.api.close()
        self.admin.close()
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                i = text.index(marker)
                problems.append(f"sanitizer report in broker output:\n{text[max(0, i - 200):i + 3000]}")
                break
        for secret, what in self.secrets.items():
            if secret and secret in text:
                problems.append(f"{what} {secret!r} appears in the broker log")
        problems = [f"[{self.workdir.name}] {p}" for p in problems]
        self.problems += problems
        self.proc = None
        return problems

    def restart(self, timeout=START_TIMEOUT):
        self.stop()
        return self.launch().wait_ready(timeout)

    def log_text(self):
        parts = []
        for f in (self.log_file, self.stderr_file):
            try:
                parts.append(f.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(parts)

    # --- HTTP ---

    def _record(self, resp, *args, **kwargs):
        ctype = resp.headers.get("Content-Type", "")
        # Decoding a large binary body as text costs seconds: keep its size.
        body = resp.text if ctype.startswith(("application/json", "text/")) \
            else f"<{len(resp.content)} bytes of {ctype or 'no type'}>"
        self.responses.append((resp.request.method, resp.request.url, resp.status_code,
                               str(dict(resp.headers)), body))

    def session(self, token=None, source=None):
        """A new HttpSession to this broker (responses are recorded)."""
        return HttpSession(lambda: self.url, token=token, source=source,
                           recorder=self._record)

    def get(self, path, **kw):
        return self.api.get(path, **kw)

    def post(self, path, **kw):
        return self.api.post(path, **kw)

    def add_secret(self, value, what):
        self.secrets[value] = what


class BrokerPool:
    """Starts brokers in their own folders and stops all of them."""

    def __init__(self, bin_dir, pg, default_db, workdir, prefix):
        self.bin_dir = bin_dir
        self.pg = pg
        self.default_db = default_db
        self.workdir = Path(workdir)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)
        self.brokers = []
        self._n = itertools.count(1)

    def new(self, database=None, fresh_db=False, args=(), **flags):
        """A Broker, not launched.  database: a database name (default: the
        module's); fresh_db: a new empty database.  admin_token, data_dir and
        log_level go to Broker; every other keyword becomes --key value."""
        if fresh_db:
            database = self.pg.create_db(self.prefix)
        kw = {k: flags.pop(k) for k in ("admin_token", "data_dir", "log_level") if k in flags}
        b = Broker(self.bin_dir, self.pg, database or self.default_db,
                   self.workdir / f"{self.prefix}-broker-{next(self._n)}", args=args,
                   flags=flags, **kw)
        self.brokers.append(b)
        return b

    def start(self, **kw):
        """A new broker, running and healthy."""
        return self.new(**kw).start()

    def stop_all(self):
        problems = []
        for b in self.brokers:
            try:
                problems += b.stop()
            except Exception as e:  # keep stopping the others
                problems.append(f"stopping {b.workdir.name}: {e!r}")
            problems += [p for p in b.problems if p not in problems]
        return problems


# --------------------------------------------------------------------------
# users

class User:
    def __init__(self, broker, user_id, auth_id, public_key):
        self.broker = broker
        self.user_id = user_id
        self.auth_id = auth_id
        self.public_key = public_key
        self.session_id = None
        self.expires_at = None
        self.http = None

    def login(self, source=None):
        """POST /v1/sessions; sets session_id and http (a session carrying it).
        Returns the response body."""
        api = self.broker.api if source is None else self.broker.session(source=source)
        r = api.post("/v1/sessions", json={"user_id": self.user_id, "auth_id": self.auth_id})
        body = expect(r, 201)
        self.session_id = body["session_id"]
        self.expires_at = body["expires_at"]
        self.http = self.broker.session(token=self.session_id, source=source)
        return body

    def new_session(self, source=None):
        """Log in once more, without changing this user's current session;
        returns (session_id, HttpSession)."""
        api = self.broker.api if source is None else self.broker.session(source=source)
        r = api.post("/v1/sessions", json={"user_id": self.user_id, "auth_id": self.auth_id})
        body = expect(r, 201)
        return body["session_id"], self.broker.session(token=body["session_id"], source=source)


def register(broker, user_id=None, public_key=None, invite=None, api=None):
    """POST /v1/users; returns the response (not checked)."""
    payload = {"user_id": user_id or new_uuid(), "public_key": public_key or random_key()}
    if invite is not None:
        payload["invite"] = invite
    r = (api or broker.api).post("/v1/users", json=payload)
    if r.status_code == 201:
        try:
            broker.add_secret(r.json()["auth_id"], "auth_id")
        except (ValueError, KeyError, TypeError):
            pass
    return r


def make_user(broker, login=True, invite=None, source=None):
    """A registered (and by default logged-in) user."""
    user_id, key = new_uuid(), random_key()
    body = expect(register(broker, user_id, key, invite=invite), 201)
    u = User(broker, body["user_id"], body["auth_id"], key)
    if login:
        u.login(source=source)
    return u


def make_invite(broker, expires_in=None):
    payload = {} if expires_in is None else {"expires_in": expires_in}
    body = expect(broker.admin.post("/v1/invites", json=payload), 201)
    broker.add_secret(body["invite"], "invite")
    return body["invite"]


# --------------------------------------------------------------------------
# raw HTTP from another source address

def raw_request(broker, method, path, headers=None, body=None, source="127.0.0.1",
                close_wait=3.0):
    """One HTTP/1.1 request over a plain socket bound to source (so that
    nothing on the client side closes it).  Returns (status, headers dict
    with lower-case names, body bytes, whether the broker closed the
    connection within close_wait seconds after its answer)."""
    body = body or b""
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{broker.port}"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if body:
        head.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", broker.port), timeout=DEFAULT_TIMEOUT,
                                  source_address=(source, 0)) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed before an answer: {data!r}"
            data += chunk
        head_bytes, rest = data.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        assert "chunked" not in hdrs.get("transfer-encoding", ""), "chunked answer not supported"
        length = int(hdrs.get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk, "connection closed in the middle of the body"
            rest += chunk
        closed = _peer_closed(s, close_wait)
        return status, hdrs, rest[:length], closed


def _peer_closed(sock, timeout=3.0):
    """True when the peer closes sock within timeout (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# --------------------------------------------------------------------------
# metrics

_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_metrics(text):
    """Prometheus text format to {(name, frozenset(labels.items())): float}."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        name, labels_text, value = m.groups()
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = _LABEL_RE.match(labels_text, pos)
                assert lm, f"unparseable labels in {line!r}"
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric(metrics, name, **labels):
    """The sum of every series of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def cleanup_dir(path):
    shutil.rmtree(path, ignore_errors=True)
