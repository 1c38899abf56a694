# Throwaway PostgreSQL cluster for the tests (sourced by .ci/run; also usable by hand:
# `source .ci/pg.sh; pg_start; ...; pg_stop`). Needs Debian's `postgresql` package and root (the
# cluster runs as the unprivileged `postgres` user the package creates). The server listens only on
# a unix socket inside its temporary directory, so it cannot clash with another server or port.
# pg_start exports PETREL_TEST_PG; pg_stop stops the server and deletes the directory.

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && echo "$d"
    done | sort -V | tail -n 1
}

pg_start() {
    local bin
    bin=$(pg_bindir)
    if [ -z "$bin" ]; then
        echo "pg: no PostgreSQL binaries under /usr/lib/postgresql" >&2
        return 1
    fi
    PG_TMP=$(mktemp -d /tmp/petrel-pg.XXXXXX)
    chown postgres: "$PG_TMP"
    chmod 700 "$PG_TMP"
    runuser -u postgres -- "$bin/initdb" -D "$PG_TMP/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$PG_TMP/initdb.log" 2>&1 || {
        cat "$PG_TMP/initdb.log" >&2
        return 1
    }
    # No TCP; fsync off: a crash loses nothing the tests need. Enough connections for parallel
    # tests (each test opens a few) and servers started by the socket tests.
    runuser -u postgres -- "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
        -o "-c listen_addresses='' -k $PG_TMP -c fsync=off -c max_connections=300" start \
        >/dev/null || {
        cat "$PG_TMP/server.log" >&2
        return 1
    }
    PG_BIN=$bin
    export PETREL_TEST_PG="postgresql://postgres@/postgres?host=$PG_TMP"
    echo "pg: $("$bin/postgres" --version) at $PG_TMP (PETREL_TEST_PG=$PETREL_TEST_PG)"
}

pg_stop() {
    if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate -w stop \
            >/dev/null 2>&1 || true
        rm -rf "$PG_TMP"
    fi
    PG_TMP=
}
