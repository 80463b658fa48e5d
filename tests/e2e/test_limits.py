"""Connection limits: idle timeout, request timeout (slow clients), and
max_connections under 2,000 concurrent connections."""

import errno
import json
import resource
import select
import socket
import time

import pytest

from contract import check  # noqa: F401  (expect() calls it on every response)
from helpers import expect, make_user

IDLE = 2
REQUEST = 3


@pytest.fixture(scope="module")
def broker_flags():
    return {"idle_timeout": f"{IDLE}s", "request_timeout": f"{REQUEST}s"}


def wait_closed(sock, timeout):
    """Seconds until the peer closes sock (EOF or reset), reading and
    discarding anything it sends first; None when still open at timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return None
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - t0
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0


def test_idle_connection_is_closed(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        took = wait_closed(s, IDLE + 4)
    assert took is not None, f"an idle connection stayed open {IDLE + 4}s (idle_timeout {IDLE}s)"
    assert took >= IDLE - 1, f"closed after {took:.2f}s, before the idle timeout {IDLE}s"


def test_idle_keepalive_connection_is_closed(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, f"closed before the whole answer: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data
        took = wait_closed(s, IDLE + 4)
    assert took is not None, "an idle keep-alive connection stayed open"
    assert took >= IDLE - 1, f"closed after {took:.2f}s"


def trickle(broker, head, tail_byte, interval=0.5, limit=REQUEST + 5):
    """Send head, then tail_byte every interval seconds; returns the seconds
    from connecting until the broker closed the connection (None if not
    within limit)."""
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    t0 = time.monotonic()
    try:
        s.sendall(head)
        for _ in range(int(limit / interval) + 1):       # bounded
            took = wait_closed(s, interval)
            if took is not None:
                return time.monotonic() - t0
            try:
                s.sendall(tail_byte)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit:
                return None
        return None
    finally:
        s.close()


@pytest.mark.parametrize("head,byte", [
    (b"G", b"E"),                                                           # request line
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),                 # headers
    (b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 1000\r\n\r\n{", b" "),                               # body
], ids=["request-line", "headers", "body"])
def test_trickling_request_is_closed_after_request_timeout(broker, head, byte):
    took = trickle(broker, head, byte)
    assert took is not None, \
        f"a request trickling one byte per 0.5 s stayed open past {REQUEST + 5}s " \
        f"(request_timeout {REQUEST}s)"
    assert took >= REQUEST - 0.6, f"closed after {took:.2f}s, before request_timeout"
    assert broker.api.get("/healthz").status_code == 200


def test_slow_but_complete_request_is_served(broker):
    """Two seconds of trickling (below both limits) still gets its answer."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(0, len(req), 8):
            s.sendall(req[i:i + 8])
            time.sleep(2.0 / (len(req) / 8))
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200"), data


# --- max_connections -------------------------------------------------------------

def read_status(sock, deadline):
    """Read one HTTP response head from a blocking sock; its status code, or
    None when closed/reset/timed out first."""
    data = b""
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            return None
        if not chunk:
            return None
        data += chunk
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


@pytest.mark.parametrize("threads", ["on", "off"], ids=["per-connection", "pool"])
def test_max_connections(make_broker, threads):
    """2,000 concurrent connections against max_connections 500, in both
    connection models: exactly 500 stay open and are served; every other
    one is answered 503 at once and closed, none is left waiting."""
    N, LIMIT = 2000, 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = N + 500
    if soft < want:
        assert hard >= want, f"RLIMIT_NOFILE hard limit {hard} is below {want}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    b = make_broker(max_connections=LIMIT, idle_timeout="60s", request_timeout="60s",
                    log_level="info", connection_threads=threads)
    socks = []
    try:
        for _ in range(N):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex(("127.0.0.1", b.port))
            assert rc in (0, errno.EINPROGRESS), f"connect failed: {errno.errorcode.get(rc, rc)}"
            socks.append(s)

        # Each connection ends up either refused (a 503, then end of stream)
        # or open and silent, waiting for its request.
        refused, silent = {}, set(socks)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(silent) > LIMIT:
            for s in list(silent):
                try:
                    data = s.recv(65536)
                except (BlockingIOError, OSError):
                    continue
                refused[s] = refused.get(s, b"") + data
                if not data or b"\r\n\r\n" in refused[s]:
                    silent.discard(s)
            time.sleep(0.1)
        time.sleep(1.0)                    # nothing more is refused after that
        for s in list(silent):
            try:
                data = s.recv(65536)
            except (BlockingIOError, OSError):
                continue
            refused[s] = refused.get(s, b"") + data
            silent.discard(s)

        assert len(silent) == LIMIT, \
            f"{len(silent)} connections stayed open with max_connections {LIMIT}"
        heads = [refused[s].split(b"\r\n", 1)[0] for s in refused]
        not_503 = [h for h in heads if not h.startswith(b"HTTP/1.1 503")]
        assert not not_503, f"{len(not_503)} refused connections got no 503: {not_503[:3]}"
        body = refused[next(iter(refused))].split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"]["code"] == "unavailable"

        # the connections below the limit are served
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for s in silent:
            s.setblocking(True)
            s.sendall(req)
        deadline = time.monotonic() + 20
        statuses = [read_status(s, deadline) for s in silent]
        not_ok = [st for st in statuses if st != 200]
        assert not not_ok, f"{len(not_ok)} of the {LIMIT} open connections were not served: " \
                           f"{sorted(set(map(str, not_ok)))}"
        assert b.alive()
    finally:
        for s in socks:
            s.close()

    # and the broker still answers afterwards
    def healthy():
        try:
            return b.api.get("/healthz", timeout=2).status_code == 200
        except Exception:
            return False
    deadline = time.monotonic() + 15
    while not healthy():
        assert time.monotonic() < deadline, "the broker stopped answering after the flood"
        time.sleep(0.2)
    expect(b.api.get("/healthz"), 200)
    u = make_user(b)
    expect(u.http.get("/v1/sessions"), 200)


def test_pool_model_closes_trickling_requests(make_broker):
    """The event-loop pool (connection_threads off) enforces the request
    timeout as well."""
    b = make_broker(connection_threads="off", idle_timeout=f"{IDLE}s",
                    request_timeout=f"{REQUEST}s")
    took = trickle(b, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert took is not None and took >= REQUEST - 0.6, took
    assert b.api.get("/healthz").status_code == 200


def test_trickling_second_request_on_keepalive_is_closed(broker):
    """After a served request, the next one on the same connection has
    request_timeout to arrive too: trickling its request line never idles
    the connection, yet it is closed."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, f"closed before the whole answer: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data
        t0 = time.monotonic()
        closed = None
        for byte in (b"GET /healthz HTTP/1.1" * 10)[:int((REQUEST + 5) / 0.5)]:
            if wait_closed(s, 0.5) is not None:
                closed = time.monotonic() - t0
                break
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - t0
                break
    assert closed is not None, \
        f"a second request trickling one byte per 0.5 s stayed open past {REQUEST + 5}s"
    assert closed >= REQUEST - 0.6, f"closed after {closed:.2f}s, before request_timeout"
