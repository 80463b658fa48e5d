"""Helpers shared by the benchmarks: ports, HTTP calls, wrk, processes,
a private PostgreSQL and a broker, nginx with a given root."""
import json
import mmap
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SHOAL_BIN", os.path.join(ROOT, "bin"))
DURATION = os.environ.get("BENCH_DURATION", "10s")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PREFAULT_MB = int(os.environ.get("BENCH_PREFAULT_MB", "2048"))


def back_memory(mb=PREFAULT_MB):
    """Write to mb MiB of fresh memory and free it again, so that the run
    which follows finds RAM the hypervisor has backed.

    This machine is a virtual machine whose balloon reports free guest
    pages to the host, which takes them back; the first write to such a
    page then costs a fault in the host, about 10 us per 4 KiB (0.4 GB/s
    against 2 GB/s for backed memory).  A run whose page cache lands on
    reclaimed pages was 2 to 4 times slower for reasons that had nothing
    to do with the program measured, and which runs were hit was chance.
    The guest reports pages only after they have been free for about two
    seconds, so the run that follows at once reuses the ones written
    here."""
    if mb <= 0:
        return
    chunk = b"\x01" * (64 << 20)
    m = mmap.mmap(-1, mb << 20)
    try:
        for _ in range(mb >> 6):
            m.write(chunk)
    finally:
        m.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def wait_http(url, limit=20.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit("bench: %s did not come up" % url)


def wrk(url, token=None, script=None, env=None):
    """(req/s, p99 text) of wrk -t2 -c16 against url."""
    cmd = ["wrk", "-t2", "-c16", "-d" + DURATION, "--latency"]
    if token:
        cmd += ["-H", "Authorization: Bearer " + token]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], check=True, capture_output=True,
                         text=True, timeout=120,
                         env=dict(os.environ, **(env or {}))).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit("bench: %s answered %s errors" % (url, errors.group(1)))
    return rps, p99


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def start_pg(tmp):
    pgdir = os.path.join(tmp, "pg")
    subprocess.run(["sh", os.path.join(ROOT, "schemas/pg.sh"), "start", pgdir],
                   check=True, env=dict(os.environ, SHOAL_PG_FSYNC="off"))
    conninfo = subprocess.run(["sh", os.path.join(ROOT, "schemas/pg.sh"), "url", pgdir],
                              check=True, capture_output=True, text=True).stdout.strip()
    return pgdir, conninfo


def stop_pg(pgdir):
    subprocess.run(["sh", os.path.join(ROOT, "schemas/pg.sh"), "stop", pgdir])


def warm(*paths):
    """Read files (or every file under folders) into the page cache."""
    for p in paths:
        files = [p]
        if os.path.isdir(p):
            files = [os.path.join(d, n) for d, _, ns in os.walk(p) for n in ns]
        for name in files:
            with open(name, "rb") as f:
                while f.read(8 << 20):
                    pass


def start_broker(tmp, conninfo, name="broker", *flags):
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(BIN, "shoal-broker"), "--listen", "127.0.0.1:%d" % port,
         "--database-url", conninfo, "--data-dir", os.path.join(tmp, name),
         "--log-file", os.path.join(tmp, name + ".log")] + list(flags))
    base = "http://127.0.0.1:%d" % port
    wait_http(base + "/healthz")
    return proc, base


def start_nginx_servers(tmp, www, nports=1, first_extra="",
                        default_type="application/octet-stream", ports=None):
    """One nginx (2 workers, sendfile, no access log) serving www on nports
    loopback ports (those given in ports, else free ones); first_extra goes
    into the first server block.  Waits until every port answers.  (proc,
    [base URLs])."""
    ports = list(ports) if ports else [free_port() for _ in range(nports)]
    servers = "".join("""
  server {
    listen 127.0.0.1:%d;
    root %s;
    %s
  }""" % (port, www, first_extra if i == 0 else "") for i, port in enumerate(ports))
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""
worker_processes 2;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %(tmp)s/body;
  proxy_temp_path %(tmp)s/proxy;
  fastcgi_temp_path %(tmp)s/fcgi;
  uwsgi_temp_path %(tmp)s/uwsgi;
  scgi_temp_path %(tmp)s/scgi;
  default_type %(type)s;
  keepalive_requests 1000000;
%(servers)s
}
""" % {"tmp": tmp, "type": default_type, "servers": servers})
    proc = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"])
    bases = ["http://127.0.0.1:%d" % p for p in ports]
    try:
        for b in bases:
            wait_tcp(b)
    except BaseException:
        stop(proc)
        raise
    return proc, bases


def start_nginx(tmp, www, default_type="application/octet-stream"):
    """One nginx serving www on one port: (proc, base URL)."""
    proc, bases = start_nginx_servers(tmp, www, 1, default_type=default_type)
    return proc, bases[0]


def wait_tcp(base, limit=10.0):
    """Wait until something accepts connections at base's port."""
    port = int(base.rsplit(":", 1)[1])
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench: nothing listens at %s" % base)


def register(base):
    """A new user with a session: (user_id, session_id)."""
    import base64
    import uuid
    user_id = str(uuid.uuid4())
    pk = base64.b64encode(os.urandom(32)).decode()
    reg = json.loads(call("POST", base + "/v1/users", {"user_id": user_id, "public_key": pk}))
    sess = json.loads(call("POST", base + "/v1/sessions",
                           {"user_id": user_id, "auth_id": reg["auth_id"]}))
    return user_id, sess["session_id"]


def start_serve(env, data, log, host="127.0.0.1", args=()):
    """A `shoal serve` with env (a user's environment) on a free port of
    host, data folder data, seed ratio off, stderr into log; waits until
    it answers.  (proc, base URL)."""
    port = free_port()
    base = "http://%s:%d" % (host, port)
    proc = subprocess.Popen(
        [os.path.join(BIN, "shoal"), "serve", "--listen", "%s:%d" % (host, port),
         "--data-dir", data, "--max-seed-ratio", "0"] + list(args),
        env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        wait_http(base + "/healthz")
    except BaseException:
        stop(proc)
        raise
    return proc, base
