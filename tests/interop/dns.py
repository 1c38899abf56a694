"""A tiny authoritative DNS server for federation tests (dnslib, UDP and TCP on loopback).

    dns.py --port P --record "_xmpp-server._tcp.petrel.test. SRV 0 5 25269 petrel.test." \
                    --record "petrel.test. A 127.0.0.1"

Records are zone-file lines; every other name gets NXDOMAIN. Prints "READY <port>" once it serves.
Prosody (lua-unbound `forward`) and petrel (`[s2s] nameservers`) are pointed at it, so the tests
exercise real SRV resolution without touching the machine's resolver or /etc/hosts.
"""

import argparse
import sys
import time

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):
    def __init__(self, lines):
        self.rrs = []
        for line in lines:
            self.rrs.extend(RR.fromZone(line))

    def resolve(self, request, handler):
        reply = request.reply()
        qname = request.q.qname
        qtype = QTYPE[request.q.qtype]
        known = False
        for rr in self.rrs:
            if rr.rname == qname:
                known = True
                if qtype in ("ANY", QTYPE[rr.rtype]):
                    reply.add_answer(rr)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", action="append", default=[])
    a = p.parse_args()
    zone = Zone(a.record)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    udp = DNSServer(zone, port=a.port, address="127.0.0.1", logger=quiet)
    tcp = DNSServer(zone, port=a.port, address="127.0.0.1", tcp=True, logger=quiet)
    udp.start_thread()
    tcp.start_thread()
    print(f"READY {a.port}", flush=True)
    try:
        while udp.isAlive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
