#!/usr/bin/env python3
"""Roster and presence interop of petrel with slixmpp (run by tests/interop_roster.rs).

Two clients, u0 and u1 @localhost, over STARTTLS (the server's self-signed certificate is the only
trusted CA) check, over the wire: roster add with name and group and its push; the subscription
handshake both ways with presence arriving after approval; presence broadcast on logout and login
(probe answers); roster remove with its push and the contact seeing the subscription cancelled.

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import slixmpp


class Peer(slixmpp.ClientXMPP):
    """One logged-in user recording presence and subscription events."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        # Answer subscriptions by hand: the checks drive each step.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.started = asyncio.Event()
        self.failed = None
        self.log = []  # (event, from) in arrival order
        self.pushes = []  # (ver, jid, subscription, ask) of each roster item received
        self.add_event_handler("session_start", self.on_start)
        for ev in ("presence_subscribe", "presence_subscribed", "presence_unsubscribe",
                   "presence_unsubscribed", "presence_available", "presence_unavailable"):
            self.add_event_handler(ev, lambda p, ev=ev: self.log.append((ev, str(p["from"]))))
        self.add_event_handler("roster_update", self.on_roster)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))

    def on_roster(self, iq):
        # One entry per item of a result or push, e.g. ("roster:remove", "u1@localhost"); the
        # version and `ask` go to `pushes`, for the report of a failed check.
        for jid, item in iq["roster"]["items"].items():
            self.log.append((f"roster:{item['subscription']}", str(jid)))
            self.pushes.append((iq["roster"]["ver"], str(jid), item["subscription"], item["ask"]))

    def fail(self, why):
        self.failed = why
        self.started.set()

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence()
        self.started.set()

    def saw(self, ev, frm):
        return (ev, frm) in self.log

    def index(self, ev, frm):
        return self.log.index((ev, frm)) if (ev, frm) in self.log else None

    def item(self, jid):
        # `in`/[] would create the item: ask has_jid first.
        return self.client_roster[jid] if self.client_roster.has_jid(jid) else None


async def until(pred, what, problems, timeout=8, detail=None):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    problems.append(f"not seen: {what}" + (f" ({detail()})" if detail else ""))
    return False


async def login(port, cert, password, i):
    p = Peer(f"u{i}@localhost/py{i}", password, cert)
    p.connect("127.0.0.1", port)
    await p.started.wait()
    if p.failed:
        raise RuntimeError(f"u{i}: {p.failed}")
    return p


async def run(port, cert, password):
    problems = []
    a = await login(port, cert, password, 0)
    b = await login(port, cert, password, 1)
    aj, bj = "u0@localhost", "u1@localhost"
    afull, bfull = "u0@localhost/py0", "u1@localhost/py1"

    def a_state():
        it = a.item(bj)
        return f"a's item {it and (it['subscription'], it['pending_out'])}, pushes {a.pushes}"

    # Roster add: answered, and pushed. (slixmpp writes name and groups into its roster before it
    # sends the set, so the push itself is looked for.)
    await a.update_roster(bj, name="Bee", groups=["Friends"])
    await until(lambda: any(j == bj and s == "none" for _, j, s, _ in a.pushes),
                "roster push of the new item", problems, detail=a_state)
    print("roster add: pushed", a.item(bj) and dict(name=a.item(bj)["name"], groups=a.item(bj)["groups"]))

    # a -> b handshake; a sees b's presence only after the approval.
    a.send_presence_subscription(pto=bj)
    await until(lambda: a.item(bj) is not None and a.item(bj)["pending_out"], "ask=subscribe push",
                problems, detail=a_state)
    if await until(lambda: b.saw("presence_subscribe", aj), "b gets subscribe", problems):
        b.send_presence(pto=aj, ptype="subscribed")
    await until(lambda: a.saw("presence_subscribed", bj) and a.saw("presence_available", bfull),
                "a gets subscribed then b's presence", problems)
    i_sub, i_pres = a.index("presence_subscribed", bj), a.index("presence_available", bfull)
    if i_sub is not None and i_pres is not None and i_pres < i_sub:
        problems.append(f"b's presence came before the approval: {a.log}")
    await until(lambda: a.item(bj)["subscription"] == "to", "a's item subscription=to", problems)
    await until(lambda: b.item(aj) is not None and b.item(aj)["subscription"] == "from",
                "b's item subscription=from", problems)

    # b -> a handshake.
    b.send_presence_subscription(pto=aj)
    if await until(lambda: a.saw("presence_subscribe", bj), "a gets subscribe", problems):
        a.send_presence(pto=bj, ptype="subscribed")
    await until(lambda: b.saw("presence_subscribed", aj) and b.saw("presence_available", afull),
                "b gets subscribed and a's presence", problems)
    await until(lambda: a.item(bj)["subscription"] == "both" and b.item(aj)["subscription"] == "both",
                "both items subscription=both", problems)
    print("handshake: a", a.item(bj)["subscription"], "b", b.item(aj)["subscription"])

    # Logout: a sees b go; login: a sees b come back, b gets a's presence from the probe.
    b.disconnect()
    await asyncio.wait_for(b.disconnected, 5)
    await until(lambda: a.saw("presence_unavailable", bfull), "a sees b's unavailable on logout", problems)
    b = await login(port, cert, password, 1)
    a.log.clear()
    await until(lambda: b.saw("presence_available", afull), "b gets a's presence at login (probe)", problems)
    await until(lambda: a.saw("presence_available", bfull), "a sees b's login", problems)
    print("logout/login broadcast:", "ok" if not problems else "missing")

    # Remove: a's push, b sees both subscriptions cancelled and a go unavailable.
    # slixmpp's del_roster_item only unsubscribes; a roster set with subscription=remove is RFC 6121 §2.5.
    await a.update_roster(bj, subscription="remove")
    # (slixmpp re-creates an item for any presence from the JID, so the push itself is checked.)
    await until(lambda: a.saw("roster:remove", bj), "a's remove push", problems)
    await until(lambda: b.saw("presence_unsubscribe", aj) or b.saw("presence_unsubscribed", aj),
                "b gets unsubscribe/unsubscribed", problems)
    await until(lambda: b.saw("presence_unavailable", afull), "b sees a unavailable after removal", problems)
    await until(lambda: b.item(aj)["subscription"] == "none", "b's item subscription=none", problems)
    print("remove: b's item", b.item(aj) and b.item(aj)["subscription"])

    for p in (a, b):
        p.disconnect()
    await asyncio.gather(*(asyncio.wait_for(p.disconnected, 5) for p in (a, b)), return_exceptions=True)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = loop.run_until_complete(
            asyncio.wait_for(run(args.port, args.cert, args.password), args.timeout))
    except asyncio.TimeoutError:
        problems = [f"timed out (overall limit {args.timeout} s)"]
    except Exception as e:  # noqa: BLE001 - any failure is a failed check, reported
        problems = [f"{type(e).__name__}: {e}"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: roster add/push/remove, subscription both ways, presence on login and logout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
