"""Build the seed corpus of the fuzz targets from the PDUs recorded from real peers.

``python tests/fuzz/corpus.py`` (re)writes tests/fuzz/corpus/<target>/ from
tests/fixtures: whole conversations as each side received them, single
PDUs for an engine already in the state they arrive in, command sets, and
data sets in every transfer syntax the peek reads. Each input starts with
the control byte its target reads (see tests/fuzz/common.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hsscp import dimse, pdu  # noqa: E402
from tests.fuzz import common  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = Path(__file__).resolve().parent / "corpus"
MAX_SEED = 64 * 1024  # bigger inputs slow every run down; the big recordings are cut to PDUs


def _recorded() -> dict[str, list[tuple[str, bytes]]]:
    """Scenario -> [(direction, PDU bytes)] in the order they were sent."""
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())
    scenarios: dict[str, list[tuple[str, bytes]]] = {}
    for entry in sorted(manifest["fixtures"], key=lambda e: (e["scenario"], e["index"])):
        scenarios.setdefault(entry["scenario"], []).append((entry["direction"], (FIXTURES / entry["file"]).read_bytes()))
    return scenarios


def reader_engine_seeds() -> dict[str, bytes]:
    seeds = {}
    for scenario, pdus in _recorded().items():
        for direction, start in (("rq", common.START_ACCEPTOR), ("ac", common.START_REQUESTOR)):
            stream = b"".join(data for d, data in pdus if d == direction)
            if len(stream) <= MAX_SEED:
                seeds[f"{scenario}-{direction}"] = bytes([start]) + stream
                seeds[f"{scenario}-{direction}-7"] = bytes([start | 3 << 2]) + stream  # 7-byte reads
        established = {"rq": common.START_ACCEPTOR_ESTABLISHED, "ac": common.START_REQUESTOR_ESTABLISHED}
        for index, (direction, data) in enumerate(pdus):
            if data[0] != 1 and data[0] != 2 and len(data) <= MAX_SEED:
                seeds[f"{scenario}-{index:02d}"] = bytes([established[direction]]) + data
    return seeds


def _commands() -> list[bytes]:
    found = set()
    for pdus in _recorded().values():
        for _, data in pdus:
            if data[0] == pdu.PduType.P_DATA_TF:
                for pdv in pdu.decode_pdu(data).pdvs:
                    if pdv.is_command and pdv.is_last:
                        found.add(bytes(pdv.data))
    generated = [
        dimse.CEchoRQ(1), dimse.CEchoRSP(1, 0),
        dimse.CStoreRQ(7, common.CT, "1.2.3.4.5", move_originator_aet="MOVER", move_originator_message_id=3),
        dimse.CStoreRSP(7, 0xA700, common.CT, "1.2.3.4.5", error_comment="out of resources",
                        offending_element=[0x00080018], error_id=2),
    ]
    return sorted(found) + [dimse.encode_command(c) for c in generated]


def dimse_seeds() -> dict[str, bytes]:
    return {f"command-{i:02d}": bytes([0x3F]) + command for i, command in enumerate(_commands())}


def peek_seeds() -> dict[str, bytes]:
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from tests.datagen import instance

    ds = instance(7, pixel_bytes=256)
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.ReferencedImageSequence = [item, item]

    def encoded(little: bool, implicit: bool) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = little, implicit
        write_dataset(fp, ds)
        return fp.getvalue()

    explicit = encoded(True, False)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    blobs = [encoded(True, True), explicit, encoded(False, False), deflater.compress(explicit) + deflater.flush()]
    return {
        f"{name}-{tags}": bytes([index | (0x04 if tags == "study" else 0)]) + blob
        for index, (name, blob) in enumerate(zip(["implicit-le", "explicit-le", "explicit-be", "deflated"], blobs, strict=True))
        for tags in ("study", "flat")
    }


SEEDS = {"reader_engine": reader_engine_seeds, "dimse": dimse_seeds, "peek": peek_seeds}


def write(corpus: Path = CORPUS) -> dict[str, int]:
    counts = {}
    for target, make in SEEDS.items():
        folder = corpus / target
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        seeds = make()
        for name, data in seeds.items():
            (folder / f"{name}.bin").write_bytes(data)
        counts[target] = len(seeds)
    return counts


if __name__ == "__main__":
    for target, count in write().items():
        print(f"{target}: {count} seeds")
