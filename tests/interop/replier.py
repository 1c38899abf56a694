#!/usr/bin/env python3
"""A slixmpp peer that answers one chat message (run by tests/browser.rs and tests/node_client.rs).

Logs in as JID over STARTTLS (verifying the server's self-signed certificate; chat.py's Peer),
sends initial presence and prints `READY <full jid>`. Waits for a chat message from SENDER (a bare
JID) whose body is EXPECT, prints `GOT <sender full jid> <body>`, answers REPLY to the sender's full
JID (type chat), and exits 0. Exits 1 with what it saw instead if that message does not come within
TIMEOUT s.
"""

import argparse
import asyncio
import logging
import sys

from chat import Peer


class Replier(Peer):
    """Answers the expected message once; chat.py's Peer records everything else."""

    def __init__(self, args):
        super().__init__(args.jid, args.password, args.cert)
        self.args = args
        self.answered = asyncio.Event()

    async def on_start(self, event):
        await super().on_start(event)
        print(f"READY {self.boundjid.full}", flush=True)

    def on_message(self, msg):
        sender = msg["from"]
        if msg["type"] == "chat" and sender.bare == self.args.sender and msg["body"] == self.args.expect:
            print(f"GOT {sender.full} {msg['body']}", flush=True)
            self.send_message(mto=sender.full, mbody=self.args.reply, mtype="chat")
            self.answered.set()
        else:
            super().on_message(msg)


async def run(args):
    """None once the message came and was answered, else why not."""
    peer = Replier(args)
    peer.connect("127.0.0.1", args.port)
    try:
        await asyncio.wait_for(peer.started.wait(), args.timeout)
        if peer.failed:
            return peer.failed
        await asyncio.wait_for(peer.answered.wait(), args.timeout)
    except asyncio.TimeoutError:
        return (f"no chat message {args.expect!r} from {args.sender} within {args.timeout} s; "
                f"got {peer.received}, errors {peer.errors}")
    # Disconnecting flushes the reply before the stream closes.
    peer.disconnect()
    await asyncio.wait_for(peer.disconnected, 10)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("--cert", "--password", "--jid", "--sender", "--expect", "--reply"):
        ap.add_argument(name, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    failed = asyncio.run(run(args))
    if failed:
        print(f"FAILED: {failed}", flush=True)
        return 1
    print("OK: replied", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
