#!/bin/sh
# make bench: every benchmark beside its reference tool, in the same run.
set -eu
cd "$(dirname "$0")"
for b in bench_sessions.py bench_content.py bench_transfer.py bench_swarm.py bench_distribution.py bench_inject.py; do
    /usr/bin/python3 "$b"
    echo
done
