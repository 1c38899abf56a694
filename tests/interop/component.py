#!/usr/bin/env python3
"""External component (XEP-0114) interop with slixmpp's ComponentXMPP (run by
tests/interop_component.rs; reusable by other tests through --mode serve).

--mode echo: the component connects as DOMAIN with SECRET on COMPONENT_PORT; USERS (user@localhost)
log in over STARTTLS (the server's certificate is the only trusted CA); each sends a chat message to
bot@DOMAIN; the component answers every message with "echo: BODY" from the address it was sent to;
every user must get its answer. Exits 0 and prints "OK: ..." only if everything was observed within
TIMEOUT s.

--mode serve: the component connects, prints "READY" once its handshake is accepted, then prints
one line "STANZA <xml>" per stanza it receives (messages, presences, IQs; IQ gets and sets are
answered with an empty result), until it is killed or TIMEOUT s pass.
"""

import argparse
import asyncio
import json
import logging
import sys
import urllib.request
from pathlib import Path

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP


class Echo(ComponentXMPP):
    """The component: answers messages (echo) or reports stanzas (serve)."""

    def __init__(self, domain, secret, port, mode):
        super().__init__(domain, secret, "127.0.0.1", port)
        self.mode = mode
        self.ready = asyncio.Event()
        self.failed = None
        self.seen = []
        self.add_event_handler("session_start", lambda _e: self.on_ready())
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence", lambda p: self.report(p))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("stream_error", lambda e: self.fail(f"stream error: {e}"))
        self.register_handler(slixmpp.xmlstream.handler.Callback(
            "any iq", slixmpp.xmlstream.matcher.StanzaPath("iq"), self.on_iq))

    def on_ready(self):
        if self.mode == "serve":
            print("READY", flush=True)
        self.ready.set()

    def fail(self, why):
        self.failed = why
        self.ready.set()

    def report(self, stanza):
        if self.mode == "serve":
            print(f"STANZA {stanza}", flush=True)

    def on_iq(self, iq):
        self.report(iq)
        if iq["type"] in ("get", "set"):
            iq.reply(clear=True).send()

    def on_message(self, msg):
        self.report(msg)
        if msg["type"] == "error":
            return
        self.seen.append((str(msg["from"]), str(msg["to"]), msg["body"]))
        if self.mode == "echo":
            msg.reply(f"echo: {msg['body']}").send()


class User(slixmpp.ClientXMPP):
    """One logged-in user that records the messages it gets."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.started = asyncio.Event()
        self.got = asyncio.Event()
        self.failed = None
        self.received = []
        self.add_event_handler("session_start", lambda _e: self.started.set())
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    def on_message(self, msg):
        self.received.append((str(msg["from"]), msg["type"], msg["body"]))
        self.got.set()


def session_shards(admin_port, token):
    """Full JID -> shard of every session, from the admin API."""
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/api/sessions",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return {s["jid"]: s["shard"] for s in json.load(r)["sessions"]}


async def spread(users, args):
    """Adds sessions (more resources of the first user) until the users' sessions live on
    --shards distinct shards: the kernel, not the server, picks a connection's shard."""
    for extra in range(32):
        shards = session_shards(args.admin_port, args.token)
        mine = {shards.get(u.boundjid.full) for u in users}
        print(f"sessions on shards {sorted(s for s in mine if s is not None)}")
        if len(mine - {None}) >= args.shards:
            return []
        u = User(f"{args.users.split(',')[0]}@localhost/extra{extra}", args.password, args.cert)
        u.connect("127.0.0.1", args.port)
        await u.started.wait()
        if u.failed:
            return [f"{u.boundjid}: {u.failed}"]
        users.append(u)
    return [f"sessions never covered {args.shards} shards"]


async def echo(args):
    problems = []
    comp = Echo(args.domain, args.secret, args.component_port, "echo")
    comp.connect()
    await comp.ready.wait()
    if comp.failed:
        return [f"component: {comp.failed}"]
    users = [User(f"{u}@localhost/py", args.password, args.cert) for u in args.users.split(",")]
    for u in users:
        u.connect("127.0.0.1", args.port)
    await asyncio.gather(*(u.started.wait() for u in users))
    problems += [f"{u.boundjid}: {u.failed}" for u in users if u.failed]
    if problems:
        return problems
    if args.admin_port:
        problems += await spread(users, args)
        if problems:
            return problems
    bot = f"bot@{args.domain}"
    for u in users:
        u.send_message(mto=bot, mbody=f"hello from {u.boundjid.user}", mtype="chat")
    waits = [asyncio.ensure_future(u.got.wait()) for u in users]
    _done, pending = await asyncio.wait(waits, timeout=10)
    for w in pending:
        w.cancel()
    for u in users:
        sent = (u.boundjid.full, bot, f"hello from {u.boundjid.user}")
        if sent not in comp.seen:
            problems.append(f"component: missing {sent}, got {comp.seen}")
        want = (bot, "chat", f"echo: hello from {u.boundjid.user}")
        if want not in u.received:
            problems.append(f"{u.boundjid}: missing {want}, got {u.received}")
        print(f"{u.boundjid}: got {u.received}")
    for u in users:
        u.disconnect()
    comp.disconnect()
    await asyncio.gather(*(asyncio.wait_for(x.disconnected, 5) for x in users + [comp]),
                         return_exceptions=True)
    return problems


async def serve(args):
    comp = Echo(args.domain, args.secret, args.component_port, "serve")
    comp.connect()
    await comp.ready.wait()
    if comp.failed:
        return [f"component: {comp.failed}"]
    await asyncio.sleep(args.timeout)
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=["echo", "serve"], default="echo")
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--port", type=int, help="c2s port (echo mode)")
    ap.add_argument("--cert", help="the server's self-signed certificate (PEM; echo mode)")
    ap.add_argument("--password", help="the users' password (echo mode)")
    ap.add_argument("--users", default="u0,u1,u2,u3")
    ap.add_argument("--admin-port", type=int, help="admin API port: spread the users' sessions")
    ap.add_argument("--token", help="admin API token")
    ap.add_argument("--shards", type=int, default=1, help="shards the sessions must cover")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run = echo if args.mode == "echo" else serve
    try:
        problems = loop.run_until_complete(asyncio.wait_for(run(args), args.timeout + 5))
    except asyncio.TimeoutError:
        problems = [f"timed out (overall limit {args.timeout} s)"]
    except Exception as e:  # noqa: BLE001 - any failure is a failed check, reported
        problems = [f"{type(e).__name__}: {e}"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    if args.mode == "echo":
        print(f"OK: component {args.domain} answered {args.users}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
