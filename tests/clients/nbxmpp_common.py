"""Shared helpers for the nbxmpp (Gajim's XMPP library) interop scripts (nbxmpp_*.py).

Not a test by itself: imported by the scripts next to it. Runs with Debian's /usr/bin/python3
(python3-nbxmpp 4.2.2, python3-gi, gir1.2-soup-3.0).

Common command line (every script):
    --host HOST          address of petrel (default 127.0.0.1)
    --port N             c2s STARTTLS port (TCP transport)
    --http-port N        HTTP listener: ws://HOST:N/ws-xmpp (with --ws)
    --domain D           XMPP domain (default localhost)
    --accounts U:PW,...  accounts to log in with, in order; a script uses as many as it needs
                         (first = A, second = B, ...) and ignores the rest. A password may contain
                         ':' but not ','.
    --muc JID            MUC service (default conference.DOMAIN)
    --ws                 XMPP over WebSocket (RFC 7395) instead of TCP + STARTTLS
    --timeout SECONDS    overall watchdog (default 60): past it the script prints what it was
                         waiting for and exits 3
    --step-timeout S     longest wait for one answer (default 10)
    --xml                nbxmpp's DEBUG log (all XML) on stderr
Output: one `OK <what>` / `FAIL <what>: <detail>` line per check, then `# N ok, M failed`.
Exit 0 only if no check failed and exactly the expected number of checks ran (else 1; 3 on the
watchdog).
"""
import argparse
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid

from gi.repository import GLib

from nbxmpp.client import Client
from nbxmpp.const import ConnectionProtocol, ConnectionType
from nbxmpp.namespaces import Namespace
from nbxmpp.protocol import JID, Iq, Message, Presence, Node
from nbxmpp.structs import StanzaHandler

__all__ = ['GLib', 'Client', 'ConnectionProtocol', 'ConnectionType', 'Namespace', 'JID', 'Iq',
           'Message', 'Presence', 'Node', 'StanzaHandler', 'parser', 'setup', 'args', 'TAG',
           'pump', 'run_task', 'mkiq', 'check', 'Peer', 'finish', 'waiting', 'local_url', 're',
           'connect_all', 'disconnect_all', 'muc_codes', 'sleep']

TAG = uuid.uuid4().hex[:10]      # unique per run: bodies, room names, JIDs
CTX = GLib.MainContext.default()
OKS = []
FAILS = []
_WAITING = ['start']
_KEEP = []
args = None


def parser(doc):
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5222, help='c2s STARTTLS port')
    ap.add_argument('--http-port', type=int, default=5280, help='HTTP port (/ws-xmpp)')
    ap.add_argument('--domain', default='localhost')
    ap.add_argument('--muc', default=None, help='MUC service (default conference.DOMAIN)')
    ap.add_argument('--accounts', required=True, help='USER:PASSWORD[,USER:PASSWORD...]')
    ap.add_argument('--ws', action='store_true', help='WebSocket instead of TCP+STARTTLS')
    ap.add_argument('--timeout', type=float, default=60.0, help='overall watchdog, seconds')
    ap.add_argument('--step-timeout', type=float, default=10.0, help='one wait, seconds')
    ap.add_argument('--xml', action='store_true', help='nbxmpp DEBUG log (all XML) on stderr')
    return ap


def setup(ap, naccounts):
    """parse the command line, check the account count, start the watchdog"""
    global args
    args = ap.parse_args()
    accts = [a.split(':', 1) for a in args.accounts.split(',') if a]
    if len(accts) < naccounts or any(len(a) != 2 for a in accts):
        ap.error(f'--accounts needs {naccounts} USER:PASSWORD entries')
    args.accts = accts
    args.muc = args.muc or f'conference.{args.domain}'
    logging.basicConfig(level=logging.DEBUG if args.xml else logging.CRITICAL,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')

    def fire():
        print(f'FAIL watchdog: --timeout {args.timeout:.0f} s expired, waiting for: {_WAITING[0]}',
              flush=True)
        print(f'# {len(OKS)} ok, {len(FAILS) + 1} failed', flush=True)
        os._exit(3)

    def uncaught(typ, val, tb):
        import traceback
        print(f'FAIL uncaught exception while waiting for {_WAITING[0]}: '
              + ' | '.join(traceback.format_exception(typ, val, tb)[-3:]).replace('\n', ' '),
              flush=True)
        print(f'# {len(OKS)} ok, {len(FAILS) + 1} failed', flush=True)
        os._exit(1)
    sys.excepthook = uncaught
    w = threading.Timer(args.timeout, fire)
    w.daemon = True
    w.start()
    return args


def waiting(what):
    _WAITING[0] = what


def pump(cond, timeout=None, what=''):
    """run the GLib main context until cond() is true or the timeout; returns cond()'s truth"""
    if what:
        waiting(what)
    deadline = time.monotonic() + (timeout if timeout is not None else args.step_timeout)
    while True:
        try:
            if cond():
                return True
        except Exception:
            pass
        if time.monotonic() > deadline:
            return False
        CTX.iteration(False) or time.sleep(0.005)


def sleep(seconds):
    pump(lambda: False, seconds)


def run_task(method, *a, what='', **kw):
    """call an nbxmpp iq_request_task method, pump until done, return (result, exception)"""
    box = []

    def done(task):
        try:      # must be read inside the callback: nbxmpp clears it afterwards
            box.append((task.finish(), None))
        except Exception as e:
            box.append((None, e))
    _KEEP.append(done)   # nbxmpp keeps callbacks as weak references
    method(*a, callback=done, **kw)
    pump(lambda: box, what=what or getattr(method, '__name__', 'task'))
    if not box:
        return None, TimeoutError('no answer within %ss' % args.step_timeout)
    return box[0]


def mkiq(typ, to, child):
    iq = Iq(typ, to=to)
    iq.addChild(node=child)
    return iq


def check(ok, what, detail=''):
    ok = bool(ok)
    if ok:
        OKS.append(what)
        print('OK', what, flush=True)
    else:
        FAILS.append(what)
        d = ' '.join(str(detail).split('\n'))[:1500] if detail else 'check failed'
        print(f'FAIL {what}: {d}', flush=True)
    return ok


def finish(expected):
    """print the summary and exit: 0 only if nothing failed and `expected` checks passed"""
    n, m = len(OKS), len(FAILS)
    if n + m != expected:
        print(f'# expected {expected} checks, ran {n + m} (stopped early?)', flush=True)
    print(f'# {n} ok, {m} failed', flush=True)
    os._exit(0 if m == 0 and n == expected else 1)


def local_url(url):
    """a URL petrel handed out (upload slots): its host part is the XMPP domain, which may not
    resolve here; aim it at --host instead"""
    u = urllib.parse.urlsplit(url)
    if u.hostname and u.hostname.lower() == args.domain.lower():
        netloc = args.host + (f':{u.port}' if u.port else '')
        u = u._replace(netloc=netloc)
    return urllib.parse.urlunsplit(u)


def muc_codes(stanza):
    x = stanza.getTag('x', namespace=Namespace.MUC_USER)
    return [st.getAttr('code') for st in x.getTags('status')] if x is not None else []


class Peer:
    """one nbxmpp Client; index = position in --accounts"""

    def __init__(self, index, resource):
        self.user, self.pw = args.accts[index]
        self.bare = f'{self.user}@{args.domain}'
        self.c = Client(log_context=self.user)
        self.c.set_domain(args.domain)
        self.c.set_username(self.user)
        self.c.set_resource(f'{resource}-{TAG}')
        self.c.set_password(self.pw)
        self.c.set_ignore_tls_errors(True)          # petrel's self-signed cert
        if args.ws:
            uri = f'ws://{args.host}:{args.http_port}/ws-xmpp'
            self.c.set_custom_host(uri, ConnectionProtocol.WEBSOCKET, ConnectionType.PLAIN)
            self.c.set_connection_types([ConnectionType.PLAIN])
            self.c.set_protocols([ConnectionProtocol.WEBSOCKET])
        else:
            self.c.set_custom_host(f'{args.host}:{args.port}', ConnectionProtocol.TCP,
                                   ConnectionType.START_TLS)
            self.c.set_connection_types([ConnectionType.START_TLS])
            self.c.set_protocols([ConnectionProtocol.TCP])
        self.events = set()
        self.recv = []         # every top-level stanza (Node) received after connect
        self.raw_in = []       # raw strings received
        self.raw_out = []
        for sig in ('connected', 'disconnected', 'connection-failed', 'resume-failed',
                    'resume-successful'):
            self.c.subscribe(sig, self._on_sig)
        self.c.subscribe('stanza-received', lambda _c, _s, d: self.raw_in.append(str(d)))
        self.c.subscribe('stanza-sent', lambda _c, _s, d: self.raw_out.append(str(d)))
        for name in ('message', 'presence', 'iq'):
            self.c.register_handler(StanzaHandler(name=name, callback=self._on_stanza,
                                                  priority=1))

    @property
    def full(self):
        return str(self.c.get_bound_jid())

    def _on_sig(self, _client, signal, *a):
        self.events.add(signal)

    def _on_stanza(self, _client, stanza, _props):
        self.recv.append(stanza)

    def find(self, pred):
        for s in self.recv:
            try:
                if pred(s):
                    return s
            except Exception:
                pass
        return None

    def count(self, pred):
        n = 0
        for s in self.recv:
            try:
                n += bool(pred(s))
            except Exception:
                pass
        return n

    def wait(self, pred, what, timeout=None):
        """pump until a received stanza matches pred; return it (or None)"""
        box = []

        def cond():
            s = self.find(pred)
            if s is not None:
                box.append(s)
            return box
        pump(cond, timeout, what=f'{self.user}: {what}')
        return box[0] if box else None

    def wait_body(self, body, what, typ=None):
        return self.wait(lambda s: s.getName() == 'message' and s.getBody() == body
                         and (typ is None or s.getType() == typ), what)

    def iq(self, iq, what='iq answer', timeout=None):
        """send an IQ, pump until its response, return the response Node or None"""
        box = []
        self.c.send_stanza(iq, callback=lambda _c, st: box.append(st))
        pump(lambda: box, timeout, what=f'{self.user}: {what}')
        return box[0] if box else None

    def tail(self, n=4):
        return ' | IN: ' + ' | IN: '.join(x[:600] for x in self.raw_in[-n:])


def connect_all(peers, mode):
    """connect and wait for login+bind of every peer; one check per peer"""
    for p in peers:
        p.c.connect()
    pump(lambda: all(({'connected', 'connection-failed', 'disconnected'} & p.events)
                     for p in peers), args.step_timeout * 2, what='login+bind of ' +
         ', '.join(p.user for p in peers))
    ok = True
    for p in peers:
        ok &= check('connected' in p.events, f'{p.user}: login+bind ({mode})',
                    f'events={sorted(p.events)} error={p.c.get_error()}' + p.tail())
    return ok


def disconnect_all(peers):
    """clean disconnect (</stream:stream> or <close/>); one check per peer"""
    for p in peers:
        p.c.disconnect()
    pump(lambda: all('disconnected' in p.events for p in peers), what='clean disconnect')
    for p in peers:
        check('disconnected' in p.events, f'{p.user}: clean disconnect',
              f'state={p.c.state}' + p.tail(2))
