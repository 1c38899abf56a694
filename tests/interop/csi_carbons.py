#!/usr/bin/env python3
"""Message Carbons (XEP-0280) and Client State Indication (XEP-0352) interop of petrel with slixmpp's
own xep_0280 and xep_0352 plugins (run by tests/interop_csi_carbons.rs).

Carbons: four resources of alice (the kernel spreads them over the shards; every pair is checked)
enable carbons with xep_0280; bob writes to alice/a0: a0 gets the message, a1..a3 get
`carbon_received` events with the forwarded message; a0 writes to bob: a1..a3 get `carbon_sent`;
a message with `<private/>` is not copied (the next copy each resource sees is the plain message's).

CSI: bob's slixmpp sees `<csi/>` in the stream features (xep_0352 enables itself), sends
`<inactive/>`; carol and alice send him directed presences (carol twice): none arrives while he is
inactive; after `<active/>` he gets carol's newest and alice's, in order, and never carol's older one.

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import slixmpp

CARBONS = "urn:xmpp:carbons:2"


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for p in ("xep_0030", "xep_0199", "xep_0280", "xep_0297", "xep_0352"):
            self.register_plugin(p)
        self.started = asyncio.Event()
        self.failed = None
        self.log = []  # ("msg"|"received"|"sent"|"presence", from, body-or-show)
        self.changed = asyncio.Event()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("carbon_received", lambda m: self.on_carbon("received", m))
        self.add_event_handler("carbon_sent", lambda m: self.on_carbon("sent", m))
        # Every incoming presence, as it comes off the wire (slixmpp's roster events skip
        # directed presences from JIDs outside the roster).
        self.add_filter("in", self.on_in)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    def record(self, entry):
        self.log.append(entry)
        self.changed.set()

    def on_message(self, msg):
        if msg["body"]:
            self.record(("msg", str(msg["from"]), msg["body"]))

    def on_carbon(self, kind, msg):
        inner = msg[f"carbon_{kind}"]
        self.record((kind, str(inner["from"]), inner["body"]))

    def on_in(self, stanza):
        if isinstance(stanza, slixmpp.Presence) and stanza["type"] in ("available", "away",
                                                                     "dnd", "xa", "chat"):
            self.record(("presence", str(stanza["from"]), stanza["show"]))
        return stanza

    async def on_start(self, _event):
        self.send_presence()
        self.started.set()

    async def wait_for(self, pred, timeout, what):
        end = asyncio.get_running_loop().time() + timeout
        while not pred(self.log):
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{self.boundjid}: timed out waiting for {what}; log={self.log}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def sync(self):
        await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=10)


async def login(jid, password, cert, port):
    c = Peer(jid, password, cert)
    c.connect(host="127.0.0.1", port=port)
    await asyncio.wait_for(c.started.wait(), 20)
    if c.failed:
        raise AssertionError(f"{jid}: {c.failed}")
    return c


def check(ok, what, failures):
    print(("OK: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


async def carbons(args, failures):
    alice = [await login(f"alice@localhost/a{i}", args.password, args.cert, args.port)
             for i in range(4)]
    bob = await login("bob@localhost/b", args.password, args.cert, args.port)
    for a in alice:
        await a["xep_0280"].enable(timeout=10)
    a0 = alice[0]
    # Received copies.
    bob.send_message(mto="alice@localhost/a0", mbody="hello a0", mtype="chat")
    await a0.wait_for(lambda l: ("msg", "bob@localhost/b", "hello a0") in l, 10, "the original")
    for a in alice[1:]:
        await a.wait_for(lambda l: ("received", "bob@localhost/b", "hello a0") in l, 10,
                         "a received carbon")
    check(not any(e[0] == "received" for e in a0.log), "the receiver gets no copy", failures)
    check(True, "received carbons on every other resource", failures)
    # Sent copies, and <private/> is not copied.
    priv = a0.make_message(mto="bob@localhost/b", mbody="secret", mtype="chat")
    priv.enable("carbon_private")
    priv.send()
    a0.send_message(mto="bob@localhost/b", mbody="plain", mtype="chat")
    await bob.wait_for(lambda l: ("msg", "alice@localhost/a0", "plain") in l, 10, "plain")
    for a in alice[1:]:
        await a.wait_for(lambda l: ("sent", "alice@localhost/a0", "plain") in l, 10,
                         "a sent carbon")
        check(("sent", "alice@localhost/a0", "secret") not in a.log,
              f"{a.boundjid.resource}: the private message was not copied", failures)
    check(not any(e[0] == "sent" for e in a0.log), "the sender gets no copy", failures)
    check(("msg", "alice@localhost/a0", "secret") in bob.log, "the private message arrived",
          failures)
    print("OK: carbons")
    for c in alice + [bob]:
        c.disconnect()


async def csi(args, failures):
    bob = await login("bob@localhost/b", args.password, args.cert, args.port)
    carol = await login("carol@localhost/c", args.password, args.cert, args.port)
    alice = await login("alice@localhost/a", args.password, args.cert, args.port)
    check(bob["xep_0352"].enabled, "csi offered in the stream features", failures)
    bob["xep_0352"].send_inactive()
    await bob.sync()
    # Each sync only says the sender's shard took the presence; with two shards it may still be on
    # its way to bob's. XMPP orders stanzas per sender, not across senders, so the order this test
    # expects is the arrival order at bob's shard: give each presence time to get there (a ping to
    # bob would not do: an IQ to an inactive client flushes what CSI holds, to keep the order).
    carol.send_presence(pto="bob@localhost/b", pshow="away")
    await carol.sync()
    await asyncio.sleep(0.3)
    alice.send_presence(pto="bob@localhost/b", pshow="dnd")
    await alice.sync()
    await asyncio.sleep(0.3)
    carol.send_presence(pto="bob@localhost/b", pshow="xa")
    await carol.sync()
    await asyncio.sleep(1.0)
    held = [e for e in bob.log if e[0] == "presence"]
    check(held == [], f"nothing arrives while inactive (got {held})", failures)
    bob["xep_0352"].send_active()
    await bob.wait_for(lambda l: len([e for e in l if e[0] == "presence"]) >= 2, 10,
                       "the held presences")
    await bob.sync()
    got = [(e[1], e[2]) for e in bob.log if e[0] == "presence"]
    want = [("alice@localhost/a", "dnd"), ("carol@localhost/c", "xa")]
    check(got == want, f"flushed on active, newest per contact, in order: {got}", failures)
    print("OK: csi")
    for c in (bob, carol, alice):
        c.disconnect()


async def main(args):
    failures = []
    try:
        await asyncio.wait_for(carbons(args, failures), args.timeout / 2)
        await asyncio.wait_for(csi(args, failures), args.timeout / 2)
    except (AssertionError, asyncio.TimeoutError) as e:
        failures.append(f"{type(e).__name__}: {e}")
        print(f"FAIL: {e}")
    await asyncio.sleep(0.2)
    return failures


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    failures = asyncio.run(main(args))
    if failures:
        print("FAILURES:", failures)
        sys.exit(1)
    print("ALL OK")
