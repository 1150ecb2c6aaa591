"""Deterministic benchmark data sets: the same bytes on every machine, every run.

One template data set per kind is built with pydicom; each instance is the
template with its own Study/Series/SOP Instance UIDs patched in
(:mod:`hsscp.loadgen.uidpatch`) behind a File Meta group
(:func:`hsscp.part10.build_file_meta`), so thousands of files take
moments to write. UIDs are derived from the kind and the instance number.

Kinds: ``tiny`` (a 16x16 CT, about 1.2 KB), ``ct`` (512x512 16-bit CT,
about 0.5 MB), ``multiframe`` (128 frames of 512x512 16-bit, 64 MiB) and
``mixed`` (the real files pydicom ships, in their own transfer syntaxes).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b

from hsscp.loadgen import uidpatch
from hsscp.part10 import build_file_meta, read_file_meta
from hsscp.uid import IMPLEMENTATION_CLASS_UID

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
INSTANCES_PER_SERIES = 100
SERIES_PER_STUDY = 4
# Real files for "mixed": several SOP classes, in the transfer syntaxes every sender can
# propose at once (DCMTK's storescu offers one compressed syntax per run, with a flag;
# deflated files cannot take new UIDs).
MIXED_SAMPLES = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                 "rtplan.dcm", "waveform_ecg.dcm", "reportsi.dcm", "rtdose.dcm", "liver_1frame.dcm")


def derived_uid(*parts: object) -> str:
    """A UUID-derived UID (PS3.5 B.2) that is a function of ``parts``."""
    digest = blake2b("/".join(map(str, parts)).encode(), digest_size=16).digest()
    return f"2.25.{uuid.UUID(bytes=digest, version=4).int}"


def _pattern(size: int, seed: int) -> bytes:
    """Pixel bytes that are not all one value, cheap to make."""
    block = bytes((i * 7 + seed) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def _image(sop_class: str, rows: int, columns: int, frames: int) -> tuple[str, bytes]:
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = derived_uid("template")
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.Modality = "CT" if sop_class == CT_IMAGE_STORAGE else "OT"
    ds.Manufacturer = "hsscp bench"
    ds.PatientName, ds.PatientID = "BENCH^HSSCP", "HSSCP-BENCH"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = derived_uid("study"), derived_uid("series")
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = _pattern(rows * columns * 2 * frames, rows)
    ds["PixelData"].VR = "OW"
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return EXPLICIT_VR_LE, out.getvalue()


def _sample(index: int) -> tuple[str, bytes]:
    from pydicom.data import get_testdata_file

    with open(get_testdata_file(MIXED_SAMPLES[index % len(MIXED_SAMPLES)]), "rb") as stream:
        meta = read_file_meta(stream)
        return meta.transfer_syntax, stream.read()


@dataclass(frozen=True, slots=True)
class Kind:
    description: str
    template: Callable[[int], tuple[str, bytes]]  # instance number -> (transfer syntax, data set)
    default_count: int


KINDS: dict[str, Kind] = {
    "tiny": Kind("16x16 16-bit CT, ~1.2 KB", lambda i: _image(CT_IMAGE_STORAGE, 16, 16, 1), 5000),
    "ct": Kind("512x512 16-bit CT, ~0.5 MB", lambda i: _image(CT_IMAGE_STORAGE, 512, 512, 1), 400),
    "multiframe": Kind("128 x 512x512 16-bit frames, 64 MiB", lambda i: _image(MULTIFRAME_WORD_SC, 512, 512, 128), 4),
    "mixed": Kind("pydicom's sample files, several transfer syntaxes", _sample, 400),
}


def generate(kind: str, count: int, directory: str) -> list[str]:
    """Write ``count`` instances of ``kind`` under ``directory`` (kept if already there); return their paths."""
    spec = KINDS[kind]
    os.makedirs(directory, exist_ok=True)
    templates: dict[int, tuple[str, bytes, uidpatch.PatchPlan]] = {}
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"{kind}-{i:06d}.dcm")
        paths.append(path)
        if os.path.exists(path):
            continue
        key = i % len(MIXED_SAMPLES) if kind == "mixed" else 0
        if key not in templates:
            syntax, data = spec.template(i)
            templates[key] = (syntax, data, uidpatch.plan(memoryview(data), syntax))
        syntax, data, plan = templates[key]
        series = i // INSTANCES_PER_SERIES
        new = {
            uidpatch.SOP_INSTANCE_UID: derived_uid(kind, "instance", i),
            uidpatch.SERIES_INSTANCE_UID: derived_uid(kind, "series", series),
            uidpatch.STUDY_INSTANCE_UID: derived_uid(kind, "study", series // SERIES_PER_STUDY),
        }
        sop_class = plan.original(uidpatch.SOP_CLASS_UID)
        meta = build_file_meta(sop_class, new[uidpatch.SOP_INSTANCE_UID], syntax, str(IMPLEMENTATION_CLASS_UID))
        tmp = path + ".part"
        with open(tmp, "wb") as out:
            out.write(meta)
            for chunk in uidpatch.render(plan, memoryview(data), new):
                out.write(chunk)
            out.write(memoryview(data)[plan.end :])
        os.replace(tmp, path)
    return paths
