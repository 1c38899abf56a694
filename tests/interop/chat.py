#!/usr/bin/env python3
"""Interop check of petrel with slixmpp (run by tests/interop.rs).

Logs in PAIRS pairs of users (u0..u{2*PAIRS-1}@localhost) over STARTTLS, verifying the server's
self-signed certificate against the given PEM file (it is the only trusted CA, so this is a real
check, not a disabled one). slixmpp picks the strongest SASL mechanism the server offers. Each
client sends initial presence; the two members of every pair exchange a chat message both ways;
every client pings the server (XEP-0199) and asks for its disco#info (XEP-0030).

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import argparse
import asyncio
import logging
import ssl
import sys
from pathlib import Path

import slixmpp

PING_NS = "urn:xmpp:ping"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
SELF_CHECK = "self-check"


class Peer(slixmpp.ClientXMPP):
    """One logged-in user that records what it saw."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        # The listener speaks STARTTLS on its port; without this slixmpp first tries direct TLS there.
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.started = asyncio.Event()
        self.failed = None
        self.received = []
        self.errors = []
        self.self_check = asyncio.Event()
        self.got_message = asyncio.Event()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.failed_mechs = []
        # One event per refused mechanism; slixmpp then tries the next best one.
        self.add_event_handler("failed_auth", lambda *_: self.failed_mechs.append(self.mechanism()))
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("stream_error", lambda e: self.fail(f"stream error: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    async def on_start(self, _event):
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["type"] == "error":
            self.errors.append(str(msg))
        elif msg["body"] == SELF_CHECK:
            self.self_check.set()
        elif msg["type"] in ("chat", "normal"):
            self.received.append((str(msg["from"]), msg["body"]))
            self.got_message.set()

    def tls_version(self):
        sock = self.socket
        return sock.version() if isinstance(sock, (ssl.SSLSocket, ssl.SSLObject)) else None

    def mechanism(self):
        mech = self.plugin["feature_mechanisms"].mech
        return mech.name if mech is not None else None


async def run(port, cert, pairs, password):
    problems = []
    peers = [Peer(f"u{i}@localhost/py{i}", password, cert) for i in range(2 * pairs)]
    for p in peers:
        p.connect("127.0.0.1", port)
    await asyncio.gather(*(p.started.wait() for p in peers))
    for p in peers:
        if p.failed:
            problems.append(f"{p.boundjid}: {p.failed}")
    if problems:
        return problems

    for p in peers:
        tls = p.tls_version()
        mech = p.mechanism()
        print(f"{p.boundjid}: TLS {tls}, SASL {mech} (refused before: {p.failed_mechs})")
        if tls is None:
            problems.append(f"{p.boundjid}: not on TLS")
        if not (mech or "").startswith("SCRAM-SHA-256"):
            problems.append(f"{p.boundjid}: SASL {mech}, expected SCRAM-SHA-256*")
        if p.boundjid.resource != f"py{peers.index(p)}":
            problems.append(f"{p.boundjid}: bound resource differs from the requested one")

    # A message to one's own bare JID comes back once the server has the initial presence (a bare
    # JID message goes to available resources only, and presence is processed asynchronously).
    for p in peers:
        p.send_message(mto=p.boundjid.bare, mbody=SELF_CHECK, mtype="chat")
    checks = [asyncio.ensure_future(p.self_check.wait()) for p in peers]
    _done, pending = await asyncio.wait(checks, timeout=10)
    for w in pending:
        w.cancel()
    for p in peers:
        if not p.self_check.is_set():
            problems.append(f"{p.boundjid}: own bare-JID message did not come back; errors {p.errors}")
    if problems:
        return problems

    # Chat both ways inside every pair (to the bare JID and to the full JID).
    for i in range(pairs):
        a, b = peers[2 * i], peers[2 * i + 1]
        a.send_message(mto=b.boundjid.bare, mbody=f"hello from {a.boundjid.bare}", mtype="chat")
        b.send_message(mto=a.boundjid.full, mbody=f"reply from {b.boundjid.bare}", mtype="chat")
    waits = [asyncio.ensure_future(p.got_message.wait()) for p in peers]
    _done, pending = await asyncio.wait(waits, timeout=10)
    for w in pending:
        w.cancel()
    for i in range(pairs):
        a, b = peers[2 * i], peers[2 * i + 1]
        want_b = (a.boundjid.full, f"hello from {a.boundjid.bare}")
        want_a = (b.boundjid.full, f"reply from {b.boundjid.bare}")
        if want_b not in b.received:
            problems.append(f"{b.boundjid}: missing {want_b}, got {b.received}")
        if want_a not in a.received:
            problems.append(f"{a.boundjid}: missing {want_a}, got {a.received}")
    for p in peers:
        if p.errors:
            problems.append(f"{p.boundjid}: error messages {p.errors}")

    # XEP-0199 and XEP-0030 against the server.
    for p in peers:
        rtt = await p.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        info = await p.plugin["xep_0030"].get_info(jid="localhost", timeout=5, cached=False)
        features = set(info["disco_info"]["features"])
        identities = info["disco_info"]["identities"]
        print(f"{p.boundjid}: ping {rtt * 1000:.1f} ms, disco features {sorted(features)}, identities {identities}")
        for f in (PING_NS, DISCO_INFO_NS):
            if f not in features:
                problems.append(f"{p.boundjid}: disco#info lacks {f}")
        if not any(ident[0] == "server" for ident in identities):
            problems.append(f"{p.boundjid}: no server identity in {identities}")

    for p in peers:
        p.disconnect()
    await asyncio.gather(*(asyncio.wait_for(p.disconnected, 5) for p in peers), return_exceptions=True)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True, help="the server's self-signed certificate (PEM)")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = loop.run_until_complete(
            asyncio.wait_for(run(args.port, args.cert, args.pairs, args.password), args.timeout))
    except asyncio.TimeoutError:
        problems = [f"timed out (overall limit {args.timeout} s, or a 5 s ping/disco request)"]
    except Exception as e:  # noqa: BLE001 - any failure is a failed check, reported
        problems = [f"{type(e).__name__}: {e}"]
    # slixmpp's filter tasks are still pending when the loop stops; that is not our concern.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"OK: {args.pairs} pairs: STARTTLS, SCRAM, bind, presence, chat, ping, disco#info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
