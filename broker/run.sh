#!/bin/sh
# run-broker.sh - what `make run` does once the build and PostgreSQL are
# ready: print the next steps, then run the broker in the foreground with
# every role on.  Ctrl-C stops it.
set -eu
root=${SHOAL_ROOT:-$(pwd)}
var="$root/var"
mkdir -p "$var" && mkdir -p -m 700 "$var/broker"

if [ -z "${SHOAL_DATABASE_URL:-}" ]; then
    SHOAL_DATABASE_URL=$(sh "$root/schemas/pg.sh" url "$var")
    export SHOAL_DATABASE_URL
fi

cat <<MSG

shoal-broker is starting on http://127.0.0.1:8080 (Ctrl-C stops it;
'make stop' then stops PostgreSQL).  In another terminal:

  bin/shoal register --broker http://127.0.0.1:8080
  bin/shoal whoami
  bin/shoal sessions

MSG
exec "$root/bin/shoal-broker" --listen "${SHOAL_LISTEN:-127.0.0.1:8080}" \
    --data-dir "$var/broker"
