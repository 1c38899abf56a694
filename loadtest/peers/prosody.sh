#!/usr/bin/env bash
# Prosody as a benchmark peer for petrel-load, on a private loopback port.
#
#   prosody.sh install        apt-get install prosody (Debian package)
#   prosody.sh start          write config + self-signed cert, start pinned with taskset
#   prosody.sh stop           stop the instance started here
#   prosody.sh register N     create user1..userN (password $PASSWORD) by writing
#                             Prosody's internal storage files directly (10k users in ~1 s)
#   prosody.sh roster N       give user1 and user2..user(N+1) a mutual subscription (both) by writing
#                             their roster files directly (the pep scenario's contacts); over the wire
#                             Prosody rewrites user1's whole roster file on each of the 4N changes
#   prosody.sh pid            print the server PID
#
# Environment (defaults): PEER_DIR=/tmp/petrel-peers/prosody PORT=15222
#   DOMAIN=localhost PASSWORD=password PROSODY_CPUS=0 (taskset CPU list)
#   S2S_PORT= (set: federation on, an s2s listener on 127.0.0.1:S2S_PORT, dialback over
#   STARTTLS with the self-signed certificate, s2s_secure_auth off) DNS_PORT= (set: resolve
#   peers through the DNS server on 127.0.0.1:DNS_PORT only, lua-unbound's `forward`)
#
# Benchmark settings, deliberately unlike a production install:
#   - plaintext SASL PLAIN allowed without TLS (loopback only; STARTTLS still offered)
#   - authentication = internal_plain so accounts can be written in bulk
#   - mod_limits (c2s rate limiting) is not loaded: no c2s bandwidth/stanza limits
#   - no s2s unless S2S_PORT is set; no HTTP, no admin socket; registration open (XEP-0077) for
#     loopback
#   - listen backlog 1024 (network_settings.tcp_backlog; the default 128 resets connections
#     when thousands of users log in at once)
#   - MUC (XEP-0045) at conference.$DOMAIN: anyone may create rooms, no occupant limit,
#     rooms not persistent (gone when the last occupant leaves), new rooms locked until the
#     owner submits the configuration form (the XEP-0045 default, as petrel-load expects)
#   - PEP (XEP-0163, mod_pep) with its default node configuration, for the pep scenario
set -euo pipefail

PEER_DIR=${PEER_DIR:-/tmp/petrel-peers/prosody}
PORT=${PORT:-15222}
DOMAIN=${DOMAIN:-localhost}
PASSWORD=${PASSWORD:-password}
PROSODY_CPUS=${PROSODY_CPUS:-0}
S2S_PORT=${S2S_PORT:-}
DNS_PORT=${DNS_PORT:-}
CFG=$PEER_DIR/prosody.cfg.lua
PIDFILE=$PEER_DIR/prosody.pid

# Prosody's storage path encoding: every punctuation byte becomes %xx.
encode() { printf '%s' "$1" | perl -pe 's/([[:punct:]])/sprintf("%%%02x", ord($1))/ge'; }

write_config() {
    mkdir -p "$PEER_DIR/data" "$PEER_DIR/certs"
    if [ ! -f "$PEER_DIR/certs/$DOMAIN.key" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$DOMAIN" \
            -keyout "$PEER_DIR/certs/$DOMAIN.key" -out "$PEER_DIR/certs/$DOMAIN.crt" 2>/dev/null
    fi
    local s2s='s2s_ports = { }' modules='"roster", "saslauth", "tls", "disco", "ping", "register", "pep"'
    local disabled='modules_disabled = { "s2s" }'
    if [ -n "$S2S_PORT" ]; then
        # Federation: dialback (XEP-0220) over STARTTLS; a self-signed certificate cannot
        # authenticate a stream by itself, so s2s_secure_auth stays off.
        s2s="s2s_ports = { $S2S_PORT }
s2s_interfaces = { \"127.0.0.1\" }
s2s_require_encryption = true
s2s_secure_auth = false
s2s_timeout = 20"
        modules="$modules, \"dialback\""
        disabled=''
        [ -n "$DNS_PORT" ] &&
            s2s="$s2s
unbound = { forward = { \"127.0.0.1@$DNS_PORT\" }, resolvconf = false, hoststxt = false }"
    fi
    cat > "$CFG" <<CFG
-- Written by loadtest/peers/prosody.sh: a benchmark instance, not a production config.
run_as_root = true
pidfile = "$PIDFILE"
data_path = "$PEER_DIR/data"
log = { warn = "$PEER_DIR/prosody.log" }
c2s_ports = { $PORT }
c2s_interfaces = { "127.0.0.1" }
$s2s
http_ports = { }
https_ports = { }
modules_enabled = { $modules }
$disabled
-- Loopback benchmark: no TLS requirement, PLAIN allowed in the clear.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
registration_whitelist = { "127.0.0.0/8" }
ssl = { key = "$PEER_DIR/certs/$DOMAIN.key", certificate = "$PEER_DIR/certs/$DOMAIN.crt" }
component_ports = { }
-- Same listen backlog as the ejabberd peer: the default 128 resets connections in a login storm.
network_settings = { tcp_backlog = 1024 }
VirtualHost "$DOMAIN"
Component "conference.$DOMAIN" "muc"
    restrict_room_creation = false
    muc_room_locking = true
    muc_room_default_persistent = false
    muc_room_default_public = true
    muc_room_default_history_length = 20
    max_history_messages = 20
    muc_tombstones = false
CFG
}

running_pid() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

case "${1:-}" in
install)
    command -v prosody >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prosody; }
    ;;
start)
    if running_pid >/dev/null; then echo "prosody already running (pid $(running_pid))"; exit 0; fi
    write_config
    taskset -c "$PROSODY_CPUS" prosody --config "$CFG" -F >>"$PEER_DIR/prosody.out" 2>&1 &
    echo $! > "$PIDFILE"
    # Same fd limit for every server compared (the hard limit), as a production unit would set.
    prlimit --pid "$(cat "$PIDFILE")" --nofile="$(ulimit -Hn)":"$(ulimit -Hn)" || true
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null &&
            { [ -z "$S2S_PORT" ] || (exec 3<>/dev/tcp/127.0.0.1/"$S2S_PORT") 2>/dev/null; }; then
            echo "prosody pid $(cat "$PIDFILE") on 127.0.0.1:$PORT${S2S_PORT:+, s2s $S2S_PORT} (cpus $PROSODY_CPUS, domain $DOMAIN)"; exit 0
        fi
        sleep 0.1
    done
    echo "prosody did not start; see $PEER_DIR/prosody.out $PEER_DIR/prosody.log" >&2; exit 1
    ;;
stop)
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "prosody stopped"
    fi
    rm -f "$PIDFILE"
    ;;
register)
    n=${2:?usage: prosody.sh register N}
    dir="$PEER_DIR/data/$(encode "$DOMAIN")/accounts"
    mkdir -p "$dir"
    esc=${PASSWORD//\\/\\\\}; esc=${esc//\"/\\\"}
    for i in $(seq 1 "$n"); do
        printf 'return {\n\t["password"] = "%s";\n};\n' "$esc" > "$dir/$(encode "user$i").dat"
    done
    echo "wrote $n accounts under $dir (Prosody reads them on login; no restart needed)"
    ;;
roster)
    n=${2:?usage: prosody.sh roster N}
    dir="$PEER_DIR/data/$(encode "$DOMAIN")/roster"
    mkdir -p "$dir"
    entry() { printf '\t["%s"] = {\n\t\t["subscription"] = "both";\n\t\t["groups"] = {};\n\t};\n' "$1"; }
    hdr() { printf 'return {\n\t[false] = {\n\t\t["pending"] = {};\n\t\t["version"] = 1;\n\t};\n'; }
    {
        hdr
        for i in $(seq 2 $((n + 1))); do entry "user$i@$DOMAIN"; done
        printf '};\n'
    } > "$dir/$(encode user1).dat"
    for i in $(seq 2 $((n + 1))); do
        { hdr; entry "user1@$DOMAIN"; printf '};\n'; } > "$dir/$(encode "user$i").dat"
    done
    echo "wrote the rosters of user1 and its $n contacts under $dir"
    ;;
pid)
    running_pid || { echo "not running" >&2; exit 1; }
    ;;
*)
    sed -n '2,20p' "$0"; exit 2
    ;;
esac
