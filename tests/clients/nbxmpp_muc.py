#!/usr/bin/python3
"""Gajim's MUC flows through nbxmpp's MUC module against a RUNNING petrel.

usage: /usr/bin/python3 nbxmpp_muc.py --host 127.0.0.1 --port C2S --http-port HTTP
           --domain localhost --accounts alice:PW,bob:PW,carol:PW [--ws] [--muc conference.localhost]
           [--timeout 60] [--xml]
(see nbxmpp_common.py for the common options; needs 3 accounts: owner A, guest B, invitee C)

A fresh room (unique name) each run: A creates it (201 + 110), request_config, edits the form
(name, persistent, public, whois=anyone, archiving) and submits it, request_info shows the new
config; B joins; a unique subject reaches B; A makes B a member (member list has B) and then a
visitor (B sees its role change; B's groupchat is refused); A invites C (C gets the mediated
invitation from the room); A's unique groupchat is in the room's MAM archive; XEP-0410 self-ping;
A destroys the room (B gets unavailable with <destroy/>).
Expected: 30 checks (TCP and --ws).   Server needs: c2s STARTTLS listener, HTTP listener with
the websocket handler, modules roster, presence, disco, mam, muc (conference.DOMAIN or --muc),
ping.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbxmpp_common import *  # noqa: E402,F401,F403

args = setup(parser(__doc__), 3)
EXPECTED = 30
mode = 'websocket' if args.ws else 'tcp+starttls'
print(f'# nbxmpp MUC (Gajim flows) over {mode}, run {TAG}', flush=True)


def t(who, what, method, *a, **kw):
    r, e = run_task(method, *a, what=what, **kw)
    check(e is None, what, repr(e) + (who.tail(3) if e is not None else ''))
    return r


A = Peer(0, 'muc-owner')
B = Peer(1, 'muc-guest')
C = Peer(2, 'muc-invitee')
if not connect_all((A, B, C), mode):
    finish(EXPECTED)
for p in (A, B, C):
    p.c.send_stanza(Presence())
room = f'gajim-{TAG}@{args.muc}'
rj = JID.from_string(room)
M = A.c.get_module('MUC')


def join(p, nick):
    pres = Presence(to=f'{room}/{nick}')
    pres.setTag('x', namespace=Namespace.MUC).setTag('history', attrs={'maxchars': '0'})
    p.c.send_stanza(pres)
    return p.wait(lambda s: s.getName() == 'presence' and str(s.getFrom()) == f'{room}/{nick}'
                  and '110' in muc_codes(s), f'self-presence from {room}/{nick}')


selfp = join(A, 'owner')
check(selfp is not None, 'A: join creates the room (self-presence)', A.tail())
codes = muc_codes(selfp) if selfp is not None else []
check('201' in codes and '110' in codes, f'A: status codes 201 + 110 ({codes})', str(selfp))

NAME = f'Gajim test room {TAG}'
cfg = t(A, 'A: request_config', M.request_config, rj)
form = cfg.form if cfg is not None else None
check(form is not None, 'A: config form present', repr(cfg))
if form is not None:
    fields = [f.var for f in form.iter_fields()]
    wanted = {'muc#roomconfig_roomname': NAME, 'muc#roomconfig_persistentroom': True,
              'muc#roomconfig_publicroom': True, 'muc#roomconfig_whois': 'anyone',
              'mam': True, 'muc#roomconfig_enablearchiving': True}
    for var, val in wanted.items():
        if var in fields:
            form[var].value = val
    form.type_ = 'submit'
    t(A, 'A: set_config (edited form submitted)', M.set_config, rj, form)
else:
    check(False, 'A: set_config (edited form submitted)', 'no form')
info = t(A, 'A: request_info (disco#info + vcard)', M.request_info, rj)
feats = info.info.features if info is not None else []
check('muc_persistent' in feats and 'muc_public' in feats and 'muc_nonanonymous' in feats,
      'config took effect (muc_persistent, muc_public, muc_nonanonymous)', str(feats))
check(info is not None and info.info.muc_name == NAME, 'room name in disco (muc#roominfo)',
      repr(info and info.info.muc_name))

check(join(B, 'guest') is not None, 'B: joins the configured room', B.tail())
subject = f'Subject {TAG}'
M.set_subject(rj, subject)
check(B.wait(lambda s: s.getName() == 'message' and s.getTagData('subject') == subject,
             'subject change') is not None, 'B: gets the subject change', B.tail(3))

t(A, 'A: set_affiliation B member', M.set_affiliation, rj,
  {JID.from_string(B.bare): {'affiliation': 'member'}})
aff = t(A, 'A: get_affiliation member', M.get_affiliation, rj, 'member')
check(aff is not None and JID.from_string(B.bare) in aff.users, 'member list has B', repr(aff))
t(A, 'A: set_role guest visitor', M.set_role, rj, 'guest', 'visitor')
ok = B.wait(lambda s: s.getName() == 'presence' and str(s.getFrom()) == f'{room}/guest'
            and s.getTag('x', namespace=Namespace.MUC_USER).getTagAttr('item', 'role') == 'visitor',
            'own role change to visitor')
check(ok is not None, 'B: sees its role become visitor', B.tail(3))
vbody = f'visitor speaks {TAG}'
B.c.send_stanza(Message(to=room, body=vbody, typ='groupchat'))
err = B.wait(lambda s: s.getName() == 'message' and s.getType() == 'error'
             and str(s.getFrom()) == room, 'error for the visitor groupchat')
check(err is not None and err.getTag('error') is not None
      and err.getTag('error').getTag('forbidden') is not None,
      'B (visitor): groupchat refused with <forbidden/>', B.tail(3))
sleep(0.3)
check(A.find(lambda s: s.getName() == 'message' and s.getBody() == vbody) is None,
      'A: the visitor\'s groupchat was not relayed', A.tail(3))

reason = f'come in {TAG}'
M.invite(rj, JID.from_string(C.bare), None, reason=reason)
inv = C.wait(lambda s: s.getName() == 'message' and str(s.getFrom()) == room
             and s.getTag('x', namespace=Namespace.MUC_USER) is not None
             and s.getTag('x', namespace=Namespace.MUC_USER).getTag('invite') is not None
             and reason in str(s), 'mediated invitation')
check(inv is not None, 'C: gets the mediated invitation (with the reason) from the room', C.tail(3))
check(inv is not None and A.bare in (inv.getTag('x', namespace=Namespace.MUC_USER)
                                     .getTag('invite').getAttr('from') or ''),
      'invitation names A as the inviter', str(inv))

abody = f'archived {TAG}'
A.c.send_stanza(Message(to=room, body=abody, typ='groupchat'))
A.wait_body(abody, 'own groupchat reflected', 'groupchat')
fin, e = run_task(A.c.get_module('MAM').make_query, room, queryid='mq' + TAG, max_=50,
                  what='room MAM <fin/>')
check(e is None and fin is not None, 'A: MAM query on the room', repr(e) + A.tail(2))
check(any(('mq' + TAG) in x and abody in x for x in A.raw_in),
      'room MAM returns the groupchat', A.tail(3))

# XEP-0410 MUC self-ping as Gajim does it (ping the own occupant JID)
t(A, 'A: XEP-0410 self-ping of own occupant JID', A.c.get_module('Ping').ping,
  JID.from_string(f'{room}/owner'))
t(A, 'A: destroy room', M.destroy, rj, f'done {TAG}')
ok = B.wait(lambda s: s.getName() == 'presence' and s.getType() == 'unavailable'
            and str(s.getFrom()).startswith(room)
            and s.getTag('x', namespace=Namespace.MUC_USER).getTag('destroy') is not None,
            'unavailable with <destroy/>')
check(ok is not None, 'B: unavailable with <destroy/>', B.tail(3))

disconnect_all((A, B, C))
finish(EXPECTED)
