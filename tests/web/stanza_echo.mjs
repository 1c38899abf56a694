// StanzaJS (npm `stanza` 12.22.1) echo bot for the cross-stack test; started by
// tests/clients/nbxmpp_cross.py, not run on its own by the test wrapper.
//
// usage: node stanza_echo.mjs --host 127.0.0.1 --http-port HTTP --domain localhost
//            --accounts carol:PW --room ROOM@MUC --tag TAG [--bosh] [--timeout 60] [--xml]
// (see stanza_common.mjs for the common options; uses the first account)
//
// Logs in over WebSocket (or BOSH), sends presence, joins ROOM as `sjs-echo` (creating it as an
// instant room if it is new), prints `READY <full JID>`, then answers every chat `ping X` with a
// chat `pong X` to the sender and every groupchat `ping X` with a groupchat `pong X` (X must
// contain TAG), printing `ECHO <type> <from> <body>`. A chat `quit TAG` makes it leave, print
// `BYE`, disconnect and exit 0. Exits 1 on login/join failure or SIGTERM (after closing its
// stream), 3 on the watchdog.

import { TAG as OWN_TAG, closed, mk, options, show, timeout, waiting } from './stanza_common.mjs';

const o = options({ room: { type: 'string' }, tag: { type: 'string' } }, 1);
if (!o.room || !o.tag) {
    console.error('stanza_echo.mjs: --room and --tag are required');
    process.exit(2);
}
const c = mk(o, 0, 'sjs-echo');
const quit = async code => {
    try { const done = closed(c); c.disconnect(); await timeout(done, 'disconnect', 2000); }
    catch { /* exit anyway */ }
    process.exit(code);
};
c.on('message', m => {
    if (!m.body || !m.body.includes(o.tag)) return;
    if (m.type === 'chat' && m.body === `quit ${o.tag}`) {
        console.log('BYE');
        quit(0);
        return;
    }
    if (!m.body.startsWith('ping ')) return;
    const body = 'pong ' + m.body.slice(5);
    if (m.type === 'groupchat') c.sendMessage({ to: o.room, type: 'groupchat', body });
    else c.sendMessage({ to: m.from, type: 'chat', body });
    console.log('ECHO', m.type, m.from, body);
});
c.on('auth:failed', () => { console.log('LOGIN FAILED auth:failed'); process.exit(1); });
c.on('session:started', async () => {
    c.sendPresence();
    try {
        const p = await timeout(c.joinRoom(o.room, 'sjs-echo'), 'join ' + o.room);
        if (p.muc && p.muc.statusCodes && p.muc.statusCodes.includes('201'))
            await timeout(c.configureRoom(o.room, { type: 'submit' }), 'instant room config');
        waiting('ping / quit from the nbxmpp side');
        console.log('READY', c.jid, OWN_TAG);
    } catch (e) {
        console.log('JOIN FAILED', show(e), c.tail(3));
        process.exit(1);
    }
});
// killed by the driver (a failed or timed-out run): close the stream, so that the session does
// not stay available (hibernating for XEP-0198 resumption) to swallow a later run's messages
process.on('SIGTERM', () => quit(1));
waiting('session:started');
c.connect();
