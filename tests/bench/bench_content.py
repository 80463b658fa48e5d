#!/usr/bin/python3
"""Benchmark: Range serving.  Random 512 KiB Range requests, wrk -t2 -c16,
against the file broker (GET /v1/files/{id}/content with a session) and
against nginx serving the same bytes as a static file, in the same run.
Twice: ranges aligned on pieces (one piece file each, sent with sendfile)
and ranges anywhere (most span two pieces).  Target: shoal >= 1.0 x nginx.

Everything runs on 127.0.0.1 and is stopped by PID at the end.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request

from benchlib import (DURATION, RUNS, call, median, register, start_broker,
                      start_nginx, start_pg, stop, stop_pg, warm, wrk)

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = int(os.environ.get("BENCH_FILE_MB", "1024")) * 1024 * 1024
PIECE = 524288


def upload(base, sid, path):
    """Put the file at path through the HTTP API; its file id."""
    share = json.loads(call("POST", base + "/v1/shares", {"name": "bench"}, sid))["share_id"]
    hashes = []
    with open(path, "rb") as f:
        while True:
            block = f.read(PIECE)
            if not block:
                break
            hashes.append(hashlib.sha256(block).hexdigest())
    fid = json.loads(call("POST", base + "/v1/files", {
        "share_id": share, "path": "", "name": "bench.bin", "size": SIZE,
        "piece_size": PIECE, "piece_hashes": hashes}, sid))["file_id"]
    with open(path, "rb") as f:
        for i in range(len(hashes)):
            req = urllib.request.Request(
                "%s/v1/files/%s/pieces/%d" % (base, fid, i), data=f.read(PIECE),
                method="PUT", headers={"Authorization": "Bearer " + sid})
            urllib.request.urlopen(req, timeout=60).read()
    return fid


def main():
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    broker = nginx = None
    pgdir, conninfo = start_pg(tmp)
    try:
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        data = os.path.join(www, "bench.bin")
        with open(data, "wb") as f:
            for _ in range(SIZE // (64 * 1024 * 1024)):
                f.write(os.urandom(64 * 1024 * 1024))
        broker, base = start_broker(tmp, conninfo)
        _, sid = register(base)
        fid = upload(base, sid, data)
        # The broker writes pieces past the page cache (O_DIRECT); nginx's
        # copy was just written through it: both start from memory.
        warm(data, os.path.join(tmp, "broker", "pieces"))
        nginx, nbase = start_nginx(tmp, www)

        script = os.path.join(HERE, "random_range.lua")
        print("Range serving, random 512 KiB ranges in a %d MiB file, wrk -t2 -c16"
              " -d%s, median of %d" % (SIZE >> 20, DURATION, RUNS))
        for align, what in ((PIECE, "aligned on pieces"), (1, "anywhere")):
            env = {"SIZE": str(SIZE), "ALIGN": str(align)}
            s_runs, n_runs = [], []
            for _ in range(RUNS):      # interleaved, so drift hits both
                s_runs.append(wrk("%s/v1/files/%s/content" % (base, fid), sid, script, env))
                n_runs.append(wrk(nbase + "/bench.bin", None, script, env))
            s = median(r[0] for r in s_runs)
            n = median(r[0] for r in n_runs)
            print("  %-18s shoal-broker %7.0f req/s (%5.2f GB/s)   nginx %7.0f req/s"
                  "   ratio %.2f (target >= 1.0)"
                  % (what, s, s * PIECE / 1e9, n, s / n))
    finally:
        stop(nginx)
        stop(broker)
        stop_pg(pgdir)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
