"""The broker refuses to start on configuration it cannot honour, naming
what is wrong, instead of starting with a silently different setting."""
import subprocess

import pytest


@pytest.mark.parametrize("flag,value,named", [
    ("--idle-timeout", "4294967296s", "idle_timeout"),
    ("--request-timeout", "-1s", "request_timeout"),
    ("--session-ttl", "0s", "session_ttl"),
    ("--session-ttl", "100000d", "session_ttl"),
    ("--session-cache-ttl", "2d", "session_cache_ttl"),
    ("--body-limit", "2GiB", "body_limit"),
    ("--connection-memory", "8KiB", "connection_memory"),
    ("--connection-memory", "32MiB", "connection_memory"),
    ("--map-cache", "2TiB", "map_cache"),
    ("--map-cache", "-1", "map_cache"),
    ("--version-cache", "2TiB", "version_cache"),
    ("--threads", "0", "threads"),
    ("--registration", "closed", "registration"),
    ("--roles", "trust,root", "root"),
    ("--log-level", "loud", "log_level"),
    ("--listen", "localhost:8080", "localhost"),
    ("--session-ttl", "soon", "session_ttl"),
])
def test_bad_value_refused(bin_dir, pg, database, tmp_path, flag, value, named):
    p = subprocess.run(
        [str(bin_dir / "shoal-broker"), "--listen", "127.0.0.1:0",
         "--database-url", pg.conninfo(database), "--data-dir", str(tmp_path / "d"),
         flag, value],
        capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, f"started with {flag} {value}"
    assert named in p.stderr, p.stderr


def test_unknown_flag_and_missing_database(bin_dir, tmp_path):
    p = subprocess.run([str(bin_dir / "shoal-broker"), "--no-such-flag"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "no-such-flag" in p.stderr
    p = subprocess.run([str(bin_dir / "shoal-broker"), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 1 and "database_url" in p.stderr


def test_help_lists_every_key(bin_dir):
    p = subprocess.run([str(bin_dir / "shoal-broker"), "--help"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    for key in ("--database-url", "--session-cache-ttl", "--max-connections", "--admin-token"):
        assert key in p.stdout
