#!/usr/bin/env python3
"""Interop check of petrel's disco, ping, version and in-band registration with slixmpp
(run by tests/interop_misc.rs).

1. A new account registers in-band (XEP-0077, slixmpp's xep_0077 'register' event on the stream
   features), over STARTTLS verified against the server's self-signed certificate, then logs in
   with it (SCRAM).
2. An existing user asks the server's disco#info (XEP-0030) and checks the expected features,
   pings the server (XEP-0199), asks its software version (XEP-0092), then stays idle for
   IDLE seconds: the server pings it (ping_interval is short in the test config) and slixmpp's
   xep_0199 answers; the session must survive that and answer a final ping.

Exits 0 only if everything was observed, 1 otherwise (with what was missing).
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError

EXPECTED = ["urn:xmpp:ping", "http://jabber.org/protocol/disco#info", "jabber:iq:version",
            "jabber:iq:register"]


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cert, register=False):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for p in ("xep_0030", "xep_0199", "xep_0092", "xep_0077"):
            self.register_plugin(p)
        self.started = asyncio.Event()
        self.failed = None
        self.registered = False
        self.stream_errors = []
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(str(e)))
        self.add_event_handler("disconnected", lambda *_: self.fail("disconnected"))
        if register:
            self.add_event_handler("register", self.on_register)
        self.server_pings = 0
        self.add_filter("in", self.count_server_pings)

    def count_server_pings(self, stanza):
        if isinstance(stanza, slixmpp.Iq) and stanza["type"] == "get" and stanza.xml.find("{urn:xmpp:ping}ping") is not None:
            self.server_pings += 1
        return stanza

    def fail(self, why):
        if self.failed is None and not self.started.is_set():
            self.failed = why
        self.started.set()

    async def on_register(self, _form):
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        try:
            await resp.send(timeout=10)
            self.registered = True
        except IqError as e:
            self.fail(f"registration refused: {e.iq['error']['condition']}")
            self.disconnect()

    async def on_start(self, _event):
        self.send_presence()
        self.started.set()


async def login(jid, password, cert, port, register=False):
    c = Client(jid, password, cert, register)
    c.connect("127.0.0.1", port)
    await c.started.wait()
    return c


async def run(args):
    problems = []
    new = await login(f"{args.new_user}@localhost/reg", args.password, args.cert, args.port, register=True)
    if new.failed:
        return [f"registration/login of {args.new_user}: {new.failed}"]
    if not new.registered:
        problems.append("logged in without the register event (feature not offered?)")
    print(f"{new.boundjid}: registered in-band and logged in, SASL {new.plugin['feature_mechanisms'].mech.name}")
    new.disconnect()

    c = await login(f"{args.user}@localhost/misc", args.password, args.cert, args.port)
    if c.failed:
        return problems + [f"login of {args.user}: {c.failed}"]
    info = await c.plugin["xep_0030"].get_info(jid="localhost", timeout=5, cached=False)
    features = set(info["disco_info"]["features"])
    print(f"disco#info features: {sorted(features)}")
    for f in EXPECTED:
        if f not in features:
            problems.append(f"disco#info lacks {f}")
    rtt = await c.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    print(f"ping: {rtt * 1000:.1f} ms")
    version = await c.plugin["xep_0092"].get_version("localhost", timeout=5)
    sw = version["software_version"]
    print(f"version: {sw['name']} {sw['version']} os={sw['os']!r}")
    if sw["name"] != "petrel" or not sw["version"]:
        problems.append(f"unexpected software version {sw}")

    # Idle: the server pings us (ping_interval is short); slixmpp answers, the session lives on.
    await asyncio.sleep(args.idle)
    if c.stream_errors:
        problems.append(f"stream errors while idle: {c.stream_errors}")
    print(f"server pings answered while idle: {c.server_pings}")
    if c.server_pings < 2:
        problems.append(f"expected server pings while idle {args.idle} s, got {c.server_pings}")
    try:
        await c.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        problems.append(f"session did not survive idle server pings: {type(e).__name__}: {e}")
    c.disconnect()
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--new-user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--idle", type=float, default=4)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = loop.run_until_complete(asyncio.wait_for(run(args), args.timeout))
    except asyncio.TimeoutError:
        problems = [f"timed out (overall limit {args.timeout} s, or a 5 s request)"]
    except Exception as e:  # noqa: BLE001
        problems = [f"{type(e).__name__}: {e}"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: register, disco#info, ping both ways, version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
