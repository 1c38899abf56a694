#!/usr/bin/env python3
"""Live heap of a dhat profile (dhat-heap.json from a `--features dhat-heap` petrel), grouped by
the innermost petrel/glommio/rustls frame of each allocation site, divided by a count of sessions.

    python3 loadtest/dhat_summary.py dhat-heap.json 5000        # bytes live when the profile was written
    python3 loadtest/dhat_summary.py dhat-heap.json 5000 gb     # bytes live at the heap's peak

Start the server with PETREL_DHAT_AFTER=SECONDS to write the profile while the sessions are open
(docs/BENCHMARKS.md, `idle`).
"""
import collections
import json
import re
import sys

# Frames of the allocator, the standard library and generic containers say nothing of who allocated.
SKIP = re.compile(
    r"(alloc::|core::|std::|hashbrown::|dhat::|__rust|<alloc|<core|<std|<hashbrown|smallvec|"
    r"<smallvec|RawVec|raw_vec|<T as|\[root\]|mimalloc|bytes::|<bytes)"
)


def site(frames):
    """The first frame that is not allocator or container plumbing, with its file and line."""
    for f in frames:
        f = re.sub(r"^0x[0-9a-f]+: ", "", f)
        name = f.split(" (")[0]
        if SKIP.search(name[:60]):
            continue
        return name + " " + f[len(name):].strip()[-60:]
    return frames[0] if frames else "?"


def main():
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    key = sys.argv[3] if len(sys.argv) > 3 else "eb"
    d = json.load(open(path))
    ftbl = d["ftbl"]
    size, blocks = collections.Counter(), collections.Counter()
    for pp in d["pps"]:
        b = pp.get(key, 0)
        if b:
            s = site([ftbl[i] for i in pp["fs"]])
            size[s] += b
            blocks[s] += pp.get(key + "k", 0)
    print(f"total {sum(size.values())} B, {sum(size.values()) / n:.0f} B per session")
    for s, b in size.most_common(40):
        print(f"{b / n:8.0f} B {blocks[s] / n:6.2f} blocks  {s[:160]}")


if __name__ == "__main__":
    main()
