# Shared by smoke.sh and soak.sh (sourced): loopback ports and the base config of a test petrel.

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Wait (up to 20 s) until something accepts on loopback port $1.
wait_port() { for _ in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# petrel_config DIR PORT [HTTP_PORT]: write DIR/petrel.toml, data in DIR/data, a STARTTLS listener on
# loopback PORT that allows PLAIN there (and an HTTP listener for WebSocket on HTTP_PORT when given);
# the caller appends its [modules.*] tables.
petrel_config() {
    cat > "$1/petrel.toml" <<CONF
[general]
hosts = ["localhost"]
data_dir = "$1/data"
loglevel = "warn"
[auth]
scram_iterations = 4096
[[listen.c2s]]
port = $2
ip_address = "127.0.0.1"
tls = "starttls"
allow_plaintext_on_loopback = true
CONF
    if [ -n "${3:-}" ]; then
        cat >> "$1/petrel.toml" <<CONF
[[listen.http]]
port = $3
ip_address = "127.0.0.1"
allow_plaintext_on_loopback = true
handlers = ["websocket"]
CONF
    fi
}

# chat_modules DIR: appends to DIR/petrel.toml the modules a chat client's session uses (ping,
# roster, presence, stream management, offline): the login and scaling benchmarks' module set.
chat_modules() {
    cat >> "$1/petrel.toml" <<CONF
[modules.ping]
[modules.roster]
[modules.presence]
[modules.stream_management]
[modules.offline]
CONF
}

# json_field FILE KEY: one top-level value of a petrel-load JSON report ("" when absent or null).
json_field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); v=r.get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }

# serve_pinned PETREL CPUS SHARDS CONFIG LOG PORT: starts `PETREL serve` on CPUS (taskset) with
# SHARDS shards, its output in LOG, and sets $pid; exits the script when nothing listens on loopback
# PORT within 20 s (a server that cannot start gets no figures).
serve_pinned() {
    taskset -c "$2" "$1" serve --config "$4" --shards "$3" --allow-oversubscribe > "$5" 2>&1 &
    pid=$!
    if ! wait_port "$6"; then
        echo "petrel ($1, $3 shard(s) on CPU $2) did not start: see $5" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
}

# median "N N N ...": the middle value of a space-separated list of numbers (the lower one of the
# two middles for an even count).
# shellcheck disable=SC2086
median() { printf '%s\n' $1 | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
