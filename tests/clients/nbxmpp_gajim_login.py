#!/usr/bin/python3
"""What Gajim does around login, through nbxmpp's own modules, against a RUNNING petrel.

usage: /usr/bin/python3 nbxmpp_gajim_login.py --host 127.0.0.1 --port C2S --http-port HTTP
           --domain localhost --accounts alice:PW [--ws] [--upload upload.localhost]
           [--pubsub pubsub.localhost] [--muc conference.localhost] [--timeout 60] [--xml]
(see nbxmpp_common.py for the common options; needs 1 account)

Checks: disco#info/items of the server, disco#info of the MUC, upload and pubsub services and of
the own bare JID (pubsub/pep identity), blocking list + block (fresh JID) + listed + unblock +
gone, XEP-0402 bookmark (fresh room) store + read back + seen through XEP-0048 private storage
(XEP-0411) + retract, MAM prefs get/set, vcard-temp set (unique FN + PNG photo) + get round trip,
XEP-0084 avatar publish (publish-options) + metadata + data round trip, OMEMO devicelist
publish (fresh device id) + read back, XEP-0363 slot + HTTP PUT of unique content + GET of it,
version/time/last/ping of the server, roster set (fresh JID) + push + delete + push.
Upload URLs whose host is the XMPP domain are fetched from --host instead.
Expected: 49 checks (TCP and --ws).   Server needs: c2s STARTTLS listener, HTTP listener with the
websocket and upload handlers, modules roster, presence, disco, blocking, private, bookmarks,
mam, vcard, pep, avatar, http_upload (base_url reachable from here), pubsub, muc, version, time,
last, ping.
"""
import base64
import hashlib
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbxmpp_common import *  # noqa: E402,F401,F403

ap = parser(__doc__)
ap.add_argument('--upload', default=None, help='upload service (default upload.DOMAIN)')
ap.add_argument('--pubsub', default=None, help='pubsub service (default pubsub.DOMAIN)')
args = setup(ap, 1)
dom = args.domain
UPLOAD = args.upload or f'upload.{dom}'
PUBSUB = args.pubsub or f'pubsub.{dom}'
EXPECTED = 49
mode = 'websocket' if args.ws else 'tcp+starttls'
print(f'# nbxmpp: what Gajim does at login, over {mode}, run {TAG}', flush=True)

from nbxmpp.structs import BookmarkData  # noqa: E402
from nbxmpp.modules.user_avatar import Avatar  # noqa: E402
from nbxmpp.modules.vcard_temp import VCard  # noqa: E402

# 1x1 PNG
PNG = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKm'
                       'MIQAAAABJRU5ErkJggg==')

A = Peer(0, 'gajim-login')


def t(what, method, *a, **kw):
    r, e = run_task(method, *a, what=what, **kw)
    check(e is None, what, repr(e) + (A.tail(3) if e is not None else ''))
    return r


if not connect_all((A,), mode):
    finish(EXPECTED)
m = A.c.get_module
t('roster get', m('Roster').request_roster)
A.c.send_stanza(Presence())

info = t('disco#info server', m('Discovery').disco_info, dom)
check(info is not None and Namespace.CARBONS in info.features and Namespace.BLOCKING in info.features,
      'server features include carbons:2 and blocking', repr(info and info.features))
t('disco#items server', m('Discovery').disco_items, dom)
for svc in (args.muc, UPLOAD, PUBSUB):
    t(f'disco#info {svc}', m('Discovery').disco_info, svc)
own = t('disco#info own bare JID', m('Discovery').disco_info, A.bare)
check(own is not None and any(i.category == 'pubsub' and i.type == 'pep' for i in own.identities),
      'own bare JID has identity pubsub/pep', repr(own and own.identities))
check(own is not None and Namespace.MAM_2 in own.features,
      'own bare JID advertises urn:xmpp:mam:2 (XEP-0313)', repr(own and own.features))

spam = JID.from_string(f'spammer-{TAG}@{dom}')
t('blocking list', m('Blocking').request_blocking_list)
t('block a fresh JID', m('Blocking').block, [spam])
bl2 = t('blocking list after block', m('Blocking').request_blocking_list)
check(bl2 is not None and spam in bl2, 'blocked JID listed', repr(bl2))
t('unblock', m('Blocking').unblock, [spam])
bl3 = t('blocking list after unblock', m('Blocking').request_blocking_list)
check(bl3 is not None and spam not in bl3, 'unblocked JID gone', repr(bl3))

bjid = JID.from_string(f'gajim-bm-{TAG}@{args.muc}')
bm = BookmarkData(jid=bjid, name=f'Gajim room {TAG}', nick='alice', autojoin=True)
t('XEP-0402 store bookmark', m('NativeBookmarks').store_bookmarks, [bm])
bms = t('XEP-0402 request bookmarks', m('NativeBookmarks').request_bookmarks)
check(bms is not None and any(b.jid == bjid and b.autojoin and b.name == bm.name for b in bms),
      'XEP-0402 bookmark read back (name, autojoin)', repr(bms))
pbm = t('XEP-0048 private-storage bookmarks', m('PrivateBookmarks').request_bookmarks)
check(pbm is not None and any(b.jid == bjid for b in pbm),
      'XEP-0402 bookmark visible in XEP-0048 (XEP-0411)', repr(pbm))
t('XEP-0402 retract bookmark', m('NativeBookmarks').retract_bookmark, bjid)

t('MAM prefs get', m('MAM').request_preferences)
t('MAM prefs set (always)', m('MAM').set_preferences, 'always', [], [])

vc = VCard()
vc.set_avatar(PNG, 'image/png')
vc.data['FN'] = f'Alice Gajim {TAG}'
t('vcard-temp set', m('VCardTemp').set_vcard, vc)
vc2 = t('vcard-temp get', m('VCardTemp').request_vcard)
check(vc2 is not None and vc2.get_avatar()[0] == PNG and vc2.data.get('FN') == f'Alice Gajim {TAG}',
      'vcard FN + photo round trip', repr(vc2 and vc2.data)[:300])

av = Avatar()
av.add_image_source(PNG, 'image/png', 1, 1)
t('XEP-0084 avatar publish (publish-options)', m('UserAvatar').set_avatar, av)
md = t('XEP-0084 metadata request', m('UserAvatar').request_avatar_metadata)
sha = hashlib.sha1(PNG).hexdigest()
check(md is not None and sha in md.avatar_shas, 'metadata lists the sha1', repr(md))
d = t('XEP-0084 data request', m('UserAvatar').request_avatar_data, sha)
check(d is not None and d.data == PNG, 'avatar data round trip', repr(d)[:200])

dev = int(TAG[:7], 16) or 1
t('OMEMO devicelist publish (access_model=open)', m('OMEMO').set_devicelist, [dev])
dl = t('OMEMO devicelist request', m('OMEMO').request_devicelist)
check(dl is not None and dev in dl, f'devicelist read back ({dev})', repr(dl))

content = f'hello upload {TAG}\n'.encode()
slot = t('XEP-0363 request slot', m('HTTPUpload').request_slot, JID.from_string(UPLOAD),
         f'hello-{TAG}.txt', len(content), 'text/plain')
try:
    waiting('HTTP PUT')
    req = urllib.request.Request(local_url(slot.put_uri), content,
                                 dict(slot.headers or {}) | {'Content-Type': 'text/plain'},
                                 method='PUT')
    code = urllib.request.urlopen(req, timeout=args.step_timeout).status
    check(code in (200, 201), f'HTTP PUT to the slot ({code})')
except Exception as e:
    check(False, 'HTTP PUT to the slot', f'{e!r} slot={slot!r}')
try:
    waiting('HTTP GET')
    body = urllib.request.urlopen(local_url(slot.get_uri), timeout=args.step_timeout).read()
    check(body == content, 'HTTP GET returns the uploaded content', repr(body[:200]))
except Exception as e:
    check(False, 'HTTP GET returns the uploaded content', f'{e!r} slot={slot!r}')

djid = JID.from_string(dom)
t('software version of the server', m('SoftwareVersion').request_software_version, djid)
t('entity time of the server', m('EntityTime').request_entity_time, djid)
t('last activity (uptime) of the server', m('LastActivity').request_last_activity, djid)
t('ping the server', m('Ping').ping, djid)

friend = f'friend-{TAG}@{dom}'


def push_for(jid, sub):
    return lambda s: (s.getName() == 'iq' and s.getType() == 'set' and
                      s.getTag('query', namespace=Namespace.ROSTER) is not None and
                      any(i.getAttr('jid') == jid and (i.getAttr('subscription') or 'none') == sub
                          for i in s.getTag('query', namespace=Namespace.ROSTER).getTags('item')))


t('roster set (fresh JID)', m('Roster').set_item, JID.from_string(friend), 'Friend', ['Gajim'])
check(A.wait(push_for(friend, 'none'), 'roster push for the set') is not None,
      'roster push for the set', A.tail(3))
t('roster delete', m('Roster').delete_item, JID.from_string(friend))
check(A.wait(push_for(friend, 'remove'), 'roster push for the delete') is not None,
      'roster push subscription=remove', A.tail(3))

disconnect_all((A,))
finish(EXPECTED)
