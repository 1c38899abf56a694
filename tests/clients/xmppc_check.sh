#!/usr/bin/env bash
# Interop checks with xmppc (libstrophe) against a RUNNING petrel. Starts no server.
# usage: xmppc_check.sh HOST PORT USER1@DOMAIN PASS1 USER2@DOMAIN PASS2 CA_PEM
#   CA_PEM: the server certificate to trust (petrel's generated DATA_DIR/tls/selfsigned-cert.pem);
#           libstrophe verifies the certificate and xmppc has no option to skip that.
# Needs: Debian xmppc, gcc (builds a tiny LD_PRELOAD shim: xmppc has no port option and always
# dials <domain>:5222 when there is no SRV record), python3 (stdlib peer xmpp_peer.py beside this file).
# xmppc's exit code is 0 even when it cannot connect, so every check reads its output.
set -u
HOST=$1 PORT=$2 U1=$3 P1=$4 U2=$5 P2=$6 CA=$7
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
gcc -shared -fPIC -O2 -o "$W/portmap.so" "$HERE/portmap.c" -ldl || { echo "FAIL: cannot build shim"; exit 1; }
mkdir -p "$W/.config"; printf '[default]\njid=%s\npwd=%s\n' "$U1" "$P1" > "$W/.config/xmppc.conf"
PEER="timeout 20 python3 $HERE/xmpp_peer.py $HOST $PORT"
pass=0 fail=0
ok()  { echo "PASS: $1"; pass=$((pass+1)); }
bad() { echo "FAIL: $1"; fail=$((fail+1)); [ -n "${2:-}" ] && tail -n 15 "$2" | cut -c1-400 | sed 's/^/    /'; }
X() { HOME=$W PORTMAP_HOST=$HOST PORTMAP_PORT=$PORT SSL_CERT_FILE=$CA LD_PRELOAD=$W/portmap.so \
        timeout "${T:-20}" xmppc -vvvv --jid "$U1" --pwd "$P1" -m "$@"; }
tag=$RANDOM$RANDOM
D1=${U1#*@}
# setup: a roster item, a XEP-0048 bookmark (in private storage: petrel mirrors it to PEP), an OMEMO device list + bundle
$PEER "$U1" "$P1" iq "<iq type='set' id='IQID'><query xmlns='jabber:iq:roster'><item jid='$U2' name='Peer$tag'><group>G</group></item></query></iq>" >/dev/null || bad "setup roster"
$PEER "$U1" "$P1" iq "<iq type='set' id='IQID'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='room$tag@conference.$D1' name='Room$tag' autojoin='true'><nick>n</nick></conference></storage></query></iq>" >/dev/null || bad "setup bookmark"
K=$(python3 -c "import base64,os;print(base64.b64encode(b'\x05'+os.urandom(32)).decode())")
DEV=$((RANDOM+1000))
$PEER "$U1" "$P1" iq "<iq type='set' id='IQID'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='eu.siacs.conversations.axolotl.devicelist'><item id='current'><list xmlns='eu.siacs.conversations.axolotl'><device id='$DEV'/></list></item></publish></pubsub></iq>" >/dev/null || bad "setup devicelist"
$PEER "$U1" "$P1" iq "<iq type='set' id='IQID'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='eu.siacs.conversations.axolotl.bundles:$DEV'><item id='current'><bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>$K</signedPreKeyPublic><signedPreKeySignature>$K</signedPreKeySignature><identityKey>$K</identityKey><prekeys><preKeyPublic preKeyId='1'>$K</preKeyPublic></prekeys></bundle></item></publish></pubsub></iq>" >/dev/null || bad "setup bundle"

X roster list > "$W/rl" 2>&1
grep -q 'Secure connection' "$W/rl" && grep -q 'SASL SCRAM-SHA-256 auth successful' "$W/rl" && ok "STARTTLS + SCRAM-SHA-256 login" || bad "STARTTLS + SCRAM login" "$W/rl"
grep -q "Peer$tag ($U2) sub=none" "$W/rl" && ok "roster list" || bad "roster list" "$W/rl"
X roster export > "$W/re" 2>&1; grep -qx "$U2" "$W/re" && ok "roster export" || bad "roster export" "$W/re"

$PEER "$U2" "$P2" recv "xmppc-$tag" 15 > "$W/peer" 2>&1 & pp=$!
for i in $(seq 50); do grep -q READY "$W/peer" && break; sleep 0.1; done
X message chat "$U2" "xmppc-$tag" > "$W/msg" 2>&1
wait $pp && ok "message chat delivered to the peer" || bad "message chat" "$W/peer"

X mam list "$U2" > "$W/mam" 2>&1
grep -q "<body>xmppc-$tag</body>" "$W/mam" && grep -q 'complete="true"' "$W/mam" && ok "mam list (XEP-0313)" || bad "mam list" "$W/mam"

X bookmark list > "$W/bm" 2>&1
grep -q "room$tag@conference.$D1 .*- true  - Room$tag" "$W/bm" && ok "bookmark list (XEP-0048 via PEP storage:bookmarks)" || bad "bookmark list" "$W/bm"

X discovery info "$D1" > "$W/di" 2>&1
grep -q 'im *- server' "$W/di" && grep -q 'http://jabber.org/protocol/disco#info' "$W/di" && ok "discovery info" || bad "discovery info" "$W/di"
X discovery item "$D1" > "$W/dit" 2>&1
grep -q "conference.$D1" "$W/dit" && ok "discovery item" || bad "discovery item" "$W/dit"

X omemo list > "$W/om" 2>&1
grep -q "omemo-sid-$DEV=" "$W/om" && ok "omemo list" || bad "omemo list" "$W/om"

# monitor stanza: xmppc as the receiving client (U1) for a message sent by the peer (U2)
T=8 X monitor stanza > "$W/mon" 2>&1 & mp=$!
for i in $(seq 80); do grep -q 'RECV: <iq id="[^"]*" to="[^"]*" type="result" from="[^"]*"/>' "$W/mon" && break; sleep 0.1; done
$PEER "$U2" "$P2" send "$U1" "to-monitor-$tag" >/dev/null
wait $mp
grep -q "<body>to-monitor-$tag</body>" "$W/mon" && ok "monitor stanza receives a message" || bad "monitor stanza" "$W/mon"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
