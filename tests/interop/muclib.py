"""Client side shared by the MUC interop scripts (muc.py, muc_persist.py): a slixmpp client with the
xep_0045, xep_0249, xep_0199/xep_0410 and disco plugins that also logs every presence and message
stanza it receives (so checks do not depend on which plugin event a server's stanza happens to
trigger), and the polling, joining and room-configuration helpers the scenarios use.

Only XEP-0045 is assumed of the server: the configuration form fields are the muc#roomconfig ones of
XEP-0045 §15.5.3 (the history length is `muc#maxhistoryfetch`, or the common
`muc#roomconfig_historylength` if the form offers that instead).
"""

import argparse
import asyncio
import logging
from pathlib import Path

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

MUC_USER = "http://jabber.org/protocol/muc#user"
ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
# History length: XEP-0045's registered field, then the name several servers use.
HISTORY_FIELDS = ("muc#maxhistoryfetch", "muc#roomconfig_historylength")


class Peer(slixmpp.ClientXMPP):
    """One logged-in user; `presences` and `messages` hold every such stanza received, in order."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        # The listener speaks STARTTLS on its port; without this slixmpp first tries direct TLS there.
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for plugin in ("xep_0030", "xep_0045", "xep_0199", "xep_0249", "xep_0410"):
            self.register_plugin(plugin)
        self.started = asyncio.Event()
        self.failed = None
        self.presences = []
        self.messages = []
        self.direct_invites = []
        ns = self.default_ns
        self.register_handler(Callback("log presence", MatchXPath(f"{{{ns}}}presence"),
                                       self.presences.append))
        self.register_handler(Callback("log message", MatchXPath(f"{{{ns}}}message"),
                                       self.messages.append))
        self.add_event_handler("groupchat_direct_invite", self.direct_invites.append)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    async def on_start(self, _event):
        self.send_presence()
        self.started.set()

    @property
    def muc(self):
        """The xep_0045 plugin."""
        return self.plugin["xep_0045"]

    def name(self):
        return self.boundjid.bare


def codes(stanza):
    """The muc#user status codes of a presence or message (empty without the element)."""
    x = stanza.get_plugin("muc", check=True)
    return x["status_codes"] if x is not None else set()


def item(stanza, attr):
    """An attribute of the muc#user <item/> of a presence ('' when absent)."""
    x = stanza.get_plugin("muc", check=True)
    if x is None:
        return ""
    value = x[attr]
    return str(value) if value else ""


def error_condition(stanza):
    return stanza["error"]["condition"] if stanza["type"] == "error" else None


def describe(stanza):
    """A short one-line form of a stanza for failure messages."""
    return str(stanza).replace("\n", "")[:400]


def from_room(stanzas, occupant):
    """The stanzas whose `from` is exactly `occupant` (a room or occupant JID string)."""
    return [s for s in stanzas if str(s["from"]) == occupant]


async def until(pred, what, problems, timeout=8):
    """Polls `pred` until true; else records `not seen: what` (and returns False)."""
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    problems.append(f"not seen: {what}")
    return False


async def login(port, cert, password, user, resource):
    p = Peer(f"{user}/{resource}", password, cert)
    p.connect("127.0.0.1", port)
    await p.started.wait()
    if p.failed:
        raise RuntimeError(f"{user}: {p.failed}")
    return p


async def logout(peers):
    for p in peers:
        p.disconnect()
    await asyncio.gather(*(asyncio.wait_for(p.disconnected, 5) for p in peers),
                         return_exceptions=True)


async def raw_join(p, room, nick, problems, what, expect_error=None, timeout=8):
    """Sends a MUC join (XEP-0045 §7.2.1) without the plugin's wait (which also needs a subject);
    returns the self-presence (or the error presence if `expect_error`), None when missing."""
    room_jid, occupant = JID(room), f"{room}/{nick}"
    if expect_error is None:
        # Let the plugin track the room's occupants as join_muc_wait would.
        p.muc.rooms[None][room_jid] = {}
        p.muc.our_nicks[None][room_jid] = nick
    mark = len(p.presences)
    p.muc.make_join_stanza(room_jid, nick).send()

    def answer():
        for s in from_room(p.presences[mark:], occupant):
            if s["type"] == "error" or 110 in codes(s):
                return s
        return None

    await until(lambda: answer() is not None, f"{what}: any answer to the join of {occupant}",
                problems, timeout)
    got = answer()
    if got is None:
        return None
    if expect_error is not None:
        if error_condition(got) != expect_error:
            problems.append(f"{what}: expected a <{expect_error}/> error presence, got {describe(got)}")
        return got
    if got["type"] == "error":
        problems.append(f"{what}: join refused: {describe(got)}")
        return None
    return got


def fill_config(form, values, problems, what):
    """Sets `values` (var -> value) in a muc#roomconfig form; the history length key is
    HISTORY_FIELDS[0] and goes into whichever of HISTORY_FIELDS the form has. Missing fields are
    recorded in `problems`."""
    fields = form.get_fields()
    for var, value in values.items():
        if var == HISTORY_FIELDS[0]:
            var = next((v for v in HISTORY_FIELDS if v in fields), None)
            if var is None:
                problems.append(f"{what}: config form has none of {HISTORY_FIELDS}; fields {sorted(fields)}")
                continue
        if var not in fields:
            problems.append(f"{what}: config form lacks {var}; fields {sorted(fields)}")
            continue
        fields[var]["value"] = value


def form_value(form, var):
    fields = form.get_fields()
    return fields[var]["value"] if var in fields else None


async def room_info(p, room, problems, what):
    """disco#info of `room`: (identities, features, roominfo form values or {}), or None on error."""
    try:
        info = await p.plugin["xep_0030"].get_info(jid=room, cached=False, timeout=5)
    except (IqError, IqTimeout) as e:
        problems.append(f"{what}: disco#info on {room} failed: {e}")
        return None
    disco = info["disco_info"]
    roominfo = {}
    # XEP-0128 extended info (xep_0128 is not loaded: read the x:data elements directly).
    for x in disco.xml.findall("{jabber:x:data}x"):
        form = Form(xml=x)
        if form_value(form, "FORM_TYPE") in (ROOMINFO, [ROOMINFO]):
            roominfo = form.get_values()
    return disco["identities"], set(disco["features"]), roominfo


async def room_listed(p, service, room):
    """The disco#items of the MUC service (jid -> name) and whether `room` is among them."""
    items = await p.plugin["xep_0030"].get_items(jid=service, timeout=5)
    listed = {str(i[0]): i[2] for i in items["disco_items"]["items"]}
    return listed, room in listed


def common_args(doc):
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--domain", default="localhost", help="users are u0, u1, ... @DOMAIN")
    ap.add_argument("--service", default=None, help="MUC service (default conference.DOMAIN)")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--debug", action="store_true")
    return ap


def run_main(args, scenario, ok_line):
    """Runs `scenario()` (a coroutine returning problems) within the timeout; prints the verdict."""
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = loop.run_until_complete(asyncio.wait_for(scenario(), args.timeout))
    except asyncio.TimeoutError:
        problems = [f"timed out (overall limit {args.timeout} s)"]
    except Exception as e:  # noqa: BLE001 - any failure is a failed check, reported
        logging.exception("scenario failed")
        problems = [f"{type(e).__name__}: {e}"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(ok_line)
    return 0
