"""Atheris target: bytes from a peer into the PDU reader, the decoder and the association engine.

Run through ``make fuzz`` (tests/fuzz/run.py), or by hand:
``python tests/fuzz/fuzz_reader_engine.py CORPUS_DIR tests/fuzz/corpus/reader_engine -max_total_time=60``.
The first byte of an input chooses the engine's role and state and the read size.
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["hsscp", "tests.fuzz.common"]):
    from tests.fuzz.common import reader_engine_input


def main() -> None:
    atheris.Setup(sys.argv, reader_engine_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
