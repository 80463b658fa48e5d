"""The reference swarm for the swarm benchmark: BitTorrent with aria2c
(one seed, n downloaders, each its own process and port) and an
opentracker, all on 127.0.0.1.

Not Transmission: Transmission 3.00 (Debian 12) never connects to a
tracker peer on 127.0.0.0/8 (isMartianAddr in libtransmission's net.c
treats the whole block as unroutable), so a loopback swarm of
transmission-daemons stays at 0% forever; aria2c's BitTorrent client has
no such filter.

bt_swarm(tmp, src, n, rate, timeout) -> seconds from the start of the n
downloaders until every one has exited with a complete copy, which aria2c
checks piece by piece (SHA-1); the seed's upload is limited to rate
bytes per second.  Every process started here is stopped by its PID
before it returns.
"""
import os
import shutil
import subprocess
import time

from benchlib import free_port, stop

PIECE_KIB = 512
SEED_SETTLE = 3.0               # seconds for the seed to check and announce


def _fail(msg):
    raise SystemExit("bench_swarm (Transmission): " + msg)


def _info_hash(torrent):
    out = subprocess.run(["transmission-show", torrent], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    for line in out.splitlines():
        if line.strip().startswith("Hash:"):
            return line.split(":", 1)[1].strip()
    _fail("no info hash in transmission-show's output")


def _tracker(folder, port, info_hash):
    """opentracker on 127.0.0.1:port that knows only info_hash.  It drops
    root for 'nobody' and chroots into folder, which must be readable by
    it."""
    with open(os.path.join(folder, "whitelist"), "w") as f:
        f.write(info_hash + "\n")
    os.chmod(folder, 0o755)
    os.chmod(os.path.join(folder, "whitelist"), 0o644)
    cmd = ["opentracker", "-i", "127.0.0.1", "-p", str(port), "-P", str(port),
           "-w", "whitelist", "-d", folder]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _aria2c(folder, torrent, port, up_limit=None, seed=False):
    """aria2c as a BitTorrent client in folder, listening on port; a seed
    checks the copy it has and stays until stopped, a downloader exits as
    soon as its copy is complete and checked."""
    cmd = ["aria2c", "--no-conf=true", "--quiet=true", "-d", folder,
           "--listen-port=%d" % port, "--enable-dht=false",
           "--enable-dht6=false", "--bt-enable-lpd=false",
           "--enable-peer-exchange=true", "--file-allocation=none",
           "--bt-max-peers=60", "--summary-interval=0",
           "--console-log-level=error"]
    if seed:
        cmd += ["--check-integrity=true", "--seed-ratio=0.0"]
    else:
        cmd += ["--seed-time=0", "--bt-hash-check-seed=false"]
    if up_limit:
        cmd += ["--max-upload-limit=%d" % up_limit]
    return subprocess.Popen(cmd + [torrent], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def bt_swarm(tmp, src, n, rate, timeout):
    """Seconds until n aria2c downloaders hold src, from one aria2c seed
    limited to rate bytes/s (see the module's text)."""
    base = os.path.join(tmp, "bt-%d" % n)
    os.makedirs(base)
    port = free_port()
    torrent = os.path.join(base, "data.torrent")
    subprocess.run(["transmission-create", "-o", torrent, "-s", str(PIECE_KIB),
                    "-t", "http://127.0.0.1:%d/announce" % port, src],
                   check=True, capture_output=True, timeout=300)
    tracker = _tracker(base, port, _info_hash(torrent))
    procs = []
    try:
        seed_dir = os.path.join(base, "seed")
        os.makedirs(seed_dir)
        os.link(src, os.path.join(seed_dir, os.path.basename(src)))
        procs.append(_aria2c(seed_dir, torrent, free_port(), rate, seed=True))
        time.sleep(SEED_SETTLE)           # the seed has checked and announced
        t0 = time.monotonic()
        downs = []
        for i in range(n):
            d = os.path.join(base, "d%d" % i)
            os.makedirs(d)
            p = _aria2c(d, torrent, free_port())
            procs.append(p)
            downs.append((p, d))
        for p, d in downs:
            left = timeout - (time.monotonic() - t0)
            try:
                rc = p.wait(timeout=max(0.1, left))
            except subprocess.TimeoutExpired:
                _fail("a downloader was unfinished after %d s" % timeout)
            if rc != 0:
                _fail("aria2c in %s exited with %d" % (d, rc))
        dt = time.monotonic() - t0
        for _, d in downs:
            copy = os.path.join(d, os.path.basename(src))
            if subprocess.run(["cmp", "-s", src, copy]).returncode != 0:
                _fail("%s differs from the source" % copy)
        return dt
    finally:
        for p in procs:
            stop(p)
        stop(tracker)
        shutil.rmtree(base, ignore_errors=True)
