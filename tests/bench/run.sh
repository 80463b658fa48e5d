#!/bin/sh
# make bench: every benchmark beside its reference tool, in the same run.
set -eu
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/bench/bench_sessions.py "$@"
