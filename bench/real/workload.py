"""A deterministic, allocation-heavy Python workload for bench/real/python.sh.

Models the everyday work of Python programs: dictionaries of counters and
records, lists of tuples sorted by key, string building and splitting, JSON
encoding and decoding, and short-lived object graphs.  Under the default
pymalloc most small objects never reach malloc (pymalloc takes 256 KiB
arenas from it); with PYTHONMALLOC=malloc every object is a malloc call,
which makes this one of the most malloc-intensive real programs there is.

usage: workload.py [scale]      (scale multiplies the rounds; default 1)

stdout: one line "python-workload scale=S rounds=R words=W checksum=..."
that depends only on the scale (no str hashes, no set iteration order,
no addresses, no timings).  Every phase checks its own results; a mismatch
prints a diagnostic to stderr and exits with status 1.  At the end the peak
RSS of this process goes to stderr as "vmhwm_kib=N".  When LD_PRELOAD is
set, the preloaded library must be mapped into this process, or the run
fails (a preload that silently did not apply would measure glibc).
"""

import json
import os
import sys
import zlib

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "so", "ta", "vi", "zu", "pe",
             "qua", "dri", "sto", "ple", "an", "or", "el", "is", "um", "ex"]


class Lcg:
    """A 64-bit LCG: deterministic whatever the Python version."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.state = (self.state * 6364136223846793005 +
                      1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return self.state >> 33

    def below(self, n):
        return self.next() % n


def fail(msg):
    sys.stderr.write("workload.py: " + msg + "\n")
    sys.exit(1)


def check_preload():
    lib = os.environ.get("LD_PRELOAD", "")
    if not lib:
        return
    want = os.path.realpath(lib)
    with open("/proc/self/maps") as f:
        maps = f.read()
    if want not in maps:
        fail("LD_PRELOAD=%s is not mapped into the process" % lib)


def make_words(rng, n):
    words = []
    for _ in range(n):
        k = 1 + rng.below(4)
        words.append("".join(SYLLABLES[rng.below(len(SYLLABLES))]
                             for _ in range(k)))
    return words


def phase_counts(rng, words):
    """Word counting with dicts; sort by (-count, word)."""
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    if sum(counts.values()) != len(words):
        fail("word counts do not add up")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for a, b in zip(ranked, ranked[1:]):
        if (-a[1], a[0]) > (-b[1], b[0]):
            fail("ranking not sorted")
    # bigrams: tuple keys
    pairs = {}
    for a, b in zip(words, words[1:]):
        key = (a, b)
        pairs[key] = pairs.get(key, 0) + 1
    top = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
    text = "|".join("%s:%d" % kv for kv in ranked[:200])
    text += "|" + "|".join("%s+%s:%d" % (a, b, c) for (a, b), c in top)
    return zlib.crc32(text.encode()), len(counts)


def phase_json(rng, words, n):
    """Records to JSON and back."""
    records = []
    for i in range(n):
        tags = [words[rng.below(len(words))] for _ in range(rng.below(6))]
        records.append({
            "id": i,
            "name": words[rng.below(len(words))].capitalize() + "-" + str(i),
            "score": rng.below(1000000) / 1000.0,
            "tags": tags,
            "active": rng.below(2) == 1,
            "parent": None if i == 0 else rng.below(i),
            "attrs": {"k%d" % j: rng.below(100) for j in range(rng.below(5))},
        })
    blob = json.dumps(records, sort_keys=True, separators=(",", ":"))
    back = json.loads(blob)
    if back != records:
        fail("JSON round trip changed the records")
    blob2 = json.dumps(back, indent=1, sort_keys=True)
    if json.loads(blob2) != records:
        fail("indented JSON round trip changed the records")
    by_tag = {}
    for r in back:
        for t in r["tags"]:
            by_tag.setdefault(t, []).append(r["id"])
    summary = sorted((t, len(ids), sum(ids)) for t, ids in by_tag.items())
    return zlib.crc32(blob.encode()) ^ zlib.crc32(repr(summary).encode())


def phase_strings(rng, words, n):
    """Build, split, replace, format."""
    lines = []
    for i in range(n):
        k = 3 + rng.below(12)
        parts = [words[rng.below(len(words))] for _ in range(k)]
        lines.append(f"{i:06d} " + " ".join(parts) + f" ;{k}")
    doc = "\n".join(lines)
    doc2 = doc.replace("ka", "KA").replace(" ;", "; ").upper().lower()
    split = doc2.split("\n")
    if len(split) != n:
        fail("split lost lines")
    total = 0
    for i, line in enumerate(split):
        fields = line.split()
        if fields[0] != "%06d" % i:
            fail("line %d out of order" % i)
        total += int(fields[-1]) + len(fields)
    acc = []
    for i in range(0, n, 7):
        s = split[i]
        acc.append(s[: len(s) // 2] + "<" + s[len(s) // 2:][::-1] + ">")
    joined = "".join(acc)
    return zlib.crc32(doc2.encode()) ^ zlib.crc32(joined.encode()) ^ total


def phase_sort(rng, n):
    """Sorts of ints, strings and tuples."""
    nums = [rng.next() for _ in range(n)]
    s = sorted(nums)
    for a, b in zip(s, s[1:]):
        if a > b:
            fail("int sort wrong")
    strs = ["%x" % v for v in nums[: n // 2]]
    strs.sort()
    tuples = sorted(((v % 1000, "%d" % v) for v in nums[: n // 2]),
                    reverse=True)
    crc = zlib.crc32(repr(s[:: max(1, n // 1000)]).encode())
    crc ^= zlib.crc32("".join(strs[:: max(1, n // 2000)]).encode())
    crc ^= zlib.crc32(repr(tuples[:100]).encode())
    return crc


class Node:
    __slots__ = ("key", "left", "right", "payload")

    def __init__(self, key, payload):
        self.key = key
        self.left = None
        self.right = None
        self.payload = payload


def phase_objects(rng, n):
    """A short-lived binary search tree of objects plus dict payloads."""
    root = None
    for _ in range(n):
        key = rng.below(1 << 30)
        node = Node(key, {"k": key, "s": str(key), "l": [key, key + 1]})
        if root is None:
            root = node
            continue
        cur = root
        while True:
            if key < cur.key:
                if cur.left is None:
                    cur.left = node
                    break
                cur = cur.left
            else:
                if cur.right is None:
                    cur.right = node
                    break
                cur = cur.right
    # in-order walk, iterative
    out, stack, cur = [], [], root
    while stack or cur is not None:
        while cur is not None:
            stack.append(cur)
            cur = cur.left
        cur = stack.pop()
        if cur.payload["k"] != cur.key or cur.payload["s"] != str(cur.key):
            fail("tree payload corrupted")
        out.append(cur.key)
        cur = cur.right
    if len(out) != n or any(a > b for a, b in zip(out, out[1:])):
        fail("tree walk wrong")
    return zlib.crc32(repr(out[:: max(1, n // 1000)]).encode())


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    if not scale > 0:
        fail("bad scale")
    check_preload()
    rounds = max(1, int(round(4 * scale)))
    rng = Lcg(20240611)
    crc = 0
    nwords = 0
    keep = []  # some results live across rounds, as a program's state would
    for r in range(rounds):
        words = make_words(rng, 15000)
        c, distinct = phase_counts(rng, words)
        nwords += distinct
        crc = zlib.crc32(b"%d" % c, crc)
        crc = zlib.crc32(b"%d" % phase_json(rng, words, 1500), crc)
        crc = zlib.crc32(b"%d" % phase_strings(rng, words, 3000), crc)
        crc = zlib.crc32(b"%d" % phase_sort(rng, 15000), crc)
        crc = zlib.crc32(b"%d" % phase_objects(rng, 5000), crc)
        keep.append(words[::10])
        if len(keep) > 3:
            keep.pop(0)
    print("python-workload scale=%g rounds=%d words=%d checksum=%08x"
          % (scale, rounds, nwords, crc))
    sys.stdout.flush()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                sys.stderr.write("vmhwm_kib=%d\n" % int(line.split()[1]))
                break


if __name__ == "__main__":
    main()
