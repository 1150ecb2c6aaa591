"""Run every fuzz target for a while and say how many inputs each one ran: ``make fuzz``.

Each target reads its committed seed corpus (tests/fuzz/corpus/<target>) and
keeps what it learns in build/fuzz/<target>/corpus, so later runs go on from
there; crash inputs land in build/fuzz/<target>/. Exits non-zero if any
target crashed. Needs atheris (``make fuzz`` installs it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TARGETS = {"reader_engine": "fuzz_reader_engine.py", "dimse": "fuzz_dimse.py", "peek": "fuzz_peek.py"}
MAX_LEN = 16384  # longer inputs mostly repeat what shorter ones already reach, slowly


def run(target: str, seconds: int, work: Path) -> tuple[int, bool, str]:
    """Fuzz ``target`` for ``seconds``; (inputs run, crashed, the last lines of its report)."""
    corpus = work / target / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, str(HERE / TARGETS[target]), str(corpus), str(HERE / "corpus" / target),
        f"-max_total_time={seconds}", f"-max_len={MAX_LEN}", "-timeout=10", "-rss_limit_mb=2048",
        "-print_final_stats=1", f"-artifact_prefix={work / target}/",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    report = done.stdout + done.stderr
    executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", report)
    runs = int(executed[-1]) if executed else 0
    crashed = done.returncode != 0 or "ERROR: libFuzzer" in report
    (work / target / "last-run.log").write_text(report)
    tail = "\n".join(line for line in report.splitlines()[-40:] if line.strip())
    return runs, crashed, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")),
                        help="how long each target runs (default: $FUZZ_SECONDS or 60)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "fuzz",
                        help="where learnt corpora and crash inputs go (default build/fuzz)")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"no such target: {', '.join(sorted(unknown))}")
    failed = []
    for target in args.targets or list(TARGETS):
        started = time.monotonic()
        runs, crashed, tail = run(target, args.seconds, args.work)
        took = time.monotonic() - started
        learnt = len(list((args.work / target / "corpus").iterdir()))
        verdict = "CRASHED" if crashed else "no crash"
        print(f"{target}: {runs} inputs run in {took:.0f} s, {learnt} inputs in its corpus, {verdict}", flush=True)
        if crashed:
            failed.append(target)
            print(tail, file=sys.stderr)
            print(f"  (full report: {args.work / target / 'last-run.log'})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
