#!/bin/sh
# pg.sh start|stop|status|url DIR - a private PostgreSQL cluster in DIR.
#
# The cluster listens only on a unix socket inside DIR (no TCP), trusts
# local connections, and has a superuser and a database both named
# "shoal".  As root, it runs as the unprivileged user "postgres" (or
# "nobody"), since PostgreSQL refuses to run as root.
set -eu

cmd=${1:?usage: pg.sh start|stop|status|url DIR}
dir=${2:?usage: pg.sh start|stop|status|url DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/pg"
sock="$dir"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$owner" -- "$@"
    else
        "$@"
    fi
}

owner=$(id -un)
if [ "$(id -u)" = 0 ]; then
    if id postgres >/dev/null 2>&1; then owner=postgres; else owner=nobody; fi
fi

case "$cmd" in
url)
    echo "host=$sock dbname=shoal user=shoal"
    ;;
status)
    [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
    ;;
start)
    if [ "$(id -u)" = 0 ]; then chown "$owner" "$dir"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$bindir/initdb" -D "$data" -U shoal -A trust -E UTF8 \
            --no-locale >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
            -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c max_connections=200 -c fsync=${SHOAL_PG_FSYNC:-on}" \
            start >/dev/null ||
            { tail -n 20 "$dir/postgres.log" >&2; exit 1; }
    fi
    if ! as_owner "$bindir/psql" -h "$sock" -U shoal -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='shoal'" | grep -q 1; then
        as_owner "$bindir/createdb" -h "$sock" -U shoal shoal
    fi
    ;;
stop)
    if [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    ;;
*)
    echo "pg.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
