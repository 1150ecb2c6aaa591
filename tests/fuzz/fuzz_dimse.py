"""Atheris target: DIMSE command sets, whole and reassembled from PDV fragments.

Run through ``make fuzz`` (tests/fuzz/run.py), or by hand:
``python tests/fuzz/fuzz_dimse.py CORPUS_DIR tests/fuzz/corpus/dimse -max_total_time=60``.
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["hsscp", "tests.fuzz.common"]):
    from tests.fuzz.common import dimse_input


def main() -> None:
    atheris.Setup(sys.argv, dimse_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
