#!/usr/bin/env python3
"""PEP (XEP-0163) with slixmpp's xep_0163, xep_0060, xep_0084, xep_0402 and xep_0115 plugins, run by
tests/interop_pep.rs at 1 and 2 shards, in two phases around a server restart.

Users (--users ALICE,BOB,CAROL; ALICE and BOB have different home shards at 2 shards): alice on two
clients (a1 publishes, a2 watches), bob with a mutual presence subscription to alice, carol without
one. bob, carol and a2 advertise `+notify` for the avatar metadata and OMEMO device list nodes in
their caps (xep_0163 `add_interest`, xep_0115 `update_caps`), a2 for bookmarks too.

--phase main: the subscription is made; the server asks bob's and carol's (identical) caps once in
  all; a1 publishes an avatar (xep_0084 data + metadata, presence access) and an OMEMO device list
  (publish-options access_model=open, republished with the same options; other options are
  refused with `precondition-not-met`): bob and a2 get both notifications with the right item ids,
  carol only the device list (and is refused the avatar items, `presence-subscription-required`,
  while she reads the open device list); bob reads the avatar data; a1's XEP-0402 bookmark
  (publish-options persist_items + whitelist) reaches a2 (notification and items; a2 adds a
  second one with the same options, a1 retracts it with notify), not bob
  (`closed-node`); a node created with the default options is refused a publish with
  access_model=open, reconfigured by its owner (pubsub#owner configure) and then published to and
  read by carol; alice's account has the pubsub/pep identity and the publish-options and
  auto-create features; refused publishes: two payloads in an item (raw, `invalid-payload`), to
  bob's PEP (`forbidden`), a huge item (`payload-too-big`),
  a bad publish-options value (`precondition-not-met`), a malformed form (`not-acceptable`).
--phase after-restart: bob, logging in with his caps while alice is offline, gets the last avatar
  metadata and device list items; the bookmarks, the avatar metadata and the device list are still
  there (items read by alice, bob, carol).

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import asyncio
import hashlib
import sys
from xml.etree import ElementTree as ET

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form
from slixmpp.plugins.xep_0402.stanza import Conference
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import muclib
from muclib import common_args, describe, logout, run_main, until

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_META = "urn:xmpp:avatar:metadata"
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
AXOLOTL = "eu.siacs.conversations.axolotl"
BUNDLE = f"{AXOLOTL}.bundles:31415926"
BOOKMARKS = "urn:xmpp:bookmarks:1"
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
AVATAR_ID = hashlib.sha1(PNG).hexdigest()
DEVICE_ID = "31415926"
ROOM = "coven@conference.localhost"
ROOM2 = "kitchen@conference.localhost"


class Peer(muclib.Peer):
    """One logged-in client (muclib's, with the PEP plugins); `events` holds (from, node, item id)
    of every pubsub event item and `caps_queries` the disco#info nodes the server asked about."""

    def __init__(self, jid, password, cert, interests):
        super().__init__(jid, password, cert)
        for plugin in ("xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0402"):
            self.register_plugin(plugin)
        self.interests = interests
        self.events = []
        self.retracts = []
        self.caps_queries = []
        ns = self.default_ns
        self.register_handler(Callback("log events", MatchXPath(f"{{{ns}}}message/{{{EVENT}}}event"),
                                       self.on_event))
        self.register_handler(Callback("log disco", MatchXPath(f"{{{ns}}}iq/{{{DISCO_INFO}}}query"),
                                       self.on_disco))

    def on_event(self, msg):
        for items in msg.xml.findall(f"{{{EVENT}}}event/{{{EVENT}}}items"):
            for item in items.findall(f"{{{EVENT}}}item"):
                self.events.append((msg["from"].bare, items.get("node"), item.get("id")))
            for item in items.findall(f"{{{EVENT}}}retract"):
                self.retracts.append((msg["from"].bare, items.get("node"), item.get("id")))

    def on_disco(self, iq):
        if iq["type"] == "get" and iq["from"] == JID(self.boundjid.domain):
            self.caps_queries.append(iq["disco_info"]["node"])

    async def on_start(self, _event):
        await self.get_roster()
        for ns in self.interests:
            self["xep_0163"].add_interest(ns)
        # The presence below carries caps with the interests (add_interest updates them later).
        await self["xep_0115"].update_caps(broadcast=False)
        self.send_presence()
        self.started.set()

    def saw(self, owner, node, item_id):
        return (owner, node, item_id) in self.events

    def sub(self, contact):
        item = self.client_roster[contact] if contact in self.client_roster else None
        return item["subscription"] if item is not None else "none"


async def login(args, user, resource, interests=()):
    p = Peer(f"{user}@{args.domain}/{resource}", args.password, args.cert, list(interests))
    p.connect("127.0.0.1", args.port)
    await p.started.wait()
    if p.failed:
        raise RuntimeError(f"{user}: {p.failed}")
    return p


def options(**fields):
    """A publish-options form (`pubsub#NAME` = value)."""
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
    for var, value in fields.items():
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


def bookmark_options():
    """XEP-0402 §3.3's publish-options."""
    return options(persist_items="true", access_model="whitelist",
                   send_last_published_item="never", max_items="max")


def devicelist():
    el = ET.Element(f"{{{AXOLOTL}}}list")
    ET.SubElement(el, f"{{{AXOLOTL}}}device", id=DEVICE_ID)
    return el


def bookmark():
    c = Conference()
    c["name"] = "The Coven"
    c["autojoin"] = True
    c["nick"] = "alice"
    return c


async def refused(coro, cond, app, problems, what):
    """Awaits an IQ expected to fail with `cond` and pubsub#errors `app` (None: not checked)."""
    try:
        r = await coro
        problems.append(f"{what}: accepted: {describe(r)}")
        return
    except IqTimeout:
        problems.append(f"{what}: no answer")
        return
    except IqError as e:
        iq = e.iq
    err = iq["error"]
    if err["condition"] != cond:
        problems.append(f"{what}: condition {err['condition']!r}, want {cond!r}: {describe(iq)}")
    if app is not None and err.xml.find(f"{{{ERRORS}}}{app}") is None:
        problems.append(f"{what}: no pubsub#errors <{app}/>: {describe(iq)}")


async def item_ids(p, owner, node, problems, what):
    """The item ids of `owner`'s `node` as `p` reads them (None when refused)."""
    try:
        r = await p["xep_0060"].get_items(owner, node, timeout=5)
    except (IqError, IqTimeout) as e:
        problems.append(f"{what}: {describe(getattr(e, 'iq', e))}")
        return None
    return [i["id"] for i in r["pubsub"]["items"]]


async def subscribe(a1, bob, problems):
    """alice and bob: both subscribed to the other (slixmpp's auto_authorize/auto_subscribe)."""
    a, b = a1.boundjid.bare, bob.boundjid.bare
    a1.send_presence_subscription(pto=b)
    await until(lambda: a1.sub(b) == "both" and bob.sub(a) == "both",
                f"mutual subscription (alice sees {a1.sub(b)}, bob sees {bob.sub(a)})", problems)


async def main_phase(args, alice, bob_name, carol_name, problems):
    interested = (DEVICELIST,)
    a1 = await login(args, alice, "a1")
    a2 = await login(args, alice, "a2", (DEVICELIST, BOOKMARKS))
    bob = await login(args, bob_name, "b", interested)
    carol = await login(args, carol_name, "c", interested)
    peers = [a1, a2, bob, carol]
    try:
        a, b = a1.boundjid.bare, bob.boundjid.bare
        await subscribe(a1, bob, problems)
        # Once both ways subscribed, bob's presence (with caps) reaches alice; carol's goes to her
        # as a directed presence.
        bob.send_presence()
        carol.send_presence(pto=a)
        await until(lambda: bob.caps_queries or carol.caps_queries,
                    "a disco#info query about bob's and carol's caps", problems)

        await a1["xep_0084"].publish_avatar(PNG, timeout=5)
        await a1["xep_0084"].publish_avatar_metadata(
            {"id": AVATAR_ID, "type": "image/png", "bytes": len(PNG)}, timeout=5)
        await a1["xep_0060"].publish(None, DEVICELIST, id="current", payload=devicelist(),
                                     options=options(access_model="open"), timeout=5)
        # Republished with the same options (OMEMO clients do at each start): accepted; other
        # options than the node's: refused.
        await a1["xep_0060"].publish(None, DEVICELIST, id="current", payload=devicelist(),
                                     options=options(access_model="open"), timeout=5)
        await refused(a1["xep_0060"].publish(None, DEVICELIST, id="current", payload=devicelist(),
                                             options=options(access_model="presence"), timeout=5),
                      "conflict", "precondition-not-met", problems, "a precondition that fails")
        for who, p in (("bob", bob), ("alice's second client", a2)):
            await until(lambda p=p: p.saw(a, AVATAR_META, AVATAR_ID),
                        f"{who}: avatar metadata notification {AVATAR_ID}", problems)
            await until(lambda p=p: p.saw(a, DEVICELIST, "current"),
                        f"{who}: device list notification", problems)
        # The device list (published after the avatar) came: the avatar would have come before.
        await until(lambda: carol.saw(a, DEVICELIST, "current"),
                    "carol: device list notification (open node)", problems)
        if any(e[1] == AVATAR_META for e in carol.events):
            problems.append(f"carol (no subscription) got the avatar metadata: {carol.events}")
        await refused(carol["xep_0060"].get_items(a, AVATAR_META, timeout=5), "not-authorized",
                      "presence-subscription-required", problems, "carol reads the avatar metadata")
        ids = await item_ids(carol, a, DEVICELIST, problems, "carol reads the device list")
        if ids is not None and ids != ["current"]:
            problems.append(f"carol reads device list items {ids}")
        try:
            r = await bob["xep_0084"].retrieve_avatar(a, AVATAR_ID, timeout=5)
            data = r["pubsub"]["items"]["item"]["avatar_data"]["value"]
            if data != PNG:
                problems.append(f"bob reads avatar data {data!r}")
        except (IqError, IqTimeout) as e:
            problems.append(f"bob reads the avatar data: {describe(getattr(e, 'iq', e))}")

        # Bookmarks (XEP-0402 §3.3 publish-options).
        bob.send_presence(pshow="away")
        await a1["xep_0060"].publish(None, BOOKMARKS, id=ROOM, payload=bookmark(), timeout=5,
                                     options=bookmark_options())
        await until(lambda: a2.saw(a, BOOKMARKS, ROOM), "a2: bookmark notification", problems)
        # A second bookmark with the same options, as clients do: the preconditions hold.
        await a2["xep_0060"].publish(None, BOOKMARKS, id=ROOM2, payload=bookmark(), timeout=5,
                                     options=bookmark_options())
        await until(lambda: a2.saw(a, BOOKMARKS, ROOM2), "a2: second bookmark notification",
                    problems)
        ids = await item_ids(a2, None, BOOKMARKS, problems, "a2 reads the bookmarks")
        if ids is not None and sorted(ids) != sorted([ROOM, ROOM2]):
            problems.append(f"a2 reads bookmarks {ids}")
        # XEP-0402 §3.4: a bookmark removed is retracted with notify (and stays removed after the
        # restart).
        await a1["xep_0060"].retract(None, BOOKMARKS, ROOM2, notify=True, timeout=5)
        await until(lambda: (a, BOOKMARKS, ROOM2) in a2.retracts, "a2: bookmark retraction",
                    problems)
        ids = await item_ids(a2, None, BOOKMARKS, problems, "a2 reads the bookmarks")
        if ids != [ROOM]:
            problems.append(f"a2 reads bookmarks {ids} after the retraction")
        await refused(bob["xep_0060"].get_items(a, BOOKMARKS, timeout=5), "not-allowed",
                      "closed-node", problems, "bob reads alice's bookmarks")

        # An existing node with other options (Gajim's and Conversations' recovery): the publish is
        # refused, the owner reads the configuration, sets access_model=open, publishes again.
        await a1["xep_0060"].publish(None, BUNDLE, id="current", payload=devicelist(), timeout=5)
        await refused(a1["xep_0060"].publish(None, BUNDLE, id="current", payload=devicelist(),
                                             options=options(access_model="open"), timeout=5),
                      "conflict", "precondition-not-met", problems, "options of another node")
        cfg = await a1["xep_0060"].get_node_config(None, BUNDLE, timeout=5)
        model = cfg["pubsub_owner"]["configure"]["form"].get_values().get("pubsub#access_model")
        if model != "presence":
            problems.append(f"the new node's access model is {model!r}, want 'presence'")
        form = Form()
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBSUB + "#node_config")
        form.add_field(var="pubsub#access_model", value="open")
        await a1["xep_0060"].set_node_config(None, BUNDLE, form, timeout=5)
        await a1["xep_0060"].publish(None, BUNDLE, id="current", payload=devicelist(),
                                     options=options(access_model="open"), timeout=5)
        ids = await item_ids(carol, a, BUNDLE, problems, "carol reads the reconfigured node")
        if ids is not None and ids != ["current"]:
            problems.append(f"carol reads the reconfigured node: {ids}")

        # The account is a PEP service with the features clients look for before publishing.
        info = (await a1["xep_0030"].get_info(jid=a, timeout=5))["disco_info"]
        if not any(i[0] == "pubsub" and i[1] == "pep" for i in info["identities"]):
            problems.append(f"no pubsub/pep identity on alice's account: {info['identities']}")
        missing = [f for f in (PUBSUB + "#publish-options", PUBSUB + "#auto-create")
                   if f not in info["features"]]
        if missing:
            problems.append(f"alice's account lacks features {missing}")

        # Bad input.
        two = a1.Iq(stype="set")
        two.append(ET.fromstring(
            f"<pubsub xmlns='{PUBSUB}'><publish node='urn:x:two'><item id='1'>"
            "<a xmlns='urn:x:two'/><b xmlns='urn:x:two'/></item></publish></pubsub>"))
        await refused(two.send(timeout=5), "bad-request", "invalid-payload", problems,
                      "an item with two payloads (raw)")
        await refused(a1["xep_0060"].publish(b, "urn:x:test", id="1", payload=devicelist(),
                                             timeout=5),
                      "forbidden", None, problems, "alice publishes to bob's PEP")
        huge = ET.Element("{urn:x:huge}blob")
        huge.text = "x" * 20_000
        await refused(a1["xep_0060"].publish(None, "urn:x:huge", id="1", payload=huge, timeout=5),
                      "not-acceptable", "payload-too-big", problems, "a huge item")
        await refused(a1["xep_0060"].publish(None, "urn:x:opts", id="1", payload=devicelist(),
                                             options=options(access_model="bogus"), timeout=5),
                      "conflict", "precondition-not-met", problems, "a bad publish-options value")
        bad = options(access_model="open")
        bad["type"] = "bogus"
        await refused(a1["xep_0060"].publish(None, "urn:x:opts", id="1", payload=devicelist(),
                                             options=bad, timeout=5),
                      "bad-request", None, problems, "a malformed publish-options form (XEP-0004: type bogus)")
        # Everything above went through: bob's caps (also carol's, the same) were asked once.
        asked = bob.caps_queries + carol.caps_queries
        if len(asked) != 1:
            problems.append(f"the server asked bob's and carol's caps {len(asked)} times: {asked}")
        print(f"main: {len(bob.events)} events to bob, {len(a2.events)} to a2, "
              f"{len(carol.events)} to carol; caps asked {asked}")
    finally:
        await logout(peers)


async def after_phase(args, alice, bob_name, carol_name, problems):
    # bob first, alice offline: his available presence (caps asked again, the cache is new) still
    # brings him the last avatar metadata and device list (XEP-0163 §4.3.2).
    bob = await login(args, bob_name, "b2", (DEVICELIST,))
    peers = [bob]
    try:
        a = f"{alice}@{args.domain}"
        await until(lambda: bob.saw(a, AVATAR_META, AVATAR_ID),
                    "bob: avatar metadata last item after the restart, alice offline", problems)
        await until(lambda: bob.saw(a, DEVICELIST, "current"),
                    "bob: device list last item after the restart, alice offline", problems)
        ids = await item_ids(bob, a, AVATAR_META, problems, "bob reads the avatar metadata")
        if ids != [AVATAR_ID]:
            problems.append(f"avatar metadata after the restart: {ids}")
        a1 = await login(args, alice, "a3")
        peers.append(a1)
        ids = await item_ids(a1, None, BOOKMARKS, problems, "alice reads her bookmarks")
        if ids != [ROOM]:
            problems.append(f"bookmarks after the restart (one retracted): {ids}")
        carol = await login(args, carol_name, "c2")
        peers.append(carol)
        ids = await item_ids(carol, a, DEVICELIST, problems, "carol reads the device list")
        if ids != ["current"]:
            problems.append(f"device list after the restart: {ids}")
        print(f"after-restart: bookmarks, avatar metadata and device list kept; {bob.events} to bob")
    finally:
        await logout(peers)


def main():
    ap = common_args(__doc__)
    ap.add_argument("--users", required=True, help="ALICE,BOB,CAROL (user names @DOMAIN)")
    ap.add_argument("--phase", choices=("main", "after-restart"), required=True)
    args = ap.parse_args()
    alice, bob, carol = args.users.split(",")
    phase = main_phase if args.phase == "main" else after_phase

    async def scenario():
        problems = []
        await phase(args, alice, bob, carol, problems)
        return problems

    return run_main(args, scenario, f"OK: {args.phase}")


if __name__ == "__main__":
    sys.exit(main())
