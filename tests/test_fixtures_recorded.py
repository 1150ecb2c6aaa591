"""The recorded PDU fixtures are complete and well framed, and recording still works."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from . import record_fixtures
from .recorder import AC, PDU_NAMES, RQ, split_pdus

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
ENTRIES = MANIFEST["fixtures"]
TYPE_BY_SLUG = {name.lower(): pdu_type for pdu_type, name in PDU_NAMES.items()}
MAX_TOTAL_BYTES = 2 * 1024 * 1024


def slug_of(file_name: str) -> str:
    """'dcmtk/echoscu-storescp-00-a-associate-rq.bin' -> 'a-associate-rq'."""
    match = re.fullmatch(r"[a-z0-9-]+-\d{2}-([a-z-]+)\.bin", Path(file_name).name)
    assert match, f"{file_name} is not named <scenario>-<nn>-<pdu name>.bin"
    return match.group(1)


@pytest.fixture(params=ENTRIES, ids=[entry["file"] for entry in ENTRIES])
def entry(request: pytest.FixtureRequest) -> dict:
    return request.param


def test_fixture_exists_with_manifest_size(entry: dict) -> None:
    assert (FIXTURES / entry["file"]).stat().st_size == entry["size"]


def test_header_length_covers_the_rest(entry: dict) -> None:
    data = (FIXTURES / entry["file"]).read_bytes()
    assert int.from_bytes(data[2:6], "big") == len(data) - 6
    assert split_pdus(data) == [data]


def test_type_byte_matches_name_and_manifest(entry: dict) -> None:
    data = (FIXTURES / entry["file"]).read_bytes()
    assert data[0] == TYPE_BY_SLUG[slug_of(entry["file"])] == entry["pdu_type"]


def test_fixture_is_the_recorded_conversation_pdu(entry: dict) -> None:
    conversation = MANIFEST["scenarios"][entry["scenario"]]["conversation"]
    assert conversation[entry["index"]] == [entry["direction"], entry["pdu_type"], entry["size"]]


def test_manifest_lists_every_fixture_file() -> None:
    on_disk = {path.relative_to(FIXTURES).as_posix() for path in FIXTURES.glob("*/*.bin")}
    assert on_disk == {entry["file"] for entry in ENTRIES}


def test_fixtures_stay_small() -> None:
    assert sum(entry["size"] for entry in ENTRIES) < MAX_TOTAL_BYTES
    p_data = Counter(entry["scenario"] for entry in ENTRIES if entry["pdu_name"] == "P-DATA-TF")
    assert max(p_data.values()) <= 3


def test_a_full_size_p_data_tf_was_recorded() -> None:
    sizes = [e["size"] for e in ENTRIES if e["scenario"] == "storescu-storescp-maxpdu16k"]
    assert 16384 in sizes


@pytest.mark.interop
def test_live_echoscu_to_storescp_through_recorder() -> None:
    recording = record_fixtures.echoscu_storescp()
    assert [pdu[0] for _, pdu in recording.pdus] == [1, 2, 4, 4, 5, 6]
    assert [direction for direction, _ in recording.pdus] == [RQ, AC, RQ, AC, RQ, AC]
