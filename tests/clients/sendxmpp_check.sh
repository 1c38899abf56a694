#!/usr/bin/env bash
# Interop checks with sendxmpp (Perl, Net::XMPP / XML::Stream) against a RUNNING petrel. Starts no server.
# usage: sendxmpp_check.sh HOST STARTTLS_PORT DIRECT_TLS_PORT|0 USER1@DOMAIN PASS1 USER2@DOMAIN PASS2
# Needs: Debian sendxmpp, python3 (stdlib peer xmpp_peer.py beside this file). sendxmpp only sends; it
# picks PLAIN itself (no mechanism option). Certificates are not verified (-n). Exit 0 only if all pass.
set -u
HOST=$1 PORT=$2 DTLS=$3 U1=$4 P1=$5 U2=$6 P2=$7
HERE=$(cd "$(dirname "$0")" && pwd); W=$(mktemp -d); trap 'rm -rf "$W"; kill $(jobs -p) 2>/dev/null' EXIT
N1=${U1%@*}; D1=${U1#*@}; tag=$RANDOM$RANDOM
PEER="timeout 25 python3 $HERE/xmpp_peer.py $HOST $PORT"
pass=0 fail=0
ok()  { echo "PASS: $1"; pass=$((pass+1)); }
bad() { echo "FAIL: $1"; fail=$((fail+1)); [ -n "${2:-}" ] && tail -n 12 "$2" | cut -c1-400 | sed 's/^/    /'; }
ready() { for i in $(seq 100); do grep -qs "${2:-READY}" "$1" && return 0; sleep 0.1; done; return 1; }
one() {  # name, port, peer-mode-args..., sendxmpp-args...
  local name=$1 port=$2 opts=$3 msg="sx-$4-$tag"
  $PEER "$U2" "$P2" recv "$msg" 20 > "$W/p-$4" 2>&1 & local pp=$!; ready "$W/p-$4"
  echo "$msg" | timeout 20 sendxmpp -d $opts -u "$N1" -p "$P1" -j "$HOST:$port" "$U2" > "$W/s-$4" 2>&1; local rc=$?
  if [ $rc -eq 0 ] && wait $pp; then ok "$name"; else kill $pp 2>/dev/null; bad "$name (sendxmpp rc=$rc)" "$W/s-$4"; fi
}
# sendxmpp's -j takes host:port and logs in as user@<host>, so HOST must be the XMPP domain or resolve to the server
one "send without -t (sendxmpp still negotiates STARTTLS when offered)" "$PORT" "" plain
one "send with -t (STARTTLS)" "$PORT" "-t -n" tls
[ "$DTLS" != 0 ] && one "send with -e (direct TLS)" "$DTLS" "-e -n" ssl
grep -q "mechanism='PLAIN'" "$W/s-tls" && ok "SASL PLAIN used over TLS" || bad "SASL mechanism" "$W/s-tls"
# headline type
$PEER "$U2" "$P2" recv "sx-head-$tag" 20 > "$W/ph" 2>&1 & pp=$!; ready "$W/ph"
echo "sx-head-$tag" | timeout 20 sendxmpp -t -n --message-type headline -u "$N1" -p "$P1" -j "$HOST:$PORT" "$U2" > "$W/sh" 2>&1
wait $pp && grep -q "type='headline'" "$W/ph" && ok "headline message" || bad "headline message" "$W/ph"
# MUC: the peer creates/configures the room, sendxmpp joins with -c and sends
ROOM="sx$tag@conference.$D1"
$PEER "$U2" "$P2" muc "$ROOM" peer "sx-muc-$tag" 20 > "$W/pm" 2>&1 & pp=$!; ready "$W/pm" JOINED
echo "sx-muc-$tag" | timeout 20 sendxmpp -t -n -c -r sxnick -u "$N1" -p "$P1" -j "$HOST:$PORT" "$ROOM" > "$W/sm" 2>&1; rc=$?
if [ $rc -eq 0 ] && wait $pp; then ok "MUC groupchat (-c)"; else kill $pp 2>/dev/null; bad "MUC groupchat (-c) rc=$rc" "$W/pm"; fi
# wrong password must make sendxmpp fail
echo x | timeout 20 sendxmpp -t -n -u "$N1" -p "wrong$P1" -j "$HOST:$PORT" "$U2" > "$W/sw" 2>&1 && bad "wrong password accepted" "$W/sw" || ok "wrong password refused"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
