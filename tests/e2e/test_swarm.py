"""The swarm: what `shoal get` downloads is kept in its data folder and
served by `shoal serve`, and downloaders whose serve runs share pieces
with each other while they download (peer/fetch_swarm.c).

Every serve runs on a loopback address of its own and is stopped by its
PID; every wait is bounded.
"""

import json
import signal
import subprocess
import threading
import time

from filekit import pattern
from helpers import HttpSession, new_uuid, wait_until
from test_fetch import PS, by_url, data_cli, get, shoal_path, tracked_urls  # noqa: F401

START_TIMEOUT = 20
STOP_TIMEOUT = 10
GET_TIMEOUT = 120


class Serve:
    """One 'shoal serve' of a CLI user on host (a loopback address), with
    extra options; ready once /healthz answers."""

    def __init__(self, cli, host, *args):
        from helpers import free_port
        self.cli = cli
        self.url = f"http://{host}:{free_port()}"
        self.log = open(cli.root / f"serve-{host}.log", "w+")
        self.proc = subprocess.Popen(
            [cli.bin, "serve", "--listen", self.url[7:], *map(str, args)],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
            env=cli.env({"SHOAL_LOG_LEVEL": "debug"}))
        end = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, self.text()
            try:
                if HttpSession(self.url).get("/healthz", timeout=1).status_code == 200:
                    break
            except Exception:
                pass
            assert time.monotonic() < end, f"serve at {self.url} not ready:\n{self.text()}"
            time.sleep(0.05)

    def text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def uploaded(self):
        r = HttpSession(self.url).get("/metrics")
        assert r.status_code == 200, r.text
        for line in r.text.splitlines():
            if line.startswith("shoal_peer_upload_bytes_total "):
                return int(float(line.split()[1]))
        raise AssertionError(r.text)

    def stop(self):
        """SIGTERM by PID, bounded wait, SIGKILL as a last resort; returns
        (exit status, output)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        text = self.text()
        self.log.close()
        return self.proc.returncode, text


def check_logs(serves):
    for s in serves:
        if s.log.closed:
            continue
        rc, text = s.stop()
        assert rc == 0, f"serve {s.url} exited with {rc}:\n{text[-3000:]}"
        assert "Sanitizer" not in text and "runtime error" not in text, text
        s.cli.learn_secrets()
        for secret, what in s.cli.secrets.items():
            assert secret not in text, f"the {what} appears in the output of shoal serve"


def data_of(cli):
    return cli.root / "data" / "shoal"


def held_pieces(cli):
    return [p for p in (data_of(cli) / "store" / "pieces").rglob("*") if p.is_file()]


def put_file(a, tmp_path, npieces):
    data = pattern(npieces * PS + 123, new_uuid().encode())
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    fid = a.json("put", src, "--piece-size", "16K")["file_id"]
    return fid, data, src


def test_get_keeps_what_it_downloads_and_serve_serves_it(shoal_path, make_broker,
                                                         tmp_path):
    """With --keep, B's get keeps every piece and the version's record in
    its data folder; a serve started afterwards announces the whole file
    and serves it.  Without a serve running and without --keep, or with
    --no-keep, nothing is kept."""
    b = make_broker()
    a, rb = (data_cli(shoal_path, tmp_path / n, b) for n in ("a", "b"))
    fid, data, _ = put_file(a, tmp_path, 24)
    a.run("share", "grant", "default", rb.identity()["user_id"], rc=0)

    for extra in (["--no-keep"], []):
        rb.run("get", fid, "-o", tmp_path / "nokeep.bin", *extra, rc=0)
        assert (tmp_path / "nokeep.bin").read_bytes() == data
        assert not (data_of(rb) / "files").exists() or \
            not list((data_of(rb) / "files").rglob("*.json"))
        assert held_pieces(rb) == []
    r = rb.run("get", fid, "-o", tmp_path / "x.bin", "--keep", "--no-keep", rc=2)
    assert "--keep" in r.stderr

    body, _, _ = get(rb, fid, tmp_path / "b.bin", "--keep")
    assert (tmp_path / "b.bin").read_bytes() == data
    record = json.loads((data_of(rb) / "files" / fid / "1.json").read_text())
    assert record["file_id"] == fid and record["pieces"] == 25
    assert record["x_sign"].startswith("v=1; ")
    kept = held_pieces(rb)
    assert len(kept) == 25
    assert sorted(p.read_bytes() for p in kept) == \
        sorted(data[i:i + PS] for i in range(0, len(data), PS))

    serves = [Serve(rb, "127.0.0.3", "--max-seed-ratio", "0")]
    try:
        wait_until(lambda: serves[0].url in tracked_urls(a, fid), 20,
                   what="B's announcement")
        # C gets it from B's serve alone: the broker's file role is off
        c = data_cli(shoal_path, tmp_path / "c", b)
        a.run("share", "grant", "default", c.identity()["user_id"], rc=0)
        b.flags["roles"] = "trust,metadata,accounting"
        b.restart()
        body, _, _ = get(c, fid, tmp_path / "c.bin", "--no-keep")
        assert (tmp_path / "c.bin").read_bytes() == data
        assert set(by_url(body)) == {serves[0].url}, body["sources"]
    finally:
        check_logs(serves)


def test_a_second_serve_on_one_folder_is_refused(shoal_path, make_broker, tmp_path):
    b = make_broker()
    a = data_cli(shoal_path, tmp_path / "a", b)
    serves = [Serve(a, "127.0.0.2")]
    try:
        r = a.run("serve", "--listen", "127.0.0.4:0", rc=None)
        assert r.returncode != 0
        assert "another shoal serve" in r.stderr and str(serves[0].proc.pid) in r.stderr, \
            r.stderr
        assert json.loads((data_of(a) / "serve.json").read_text())["url"] == serves[0].url
    finally:
        check_logs(serves)
    assert not (data_of(a) / "serve.json").exists()


def test_downloaders_share_pieces_while_they_download(shoal_path, make_broker, tmp_path):
    """A seed whose upload is limited, the broker's file role off, and
    three downloaders that each run a serve on their data folder and start
    together: each gets the whole file, never from its own serve, and
    between them they took pieces from each other, so the seed sent less
    than three copies."""
    b = make_broker()
    a = data_cli(shoal_path, tmp_path / "a", b)
    fid, data, src = put_file(a, tmp_path, 96)
    a.json("seed", fid, src)
    users = [data_cli(shoal_path, tmp_path / n, b) for n in ("b", "c", "d")]
    for u in users:
        a.run("share", "grant", "default", u.identity()["user_id"], rc=0)
    b.flags["roles"] = "trust,metadata,accounting"
    b.restart()
    serves = [Serve(a, "127.0.0.2", "--max-upload-rate", "256K", "--max-seed-ratio", "0")]
    try:
        wait_until(lambda: serves[0].url in tracked_urls(a, fid), 20,
                   what="the seed's announcement")
        for i, u in enumerate(users):
            serves.append(Serve(u, f"127.0.0.{3 + i}", "--max-seed-ratio", "0"))
        results = [None] * len(users)

        def run(i):
            results[i] = get(users[i], fid, tmp_path / f"out{i}.bin", "--stall", "30")
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(users))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GET_TIMEOUT)
        assert all(not t.is_alive() for t in threads), "a get did not end"
        from_peers = 0
        for i, (body, err, _) in enumerate(results):
            assert (tmp_path / f"out{i}.bin").read_bytes() == data, err
            srcs = by_url(body)
            assert serves[1 + i].url not in srcs, body["sources"]
            assert sum(s["pieces"] for s in body["sources"]) == 97, body["sources"]
            assert all(s["dropped"] is None for s in body["sources"]), body["sources"]
            from_peers += sum(s["pieces"] for url, s in srcs.items() if url != serves[0].url)
        assert from_peers > 0, [r[0]["sources"] for r in results]
        assert serves[0].uploaded() < 3 * len(data)
        # each downloader's serve now holds, and announces, the whole file
        for i, u in enumerate(users):
            assert len(held_pieces(u)) == 97
        wait_until(lambda: {s.url for s in serves} <= set(tracked_urls(a, fid)), 20,
                   what="every serve's announcement")
    finally:
        check_logs(serves)
