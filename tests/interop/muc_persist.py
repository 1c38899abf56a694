#!/usr/bin/env python3
"""A persistent MUC room (XEP-0045) surviving a server restart, with slixmpp's xep_0045 plugin (run
by tests/interop_muc.rs in two phases around a restart; the client side is in muclib.py).

--phase before-restart: u0 creates ROOM (201), submits the config form (name, description,
  persistent, public), makes u2 a member, sets the subject and leaves; the room is still listed and
  named in disco afterwards (so a failure after the restart is the restart's).
--phase after-restart: disco#items still lists the room and its disco#info still has the name and
  the muc_persistent/muc_public features; u1 (no affiliation) is refused the config form with
  <forbidden/> while the owner u0 gets it with the name, description and persistence submitted
  before; u2 is still a member; u0 rejoins as owner/moderator (no 201: the room exists) and gets
  the subject set before.

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import asyncio
import sys

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout, PresenceError

import muclib as m
from muclib import codes, describe, item

NAME = "Persistent Interop Room"
DESC = "kept across restarts"
SUBJECT = "persisted topic"


async def disco_checks(p, service, room, problems, phase):
    listed, ok = await m.room_listed(p, service, room)
    if not ok:
        problems.append(f"{phase}: disco#items of {service} does not list {room}: {listed}")
    info = await m.room_info(p, room, problems, phase)
    if info is None:
        return
    identities, features, roominfo = info
    if not any(i[0] == "conference" and i[3] == NAME for i in identities):
        problems.append(f"{phase}: no conference identity named {NAME!r}: {identities}")
    missing = [f for f in ("muc_persistent", "muc_public") if f not in features]
    if missing:
        problems.append(f"{phase}: room features lack {missing}: {sorted(features)}")
    desc = roominfo.get("muc#roominfo_description")
    if desc is not None and desc != DESC:
        problems.append(f"{phase}: muc#roominfo_description {desc!r}, want {DESC!r}")


async def before(args, service, room, problems):
    owner = await m.login(args.port, args.cert, args.password, f"u0@{args.domain}", "py0")
    try:
        pr = await m.raw_join(owner, room, "owner", problems, "create")
        if pr is None:
            return
        if 201 not in codes(pr):
            problems.append(f"create: no status 201, is {room} left from an earlier run? {describe(pr)}")
            return
        form = await owner.muc.get_room_config(room, timeout=5)
        m.fill_config(form, {
            "muc#roomconfig_roomname": NAME,
            "muc#roomconfig_roomdesc": DESC,
            "muc#roomconfig_persistentroom": True,
            "muc#roomconfig_publicroom": True,
        }, problems, "create")
        await owner.muc.set_room_config(room, form, timeout=5)
        await owner.muc.set_affiliation(room, "member", jid=f"u2@{args.domain}", timeout=5)
        mark = len(owner.messages)
        owner.muc.set_subject(room, SUBJECT)
        await m.until(lambda: any(s["subject"] == SUBJECT for s in owner.messages[mark:]),
                      "the owner's subject change reflected", problems)
        owner.muc.leave_muc(JID(room), "owner")
        await m.until(lambda: any(s["type"] == "unavailable" for s in m.from_room(owner.presences, f"{room}/owner")),
                      "the owner's own unavailable after leaving", problems)
        await disco_checks(owner, service, room, problems, "before restart")
        print(f"before-restart: {room} created, configured, left empty")
    finally:
        await m.logout([owner])


async def after(args, service, room, problems):
    owner = await m.login(args.port, args.cert, args.password, f"u0@{args.domain}", "py0")
    other = await m.login(args.port, args.cert, args.password, f"u1@{args.domain}", "py1")
    try:
        await disco_checks(other, service, room, problems, "after restart")
        try:
            await other.muc.get_room_config(room, timeout=5)
            problems.append("after restart: u1 (no affiliation) got the config form")
        except IqError as e:
            if e.condition != "forbidden":
                problems.append(f"after restart: u1's config request refused with {e.condition}, want forbidden")
        try:
            form = await owner.muc.get_room_config(room, timeout=5)
        except (IqError, IqTimeout, ValueError) as e:
            problems.append(f"after restart: the owner cannot get the config form: {e}")
            return
        for var, want in (("muc#roomconfig_roomname", NAME), ("muc#roomconfig_roomdesc", DESC),
                          ("muc#roomconfig_persistentroom", True)):
            if m.form_value(form, var) != want:
                problems.append(f"after restart: config {var} = {m.form_value(form, var)!r}, want {want!r}")
        members = {str(j) for j in await owner.muc.get_affiliation_list(room, "member", timeout=5)}
        if f"u2@{args.domain}" not in members:
            problems.append(f"after restart: u2 is no longer a member: {sorted(members)}")
        try:
            pr, subject, _seen, _hist = await owner.muc.join_muc_wait(JID(room), "owner", maxstanzas=0, timeout=8)
        except (PresenceError, asyncio.TimeoutError) as e:
            problems.append(f"after restart: the owner cannot rejoin: {e!r}")
            return
        if (item(pr, "affiliation"), item(pr, "role")) != ("owner", "moderator"):
            problems.append(f"after restart: owner rejoined as {item(pr, 'affiliation')}/{item(pr, 'role')}")
        if 201 in codes(pr):
            problems.append("after restart: rejoin says 201 (room created): the room was lost")
        if subject["subject"] != SUBJECT:
            problems.append(f"after restart: subject {subject['subject']!r}, want {SUBJECT!r}")
        print(f"after-restart: {room} kept its name, config, owner, member and subject")
    finally:
        await m.logout([owner, other])


async def run(args):
    service = args.service or f"conference.{args.domain}"
    room = f"{args.room}@{service}"
    problems = []
    await (before if args.phase == "before-restart" else after)(args, service, room, problems)
    return problems


def main():
    ap = m.common_args(__doc__)
    ap.add_argument("--phase", choices=("before-restart", "after-restart"), required=True)
    ap.add_argument("--room", default="persist", help="the room's local part")
    args = ap.parse_args()
    return m.run_main(args, lambda: run(args), f"OK: {args.phase}")


if __name__ == "__main__":
    sys.exit(main())
