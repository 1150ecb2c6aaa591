"""Storage: Part 10 files as received, atomic renames, UID checks, and failures mapped to statuses."""

from __future__ import annotations

import errno
import mmap
import os
import re
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
)

from hsscp.dimse import Status
from hsscp.part10 import read_file_meta
from hsscp.storage import (
    PEEK_LIMIT,
    TEMP_DIR_NAME,
    FsyncPolicy,
    Layout,
    Storage,
    StoreOutcome,
    StoreRequest,
)
from hsscp.storage.local import host_tag
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

from .test_dataset_peek import encode

STUDY = "1.2.826.0.1.3680043.2.1125.1"
SERIES = "1.2.826.0.1.3680043.2.1125.1.2"
INSTANCE = "1.2.826.0.1.3680043.2.1125.1.2.3"
HOSTILE_UIDS = [
    "../../etc",
    "..",
    ".",
    "1.2/3",
    "/abs",
    "/",
    "1" * 65,
    "",
    "1.2\x00.3",
    "1.2.3\n",
    " 1.2",
    "1..2",
    "1.2.",
    "01.2",
    "\u0661.2",  # an Arabic-Indic digit
]
SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
]


def make_dataset(
    instance: str = INSTANCE,
    sop_class: str = CTImageStorage,
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixel_bytes: int = 16,
    patient: str = "Doe^John",
    study: str | None = STUDY,
    series: str | None = SERIES,
) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance
    ds.PatientName = patient
    if study is not None:
        ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    ds.Rows = 1
    ds.PixelData = bytes(range(256)) * (pixel_bytes // 256) + bytes(pixel_bytes % 256)
    ds["PixelData"].VR = "OB"
    return encode(ds, transfer_syntax)


def raw_dataset(*elements: tuple[int, bytes]) -> bytes:
    """Explicit VR LE UI elements exactly as given, for values pydicom refuses to write."""
    out = b""
    for tag, value in elements:
        value += b"\0" * (len(value) % 2)
        out += struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, b"UI", len(value)) + value
    return out + struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 2) + b"\1\0"


def request(
    instance: str = INSTANCE,
    sop_class: str = CTImageStorage,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> StoreRequest:
    # Plain str: msgspec cannot encode str subclasses such as pydicom's UID.
    return StoreRequest(str(sop_class), instance, str(transfer_syntax), "MODALITY")


def tree(root: Path) -> set[str]:
    """Every file and folder below ``root``, relative to it."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def stored_parts(path: str | Path) -> tuple[Dataset, bytes]:
    """The file's meta group as pydicom reads it, and the bytes after the meta group."""
    with open(path, "rb") as fp:
        read_file_meta(fp)
        tail = fp.read()
    return dcmread(path).file_meta, tail


def assert_no_temp_files(storage: Storage) -> None:
    assert os.listdir(storage.tmp_dir) == []


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path / "out", fsync=FsyncPolicy.NONE)


@pytest.fixture
def flat(tmp_path: Path) -> Storage:
    return Storage(tmp_path / "out", layout=Layout.FLAT, fsync=FsyncPolicy.NONE)


def spool(storage: Storage, req: StoreRequest, dataset: bytes) -> Path:
    """A spool file as an association worker leaves it: the meta group, then the data set."""
    path = storage.temp_path("w1")
    path.write_bytes(storage.meta_for(req) + dataset)
    return path


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("transfer_syntax", SYNTAXES)
@pytest.mark.parametrize("layout", list(Layout))
def test_round_trip(tmp_path: Path, layout: Layout, transfer_syntax: str) -> None:
    store = Storage(tmp_path / "out", layout=layout, fsync=FsyncPolicy.NONE)
    dataset = make_dataset(transfer_syntax=transfer_syntax)
    outcome = store.store_buffer(request(transfer_syntax=transfer_syntax), memoryview(dataset))

    expected = tmp_path / "out" / f"{INSTANCE}.dcm"
    if layout is Layout.STUDY:
        expected = tmp_path / "out" / STUDY / SERIES / f"{INSTANCE}.dcm"
    assert outcome == StoreOutcome(Status.SUCCESS, str(expected), "", expected.stat().st_size)
    meta, tail = stored_parts(expected)
    assert tail == dataset
    meta_length = expected.stat().st_size - len(dataset)
    assert meta.FileMetaInformationGroupLength == meta_length - 132 - 12
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.MediaStorageSOPInstanceUID == INSTANCE
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == "MODALITY"
    assert dcmread(expected).SOPInstanceUID == INSTANCE
    assert_no_temp_files(store)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "JPEG2000.dcm",
    ],
)
def test_real_files_are_stored_bit_for_bit(storage: Storage, name: str) -> None:
    with open(get_testdata_file(name), "rb") as fp:
        meta = read_file_meta(fp)
        dataset = fp.read()
    req = StoreRequest(meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax, "SCU")
    outcome = storage.store_buffer(req, memoryview(dataset))
    assert outcome.status == Status.SUCCESS, outcome.error_comment
    original = dcmread(get_testdata_file(name))
    assert Path(outcome.path).relative_to(storage.out_dir).parts == (
        original.StudyInstanceUID,
        original.SeriesInstanceUID,
        f"{meta.sop_instance_uid}.dcm",
    )
    assert stored_parts(outcome.path)[1] == dataset


def test_study_layout_keeps_series_together(storage: Storage) -> None:
    for number in range(3):
        uid = f"{INSTANCE}.{number}"
        assert storage.store_buffer(request(uid), memoryview(make_dataset(uid))).status == 0
    assert sorted(os.listdir(storage.out_dir / STUDY / SERIES)) == [
        f"{INSTANCE}.{number}.dcm" for number in range(3)
    ]


def test_a_second_store_replaces_the_first(storage: Storage) -> None:
    first = make_dataset(patient="First")
    second = make_dataset(patient="Second^Longer^Name")
    path = storage.store_buffer(request(), memoryview(first)).path
    assert storage.store_buffer(request(), memoryview(second)).path == path
    assert stored_parts(path)[1] == second
    assert os.listdir(Path(path).parent) == [f"{INSTANCE}.dcm"]
    assert_no_temp_files(storage)


def test_concurrent_stores_of_one_instance_leave_one_complete_file(storage: Storage) -> None:
    candidates = [make_dataset(patient=f"Patient^{n}", pixel_bytes=1000 * n) for n in range(8)]
    errors: list[BaseException] = []

    def store(dataset: bytes) -> None:
        try:
            for _ in range(10):
                assert storage.store_buffer(request(), memoryview(dataset)).status == 0
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=store, args=(dataset,)) for dataset in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    folder = storage.out_dir / STUDY / SERIES
    assert os.listdir(folder) == [f"{INSTANCE}.dcm"]
    assert stored_parts(folder / f"{INSTANCE}.dcm")[1] in candidates
    assert_no_temp_files(storage)


def test_buffer_is_written_from_shared_memory_and_can_be_released(storage: Storage) -> None:
    dataset = make_dataset(pixel_bytes=100_000)
    shared = mmap.mmap(-1, len(dataset) + 100)
    shared[100 : 100 + len(dataset)] = dataset
    view = memoryview(shared)[100 : 100 + len(dataset)]
    outcome = storage.store_buffer(request(), view)
    view.release()
    shared.close()  # raises BufferError if the store kept a view of the buffer
    assert stored_parts(outcome.path)[1] == dataset


def test_partial_writes_are_resumed(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev

    def short_writev(fd: int, buffers: list) -> int:
        return real_writev(fd, [memoryview(buffers[0])[:777]])

    monkeypatch.setattr(os, "writev", short_writev)
    dataset = make_dataset(pixel_bytes=50_000)
    outcome = storage.store_buffer(request(), memoryview(dataset))
    assert stored_parts(outcome.path)[1] == dataset


# -- spooled data sets ------------------------------------------------------------------------


def test_spooled_round_trip(storage: Storage) -> None:
    dataset = make_dataset(pixel_bytes=200_000)
    path = spool(storage, request(), dataset)
    outcome = storage.store_spooled(request(), path, memoryview(dataset)[:65536])
    assert outcome.status == Status.SUCCESS
    assert outcome.bytes_written == len(storage.meta_for(request())) + len(dataset)
    assert stored_parts(outcome.path)[1] == dataset
    assert not path.exists()
    assert_no_temp_files(storage)


def test_spooled_small_data_set_is_read_whole(storage: Storage) -> None:
    dataset = make_dataset(study=None)
    path = spool(storage, request(), dataset)
    outcome = storage.store_spooled(request(), path, memoryview(dataset))
    assert outcome.status == Status.CANNOT_UNDERSTAND
    assert outcome.error_comment == "data set lacks Study Instance UID"
    assert not path.exists()


def test_spooled_head_too_short_to_decide(storage: Storage) -> None:
    dataset = make_dataset(pixel_bytes=10_000)
    path = spool(storage, request(), dataset)
    outcome = storage.store_spooled(request(), path, memoryview(dataset)[:40])
    assert outcome.status == Status.CANNOT_UNDERSTAND
    assert "not found in the first 40 bytes" in outcome.error_comment
    assert not path.exists()


def test_spooled_mismatch_removes_the_spool(storage: Storage) -> None:
    dataset = make_dataset()
    req = request(instance=INSTANCE + ".9")
    path = spool(storage, req, dataset)
    assert storage.store_spooled(req, path, memoryview(dataset)).status == 0xA900
    assert not path.exists()
    assert tree(storage.out_dir) == {TEMP_DIR_NAME}


def test_spool_outside_the_temporary_folder_is_left_alone(storage: Storage, tmp_path: Path) -> None:
    victim = tmp_path / "victim.part"
    victim.write_bytes(b"precious")
    for path in (victim, storage.tmp_dir / ".." / ".." / "victim.part"):
        outcome = storage.store_spooled(request(), path, memoryview(b""))
        assert outcome.status == Status.PROCESSING_FAILURE
    assert victim.read_bytes() == b"precious"


# -- hostile UIDs --------------------------------------------------------------------------


@pytest.mark.parametrize("uid", HOSTILE_UIDS)
@pytest.mark.parametrize("layout", list(Layout))
def test_hostile_instance_uid_names_nothing(tmp_path: Path, layout: Layout, uid: str) -> None:
    store = Storage(tmp_path / "out", layout=layout, fsync=FsyncPolicy.NONE)
    before = tree(tmp_path)
    dataset = raw_dataset(
        (0x00080016, CTImageStorage.encode()),
        (0x00080018, uid.encode("utf-8")),
        (0x0020000D, STUDY.encode()),
        (0x0020000E, SERIES.encode()),
    )
    req = StoreRequest(CTImageStorage, uid, ExplicitVRLittleEndian, "SCU")
    outcome = store.store_buffer(req, memoryview(dataset))
    assert outcome.status == Status.CANNOT_UNDERSTAND
    assert outcome.error_comment == "invalid SOP Instance UID in the request"
    path = spool(store, StoreRequest(CTImageStorage, INSTANCE, ExplicitVRLittleEndian), dataset)
    assert store.store_spooled(req, path, memoryview(dataset)).status == Status.CANNOT_UNDERSTAND
    assert tree(tmp_path) == before


@pytest.mark.parametrize("uid", HOSTILE_UIDS)
@pytest.mark.parametrize("tag", [0x0020000D, 0x0020000E])
def test_hostile_study_or_series_uid_in_the_data_set(
    storage: Storage, tmp_path: Path, tag: int, uid: str
) -> None:
    before = tree(tmp_path)
    values = {0x0020000D: STUDY.encode(), 0x0020000E: SERIES.encode(), tag: uid.encode("utf-8")}
    dataset = raw_dataset(
        (0x00080016, CTImageStorage.encode()), (0x00080018, INSTANCE.encode()), *values.items()
    )
    outcome = storage.store_buffer(request(), memoryview(dataset))
    name = "Study" if tag == 0x0020000D else "Series"
    assert outcome == StoreOutcome(
        Status.CANNOT_UNDERSTAND, error_comment=f"invalid {name} Instance UID in the data set"
    )
    assert tree(tmp_path) == before


@pytest.mark.parametrize("field", ["sop_class_uid", "transfer_syntax"])
def test_other_request_uids_are_checked(storage: Storage, field: str) -> None:
    for uid in HOSTILE_UIDS:
        req = msgspec.structs.replace(request(), **{field: uid})
        outcome = storage.store_buffer(req, memoryview(make_dataset()))
        assert outcome.status == Status.CANNOT_UNDERSTAND
    assert_no_temp_files(storage)


def test_hostile_source_ae_title(storage: Storage) -> None:
    req = msgspec.structs.replace(request(), source_ae_title="A\u00e9\\B\n")
    outcome = storage.store_buffer(req, memoryview(make_dataset()))
    assert outcome == StoreOutcome(
        Status.PROCESSING_FAILURE, error_comment="invalid source AE title"
    )


# -- data sets that do not match ----------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "comment"),
    [
        (request(instance=INSTANCE + ".1"), "SOP Instance UID differs from the request"),
        (request(sop_class=MRImageStorage), "SOP Class UID differs from the request"),
    ],
)
def test_data_set_not_matching_the_request(
    storage: Storage, req: StoreRequest, comment: str
) -> None:
    outcome = storage.store_buffer(req, memoryview(make_dataset()))
    assert outcome == StoreOutcome(Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, error_comment=comment)
    assert tree(storage.out_dir) == {TEMP_DIR_NAME}


def test_data_set_without_its_instance_uid(storage: Storage) -> None:
    dataset = raw_dataset((0x00080016, CTImageStorage.encode()))
    outcome = storage.store_buffer(request(), memoryview(dataset))
    assert outcome == StoreOutcome(0xA900, error_comment="data set lacks SOP Instance UID")


@pytest.mark.parametrize("missing", ["study", "series"])
def test_missing_study_uids_matter_only_in_the_study_layout(
    storage: Storage, flat: Storage, missing: str
) -> None:
    dataset = make_dataset(**{missing: None})
    outcome = storage.store_buffer(request(), memoryview(dataset))
    assert outcome.status == Status.CANNOT_UNDERSTAND
    assert outcome.error_comment == f"data set lacks {missing.title()} Instance UID"
    assert flat.store_buffer(request(), memoryview(dataset)).status == Status.SUCCESS


def test_unreadable_data_set(storage: Storage) -> None:
    outcome = storage.store_buffer(request(), memoryview(b"\x08\x00\x05\x00ZZ\x02\x00ab"))
    assert outcome.status == Status.CANNOT_UNDERSTAND
    assert outcome.error_comment == "(0008,0005) at offset 0 has an unknown VR b'ZZ'"
    assert len(outcome.error_comment) <= 64


def test_uids_past_the_peek_limit_are_not_searched(storage: Storage) -> None:
    padding = struct.pack("<HH2sHI", 0x0008, 0x0006, b"OB", 0, PEEK_LIMIT)
    dataset = padding + bytes(PEEK_LIMIT) + make_dataset()
    outcome = storage.store_buffer(request(), memoryview(dataset))
    assert outcome.status == Status.CANNOT_UNDERSTAND
    assert f"not found in the first {PEEK_LIMIT} bytes" in outcome.error_comment


# -- file system failures -----------------------------------------------------------------


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point))
    if mounted.returncode != 0:
        pytest.fail(
            f"mounting a tmpfs failed ({mounted.stderr.strip()}): the file system tests need root"
        )
    try:
        yield mount_point
    finally:
        if run("umount", str(mount_point)).returncode != 0:
            run("umount", "-l", str(mount_point))


def test_disk_full_is_out_of_resources(tiny_fs: Path) -> None:
    storage = Storage(tiny_fs, fsync=FsyncPolicy.FILE)
    big = make_dataset(pixel_bytes=1024 * 1024)
    outcome = storage.store_buffer(request(), memoryview(big))
    assert outcome == StoreOutcome(
        Status.OUT_OF_RESOURCES, error_comment="out of resources: ENOSPC"
    )
    assert tree(tiny_fs) == {TEMP_DIR_NAME}
    small = make_dataset()
    outcome = storage.store_buffer(request(), memoryview(small))
    assert outcome.status == Status.SUCCESS
    assert stored_parts(outcome.path)[1] == small
    assert_no_temp_files(storage)


def test_read_only_file_system_is_a_processing_failure(tiny_fs: Path) -> None:
    storage = Storage(tiny_fs, fsync=FsyncPolicy.FILE)
    remounted = run("mount", "-o", "remount,ro", str(tiny_fs))
    assert remounted.returncode == 0, remounted.stderr
    outcome = storage.store_buffer(request(), memoryview(make_dataset()))
    assert outcome == StoreOutcome(
        Status.PROCESSING_FAILURE, error_comment="cannot store the file: EROFS"
    )
    assert tree(tiny_fs) == {TEMP_DIR_NAME}


@pytest.mark.parametrize(
    ("function", "code", "status"),
    [
        ("open", errno.EMFILE, Status.OUT_OF_RESOURCES),
        ("open", errno.ENFILE, Status.OUT_OF_RESOURCES),
        ("writev", errno.EDQUOT, Status.OUT_OF_RESOURCES),
        ("writev", errno.ENOMEM, Status.OUT_OF_RESOURCES),
        ("fsync", errno.EIO, Status.PROCESSING_FAILURE),
        ("link", errno.EACCES, Status.PROCESSING_FAILURE),  # the move into place
        ("mkdir", errno.EACCES, Status.PROCESSING_FAILURE),
    ],
)
def test_os_errors_map_to_statuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str, code: int, status: Status
) -> None:
    storage = Storage(tmp_path / "out", fsync=FsyncPolicy.FILE)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(tmp_path / "secret"))

    monkeypatch.setattr(os, function, fail)
    outcome = storage.store_buffer(request(), memoryview(make_dataset()))
    monkeypatch.undo()
    name = errno.errorcode[code]
    assert outcome.status == status
    assert outcome.error_comment.endswith(name) and "secret" not in outcome.error_comment
    assert tree(storage.out_dir) <= {TEMP_DIR_NAME, STUDY, os.path.join(STUDY, SERIES)}
    assert_no_temp_files(storage)


def test_spooled_rename_failure_removes_the_spool(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = make_dataset()
    path = spool(storage, request(), dataset)

    def fail(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", fail)  # the move into place
    outcome = storage.store_spooled(request(), path, memoryview(dataset))
    assert outcome.status == Status.OUT_OF_RESOURCES
    assert not path.exists()


# -- fsync policies -----------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


@pytest.mark.parametrize(
    ("policy", "first", "again"),
    [(FsyncPolicy.NONE, 0, 0), (FsyncPolicy.FILE, 1, 1), (FsyncPolicy.FILE_AND_DIR, 4, 2)],
)
def test_fsync_policies(
    tmp_path: Path, fsyncs: list[int], policy: FsyncPolicy, first: int, again: int
) -> None:
    storage = Storage(tmp_path / "out", fsync=policy)
    dataset = make_dataset()
    storage.store_buffer(request(), memoryview(dataset))
    # file+dir, first of its study: the file, its folder, and the two new folders' parents
    assert len(fsyncs) == first
    fsyncs.clear()
    # Another instance of the series (the same bytes again would leave the file as it is).
    other = INSTANCE + ".2"
    path = spool(storage, request(other), make_dataset(other))
    assert storage.store_spooled(request(other), path, memoryview(make_dataset(other))).status == 0
    assert len(fsyncs) == again


def test_policies_are_strings_too(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "out", layout="flat", fsync="file+dir")
    assert (storage.layout, storage.fsync) == (Layout.FLAT, FsyncPolicy.FILE_AND_DIR)
    with pytest.raises(ValueError):
        Storage(tmp_path / "out", fsync="always")


# -- temporary files ----------------------------------------------------------------------


def test_temp_paths_are_unique_and_name_their_owner(storage: Storage) -> None:
    paths = [storage.temp_path("w1") for _ in range(100)]
    assert len(set(paths)) == 100
    for path in paths:
        assert path.parent == storage.tmp_dir
        assert re.fullmatch(rf"w1\.{re.escape(host_tag())}\.{os.getpid()}\.\d+\.[0-9a-f]{{8}}\.part", path.name)
    for tag in ("", "a/b", "..", "a.b", "x" * 33):
        with pytest.raises(ValueError):
            storage.temp_path(tag)


def test_remove_temp_files(storage: Storage) -> None:
    mine = [storage.temp_path("w1") for _ in range(3)]
    host = host_tag()
    dead = [storage.tmp_dir / f"w2.{host}.{pid}.0.0badf00d.part" for pid in (999_991, 999_992)]
    of_an_earlier_version = storage.tmp_dir / "w2.999993.0.0badf00d.part"
    alive = storage.tmp_dir / f"w2.{host}.1.0.0badf00d.part"  # pid 1 runs: another SCP here may own it
    of_another_node = storage.tmp_dir / f"w2.{host}x.999994.0.0badf00d.part"
    keep = storage.tmp_dir / "notes.txt"
    for path in [*mine, *dead, of_an_earlier_version, alive, of_another_node, keep]:
        path.write_bytes(b"x")
    assert storage.remove_temp_files(999_991) == 1
    assert storage.remove_temp_files(os.getpid()) == 3
    assert storage.remove_temp_files() == 2  # the other dead pid's, and the earlier version's
    assert sorted(os.listdir(storage.tmp_dir)) == sorted([alive.name, of_another_node.name, "notes.txt"])


def test_messages_travel_between_processes() -> None:
    req = StoreRequest(
        str(CTImageStorage), INSTANCE, str(ExplicitVRLittleEndian), "SCU", "/tmp/x.part"
    )
    outcome = StoreOutcome(Status.OUT_OF_RESOURCES, "", "out of resources: ENOSPC", 0)
    for message in (req, outcome, request()):
        encoded = msgspec.msgpack.encode(message)
        assert msgspec.msgpack.decode(encoded, type=type(message)) == message
    # array_like: the fields in order, the duplicate case last
    assert msgspec.json.encode(outcome) == b'[42752,"","out of resources: ENOSPC",0,null]'
