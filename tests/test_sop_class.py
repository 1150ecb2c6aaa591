"""SOP Class names and UIDs: generated from pydicom, named like pynetdicom."""

from __future__ import annotations

import pickle
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID, UID_dictionary

from hsscp import sop_class
from hsscp.sop_class import NEWER_STORAGE_CLASSES, STORAGE_SOP_CLASSES, SOPClass, uid_to_sop_class
from hsscp.uid import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    is_valid_uid,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"


def test_both_naming_schemes_import() -> None:
    from hsscp.sop_class import CTImageStorage, Verification, VerificationSOPClass

    assert Verification is VerificationSOPClass
    assert Verification == VERIFICATION
    assert CTImageStorage == CT
    assert isinstance(CTImageStorage, SOPClass)
    assert isinstance(CTImageStorage, UID)


def test_names_come_from_pydicom() -> None:
    assert sop_class.Verification.name == "Verification SOP Class"
    assert sop_class.CTImageStorage.name == "CT Image Storage"
    for storage in STORAGE_SOP_CLASSES:
        if storage in UID_dictionary:
            assert storage.name == UID_dictionary[storage][0]
        else:  # newer than the installed pydicom: named as pynetdicom names them
            import pynetdicom.sop_class as theirs

            assert storage in NEWER_STORAGE_CLASSES
            assert getattr(theirs, storage.keyword) == storage


def test_every_storage_class_is_an_attribute_under_its_keyword() -> None:
    for storage in STORAGE_SOP_CLASSES:
        assert getattr(sop_class, storage.keyword) is storage
        assert storage.keyword in sop_class.__all__


def test_sop_classes_behave_like_their_uid_strings() -> None:
    lookup = {CT: "ct"}
    assert lookup[sop_class.CTImageStorage] == "ct"
    assert {sop_class.CTImageStorage: "ct"}[CT] == "ct"
    restored = pickle.loads(pickle.dumps(sop_class.CTImageStorage))
    assert restored == CT and isinstance(restored, SOPClass)


def test_storage_list_covers_pynetdicoms() -> None:
    import pynetdicom.presentation as pynetdicom_presentation
    theirs = {cx.abstract_syntax for cx in pynetdicom_presentation.AllStoragePresentationContexts}
    ours = set(STORAGE_SOP_CLASSES)
    assert len(ours) >= len(theirs)
    # pynetdicom may know classes newer than the installed pydicom's dictionary.
    assert {uid for uid in theirs if uid in UID_dictionary} <= ours


def test_storage_list_holds_only_storage_classes_in_uid_order() -> None:
    assert len(set(STORAGE_SOP_CLASSES)) == len(STORAGE_SOP_CLASSES)
    assert all("Storage" in uid.name and uid.type == "SOP Class" for uid in STORAGE_SOP_CLASSES)
    assert "1.2.840.10008.1.20.1" not in STORAGE_SOP_CLASSES  # Storage Commitment Push
    assert "1.2.840.10008.5.1.4.1.1.6" in STORAGE_SOP_CLASSES  # retired US, still sent
    keys = [tuple(map(int, uid.split("."))) for uid in STORAGE_SOP_CLASSES]
    assert keys == sorted(keys)


def test_every_uid_is_valid() -> None:
    for uid in (*STORAGE_SOP_CLASSES, sop_class.Verification, *ALL_TRANSFER_SYNTAXES):
        assert is_valid_uid(uid), uid


def test_uid_to_sop_class() -> None:
    assert uid_to_sop_class(CT) is sop_class.CTImageStorage
    assert uid_to_sop_class(VERIFICATION) is sop_class.VerificationSOPClass
    unknown = uid_to_sop_class("1.2.3.4")
    assert isinstance(unknown, SOPClass) and unknown == "1.2.3.4"


def test_implementation_identity() -> None:
    assert is_valid_uid(IMPLEMENTATION_CLASS_UID)
    assert IMPLEMENTATION_CLASS_UID.startswith("2.25.")
    assert 0 < len(IMPLEMENTATION_VERSION_NAME) <= 16
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    digits = pyproject["project"]["version"].replace(".", "")
    assert f"HSSCP_{digits}" == IMPLEMENTATION_VERSION_NAME


def test_transfer_syntaxes() -> None:
    assert [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    ] == DEFAULT_TRANSFER_SYNTAXES
    assert len(set(ALL_TRANSFER_SYNTAXES)) == len(ALL_TRANSFER_SYNTAXES)
    assert set(DEFAULT_TRANSFER_SYNTAXES) <= set(ALL_TRANSFER_SYNTAXES)
    assert all(uid.type == "Transfer Syntax" for uid in ALL_TRANSFER_SYNTAXES)
    retired = [uid.is_retired for uid in ALL_TRANSFER_SYNTAXES]
    assert retired == sorted(retired)  # current ones first


@pytest.mark.parametrize(
    "value",
    ["0", "1", "1.2", "1.0.2", "1.2.840.10008.1.1", "2.25." + "9" * 39, "1." + "2" * 62],
)
def test_is_valid_uid_accepts(value: str) -> None:
    assert is_valid_uid(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1.02",  # leading zero
        "01.2",
        "1.00",
        "1..2",  # empty component
        ".1.2",
        "1.2.",  # trailing dot
        "1.2.a",  # letters
        "1.2e3",
        "1/2",
        "../1.2",
        "1.2\n",
        " 1.2",
        "1.2\x00",
        "1.\u0662",  # a non-ASCII digit
        "1." + "2" * 63,  # 65 characters
    ],
)
def test_is_valid_uid_rejects(value: str) -> None:
    assert not is_valid_uid(value)


def test_is_valid_uid_rejects_non_str() -> None:
    assert not is_valid_uid(b"1.2")  # type: ignore[arg-type]
    assert not is_valid_uid(None)  # type: ignore[arg-type]


def _reference_is_valid(value: str) -> bool:
    parts = value.split(".")
    return 0 < len(value) <= 64 and all(
        part and all(c in "0123456789" for c in part) and (part == "0" or part[0] != "0")
        for part in parts
    )


@given(st.text(alphabet="0123456789./a \n", max_size=80))
def test_is_valid_uid_matches_a_plain_reading_of_the_rules(value: str) -> None:
    assert is_valid_uid(value) == _reference_is_valid(value)


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=20))
def test_is_valid_uid_accepts_any_digit_components_up_to_64_chars(parts: list[int]) -> None:
    value = ".".join(map(str, parts))
    assert is_valid_uid(value) == (len(value) <= 64)
