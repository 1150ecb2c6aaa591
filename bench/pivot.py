"""Turn ``hsscp bench --json`` output into the tables of bench/README.md: one row per case, one column per SCP.

    python -m bench.pivot bench.json [more.json ...]

Each cell: instances/s (ratio to DCMTK ``storescp --fork`` in the same case),
MB/s, and SCP CPU per instance. On a disk, the ``fsync-bound`` column is the
durable ceiling of the case's data set and K (no SCP, no PDU: K threads that
store and fsync the files one after another), beside every PDU's row.
"""

from __future__ import annotations

import json
import sys

REFERENCE = "dcmtk-fork"
BOUND = "fsync-bound"


def _cpu(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us >= 10_000 else f"{us:.0f} µs"


def _cell(row: dict, reference: dict | None) -> str:
    ratio = ""
    if reference and row["scp"] not in (REFERENCE, BOUND) and reference["instances_per_s"]:
        ratio = f" ({row['instances_per_s'] / reference['instances_per_s']:.2f}x)"
    rate = f"{row['instances_per_s']:.1f}" if row["instances_per_s"] < 100 else f"{row['instances_per_s']:.0f}"
    failed = "" if row["ok"] else " FAILED"
    return f"{rate}{ratio}{failed}, {row['mb_per_s']:.0f} MB/s, {_cpu(row['scp_cpu_us_per_instance'])}"


def pivot(rows: list[dict]) -> str:
    bounds = {(r["outfs"], r["dataset"], r["associations"]): r for r in rows if r["scp"] == BOUND}
    rows = [r for r in rows if r["scp"] != BOUND]
    scps = list(dict.fromkeys(r["scp"] for r in rows)) + ([BOUND] if bounds else [])
    cases: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        case = cases.setdefault((r["outfs"], r["dataset"], r["max_pdu"], r["associations"], r["sender"]), {})
        case[r["scp"]] = r
        bound = bounds.get((r["outfs"], r["dataset"], r["associations"]))
        if bound is not None:
            case[BOUND] = bound
    lines = ["| output | data set | PDU | K | " + " | ".join(scps) + " |", "|---" * (4 + len(scps)) + "|"]
    for (outfs, kind, pdu, k, _), by_scp in cases.items():
        reference = by_scp.get(REFERENCE)
        cells = [_cell(by_scp[s], reference) if s in by_scp else "" for s in scps]
        lines.append(f"| {outfs} | {kind} | {pdu // 1024} KiB | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rows = []
    for path in argv:
        with open(path) as f:
            rows += json.load(f)["rows"]
    print(pivot(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
