// converse.js in headless Chromium against petrel (run by tests/browser.rs).
//
// Serves a page with converse.js (from node_modules/converse.js/dist) on a loopback port, opens it in
// a fresh headless Chromium driven by playwright-core, logs in through converse's login form, starts
// a chat with PEER through the "Start a new chat" modal, types MESSAGE into the chat's textarea and
// presses Enter, then waits until REPLY (sent by the peer) shows in the chat's DOM. Saves a screenshot
// and logs out. Prints `OK: ...` and exits 0 only if all of that was seen in the page; otherwise
// prints what failed (and saves the screenshot of the failed state next to the requested one).
//
// Usage: node converse.mjs --transport websocket|bosh --url URL --jid JID --password PW --peer JID
//        --message TEXT --reply TEXT --screenshot PATH [--chromium PATH] [--timeout SECONDS]

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'node_modules/converse.js/dist');

const { values: args } = parseArgs({
    options: {
        transport: { type: 'string' },
        url: { type: 'string' },
        jid: { type: 'string' },
        password: { type: 'string' },
        peer: { type: 'string' },
        message: { type: 'string' },
        reply: { type: 'string' },
        screenshot: { type: 'string' },
        chromium: { type: 'string', default: process.env.PETREL_CHROMIUM || '/usr/bin/chromium' },
        timeout: { type: 'string', default: '60' },
    },
});
for (const k of ['transport', 'url', 'jid', 'password', 'peer', 'message', 'reply', 'screenshot']) {
    if (!args[k]) {
        console.error(`missing --${k}`);
        process.exit(2);
    }
}
if (!['websocket', 'bosh'].includes(args.transport)) {
    console.error(`--transport websocket|bosh, not ${args.transport}`);
    process.exit(2);
}
// One generous budget per step: a 2-core CI box shared with builds can be slow.
const STEP_MS = Number(args.timeout) * 1000;

/** The page: converse.js, fullscreen, the transport's URL and nothing cached between runs. */
function page() {
    const settings = {
        [args.transport === 'websocket' ? 'websocket_url' : 'bosh_service_url']: args.url,
        discover_connection_methods: false,
        authentication: 'login',
        auto_login: false,
        view_mode: 'fullscreen',
        assets_path: '/dist/',
        i18n: 'en',
        loglevel: process.env.PETREL_CONVERSE_LOGLEVEL || 'info',
        allow_non_roster_messaging: true,
        allow_registration: false,
        // The profile is fresh on every run; nothing must outlive it either.
        clear_cache_on_logout: true,
        whitelisted_plugins: ['petrel-test'],
    };
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>petrel: converse.js over ${args.transport}</title>
<link rel="stylesheet" href="/dist/converse.min.css">
</head>
<body class="converse-fullscreen">
<script type="module">
// The dist bundle is an ES module (converse.js 12+); its default export is the converse object.
import converse from '/dist/converse.min.js';
// Records converse's connection events for the failure report (the assertions read the DOM).
window.petrelEvents = [];
converse.plugins.add('petrel-test', {
    initialize() {
        const api = this._converse.api;
        window.petrelApi = api;
        for (const ev of ['connected', 'reconnected', 'disconnected', 'logout']) {
            api.listen.on(ev, () => window.petrelEvents.push(ev));
        }
    },
});
converse.initialize(${JSON.stringify(settings)});
</script>
</body>
</html>`;
}

const TYPES = {
    '.js': 'text/javascript',
    '.mjs': 'text/javascript',
    '.css': 'text/css',
    '.json': 'application/json',
    '.wasm': 'application/wasm',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
    '.map': 'application/json',
    '.woff': 'font/woff',
    '.woff2': 'font/woff2',
    '.ttf': 'font/ttf',
    '.mp3': 'audio/mpeg',
    '.ogg': 'audio/ogg',
};

/** The static server: `/` is the page, `/dist/...` converse's files; loopback only. */
function serve() {
    const server = createServer((req, res) => {
        const path = new URL(req.url, 'http://x').pathname;
        if (path === '/' || path === '/index.html') {
            res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
            res.end(page());
            return;
        }
        if (path === '/favicon.ico') {
            res.writeHead(204);
            res.end();
            return;
        }
        const rel = normalize(decodeURIComponent(path)).replace(/^\/dist\//, '');
        const file = join(dist, rel);
        if (!path.startsWith('/dist/') || !file.startsWith(dist + '/')) {
            res.writeHead(404);
            res.end();
            return;
        }
        try {
            if (!statSync(file).isFile()) throw new Error('not a file');
            res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream' });
            res.end(readFileSync(file));
        } catch {
            res.writeHead(404);
            res.end();
        }
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** `promise`, or an error naming `what` after one step's budget. */
function withTimeout(promise, what) {
    let timer;
    const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_MS);
    });
    return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);

async function main() {
    const http = await serve();
    const origin = `http://127.0.0.1:${http.address().port}/`;
    const profile = mkdtempSync(join(tmpdir(), 'petrel-chromium-'));
    const browserLog = [];
    // One promise per WebSocket the page opened, resolved when it closes.
    const sockets = [];
    let context;
    let pg;
    try {
        context = await chromium.launchPersistentContext(profile, {
            executablePath: args.chromium,
            headless: true,
            args: [
                '--headless',
                '--no-sandbox',
                '--disable-gpu',
                '--disable-quic',
                '--no-first-run',
                '--disable-background-networking',
                '--disable-component-update',
                '--disable-sync',
                // Containers often have a small /dev/shm, where Chromium's renderers crash.
                '--disable-dev-shm-usage',
                // Nothing leaves the machine: converse's footer links sponsor logos on the web.
                '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
            ],
            viewport: { width: 1280, height: 800 },
            timeout: STEP_MS,
        });
        context.setDefaultTimeout(STEP_MS);
        // Records how each of the page's WebSockets closed, as the page sees it (code, wasClean).
        await context.addInitScript(() => {
            const Native = window.WebSocket;
            window.petrelSockets = [];
            window.WebSocket = class extends Native {
                constructor(...a) {
                    super(...a);
                    const rec = { url: String(a[0]), protocol: null };
                    window.petrelSockets.push(rec);
                    this.addEventListener('open', () => (rec.protocol = this.protocol));
                    this.addEventListener('close', (e) => Object.assign(rec, { code: e.code, wasClean: e.wasClean }));
                }
            };
        });
        pg = context.pages()[0] ?? (await context.newPage());
        pg.on('console', (m) => browserLog.push(`console.${m.type()}: ${m.text()}`));
        pg.on('pageerror', (e) => browserLog.push(`pageerror: ${e.message}`));
        pg.on('requestfailed', (r) => browserLog.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
        pg.on('websocket', (ws) => {
            browserLog.push(`websocket opened: ${ws.url()}`);
            sockets.push(new Promise((resolve) => ws.on('close', resolve)));
            ws.on('close', () => browserLog.push(`websocket closed: ${ws.url()}`));
            ws.on('socketerror', (e) => browserLog.push(`websocket error: ${e}`));
        });

        await pg.goto(origin);
        log('page loaded, logging in through the form');
        const form = pg.locator('form#converse-login');
        await form.locator('input[name="jid"]').fill(args.jid);
        await form.locator('input[name="password"]').fill(args.password);
        await form.locator('button[type="submit"]').click();

        // Logged in: the form is gone and the controlbox shows the contacts.
        await pg.locator('.controlbox-heading--contacts').waitFor();
        await pg.locator('form#converse-login').waitFor({ state: 'detached' });
        log('logged in; starting a chat with', args.peer);

        await pg.locator('.dropdown--contacts button').first().click();
        await pg.locator('.dropdown--contacts .new-chat').click();
        const modal = pg.locator('converse-new-chat-modal');
        await modal.locator('input[name="jid"]').fill(args.peer);
        await modal.locator('button[type="submit"]').click();

        const chat = pg.locator(`converse-chat[jid="${args.peer}"]`);
        const textarea = chat.locator('textarea.chat-textarea');
        await textarea.waitFor();
        // The modal closes itself once the chat is open; wait so it cannot swallow the typing.
        await modal.locator('input[name="jid"]').waitFor({ state: 'hidden' });
        await textarea.fill(args.message);
        await textarea.press('Enter');
        log('message typed and sent');

        const texts = chat.locator('.chat-msg__text');
        await texts.filter({ hasText: args.message }).first().waitFor();
        await texts.filter({ hasText: args.reply }).first().waitFor();
        // The reply is shown as the peer's message (not ours): its message element names the peer.
        const replyMsg = chat.locator('.message.chat-msg', { hasText: args.reply }).first();
        const replyFrom = await replyMsg.getAttribute('data-from');
        const replyAuthor = (await replyMsg.locator('.chat-msg__author').first().textContent()).trim();
        const shown = (await texts.allTextContents()).map((t) => t.trim());
        log('reply shown in the chat:', JSON.stringify(shown));

        await pg.screenshot({ path: args.screenshot });
        log('screenshot saved to', args.screenshot);

        // Log out: converse closes the XMPP stream, then the WebSocket; the login form comes back.
        await pg.evaluate(() => window.petrelApi.user.logout());
        await pg.locator('form#converse-login').waitFor();
        if (args.transport === 'websocket') {
            if (sockets.length === 0) throw new Error('converse opened no WebSocket');
            await withTimeout(Promise.all(sockets), 'the WebSocket to close after logout');
            const seen = await pg.evaluate(() => window.petrelSockets);
            // The closing handshake completed (both close frames, then TCP closed), code 1000.
            const bad = seen.filter((w) => !(w.protocol === 'xmpp' && w.wasClean === true && w.code === 1000));
            if (seen.length === 0 || bad.length) throw new Error(`WebSockets did not close cleanly: ${JSON.stringify(seen)}`);
            console.log(`WEBSOCKETS: ${JSON.stringify(seen)}`);
        }
        log('logged out');
        const events = await pg.evaluate(() => window.petrelEvents);
        console.log(`DOM-MESSAGES: ${JSON.stringify(shown)}`);
        console.log(`REPLY-FROM: ${replyFrom} (${replyAuthor})`);
        console.log(`EVENTS: ${JSON.stringify(events)}`);
        console.log(`OK: ${args.transport}: logged in as ${args.jid}, sent "${args.message}", "${args.reply}" shown`);
        return 0;
    } catch (e) {
        console.log(`FAILED: ${e && e.stack ? e.stack : e}`);
        if (pg) {
            const failed = args.screenshot.replace(/\.png$/, '') + '-failed.png';
            await pg.screenshot({ path: failed }).catch(() => {});
            console.log(`failure screenshot: ${failed}`);
            console.log(`EVENTS: ${JSON.stringify(await pg.evaluate(() => window.petrelEvents).catch(() => null))}`);
        }
        return 1;
    } finally {
        console.log('--- browser log\n' + browserLog.join('\n'));
        await context?.close().catch(() => {});
        http.close();
        rmSync(profile, { recursive: true, force: true });
    }
}

process.exit(await main());
