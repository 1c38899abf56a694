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
