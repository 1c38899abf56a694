#!/usr/bin/env python3
"""Minimal stdlib XMPP peer used by the interop scripts (plaintext PLAIN on loopback, no TLS).
usage: xmpp_peer.py HOST PORT JID PASSWORD recv SUBSTRING TIMEOUT   -> exit 0 when a <message> whose body contains SUBSTRING arrives
       xmpp_peer.py HOST PORT JID PASSWORD send TO BODY               -> sends one chat message, exit 0
       xmpp_peer.py HOST PORT JID PASSWORD iq '<iq type="set" id="IQID">...</iq>'  -> sends it, exit 0 on a result
       xmpp_peer.py HOST PORT JID PASSWORD muc ROOM NICK SUBSTRING TIMEOUT   -> joins ROOM, prints JOINED, waits for a groupchat body
       xmpp_peer.py HOST PORT JID PASSWORD listen TIMEOUT             -> prints every stanza received for TIMEOUT seconds
Readiness: prints 'READY' on stdout (flushed) once bound and available."""
import socket, base64, sys, time, re, html
def main():
    host, port, jid, pw, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    user, dom = jid.split('@', 1)
    s = socket.create_connection((host, port), timeout=10)
    buf = ['']
    def send(x): s.sendall(x.encode())
    def wait_for(pat, t=10):
        end = time.time() + t
        while time.time() < end:
            m = re.search(pat, buf[0], re.S)
            if m:
                buf[0] = buf[0][m.end():]
                return m
            s.settimeout(max(0.05, end - time.time()))
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            if not d: break
            buf[0] += d.decode('utf-8', 'replace')
        raise SystemExit('peer: timeout waiting for %r; have %r' % (pat, buf[0][-500:]))
    hdr = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % dom
    send(hdr); wait_for(r'</stream:features>')
    send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % base64.b64encode(('\0%s\0%s' % (user, pw)).encode()).decode())
    wait_for(r'<success')
    send(hdr); wait_for(r'</stream:features>')
    send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>peer</resource></bind></iq>")
    wait_for(r"<iq[^>]*id='b1'.*?</iq>")
    send("<presence/>")
    print('READY', flush=True)
    if mode == 'send':
        to, body = sys.argv[6], sys.argv[7]
        send("<message type='chat' to='%s' id='m1'><body>%s</body></message>" % (to, html.escape(body)))
        time.sleep(0.5); send('</stream:stream>'); return 0
    if mode == 'recv':
        sub, t = sys.argv[6], float(sys.argv[7])
        m = wait_for(r'<message\b[^>]*>.*?<body>([^<]*%s[^<]*)</body>.*?</message>' % re.escape(html.escape(sub, quote=False)), t)
        print('RECEIVED', m.group(0), flush=True)
        send('</stream:stream>'); return 0
    if mode == 'iq':
        send(sys.argv[6].replace('IQID', 'q1'))
        m = wait_for(r"<iq[^>]*id=['\"]q1['\"].*?(/>|</iq>)", 10)
        print(m.group(0), flush=True)
        send('</stream:stream>'); return 0 if re.search(r"^<iq[^>]*type=['\"]result['\"]", m.group(0)) else 1
    if mode == 'muc':
        room, nick, sub, t = sys.argv[6], sys.argv[7], sys.argv[8], float(sys.argv[9])
        send("<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x></presence>" % (room, nick))
        wait_for(r"<presence[^>]*from='%s/%s'" % (re.escape(room), re.escape(nick)), 10)
        if "code='201'" in buf[0] or True:
            # a room we created stays locked until configured (XEP-0045 10.1.2): accept the default config
            send("<iq type='set' id='cfg1' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>" % room)
            wait_for(r"<iq[^>]*id='cfg1'.*?(/>|</iq>)", 10)
        print('JOINED', flush=True)
        m = wait_for(r"<message\b[^>]*type=['\"]groupchat['\"][^>]*>.*?<body>([^<]*%s[^<]*)</body>.*?</message>" % re.escape(sub), t)
        print('RECEIVED', m.group(0), flush=True)
        send('</stream:stream>'); return 0
    if mode == 'listen':
        end = time.time() + float(sys.argv[6])
        while time.time() < end:
            s.settimeout(0.2)
            try: d = s.recv(65536)
            except socket.timeout: continue
            if not d: break
            print(d.decode('utf-8', 'replace'), flush=True)
        return 0
sys.exit(main())
