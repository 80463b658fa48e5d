#!/bin/sh
# deps.sh [build|test|bench] - install the Debian packages shoal needs, only
# those missing, without questions.  Says which ones and stops when it
# cannot install them (not root and no password-less sudo).
set -eu

build="gcc make pkg-config libmicrohttpd-dev libjansson-dev uuid-dev
libsodium-dev libpq-dev libcurl4-openssl-dev libssl-dev postgresql"
test="libcmocka-dev python3 python3-pytest python3-requests python3-jsonschema
python3-yaml curl"
bench="wrk nginx-light aria2 time transmission-cli transmission-daemon opentracker"

case "${1:-build}" in
build) want="$build" ;;
test) want="$build $test" ;;
bench) want="$build $test $bench" ;;
*) echo "deps.sh: unknown set '$1' (build, test or bench)" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *" installed") ;;
    *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    run=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run="sudo"
else
    echo "deps: cannot install packages as $(id -un); please run:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale or absent on a new machine.
$run apt-get update -qq >&2 || true
# shellcheck disable=SC2086
if ! $run apt-get install -y -qq --no-install-recommends $missing >&2; then
    echo "deps: apt-get could not install:$missing" >&2
    exit 1
fi
