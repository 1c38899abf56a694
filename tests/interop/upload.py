#!/usr/bin/env python3
"""Interop check of petrel's HTTP file upload (XEP-0363) with slixmpp's xep_0363 (run by
tests/interop_upload.rs).

The user finds the upload service through the server's disco#items, reads its max-file-size from
disco#info, uploads a file with `upload_file` (slot request, then an aiohttp PUT), downloads the
GET URL and compares bytes and content type; a file over max-file-size is refused (FileTooBig).

Exits 0 only if everything was observed, 1 otherwise (with what was missing).
"""

import argparse
import asyncio
import io
import logging
import sys
from pathlib import Path

import aiohttp
import slixmpp
from slixmpp.plugins.xep_0363.http_upload import FileTooBig


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cert):
        super().__init__(jid, password)
        self.ca_certs = Path(cert)
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        for p in ("xep_0030", "xep_0363"):
            self.register_plugin(p)
        self.started = asyncio.Event()
        self.failed = None
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("failed_all_auth", lambda *_: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("disconnected", lambda *_: self.fail("disconnected"))

    def fail(self, why):
        if self.failed is None and not self.started.is_set():
            self.failed = why
        self.started.set()


async def run(args):
    c = Client(f"{args.user}@localhost/up", args.password, args.cert)
    c.connect("127.0.0.1", args.port)
    await c.started.wait()
    if c.failed:
        return [f"login: {c.failed}"]
    problems = []
    data = bytes((i * 7 + i // 251) % 256 for i in range(args.size))
    up = c.plugin["xep_0363"]
    url = await up.upload_file(Path("interop file ü.png"), size=len(data), content_type="image/png",
                               input_file=io.BytesIO(data), domain="localhost", timeout=10)
    print(f"uploaded {len(data)} bytes via {up.upload_service}: {url}")
    if up.max_file_size != args.max:
        problems.append(f"max-file-size from disco#info: {up.max_file_size}, expected {args.max}")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            body = await r.read()
            if r.status != 200 or body != data:
                problems.append(f"GET {url}: {r.status}, {len(body)} bytes (identical: {body == data})")
            if r.headers.get("Content-Type") != "image/png":
                problems.append(f"GET content type {r.headers.get('Content-Type')!r}")
    try:
        big = args.max + 1
        await up.upload_file(Path("big.bin"), size=big, input_file=io.BytesIO(b""), timeout=10)
        problems.append("a file over max-file-size was accepted")
    except FileTooBig:
        print("a file over max-file-size: FileTooBig")
    c.disconnect()
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--max", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = loop.run_until_complete(asyncio.wait_for(run(args), args.timeout))
    except asyncio.TimeoutError:
        problems = [f"timed out (overall limit {args.timeout} s)"]
    except Exception as e:  # noqa: BLE001
        problems = [f"{type(e).__name__}: {e}"]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: upload_file, download, max-file-size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
