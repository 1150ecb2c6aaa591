"""The names pynetdicom users import for verification and storage, checked against pynetdicom."""

from __future__ import annotations

import subprocess
import sys

import pynetdicom
import pynetdicom.service_class as their_services
import pynetdicom.sop_class as their_sop_class
import pynetdicom.status as their_status
import pytest

import hsscp
from hsscp import service_class, sop_class, status
from hsscp.sop_class import STORAGE_SOP_CLASSES, register_uid, uid_to_service_class

PRIVATE_UID = "1.2.826.0.1.3680043.10.543.99.1"


def test_top_level_names_are_there() -> None:
    from hsscp import (
        ALL_TRANSFER_SYNTAXES,
        DEFAULT_TRANSFER_SYNTAXES,
        build_role,  # noqa: F401
        register_uid,  # noqa: F401
    )

    assert set(pynetdicom.ALL_TRANSFER_SYNTAXES) <= set(ALL_TRANSFER_SYNTAXES)
    # The reference document's three, not pynetdicom 3's four (a deliberate difference).
    assert [*pynetdicom.DEFAULT_TRANSFER_SYNTAXES[:2], "1.2.840.10008.1.2.2"] == DEFAULT_TRANSFER_SYNTAXES
    assert {"status", "service_class", "ALL_TRANSFER_SYNTAXES", "build_role"} <= set(hsscp.__all__)


@pytest.mark.parametrize(
    "name",
    ["GENERAL_STATUS", "VERIFICATION_SERVICE_CLASS_STATUS", "STORAGE_SERVICE_CLASS_STATUS",
     "NON_PATIENT_SERVICE_CLASS_STATUS", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_WARNING",
     "STATUS_CANCEL", "STATUS_PENDING", "STATUS_UNKNOWN"],
)
def test_status_tables_are_pynetdicoms(name: str) -> None:
    assert getattr(status, name) == getattr(their_status, name)


def test_every_code_has_pynetdicoms_category() -> None:
    differ = [code for code in range(0x10000) if status.code_to_category(code) != their_status.code_to_category(code)]
    assert differ == []
    with pytest.raises(ValueError):
        status.code_to_category(-1)


def test_code_to_status_and_the_status_enum() -> None:
    ds = status.code_to_status(0xC001)
    assert ds.Status == 0xC001 and list(ds.keys()) == list(their_status.code_to_status(0xC001).keys())
    assert {m.name: int(m) for m in status.Status} == {m.name: int(m) for m in their_status.Status}
    status.Status.add("UNABLE_TO_PROCESS", 0xC000)
    assert status.Status.UNABLE_TO_PROCESS == 0xC000


def test_the_status_module_loads_no_pydicom() -> None:
    code = "import sys, hsscp.status as s; s.code_to_category(0xB000); print('pydicom' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_service_classes_match_pynetdicoms_for_what_both_implement() -> None:
    served = {"VerificationServiceClass", "StorageServiceClass", "NonPatientObjectStorageServiceClass"}
    uids = [*STORAGE_SOP_CLASSES, sop_class.Verification]
    for uid in uids:
        theirs = their_sop_class.uid_to_service_class(uid).__name__
        ours = uid_to_service_class(uid)
        assert ours is uid.service_class
        if theirs in served:
            assert ours.__name__ == theirs, uid
        else:  # retired and DICOS/DICONDE classes: pynetdicom has no SCP for them, hsscp stores them
            assert ours is service_class.StorageServiceClass, uid
        assert ours.statuses == getattr(their_services, ours.__name__).statuses
    assert uid_to_service_class("1.2.840.10008.5.1.4.1.2.2.1") is service_class.ServiceClass  # a C-FIND class
    assert service_class.StorageServiceClass.uid == their_services.StorageServiceClass.uid


@pytest.fixture
def restore_registry():
    saved = (dict(sop_class._REGISTERED), dict(sop_class._BY_UID), dict(vars(sop_class)))
    yield
    sop_class._REGISTERED.clear()
    sop_class._REGISTERED.update(saved[0])
    sop_class._BY_UID.clear()
    sop_class._BY_UID.update(saved[1])
    for name in set(vars(sop_class)) - set(saved[2]):
        delattr(sop_class, name)


def test_register_uid_as_pynetdicom_documents_it(restore_registry) -> None:
    register_uid(PRIVATE_UID, "FooStorage", service_class.StorageServiceClass)
    from hsscp.sop_class import FooStorage  # type: ignore[attr-defined]

    assert FooStorage == PRIVATE_UID and isinstance(FooStorage, sop_class.SOPClass)
    assert FooStorage.service_class is service_class.StorageServiceClass
    assert sop_class.uid_to_sop_class(PRIVATE_UID) is FooStorage
    ae = hsscp.AE()
    ae.add_supported_context(FooStorage)
    assert [cx.abstract_syntax for cx in ae.supported_contexts] == [PRIVATE_UID]


@pytest.mark.parametrize(
    ("keyword", "service", "error"),
    [
        ("not valid", service_class.StorageServiceClass, ValueError),
        ("class", service_class.StorageServiceClass, ValueError),
        ("FooStorage", service_class.StorageServiceClass(), TypeError),
        ("FooStorage", dict, TypeError),
    ],
)
def test_register_uid_refuses_what_pynetdicom_refuses(restore_registry, keyword, service, error) -> None:
    with pytest.raises(error):
        register_uid(PRIVATE_UID, keyword, service)
    with pytest.raises(error):
        their_sop_class.register_uid(PRIVATE_UID, keyword, service)
    assert uid_to_service_class(PRIVATE_UID) is service_class.ServiceClass


def test_the_lists_do_not_depend_on_whether_pynetdicom_was_imported_first() -> None:
    # pynetdicom adds transfer syntaxes to pydicom's dictionary when it is imported.
    code = (
        "import sys\n"
        "if sys.argv[1] == 'first': import pynetdicom\n"
        "from hsscp.uid import ALL_TRANSFER_SYNTAXES as ts\n"
        "from hsscp.sop_class import STORAGE_SOP_CLASSES as sc\n"
        "print([str(u) for u in ts], [str(u) for u in sc], [u.name for u in ts])\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code, order], capture_output=True, text=True, check=True).stdout
            for order in ("first", "not")]
    assert runs[0] == runs[1]
    assert "JPEG XL Lossless" in runs[0]
