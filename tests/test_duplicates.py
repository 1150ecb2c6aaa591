"""A SOP instance stored twice: each duplicate policy, the same bytes again, copies racing, cut copies.

At the storage level, in memory (several segments) and spooled alike, and
against the running multiprocess server with DCMTK's storescu and a raw
requestor (the server has the default policy until the setting reaches it).
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import subprocess
import threading
from pathlib import Path

import msgspec
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless

from hsscp import dimse
from hsscp.dimse import Status
from hsscp.indications import MessageReceived, ReleaseConfirmed
from hsscp.part10 import read_file_meta
from hsscp.storage import (
    DUPLICATE_SOP_INSTANCE,
    TEMP_DIR_NAME,
    DuplicatePolicy,
    FsyncPolicy,
    Storage,
    StoreOutcome,
    StoreRequest,
)
from hsscp.storage import install as install_module

from .datagen import instance, stored_files, temp_files, write_instance
from .peers import dcmtk_env, require_binary
from .raw_peers import Requestor, serving, studies
from .test_dataset_peek import encode, undefined_length
from .test_storage import (
    INSTANCE,
    SERIES,
    STUDY,
    assert_no_temp_files,
    make_dataset,
    request,
    spool,
    tree,
)

HOW = ["memory", "spooled"]
FIRST = make_dataset(patient="First", pixel_bytes=3000)
SECOND = make_dataset(patient="Second^Other", pixel_bytes=5000)
THIRD = make_dataset(patient="Third", pixel_bytes=100)


def storage_for(tmp_path: Path, policy: DuplicatePolicy | str) -> Storage:
    return Storage(tmp_path / "out", fsync=FsyncPolicy.NONE, on_duplicate=policy)


def store(storage: Storage, dataset: bytes, how: str, req: StoreRequest | None = None) -> StoreOutcome:
    """Store ``dataset`` in memory (in 1000-byte segments) or from a spool file."""
    req = req or request()
    if how == "memory":
        view = memoryview(dataset)
        return storage.store_segments(req, [view[i : i + 1000] for i in range(0, len(view), 1000)])
    path = spool(storage, req, dataset)
    outcome = storage.store_spooled(req, path, memoryview(dataset)[:64 * 1024])
    assert not path.exists()  # consumed, whatever the outcome
    return outcome


def dataset_in(path: str | Path) -> bytes:
    with open(path, "rb") as fp:
        read_file_meta(fp)
        return fp.read()


def target(storage: Storage, name: str = INSTANCE) -> Path:
    return storage.out_dir / STUDY / SERIES / f"{name}.dcm"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- each policy --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    ("policy", "status", "duplicate", "kept"),
    [
        ("overwrite", Status.SUCCESS, "overwritten", SECOND),
        ("keep", Status.SUCCESS, "kept", FIRST),
        ("rename", Status.SUCCESS, "renamed", FIRST),
        ("reject", DUPLICATE_SOP_INSTANCE, "rejected", FIRST),
    ],
)
def test_a_second_copy_by_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, policy: str, status: int, duplicate: str,
    kept: bytes,
) -> None:
    storage = storage_for(tmp_path, policy)
    first = store(storage, FIRST, how)
    assert (first.status, first.duplicate, first.path) == (Status.SUCCESS, None, str(target(storage)))
    assert warnings_of(caplog) == []

    second = store(storage, SECOND, how)
    assert (second.status, second.duplicate) == (status, duplicate)
    assert dataset_in(target(storage)) == kept
    names = {f"{INSTANCE}.dcm"}
    if policy == "rename":
        copy = target(storage, f"{INSTANCE}_1")
        assert second.path == str(copy) and dataset_in(copy) == SECOND
        names.add(copy.name)
    elif policy == "reject":
        assert second.path == "" and second.error_comment == "duplicate SOP instance"
    else:
        assert second.path == str(target(storage))
    written = len(storage.meta_for(request())) + len(SECOND)
    assert second.bytes_written == (0 if policy in ("keep", "reject") else written)
    assert set(os.listdir(target(storage).parent)) == names
    assert_no_temp_files(storage)
    (warning,) = warnings_of(caplog)
    assert INSTANCE in warning and duplicate in warning


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("policy", list(DuplicatePolicy))
def test_the_same_bytes_again_leave_the_file_untouched_whatever_the_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, policy: DuplicatePolicy
) -> None:
    storage = storage_for(tmp_path, policy)
    first = store(storage, FIRST, how)
    before = os.stat(first.path)
    # From another AE: only the data set and its transfer syntax make "the same bytes".
    again = store(storage, FIRST, how, StoreRequest(CTImageStorage, INSTANCE, ExplicitVRLittleEndian, "OTHER"))
    assert again == StoreOutcome(Status.SUCCESS, first.path, duplicate="identical")
    after = os.stat(first.path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert os.listdir(target(storage).parent) == [f"{INSTANCE}.dcm"]
    assert_no_temp_files(storage)
    assert warnings_of(caplog) == []


def test_rename_numbers_the_copies_and_knows_each_again(tmp_path: Path) -> None:
    storage = storage_for(tmp_path, "rename")
    paths = [store(storage, dataset, "memory").path for dataset in (FIRST, SECOND, THIRD)]
    assert paths == [str(target(storage, name)) for name in (INSTANCE, f"{INSTANCE}_1", f"{INSTANCE}_2")]
    for dataset, path in zip((FIRST, SECOND, THIRD), paths, strict=True):
        assert store(storage, dataset, "spooled") == StoreOutcome(Status.SUCCESS, path, duplicate="identical")
        assert dataset_in(path) == dataset
    assert len(os.listdir(target(storage).parent)) == 3


def test_rename_gives_up_past_its_limit_with_a_processing_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(install_module, "MAX_COPIES", 2)
    storage = storage_for(tmp_path, "rename")
    for dataset in (FIRST, SECOND, THIRD):
        assert store(storage, dataset, "memory").status == Status.SUCCESS
    refused = store(storage, make_dataset(patient="Fourth"), "memory")
    assert (refused.status, refused.error_comment) == (Status.PROCESSING_FAILURE, "cannot store the file: EEXIST")
    assert len(os.listdir(target(storage).parent)) == 3
    assert_no_temp_files(storage)


def test_the_same_size_with_other_bytes_is_a_duplicate(tmp_path: Path) -> None:
    storage = storage_for(tmp_path, "overwrite")
    store(storage, FIRST, "memory")
    changed = bytearray(FIRST)
    changed[-1] ^= 0xFF  # the last pixel byte
    assert store(storage, bytes(changed), "spooled").duplicate == "overwritten"
    assert dataset_in(target(storage)) == bytes(changed)


def test_the_same_bytes_in_another_transfer_syntax_are_a_duplicate(tmp_path: Path) -> None:
    storage = storage_for(tmp_path, "keep")
    store(storage, FIRST, "memory")
    other = StoreRequest(CTImageStorage, INSTANCE, JPEG2000Lossless, "MODALITY")
    assert store(storage, FIRST, "memory", other).duplicate == "kept"


def test_a_stored_file_that_is_not_part_10_is_not_the_same(tmp_path: Path) -> None:
    storage = storage_for(tmp_path, "overwrite")
    store(storage, FIRST, "memory")
    target(storage).write_bytes(b"not a DICOM file")
    assert store(storage, FIRST, "memory").duplicate == "overwritten"
    assert dataset_in(target(storage)) == FIRST


def test_policies_are_checked(tmp_path: Path) -> None:
    assert storage_for(tmp_path, "keep").on_duplicate is DuplicatePolicy.KEEP
    with pytest.raises(ValueError):
        storage_for(tmp_path, "ignore")


def test_a_rejected_duplicate_travels_between_processes() -> None:
    outcome = StoreOutcome(DUPLICATE_SOP_INSTANCE, error_comment="duplicate SOP instance", duplicate="rejected")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(outcome), type=StoreOutcome) == outcome


@pytest.mark.parametrize("policy", ["overwrite", "keep"])
def test_without_hard_links_a_check_before_the_rename_stands_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    storage = storage_for(tmp_path, policy)
    assert store(storage, FIRST, "memory").duplicate is None
    assert store(storage, FIRST, "spooled").duplicate == "identical"
    assert store(storage, SECOND, "memory").duplicate == ("overwritten" if policy == "overwrite" else "kept")
    assert dataset_in(target(storage)) == (SECOND if policy == "overwrite" else FIRST)
    assert_no_temp_files(storage)
    assert sum("no hard links" in message for message in warnings_of(caplog)) == 1


# -- cut data sets ------------------------------------------------------------------------------


def with_content_sequence(instance: str = INSTANCE) -> bytes:
    """A data set with an undefined-length sequence after the UIDs, before its pixel data."""
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "a finding " * 20
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.ContentSequence = undefined_length([item])
    ds["ContentSequence"].is_undefined_length = True
    ds.PixelData = bytes(4000)
    ds["PixelData"].VR = "OB"
    return encode(ds, ExplicitVRLittleEndian)


GOOD = with_content_sequence()
SEQUENCE_AT = GOOD.index(b"\x40\x00\x30\xa7")  # (0040,A730) Content Sequence
ITEM_AT = SEQUENCE_AT + 12
ITEM_END_AT = GOOD.index(b"\xfe\xff\x0d\xe0")
TEXT_AT = GOOD.index(b"\x40\x00\x60\xa1")  # (0040,A160) Text Value, in the item
PIXELS_AT = GOOD.index(b"\xe0\x7f\x10\x00")
CUTS = {
    "in the pixel data": (GOOD[:-1000], f"(7FE0,0010) at offset {PIXELS_AT} runs past the end of the data"),
    "in a sequence": (GOOD[:ITEM_END_AT], f"item at offset {ITEM_AT}: no item delimiter"),
    "in a value in a sequence": (GOOD[: TEXT_AT + 20], f"(0040,A160) at offset {TEXT_AT} runs past the end of the data"),
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("policy", list(DuplicatePolicy))
@pytest.mark.parametrize("where", CUTS)
def test_a_cut_copy_is_refused_and_the_good_copy_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, policy: DuplicatePolicy, where: str
) -> None:
    storage = storage_for(tmp_path, policy)
    cut, message = CUTS[where]
    first = store(storage, GOOD, how)
    assert first.status == Status.SUCCESS
    before = os.stat(first.path)
    refused = store(storage, cut, how)
    assert refused == StoreOutcome(Status.CANNOT_UNDERSTAND, error_comment=message)
    after = os.stat(first.path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert dataset_in(first.path) == GOOD
    assert os.listdir(target(storage).parent) == [f"{INSTANCE}.dcm"]
    assert_no_temp_files(storage)
    assert any(INSTANCE in w and message in w for w in warnings_of(caplog))


@pytest.mark.parametrize("how", HOW)
def test_a_cut_first_copy_is_stored_nowhere(tmp_path: Path, how: str) -> None:
    storage = storage_for(tmp_path, "overwrite")
    assert store(storage, CUTS["in the pixel data"][0], how).status == Status.CANNOT_UNDERSTAND
    assert tree(storage.out_dir) == {TEMP_DIR_NAME}


# -- copies racing in two processes -------------------------------------------------------------

ROUNDS = 40


def copy_of(which: int, instance: str) -> bytes:
    return make_dataset(instance, patient=f"Copy^{which}", pixel_bytes=20_000 + 1000 * which)


def race(out: Path, policy: str, which: int, same_bytes: bool, fresh: bool, barrier, results) -> None:
    """One racer: each round, wait for the other, then store its copy."""
    storage = Storage(out, fsync=FsyncPolicy.NONE, on_duplicate=policy)
    for number in range(ROUNDS):
        instance = f"{INSTANCE}.{number}" if fresh else INSTANCE
        dataset = copy_of(0 if same_bytes else which, instance)
        barrier.wait(timeout=30)
        outcome = storage.store_buffer(request(instance), memoryview(dataset))
        results.put((number, outcome.status, outcome.duplicate, outcome.path))


def run_race(out: Path, policy: str, same_bytes: bool = False, fresh: bool = True) -> dict[int, list]:
    """Two processes store copies of one SOP instance at once, ROUNDS times; outcomes by round."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    racers = [context.Process(target=race, args=(out, policy, which, same_bytes, fresh, barrier, results))
              for which in (1, 2)]
    for racer in racers:
        racer.start()
    try:
        rounds: dict[int, list] = {}
        for _ in range(2 * ROUNDS):
            number, *outcome = results.get(timeout=60)
            rounds.setdefault(number, []).append(tuple(outcome))
    finally:
        for racer in racers:
            racer.join(timeout=30)
            if racer.is_alive():
                racer.kill()
                racer.join()
    assert [racer.exitcode for racer in racers] == [0, 0]
    return rounds


def test_racing_overwrites_always_leave_one_whole_copy(tmp_path: Path) -> None:
    out = tmp_path / "out"
    Storage(out)  # the folders, before the reader looks
    path = out / STUDY / SERIES / f"{INSTANCE}.dcm"
    copies = {copy_of(1, INSTANCE), copy_of(2, INSTANCE)}
    seen: list[bytes] = []
    done = threading.Event()

    def read_while_racing() -> None:
        while not done.is_set():
            try:
                seen.append(dataset_in(path))
            except FileNotFoundError:
                pass

    reader = threading.Thread(target=read_while_racing)
    reader.start()
    try:
        rounds = run_race(out, "overwrite", fresh=False)
    finally:
        done.set()
        reader.join()
    outcomes = [outcome for both in rounds.values() for outcome in both]
    assert all(status == Status.SUCCESS for status, _duplicate, _path in outcomes)
    duplicates = [duplicate for _status, duplicate, _path in outcomes]
    # One store created the file; every other found a copy: its own from a round before, or the other's.
    assert duplicates.count(None) == 1 and set(duplicates) - {None} <= {"overwritten", "identical"}
    assert "overwritten" in duplicates
    assert seen and set(seen) <= copies  # never a mix, never a part
    assert dataset_in(path) in copies
    assert_no_temp_files(Storage(out))


@pytest.mark.parametrize(
    ("policy", "second"),
    [("rename", (Status.SUCCESS, "renamed")), ("keep", (Status.SUCCESS, "kept")),
     ("reject", (DUPLICATE_SOP_INSTANCE, "rejected"))],
)
def test_racing_copies_by_policy(tmp_path: Path, policy: str, second: tuple[int, str]) -> None:
    out = tmp_path / "out"
    rounds = run_race(out, policy)
    folder = out / STUDY / SERIES
    for number, both in rounds.items():
        instance = f"{INSTANCE}.{number}"
        winner = [o for o in both if o[1] is None]
        loser = [o for o in both if o[1] is not None]
        assert len(winner) == 1 and len(loser) == 1, both
        assert winner[0][:2] == (Status.SUCCESS, None) and loser[0][:2] == second
        assert dataset_in(winner[0][2]) in {copy_of(1, instance), copy_of(2, instance)}
        if policy == "rename":
            copies = {dataset_in(folder / f"{instance}.dcm"), dataset_in(folder / f"{instance}_1.dcm")}
            assert copies == {copy_of(1, instance), copy_of(2, instance)}
            assert loser[0][2] == str(folder / f"{instance}_1.dcm")
    expected = 2 * ROUNDS if policy == "rename" else ROUNDS
    assert len(os.listdir(folder)) == expected
    assert_no_temp_files(Storage(out))


def test_the_same_bytes_racing_are_identical(tmp_path: Path) -> None:
    rounds = run_race(tmp_path / "out", "reject", same_bytes=True)
    for both in rounds.values():
        assert sorted(str(duplicate) for _status, duplicate, _path in both) == ["None", "identical"]
        assert {status for status, _duplicate, _path in both} == {Status.SUCCESS}


# -- against the running server (its default policy: overwrite) ----------------------------------


def sequenced_instance(index: int, pixel_bytes: int) -> Dataset:
    """A test instance with an undefined-length sequence after its UIDs, then its pixel data."""
    ds = instance(index, pixel_bytes=pixel_bytes, study=next(studies))
    request_item = Dataset()
    request_item.RequestedProcedureID = "RP1"
    request_item.ScheduledProcedureStepID = "SPS1"
    ds.RequestAttributesSequence = undefined_length([request_item])
    ds["RequestAttributesSequence"].is_undefined_length = True
    return ds


def cut_copy(good: Path, folder: Path, where: str) -> Path:
    """A Part 10 file of ``good``'s instance whose data set is cut in its pixel data or in its sequence."""
    data = good.read_bytes()
    at = data.index(b"\x40\x00\x75\x02") + 40 if where == "sequence" else len(data) - 500
    folder.mkdir(exist_ok=True)
    path = folder / good.name  # the file name is the SOP Instance UID the raw requestor sends
    path.write_bytes(data[:at])
    return path


def store_raw(port: int, path: Path) -> dimse.CStoreRSP:
    """Send ``path``'s data set bytes as they are (DCMTK's storescu refuses a cut file)."""
    peer = Requestor(port).associate()
    try:
        peer.sock.sendall(peer.store_wire(path))
        (answer,) = [i for i in peer.receive(MessageReceived) if isinstance(i, MessageReceived)]
        peer.send(*peer.engine.release())
        peer.receive(ReleaseConfirmed)
    finally:
        peer.close()
    return answer.command


def storescu(port: int, *paths: Path) -> None:
    done = subprocess.run([require_binary("storescu"), "-to", "10", "-ta", "10", "-td", "10", "127.0.0.1", str(port),
                           *map(str, paths)], env=dcmtk_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_running_server_refuses_cut_copies_keeps_identical_ones_and_overwrites_others(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    # One data set held in memory, one past the spool threshold (spooled as it arrives).
    goods = [write_instance(source, sequenced_instance(1, 4096)), write_instance(source, sequenced_instance(2, 300_000))]
    with serving(tmp_path / "out", "--spool-threshold", "64K", workers=2, writers=1) as scp:
        storescu(scp.port, *goods)
        stored = stored_files(scp.out)
        # storescu sends its own encoding of a file (defined-length sequences): what it sent is the good copy.
        first = {good.stem: stored[good.stem].read_bytes() for good in goods}
        befores = {good.stem: os.stat(stored[good.stem]) for good in goods}
        for good in goods:
            assert dcmread(stored[good.stem]).RequestAttributesSequence[0].RequestedProcedureID == "RP1"
        for where in ("pixel data", "sequence"):
            for good in goods:
                answer = store_raw(scp.port, cut_copy(good, tmp_path / where, where))
                assert answer.status == Status.CANNOT_UNDERSTAND, answer
                assert "runs past the end" in answer.error_comment or "delimiter" in answer.error_comment
        storescu(scp.port, *goods)  # the same bytes again: Success, files untouched
        for good in goods:
            after = os.stat(stored[good.stem])
            assert (after.st_ino, after.st_mtime_ns) == (befores[good.stem].st_ino, befores[good.stem].st_mtime_ns)
            assert stored[good.stem].read_bytes() == first[good.stem]
        changed = dcmread(goods[0])
        changed.PatientName = "CHANGED^NAME"
        other = write_instance(tmp_path / "pixel data", changed)  # the same SOP instance, other bytes
        storescu(scp.port, other)
        assert dcmread(stored[other.stem]).PatientName == "CHANGED^NAME"
        assert stored_files(scp.out).keys() == {good.stem for good in goods}
        assert temp_files(scp.out) == []
    assert f"duplicate SOP instance {other.stem}: overwritten" in scp.output
    assert scp.output.count("data set not whole") == 4
