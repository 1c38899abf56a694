#!/usr/bin/env python3
"""Interop check of petrel's HTTP file upload (XEP-0363) with slixmpp's xep_0363 (run by
tests/interop_upload.rs).

The user finds the upload service through the server's disco#items, reads its max-file-size from
disco#info, uploads a file with `upload_file` (slot request, then an aiohttp PUT), downloads the
GET URL and compares bytes and content type; a file over max-file-size is refused (FileTooBig).

Exits 0 only if everything was observed, 1 otherwise (with what was missing).
"""

import io
import sys
from pathlib import Path

import aiohttp
from slixmpp.plugins.xep_0363.http_upload import FileTooBig

from muclib import common_args, login, logout, run_main


async def run(args):
    c = await login(args.port, args.cert, args.password, f"alice@{args.domain}", "up")
    c.register_plugin("xep_0363")
    problems = []
    data = bytes((i * 7 + i // 251) % 256 for i in range(args.size))
    up = c.plugin["xep_0363"]
    url = await up.upload_file(Path("interop file ü.png"), size=len(data), content_type="image/png",
                               input_file=io.BytesIO(data), domain=args.domain, timeout=10)
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
        await up.upload_file(Path("big.bin"), size=args.max + 1, input_file=io.BytesIO(b""), timeout=10)
        problems.append("a file over max-file-size was accepted")
    except FileTooBig:
        print("a file over max-file-size: FileTooBig")
    await logout([c])
    return problems


def main():
    ap = common_args(__doc__)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--max", type=int, required=True)
    args = ap.parse_args()
    return run_main(args, lambda: run(args), "OK: upload_file, download, max-file-size")


if __name__ == "__main__":
    sys.exit(main())
