"""Write the deterministic benchmark data sets to a folder.

    python -m bench.datasets KIND COUNT DIR     # KIND: tiny, ct, multiframe, mixed

The generator itself is :mod:`hsscp.loadgen.datasets`, which ``hsscp bench``
uses too; this is its command line for making the files by hand.
"""

from __future__ import annotations

import argparse
import sys
import time

from hsscp.loadgen.datasets import KINDS, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS), help="; ".join(f"{k}: {v.description}" for k, v in KINDS.items()))
    parser.add_argument("count", type=int, nargs="?", help="how many instances (default: the kind's benchmark count)")
    parser.add_argument("directory", nargs="?", default=".", help="where to write them (default .)")
    args = parser.parse_args(argv)
    count = args.count if args.count is not None else KINDS[args.kind].default_count
    started = time.perf_counter()
    paths = generate(args.kind, count, args.directory)
    print(f"{len(paths)} {args.kind} instances in {args.directory} ({time.perf_counter() - started:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
