#!/usr/bin/python3
"""Cross-stack through a RUNNING petrel: nbxmpp (Gajim's library) <-> StanzaJS (web client library).

usage: /usr/bin/python3 nbxmpp_cross.py --host 127.0.0.1 --port C2S --http-port HTTP
           --domain localhost --accounts alice:PW,carol:PW --echo-script PATH/stanza_echo.mjs
           [--node node] [--ws] [--echo-bosh] [--muc conference.localhost] [--timeout 60] [--xml]
(see nbxmpp_common.py for the common options; needs 2 accounts: the first for nbxmpp, the second
for the StanzaJS echo bot)

Starts the StanzaJS echo bot (`NODE ECHO_SCRIPT`, tests/web/stanza_echo.mjs; node resolves
`stanza` from the node_modules next to it) as a child process on the second account over
WebSocket (or BOSH with --echo-bosh); it creates a fresh room and prints READY. nbxmpp (TCP +
STARTTLS, or --ws) then: chat `ping TAG` -> StanzaJS -> chat `pong TAG` back (from the bot's full
JID, with <stanza-id>); joins the room and sees the bot as occupant; groupchat `ping TAG` -> bot ->
groupchat `pong TAG` from room/sjs-echo; chat `quit TAG` -> the bot says BYE and exits 0. The bot
is killed on any failure or on the watchdog.
Expected: 10 checks (every transport combination).   Server needs: c2s STARTTLS listener, HTTP
listener with the websocket (and bosh) handlers, modules roster, presence, muc, mam (stanza-id).
"""
import atexit
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbxmpp_common import *  # noqa: E402,F401,F403

ap = parser(__doc__)
ap.add_argument('--echo-script', required=True, help='path of stanza_echo.mjs')
ap.add_argument('--node', default='node', help='node executable (default: node on PATH)')
ap.add_argument('--echo-bosh', action='store_true', help='the StanzaJS bot uses BOSH')
args = setup(ap, 2)
EXPECTED = 10
mode = 'websocket' if args.ws else 'tcp+starttls'
room = f'cross-{TAG}@{args.muc}'
bot_user, bot_pw = args.accts[1]
print(f'# nbxmpp ({mode}) <-> StanzaJS ({"BOSH" if args.echo_bosh else "WebSocket"}), run {TAG}',
      flush=True)

cmd = [args.node, os.path.abspath(args.echo_script), '--host', args.host,
       '--http-port', str(args.http_port), '--domain', args.domain,
       '--accounts', f'{bot_user}:{bot_pw}', '--room', room, '--tag', TAG,
       '--timeout', str(int(args.timeout) + 5), '--step-timeout', str(int(args.step_timeout))]
if args.echo_bosh:
    cmd.append('--bosh')
if args.xml:
    cmd.append('--xml')
bot_lines = []
try:
    bot = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=os.path.dirname(os.path.abspath(args.echo_script)))
except OSError as e:
    check(False, 'StanzaJS echo bot started', f'{cmd}: {e!r}')
    finish(EXPECTED)


@atexit.register
def _kill_bot():
    # SIGTERM first: the bot then closes its stream (no session left hibernating for a later run)
    if bot.poll() is None:
        bot.terminate()
        try:
            bot.wait(3)
        except subprocess.TimeoutExpired:
            bot.kill()


def _read():
    for line in bot.stdout:
        bot_lines.append(line.rstrip('\n'))
        if args.xml:
            print('   bot:', line.rstrip('\n'), file=sys.stderr, flush=True)


threading.Thread(target=_read, daemon=True).start()
# the watchdog exits with os._exit: make sure the bot does not outlive it
_orig_exit = os._exit


def _exit(code):
    _kill_bot()
    _orig_exit(code)


os._exit = _exit


def bot_tail():
    return ' | bot: ' + ' | bot: '.join(bot_lines[-6:])


pump(lambda: any(x.startswith('READY') for x in bot_lines) or bot.poll() is not None,
     args.step_timeout * 2, what='StanzaJS echo bot READY')
ready = next((x for x in bot_lines if x.startswith('READY')), None)
if not check(ready is not None, 'StanzaJS echo bot logged in and created the room', bot_tail()):
    finish(EXPECTED)
bot_jid = ready.split()[1]

A = Peer(0, 'cross')
if not connect_all((A,), mode):
    finish(EXPECTED)
A.c.send_stanza(Presence())

A.c.send_stanza(Message(to=bot_jid, body=f'ping chat {TAG}', typ='chat'))
pong = A.wait_body(f'pong chat {TAG}', 'chat pong from StanzaJS')
check(pong is not None, 'chat nbxmpp -> StanzaJS -> nbxmpp (pong with the same tag)',
      A.tail() + bot_tail())
check(pong is not None and str(pong.getFrom()) == bot_jid
      and pong.getTag('stanza-id', namespace=Namespace.SID) is not None,
      'pong comes from the bot\'s full JID with <stanza-id>', str(pong))

pres = Presence(to=f'{room}/alice-nbx')
pres.setTag('x', namespace=Namespace.MUC).setTag('history', attrs={'maxstanzas': '0'})
A.c.send_stanza(pres)
selfp = A.wait(lambda s: s.getName() == 'presence' and str(s.getFrom()) == f'{room}/alice-nbx'
               and '110' in muc_codes(s), 'MUC self-presence')
check(selfp is not None and '201' not in muc_codes(selfp),
      'nbxmpp joined the room StanzaJS created', str(selfp) + A.tail())
check(A.find(lambda s: s.getName() == 'presence' and str(s.getFrom()) == f'{room}/sjs-echo')
      is not None, 'nbxmpp sees the StanzaJS occupant', A.tail())
A.c.send_stanza(Message(to=room, body=f'ping muc {TAG}', typ='groupchat'))
g = A.wait_body(f'pong muc {TAG}', 'groupchat pong', 'groupchat')
check(g is not None and str(g.getFrom()) == f'{room}/sjs-echo',
      'groupchat nbxmpp -> StanzaJS -> nbxmpp from room/sjs-echo', A.tail() + bot_tail())

A.c.send_stanza(Message(to=bot_jid, body=f'quit {TAG}', typ='chat'))
pump(lambda: bot.poll() is not None, what='StanzaJS echo bot exit')
check(bot.poll() == 0 and 'BYE' in bot_lines, f'StanzaJS echo bot quit cleanly (exit {bot.poll()})',
      bot_tail())
check(sum(x.startswith('ECHO ') for x in bot_lines) == 2, 'the bot echoed exactly 2 messages',
      bot_tail())
disconnect_all((A,))
finish(EXPECTED)
