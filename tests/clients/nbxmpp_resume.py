#!/usr/bin/python3
"""nbxmpp XEP-0198 stream resumption against a RUNNING petrel.

usage: /usr/bin/python3 nbxmpp_resume.py --host 127.0.0.1 --port C2S --http-port HTTP
           --domain localhost --accounts alice:PW,bob:PW [--ws] [--timeout 60] [--xml]
(see nbxmpp_common.py for the common options; needs 2 accounts, A and B)

A (nbxmpp) loses its TCP connection / WebSocket without </stream:stream> (disconnect(immediate=True)
closes the socket), B sends A a chat while A is away, A reconnects with the same Client (nbxmpp
sends <resume previd h/>) and must get <resumed/> and that chat exactly once, and no second copy
of the chat it had acknowledged before the drop.
Expected: 13 checks (TCP and --ws).   Server needs: c2s STARTTLS listener, HTTP listener with the
websocket handler, modules roster, presence, stream_management (resume_timeout > a few seconds).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbxmpp_common import *  # noqa: E402,F401,F403

args = setup(parser(__doc__), 2)
EXPECTED = 13
mode = 'websocket' if args.ws else 'tcp+starttls'
print(f'# nbxmpp XEP-0198 resumption over {mode}, run {TAG}', flush=True)

A = Peer(0, 'resumer')
B = Peer(1, 'sender')
if not connect_all((A, B), mode):
    finish(EXPECTED)
pump(lambda: A.c._smacks.enabled, what='A: XEP-0198 <enabled/>')
check(A.c._smacks.enabled and A.c._smacks.resumeable, f'{A.user}: SM enabled, resumable', A.tail(2))
A.c.send_stanza(Presence())
B.c.send_stanza(Presence())
# A must be available before B's chat to the bare JID is routed (else it may go to offline storage,
# or to another resource of the account left hibernating by an earlier run)
check(A.wait(lambda s: s.getName() == 'presence' and str(s.getFrom()) == A.full,
             'own presence reflected') is not None, f'{A.user}: own presence reflected', A.tail())
body0 = f'before drop {TAG}'
B.c.send_stanza(Message(to=A.bare, body=body0, typ='chat'))
check(A.wait_body(body0, 'chat before the drop') is not None, f'{A.user}: chat before the drop',
      A.tail())
sleep(0.3)                                # let nbxmpp answer the server's <r/>, if any
A.c.disconnect(immediate=True)            # socket closed, no </stream:stream>
pump(lambda: 'disconnected' in A.events, what='A: socket closed')
check('disconnected' in A.events, f'{A.user}: connection dropped without closing the stream')
A.events.clear()
body1 = f'while away {TAG}'
B.c.send_stanza(Message(to=A.bare, body=body1, typ='chat'))
sleep(1.0)
A.c.connect()
pump(lambda: {'resume-successful', 'resume-failed', 'connection-failed'} & A.events,
     args.step_timeout * 1.5, what='A: <resumed/> or <failed/>')
check('resume-successful' in A.events, f'{A.user}: <resumed/>', f'events={A.events}' + A.tail(4))
check(A.wait_body(body1, 'chat sent while away') is not None,
      f'{A.user}: chat sent while away delivered after resumption', A.tail(4))
sleep(1.0)                                # a duplicate would arrive now
n0 = A.count(lambda s: s.getName() == 'message' and s.getBody() == body0)
check(n0 == 1, f'{A.user}: no second copy of the chat acknowledged before the drop (got {n0})', A.tail(4))
n1 = A.count(lambda s: s.getName() == 'message' and s.getBody() == body1)
check(n1 == 1, f'{A.user}: the chat sent while away arrived once (got {n1})', A.tail(4))
# the resumed session works both ways
body2 = f'after resume {TAG}'
A.c.send_stanza(Message(to=B.full, body=body2, typ='chat'))
check(B.wait_body(body2, 'chat from the resumed session') is not None,
      f'{B.user}: gets a chat from the resumed session', B.tail())
disconnect_all((A, B))
finish(EXPECTED)
