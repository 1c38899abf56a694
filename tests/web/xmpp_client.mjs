// @xmpp/client (xmpp.js) over WebSocket against petrel (run by tests/node_client.rs).
//
// Logs in as USERNAME@DOMAIN over SERVICE (a ws:// URL; SASL, resource binding and, when the server
// offers it, stream management are xmpp.js's own), sends initial presence and a chat MESSAGE to PEER,
// waits for a chat message from PEER with body REPLY, then stops the client (xmpp.js sends the
// RFC 7395 <close/>, waits for the server's and closes the WebSocket). Prints `OK: ...` and exits 0
// only if all of that happened; otherwise prints what failed and exits 1.
//
// Node 20 and 21 need `--experimental-websocket` (xmpp.js uses the global WebSocket).
//
// Usage: node [--experimental-websocket] xmpp_client.mjs --service URL --domain D --username U
//        --password PW --resource R --peer JID --message TEXT --reply TEXT [--timeout SECONDS]

import { parseArgs } from 'node:util';

import { client, xml } from '@xmpp/client';

const { values: args } = parseArgs({
    options: {
        service: { type: 'string' },
        domain: { type: 'string' },
        username: { type: 'string' },
        password: { type: 'string' },
        resource: { type: 'string', default: 'xmppjs' },
        peer: { type: 'string' },
        message: { type: 'string' },
        reply: { type: 'string' },
        timeout: { type: 'string', default: '60' },
    },
});
for (const k of ['service', 'domain', 'username', 'password', 'peer', 'message', 'reply']) {
    if (!args[k]) {
        console.error(`missing --${k}`);
        process.exit(2);
    }
}
if (typeof globalThis.WebSocket !== 'function') {
    console.log(`FAILED: no global WebSocket in node ${process.version} (run with --experimental-websocket)`);
    process.exit(1);
}

const FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);

async function main() {
    const xmpp = client({
        service: args.service,
        domain: args.domain,
        username: args.username,
        password: args.password,
        resource: args.resource,
    });
    const errors = [];
    const statuses = [];
    xmpp.on('error', (e) => errors.push(String(e && e.stack ? e.stack : e)));
    // 'disconnect' carries whether the WebSocket closing handshake completed (wasClean).
    xmpp.on('status', (s, info) =>
        statuses.push(info && typeof info.clean === 'boolean' ? `${s}(${info.clean ? 'clean' : 'dirty'})` : s),
    );
    // A dropped connection must fail the test, not be papered over by a silent reconnect.
    xmpp.reconnect.stop();

    let gotReply;
    const reply = new Promise((resolve) => (gotReply = resolve));
    xmpp.on('stanza', (stanza) => {
        if (stanza.is('message')) {
            const from = stanza.attrs.from || '';
            const body = stanza.getChildText('body');
            log(`message ${stanza.attrs.type} from ${from}: ${JSON.stringify(body)}`);
            if (stanza.attrs.type === 'chat' && from.split('/')[0] === args.peer && body === args.reply) {
                gotReply(from);
            }
        }
    });

    const address = await xmpp.start();
    log(`online as ${address}`);
    await xmpp.send(xml('presence'));
    await xmpp.send(xml('message', { type: 'chat', to: args.peer }, xml('body', {}, args.message)));
    log(`sent ${JSON.stringify(args.message)} to ${args.peer}`);
    const from = await reply;
    log(`reply from ${from}`);
    // Stream management, when enabled, must have counted what we sent before the stream closes.
    const sm = xmpp.streamManagement;
    const smState = sm && sm.enabled ? `stream management on (id ${sm.id ? 'set' : 'none'})` : 'no stream management';
    // stop() sends <close/> and returns the server's answering <close/> (undefined if none came).
    const closeEl = await xmpp.stop();
    log(`stopped; status ${xmpp.status}, server sent ${closeEl}`);
    if (!closeEl || !closeEl.is('close', FRAMING)) throw new Error(`the server did not answer <close/>: ${closeEl}`);
    if (xmpp.status !== 'offline') throw new Error(`status after stop: ${xmpp.status}`);
    if (!statuses.includes('disconnect(clean)')) {
        throw new Error(`the WebSocket did not close cleanly; statuses ${statuses.join(' ')}`);
    }
    if (errors.length) throw new Error(`client errors: ${errors.join('; ')}`);
    console.log(`STATUSES: ${statuses.join(' ')}`);
    console.log(`OK: ${address} sent ${JSON.stringify(args.message)}, got ${JSON.stringify(args.reply)} from ${from}, ${smState}, closed cleanly`);
}

const limit = setTimeout(() => {
    console.log(`FAILED: timed out after ${args.timeout} s`);
    process.exit(1);
}, Number(args.timeout) * 1000);
try {
    await main();
    clearTimeout(limit);
    process.exit(0);
} catch (e) {
    console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
}
