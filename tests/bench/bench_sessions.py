#!/usr/bin/python3
"""Benchmark: the inner-circle call every serving peer makes,
GET /v1/sessions/{sid}?ip=..., against nginx serving a static JSON body of
the same size at the same path, both with wrk -t2 -c16 for 10 s, in the
same run.  Prints both req/s and the ratio (target: shoal >= 0.5 x nginx).

Everything runs on 127.0.0.1 and is stopped by PID at the end.
"""
import os
import shutil
import sys
import tempfile
import urllib.request

from benchlib import (RUNS, DURATION, call, median, register, start_broker,
                      start_nginx, start_pg, stop, stop_pg, wait_http, wrk)


def main():
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    broker = nocache = nginx = None
    pgdir, conninfo = start_pg(tmp)
    try:
        broker, base = start_broker(tmp, conninfo)
        # The same database through a second broker without the session
        # cache: what every check costs when it goes to PostgreSQL.
        nocache, base0 = start_broker(tmp, conninfo, "broker0",
                                      "--session-cache-ttl", "0")
        _, sid = register(base)
        path = "/v1/sessions/%s" % sid
        body = call("GET", base + path + "?ip=127.0.0.1", token=sid)

        # nginx: the same body at the same path, as a static file.
        www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(www, "v1", "sessions"))
        with open(os.path.join(www, "v1", "sessions", sid), "wb") as f:
            f.write(body)
        nginx, nbase = start_nginx(tmp, www, default_type="application/json")
        nurl = nbase + path + "?ip=127.0.0.1"
        wait_http(nurl)
        assert urllib.request.urlopen(nurl).read() == body

        shoal_runs, nginx_runs, nocache_runs = [], [], []
        for _ in range(RUNS):          # interleaved, so drift hits all
            shoal_runs.append(wrk(base + path + "?ip=127.0.0.1", sid))
            nginx_runs.append(wrk(nurl))
            nocache_runs.append(wrk(base0 + path + "?ip=127.0.0.1", sid))
        s = median(r[0] for r in shoal_runs)
        n = median(r[0] for r in nginx_runs)
        s0 = median(r[0] for r in nocache_runs)
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
        stop_pg(pgdir)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
