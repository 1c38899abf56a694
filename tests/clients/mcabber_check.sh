#!/usr/bin/env bash
# Interop checks with mcabber (loudmouth) against a RUNNING petrel. Starts no server.
# usage: mcabber_check.sh HOST PORT USER1@DOMAIN PASS1 USER2@DOMAIN PASS2
# Needs: Debian mcabber, tmux (mcabber needs a terminal), python3 (stdlib peer xmpp_peer.py beside this
# file). mcabber is driven through its FIFO module; its tracelog is the XML capture.
# Runs twice: tls = 1 and tls = 0 (certificate checks off: ssl_ignore_checks). Note: loudmouth still
# negotiates STARTTLS when the server offers it, even with tls = 0.
set -u
HOST=$1 PORT=$2 U1=$3 P1=$4 U2=$5 P2=$6
HERE=$(cd "$(dirname "$0")" && pwd); W=$(mktemp -d); S=mcabber-check-$$
trap 'tmux kill-session -t $S 2>/dev/null; rm -rf "$W"; kill $(jobs -p) 2>/dev/null' EXIT
D1=${U1#*@}; tag=$RANDOM$RANDOM
PEER="timeout 25 python3 $HERE/xmpp_peer.py $HOST $PORT"
pass=0 fail=0
ok()  { echo "PASS: $1"; pass=$((pass+1)); }
bad() { echo "FAIL: $1"; fail=$((fail+1)); [ -n "${2:-}" ] && tail -n 12 "$2" | cut -c1-400 | sed 's/^/    /'; }
wait_for() { for i in $(seq ${3:-100}); do grep -qs -- "$2" "$1" && return 0; sleep 0.1; done; return 1; }
for mode in starttls plain; do
  tls=1; [ $mode = plain ] && tls=0
  R=mcabber$tag$mode
  mkdir -p "$W/$mode/logs"
  cat > "$W/$mode/rc" <<RC
set jid = $U1
set password = $P1
set server = $HOST
set port = $PORT
set tls = $tls
set ssl_ignore_checks = 1
set resource = $R
set fifo_name = $W/$mode/fifo
set logging = 1
set load_logs = 0
set logging_dir = $W/$mode/logs
set tracelog_level = 3
set tracelog_file = $W/$mode/trace
module load fifo
RC
  chmod 600 "$W/$mode/rc"
  tmux new-session -d -s $S -x 200 -y 50 "HOME=$W/$mode mcabber -f $W/$mode/rc"
  wait_for "$W/$mode/trace" "<jid>$U1/$R" 150 && ok "$mode: login and bind" || { bad "$mode: login" "$W/$mode/trace"; tmux kill-session -t $S; continue; }
  FR=$(grep -o "<jid>$U1/$R[^<]*</jid>" "$W/$mode/trace" | head -1 | sed 's/<[^>]*>//g')
  wait_for "$W/$mode/trace" "jabber:iq:roster" 50 && ok "$mode: roster fetched" || bad "$mode: roster" "$W/$mode/trace"
  # loudmouth negotiates STARTTLS whenever offered, even with tls = 0; it always picks PLAIN
  grep -q 'mechanism="PLAIN"' "$W/$mode/trace" && ok "$mode: SASL PLAIN" || bad "$mode: SASL mechanism" "$W/$mode/trace"
  for i in $(seq 50); do [ -p "$W/$mode/fifo" ] && break; sleep 0.1; done
  # receive
  $PEER "$U2" "$P2" send "$U1" "to-mcabber-$mode-$tag" > /dev/null 2>&1
  wait_for "$W/$mode/trace" "to-mcabber-$mode-$tag" && ok "$mode: message received" || bad "$mode: message received" "$W/$mode/trace"
  # send
  $PEER "$U2" "$P2" recv "from-mcabber-$mode-$tag" 15 > "$W/p1" 2>&1 & pp=$!; wait_for "$W/p1" READY
  echo "/say_to $U2 from-mcabber-$mode-$tag" > "$W/$mode/fifo"
  wait $pp && ok "$mode: message sent (/say_to)" || bad "$mode: /say_to" "$W/p1"
  # an IQ routed to mcabber's full JID: XEP-0092 version answered by the client
  $PEER "$U2" "$P2" iq "<iq type='get' id='IQID' to='$FR'><query xmlns='jabber:iq:version'/></iq>" > "$W/v" 2>&1 && grep -q "<name>mcabber</name>" "$W/v" && ok "$mode: IQ to the client's full JID answered (version)" || bad "$mode: version IQ to full JID" "$W/v"
  # MUC: the peer creates/configures the room, mcabber joins and speaks
  ROOM="mc$tag$mode@conference.$D1"
  $PEER "$U2" "$P2" muc "$ROOM" peer "mc-muc-$tag" 20 > "$W/pm" 2>&1 & pp=$!; wait_for "$W/pm" JOINED
  echo "/room join $ROOM mcnick" > "$W/$mode/fifo"
  wait_for "$W/$mode/trace" "from=\"$ROOM/mcnick\"\|from='$ROOM/mcnick'" 80
  echo "/say_to $ROOM mc-muc-$tag" > "$W/$mode/fifo"
  wait $pp && ok "$mode: MUC join + groupchat" || bad "$mode: MUC" "$W/pm"
  echo "/quit" > "$W/$mode/fifo"; sleep 1; tmux kill-session -t $S 2>/dev/null
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
