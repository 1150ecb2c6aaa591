"""Deterministic DICOM instances for tests: distinct UIDs, chosen sizes, written as Part 10 files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from hsscp.part10 import build_file_meta, read_file_meta

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ROOT = "1.2.826.0.1.3680043.10.543"  # a fixed test root, so reruns make the same files


def instance(index: int, pixel_bytes: int = 2048, study: int = 1, series: int = 1) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = f"{ROOT}.3.{study}.{series}.{index}"
    ds.StudyInstanceUID = f"{ROOT}.1.{study}"
    ds.SeriesInstanceUID = f"{ROOT}.2.{study}.{series}"
    ds.PatientName = f"TEST^{index}"
    ds.PatientID = f"ID{index:06d}"
    ds.Modality = "CT"
    ds.InstanceNumber = index
    side = max(1, int((pixel_bytes // 2) ** 0.5))
    ds.Rows = ds.Columns = side
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes((index + i) % 251 for i in range(side * side * 2))
    return ds


def write_instance(folder: Path, ds: Dataset) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def write_instances(folder: Path, count: int, pixel_bytes: int = 2048) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_instance(folder, instance(i, pixel_bytes)) for i in range(1, count + 1)]


def write_huge_instance(path: Path, pixel_bytes: int, index: int = 1) -> Path:
    """A valid instance whose pixel data is ``pixel_bytes`` of zeros, as a sparse file."""
    ds = instance(index, pixel_bytes=8)
    del ds.PixelData
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    header = DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, ds)
    meta = build_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian, "1.2.3")
    pixel_header = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OW", pixel_bytes)
    with open(path, "wb") as fp:
        fp.write(meta + header.getvalue() + pixel_header)
        fp.truncate(fp.tell() + pixel_bytes)
    return path


def dataset_of(path: Path | str) -> bytes:
    """The dataset bytes of a Part 10 file (what a C-STORE carries)."""
    with open(path, "rb") as fp:
        read_file_meta(fp)
        return fp.read()


def stored_files(folder: Path) -> dict[str, Path]:
    """Final stored files under ``folder`` by SOP instance UID (temporary files excluded)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(".dcm"):
                found[name[: -len(".dcm")]] = Path(root) / name
    return found


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.part")]
