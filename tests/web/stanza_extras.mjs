// StanzaJS (npm `stanza` 12.22.1): the other calls a web client makes, against a RUNNING petrel.
//
// usage: node stanza_extras.mjs --host 127.0.0.1 --http-port HTTP --domain localhost
//            --accounts dave:PW [--bosh] [--muc conference.localhost] [--timeout 60] [--xml]
// (see stanza_common.mjs for the common options; needs 1 account)
//
// Checks: roster, disco#info/items of the server, upload service discovery + slot + HTTP PUT of
// unique bytes + GET of the same bytes (upload URLs whose host is the XMPP domain are fetched from
// --host), blocking (fresh JID) block + listed + unblock, XEP-0048/0402 bookmark (fresh room) add
// + read back + remove, vcard-temp with a unique FN and a photo, XEP-0084 avatar (unique bytes)
// data + metadata + read back, MAM prefs and search form, RSM paging over three unique messages
// sent to the own bare JID (max=2, `after`, `before=''` has the newest), ping/time/version/last of
// the server, XEP-0050 command list (or an error answer), clean disconnect.
// Expected: 40 checks (WebSocket and --bosh).   Server needs: HTTP listener with the websocket,
// bosh and upload handlers, modules roster, presence, disco, http_upload (base_url reachable from
// here), blocking, private, bookmarks, pep, vcard, avatar, mam, ping, time, version, last.

import crypto from 'node:crypto';

import {
    STANZA_VERSION, TAG, check, disconnectAll, loginAll, mk, options, run, show, sleep, timeout,
    waitFor,
} from './stanza_common.mjs';

const EXPECTED = 40;
const o = options({}, 1);
const RUN_START = new Date(Date.now() - 2000);
const D = o.domain;

// a URL petrel handed out (upload slots): its host part is the XMPP domain, which may not resolve
// here; aim it at --host instead
function localUrl(u) {
    const url = new URL(u);
    if (url.hostname.toLowerCase() === D.toLowerCase()) url.hostname = o.host;
    return url.toString();
}

async function t(what, f) {
    try {
        const r = await timeout(f(), what);
        check(true, what);
        return r;
    } catch (e) {
        check(false, what, show(e));
        return undefined;
    }
}

// a 1x1 PNG made unique per run by the run tag appended after IEND (decoders ignore trailing
// bytes; the server only stores them)
const PNG = Buffer.concat([Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64'),
    Buffer.from(TAG)]);

run(EXPECTED, async () => {
    const mode = o.bosh ? 'BOSH' : 'WebSocket';
    console.log(`# StanzaJS ${STANZA_VERSION} extras over ${mode} ${o.url}, run ${TAG}`);
    const c = mk(o, 0, 'extras');
    if (!await loginAll([c], mode)) return;
    await t('roster get', () => c.getRoster());
    c.sendPresence();

    const info = await t('disco#info server', () => c.getDiscoInfo(D));
    check(info && info.features.includes('urn:xmpp:blocking') && info.features.includes('urn:xmpp:ping'),
        'server features include blocking and ping', JSON.stringify(info && info.features));
    await t('disco#items server', () => c.getDiscoItems(D));

    const up = await t('upload service discovered', () => c.getUploadService(D));
    const slot = up ? await t('upload slot', () => c.getUploadSlot(up.jid, { name: `x-${TAG}.png`, size: PNG.length, mediaType: 'image/png' }))
        : (check(false, 'upload slot', 'no service'), undefined);
    try {
        const r = await timeout(fetch(localUrl(slot.upload.url), { method: 'PUT', body: PNG,
            headers: { 'Content-Type': 'image/png', ...Object.fromEntries((slot.upload.headers || []).map(h => [h.name, h.value])) } }), 'HTTP PUT');
        check(r.status === 201 || r.status === 200, `HTTP PUT to the slot (${r.status})`);
    } catch (e) { check(false, 'HTTP PUT to the slot', show(e) + ' slot=' + JSON.stringify(slot)); }
    try {
        const g = await timeout(fetch(localUrl(slot.download)), 'HTTP GET');
        const b = Buffer.from(await g.arrayBuffer());
        check(g.status === 200 && b.equals(PNG), `HTTP GET returns the uploaded bytes (${g.status} ${g.headers.get('content-type')})`,
            `${b.length} bytes`);
    } catch (e) { check(false, 'HTTP GET returns the uploaded bytes', show(e)); }

    const spam = `spam-${TAG}@${D}`;
    await t('block a fresh JID', () => c.block(spam));
    const bl = await t('blocking list', () => c.getBlocked());
    check(bl && bl.jids && bl.jids.includes(spam), 'blocked JID listed', JSON.stringify(bl));
    await t('unblock', () => c.unblock(spam));
    const bl2 = await t('blocking list after unblock', () => c.getBlocked());
    check(bl2 && bl2.jids && !bl2.jids.includes(spam), 'unblocked JID gone', JSON.stringify(bl2));

    const broom = `room-${TAG}@${o.muc}`;
    await t('add bookmark', () => c.addBookmark({ jid: broom, name: `r ${TAG}`, autoJoin: true, nick: 'dave' }));
    const bms = await t('get bookmarks', () => c.getBookmarks());
    check(bms && bms.some(b => b.jid === broom && b.autoJoin), 'bookmark read back (autojoin)', JSON.stringify(bms));
    await t('remove bookmark', () => c.removeBookmark(broom));

    const fn = `Dave Sjs ${TAG}`;
    await t('publish vCard (FN + photo)', () => c.publishVCard({ fullName: fn,
        records: [{ type: 'photo', mediaType: 'image/png', data: PNG.toString('base64') }] }));
    const vc = await t('get vCard', () => c.getVCard(c.bare));
    const photo = vc && (vc.records || []).find(r => r.type === 'photo');
    check(vc && vc.fullName === fn && photo && Buffer.from(photo.data, 'base64').equals(PNG),
        'vCard FN + photo round trip', String(JSON.stringify(vc)).slice(0, 300));

    const id = crypto.createHash('sha1').update(PNG).digest('hex');
    await t('publish avatar data (XEP-0084)', () => c.publishAvatar(id, PNG));
    await t('publish avatar metadata (XEP-0084)', () => c.useAvatars([{ id, bytes: PNG.length, mediaType: 'image/png', width: 1, height: 1 }]));
    const av = await t('get avatar', () => c.getAvatar(c.bare, id));
    check(av && av.content && Buffer.from(av.content.data).equals(PNG), 'avatar round trip',
        String(JSON.stringify(av)).slice(0, 200));

    await t('MAM prefs get', () => c.getHistoryPreferences());
    await t('MAM search form', () => c.getHistorySearchForm(c.bare));
    // three unique messages to the own bare JID, then page through them
    const bodies = [1, 2, 3].map(i => `rsm ${i} ${TAG}`);
    for (const body of bodies) {
        c.sendMessage({ to: c.bare, type: 'chat', body });
        await sleep(50);
    }
    await waitFor(() => c.msgs.filter(m => bodies.includes(m.body)).length >= 3, 'own messages');
    await sleep(300);
    const page1 = await t('MAM page max=2 since the run started', () => c.searchHistory({ start: RUN_START, paging: { max: 2 } }));
    check(page1 && page1.results.length === 2 && !page1.complete && page1.paging && page1.paging.last,
        'first page: 2 results, incomplete, with <last/>', JSON.stringify(page1 && page1.paging));
    const page2 = await t('MAM next page (after)', () => c.searchHistory({ start: RUN_START,
        paging: { max: 2, after: page1 && page1.paging && page1.paging.last } }));
    check(page2 && page2.results.length > 0 && page1 && !page2.results.some(r => page1.results.some(p => p.id === r.id)),
        'RSM after pages forward (no overlap)', JSON.stringify(page2 && page2.paging));
    const last = await t('MAM last page (before="")', () => c.searchHistory({ start: RUN_START, paging: { max: 2, before: '' } }));
    const lastBodies = last ? last.results.map(r => r.item.message && r.item.message.body) : [];
    check(lastBodies.includes(bodies[2]), 'RSM before="" gives the newest message', JSON.stringify(lastBodies));

    await t('ping server', () => c.ping(D));
    await t('time of server', () => c.getTime(D));
    await t('version of server', () => c.getSoftwareVersion(D));
    await t('last activity of server', () => c.getLastActivity(D));
    // petrel has no XEP-0050 commands: an error answer (e.g. item-not-found) is fine, silence is not
    try {
        await timeout(c.getCommands(D), 'ad-hoc command list');
        check(true, 'ad-hoc commands list answered');
    } catch (e) {
        check(e && e.type === 'error' && e.error, `ad-hoc commands list answered (${e && e.error && e.error.condition})`, show(e));
    }
    await disconnectAll([c]);
});
