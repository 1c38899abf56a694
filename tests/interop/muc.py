#!/usr/bin/env python3
"""Multi-User Chat (XEP-0045) interop of petrel with slixmpp's xep_0045 plugin (run by
tests/interop_muc.rs); the client side is in muclib.py.

Users u0..u{OCCUPANTS-1}@DOMAIN are the occupants (u0 the owner), u{OCCUPANTS} the outsider, all
over STARTTLS. In one fresh room on the MUC service, in order:
  create     the owner's join creates it (self-presence 110 + 201, owner/moderator), the owner gets
             the muc#owner config form and submits name, description, persistent, public,
             unmoderated, open, changesubject off, whois anyone, history length;
  disco      disco#items of the service lists the room; its disco#info shows the conference
             identity with the name and the muc, muc_persistent, muc_public, ... features;
  join       the others join with nicks: each gets existing occupants' presence before its
             self-presence (110, 100 non-anonymous) and the subject; every occupant ends up seeing
             everyone with the right affiliation, role and real JID;
  groupchat  a message from each occupant reaches every occupant, the sender included;
  subject    the owner's subject change reaches all; a participant's is refused with <forbidden/>;
  private    a chat message to room/nick arrives from room/sendernick;
  self-ping  XEP-0410: an iq ping to one's own occupant JID is answered with a result;
  invite     mediated (§7.8.2: from the room, invite from=inviter) and direct (XEP-0249);
  conflict   the outsider joining with a taken nick gets <conflict/>, then joins with its own;
  history    an occupant leaves, the owner sends 5 messages, it rejoins asking for 3: it gets
             exactly the last 3, in order, each with <delay from=room>;
  voice      the owner revokes an occupant's voice (§8.4); its request (§7.13) reaches the owner as
             a muc#request form, whose approval (§8.6) gives the voice back;
  kick       role none: status 307 to the kicked (with 110) and to the others; its self-ping fails;
  ban        outcast: status 301 likewise; the banned user's rejoin gets <forbidden/>;
  destroy    every remaining occupant gets unavailable with <destroy/>; the room is gone from disco.

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import asyncio
import os
import sys

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout, PresenceError

import muclib as m
from muclib import codes, describe, from_room, item, until

NAME = "Interop Room"
DESC = "slixmpp xep_0045 interop"
HISTORY_SENT = 5
HISTORY_ASKED = 3
ROOM_FEATURES = ("http://jabber.org/protocol/muc", "muc_persistent", "muc_public",
                 "muc_unmoderated", "muc_nonanonymous", "muc_open")


class Muc:
    """The scenario's state: the room, the peers and their nicks."""

    def __init__(self, args, peers):
        self.args = args
        self.service = args.service or f"conference.{args.domain}"
        # A fresh room per run: reruns against a long-lived server never meet an old room.
        self.room = f"interop{os.getpid()}-{os.urandom(3).hex()}@{self.service}"
        self.room_jid = JID(self.room)
        self.occupants = peers[:-1]
        self.outsider = peers[-1]
        self.owner = self.occupants[0]
        self.nick = {p: ("owner" if i == 0 else f"nick{i}") for i, p in enumerate(self.occupants)}
        self.nick[self.outsider] = "guest"
        self.problems = []

    def occ(self, p):
        return f"{self.room}/{self.nick[p]}"

    def in_room(self):
        """The peers currently in the room (by the plugin's own view of its joined rooms)."""
        return [p for p in self.occupants + [self.outsider] if self.room_jid in p.muc.rooms[None]]

    async def create(self):
        pr = await m.raw_join(self.owner, self.room, self.nick[self.owner], self.problems, "create")
        if pr is None:
            return False
        c = codes(pr)
        if not {110, 201} <= c:
            self.problems.append(f"create: owner's self-presence lacks status 110 and 201 (§10.1.1): {sorted(c)}")
        if (item(pr, "affiliation"), item(pr, "role")) != ("owner", "moderator"):
            self.problems.append(f"create: creator is not owner/moderator: {describe(pr)}")
        try:
            form = await self.owner.muc.get_room_config(self.room, timeout=5)
        except (IqError, IqTimeout, ValueError) as e:
            self.problems.append(f"create: owner cannot get the config form (§10.1.3): {e}")
            return False
        m.fill_config(form, {
            "muc#roomconfig_roomname": NAME,
            "muc#roomconfig_roomdesc": DESC,
            "muc#roomconfig_persistentroom": True,
            "muc#roomconfig_publicroom": True,
            "muc#roomconfig_moderatedroom": False,
            "muc#roomconfig_membersonly": False,
            "muc#roomconfig_changesubject": False,
            "muc#roomconfig_whois": "anyone",
            m.HISTORY_FIELDS[0]: "20",
        }, self.problems, "create")
        try:
            await self.owner.muc.set_room_config(self.room, form, timeout=5)
        except (IqError, IqTimeout) as e:
            self.problems.append(f"create: config submission refused: {e}")
            return False
        # The form now reflects the submission.
        again = await self.owner.muc.get_room_config(self.room, timeout=5)
        for var, want in (("muc#roomconfig_roomname", NAME), ("muc#roomconfig_whois", "anyone"),
                          ("muc#roomconfig_persistentroom", True)):
            if m.form_value(again, var) != want:
                self.problems.append(f"create: after submission {var} = {m.form_value(again, var)!r}, want {want!r}")
        print(f"create: {self.room} created and configured")
        return True

    async def disco(self):
        listed, ok = await m.room_listed(self.owner, self.service, self.room)
        if not ok:
            self.problems.append(f"disco: disco#items of {self.service} does not list the public room: {listed}")
        info = await m.room_info(self.owner, self.room, self.problems, "disco")
        if info is None:
            return
        identities, features, roominfo = info
        if not any(i[0] == "conference" and i[1] == "text" and i[3] == NAME for i in identities):
            self.problems.append(f"disco: no conference/text identity named {NAME!r}: {identities}")
        missing = [f for f in ROOM_FEATURES if f not in features]
        if missing:
            self.problems.append(f"disco: room features lack {missing}: {sorted(features)}")
        desc = roominfo.get("muc#roominfo_description")
        if desc is not None and desc != DESC:
            self.problems.append(f"disco: muc#roominfo_description {desc!r}, want {DESC!r}")
        print(f"disco: listed as {listed.get(self.room)!r}; features {sorted(features)}")

    async def join_all(self):
        joined = [self.owner]
        for p in self.occupants[1:]:
            nick = self.nick[p]
            try:
                pr, _subject, seen, _history = await p.muc.join_muc_wait(
                    self.room_jid, nick, maxstanzas=0, timeout=8)
            except PresenceError as e:
                self.problems.append(f"join {nick}: refused: {describe(e.presence)}")
                return False
            except asyncio.TimeoutError:
                self.problems.append(f"join {nick}: no self-presence, or no subject message after it (§7.2.15)")
                return False
            c = codes(pr)
            if not {110, 100} <= c:
                self.problems.append(f"join {nick}: self-presence lacks 110 and 100 (non-anonymous): {sorted(c)}")
            before = {s["muc"]["nick"] for s in seen}
            late = [self.nick[q] for q in joined if self.nick[q] not in before]
            if late:
                self.problems.append(f"join {nick}: presence of {late} did not come before the self-presence (§7.2.3)")
            joined.append(p)
        want = {self.nick[p]: (p.boundjid.full, "owner" if p is self.owner else "none",
                               "moderator" if p is self.owner else "participant")
                for p in self.occupants}

        def view(p):
            return {n: (str(p.muc.get_jid_property(self.room_jid, n, "jid")),
                        p.muc.get_jid_property(self.room_jid, n, "affiliation"),
                        p.muc.get_jid_property(self.room_jid, n, "role"))
                    for n in p.muc.get_roster(self.room_jid)}

        for p in self.occupants:
            if not await until(lambda p=p: view(p) == want,
                               f"{self.nick[p]} sees every occupant (nick: jid, affiliation, role) {want}",
                               self.problems):
                self.problems.append(f"  {self.nick[p]} sees {view(p)}")
        print(f"join: {len(self.occupants)} occupants see each other")
        return True

    async def groupchat(self):
        marks = {p: len(p.messages) for p in self.occupants}
        for p in self.occupants:
            p.send_message(mto=self.room, mbody=f"hello from {self.nick[p]}", mtype="groupchat")
        want = {(self.occ(q), f"hello from {self.nick[q]}") for q in self.occupants}

        def got(p):
            return {(str(s["from"]), s["body"]) for s in p.messages[marks[p]:]
                    if s["type"] == "groupchat"}

        for p in self.occupants:
            if not await until(lambda p=p: want <= got(p), f"{self.nick[p]} gets every groupchat message",
                               self.problems):
                self.problems.append(f"  {self.nick[p]} lacks {sorted(want - got(p))}")
        print(f"groupchat: {len(want)} messages reached all {len(self.occupants)} occupants")

    async def subject(self):
        marks = {p: len(p.messages) for p in self.occupants}
        self.owner.muc.set_subject(self.room, "Topic A")

        def subjects(p):
            return [(str(s["from"]), s["subject"]) for s in p.messages[marks[p]:]
                    if s["type"] == "groupchat" and s["subject"] and not s["body"]]

        for p in self.occupants:
            await until(lambda p=p: (self.occ(self.owner), "Topic A") in subjects(p),
                        f"{self.nick[p]} sees the owner's subject change", self.problems)
        # changesubject is off: a participant's change is refused (§8.1).
        part = self.occupants[1]
        mark = len(part.messages)
        part.muc.set_subject(self.room, "Topic B")

        def refusal():
            return [s for s in part.messages[mark:] if s["type"] == "error"
                    and s["from"].bare == self.room]

        if await until(lambda: refusal(), "error for a participant's subject change", self.problems):
            cond = refusal()[0]["error"]["condition"]
            if cond != "forbidden":
                self.problems.append(f"subject: participant's change refused with {cond}, want forbidden")
        # A groupchat message sent after it, seen by all, shows nobody got Topic B.
        self.owner.send_message(mto=self.room, mbody="after subject", mtype="groupchat")
        for p in self.occupants:
            await until(lambda p=p: any(s["body"] == "after subject" for s in p.messages[marks[p]:]),
                        f"{self.nick[p]} gets 'after subject'", self.problems)
            if any(subj == "Topic B" for _, subj in subjects(p)):
                self.problems.append(f"subject: {self.nick[p]} saw the refused subject change")
        print("subject: owner's change seen by all, participant's refused")

    async def private(self):
        a, b = self.occupants[1], self.occupants[2]
        mark = len(b.messages)
        a.send_message(mto=self.occ(b), mbody="psst", mtype="chat")
        await until(lambda: any(str(s["from"]) == self.occ(a) and s["body"] == "psst"
                                and s["type"] == "chat" for s in b.messages[mark:]),
                    f"private message arrives from {self.occ(a)}", self.problems)
        print("private: room/nick to room/nick delivered")

    async def self_ping(self):
        for p in self.occupants:
            try:
                await p.plugin["xep_0199"].send_ping(self.occ(p), timeout=5)
            except IqError as e:
                self.problems.append(f"self-ping {self.nick[p]}: error {e.condition} (XEP-0410 wants a result)")
            except IqTimeout:
                self.problems.append(f"self-ping {self.nick[p]}: no answer")
        print("self-ping: answered")

    async def invitations(self):
        out = self.outsider
        mark = len(out.messages)
        self.owner.muc.invite(self.room, out.boundjid.bare, reason="come in")
        inviter = {self.owner.boundjid.bare, self.owner.boundjid.full, self.occ(self.owner)}

        def mediated():
            for s in out.messages[mark:]:
                x = s.get_plugin("muc", check=True)
                if str(s["from"]) == self.room and x is not None and x.xml.find(f"{{{m.MUC_USER}}}invite") is not None:
                    return s
            return None

        if await until(lambda: mediated() is not None, "mediated invitation from the room", self.problems):
            frm = str(mediated()["muc"]["invite"]["from"])
            if frm not in inviter:
                self.problems.append(f"invite: mediated invitation's invite from={frm!r}, want one of {sorted(inviter)}")
        self.owner.plugin["xep_0249"].send_invitation(out.boundjid.bare, self.room, reason="direct")
        await until(lambda: any(str(s["from"]) == self.owner.boundjid.full
                                and str(s["groupchat_invite"]["jid"]) == self.room
                                for s in out.direct_invites),
                    "direct (XEP-0249) invitation", self.problems)
        print("invite: mediated and direct invitations arrived")

    async def conflict_then_join(self):
        out = self.outsider
        taken = self.nick[self.occupants[1]]
        await m.raw_join(out, self.room, taken, self.problems, "nick conflict", expect_error="conflict")
        try:
            await out.muc.join_muc_wait(self.room_jid, self.nick[out], maxstanzas=0, timeout=8)
        except (PresenceError, asyncio.TimeoutError) as e:
            self.problems.append(f"conflict: outsider cannot join with a free nick: {e!r}")
            return
        print("conflict: taken nick refused, free nick joined")

    async def history(self):
        p = self.occupants[3]
        nick = self.nick[p]
        marks = {q: len(q.presences) for q in self.in_room()}
        p.muc.leave_muc(self.room_jid, nick)
        for q in marks:
            await until(lambda q=q: any(s["type"] == "unavailable"
                                        for s in from_room(q.presences[marks[q]:], self.occ(p))),
                        f"{self.nick[q]} sees {nick} leave", self.problems)
        leave = [s for s in from_room(p.presences[marks[p]:], self.occ(p)) if s["type"] == "unavailable"]
        if leave and 110 not in codes(leave[0]):
            self.problems.append(f"history: leaver's own unavailable lacks 110: {describe(leave[0])}")
        sent = [f"h{i}" for i in range(1, HISTORY_SENT + 1)]
        omark = len(self.owner.messages)
        for body in sent:
            self.owner.send_message(mto=self.room, mbody=body, mtype="groupchat")
        await until(lambda: any(s["body"] == sent[-1] for s in self.owner.messages[omark:]),
                    "owner's reflection of the last history message", self.problems)
        mark = len(p.messages)
        try:
            _pr, _subj, _seen, hist = await p.muc.join_muc_wait(
                self.room_jid, nick, maxstanzas=HISTORY_ASKED, timeout=8)
        except (PresenceError, asyncio.TimeoutError) as e:
            self.problems.append(f"history: rejoin failed: {e!r}")
            return
        raw = [s for s in p.messages[mark:] if s["type"] == "groupchat" and s["body"]]
        bodies = [s["body"] for s in raw]
        want = sent[-HISTORY_ASKED:]
        if bodies != want:
            self.problems.append(f"history: maxstanzas={HISTORY_ASKED} gave {bodies}, want {want}")
        for s in raw:
            delay = s.get_plugin("delay", check=True)
            if delay is None or not delay["stamp"]:
                self.problems.append(f"history: no <delay stamp> on {describe(s)}")
            elif str(delay["from"]) != self.room:
                self.problems.append(f"history: <delay from={delay['from']}>, want the room JID")
        if [s["body"] for s in hist] != bodies:
            self.problems.append(f"history: slixmpp's join result has {[s['body'] for s in hist]}")
        print(f"history: rejoin with maxstanzas={HISTORY_ASKED} got {bodies}")

    async def voice(self):
        """§8.4 revoke voice, §7.13 the visitor's request, §8.6 the owner's approval."""
        v = self.occupants[1]
        me = self.occ(v)
        mark = len(v.presences)

        def role_seen(role):
            return [s for s in from_room(v.presences[mark:], me) if item(s, "role") == role]

        try:
            await self.owner.muc.set_role(self.room, self.nick[v], "visitor", timeout=5)
        except (IqError, IqTimeout) as e:
            self.problems.append(f"voice: revoking voice failed: {e}")
            return
        if not await until(lambda: role_seen("visitor"), "voice: the visitor's own presence", self.problems):
            return
        omark = len(self.owner.messages)
        v.muc.request_voice(self.room, "participant")

        def request():
            for s in from_room(self.owner.messages[omark:], self.room):
                form = s.get_plugin("form", check=True)
                if form is not None and form["type"] == "form":
                    return form.get_values()
            return None

        if not await until(lambda: request() is not None, "voice: the request forwarded to the owner",
                           self.problems):
            return
        got = request()
        if got.get("muc#roomnick") != self.nick[v] or str(got.get("muc#jid")) != v.boundjid.full:
            self.problems.append(f"voice: the forwarded form names {got}, want {self.nick[v]} / {v.boundjid.full}")
        answer = self.owner.make_message(self.room)
        form = answer["form"]
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#request")
        form.add_field(var="muc#role", value="participant")
        form.add_field(var="muc#jid", value=v.boundjid.full)
        form.add_field(var="muc#roomnick", value=self.nick[v])
        form.add_field(var="muc#request_allow", ftype="boolean", value=True)
        answer.send()
        if await until(lambda: role_seen("participant"), "voice: granted after the approval", self.problems):
            print("voice: revoked, requested, forwarded as a form, approved")

    async def removed(self, victim, role_or_aff, code, what):
        """Kicks (role none) or bans (outcast) `victim`; checks the status `code` everywhere."""
        others = [q for q in self.in_room() if q is not victim]
        marks = {q: len(q.presences) for q in others + [victim]}
        try:
            if role_or_aff == "role":
                await self.owner.muc.set_role(self.room, self.nick[victim], "none", reason=what, timeout=5)
            else:
                await self.owner.muc.set_affiliation(self.room, "outcast", jid=victim.boundjid.bare,
                                                     reason=what, timeout=5)
        except (IqError, IqTimeout) as e:
            self.problems.append(f"{what}: the owner's request failed: {e}")
            return

        def gone(q):
            return [s for s in from_room(q.presences[marks[q]:], self.occ(victim))
                    if s["type"] == "unavailable" and code in codes(s)]

        if await until(lambda: gone(victim), f"{what}: the victim's unavailable with {code}", self.problems):
            if 110 not in codes(gone(victim)[0]):
                self.problems.append(f"{what}: victim's presence lacks 110: {describe(gone(victim)[0])}")
        for q in others:
            await until(lambda q=q: gone(q), f"{what}: {self.nick[q]} sees {code} for {self.nick[victim]}",
                        self.problems)
        victim.muc.rooms[None].pop(self.room_jid, None)

    async def kick_and_ban(self):
        kicked, banned = self.occupants[2], self.occupants[3]
        await self.removed(kicked, "role", 307, "kick")
        try:
            await kicked.plugin["xep_0199"].send_ping(self.occ(kicked), timeout=5)
            self.problems.append("kick: the kicked user's self-ping got a result")
        except IqError as e:
            if e.condition != "not-acceptable":
                self.problems.append(f"kick: kicked user's self-ping error {e.condition}, XEP-0410 wants not-acceptable")
        except IqTimeout:
            self.problems.append("kick: the kicked user's self-ping got no answer")
        await self.removed(banned, "affiliation", 301, "ban")
        await m.raw_join(banned, self.room, self.nick[banned], self.problems, "banned rejoin",
                         expect_error="forbidden")
        print("kick/ban: 307 and 301 seen, banned rejoin forbidden")

    async def destroy(self):
        left = self.in_room()
        marks = {q: len(q.presences) for q in left}
        try:
            await self.owner.muc.destroy(self.room, reason="the end", timeout=5)
        except (IqError, IqTimeout) as e:
            self.problems.append(f"destroy: refused: {e}")
            return

        def destroyed(q):
            return [s for s in from_room(q.presences[marks[q]:], self.occ(q)) if s["type"] == "unavailable"
                    and s.get_plugin("muc", check=True) is not None
                    and s["muc"].xml.find(f"{{{m.MUC_USER}}}destroy") is not None]

        for q in left:
            await until(lambda q=q: destroyed(q), f"{self.nick[q]} gets unavailable with <destroy/>",
                        self.problems)
        try:
            await self.owner.plugin["xep_0030"].get_info(jid=self.room, cached=False, timeout=5)
            self.problems.append("destroy: disco#info on the destroyed room still answers")
        except IqError as e:
            print(f"destroy: {len(left)} occupants told; disco#info now {e.condition}")
        except IqTimeout:
            self.problems.append("destroy: disco#info on the destroyed room got no answer")


async def run(args):
    users = [f"u{i}@{args.domain}" for i in range(args.occupants + 1)]
    peers = await asyncio.gather(*(m.login(args.port, args.cert, args.password, u, f"py{i}")
                                   for i, u in enumerate(users)))
    s = Muc(args, list(peers))
    try:
        if await s.create():
            await s.disco()
            if await s.join_all():
                await s.groupchat()
                await s.subject()
                await s.private()
                await s.self_ping()
                await s.invitations()
                await s.conflict_then_join()
                await s.history()
                await s.voice()
                await s.kick_and_ban()
                await s.destroy()
    finally:
        await m.logout(peers)
    return s.problems


def main():
    ap = m.common_args(__doc__)
    ap.add_argument("--occupants", type=int, default=4, help="users in the room (at least 4)")
    args = ap.parse_args()
    if args.occupants < 4:
        ap.error("--occupants must be at least 4")
    return m.run_main(args, lambda: run(args),
                      f"OK: muc with {args.occupants} occupants: create/config, disco, join, groupchat, "
                      "subject, private, self-ping, invitations, conflict, history, voice, kick/ban, destroy")


if __name__ == "__main__":
    sys.exit(main())
