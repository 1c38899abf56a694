#!/usr/bin/env python3
"""Stream management (XEP-0198) interop of petrel with slixmpp's own xep_0198 plugin (run by
tests/interop_sm.rs).

alice uses xep_0198 with resumption: `<sm/>` is offered after authentication, the plugin enables it
(`sm_enabled` with an id). Acks both ways: alice's plugin asks for acks every 5 stanzas and the
server's `<a h/>` acknowledges her messages (`stanza_acked` for each); the server asks alice every
ack_freq stanzas and her answers are accepted (no stream error). Then alice's TCP connection is
killed (transport abort, no `</stream>`); bob writes to her meanwhile; she connects again, the
plugin resumes (`session_resumed`) and she gets exactly the messages she had not handled, once,
in order. The resumed session still sends. Repeated `--rounds` times (new connections land on any
shard).

Exits 0 only if everything was observed, 1 otherwise, within TIMEOUT s.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import slixmpp


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cert, sm):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        plugins = ["xep_0030", "xep_0199"] + (["xep_0198"] if sm else [])
        for p in plugins:
            self.register_plugin(p)
        self.events = []  # (kind, detail)
        self.bodies = []
        self.changed = asyncio.Event()
        for ev in ("session_start", "sm_enabled", "session_resumed", "sm_failed",
                   "disconnected", "session_end"):
            self.add_event_handler(ev, lambda e, ev=ev: self.record(ev, e))
        self.add_event_handler("stanza_acked", lambda s: self.record("acked", s))
        self.add_event_handler("stream_error", lambda e: self.record("stream_error", e))
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_all_auth", lambda *_: self.record("auth_failed", None))

    def record(self, kind, detail):
        self.events.append((kind, detail))
        self.changed.set()

    def on_message(self, msg):
        if msg["body"]:
            self.bodies.append(msg["body"])
            self.changed.set()

    def count(self, kind):
        return sum(1 for k, _ in self.events if k == kind)

    async def wait_for(self, pred, timeout, what):
        end = asyncio.get_running_loop().time() + timeout
        while not pred():
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"{self.boundjid}: timed out waiting for {what}; "
                    f"events={[k for k, _ in self.events]} bodies={self.bodies}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


def check(ok, what, failures):
    print(("OK: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


async def scenario(args, failures):
    alice = Peer("alice@localhost/phone", args.password, args.cert, sm=True)
    alice["xep_0198"].window = 5
    bob = Peer("bob@localhost/desk", args.password, args.cert, sm=False)
    for p in (alice, bob):
        p.connect(host="127.0.0.1", port=args.port)
    await alice.wait_for(lambda: alice.count("sm_enabled") == 1, 20, "sm_enabled")
    await bob.wait_for(lambda: bob.count("session_start") == 1, 20, "bob's session")
    sm_id = alice["xep_0198"].sm_id
    check(bool(sm_id), f"enable with resume gave an id ({sm_id})", failures)

    # Client -> server acks: 6 messages (the plugin asks on its own every 5), then an explicit <r/>:
    # the server's <a h/> covers exactly the 6.
    for i in range(6):
        alice.send_message(mto="bob@localhost/desk", mbody=f"a{i}", mtype="chat")
    await bob.wait_for(lambda: len(bob.bodies) == 6, 10, "alice's 6 messages")
    alice["xep_0198"].request_ack()
    await alice.wait_for(lambda: alice.count("acked") == 6, 10, "server acks for all 6")
    check(alice["xep_0198"].last_ack == 6 and not alice["xep_0198"].unacked_queue,
          "server <a h/> acknowledged exactly alice's 6 stanzas", failures)

    # Server -> client: 12 messages; the server asks for acks; slixmpp answers.
    for i in range(12):
        bob.send_message(mto="alice@localhost/phone", mbody=f"b{i}", mtype="chat")
    await alice.wait_for(lambda: len(alice.bodies) == 12, 10, "bob's 12 messages")
    check(alice.bodies == [f"b{i}" for i in range(12)], "12 messages in order", failures)

    expected = [f"b{i}" for i in range(12)]
    n = 12
    for rnd in range(args.rounds):
        disconnects = alice.count("disconnected")
        resumed = alice.count("session_resumed")
        alice.abort()
        await alice.wait_for(lambda: alice.count("disconnected") > disconnects, 10,
                             "the cut to be noticed")
        for i in range(3):
            bob.send_message(mto="alice@localhost/phone", mbody=f"b{n}", mtype="chat")
            expected.append(f"b{n}")
            n += 1
        await bob["xep_0199"].ping(jid="localhost", timeout=10)
        alice.connect(host="127.0.0.1", port=args.port)
        await alice.wait_for(lambda: alice.count("session_resumed") > resumed, 20,
                             f"resumption {rnd}")
        await alice.wait_for(lambda: len(alice.bodies) >= len(expected), 10,
                             f"messages sent while cut ({rnd})")
        # Nothing more (no duplicates) shortly after.
        await asyncio.sleep(0.3)
        check(alice.bodies == expected,
              f"round {rnd}: resumed, got exactly the missed messages once, in order", failures)
        check(alice.count("sm_failed") == 0 and alice.count("session_start") == 1,
              f"round {rnd}: no new session", failures)
        alice.send_message(mto="bob@localhost/desk", mbody=f"back{rnd}", mtype="chat")
        await bob.wait_for(lambda: f"back{rnd}" in bob.bodies, 10, "alice's message after resume")
        check(True, f"round {rnd}: the resumed session sends", failures)
    check(alice.count("stream_error") == 0, "no stream error", failures)
    for p in (alice, bob):
        p.disconnect()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    failures = []
    try:
        await asyncio.wait_for(scenario(args, failures), args.timeout)
    except (AssertionError, asyncio.TimeoutError) as e:
        failures.append(f"{type(e).__name__}: {e}")
        print(f"FAIL: {e}")
    if failures:
        print("FAILED: " + "; ".join(failures))
        sys.exit(1)
    print("ALL OK")


if __name__ == "__main__":
    asyncio.run(main())
