// StanzaJS (npm `stanza` 12.22.1) XEP-0198 stream resumption over WebSocket, against a RUNNING
// petrel.
//
// usage: node stanza_resume.mjs --host 127.0.0.1 --http-port HTTP --domain localhost
//            --accounts carol:PW,dave:PW [--timeout 60] [--xml]
// (see stanza_common.mjs for the common options; needs 2 accounts, A and B; WebSocket only:
// --bosh is refused)
//
// A's WebSocket is dropped without <close/> (socket terminated), B sends A a unique chat while A
// is away, A calls connect() again (StanzaJS sends <resume previd h/> since it kept sm.id) and
// must get <resumed/> and that chat exactly once, with no second copy of the chat it had
// acknowledged before the drop; the resumed session then sends B a chat.
// Expected: 13 checks.   Server needs: HTTP listener with the websocket handler, modules roster,
// presence, stream_management (resume_timeout > a few seconds).

import {
    STANZA_VERSION, TAG, check, disconnectAll, loginAll, mk, options, run, sleep, waitFor,
} from './stanza_common.mjs';

const EXPECTED = 13;
const o = options({}, 2);
if (o.bosh) {
    console.error('stanza_resume.mjs: WebSocket only');
    process.exit(2);
}

run(EXPECTED, async () => {
    console.log(`# StanzaJS ${STANZA_VERSION} XEP-0198 resumption over WebSocket ${o.url}, run ${TAG}`);
    const A = mk(o, 0, 'sjs-resume');
    const B = mk(o, 1, 'sjs-sender');
    if (!await loginAll([A, B], 'WebSocket')) return;
    await waitFor(() => A.sm.started, 'A: XEP-0198 <enabled/>');
    check(A.sm.started && A.sm.allowResume && !!A.sm.id, `${A.name}: SM enabled, resumable`);
    A.sendPresence();
    B.sendPresence();
    // A must be available before B's chat to the bare JID is routed (else it may go to offline
    // storage, or to another resource of the account left hibernating by an earlier run)
    const own = new RegExp(`<presence [^>]*from=["']${A.jid.replace(/[.]/g, '[.]')}["']`);
    check(!!await waitFor(() => A.rawIn.find(x => own.test(x)), 'A: own presence reflected'),
        `${A.name}: own presence reflected`, A.tail());
    const body0 = `before drop ${TAG}`;
    B.sendMessage({ to: A.bare, type: 'chat', body: body0 });
    check(!!await waitFor(() => A.msgs.find(m => m.body === body0), 'A: chat before the drop'),
        `${A.name}: chat before the drop`, A.tail());
    A.sm.ack();                     // A acknowledges (<a h/>) the chat before dropping
    await sleep(300);
    A.ev.delete('disconnected');
    A.transport.socket.terminate ? A.transport.socket.terminate() : A.transport.socket.close();
    await waitFor(() => A.ev.has('disconnected'), 'A: socket closed');
    check(A.ev.has('disconnected'), `${A.name}: WebSocket dropped without <close/>`);
    const body1 = `while away ${TAG}`;
    B.sendMessage({ to: A.bare, type: 'chat', body: body1 });
    await sleep(800);
    A.connect();
    await waitFor(() => A.ev.has('stream:management:resumed'), 'A: <resumed/>');
    check(A.ev.has('stream:management:resumed'), `${A.name}: <resumed/>`, A.tail(4));
    check(!!await waitFor(() => A.msgs.find(m => m.body === body1), 'A: chat sent while away'),
        `${A.name}: chat sent while away delivered after resumption`, A.tail(4));
    await sleep(1000);              // a duplicate would arrive now
    const n0 = A.msgs.filter(m => m.body === body0).length;
    check(n0 === 1, `${A.name}: no second copy of the chat acknowledged before the drop (got ${n0})`, A.tail(4));
    const n1 = A.msgs.filter(m => m.body === body1).length;
    check(n1 === 1, `${A.name}: the chat sent while away arrived once (got ${n1})`, A.tail(4));
    const body2 = `after resume ${TAG}`;
    A.sendMessage({ to: B.jid, type: 'chat', body: body2 });
    check(!!await waitFor(() => B.msgs.find(m => m.body === body2), 'B: chat from the resumed session'),
        `${B.name}: gets a chat from the resumed session`, B.tail());
    await disconnectAll([A, B]);
});
