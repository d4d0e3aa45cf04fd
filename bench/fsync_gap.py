"""How long this machine's disk takes to flush a small write, back to back and after idle gaps.

    .venv/bin/python -m bench.fsync_gap                 # in the temp directory's file system
    .venv/bin/python -m bench.fsync_gap --dir /var/lib/postgresql

A durable commit is a write to the WAL and a flush (`fdatasync`, PostgreSQL's default on Linux)
that the commit waits for. A paid request at concurrency 1 commits once per request, with the disk
idle in between; `pg_test_fsync` measures flushes back to back. This measures both: the same 8 kB
write and flush, one after the other, then after gaps like a request's (a virtual disk may answer
a flush after a pause several times slower than one that follows another).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

BLOCK = 8192
FILE_SIZE = 16 << 20  # a WAL segment's size, written once before the measurement


def flushes(fd: int, count: int, gap_s: float) -> list[float]:
    data = b"x" * BLOCK
    out = []
    for i in range(count):
        os.pwrite(fd, data, (i * BLOCK) % FILE_SIZE)
        start = time.perf_counter()
        os.fdatasync(fd)
        out.append((time.perf_counter() - start) * 1000)
        if gap_s:
            time.sleep(gap_s)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fsync_gap", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=tempfile.gettempdir(), help="a directory on the disk to measure")
    p.add_argument("--count", type=int, default=1000, help="flushes per gap")
    p.add_argument("--gaps", default="0,0.5,1,2", help="idle gaps between flushes, in ms")
    args = p.parse_args(argv)
    fd, path = tempfile.mkstemp(dir=args.dir, prefix="fsync_gap.")
    try:
        os.write(fd, b"\0" * FILE_SIZE)
        os.fsync(fd)
        print(f"8 kB write + fdatasync in {args.dir}, {args.count} per gap")
        for gap in (float(g) for g in args.gaps.split(",")):
            ms = sorted(flushes(fd, args.count, gap / 1000))
            p90 = ms[int(len(ms) * 0.9)]
            print(f"gap {gap:.1f} ms: flush p50 {statistics.median(ms):.3f} ms, p90 {p90:.3f} ms")
    finally:
        os.close(fd)
        os.unlink(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
