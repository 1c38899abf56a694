"""Client side of the MAM interop script (mam.py): a slixmpp client with the xep_0313 (archive
queries), xep_0441 (archiving preferences) and xep_0359 (stanza ids) plugins that logs every message
it receives, and a query helper that reports the whole answer of one archive query.

Queries are built with the xep_0313 stanza interfaces (`iq['mam']`, its RSM `<set/>`), not the
plugin's `retrieve`: that one cannot send an empty `<before/>` (it sends every RSM value as text)
and its iterator stops backward paging after the first page when the server gives `<first index>`.
"""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
FORWARD = "urn:xmpp:forward:0"
DELAY = "urn:xmpp:delay"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Peer(slixmpp.ClientXMPP):
    """One logged-in user; `messages` holds every message stanza received, in order."""

    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        # The listener speaks STARTTLS on its port; without this slixmpp first tries direct TLS there.
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for plugin in ("xep_0030", "xep_0313", "xep_0441", "xep_0359"):
            self.register_plugin(plugin)
        self.started = asyncio.Event()
        self.failed = None
        self.messages = []
        self.iq_errors = {}  # id -> error IQ, as received
        ns = self.default_ns
        self.register_handler(Callback("log message", MatchXPath(f"{{{ns}}}message"),
                                       self.messages.append))
        self.register_handler(Callback("log iq error", MatchXPath(f"{{{ns}}}iq/{{{ns}}}error"),
                                       lambda iq: self.iq_errors.__setitem__(iq["id"], iq)))
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))

    def fail(self, why):
        self.failed = why
        self.started.set()

    async def on_start(self, _event):
        self.send_presence()
        self.started.set()

    def bare(self):
        return self.boundjid.bare

    def live(self, frm):
        """Live (non-archive) messages with a body received from bare JID `frm`, in order."""
        return [m for m in self.messages
                if m["body"] and m.xml.find(f"{{{MAM}}}result") is None
                and m["from"].bare == frm]


async def login(port, cert, password, user, domain="localhost"):
    p = Peer(f"{user}@{domain}/mam", password, cert)
    p.connect("127.0.0.1", port)
    await p.started.wait()
    if p.failed:
        raise RuntimeError(f"{user}: {p.failed}")
    return p


def stanza_ids(msg):
    """(by, id) of every XEP-0359 <stanza-id/> of a message."""
    return [(e.get("by", ""), e.get("id", "")) for e in msg.xml.findall(f"{{{SID}}}stanza-id")]


@dataclass
class Item:
    """One <result/> of a query: archive id, the forwarded message's from/to/body, delay stamp."""
    id: str
    frm: str
    to: str
    body: str
    stamp: Optional[str]
    outer_from: str


@dataclass
class Answer:
    """The whole answer to one query: results in arrival order, then the IQ result (or error)."""
    items: list = field(default_factory=list)
    error: Optional[str] = None  # the error condition when the query was refused
    error_text: str = ""
    # slixmpp could not turn the error into an IqError (see `query`).
    unparsed: bool = False
    complete: Optional[str] = None  # <fin complete='…'> as sent (None when absent)
    first: Optional[str] = None
    first_index: Optional[str] = None
    last: Optional[str] = None
    count: Optional[str] = None

    def bodies(self):
        return [i.body for i in self.items]

    def ids(self):
        return [i.id for i in self.items]

    def summary(self):
        if self.error:
            note = " (slixmpp's IqError rejects this condition)" if self.unparsed else ""
            return f"error <{self.error}/> {self.error_text}{note}"
        b = self.bodies()
        shown = b if len(b) <= 6 else b[:3] + ["…"] + b[-3:]
        return (f"{len(b)} results {shown}, fin complete={self.complete} first={self.first} "
                f"(index {self.first_index}) last={self.last} count={self.count}")


def to_item(msg):
    res = msg.xml.find(f"{{{MAM}}}result")
    fwd = res.find(f"{{{FORWARD}}}forwarded") if res is not None else None
    inner = fwd.find("{jabber:client}message") if fwd is not None else None
    delay = fwd.find(f"{{{DELAY}}}delay") if fwd is not None else None
    body = inner.find("{jabber:client}body") if inner is not None else None
    return Item(
        id=res.get("id", "") if res is not None else "",
        frm=inner.get("from", "") if inner is not None else "",
        to=inner.get("to", "") if inner is not None else "",
        body=body.text or "" if body is not None else "",
        stamp=delay.get("stamp") if delay is not None else None,
        outer_from=str(msg["from"]),
    )


async def query(p, to=None, with_jid=None, start=None, end=None, fields=None, rsm=None,
                timeout=15):
    """Sends one archive query (XEP-0313 §4) from `p` to `to` (own archive when None) and collects
    its <result/> messages (matched by queryid) and the final IQ. `fields` are extra form fields
    (var -> text, e.g. a malformed 'start'); `rsm` sets RSM children ('before': True is empty)."""
    iq = p.make_iq_set(ito=to)
    qid = iq["id"]
    iq["mam"]["queryid"] = qid
    if with_jid is not None:
        iq["mam"]["with"] = JID(with_jid)
    if start is not None:
        iq["mam"]["start"] = start
    if end is not None:
        iq["mam"]["end"] = end
    for var, value in (fields or {}).items():
        iq["mam"].set_custom_field(var, value)
    for key, value in (rsm or {}).items():
        iq["mam"]["rsm"][key] = value if value is True else str(value)
    mark = len(p.messages)
    answer = Answer()
    future = iq.send(timeout=timeout)
    reply = None
    while True:
        if future.done():
            try:
                reply = future.result()
            except IqError as e:
                answer.error = e.iq["error"]["condition"] or "(none)"
                answer.error_text = e.iq["error"]["text"] or ""
            except IqTimeout:
                answer.error = "(timeout)"
            break
        raw = p.iq_errors.get(qid)
        if raw is not None:
            # slixmpp 1.10's IqError accepts only RFC 3920's conditions: for others (RFC 6120's
            # policy-violation) it raises inside its handler and the future never resolves.
            future.cancel()
            answer.error, answer.error_text = raw_condition(raw)
            answer.unparsed = True
            break
        await asyncio.sleep(0.02)
    # Results precede the IQ on the stream, so they are all logged by now.
    for m in p.messages[mark:]:
        res = m.xml.find(f"{{{MAM}}}result")
        if res is not None and res.get("queryid") == qid:
            answer.items.append(to_item(m))
    if reply is not None:
        fin = reply.xml.find(f"{{{MAM}}}fin")
        if fin is not None:
            answer.complete = fin.get("complete")
            rsm_set = reply["mam_fin"]["rsm"]
            answer.first = rsm_set["first"] or None
            answer.first_index = rsm_set["first_index"] or None
            answer.last = rsm_set["last"] or None
            answer.count = rsm_set["count"] or None
    return answer


def raw_condition(iq):
    """(condition, text) of an error IQ read from its XML."""
    err = iq.xml.find("{jabber:client}error")
    cond, text = "(none)", ""
    for child in err if err is not None else []:
        if child.tag.startswith(f"{{{STANZAS}}}"):
            name = child.tag.split("}", 1)[1]
            if name == "text":
                text = child.text or ""
            else:
                cond = name
    return cond, text


def leaked_results(p, mark):
    """Archive <result/> messages `p` received since `mark` (for refused queries: must be none)."""
    return [m for m in p.messages[mark:] if m.xml.find(f"{{{MAM}}}result") is not None]


async def send_and_wait(sender, receiver, bodies, problems, what, timeout=20):
    """Sends chat messages `bodies` from `sender` to `receiver`'s bare JID, one after another, and
    waits until `receiver` has all of them live (so archive order equals sending order)."""
    to = receiver.bare()
    before = len(receiver.live(sender.bare()))
    for b in bodies:
        sender.send_message(mto=to, mbody=b, mtype="chat")
    for _ in range(int(timeout / 0.05)):
        if len(receiver.live(sender.bare())) >= before + len(bodies):
            return True
        await asyncio.sleep(0.05)
    got = [m["body"] for m in receiver.live(sender.bare())[before:]]
    problems.append(f"{what}: {receiver.bare()} got {len(got)} of {len(bodies)} messages live "
                    f"from {sender.bare()} (last: {got[-3:]})")
    return False


async def prefs_set(p, default, always, never, problems, what):
    """Sets XEP-0441 preferences with the plugin; returns the reply or None (recorded)."""
    try:
        return await p.plugin["xep_0441"].set_preferences(
            default=default, always=[JID(j) for j in always], never=[JID(j) for j in never],
            timeout=10)
    except (IqError, IqTimeout) as e:
        problems.append(f"{what}: setting prefs default={default} never={never} failed: {e}")
        return None


async def prefs_get(p, problems, what):
    """(default, always, never) as the plugin reads them, or None (recorded)."""
    try:
        default, always, never = await p.plugin["xep_0441"].get_preferences(timeout=10)
        return default, {str(j) for j in always}, {str(j) for j in never}
    except (IqError, IqTimeout) as e:
        problems.append(f"{what}: reading prefs failed: {e}")
        return None
