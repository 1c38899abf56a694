"""Federation between two servers, driven by slixmpp clients (one user on each server).

    s2s.py --a JID --a-port P --a-cert PEM --b JID --b-port P --b-cert PEM --password PW

Each client logs in over STARTTLS to its own server (the certificate given is its trust anchor,
`none` to skip verification), then across the domains:
  1. chat both ways (to the bare JID and to the full JID), nothing bounced;
  2. a presence subscription: a subscribes to b, b approves and subscribes back; both rosters
     end with subscription 'both' and each sees the other's available presence;
  3. IQs across: each client asks the other server for its software version (XEP-0092) and the
     other user's client for its version, and pings the other server (XEP-0199);
  4. with --room ROOM@SERVICE (a MUC service of a's server): a creates the room (instant), b joins it
     from the other server, each sends a groupchat message, and both see both, once, in order.
Prints "OK: s2s" when everything held, else the list of problems, and exits non-zero.
"""

import argparse
import asyncio
import ssl
import sys

import slixmpp
from slixmpp.plugins.xep_0004 import Form


class Peer(slixmpp.ClientXMPP):
    """One logged-in user that records what it saw."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        if cert == "none":
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        else:
            self.ca_certs = cert
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092", {"software_name": f"peer of {slixmpp.JID(jid).bare}", "version": "1.0"})
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0045")
        self.groupchat = []
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.append((str(m["from"]), m["body"])))
        # Subscriptions are answered by the script, not automatically.
        self.auto_authorize = None
        self.auto_subscribe = False
        self.started = asyncio.Event()
        self.failed = None
        self.received = []
        self.errors = []
        self.presence_from = set()
        self.subscribe_from = set()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_available)
        self.add_event_handler("presence_subscribe", lambda p: self.subscribe_from.add(p["from"].bare))
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("stream_error", lambda e: self.fail(f"stream error: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["type"] == "error":
            self.errors.append(str(msg))
        elif msg["type"] in ("chat", "normal"):
            self.received.append((str(msg["from"]), msg["body"]))

    def on_available(self, pres):
        if pres["from"].bare != self.boundjid.bare:
            self.presence_from.add(pres["from"].bare)

    def subscription(self, jid):
        roster = self.client_roster
        return roster[jid]["subscription"] if jid in roster else None


async def until(pred, what, problems, timeout):
    for _ in range(int(timeout * 10)):
        if pred():
            return True
        await asyncio.sleep(0.1)
    problems.append(f"timed out waiting for {what}")
    return False


async def run(args):
    problems = []
    a = Peer(args.a, args.password, args.a_cert)
    b = Peer(args.b, args.password, args.b_cert)
    a.connect("127.0.0.1", args.a_port)
    b.connect("127.0.0.1", args.b_port)
    await asyncio.wait_for(asyncio.gather(a.started.wait(), b.started.wait()), args.timeout)
    for p in (a, b):
        if p.failed:
            problems.append(f"{p.boundjid}: {p.failed}")
    if problems:
        return problems
    t = args.timeout

    # 1. Chat both ways: the first stanza also sets up the streams (DNS, TLS, authentication).
    a.send_message(mto=b.boundjid.bare, mbody="hello across", mtype="chat")
    await until(lambda: b.received or b.errors or a.errors, "a's first message at b", problems, t)
    b.send_message(mto=a.boundjid.full, mbody="reply across", mtype="chat")
    await until(lambda: a.received or a.errors, "b's reply at a", problems, t)
    for i in range(20):
        a.send_message(mto=b.boundjid.full, mbody=f"a{i}", mtype="chat")
        b.send_message(mto=a.boundjid.bare, mbody=f"b{i}", mtype="chat")
    await until(lambda: len(a.received) >= 21 and len(b.received) >= 21, "20 messages each way", problems, t)
    want_b = [(a.boundjid.full, "hello across")] + [(a.boundjid.full, f"a{i}") for i in range(20)]
    want_a = [(b.boundjid.full, "reply across")] + [(b.boundjid.full, f"b{i}") for i in range(20)]
    if b.received != want_b:
        problems.append(f"{b.boundjid}: received {b.received}, expected {want_b} in order")
    if a.received != want_a:
        problems.append(f"{a.boundjid}: received {a.received}, expected {want_a} in order")
    print(f"chat: {len(a.received)} at a, {len(b.received)} at b", flush=True)

    # 2. A presence subscription across the domains, both ways.
    a.update_roster(b.boundjid.bare, name="b")
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    await until(lambda: a.boundjid.bare in b.subscribe_from, "the subscribe request at b", problems, t)
    b.send_presence(pto=a.boundjid.bare, ptype="subscribed")
    b.send_presence(pto=a.boundjid.bare, ptype="subscribe")
    await until(lambda: b.boundjid.bare in a.subscribe_from, "b's subscribe request at a", problems, t)
    a.send_presence(pto=b.boundjid.bare, ptype="subscribed")
    await until(
        lambda: a.subscription(b.boundjid.bare) == "both" and b.subscription(a.boundjid.bare) == "both",
        "subscription both on both rosters",
        problems,
        t,
    )
    await until(
        lambda: b.boundjid.bare in a.presence_from and a.boundjid.bare in b.presence_from,
        "each other's available presence",
        problems,
        t,
    )
    print(
        f"roster: a has {a.subscription(b.boundjid.bare)}, b has {b.subscription(a.boundjid.bare)}; "
        f"presence at a from {sorted(a.presence_from)}, at b from {sorted(b.presence_from)}",
        flush=True,
    )

    # 3. IQs across: the other server and the other user's client.
    for me, other in ((a, b), (b, a)):
        try:
            server = await me.plugin["xep_0092"].get_version(other.boundjid.domain, timeout=t)
            client = await me.plugin["xep_0092"].get_version(other.boundjid.full, timeout=t)
            rtt = await me.plugin["xep_0199"].ping(jid=other.boundjid.domain, timeout=t)
            sv, cv = server["software_version"], client["software_version"]
            print(f"{me.boundjid.bare}: {other.boundjid.domain} runs {sv['name']} {sv['version']}; "
                  f"{other.boundjid.full} runs {cv['name']}; ping {rtt * 1000:.1f} ms", flush=True)
            if cv["name"] != f"peer of {other.boundjid.bare}":
                problems.append(f"{me.boundjid}: client version {cv['name']!r}")
            if not sv["name"]:
                problems.append(f"{me.boundjid}: no server software name")
        except Exception as e:  # noqa: BLE001 -- any failure is a finding to print
            problems.append(f"{me.boundjid}: IQ across failed: {e!r}")

    if args.room:
        await room_across(a, b, slixmpp.JID(args.room), problems, t)

    for p in (a, b):
        if p.errors:
            problems.append(f"{p.boundjid}: error messages {p.errors}")
        p.disconnect()
    await asyncio.gather(*(asyncio.wait_for(p.disconnected, 5) for p in (a, b)), return_exceptions=True)
    return problems


async def room_across(a, b, room, problems, t):
    """4. a creates `room` on its server's MUC service; b, of the other server, joins and both chat."""
    try:
        await a.plugin["xep_0045"].join_muc_wait(room, "a", maxstanzas=0, timeout=t)
        await a.plugin["xep_0045"].set_room_config(room, Form(), timeout=t)  # instant room: unlocked
        await b.plugin["xep_0045"].join_muc_wait(room, "b", maxstanzas=0, timeout=t)
    except Exception as e:  # noqa: BLE001 -- any failure is a finding to print
        problems.append(f"room {room}: join failed: {e!r}")
        return
    await until(lambda: "b" in a.plugin["xep_0045"].get_roster(room), "b in the room at a", problems, t)
    a.send_message(mto=room, mbody="from a", mtype="groupchat")
    await until(lambda: (f"{room}/a", "from a") in b.groupchat, "a's groupchat at b", problems, t)
    b.send_message(mto=room, mbody="from b", mtype="groupchat")
    await until(lambda: (f"{room}/b", "from b") in a.groupchat, "b's groupchat at a", problems, t)
    await until(lambda: (f"{room}/b", "from b") in b.groupchat, "b's own groupchat at b", problems, t)
    want = [(f"{room}/a", "from a"), (f"{room}/b", "from b")]
    for p in (a, b):
        if p.groupchat != want:
            problems.append(f"{p.boundjid}: groupchat {p.groupchat}, expected {want}")
    print(f"room: {room}, occupants at a {sorted(a.plugin['xep_0045'].get_roster(room))}; groupchat at a {a.groupchat}, at b {b.groupchat}",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", required=True)
    ap.add_argument("--a-port", type=int, required=True)
    ap.add_argument("--a-cert", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--b-port", type=int, required=True)
    ap.add_argument("--b-cert", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--room", help="a room JID on a's MUC service, for step 4")
    args = ap.parse_args()
    problems = asyncio.run(run(args))
    if problems:
        for p in problems:
            print(f"PROBLEM: {p}")
        sys.exit(1)
    print("OK: s2s")


if __name__ == "__main__":
    main()
