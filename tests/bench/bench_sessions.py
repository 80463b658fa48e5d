#!/usr/bin/python3
"""Benchmark: the inner-circle call every serving peer makes,
GET /v1/sessions/{sid}?ip=..., against nginx serving a static JSON body of
the same size at the same path, both with wrk -t2 -c16 for 10 s, in the
same run.  Prints both req/s and the ratio (target: shoal >= 0.5 x nginx).

Everything runs on 127.0.0.1 and is stopped by PID at the end.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SHOAL_BIN", os.path.join(ROOT, "bin"))
DURATION = os.environ.get("BENCH_DURATION", "10s")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


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


def wrk(url, token=None):
    cmd = ["wrk", "-t2", "-c16", "-d" + DURATION, "--latency"]
    if token:
        cmd += ["-H", "Authorization: Bearer " + token]
    out = subprocess.run(cmd + [url], check=True, capture_output=True,
                         text=True, timeout=120).stdout
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


def main():
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    broker = nocache = nginx = None
    pgdir = os.path.join(tmp, "pg")
    try:
        subprocess.run(["sh", os.path.join(ROOT, "schemas/pg.sh"), "start", pgdir],
                       check=True, env=dict(os.environ, SHOAL_PG_FSYNC="off"))
        conninfo = subprocess.run(["sh", os.path.join(ROOT, "schemas/pg.sh"), "url", pgdir],
                                  check=True, capture_output=True, text=True).stdout.strip()
        port = free_port()
        base = "http://127.0.0.1:%d" % port
        broker = subprocess.Popen(
            [os.path.join(BIN, "shoal-broker"), "--listen", "127.0.0.1:%d" % port,
             "--database-url", conninfo, "--data-dir", os.path.join(tmp, "broker"),
             "--log-file", os.path.join(tmp, "broker.log")])
        wait_http(base + "/healthz")

        # The same database through a second broker without the session
        # cache: what every check costs when it goes to PostgreSQL.
        nport0 = free_port()
        base0 = "http://127.0.0.1:%d" % nport0
        nocache = subprocess.Popen(
            [os.path.join(BIN, "shoal-broker"), "--listen", "127.0.0.1:%d" % nport0,
             "--database-url", conninfo, "--data-dir", os.path.join(tmp, "broker0"),
             "--session-cache-ttl", "0", "--log-file", os.path.join(tmp, "broker0.log")])
        wait_http(base0 + "/healthz")

        user_id = str(uuid.uuid4())
        pk = base64.b64encode(os.urandom(32)).decode()
        reg = json.loads(call("POST", base + "/v1/users",
                              {"user_id": user_id, "public_key": pk}))
        sess = json.loads(call("POST", base + "/v1/sessions",
                               {"user_id": user_id, "auth_id": reg["auth_id"]}))
        sid = sess["session_id"]
        path = "/v1/sessions/%s" % sid
        body = call("GET", base + path + "?ip=127.0.0.1", token=sid)

        # nginx: the same body at the same path, as a static file.
        www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(www, "v1", "sessions"))
        with open(os.path.join(www, "v1", "sessions", sid), "wb") as f:
            f.write(body)
        nport = free_port()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
worker_processes 2;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(tmp)s/body;
  proxy_temp_path %(tmp)s/proxy;
  fastcgi_temp_path %(tmp)s/fcgi;
  uwsgi_temp_path %(tmp)s/uwsgi;
  scgi_temp_path %(tmp)s/scgi;
  default_type application/json;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%(port)d;
    root %(www)s;
  }
}
""" % {"tmp": tmp, "port": nport, "www": www})
        nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"])
        nurl = "http://127.0.0.1:%d%s?ip=127.0.0.1" % (nport, path)
        wait_http(nurl)
        assert urllib.request.urlopen(nurl).read() == body

        shoal_runs, nginx_runs, nocache_runs = [], [], []
        for _ in range(RUNS):          # interleaved, so drift hits all
            shoal_runs.append(wrk(base + path + "?ip=127.0.0.1", sid))
            nginx_runs.append(wrk(nurl))
            nocache_runs.append(wrk(base0 + path + "?ip=127.0.0.1", sid))
        med = lambda runs: sorted(r[0] for r in runs)[len(runs) // 2]
        s, n, s0 = med(shoal_runs), med(nginx_runs), med(nocache_runs)
        print("inner-circle check, %d-byte JSON body, wrk -t2 -c16 -d%s, median of %d"
              % (len(body), DURATION, RUNS))
        print("  shoal-broker                     %10.0f req/s  (p99 %s)" % (s, shoal_runs[0][1]))
        print("  nginx                            %10.0f req/s  (p99 %s)" % (n, nginx_runs[0][1]))
        print("  shoal-broker, session cache off  %10.0f req/s  (p99 %s)"
              % (s0, nocache_runs[0][1]))
        print("  ratio shoal/nginx: %.2f (target >= 0.50)" % (s / n))
    finally:
        stop(nginx)
        stop(nocache)
        stop(broker)
        subprocess.run(["sh", os.path.join(ROOT, "schemas/pg.sh"), "stop", pgdir])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
