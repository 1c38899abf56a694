// StanzaJS (npm `stanza` 12.22.1) against a RUNNING petrel: the everyday web-client session.
//
// usage: node stanza_basic.mjs --host 127.0.0.1 --http-port HTTP --domain localhost
//            --accounts carol:PW,dave:PW [--bosh] [--muc conference.localhost] [--timeout 60] [--xml]
// (see stanza_common.mjs for the common options; needs 2 accounts, A and B)
//
// A (two resources, A and A2) and B over WebSocket ws://HOST:HTTP/ws-xmpp, or with --bosh over
// http://HOST:HTTP/http-bind (StanzaJS 12 has no TCP transport). Checks: SASL (StanzaJS picks
// SCRAM-SHA-256) + bind, XEP-0198 enabled + resumable, roster get, own presence reflected, mutual
// subscription A<->B (state-tolerant: ends with `both` on both rosters), B seen available,
// carbons, chat A->B with a unique body (+ <stanza-id by=B>) and its sent carbon at A2, chat B->A
// (bare) reaching both A resources (directly or as a received carbon), MAM `with=B` since the run
// started returning both bodies with <delay>, a fresh MUC room created + instant config, B joins,
// groupchat received (from room/nick, <stanza-id by=room>) and reflected, room MAM, PEP nickname
// publish + the +notify event at B (B advertises nick+notify through caps) + items get, clean
// disconnect.
// Expected: 34 checks (WebSocket and --bosh).   Server needs: HTTP listener with the websocket and
// bosh handlers, modules roster, presence, caps, carbons, stream_management, mam, muc
// (conference.DOMAIN or --muc), pep, disco.

import {
    STANZA_VERSION, TAG, check, disconnectAll, loginAll, mk, options, run, show, sleep, timeout,
    waitFor,
} from './stanza_common.mjs';

const EXPECTED = 34;
const o = options({}, 2);
const RUN_START = new Date(Date.now() - 2000);

run(EXPECTED, async () => {
    const mode = o.bosh ? 'BOSH' : 'WebSocket';
    console.log(`# StanzaJS ${STANZA_VERSION} over ${mode} ${o.url}, run ${TAG}`);
    const A = mk(o, 0, 'sjs-a');
    const A2 = mk(o, 0, 'sjs-a2');
    const B = mk(o, 1, 'sjs-b');
    if (!await loginAll([A, A2, B], mode)) return;
    await waitFor(() => A.sm.started, 'A: XEP-0198 <enabled/>');
    check(A.sm.started, `${A.name}: XEP-0198 enabled`, A.tail());
    check(!!A.sm.id && A.sm.allowResume, `${A.name}: XEP-0198 resumable`,
        JSON.stringify({ id: A.sm.id, resume: A.sm.allowResume }));

    for (const c of [A, B]) {
        try {
            const r = await timeout(c.getRoster(), `${c.name}: roster`);
            check(r && Array.isArray(r.items), `${c.name}: roster get`);
        } catch (e) {
            check(false, `${c.name}: roster get`, show(e) + c.tail());
        }
    }
    for (const c of [A, A2, B]) c.sendPresence();
    // (a BOSH <body/> may carry several stanzas: look inside)
    const own = new RegExp(`<presence [^>]*from=["']${A.jid.replace(/[.]/g, '[.]')}["']`);
    const selfPres = await waitFor(() => A.rawIn.find(x => own.test(x)), 'A: own presence');
    check(!!selfPres, `${A.name}: own presence reflected`, A.tail());

    // mutual subscription A <-> B, auto-approved; a rerun finds it in place already
    for (const c of [A, B]) c.on('subscribe', p => c.acceptSubscription(p.from));
    A.subscribe(B.bare);
    B.subscribe(A.bare);
    const rosters = {};
    const both = async (c, other) => {
        // a plain roster get: getRoster() sends the cached ver, and an up-to-date roster then
        // comes back as an empty result (RFC 6121 2.6.3)
        const r = (await c.sendIQ({ type: 'get', roster: {} })).roster || { items: [] };
        r.items = r.items || [];
        rosters[c.name] = r.items.filter(i => i.jid === other.bare);
        return r.items.some(i => i.jid === other.bare && i.subscription === 'both');
    };
    let sub = false;
    const end = Date.now() + o.step;
    while (!sub && Date.now() < end) {
        try { sub = await timeout(both(A, B), 'A roster') && await timeout(both(B, A), 'B roster'); } catch { }
        if (!sub) await sleep(200);
    }
    check(sub, 'A<->B subscription both, on both rosters', JSON.stringify(rosters) + A.tail(3) + B.tail(3));
    const bPres = await waitFor(() => A.avail.has(B.jid) || A2.avail.has(B.jid), 'A: B available');
    check(!!bPres, `${A.name}: sees B available`, A.tail());

    for (const c of [A, A2, B]) {
        try {
            await timeout(c.enableCarbons(), `${c.name}: carbons`);
            check(true, `${c.name}: carbons enabled`);
        } catch (e) {
            check(false, `${c.name}: carbons enable`, show(e) + c.tail());
        }
    }

    const body1 = `hello from StanzaJS A ${TAG}`;
    A.sendMessage({ to: B.bare, body: body1, type: 'chat' });
    const got1 = await waitFor(() => B.msgs.find(m => m.body === body1), 'B: chat A->B');
    check(!!got1, 'chat A->B delivered with the body sent', B.tail());
    check(got1 && got1.from === A.jid, 'chat A->B from A\'s full JID', JSON.stringify(got1 && got1.from));
    check(got1 && got1.stanzaIds && got1.stanzaIds.some(s => s.by === B.bare && s.id),
        `${B.name}: chat has <stanza-id by=${B.bare}>`, JSON.stringify(got1 && got1.stanzaIds));
    const carbon = await waitFor(() => A2.msgs.find(m => m.carbon && m.carbon.type === 'sent' &&
        m.carbon.forward.message.body === body1), 'A2: sent carbon');
    check(!!carbon, `${A2.name}: XEP-0280 sent carbon of A->B`, A2.tail());
    const body2 = `reply from StanzaJS B ${TAG}`;
    B.sendMessage({ to: A.bare, body: body2, type: 'chat' });
    // to the bare JID with equal priorities: both resources get it, or one gets it and the other
    // a received carbon (RFC 6121 8.5.2.1.1, XEP-0280 section 6)
    const gets = c => c.msgs.some(m => m.body === body2 ||
        (m.carbon && m.carbon.type === 'received' && m.carbon.forward.message.body === body2));
    const rc = await waitFor(() => gets(A) && gets(A2), 'A and A2: B->A bare message');
    const how = [A, A2].map(c => c.msgs.some(m => m.body === body2) ? 'direct'
        : gets(c) ? 'carbon' : 'none');
    check(!!rc, `A and A2 both get B->A bare message (${how.join(', ')})`, A.tail(2) + A2.tail(2));

    try {
        const res = await timeout(A.searchHistory({ with: B.bare, start: RUN_START, paging: { max: 100 } }),
            'A: MAM fin');
        const bodies = res.results.map(r => r.item.message && r.item.message.body);
        check(res.complete === true, `${A.name}: MAM with=B fin complete (${res.results.length} results)`,
            JSON.stringify(res.paging));
        check(bodies.includes(body1) && bodies.includes(body2), `${A.name}: MAM with=B returns both bodies`,
            JSON.stringify(bodies));
        const r0 = res.results.find(r => r.item.message && r.item.message.body === body1);
        check(r0 && r0.item.delay && r0.item.delay.timestamp, `${A.name}: MAM result has <delay stamp>`,
            JSON.stringify(r0 && r0.item));
    } catch (e) {
        for (const w of ['MAM with=B fin', 'MAM with=B returns both bodies', 'MAM result has <delay stamp>'])
            check(false, `${A.name}: ${w}`, show(e) + A.tail());
    }

    const room = `sjs-${TAG}@${o.muc}`;
    try {
        const p = await timeout(A.joinRoom(room, 'carol-sjs'), 'A: MUC join');
        const codes = (p.muc && p.muc.statusCodes) || [];
        check(codes.includes('201'), `${A.name}: MUC join creates a fresh room (codes ${JSON.stringify(codes)})`);
        await timeout(A.configureRoom(room, { type: 'submit' }), 'A: instant room config');
        check(true, `${A.name}: instant room (empty submit form)`);
    } catch (e) {
        check(false, `${A.name}: MUC join creates a fresh room`, show(e) + A.tail());
        check(false, `${A.name}: instant room (empty submit form)`, 'skipped');
    }
    try {
        await timeout(B.joinRoom(room, 'dave-sjs'), 'B: MUC join');
        check(true, `${B.name}: MUC join`);
    } catch (e) {
        check(false, `${B.name}: MUC join`, show(e) + B.tail());
    }
    const gbody = `groupchat from StanzaJS A ${TAG}`;
    A.sendMessage({ to: room, body: gbody, type: 'groupchat' });
    const g = await waitFor(() => B.msgs.find(m => m.type === 'groupchat' && m.body === gbody), 'B: groupchat');
    check(g && g.from === `${room}/carol-sjs`, `${B.name}: groupchat received from room/carol-sjs`,
        JSON.stringify(g && g.from) + B.tail());
    check(g && g.stanzaIds && g.stanzaIds.some(s => s.by === room), 'groupchat has <stanza-id by=room>',
        JSON.stringify(g && g.stanzaIds));
    const gr = await waitFor(() => A.msgs.find(m => m.type === 'groupchat' && m.body === gbody), 'A: reflection');
    check(!!gr, `${A.name}: own groupchat reflected`, A.tail());
    try {
        const res = await timeout(A.searchHistory(room, { paging: { max: 20 } }), 'A: room MAM');
        check(res.results.some(r => r.item.message && r.item.message.body === gbody),
            `${A.name}: room MAM returns the groupchat`, JSON.stringify(res.results.map(r => r.item.message.body)));
    } catch (e) {
        check(false, `${A.name}: room MAM returns the groupchat`, show(e) + A.tail());
    }

    // PEP nick: B advertises nick+notify through caps so petrel sends B the event
    const nick = `Carol sjs ${TAG}`;
    let nickEv = null;
    B.on('nick', e => { if (e.nick === nick) nickEv = e; });
    B.disco.addFeature('http://jabber.org/protocol/nick+notify');
    B.updateCaps();
    B.sendPresence({ legacyCapabilities: B.disco.getCaps() });
    await sleep(1000);   // petrel asks B for its caps
    try {
        await timeout(A.publishNick(nick), 'A: PEP publish');
        check(true, `${A.name}: PEP publish nick (XEP-0172)`);
    } catch (e) {
        check(false, `${A.name}: PEP publish nick (XEP-0172)`, show(e) + A.tail());
    }
    await waitFor(() => nickEv, 'B: PEP nick event');
    check(!!nickEv && nickEv.jid === A.bare, `${B.name}: PEP nick +notify event from A with the new nick`,
        JSON.stringify(nickEv) + B.tail(3));
    try {
        const items = await timeout(A.getItems(A.bare, 'http://jabber.org/protocol/nick'), 'A: PEP items');
        check(JSON.stringify(items).includes(nick), `${A.name}: PEP items get returns the new nick`,
            JSON.stringify(items));
    } catch (e) {
        check(false, `${A.name}: PEP items get returns the new nick`, show(e) + A.tail());
    }

    await disconnectAll([A, A2, B]);
});
