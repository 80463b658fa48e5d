#!/usr/bin/python3
"""Benchmark: swarm distribution, shoal beside BitTorrent in the same run.

One seed whose upload is limited to RATE bytes a second and N = 1, 4, 8
downloaders that start together; the figure is the time until every one
holds the whole file, checked.

shoal: the seed is a `shoal serve --max-upload-rate RATE` of the file's
owner; the broker's file role is off (it would otherwise serve everyone
at full speed); each downloader is a user of its own that runs a
`shoal serve` on its data folder (127.0.0.10+i) and a `shoal get` into a
file, so what it downloads is shared as it arrives (peer/fetch_swarm.c).

Reference: aria2c's BitTorrent client, one seed limited to RATE and N
downloaders, an opentracker, 512 KiB pieces (swarm_bt.py says why not
Transmission).

Targets: shoal's T(8) <= the reference's T(8), and shoal's T(8)/T(1) <= 2.

Environment: BENCH_SWARM_MB (64), BENCH_SWARM_RATE (20000000 bytes/s),
BENCH_SWARM_NS ("1,4,8"), SHOAL_BIN.  Everything runs on loopback and is
stopped by PID.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import BIN, free_port, start_pg, start_serve, stop, stop_pg
from bench_transfer import Peer, broker_up, make_random, remove, run, same, settle
from swarm_bt import bt_swarm

MIB = 1024 * 1024
SIZE = int(os.environ.get("BENCH_SWARM_MB", "64")) * MIB
RATE = int(os.environ.get("BENCH_SWARM_RATE", "20000000"))
NS = [int(n) for n in os.environ.get("BENCH_SWARM_NS", "1,4,8").split(",")]
PIECE = 524288
SHOAL = os.path.join(BIN, "shoal")
TIMEOUT = 30 + 4 * max(NS) * SIZE / RATE


def fail(msg):
    raise SystemExit("bench_distribution: " + msg)


def serve(peer, host, data, *args):
    """A ready shoal serve of peer on host with data folder data."""
    return start_serve(peer.env, data, data + ".log", host, args)[0]


def user_id(peer):
    return json.loads(run(peer.cmd("whoami"), 30, "shoal whoami",
                          peer.env)[1].strip().splitlines()[-1])["user_id"]


def shoal_swarm(tmp, base, owner, fid, src, n):
    """Seconds until n downloaders (each with a serve on its data folder)
    hold the file."""
    root = os.path.join(tmp, "shoal-%d" % n)
    os.makedirs(root)
    procs = []
    try:
        downs = []
        for i in range(n):
            p = Peer(os.path.join(root, "u%d" % i), base)
            run(owner.cmd("share", "grant", "default", user_id(p)), 30,
                "shoal share grant", owner.env)
            data = os.path.join(root, "d%d" % i)
            procs.append(serve(p, "127.0.0.%d" % (10 + i), data))
            downs.append((p, data, os.path.join(root, "out%d.bin" % i)))
        settle()
        results = [None] * n

        def get(i):
            p, data, out = downs[i]
            r = subprocess.run(p.cmd("get", fid, "-o", out, "--data-dir", data),
                               capture_output=True, text=True, env=p.env,
                               timeout=TIMEOUT, stdin=subprocess.DEVNULL)
            results[i] = (r.returncode, r.stderr[-2000:])
        t0 = time.monotonic()
        threads = [threading.Thread(target=get, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT + 5)
        dt = time.monotonic() - t0
        for i, r in enumerate(results):
            if r is None or r[0] != 0:
                fail("shoal get %d of %d failed: %s" % (i, n, r))
            same(src, downs[i][2], "shoal get %d of %d" % (i, n))
        return dt
    finally:
        for p in procs:
            stop(p)
        remove(root)


def main():
    for tool in ("aria2c", "opentracker", "transmission-create", "cmp"):
        if not shutil.which(tool):
            fail("%s is not installed" % tool)
    if not os.access(SHOAL, os.X_OK):
        fail("%s does not exist: run 'make all'" % SHOAL)
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    procs = []
    pgdir = None
    try:
        pgdir, conninfo = start_pg(tmp)
        src = os.path.join(tmp, "src.bin")
        make_random(src, SIZE)
        port = free_port()
        proc, base = broker_up(tmp, conninfo, "broker", port=port)
        procs.append(proc)
        owner = Peer(os.path.join(tmp, "owner"), base)
        fid = json.loads(run(owner.cmd("put", src, "--piece-size", str(PIECE)), 600,
                             "shoal put", owner.env)[1].strip().splitlines()[-1])["file_id"]
        seed_data = os.path.join(tmp, "seed")
        run(owner.cmd("seed", fid, src, "--data-dir", seed_data), 600, "shoal seed",
            owner.env)
        # the same database, without the file role: the seed is the source
        stop(procs.pop())
        proc, base = broker_up(tmp, conninfo, "broker", "trust,metadata,accounting",
                               port)
        procs.append(proc)
        procs.append(serve(owner, "127.0.0.2", seed_data,
                           "--max-upload-rate", str(RATE)))
        print("swarm distribution: %d MiB, one seed at %.0f MB/s, N downloaders"
              " starting together, time until all hold the file"
              % (SIZE >> 20, RATE / 1e6))
        shoal_t, bt_t = {}, {}
        for n in NS:
            shoal_t[n] = shoal_swarm(tmp, base, owner, fid, src, n)
            settle()
            bt_t[n] = bt_swarm(tmp, src, n, RATE, TIMEOUT)
            settle()
            print("  N=%d  shoal %6.2f s   aria2c BitTorrent %6.2f s   ratio %.2f"
                  % (n, shoal_t[n], bt_t[n], bt_t[n] / shoal_t[n]))
            sys.stdout.flush()
        lo, hi = min(NS), max(NS)
        print("  shoal T(%d) %.2f s vs BitTorrent T(%d) %.2f s (target: <=)"
              % (hi, shoal_t[hi], hi, bt_t[hi]))
        print("  shoal T(%d)/T(%d) %.2f (target <= 2); BitTorrent %.2f"
              % (hi, lo, shoal_t[hi] / shoal_t[lo], bt_t[hi] / bt_t[lo]))
    finally:
        for p in reversed(procs):
            stop(p)
        if pgdir:
            stop_pg(pgdir)
        remove(tmp)


if __name__ == "__main__":
    sys.exit(main())
