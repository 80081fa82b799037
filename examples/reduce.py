#!/usr/bin/env python3
"""Word count's reducer (and combiner): its input is sorted by key, so the counts of one
word come together; it writes `word<TAB>total` once per word.
"""
import sys

out = sys.stdout.buffer
current, total = None, 0
for line in sys.stdin.buffer:
    word, _, n = line.rstrip(b"\n").partition(b"\t")
    if word != current:
        if current is not None:
            out.write(current + b"\t" + str(total).encode() + b"\n")
        current, total = word, 0
    total += int(n or 1)
if current is not None:
    out.write(current + b"\t" + str(total).encode() + b"\n")
