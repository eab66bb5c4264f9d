#!/usr/bin/env python3
"""Reads `perf script -F tid,comm,ip,sym` of a cpu-clock recording at 10 kHz and prints,
per thread, its time in µs per operation and its heaviest functions (inclusive: a function
counts every sample in which it is on the stack), given the operations done while
recording.

    perf-fold.py OPS [TOP]
"""
import collections
import sys

PERIOD_US = 100.0  # 10 kHz


def main():
    ops = float(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    per_thread = collections.Counter()
    inclusive = collections.Counter()
    names = {}
    thread, stack = None, []

    def flush():
        if thread is not None and stack:
            per_thread[thread] += 1
            for sym in set(stack):
                inclusive[(thread, sym)] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            thread, stack = None, []
        elif not line.startswith("\t"):
            flush()
            parts = line.split()
            thread, stack = parts[-1], []
            names[thread] = " ".join(parts[:-1])
        else:
            parts = line.split(None, 1)
            stack.append(parts[1].strip().split("+")[0] if len(parts) > 1 else "?")
    flush()
    us = lambda n: n * PERIOD_US / ops
    for t, n in per_thread.most_common():
        if us(n) < 0.01:
            continue
        print(f"thread {t} ({names[t]}): {us(n):.3f} µs/op")
        rows = [(s, c) for (tt, s), c in inclusive.most_common() if tt == t][:top]
        for sym, c in rows:
            print(f"  {us(c):7.3f}  {sym}")


if __name__ == "__main__":
    main()
