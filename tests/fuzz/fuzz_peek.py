"""Atheris target: the header-only peek at a received data set's UIDs.

Run through ``make fuzz`` (tests/fuzz/run.py), or by hand:
``python tests/fuzz/fuzz_peek.py CORPUS_DIR tests/fuzz/corpus/peek -max_total_time=60``.
The first byte of an input chooses the transfer syntax and the tags looked for.
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["hsscp", "tests.fuzz.common"]):
    from tests.fuzz.common import peek_input


def main() -> None:
    atheris.Setup(sys.argv, peek_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
