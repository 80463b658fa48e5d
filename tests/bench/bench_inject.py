#!/usr/bin/python3
"""Benchmark: the injector and `shoal fetch` of an injected web object,
each beside curl in the same run (issue 5, section 5).

1. POST /v1/inject of a fresh random object from a local nginx origin
   (chunked answer, X-Sign trailer; the broker hashes, fsyncs and renames
   every 512 KiB piece and commits the version before the trailer) against
   `curl` of the same object directly from nginx, both into a file (as
   the earlier figure the target was set against; the client's writes
   cost both the same).
   Time to first byte and total time.  Target: <= 1.2 x and <= 1.3 x of
   direct.  Every run injects an object never seen (a stored piece is
   not written again); the X-Sign trailer and the recorded root are
   checked against the object.
2. `shoal fetch URL` of an injected object with the origin stopped, from
   3 `shoal serve` peers that fetched it (the injector's broker holds it
   too), against `curl` of the same URL from the origin when it was up,
   both into a file.  Target: >= 1.0 x.  Each fetch starts with an empty
   data folder (the fetch keeps the object there to seed it: a piece
   file each, fsynced).

nginx runs on one fixed loopback port, started and stopped around each
run of 2.  Everything runs on 127.0.0.1 and is stopped by PID at the end.

Environment: BENCH_RUNS (3), BENCH_FILE_MB (256), SHOAL_BIN.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from benchlib import (BIN, RUNS, free_port, median, register,
                      start_nginx_servers, start_pg, start_serve, stop, stop_pg,
                      wait_http)
from bench_transfer import (RECENT, STARTED, Peer, cpu_times, loadavg, machine_note,
                            make_random, remove, run, same, settle, timeout_for, warm)

MIB = 1024 * 1024
SIZE = int(os.environ.get("BENCH_FILE_MB", "256")) * MIB
PIECE = 524288
PEERS = 3
SHOAL = os.path.join(BIN, "shoal")


def fail(msg):
    raise SystemExit("bench_inject: " + msg)


def broker_up(tmp, conninfo, name):
    """A broker that may inject from loopback; stopped when it does not
    come up.  (proc, base URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(BIN, "shoal-broker"), "--listen", "127.0.0.1:%d" % port,
         "--database-url", conninfo, "--data-dir", os.path.join(tmp, name),
         "--log-file", os.path.join(tmp, name + ".log"),
         "--inject-allow", "127.0.0.0/8", "--inject-max-size", "64GiB"])
    base = "http://127.0.0.1:%d" % port
    try:
        wait_http(base + "/healthz")
    except BaseException:
        stop(proc)
        raise
    return proc, base


def start_origin(tmp, www, port):
    """nginx (2 workers, sendfile, no access log) serving www on port.
    (proc, base URL)."""
    os.makedirs(tmp, exist_ok=True)
    proc, bases = start_nginx_servers(tmp, www, ports=[port])
    return proc, bases[0]


def merkle_root(path):
    """The root over the 512 KiB piece hashes, leaves padded to a power of
    two with zero hashes (as api/manifest.c), in hex."""
    level = []
    with open(path, "rb") as f:
        while True:
            block = f.read(PIECE)
            if not block:
                break
            level.append(hashlib.sha256(block).digest())
    if not level:
        return "00" * 32
    width = 1
    while width < len(level):
        width *= 2
    level += [b"\0" * 32] * (width - len(level))
    while len(level) > 1:
        level = [hashlib.sha256(level[i] + level[i + 1]).digest()
                 for i in range(0, len(level), 2)]
    return level[0].hex()


def curl_timed(args, size, what):
    """(time to first byte, total) of curl args, whose body must be size
    bytes with status 200."""
    _, out = run(["curl", "-sS", "-w", "%{http_code} %{time_starttransfer}"
                  " %{time_total} %{size_download}"] + args, timeout_for(size), what)
    status, ttfb, total, got = out.split()[-4:]
    if status != "200" or int(got) != size:
        fail("%s answered %s with %s bytes of %d" % (what, status, got, size))
    return float(ttfb), float(total)


def authed(base, sid, path):
    req = urllib.request.Request(base + path)
    req.add_header("Authorization", "Bearer " + sid)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def inject(base, sid, url, path, hdrs, out):
    """(ttfb, total) of POST /v1/inject {url} into out; the X-Sign
    trailer and the record must match the object at path."""
    remove(hdrs)
    t = curl_timed(["-o", out, "-D", hdrs, "-H", "Authorization: Bearer " + sid,
                    "-H", "Content-Type: application/json",
                    "--data-binary", json.dumps({"url": url}), base + "/v1/inject"],
                   os.path.getsize(path), "the injection")
    with open(hdrs) as f:
        head = f.read().lower()
    if "\nx-sign:" not in head:
        fail("the injection ended without an X-Sign trailer:\n" + head[-2000:])
    rec = authed(base, sid, "/v1/inject?url=" + urllib.parse.quote(url, safe=""))
    if rec["size"] != os.path.getsize(path) or rec["root"] != merkle_root(path):
        fail("the injector recorded size %s root %s for %s" % (rec["size"], rec["root"], path))
    same(path, out, "the injection's body")
    return t


def bench_inject(tmp, base, sid, www, origin):
    i_runs, d_runs = [], []
    hdrs = os.path.join(tmp, "inject.hdrs")
    out = os.path.join(tmp, "out.bin")
    # ext4 without a journal is slow to make files soon after thousands
    # were deleted (bench_transfer.py, RECENT): an earlier benchmark may
    # have just deleted its piece stores
    time.sleep(max(0.0, STARTED + RECENT - time.monotonic()))
    # A running injector has made its share (on its first injection) and
    # keeps its connections to origins: one small injection, untimed,
    # before the runs, as a running nginx has its workers up.
    warmup = os.path.join(www, "warmup.bin")
    make_random(warmup, 1 << 20)
    inject(base, sid, origin + "/warmup.bin", warmup, hdrs, out)
    remove(out)
    for i in range(RUNS):
        name = "obj%d.bin" % i
        src = os.path.join(www, name)
        make_random(src, SIZE)           # fresh: every piece is stored
        warm(src)
        settle(out)
        d_runs.append(curl_timed(["-o", out, origin + "/" + name], SIZE,
                                 "curl from nginx"))
        same(src, out, "curl")
        settle(out)
        i_runs.append(inject(base, sid, origin + "/" + name, src, hdrs, out))
        settle(out, src)
    d_ttfb, d_total = median([r[0] for r in d_runs]), median([r[1] for r in d_runs])
    i_ttfb, i_total = median([r[0] for r in i_runs]), median([r[1] for r in i_runs])
    print("inject: %d MiB fresh random object from nginx on 127.0.0.1, median of %d"
          % (SIZE >> 20, RUNS))
    print("  %-44s first byte %7.1f ms   total %6.2f s %6.0f MB/s"
          % ("curl -o FILE POST /v1/inject (store, sign)", i_ttfb * 1e3, i_total,
             SIZE / i_total / 1e6))
    print("  %-44s first byte %7.1f ms   total %6.2f s %6.0f MB/s"
          % ("curl -o FILE from nginx directly", d_ttfb * 1e3, d_total, SIZE / d_total / 1e6))
    print("  ratio inject/direct: first byte %.2f (target <= 1.2), total %.2f"
          " (target <= 1.3)" % (i_ttfb / d_ttfb, i_total / d_total))
    return i_ttfb, i_total, d_ttfb, d_total


def start_peer(peer, folder, url):
    """peer fetches url into its data folder (from the swarm: the origin is
    not asked) and serves it.  (proc, base URL)."""
    data = os.path.join(folder, "data")
    out = os.path.join(folder, "seed.bin")
    _, ans = run(peer.cmd("fetch", url, "--no-origin", "-o", out, "--data-dir", data),
                 timeout_for(SIZE), "shoal fetch (seeding)", peer.env)
    if json.loads(ans.strip().splitlines()[-1]).get("source") not in ("swarm", "injector"):
        fail("the seeding fetch did not keep the object: " + ans)
    remove(out)
    return start_serve(peer.env, data, os.path.join(folder, "serve.log"))


def wait_swarm(base, sid, url, peer_urls, limit=30.0):
    swarm = hashlib.sha256(b"url:" + url.encode()).hexdigest()
    end = time.time() + limit
    while time.time() < end:
        rec = authed(base, sid, "/v1/swarms/" + swarm)
        have = {p.get("url") for p in rec.get("peers", [])}
        if all(u in have for u in peer_urls):
            return
        time.sleep(0.2)
    fail("the peers did not appear in the swarm of %s within %d s" % (url, limit))


def bench_fetch(tmp, base, sid, www, port, procs):
    name = "fetch.bin"
    src = os.path.join(www, name)
    make_random(src, SIZE)
    origin, obase = start_origin(os.path.join(tmp, "nginx"), www, port)
    url = obase + "/" + name
    try:
        inject(base, sid, url, src, os.path.join(tmp, "fetch.hdrs"),
               os.path.join(tmp, "fetch.out"))
        remove(os.path.join(tmp, "fetch.out"))
        peer_urls = []
        for i in range(PEERS):
            p = Peer(os.path.join(tmp, "seed%d" % i), base)
            proc, pbase = start_peer(p, os.path.join(tmp, "seed%d" % i), url)
            procs.append(proc)
            peer_urls.append(pbase)
    finally:
        stop(origin)
    wait_swarm(base, sid, url, peer_urls)
    b = Peer(os.path.join(tmp, "b"), base)
    out = os.path.join(tmp, "out.bin")
    s_runs, c_runs = [], []
    for i in range(RUNS):
        bdata = os.path.join(tmp, "b-data%d" % i)   # kept: see RECENT
        # the sources' pieces (written past the page cache) from memory,
        # as nginx's copy
        warm(src, os.path.join(tmp, "injector", "pieces"),
             *[os.path.join(tmp, "seed%d" % k) for k in range(PEERS)])
        origin, _ = start_origin(os.path.join(tmp, "nginx"), www, port)
        try:
            settle(out)
            c_runs.append(curl_timed(["-o", out, url], SIZE, "curl from nginx")[1])
            same(src, out, "curl")
        finally:
            stop(origin)
        settle(out)
        dt, ans = run(b.cmd("fetch", url, "-o", out, "--data-dir", bdata),
                      timeout_for(SIZE), "shoal fetch", b.env)
        ans = json.loads(ans.strip().splitlines()[-1])
        if ans.get("source") != "swarm" or ans.get("bytes") != SIZE:
            fail("shoal fetch took %s bytes from the %s, not %d from the swarm"
                 % (ans.get("bytes"), ans.get("source"), SIZE))
        same(src, out, "shoal fetch")
        s_runs.append(dt)
    settle(out)
    s, c = median(s_runs), median(c_runs)
    print("fetch: %d MiB injected object, origin stopped, %d shoal serve peers and"
          " the injector's broker, median of %d" % (SIZE >> 20, PEERS, RUNS))
    print("  %-44s %6.2f s %6.0f MB/s" % ("shoal fetch URL -o FILE (checks, keeps)", s,
                                           SIZE / s / 1e6))
    print("  %-44s %6.2f s %6.0f MB/s" % ("curl -o FILE from nginx (origin up)", c,
                                           SIZE / c / 1e6))
    print("  ratio shoal/curl: %.2f (target >= 1.0)" % (c / s))
    return s, c


def main():
    for tool in ("nginx", "curl", "openssl", "cmp"):
        if not shutil.which(tool):
            fail("%s is not installed" % tool)
    if not os.access(SHOAL, os.X_OK):
        fail("%s does not exist: run 'make all'" % SHOAL)
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    need = (RUNS + PEERS + 6) * SIZE + (2 << 30)
    if shutil.disk_usage(tmp).free < need:
        shutil.rmtree(tmp)
        fail("%s needs %d GiB free" % (tmp, need >> 30))
    procs = []
    pgdir = None
    print("injection on 127.0.0.1, load average at start: %s" % loadavg())
    t0 = cpu_times()
    try:
        pgdir, conninfo = start_pg(tmp)
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        os.chmod(www, 0o755)
        broker, base = broker_up(tmp, conninfo, "injector")
        procs.append(broker)
        _, sid = register(base)
        port = free_port()
        os.makedirs(os.path.join(tmp, "nginx"))
        origin, obase = start_origin(os.path.join(tmp, "nginx"), www, port)
        procs.append(origin)
        bench_inject(tmp, base, sid, www, obase)
        stop(origin)
        print()
        bench_fetch(tmp, base, sid, www, port, procs)
        print("load average at the end: %s; during the run: %s"
              % (loadavg(), machine_note(t0)))
    finally:
        for p in reversed(procs):
            stop(p)
        if pgdir:
            stop_pg(pgdir)
        remove(tmp)


if __name__ == "__main__":
    sys.exit(main())
