#!/usr/bin/python3
"""Benchmark: whole-file transfers with the CLI, each beside its reference
tool in the same run.

1. `shoal get -j 4` of a 1 GiB random file from the file broker against
   `aria2c -x4 -s4` fetching the same bytes from 4 nginx servers (one nginx
   on 4 ports) with a Metalink v4 file that lists the same SHA-256 of every
   512 KiB piece, so that both check every piece.  Target: shoal >= 1.2 x.
2. `shoal put -j 4` of a fresh 1 GiB random file (fresh broker store, every
   piece uploaded) against `curl -T` of the same file to nginx's WebDAV PUT:
   the broker fsyncs every piece before it answers, nginx answers from the
   page cache.  Two bounds beside them: the disk's own rate (dd
   conv=fdatasync) and the broker's durability without shoal (a file per
   piece, fsync, rename, folder fsync; 4 writers).  Target: shoal >= 0.6 x.
3. Peak RSS (/usr/bin/time -f %M) of `shoal put` and `shoal get` for a
   1 GiB and an 8 GiB file: memory must not grow with the file.

The sources stay in the page cache (they are on the server side, and are
read again right before each get); output files are deleted, and dirty
pages written back (sync), before every run; the piece stores of the put
runs are kept until the last of them (see RECENT).  Everything runs on
127.0.0.1 and is stopped by PID at the end; about 4 minutes.

Environment: BENCH_RUNS (3) runs of 1 and 2, BENCH_FILE_MB (1024),
BENCH_BIG_MB (8192, 0 skips it), SHOAL_BIN.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import (BIN, RUNS, back_memory, free_port, median,
                      start_nginx_servers, start_pg, stop, stop_pg, wait_http, warm)

MIB = 1024 * 1024
SIZE = int(os.environ.get("BENCH_FILE_MB", "1024")) * MIB
BIG = int(os.environ.get("BENCH_BIG_MB", "8192")) * MIB
PIECE = 524288
JOBS = 4
SERVERS = 4
SHOAL = os.path.join(BIN, "shoal")


def fail(msg):
    raise SystemExit("bench_transfer: " + msg)


def run(cmd, timeout, what, env=None):
    """Run cmd to its end within timeout seconds: (seconds, stdout).  A
    failure or a timeout ends the benchmark (subprocess kills the child by
    PID on timeout)."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail("%s did not finish within %d s" % (what, timeout))
    dt = time.monotonic() - t0
    if r.returncode != 0:
        fail("%s failed (exit %d):\n%s%s" % (what, r.returncode, r.stdout[-2000:],
                                            r.stderr[-2000:]))
    return dt, r.stdout


def timeout_for(size):
    """Seconds allowed for moving size bytes: 50 MB/s at worst, 60 at least."""
    return max(60, size // 50000000)


def make_random(path, size):
    """size fresh pseudo-random bytes (AES-128-CTR of zeros under a random
    key) into path, written back to disk so that no dirty page of it is left
    to disturb the next measurement; it stays in the page cache."""
    gen = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt",
                            "-K", os.urandom(16).hex(), "-iv", os.urandom(16).hex(),
                            "-in", "/dev/zero"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)   # "error writing" at the end
    left = size
    end = time.monotonic() + timeout_for(size)
    try:
        with open(path, "wb") as f:
            while left > 0:
                block = gen.stdout.read(min(left, 8 * MIB))
                if not block:
                    fail("openssl stopped after %d bytes" % (size - left))
                f.write(block)
                left -= len(block)
                if time.monotonic() > end:
                    fail("making %s took too long" % path)
            f.flush()
            os.fdatasync(f.fileno())
    finally:
        gen.stdout.close()
        stop(gen)


def piece_hashes(path):
    out = []
    with open(path, "rb") as f:
        while True:
            block = f.read(PIECE)
            if not block:
                return out
            out.append(hashlib.sha256(block).hexdigest())


def remove(*paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            os.unlink(p)


# ext4 without a journal (this machine's disk) skips the inodes freed in
# the last 5 seconds (5 minutes while their inode table block is dirty,
# which the new files' own inodes make it) when it allocates one, looking
# each up in the buffer cache: creating thousands of files soon after
# deleting thousands costs it far more CPU (41% of a broker's time went to
# open() in one profile; recently_deleted and the lookups 20% of a put's
# samples in another).  So the put runs keep every piece store they make
# until the last of them is done, and the first waits this long after the
# start (an earlier benchmark may have just deleted its own store).
RECENT = float(os.environ.get("BENCH_RECENT", "305"))
STARTED = time.monotonic()


def settle(*paths):
    """Delete outputs (their dirty pages go with them) and write back the
    rest, so that every run starts with nothing pending on the disk."""
    remove(*paths)
    os.sync()
    back_memory()       # last: see benchlib


def same(a, b, what):
    """a wrong copy is an error, not a figure"""
    r = subprocess.run(["cmp", a, b], capture_output=True, text=True,
                       timeout=timeout_for(os.path.getsize(a)))
    if r.returncode != 0:
        fail("%s: the copy differs from the source: %s" % (what, (r.stdout + r.stderr).strip()))


def row(what, seconds):
    print("  %-46s %6.2f s %6.0f MB/s" % (what, seconds, mbps(SIZE, seconds)))


def mbps(size, seconds):
    return size / seconds / 1e6


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_times():
    """(total, iowait, steal) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[4], v[7]


def machine_note(t0):
    """What the machine did besides us since t0: iowait and steal (time
    the hypervisor gave to others) as shares of all CPU time."""
    t1 = cpu_times()
    total = max(1, t1[0] - t0[0])
    return "iowait %.0f%%, steal %.0f%%" % (100.0 * (t1[1] - t0[1]) / total,
                                            100.0 * (t1[2] - t0[2]) / total)


class Peer:
    """bin/shoal with its own identity (XDG_CONFIG_HOME) on one broker."""

    def __init__(self, root, base):
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SHOAL_") and k != "XDG_CONFIG_HOME"}
        home = os.path.join(root, "home")
        os.makedirs(home)
        self.env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(root, "cfg"))
        run([SHOAL, "register", "--broker", base], 30, "shoal register", self.env)

    def cmd(self, *args):
        return [SHOAL, "--json"] + list(args)

    def put(self, path, size, rss_file=None):
        """(seconds, file id) of shoal put; every piece must be uploaded."""
        cmd = self.cmd("put", path, "-j", str(JOBS), "--piece-size", str(PIECE))
        if rss_file:
            cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd
        dt, out = run(cmd, timeout_for(size), "shoal put", self.env)
        ans = json.loads(out.strip().splitlines()[-1])
        if ans.get("uploaded") != ans.get("pieces") or ans.get("bytes_uploaded") != size:
            fail("shoal put sent %s of %s pieces (%s bytes of %d): not a full upload"
                 % (ans.get("uploaded"), ans.get("pieces"), ans.get("bytes_uploaded"), size))
        return dt, ans["file_id"]

    def get(self, fid, out, size, rss_file=None):
        """seconds of shoal get into out (which must not exist)."""
        cmd = self.cmd("get", fid, "-o", out, "-j", str(JOBS))
        if rss_file:
            cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd
        dt, ans = run(cmd, timeout_for(size), "shoal get", self.env)
        ans = json.loads(ans.strip().splitlines()[-1])
        if ans.get("downloaded") != size or ans.get("reused") != 0:
            fail("shoal get downloaded %s bytes of %d, reused %s"
                 % (ans.get("downloaded"), size, ans.get("reused")))
        return dt


def start_nginx(tmp, www, dav):
    """One nginx serving www on SERVERS ports, the first of which also
    takes WebDAV PUTs under /dav/ into dav.  (proc, [bases])."""
    davtmp = os.path.join(tmp, "davtmp")
    for d in (dav, davtmp):
        os.makedirs(d)
        os.chmod(d, 0o777)             # the workers run as nobody under root
    return start_nginx_servers(tmp, www, SERVERS, first_extra="""
    location /dav/ {
      root %s;
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
      client_body_temp_path %s;
    }""" % (dav, davtmp))


def broker_up(tmp, conninfo, name, roles=None, port=None):
    """benchlib's start_broker (on port, else a free one; with roles, else
    all), stopping the broker when it does not come up."""
    port = port or free_port()
    proc = subprocess.Popen(
        [os.path.join(BIN, "shoal-broker"), "--listen", "127.0.0.1:%d" % port,
         "--database-url", conninfo, "--data-dir", os.path.join(tmp, name),
         "--log-file", os.path.join(tmp, name + ".log")] +
        (["--roles", roles] if roles else []))
    base = "http://127.0.0.1:%d" % port
    try:
        wait_http(base + "/healthz")
    except BaseException:
        stop(proc)
        raise
    return proc, base


def metalink(path, name, size, hashes, urls):
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<metalink xmlns="urn:ietf:params:xml:ns:metalink">\n'
                '  <file name="%s">\n    <size>%d</size>\n'
                '    <pieces length="%d" type="sha-256">\n' % (name, size, PIECE))
        for h in hashes:
            f.write("      <hash>%s</hash>\n" % h)
        f.write("    </pieces>\n")
        for u in urls:
            f.write('    <url priority="1">%s</url>\n' % u)
        f.write("  </file>\n</metalink>\n")


def aria2c(meta, outdir, size):
    cmd = ["aria2c", "--no-conf=true", "--quiet=true", "--summary-interval=0",
           "--console-log-level=error", "--download-result=hide",
           "--file-allocation=none", "--allow-overwrite=true",
           "--auto-file-renaming=false", "--max-tries=1",
           "-x%d" % JOBS, "-s%d" % JOBS, "--dir", outdir, "--metalink-file", meta]
    return run(cmd, timeout_for(size), "aria2c")[0]


def curl_put(src, url, size):
    dt, out = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                   "-T", src, url], timeout_for(size), "curl -T")
    if out.strip() not in ("201", "204"):
        fail("nginx answered %s to the PUT of %s" % (out.strip(), url))
    return dt


def dd_rate(src, dst, size):
    """seconds for dd to write size bytes (from the page cache) to dst and
    fdatasync them."""
    dt = run(["dd", "if=" + src, "of=" + dst, "bs=1M", "count=%d" % (size // MIB),
              "conv=fdatasync", "status=none"], timeout_for(size), "dd")[0]
    return dt


def store_pattern(src, folder, size):
    """seconds to write size bytes of src (page cache) the way a durable
    piece store does, without shoal: each 512 KiB piece into a temporary
    file, fsync, rename into one of 256 folders, fsync of the folder; 4
    writers at once, as the broker's threads under put -j 4."""
    os.makedirs(os.path.join(folder, "tmp"))
    for i in range(256):
        os.makedirs(os.path.join(folder, "pieces", "%02x" % i))
    os.sync()
    count = (size + PIECE - 1) // PIECE
    lock = threading.Lock()
    state = {"next": 0, "error": None}
    src_fd = os.open(src, os.O_RDONLY)

    def writer():
        try:
            while True:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                if i >= count or state["error"]:
                    return
                data = os.pread(src_fd, PIECE, i * PIECE)
                tmp = os.path.join(folder, "tmp", "%d" % i)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                sub = os.path.join(folder, "pieces", "%02x" % (i % 256))
                os.rename(tmp, os.path.join(sub, "%d" % i))
                dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as e:
            state["error"] = e

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(JOBS)]
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        end = t0 + timeout_for(size)
        for t in threads:
            t.join(max(0, end - time.monotonic()))
            if t.is_alive():
                state["error"] = "took longer than %d s" % timeout_for(size)
                fail("the store pattern %s" % state["error"])
        dt = time.monotonic() - t0
    finally:
        os.close(src_fd)
    if state["error"]:
        fail("the store pattern failed: %s" % state["error"])
    return dt


def read_rss(path):
    with open(path) as f:
        return int(f.read().split()[-1])          # KiB


def bench_get(tmp, peer, fid, src, store, bases, hashes):
    www_urls = [b + "/src.bin" for b in bases]
    meta = os.path.join(tmp, "src.meta4")
    metalink(meta, "aria.bin", SIZE, hashes, www_urls)
    outdir = os.path.join(tmp, "out")
    os.makedirs(outdir)
    s_out = os.path.join(outdir, "shoal.bin")
    a_out = os.path.join(outdir, "aria.bin")
    s_runs, a_runs = [], []
    for _ in range(RUNS):               # interleaved, so drift hits both
        warm(src, store)
        settle(s_out, a_out, a_out + ".aria2")
        s_runs.append(peer.get(fid, s_out, SIZE))
        same(src, s_out, "shoal get")
        settle(s_out)
        a_runs.append(aria2c(meta, outdir, SIZE))
        same(src, a_out, "aria2c")
        settle(a_out)
    s, a = median(s_runs), median(a_runs)
    print("get: %d MiB random file, %d KiB pieces, each checked against its SHA-256,"
          " median of %d" % (SIZE >> 20, PIECE >> 10, RUNS))
    row("shoal get -j %d, one broker" % JOBS, s)
    row("aria2c -x%d -s%d, Metalink, %d nginx ports" % (JOBS, JOBS, SERVERS), a)
    print("  ratio shoal/aria2c: %.2f (target >= 1.2)" % (a / s))
    return s, a


def bench_put(tmp, conninfo, bases):
    dav_url = bases[0] + "/dav/put.bin"
    dav_file = os.path.join(tmp, "dav", "dav", "put.bin")
    s_runs, c_runs, d_runs, p_runs = [], [], [], []
    stores = []                            # deleted after the last run
    time.sleep(max(0.0, STARTED + RECENT - time.monotonic()))
    for i in range(RUNS):
        src = os.path.join(tmp, "put-src.bin")
        make_random(src, SIZE)              # fresh content: nothing to dedupe
        name = "put%d" % i
        pattern = os.path.join(tmp, "pattern%d" % i)
        broker, base = broker_up(tmp, conninfo, name)  # fresh store
        try:
            peer = Peer(os.path.join(tmp, name + "-peer"), base)
            stores += [os.path.join(tmp, name), pattern]
            settle()
            p_runs.append(store_pattern(src, pattern, SIZE))
            settle()
            s_runs.append(peer.put(src, SIZE)[0])
        finally:
            stop(broker)
        settle()
        c_runs.append(curl_put(src, dav_url, SIZE))
        if os.path.getsize(dav_file) != SIZE:
            fail("nginx stored %d bytes of %d" % (os.path.getsize(dav_file), SIZE))
        settle(dav_file)
        dd_out = os.path.join(tmp, "dd.bin")
        d_runs.append(dd_rate(src, dd_out, SIZE))
        settle(dd_out, src)
    settle(*stores)
    s, c, d, p = median(s_runs), median(c_runs), median(d_runs), median(p_runs)
    print("put: %d MiB fresh random file (every piece uploaded), median of %d"
          % (SIZE >> 20, RUNS))
    row("shoal put -j %d, broker fsyncs every piece" % JOBS, s)
    row("curl -T to nginx WebDAV, page cache only", c)
    row("disk: dd bs=1M conv=fdatasync", d)
    row("disk: a file per piece, fsync, rename, fsync", p)
    print("  (the last line does what the broker's store does for durability,"
          " %d writers, without shoal)" % JOBS)
    print("  ratio shoal/curl: %.2f (target >= 0.6); shoal/dd: %.2f;"
          " shoal/file-per-piece: %.2f" % (c / s, d / s, p / s))
    return s, c, d, p


def bench_rss(tmp, conninfo):
    broker, base = broker_up(tmp, conninfo, "rss")
    rss = {}
    try:
        peer = Peer(os.path.join(tmp, "rss-peer"), base)
        sizes = [SIZE] + ([BIG] if BIG else [])
        for size in sizes:
            src = os.path.join(tmp, "rss-src.bin")
            out = os.path.join(tmp, "rss-out.bin")
            rfile = os.path.join(tmp, "rss.txt")
            make_random(src, size)
            settle()
            t_put, fid = peer.put(src, size, rfile)
            r_put = read_rss(rfile)
            settle()
            t_get = peer.get(fid, out, size, rfile)
            r_get = read_rss(rfile)
            same(src, out, "shoal get (%d MiB)" % (size >> 20))
            rss[size] = (r_put, r_get, t_put, t_get)
            settle(src, out)
    finally:
        stop(broker)
    print("peak RSS (/usr/bin/time -f %%M), -j %d, one run" % JOBS)
    line = "  %-10s" + "  %12s" * len(rss) + ("  %8s" if len(rss) > 1 else "")
    heads = ["%d MiB" % (s >> 20) for s in rss]
    print(line % tuple(["", ] + heads + (["ratio"] if len(rss) > 1 else [])))
    for k, what in ((0, "shoal put"), (1, "shoal get")):
        vals = ["%d KiB" % rss[s][k] for s in rss]
        if len(rss) > 1:
            vals.append("%.2f" % (rss[BIG][k] / rss[SIZE][k]))
        print(line % tuple([what] + vals))
    for s in rss:
        print("  (%d MiB: put %.1f s %.0f MB/s, get %.1f s %.0f MB/s)"
              % (s >> 20, rss[s][2], mbps(s, rss[s][2]), rss[s][3], mbps(s, rss[s][3])))
    if len(rss) > 1:
        grow = BIG // PIECE - SIZE // PIECE
        print("  growth per piece: put %.0f B, get %.0f B"
              % ((rss[BIG][0] - rss[SIZE][0]) * 1024 / grow,
                 (rss[BIG][1] - rss[SIZE][1]) * 1024 / grow))
        print("  target: %d MiB / %d MiB within 1.10 (throughputs for information: the"
              " big file does not fit in the page cache beside its copies)"
              % (BIG >> 20, SIZE >> 20))
    return rss


def main():
    for tool in ("aria2c", "nginx", "curl", "openssl", "cmp", "dd"):
        if not shutil.which(tool):
            fail("%s is not installed" % tool)
    if not os.access("/usr/bin/time", os.X_OK):
        fail("/usr/bin/time is not installed (apt-get install time)")
    if not os.access(SHOAL, os.X_OK):
        fail("%s does not exist: run 'make all'" % SHOAL)
    need = (5 + 2 * RUNS) * SIZE + 3 * BIG + (2 << 30)
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    os.chmod(tmp, 0o755)
    if shutil.disk_usage(tmp).free < need:
        shutil.rmtree(tmp)
        fail("%s needs %d GiB free" % (tmp, need >> 30))
    broker = nginx = None
    pgdir = None
    print("transfers on 127.0.0.1, load average at start: %s" % loadavg())
    t0 = cpu_times()
    try:
        pgdir, conninfo = start_pg(tmp)
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        src = os.path.join(www, "src.bin")
        make_random(src, SIZE)
        hashes = piece_hashes(src)
        broker, base = broker_up(tmp, conninfo, "files")
        peer = Peer(os.path.join(tmp, "peer"), base)
        _, fid = peer.put(src, SIZE)
        nginx, bases = start_nginx(tmp, www, os.path.join(tmp, "dav"))

        bench_get(tmp, peer, fid, src, os.path.join(tmp, "files", "store"), bases, hashes)
        print()
        stop(broker)
        broker = None
        bench_put(tmp, conninfo, bases)
        print()
        bench_rss(tmp, conninfo)
        print("load average at the end: %s; during the run: %s"
              % (loadavg(), machine_note(t0)))
    finally:
        stop(nginx)
        stop(broker)
        if pgdir:
            stop_pg(pgdir)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
