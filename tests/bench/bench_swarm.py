#!/usr/bin/python3
"""Benchmark: the swarm, each figure beside its reference tool in the same
run.

1. `shoal get` of a 1 GiB random file from 4 sources (the file broker and
   3 `shoal serve` peers that seeded it) against `aria2c -x4 -s4` with a
   Metalink of the same 512 KiB SHA-256 piece hashes from 4 nginx
   servers.  Target: shoal >= 1.5 x aria2c.
2. A serving peer: random 512 KiB Range requests with session validation,
   wrk -t2 -c16, against `shoal serve` and against nginx serving the same
   bytes, ranges on piece boundaries and anywhere.  Target: >= 0.9 x.

The seeding user (A) owns the file and runs the peers; the downloading
user (B) has read access through a share grant, so every request to a
peer carries B's session, which the peer checks with the trust broker
(and caches).  Everything runs on 127.0.0.1 and is stopped by PID at the
end.

Environment: BENCH_RUNS (3), BENCH_FILE_MB (1024), SHOAL_BIN.
"""
import json
import os
import shutil
import sys
import tempfile

from benchlib import (BIN, RUNS, median, start_nginx_servers, start_pg,
                      start_serve, stop, stop_pg, wrk)
from bench_transfer import (Peer, aria2c, broker_up, make_random, metalink,
                            piece_hashes, remove, run, same, settle,
                            timeout_for, warm)

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1024 * 1024
SIZE = int(os.environ.get("BENCH_FILE_MB", "1024")) * MIB
PIECE = 524288
PEERS = 3
SHOAL = os.path.join(BIN, "shoal")


def fail(msg):
    raise SystemExit("bench_swarm: " + msg)


def whoami(peer):
    return json.loads(run(peer.cmd("whoami"), 30, "shoal whoami",
                          peer.env)[1].strip().splitlines()[-1])["user_id"]


def session_of(peer):
    """The session the CLI keeps for peer's identity."""
    cfg = peer.env["XDG_CONFIG_HOME"]
    for root, _, files in os.walk(cfg):
        for f in files:
            if f.endswith(".session"):
                with open(os.path.join(root, f)) as fh:
                    return json.load(fh)["session_id"]
    fail("no session cache under %s" % cfg)


def start_peer(owner, folder, fid, src):
    """shoal serve of owner's identity with its own data folder, seeded
    with src.  (proc, base URL)."""
    data = os.path.join(folder, "data")
    run(owner.cmd("seed", fid, src, "--data-dir", data), timeout_for(SIZE),
        "shoal seed", owner.env)
    return start_serve(owner.env, data, os.path.join(folder, "serve.log"))


def shoal_get(peer, fid, out, sources):
    """seconds of shoal get into out, which must come from every source."""
    dt, ans = run(peer.cmd("get", fid, "-o", out, "--sources"), timeout_for(SIZE),
                  "shoal get", peer.env)
    ans = json.loads(ans.strip().splitlines()[-1])
    used = [s for s in ans.get("sources", []) if s.get("bytes", 0) > 0]
    if ans.get("downloaded") != SIZE or len(used) < sources:
        fail("shoal get took %s bytes from %d sources, not %d from %d: %s"
             % (ans.get("downloaded"), len(used), SIZE, sources, ans.get("sources")))
    return dt


def bench_get(tmp, b, fid, src, peer_bases, bases):
    meta = os.path.join(tmp, "src.meta4")
    metalink(meta, "src.bin", SIZE, piece_hashes(src),
             [u + "/src.bin" for u in bases])
    out = os.path.join(tmp, "out.bin")
    adir = os.path.join(tmp, "aria")
    os.makedirs(adir)
    s_runs, a_runs = [], []
    for _ in range(RUNS):
        warm(src, os.path.join(tmp, "files"), *[os.path.dirname(p) for p in peer_bases])
        settle(out)
        s_runs.append(shoal_get(b, fid, out, 1 + PEERS))
        same(src, out, "shoal get")
        settle(out)
        aout = os.path.join(adir, "src.bin")
        warm(src)
        settle(aout)
        a_runs.append(aria2c(meta, adir, SIZE))
        same(src, aout, "aria2c")
        settle(aout)
    s, a = median(s_runs), median(a_runs)
    print("get from %d sources: %d MiB random file, %d KiB pieces, each checked,"
          " median of %d" % (1 + PEERS, SIZE >> 20, PIECE >> 10, RUNS))
    print("  %-48s %6.2f s  %5.0f MB/s" % ("shoal get, broker + %d shoal serve" % PEERS,
                                           s, SIZE / s / 1e6))
    print("  %-48s %6.2f s  %5.0f MB/s" % ("aria2c -x4 -s4, Metalink, %d nginx" % len(bases),
                                           a, SIZE / a / 1e6))
    print("  ratio shoal/aria2c: %.2f (target >= 1.5)" % (a / s))
    return s, a


def bench_serve(peer_base, fid, sid, nginx_base):
    script = os.path.join(HERE, "random_range.lua")
    print("serving peer: random 512 KiB ranges, session checked, wrk -t2 -c16,"
          " median of %d" % RUNS)
    for align, what in ((PIECE, "aligned on pieces"), (1, "anywhere")):
        env = {"SIZE": str(SIZE), "ALIGN": str(align)}
        s_runs, n_runs = [], []
        for _ in range(RUNS):
            s_runs.append(wrk("%s/v1/files/%s/content" % (peer_base, fid), sid,
                              script, env)[0])
            n_runs.append(wrk(nginx_base + "/src.bin", None, script, env)[0])
        s, n = median(s_runs), median(n_runs)
        print("  %-18s shoal serve %7.0f req/s   nginx %7.0f req/s   ratio %.2f"
              " (target >= 0.9)" % (what, s, n, s / n))


def main():
    for tool in ("aria2c", "nginx", "wrk", "cmp"):
        if not shutil.which(tool):
            fail("%s is not installed" % tool)
    if not os.access(SHOAL, os.X_OK):
        fail("%s does not exist: run 'make all'" % SHOAL)
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    if shutil.disk_usage(tmp).free < (PEERS + 5) * SIZE + (2 << 30):
        shutil.rmtree(tmp)
        fail("%s needs %d GiB free" % (tmp, ((PEERS + 5) * SIZE >> 30) + 2))
    procs = []
    pgdir = None
    try:
        pgdir, conninfo = start_pg(tmp)
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        src = os.path.join(www, "src.bin")
        make_random(src, SIZE)
        broker, base = broker_up(tmp, conninfo, "files")
        procs.append(broker)
        a = Peer(os.path.join(tmp, "a"), base)
        b = Peer(os.path.join(tmp, "b"), base)
        fid = json.loads(run(a.cmd("put", src), timeout_for(SIZE), "shoal put",
                             a.env)[1].strip().splitlines()[-1])["file_id"]
        run(a.cmd("share", "grant", "default", whoami(b)), 30, "shoal share grant", a.env)
        peer_bases = []
        for i in range(PEERS):
            proc, pbase = start_peer(a, os.path.join(tmp, "peer%d" % i), fid, src)
            procs.append(proc)
            peer_bases.append(os.path.join(tmp, "peer%d" % i, "data"))
            if i == 0:
                first_peer = pbase
        bases = []
        for i in range(4):                 # 4 nginx servers, 1 port each
            ntmp = os.path.join(tmp, "nginx%d" % i)
            os.makedirs(ntmp)
            proc, nb = start_nginx_servers(ntmp, www, 1)
            procs.append(proc)
            bases += nb
        bench_get(tmp, b, fid, src, peer_bases, bases)
        print()
        bench_serve(first_peer, fid, session_of(b), bases[0])
    finally:
        for p in reversed(procs):
            stop(p)
        if pgdir:
            stop_pg(pgdir)
        remove(tmp)


if __name__ == "__main__":
    sys.exit(main())
