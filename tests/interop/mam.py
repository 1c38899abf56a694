#!/usr/bin/env python3
"""Message Archive Management (XEP-0313, urn:xmpp:mam:2) interop with slixmpp's xep_0313, xep_0441
and xep_0359 plugins (run by tests/interop_mam.rs; tests/interop/prosody_mam.sh runs it against
Prosody). Users u0, u1, u2 @DOMAIN:

- u0 sends COUNT chat messages to u1 (batch A); after a whole-second boundary, u1 answers and u0
  sends a few more (batch B). Both find the whole conversation in their archive (`with`), in order,
  with the right from/to; the plugin's own retrieve and forward iterator find it too.
- `start`/`end` around the boundary select exactly batch A or batch B.
- Batch A paged by 50 forwards (`after` = last) and backwards (`<before/>`, then `before` = first):
  exact pages, <first>/<last> = the page's first/last result, `complete='true'` on the last page only,
  <count> and <first index> right when present.
- The <stanza-id by='u1@DOMAIN'/> of each live message equals its <result id> in u1's archive.
- u2 sets default 'never': u0's messages to u2 are in u0's archive, not in u2's. u1 sets never=[u2]:
  u2's messages are not in u1's archive.
- Errors: u0 querying u1's archive gets an error (XEP-0313 §8.1: SHOULD be forbidden); unknown
  `after`/`before` ids give item-not-found (MUST).

Where XEP-0313 leaves the answer open, the default accepts any conforming one and `--strict` asserts
petrel's choices: <forbidden/> for another's archive, <bad-request/> for a malformed 'start',
a page over the limit cut to the limit (XEP-0313 §4.3.1), <count/> and delay stamps on results, no stanza-id for
a message that was not archived. (slixmpp 1.10 cannot represent <policy-violation/>, an RFC 6120
condition: its IQ future never resolves; mamlib.query reads that error from the wire instead.)

Exits 0 only if everything was observed, 1 otherwise (with what was missing), within TIMEOUT s.
"""

import asyncio
import math
import sys
import time
from datetime import datetime, timezone

from muclib import common_args, logout, run_main
from mamlib import SID, login, prefs_get, prefs_set, query, leaked_results, send_and_wait, stanza_ids

PAGE = 50


def stamp(epoch):
    """A XEP-0082 DateTime (whole seconds, UTC) for a Unix time."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_list(problems, what, ans, expected):
    """The answer is a result whose bodies are exactly `expected`, in order."""
    if ans.error or ans.bodies() != expected:
        want = expected if len(expected) <= 6 else expected[:3] + ["…"] + expected[-3:]
        problems.append(f"{what}: expected {len(expected)} results {want}; got {ans.summary()}")
        return False
    return True


def check_page(problems, what, ans, expected, index, total, last_page, strict):
    """One RSM page: exact bodies, <first>/<last> naming its first/last result, complete on the last
    page only (XEP-0313 §4.3.2), <count> and <first index> right when present (required in strict)."""
    if not check_list(problems, what, ans, expected):
        return False
    ok = True
    if ans.first != ans.items[0].id or ans.last != ans.items[-1].id:
        problems.append(f"{what}: <first>/<last> should be {ans.items[0].id}/{ans.items[-1].id}; "
                        f"got {ans.first}/{ans.last}")
        ok = False
    if last_page and ans.complete not in ("true", "1"):
        problems.append(f"{what}: last page lacks <fin complete='true'/>: {ans.summary()}")
        ok = False
    if not last_page and ans.complete in ("true", "1"):
        problems.append(f"{what}: page before the end says complete: {ans.summary()}")
        ok = False
    if ans.count is not None and ans.count != str(total):
        problems.append(f"{what}: <count> {ans.count}, expected {total}")
        ok = False
    if strict and ans.count is None:
        problems.append(f"{what}: no <count> (strict)")
        ok = False
    if ans.first_index is not None and ans.first_index != str(index):
        problems.append(f"{what}: <first index> {ans.first_index}, expected {index}")
        ok = False
    return ok


def check_parties(problems, what, ans, a_to_b, sender, receiver):
    """Every result's forwarded message goes sender -> receiver (bare) for bodies in a_to_b, and
    receiver -> sender otherwise; a delay stamp is required in strict mode (SHOULD)."""
    for it in ans.items:
        want = (sender, receiver) if it.body in a_to_b else (receiver, sender)
        got = (it.frm.split("/")[0], it.to.split("/")[0])
        if got != want:
            problems.append(f"{what}: result {it.id} ({it.body}) is {got[0]} -> {got[1]}, "
                            f"expected {want[0]} -> {want[1]}")
            return


async def conversation(a, b, args, problems):
    """Batches A and B; returns (batch A bodies, batch B bodies, the boundary epoch second)."""
    batch_a = [f"mam {i:03d}" for i in range(args.count)]
    await send_and_wait(a, b, batch_a, problems, "batch A")
    # A whole second strictly between the batches, so that `end`/`start` cut them cleanly even
    # where the server keeps whole-second timestamps.
    boundary = math.ceil(time.time()) + 1
    await asyncio.sleep(max(0.0, boundary + 0.2 - time.time()))
    batch_b = []
    for i in range(3):
        await send_and_wait(b, a, [f"reply {i}"], problems, "batch B")
        batch_b.append(f"reply {i}")
        if i < 2:
            await send_and_wait(a, b, [f"late {i}"], problems, "batch B")
            batch_b.append(f"late {i}")
    return batch_a, batch_b, boundary


async def archives(a, b, batch_a, batch_b, boundary, args, problems):
    """Both sides' archives, the plugin's own query paths, time ranges, stanza ids."""
    everything = batch_a + batch_b
    from_a = set(batch_a) | {x for x in batch_b if x.startswith("late")}
    for owner, peer in ((a, b), (b, a)):
        ans = await query(owner, with_jid=peer.bare(), rsm={"max": 250})
        what = f"{owner.bare()} archive with {peer.bare()}"
        if check_list(problems, what, ans, everything):
            check_parties(problems, what, ans, from_a, a.bare(), b.bare())
            if ans.complete not in ("true", "1"):
                problems.append(f"{what}: whole result without complete='true': {ans.summary()}")
            if len(set(ans.ids())) != len(ans.items):
                problems.append(f"{what}: archive ids are not unique")
            if args.strict and any(not it.stamp for it in ans.items):
                problems.append(f"{what}: results without a <delay stamp/> (strict)")
        print(f"archive {what}: {ans.summary()}")

    # The plugin's own API: retrieve (one page) and its forward iterator (pages of PAGE).
    mam = a.plugin["xep_0313"]
    res = await mam.retrieve(with_jid=b.boundjid.bare, rsm={"max": 250}, timeout=15)
    got = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in res["mam"]["results"]]
    if got != everything:
        problems.append(f"plugin retrieve: expected {len(everything)} bodies, got {len(got)}: "
                        f"{got[:3]}…{got[-3:]}")
    got = [m["mam_result"]["forwarded"]["stanza"]["body"] async for m in
           mam.iterate(with_jid=b.boundjid.bare, end=stamp(boundary - 1), rsm={"max": PAGE})]
    if got != batch_a:
        problems.append(f"plugin iterate (max {PAGE}, end=boundary-1): expected batch A "
                        f"({len(batch_a)}), got {len(got)}: {got[:3]}…{got[-3:]}")
    print(f"plugin retrieve/iterate: {len(everything)} and {len(got)} bodies")

    # Time ranges: the boundary second separates the batches.
    cases = [("end=boundary-1s", dict(end=stamp(boundary - 1)), batch_a),
             ("start=boundary", dict(start=stamp(boundary)), batch_b),
             ("start=boundary, end=+1h", dict(start=stamp(boundary), end=stamp(boundary + 3600)),
              batch_b),
             ("start=boundary-1h, end=boundary-1s",
              dict(start=stamp(boundary - 3600), end=stamp(boundary - 1)), batch_a),
             ("start=+1h", dict(start=stamp(boundary + 3600)), [])]
    for label, kw, expected in cases:
        ans = await query(a, with_jid=b.bare(), rsm={"max": 250}, **kw)
        check_list(problems, f"time range {label}", ans, expected)
        print(f"time range {label}: {ans.summary()}")

    # Stanza ids: each live message carries the id of its result in the recipient's archive.
    for owner, peer, sent in ((b, a, batch_a + [x for x in batch_b if x.startswith("late")]),
                              (a, b, [x for x in batch_b if x.startswith("reply")])):
        ans = await query(owner, with_jid=peer.bare(), rsm={"max": 250})
        by_body = {it.body: it.id for it in ans.items}
        bad = []
        for m in owner.live(peer.bare()):
            if m["body"] not in sent:
                continue
            mine = [i for (by, i) in stanza_ids(m) if by == owner.bare()]
            if len(mine) != 1 or mine[0] != by_body.get(m["body"]):
                bad.append(f"{m['body']}: stanza-ids {stanza_ids(m)}, archive id "
                           f"{by_body.get(m['body'])}")
        if bad:
            problems.append(f"{owner.bare()} live stanza-id by='{owner.bare()}' vs archive id "
                            f"({len(bad)} of {len(sent)} wrong): {bad[:3]}")
        print(f"stanza-id = archive id at {owner.bare()}: {len(sent) - len(bad)} of {len(sent)}")


async def paging(a, b, batch_a, boundary, args, problems):
    """Batch A (a `with`+`end` query) paged forwards and backwards by PAGE."""
    n = len(batch_a)
    base = dict(with_jid=b.bare(), end=stamp(boundary - 1))
    after, index = None, 0
    while index < n:
        rsm = {"max": PAGE}
        if after is not None:
            rsm["after"] = after
        ans = await query(a, rsm=rsm, **base)
        chunk = batch_a[index:index + PAGE]
        what = f"forward page at {index} (after={after})"
        print(f"{what}: {ans.summary()}")
        if not check_page(problems, what, ans, chunk, index, n, index + PAGE >= n, args.strict):
            return
        after, index = ans.last, index + PAGE

    before, end = True, n
    while end > 0:
        ans = await query(a, rsm={"max": PAGE, "before": before}, **base)
        start = max(0, end - PAGE)
        what = f"backward page ending at {end} (before={'<empty>' if before is True else before})"
        print(f"{what}: {ans.summary()}")
        if not check_page(problems, what, ans, batch_a[start:end], start, n, start == 0,
                          args.strict):
            return
        before, end = ans.first, start


async def preferences(a, b, c, args, problems):
    """u2 archives nothing by default; u1 never archives u2."""
    if await prefs_set(c, "never", [], [], problems, "u2 default never") is None:
        return
    got = await prefs_get(c, problems, "u2 prefs")
    if got is not None and got[0] != "never":
        problems.append(f"u2 prefs after setting default never: {got}")
    private = [f"private {i}" for i in range(3)]
    await send_and_wait(a, c, private, problems, "u0 -> u2")
    ans = await query(c, with_jid=a.bare())
    check_list(problems, "u2 (default never) archive with u0", ans, [])
    print(f"u2 (default never) archive with u0: {ans.summary()}")
    ans = await query(a, with_jid=c.bare())
    check_list(problems, "u0 (sender) archive with u2 (default never)", ans, private)
    print(f"u0 archive with u2: {ans.summary()}")
    if args.strict:
        tagged = [m["body"] for m in c.live(a.bare())
                  if any(by == c.bare() for by, _ in stanza_ids(m))]
        if tagged:
            problems.append(f"u2 got stanza-id by='{c.bare()}' on unarchived messages: {tagged}")

    if await prefs_set(b, "always", [], [c.bare()], problems, "u1 never [u2]") is None:
        return
    got = await prefs_get(b, problems, "u1 prefs")
    if got is not None and (got[0] != "always" or got[2] != {c.bare()}):
        problems.append(f"u1 prefs after setting always/never=[u2]: {got}")
    await send_and_wait(c, b, ["unwanted 0", "unwanted 1"], problems, "u2 -> u1")
    await send_and_wait(a, b, ["control"], problems, "u0 -> u1")
    ans = await query(b, with_jid=c.bare())
    check_list(problems, "u1 archive with u2 (in u1's never list)", ans, [])
    print(f"u1 archive with u2 (never): {ans.summary()}")
    ans = await query(b, with_jid=a.bare(), rsm={"max": 1, "before": True})
    check_list(problems, "u1 archive with u0, last message (not in the never list)", ans,
               ["control"])


async def bad_input(a, b, args, problems):
    """Refused queries: the conditions XEP-0313 requires, and petrel's choices in strict mode."""
    mark = len(a.messages)
    ans = await query(a, to=b.bare())
    leaked = leaked_results(a, mark)
    if not ans.error or leaked:
        problems.append(f"u0 querying u1's archive: expected an error and no results; got "
                        f"{ans.summary()}, {len(leaked)} result messages")
    elif args.strict and ans.error != "forbidden":
        problems.append(f"u0 querying u1's archive: expected <forbidden/>; got {ans.summary()}")
    print(f"foreign archive: {ans.summary()}")

    ans = await query(a, fields={"start": "yesterday at noon"})
    want = "bad-request" if args.strict else None
    if not ans.error or (want and ans.error != want):
        problems.append(f"malformed start: expected an error{f' <{want}/>' if want else ''}; "
                        f"got {ans.summary()}")
    print(f"malformed start: {ans.summary()}")

    full = await query(a, rsm={"max": 250})
    known = set(full.ids())
    ans = await query(a, rsm={"max": 1000000000})
    if args.strict and (ans.error or len(ans.items) != len(full.items)):
        problems.append(f"max=1000000000: expected the page cut to the limit (250, or the archive); "
                        f"got {ans.summary()}")
    elif ans.error and ans.error != "policy-violation":
        problems.append(f"max=1000000000: expected <policy-violation/> or a limited page; "
                        f"got {ans.summary()}")
    elif not ans.error and ans.bodies() != full.bodies()[:len(ans.items)]:
        problems.append(f"max=1000000000: the page is not the archive's start: {ans.summary()}")
    print(f"max=1000000000: {ans.summary()}")

    real = next(iter(sorted(known)), "x")
    mutated = next(real[:-1] + ch for ch in "0123456789abcdefABCDEF" if real[:-1] + ch not in known)
    for label, rsm in (("after garbage", {"after": "no-such-id"}),
                       ("after unknown well-formed", {"after": mutated}),
                       ("before unknown well-formed", {"before": mutated})):
        ans = await query(a, rsm={"max": 10, **rsm})
        if ans.error != "item-not-found":
            problems.append(f"{label} id {rsm}: expected <item-not-found/>; got {ans.summary()}")
        print(f"{label}: {ans.summary()}")


async def disco(a, problems):
    info = await a.plugin["xep_0030"].get_info(jid=a.bare(), cached=False, timeout=10)
    features = set(info["disco_info"]["features"])
    # The account is the `by` of the stanza ids it gets: it announces them (XEP-0359 §5).
    for want in ("urn:xmpp:mam:2", SID):
        if want not in features:
            problems.append(f"disco#info of {a.bare()} lacks {want}: {sorted(features)}")


def main():
    ap = common_args(__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=120, help="messages in batch A")
    ap.add_argument("--users", default="u0,u1,u2",
                    help="sender,recipient,third user (@DOMAIN); the checks call them u0,u1,u2")
    ap.add_argument("--strict", action="store_true",
                    help="also assert petrel's answers where the XEP leaves a choice")
    args = ap.parse_args()

    async def scenario():
        problems = []
        a, b, c = [await login(args.port, args.cert, args.password, u, args.domain)
                   for u in args.users.split(",")]
        print(f"u0={a.bare()} u1={b.bare()} u2={c.bare()}")
        try:
            await disco(a, problems)
            batch_a, batch_b, boundary = await conversation(a, b, args, problems)
            await archives(a, b, batch_a, batch_b, boundary, args, problems)
            await paging(a, b, batch_a, boundary, args, problems)
            await preferences(a, b, c, args, problems)
            await bad_input(a, b, args, problems)
        finally:
            await logout([a, b, c])
        return problems

    return run_main(args, scenario, f"OK: mam with {args.count} messages")


if __name__ == "__main__":
    sys.exit(main())
