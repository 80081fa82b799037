#!/usr/bin/env python3
"""Word count's mapper under the streaming contract: `word<TAB>1` for every word on stdin.

Bytes in, bytes out, so any text (UTF-8 or not) is counted as it is.
"""
import sys

out = sys.stdout.buffer
for line in sys.stdin.buffer:
    for word in line.split():
        out.write(word + b"\t1\n")
