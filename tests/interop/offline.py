#!/usr/bin/env python3
"""Interop check of petrel's offline messages and blocking with slixmpp (run by
tests/interop_offline.rs), over STARTTLS verified against the server's self-signed certificate.

Phases (the Rust test runs them in order and checks the store in between):
  send     alice@localhost sends two chat messages to bob@localhost, who is offline.
  receive  bob@localhost logs in and must get both, in order, each with a XEP-0203 <delay/>
           from 'localhost'.
  block    alice blocks bob (XEP-0191), sees the block push and the block list; bob's message to
           alice comes back as service-unavailable and is not delivered; alice's message to bob
           comes back as not-acceptable with <blocked/>; after unblock, bob's message arrives.

Exits 0 when everything was observed, 1 otherwise (printing what was missing).
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import slixmpp

BLOCKED_NS = "urn:xmpp:blocking:errors"


class Peer(slixmpp.ClientXMPP):
    """One logged-in user that records what it saw."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for plugin in ("xep_0030", "xep_0191", "xep_0199", "xep_0203"):
            self.register_plugin(plugin)
        self.started = asyncio.Event()
        self.failed = None
        self.messages = []
        self.errors = []
        self.pushes = []
        self.got = asyncio.Event()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("blocked", lambda iq: self.pushes.append(("block", set(iq["block"]["items"]))))
        self.add_event_handler("unblocked", lambda iq: self.pushes.append(("unblock", set(iq["unblock"]["items"]))))
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    async def on_start(self, _event):
        self.send_presence()
        await self.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        self.started.set()

    def on_message(self, msg):
        if msg["type"] == "error":
            self.errors.append(msg)
        else:
            self.messages.append(msg)
        self.got.set()

    async def wait_for(self, pred, timeout=5):
        """Waits until pred() is true (checked on every stanza)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not pred():
            self.got.clear()
            left = end - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.got.wait(), left)
            except asyncio.TimeoutError:
                return pred()
        return True


async def login(name, resource, args):
    p = Peer(f"{name}@localhost/{resource}", args.password, args.cert)
    p.connect("127.0.0.1", args.port)
    await p.started.wait()
    if p.failed:
        raise RuntimeError(f"{name}: {p.failed}")
    return p


async def bye(*peers):
    for p in peers:
        p.disconnect()
    await asyncio.gather(*(asyncio.wait_for(p.disconnected, 5) for p in peers), return_exceptions=True)


def condition(err):
    return err["error"]["condition"]


async def phase_send(args):
    alice = await login("alice", "a", args)
    alice.send_message(mto="bob@localhost", mbody="offline one", mtype="chat")
    alice.send_message(mto="bob@localhost", mbody="offline two", mtype="chat")
    await alice.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    problems = [f"alice got an error: {e}" for e in alice.errors]
    await bye(alice)
    return problems


async def phase_receive(args):
    bob = await login("bob", "b", args)
    await bob.wait_for(lambda: len(bob.messages) >= 2)
    problems = []
    bodies = [m["body"] for m in bob.messages]
    if bodies[:2] != ["offline one", "offline two"]:
        problems.append(f"bob got {bodies}, expected the two offline messages in order")
    for m in bob.messages[:2]:
        delay = m["delay"]
        stamp = delay["stamp"]
        print(f"bob: {m['body']!r} from {m['from']} delay from={delay['from']} stamp={stamp}")
        if str(delay["from"]) != "localhost" or stamp is None:
            problems.append(f"no proper <delay/> on {m}")
        if m["from"].bare != "alice@localhost":
            problems.append(f"wrong sender on {m}")
    await bye(bob)
    return problems


async def phase_block(args):
    alice = await login("alice", "a", args)
    bob = await login("bob", "b", args)
    problems = []
    await alice.plugin["xep_0191"].block("bob@localhost", timeout=5)
    if not await alice.wait_for(lambda: ("block", {slixmpp.JID("bob@localhost")}) in alice.pushes):
        problems.append(f"no block push; pushes {alice.pushes}")
    listed = await alice.plugin["xep_0191"].get_blocked(timeout=5)
    if set(map(str, listed["blocklist"]["items"])) != {"bob@localhost"}:
        problems.append(f"block list is {listed['blocklist']['items']}")

    bob.send_message(mto="alice@localhost", mbody="blocked in", mtype="chat")
    if not await bob.wait_for(lambda: bob.errors):
        problems.append("bob got no error for a message to alice, who blocked him")
    elif condition(bob.errors[-1]) != "service-unavailable":
        problems.append(f"bob's error is {condition(bob.errors[-1])}")
    alice.send_message(mto="bob@localhost", mbody="blocked out", mtype="chat")
    if not await alice.wait_for(lambda: alice.errors):
        problems.append("alice got no error for a message to bob, whom she blocked")
    else:
        err = alice.errors[-1]
        blocked = err.xml.find(f"{{jabber:client}}error/{{{BLOCKED_NS}}}blocked")
        if condition(err) != "not-acceptable" or blocked is None:
            problems.append(f"alice's error: {err}")
    await alice.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    await bob.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    if any(m["body"] == "blocked in" for m in alice.messages):
        problems.append("alice received a message from bob while blocking him")
    if any(m["body"] == "blocked out" for m in bob.messages):
        problems.append("bob received a message from alice while she blocks him")

    await alice.plugin["xep_0191"].unblock("bob@localhost", timeout=5)
    bob.send_message(mto="alice@localhost", mbody="after unblock", mtype="chat")
    if not await alice.wait_for(lambda: any(m["body"] == "after unblock" for m in alice.messages)):
        problems.append("message after unblock not delivered")
    print(f"alice pushes: {alice.pushes}")
    await bye(alice, bob)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("phase", choices=["send", "receive", "block"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    phase = {"send": phase_send, "receive": phase_receive, "block": phase_block}[args.phase]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = loop.run_until_complete(asyncio.wait_for(phase(args), args.timeout))
    except asyncio.TimeoutError:
        problems = [f"timed out after {args.timeout} s"]
    except Exception as e:  # noqa: BLE001 - any failure is a failed check, reported
        problems = [f"{type(e).__name__}: {e}"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"OK: {args.phase}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
