#!/usr/bin/env python3
"""make_corpus.py: write the seed corpus (tests/fuzz/corpus/) for fuzz_alloc.

Each seed is a program in fuzz_alloc's input format: a byte picks the
operation, the bytes after it its arguments.  The operation numbers are read
from fuzz_alloc.c's enum, so the seeds follow the harness when it changes.
One seed per operation (three instances set up, a few blocks of each kind,
then that operation many times over), and a few mixed programs.  Arguments
come from a fixed random seed: the same files every time.
"""
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ARG_BYTES = 12     # more than any operation reads: the rest starts the next one
REPEATS = 24       # the seed's operation, this many times
MIXED_SEEDS = 8
MIXED_OPS = 40


def operations():
    source = open(os.path.join(HERE, "fuzz_alloc.c")).read()
    body = re.search(r"enum \{\s*(OP_MALLOC.*?)OP_COUNT", source, re.S).group(1)
    return [name.strip() for name in body.split(",") if name.strip()]


def main():
    ops = operations()
    code = {name: i for i, name in enumerate(ops)}
    rng = random.Random(1)

    def call(name):
        return bytes([code[name]]) + bytes(rng.randrange(256) for _ in range(ARG_BYTES))

    def prelude():
        out = b""
        for k in range(3):  # instance k, thread-safe
            out += bytes([code["OP_INSTANCE_INIT"], k, 1])
        for name in ("OP_MALLOC", "OP_ALIGNED", "OP_CALLOC", "OP_INSTANCE_ALLOC", "OP_ARENA_ALLOC",
                     "OP_FIXED_ALLOC") * 2:
            out += call(name)
        return out

    out_dir = os.path.join(HERE, "corpus")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, name))
    for name in ops:
        seed = prelude() + b"".join(call(name) for _ in range(REPEATS))
        open(os.path.join(out_dir, "op-" + name[3:].lower()), "wb").write(seed)
    for i in range(MIXED_SEEDS):
        seed = prelude() + b"".join(call(rng.choice(ops)) for _ in range(MIXED_OPS))
        open(os.path.join(out_dir, "mixed-%d" % i), "wb").write(seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
