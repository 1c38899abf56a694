#!/usr/bin/env bash
# ejabberd as a benchmark peer for petrel-load, on a private loopback port.
#
#   ejabberd.sh install        apt-get install ejabberd (Debian package)
#   ejabberd.sh start          write config + cert, start pinned with taskset (own node name,
#                              spool and logs under $PEER_DIR; the system instance is untouched)
#   ejabberd.sh stop           stop the instance started here
#   ejabberd.sh register N     create user1..userN with XEP-0077 in-band registration driven by
#                              petrel-load (hundreds/s; `ejabberdctl register` starts an Erlang
#                              node per call, ~1 s each, far too slow for 10k users)
#   ejabberd.sh pid            print the server (beam.smp) PID
#   ejabberd.sh ctl ARGS...    ejabberdctl ARGS on this instance (e.g. register USER DOMAIN PASSWORD)
#
# Environment (defaults): PEER_DIR=/tmp/petrel-peers/ejabberd PORT=25222 DOMAIN=localhost
#   PASSWORD=password EJABBERD_CPUS=0 (taskset CPU list; Erlang gets one scheduler per CPU)
#   PETREL_LOAD=<repo>/target/release/petrel-load
#   S2S_PORT= (set: federation on, an ejabberd_s2s_in listener on 127.0.0.1:S2S_PORT,
#   STARTTLS offered and used (s2s_use_starttls: optional) with the self-signed certificate,
#   streams authenticated by dialback (mod_s2s_dialback), outgoing over IPv4)
#   DNS_PORT= (set: the node resolves through the DNS server on 127.0.0.1:DNS_PORT only, its
#   Erlang inetrc `{nameserver, {127,0,0,1}, DNS_PORT}` with `{lookup, [file, dns]}` and
#   `{resolv_conf, ""}`)
#
# Benchmark settings, deliberately unlike a production install:
#   - SASL PLAIN allowed without TLS (loopback only; STARTTLS still offered)
#   - passwords stored in plain so PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256 all work
#   - listen backlog 1024 (the default of 5 drops SYNs in a login storm)
#   - c2s shaper lifted (shaper: none), max_user_sessions raised, registration open to
#     127.0.0.0/8 with registration_timeout: infinity (no per-IP registration delay)
#   - no s2s unless S2S_PORT is set; no HTTP, offline storage or stream management modules
#   - MUC (XEP-0045) at conference.$DOMAIN: anyone may create rooms, up to 100000 occupants per
#     room and rooms per user, presence broadcast to every occupant (max_users_presence), no
#     message/presence interval limits nor room/user shapers, rooms not persistent
#   - PEP (XEP-0163: mod_pubsub with the pep plugin, mod_caps) with its default node
#     configuration, for the pep scenario
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PEER_DIR=${PEER_DIR:-/tmp/petrel-peers/ejabberd}
PORT=${PORT:-25222}
DOMAIN=${DOMAIN:-localhost}
PASSWORD=${PASSWORD:-password}
EJABBERD_CPUS=${EJABBERD_CPUS:-0}
S2S_PORT=${S2S_PORT:-}
DNS_PORT=${DNS_PORT:-}
PETREL_LOAD=${PETREL_LOAD:-$HERE/../../target/release/petrel-load}
NODE=ejload@localhost
CTL=(ejabberdctl --config-dir "$PEER_DIR/etc" --logs "$PEER_DIR/log" --spool "$PEER_DIR/spool" --node "$NODE")

cpu_count() { # number of CPUs in a taskset list like "0,2-3"
    local n=0 part
    for part in ${1//,/ }; do
        if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
    done
    echo "$n"
}

write_config() {
    mkdir -p "$PEER_DIR/etc" "$PEER_DIR/log" "$PEER_DIR/spool"
    if [ ! -f "$PEER_DIR/etc/server.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$DOMAIN" \
            -keyout "$PEER_DIR/etc/key.pem" -out "$PEER_DIR/etc/cert.pem" 2>/dev/null
        cat "$PEER_DIR/etc/key.pem" "$PEER_DIR/etc/cert.pem" > "$PEER_DIR/etc/server.pem"
    fi
    if [ -n "$DNS_PORT" ]; then
        # resolv_conf "": otherwise the node keeps taking its nameservers from /etc/resolv.conf.
        printf '%s\n' '{lookup, [file, dns]}.' '{resolv_conf, ""}.' \
            '{host, {127,0,0,1}, ["localhost", "hostalias"]}.' \
            "{nameserver, {127,0,0,1}, $DNS_PORT}." > "$PEER_DIR/etc/inetrc"
    else
        cp /etc/ejabberd/inetrc "$PEER_DIR/etc/inetrc"
    fi
    local s2s_listen='' s2s_opts='' s2s_mod=''
    if [ -n "$S2S_PORT" ]; then
        s2s_listen="  -
    port: $S2S_PORT
    ip: \"127.0.0.1\"
    module: ejabberd_s2s_in
    max_stanza_size: 524288
    shaper: none"
        # The certificate is self-signed: it encrypts, dialback authenticates.
        s2s_opts="s2s_use_starttls: optional
s2s_access: s2s
outgoing_s2s_families:
  - ipv4"
        s2s_mod="  mod_s2s_dialback: {}"
    fi
    local s; s=$(cpu_count "$EJABBERD_CPUS")
    cat > "$PEER_DIR/etc/ejabberdctl.cfg" <<CFG
ERLANG_NODE=$NODE
EJABBERD_PID_PATH=$PEER_DIR/ejabberd.pid
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 +S $s:$s"
CFG
    cat > "$PEER_DIR/etc/ejabberd.yml" <<CFG
# Written by loadtest/peers/ejabberd.sh: a benchmark instance, not a production config.
hosts:
  - "$DOMAIN"
loglevel: warning
certfiles:
  - "$PEER_DIR/etc/server.pem"
listen:
  -
    port: $PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    backlog: 1024
    shaper: none
    access: c2s
    starttls: true
    starttls_required: false
$s2s_listen
$s2s_opts
shaper: {}
shaper_rules:
  max_user_sessions: 100
  c2s_shaper: none
  s2s_shaper: none
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  s2s:
    allow: all
  register:
    allow: all
  trusted_network:
    allow: loopback
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
modules:
$s2s_mod
  mod_disco: {}
  mod_ping: {}
  mod_version: {}
  mod_roster: {}
  mod_caps: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_register:
    ip_access: trusted_network
    access: register
    password_strength: 0
  mod_muc:
    host: "conference.@HOST@"
    access: all
    access_create: all
    access_persistent: all
    max_users: 100000
    max_users_admin_threshold: 100000
    max_user_conferences: 100000
    max_users_presence: 100000
    min_message_interval: 0
    min_presence_interval: 0
    room_shaper: none
    user_message_shaper: none
    user_presence_shaper: none
    history_size: 20
    default_room_options:
      max_users: 100000
      persistent: false
      public: true
CFG
    chown -R ejabberd: "$PEER_DIR"
}

server_pid() {
    local f=$PEER_DIR/ejabberd.pid
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

case "${1:-}" in
install)
    command -v ejabberdctl >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ejabberd; }
    ;;
start)
    if server_pid >/dev/null; then echo "ejabberd already running (pid $(server_pid))"; exit 0; fi
    write_config
    # ejabberdctl switches to the ejabberd user through su, whose PAM session applies limits.conf:
    # without this the node gets a 1024 fd soft limit and a 1000-user benchmark hits EMFILE.
    printf 'ejabberd soft nofile %s\nejabberd hard nofile %s\n' "$(ulimit -Hn)" "$(ulimit -Hn)" \
        > /etc/security/limits.d/petrel-bench-ejabberd.conf
    taskset -c "$EJABBERD_CPUS" "${CTL[@]}" foreground >>"$PEER_DIR/log/foreground.out" 2>&1 &
    for _ in $(seq 300); do
        if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null &&
            { [ -z "$S2S_PORT" ] || (exec 3<>/dev/tcp/127.0.0.1/"$S2S_PORT") 2>/dev/null; }; then
            for _ in $(seq 50); do server_pid >/dev/null && break; sleep 0.1; done
            echo "ejabberd pid $(server_pid || echo '?') on 127.0.0.1:$PORT${S2S_PORT:+, s2s $S2S_PORT} (cpus $EJABBERD_CPUS, domain $DOMAIN)"; exit 0
        fi
        sleep 0.1
    done
    echo "ejabberd did not start; see $PEER_DIR/log" >&2; exit 1
    ;;
stop)
    if pid=$(server_pid); then
        "${CTL[@]}" stop >/dev/null 2>&1 || kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "ejabberd stopped"
    fi
    rm -f "$PEER_DIR/ejabberd.pid"
    ;;
register)
    n=${2:?usage: ejabberd.sh register N}
    "$PETREL_LOAD" register --server "127.0.0.1:$PORT" --domain "$DOMAIN" --users "$n" \
        --password "$PASSWORD" --quiet
    ;;
pid)
    server_pid || { echo "not running" >&2; exit 1; }
    ;;
ctl)
    shift
    "${CTL[@]}" "$@"
    ;;
*)
    sed -n '2,24p' "$0"; exit 2
    ;;
esac
