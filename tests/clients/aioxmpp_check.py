#!/usr/bin/python3
"""Interop checks with aioxmpp (Debian python3-aioxmpp 0.13) against a RUNNING petrel. Starts no server.
usage: /usr/bin/python3 aioxmpp_check.py HOST STARTTLS_PORT DIRECT_TLS_PORT|0 USER1@D PASS1 USER2@D PASS2
Certificates are not verified (self-signed test server). Prints PASS/FAIL per check, exits 0 only if all pass."""
import asyncio, sys, logging, ssl, uuid, os
import aioxmpp, aiosasl, aioxmpp.security_layer as sl, aioxmpp.connector
import aioxmpp.roster, aioxmpp.disco, aioxmpp.muc, aioxmpp.ping, aioxmpp.version, aioxmpp.blocking
import aioxmpp.private_xml, aioxmpp.bookmarks, aioxmpp.vcard, aioxmpp.avatar, aioxmpp.im, aioxmpp.carbons
HOST, PORT, DTLS, U1, P1, U2, P2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:8]
logging.basicConfig(level=logging.DEBUG if os.environ.get("DEBUG") else logging.CRITICAL)
results = []
def rec(name, ok, info=''):
    results.append(ok); print(('PASS: ' if ok else 'FAIL: ') + name + (('  -- ' + str(info)[:600]) if info and not ok else ''), flush=True)

ONLY = [None]   # restrict SASL mechanism
_orig_scram = aiosasl.SCRAM.any_supported.__func__ if hasattr(aiosasl.SCRAM.any_supported, '__func__') else None
def filt(mechs): return set(m for m in mechs if ONLY[0] is None or m == ONLY[0])
for cls in (aiosasl.SCRAM, aiosasl.PLAIN, aiosasl.SCRAMPLUS):
    orig = cls.any_supported
    cls.any_supported = classmethod(lambda c, mechs, _o=orig: _o(filt(mechs)))

def nv_ctx(_=None):
    import OpenSSL.SSL
    ctx = OpenSSL.SSL.Context(OpenSSL.SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(OpenSSL.SSL.VERIFY_NONE, lambda *a: True)
    return ctx

def secl(pw, tls_required=True):
    return sl.SecurityLayer(nv_ctx, sl._NullVerifier, tls_required, (sl.PasswordSASLProvider(lambda jid, n: asyncio.sleep(0, pw), max_auth_attempts=1),))

def client(jid, pw, port=PORT, direct=False, tls_required=True):
    conn = aioxmpp.connector.XMPPOverTLSConnector() if direct else aioxmpp.connector.STARTTLSConnector()
    c = aioxmpp.PresenceManagedClient(aioxmpp.JID.fromstr(jid), secl(pw, tls_required),
                                      override_peer=[(HOST, port, conn)])
    c.resource = 'aiox' + uuid.uuid4().hex[:6]
    return c

async def login(name, jid, pw, mech=None, **kw):
    ONLY[0] = mech
    c = client(jid, pw, **kw)
    try:
        async with asyncio.timeout(15):
            async with c.connected():
                rec(name, True)
    except Exception as e:
        rec(name, False, repr(e))
    finally:
        ONLY[0] = None

async def main():
    await login('STARTTLS + SCRAM-SHA-1', U1, P1, 'SCRAM-SHA-1')
    await login('STARTTLS + SCRAM-SHA-256', U1, P1, 'SCRAM-SHA-256')
    await login('STARTTLS + PLAIN', U1, P1, 'PLAIN')
    # wrong password must fail with not-authorized
    ONLY[0] = 'SCRAM-SHA-1'
    try:
        async with asyncio.timeout(15):
            async with client(U1, P1 + 'x').connected():
                rec('wrong password refused', False, 'logged in')
    except aiosasl.AuthenticationFailure as e:
        rec('wrong password refused (%s)' % e.opaque_error, e.opaque_error == 'not-authorized', e)
    except aioxmpp.errors.MultiOSError as e:
        inner = [x for x in e.exceptions if isinstance(x, aiosasl.AuthenticationFailure)]
        rec('wrong password refused (%s)' % (inner and inner[0].opaque_error), bool(inner) and inner[0].opaque_error == 'not-authorized', e)
    except Exception as e:
        rec('wrong password refused', False, repr(e))
    ONLY[0] = None
    if DTLS:
        await login('direct TLS (XEP-0368) + SCRAM-SHA-256', U1, P1, 'SCRAM-SHA-256', port=DTLS, direct=True)

    a, b = client(U1, P1), client(U2, P2)
    rs, rsb = a.summon(aioxmpp.RosterClient), b.summon(aioxmpp.RosterClient)   # before connecting: initial fetch
    bl = a.summon(aioxmpp.BlockingClient)
    async with asyncio.timeout(60):
      async with a.connected() as sa, b.connected() as sb:
        # message a -> b and b -> a
        got = asyncio.get_running_loop().create_future()
        def on_msg(msg):
            if msg.body and not got.done(): got.set_result(msg)
        b.stream.register_message_callback(aioxmpp.MessageType.CHAT, None, on_msg)
        m = aioxmpp.Message(to=aioxmpp.JID.fromstr(U2), type_=aioxmpp.MessageType.CHAT)
        m.body[None] = 'aioxmpp hello'
        await sa.send(m)
        try:
            r = await asyncio.wait_for(got, 10)
            rec('message a->b', r.body.any() == 'aioxmpp hello' and r.from_.bare() == aioxmpp.JID.fromstr(U1))
        except asyncio.TimeoutError:
            rec('message a->b', False, 'timeout')
        got2 = asyncio.get_running_loop().create_future()
        a.stream.register_message_callback(aioxmpp.MessageType.CHAT, None, lambda msg: msg.body and not got2.done() and got2.set_result(msg))
        m = aioxmpp.Message(to=a.local_jid, type_=aioxmpp.MessageType.CHAT); m.body[None] = 'aioxmpp reply'
        await sb.send(m)
        try:
            r = await asyncio.wait_for(got2, 10); rec('message b->a (full JID)', r.body.any() == 'aioxmpp reply')
        except asyncio.TimeoutError:
            rec('message b->a (full JID)', False, 'timeout')
        # roster
        try:
            await rs.set_entry(aioxmpp.JID.fromstr(U2), name='B', add_to_groups={'aiox'})
            await asyncio.sleep(0.5)
            it = rs.items.get(aioxmpp.JID.fromstr(U2))
            rec('roster set + push', it is not None and it.name == 'B' and 'aiox' in it.groups, it)
        except Exception as e: rec('roster set + push', False, repr(e))
        # disco
        dc = a.summon(aioxmpp.DiscoClient)
        try:
            info = await dc.query_info(aioxmpp.JID.fromstr(U1.split('@')[1]))
            rec('disco#info server', 'urn:xmpp:ping' in info.features, sorted(info.features))
            items = await dc.query_items(aioxmpp.JID.fromstr(U1.split('@')[1]))
            rec('disco#items server', any(str(i.jid).startswith('conference.') for i in items.items))
        except Exception as e: rec('disco', False, repr(e))
        # ping, version
        try:
            await aioxmpp.ping.ping(a, aioxmpp.JID.fromstr(U1.split('@')[1])); rec('XEP-0199 ping server', True)
        except Exception as e: rec('XEP-0199 ping server', False, repr(e))
        try:
            v = await aioxmpp.version.query_version(a.stream, aioxmpp.JID.fromstr(U1.split('@')[1]))
            rec('XEP-0092 version (%s %s)' % (v.name, v.version), bool(v.name))
        except Exception as e: rec('XEP-0092 version', False, repr(e))
        # blocking
        try:
            j = aioxmpp.JID.fromstr('spammer@example.org')
            await bl.block_jids([j]); await asyncio.sleep(0.3)
            ok1 = j in bl.blocklist
            await bl.unblock_jids([j]); await asyncio.sleep(0.3)
            rec('XEP-0191 block/unblock', ok1 and j not in bl.blocklist, bl.blocklist)
        except Exception as e: rec('XEP-0191 block/unblock', False, repr(e))
        # bookmarks (aioxmpp: XEP-0048 in private XML storage)
        bm = a.summon(aioxmpp.BookmarkClient)
        try:
            room = aioxmpp.JID.fromstr('aiox%s@conference.%s' % (uuid.uuid4().hex[:6], U1.split('@')[1]))
            await bm.add_bookmark(aioxmpp.bookmarks.Conference('R', room, autojoin=True, nick='n'))
            got = await bm.get_bookmarks()
            rec('XEP-0048 bookmarks (private XML)', any(getattr(x, 'jid', None) == room for x in got), got)
        except Exception as e: rec('XEP-0048 bookmarks', False, repr(e))
        # vcard
        vc = a.summon(aioxmpp.vcard.VCardService)
        try:
            card = aioxmpp.vcard.xso.VCard()
            card.set_photo_data('image/png', b'\x89PNG fake')
            await vc.set_vcard(card)
            back = await vc.get_vcard()
            rec('XEP-0054 vCard set/get photo', back.get_photo_data() == b'\x89PNG fake')
        except Exception as e: rec('XEP-0054 vCard', False, repr(e))
        # avatar (XEP-0084 via PEP)
        av = a.summon(aioxmpp.avatar.AvatarService)
        try:
            png = bytes.fromhex('89504e470d0a1a0a0000000d4948445200000001000000010806000000'
                                '1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082')
            # the avatar nodes have the default 'presence' access model: B subscribes to A first (A pre-approves)
            rs.approve(b.local_jid.bare()); rsb.subscribe(a.local_jid.bare())
            for _ in range(50):
                it = rsb.items.get(a.local_jid.bare())
                if it is not None and it.subscription in ('to', 'both'): break
                await asyncio.sleep(0.1)
            await av.publish_avatar_set(_mkset(png))
            await asyncio.sleep(0.5)
            desc = await b.summon(aioxmpp.avatar.AvatarService).get_avatar_metadata(aioxmpp.JID.fromstr(U1))
            data = await desc[0].get_image_bytes() if desc else None
            rec('XEP-0084 avatar publish + peer fetch', data == png, desc)
        except Exception as e: rec('XEP-0084 avatar', False, repr(e))
        # MUC
        mc_a, mc_b = a.summon(aioxmpp.MUCClient), b.summon(aioxmpp.MUCClient)
        try:
            room = aioxmpp.JID.fromstr('aiox%s@conference.%s' % (uuid.uuid4().hex[:6], U1.split('@')[1]))
            ra, fa = mc_a.join(room, 'alice'); await asyncio.wait_for(fa, 10)
            # a new room stays locked until its owner submits a configuration (XEP-0045 10.1.2): instant room
            await mc_a.set_room_config(room, aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT))
            rb, fb = mc_b.join(room, 'bob'); await asyncio.wait_for(fb, 10)
            gm = asyncio.get_running_loop().create_future()
            rb.on_message.connect(lambda msg, member, source, **kw: (not gm.done() and msg.body and gm.set_result(msg)) and None)
            m = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT); m.body[None] = 'muc hi'
            ra.send_message(m)
            r = await asyncio.wait_for(gm, 10)
            rec('MUC join + groupchat', r.body.any() == 'muc hi')
            await ra.leave(); await rb.leave()
        except Exception as e: rec('MUC join + groupchat', False, repr(e))

def _mkset(png):
    s = aioxmpp.avatar.AvatarSet()
    s.add_avatar_image('image/png', image_bytes=png, width=1, height=1)
    return s

asyncio.run(main())
print('%d passed, %d failed' % (results.count(True), results.count(False)))
sys.exit(0 if results and all(results) else 1)
