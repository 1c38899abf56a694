#!/usr/bin/env bash
# Interop checks with go-sendxmpp (Go, github.com/xmppo/go-xmpp) against a RUNNING petrel. Starts no server.
# usage: go_sendxmpp_check.sh HOST STARTTLS_PORT DIRECT_TLS_PORT|0 USER1@DOMAIN PASS1 USER2@DOMAIN PASS2
# Needs: Debian go-sendxmpp, python3 (stdlib peer xmpp_peer.py beside this file). Certificates are not
# verified (-n). Exit 0 only if all checks pass.
set -u
HOST=$1 PORT=$2 DTLS=$3 U1=$4 P1=$5 U2=$6 P2=$7
HERE=$(cd "$(dirname "$0")" && pwd); W=$(mktemp -d); trap 'rm -rf "$W"; kill $(jobs -p) 2>/dev/null' EXIT
D1=${U1#*@}; tag=$RANDOM$RANDOM
PEER="timeout 25 python3 $HERE/xmpp_peer.py $HOST $PORT"
GS="timeout 20 go-sendxmpp -n --timeout 10"
pass=0 fail=0
ok()  { echo "PASS: $1"; pass=$((pass+1)); }
bad() { echo "FAIL: $1"; fail=$((fail+1)); [ -n "${2:-}" ] && tail -n 12 "$2" | cut -c1-400 | sed 's/^/    /'; }
ready() { for i in $(seq 100); do grep -qs "${2:-READY}" "$1" && return 0; sleep 0.1; done; return 1; }

# 1. send over STARTTLS (go-xmpp picks PLAIN; its "<auth>..</auth>\n" is followed by "<?xml ...?>" on restart)
$PEER "$U2" "$P2" recv "gs-starttls-$tag" 20 > "$W/p1" 2>&1 & pp=$!; ready "$W/p1"
echo "gs-starttls-$tag" | $GS -d -j "$HOST:$PORT" -u "$U1" -p "$P1" "$U2" > "$W/s1" 2>&1; rc=$?
if [ $rc -eq 0 ] && wait $pp; then ok "send over STARTTLS"; else kill $pp 2>/dev/null; bad "send over STARTTLS (go-sendxmpp rc=$rc)" "$W/s1"; fi

# 2. send over direct TLS (XEP-0368)
if [ "$DTLS" != 0 ]; then
  $PEER "$U2" "$P2" recv "gs-direct-$tag" 20 > "$W/p2" 2>&1 & pp=$!; ready "$W/p2"
  echo "gs-direct-$tag" | $GS -d -t -j "$HOST:$DTLS" -u "$U1" -p "$P1" "$U2" > "$W/s2" 2>&1; rc=$?
  if [ $rc -eq 0 ] && wait $pp; then ok "send over direct TLS"; else kill $pp 2>/dev/null; bad "send over direct TLS (rc=$rc)" "$W/s2"; fi
fi

# 3. listen: go-sendxmpp receives a message from the peer
timeout 15 go-sendxmpp -n -j "$HOST:$PORT" -u "$U1" -p "$P1" -l > "$W/l" 2>&1 & lp=$!
sleep 4
$PEER "$U2" "$P2" send "$U1" "gs-listen-$tag" > /dev/null 2>&1
for i in $(seq 50); do grep -q "gs-listen-$tag" "$W/l" && break; sleep 0.1; done
kill $lp 2>/dev/null
grep -q "$U2: gs-listen-$tag" "$W/l" && ok "listen (-l) receives a chat message" || bad "listen (-l)" "$W/l"

# 4. MUC: the peer creates and configures the room, go-sendxmpp joins it and sends a groupchat message
ROOM="gs$tag@conference.$D1"
$PEER "$U2" "$P2" muc "$ROOM" peer "gs-muc-$tag" 20 > "$W/p4" 2>&1 & pp=$!; ready "$W/p4" JOINED
echo "gs-muc-$tag" | $GS -j "$HOST:$PORT" -u "$U1" -p "$P1" -c -a gsnick "$ROOM" > "$W/s4" 2>&1; rc=$?
if [ $rc -eq 0 ] && wait $pp; then ok "MUC join + groupchat (-c)"; else kill $pp 2>/dev/null; bad "MUC (-c) rc=$rc" "$W/s4"; fi

# 5. HTTP upload (XEP-0363): go-sendxmpp uploads, the peer gets the URL (with OOB), GET returns the same bytes
head -c 3000 /dev/urandom > "$W/up.bin"
$PEER "$U2" "$P2" recv "/up.bin" 20 > "$W/p5" 2>&1 & pp=$!; ready "$W/p5"
$GS -j "$HOST:$PORT" -u "$U1" -p "$P1" -h "$W/up.bin" "$U2" > "$W/s5" 2>&1; rc=$?
if [ $rc -eq 0 ] && wait $pp; then
  url=$(grep -o '<body>[^<]*</body>' "$W/p5" | head -1 | sed 's/<[^>]*>//g')
  python3 - "$url" "$W/up.bin" <<'PY' && ok "HTTP upload (-h): PUT by client, GET returns the same bytes" || bad "HTTP upload GET $url"
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=10).read() == open(sys.argv[2], 'rb').read() else 1)
PY
else kill $pp 2>/dev/null; bad "HTTP upload (-h) rc=$rc" "$W/s5"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
