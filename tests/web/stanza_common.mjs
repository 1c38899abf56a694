// Shared helpers for the StanzaJS (npm `stanza` 12.22.1) interop scripts (stanza_*.mjs).
// Not a test by itself: imported by the scripts next to it. ES module ("type": "module").
//
// Common command line (every script):
//   --host HOST          address of petrel (default 127.0.0.1)
//   --http-port N        HTTP listener: ws://HOST:N/ws-xmpp, or http://HOST:N/http-bind with --bosh
//   --port N             accepted and ignored (StanzaJS 12 has no TCP transport)
//   --domain D           XMPP domain (default localhost)
//   --accounts U:PW,...  accounts, in order; a script uses as many as it needs (first = A, second
//                        = B) and ignores the rest. A password may contain ':' but not ','.
//   --bosh               BOSH (XEP-0124/0206) instead of WebSocket (RFC 7395), where supported
//   --muc JID            MUC service (default conference.DOMAIN)
//   --timeout SECONDS    overall watchdog (default 60): past it the script prints what it was
//                        waiting for and exits 3
//   --step-timeout S     longest wait for one answer (default 10)
//   --xml                print every XML element sent and received
// Output: one `OK <what>` / `FAIL <what>: <detail>` line per check, then `# N ok, M failed`.
// Exit 0 only if no check failed and exactly the expected number of checks ran (else 1; 3 on the
// watchdog).

import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

import XMPP from 'stanza';

export { XMPP };
export const STANZA_VERSION = createRequire(import.meta.url)('stanza/package.json').version;
export const TAG = Math.random().toString(16).slice(2, 12).padEnd(10, '0');

let oks = 0;
let fails = 0;
let waitingFor = 'start';
let finished = false;

export function waiting(what) {
    waitingFor = what;
}

export function check(ok, what, detail = '') {
    if (finished) return ok;
    if (ok) {
        oks++;
        console.log(`OK ${what}`);
    } else {
        fails++;
        const d = String(detail || 'check failed').replace(/\s*\n\s*/g, ' ').slice(0, 1500);
        console.log(`FAIL ${what}: ${d}`);
    }
    return !!ok;
}

export function finish(expected) {
    if (finished) return;
    finished = true;
    if (oks + fails !== expected) console.log(`# expected ${expected} checks, ran ${oks + fails} (stopped early?)`);
    console.log(`# ${oks} ok, ${fails} failed`);
    process.exit(fails === 0 && oks === expected ? 0 : 1);
}

export function options(extra = {}, naccounts = 1) {
    const { values } = parseArgs({
        options: {
            host: { type: 'string', default: '127.0.0.1' },
            port: { type: 'string' },
            'http-port': { type: 'string', default: '5280' },
            domain: { type: 'string', default: 'localhost' },
            accounts: { type: 'string' },
            bosh: { type: 'boolean', default: false },
            muc: { type: 'string' },
            timeout: { type: 'string', default: '60' },
            'step-timeout': { type: 'string', default: '10' },
            xml: { type: 'boolean', default: false },
            ...extra,
        },
    });
    const accts = (values.accounts || '').split(',').filter(Boolean).map(a => {
        const i = a.indexOf(':');
        return i > 0 ? [a.slice(0, i), a.slice(i + 1)] : null;
    });
    if (accts.length < naccounts || accts.some(a => !a)) {
        console.error(`--accounts needs ${naccounts} USER:PASSWORD entries`);
        process.exit(2);
    }
    const o = {
        ...values,
        accts,
        muc: values.muc || `conference.${values.domain}`,
        timeout: Number(values.timeout) * 1000,
        step: Number(values['step-timeout']) * 1000,
    };
    o.url = o.bosh ? `http://${o.host}:${values['http-port']}/http-bind`
        : `ws://${o.host}:${values['http-port']}/ws-xmpp`;
    o.wsUrl = `ws://${o.host}:${values['http-port']}/ws-xmpp`;
    o.boshUrl = `http://${o.host}:${values['http-port']}/http-bind`;
    STEP = o.step;
    const dog = setTimeout(() => {
        console.log(`FAIL watchdog: --timeout ${values.timeout} s expired, waiting for: ${waitingFor}`);
        fails++;
        finished = true;
        console.log(`# ${oks} ok, ${fails} failed`);
        process.exit(3);
    }, o.timeout);
    void dog;                  // kept referenced: an empty event loop must not end the script with 0
    return o;
}

let STEP = 10000;
export const sleep = ms => new Promise(r => setTimeout(r, ms));
export const show = e => (e && e.message) ? e.message : JSON.stringify(e);

/** resolve p, or reject after the step timeout; `what` is shown by the watchdog */
export function timeout(p, what = 'answer', ms = STEP) {
    waiting(what);
    let t;
    return Promise.race([
        Promise.resolve(p).finally(() => clearTimeout(t)),
        new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms); }),
    ]);
}

/** poll pred() until truthy (returned) or the step timeout (null) */
export async function waitFor(pred, what = 'condition', ms = STEP) {
    waiting(what);
    const end = Date.now() + ms;
    while (Date.now() < end) {
        let v;
        try { v = pred(); } catch { v = null; }
        if (v) return v;
        await sleep(20);
    }
    return null;
}

/** a StanzaJS client for account `index` of --accounts; records raw XML and messages */
export function mk(o, index, resource, { bosh = o.bosh, sm = true } = {}) {
    const [user, pass] = o.accts[index];
    const url = bosh ? o.boshUrl : o.wsUrl;
    const transports = bosh ? { bosh: url, websocket: false } : { websocket: url, bosh: false };
    const c = XMPP.createClient({
        jid: `${user}@${o.domain}`,
        password: pass,
        resource: `${resource}-${TAG}`,
        transports,
        useStreamManagement: sm,
    });
    c.user = user;
    c.bare = `${user}@${o.domain}`;
    c.rawIn = [];
    c.rawOut = [];
    c.msgs = [];
    c.ev = new Set();
    c.name = `${user}/${resource}`;
    c.on('raw:incoming', x => { c.rawIn.push(x); if (o.xml) console.log(`  ${c.name} <<`, x); });
    c.on('raw:outgoing', x => { c.rawOut.push(x); if (o.xml) console.log(`  ${c.name} >>`, x); });
    c.on('message', m => c.msgs.push(m));
    for (const e of ['session:started', 'stream:management:resumed', 'disconnected', 'auth:failed'])
        c.on(e, () => c.ev.add(e));
    c.avail = new Set();
    c.on('available', p => c.avail.add(p.from));
    c.on('stream:error', e => { c.streamError = e; if (o.xml) console.log(`  ${c.name} stream:error`, JSON.stringify(e)); });
    c.tail = (n = 4) => ' | IN: ' + c.rawIn.slice(-n).map(x => String(x).slice(0, 600)).join(' | IN: ');
    return c;
}

/** connect and wait for session:started; rejects on auth failure or disconnect */
export async function login(c) {
    const started = new Promise((res, rej) => {
        c.once('session:started', res);
        c.once('auth:failed', () => rej(new Error('auth:failed')));
        c.once('disconnected', () => rej(new Error('disconnected before session:started')));
    });
    c.connect();
    await timeout(started, `${c.name}: session:started`, 2 * STEP);
}

/** log in every client; one check each; false if any failed */
export async function loginAll(clients, mode) {
    let all = true;
    for (const c of clients) {
        try {
            await login(c);
            check(true, `${c.name}: login+bind (${mode})`);
        } catch (e) {
            all = false;
            check(false, `${c.name}: login+bind (${mode})`, show(e) + c.tail(6));
        }
    }
    return all;
}

/** clean disconnect; one check each. Over BOSH the server's type='terminate' answer counts as the
 * end: StanzaJS 12.22.1 never emits `disconnected` when an <r/> arrives just before it terminates
 * (its <a/> answer is queued behind the terminate and never written, and `disconnected` waits for
 * the outgoing queue to drain). */
export function closed(c) {
    return new Promise(res => { c.once('disconnected', res); c.once('bosh:terminate', res); });
}

export async function disconnectAll(clients) {
    for (const c of clients) {
        const done = closed(c);
        c.disconnect();
        try {
            await timeout(done, `${c.name}: disconnected`);
            check(true, `${c.name}: clean disconnect`);
        } catch (e) {
            check(false, `${c.name}: clean disconnect`, show(e) + c.tail(3));
        }
    }
}

/** run a script body: uncaught errors become a FAIL, then the summary */
export function run(expected, body) {
    process.on('uncaughtException', e => {
        // StanzaJS 12.22.1's BOSH transport pushes a response that arrives after it ended its own
        // stream into the ended parser (ERR_STREAM_PUSH_AFTER_EOF), while a client it was told to
        // disconnect closes: its bug, after the client left; the disconnect itself is checked.
        const late = e && e.code === 'ERR_STREAM_PUSH_AFTER_EOF' && waitingFor.endsWith(': disconnected');
        if (late) {
            console.log(`# ignored: ${e.code} while ${waitingFor}`);
            return;
        }
        check(false, `uncaught exception in StanzaJS while waiting for ${waitingFor}`,
            String(e && e.stack || e).split('\n').slice(0, 3).join(' | '));
    });
    body().catch(e => check(false, `script error while waiting for ${waitingFor}`, String(e && e.stack || e)))
        .finally(() => finish(expected));
}
