"""SOP Classes hsscp serves, generated from pydicom's UID dictionary.

Every Storage SOP Class pydicom knows (retired ones included, so old modalities
can still send) plus Verification is a module attribute, named like pynetdicom
names them: the PS3.6 keyword (``CTImageStorage``, ``Verification``) and, for
the non-storage classes, the pynetdicom 1.x ``<keyword>SOPClass`` alias
(``VerificationSOPClass``).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom import config
from pydicom.uid import UID, UID_dictionary

from hsscp.uid import VERIFICATION_SOP_CLASS


class SOPClass(UID):
    """A SOP Class UID: equal to, and hashing like, its UID string.

    ``name`` comes from pydicom's dictionary (e.g. ``"CT Image Storage"``).
    """

    def __new__(cls, val: str) -> SOPClass:
        if isinstance(val, SOPClass):
            return val
        # Unknown peer UIDs may be non-conformant; that is not worth a warning here.
        return super().__new__(cls, val, validation_mode=config.IGNORE)


def _uid_sort_key(uid: str) -> tuple[int, ...]:
    """Order UIDs by their numeric components, so 1.2 sorts before 1.10."""
    return tuple(int(part) for part in uid.split("."))


def _is_storage(name: str, uid_type: str) -> bool:
    # Storage Commitment carries "Storage" in its name but is an N-ACTION
    # service, not something a peer can C-STORE.
    return (
        uid_type == "SOP Class"
        and "Storage" in name
        and not name.startswith("Storage Commitment")
    )


def _storage_uids() -> Iterator[str]:
    for uid, (name, uid_type, _info, _retired, _keyword) in UID_dictionary.items():
        if _is_storage(name, uid_type):
            yield uid


STORAGE_SOP_CLASSES: tuple[SOPClass, ...] = tuple(
    SOPClass(uid) for uid in sorted(_storage_uids(), key=_uid_sort_key)
)
"""Every Storage SOP Class, ordered by UID."""

_BY_UID: dict[str, SOPClass] = {sop_class: sop_class for sop_class in STORAGE_SOP_CLASSES}
_BY_UID[VERIFICATION_SOP_CLASS] = SOPClass(VERIFICATION_SOP_CLASS)


def _module_names() -> dict[str, SOPClass]:
    names: dict[str, SOPClass] = {}
    storage = set(STORAGE_SOP_CLASSES)
    for sop_class in _BY_UID.values():
        names[sop_class.keyword] = sop_class
        if sop_class not in storage:
            names[f"{sop_class.keyword}SOPClass"] = sop_class
    return names


_NAMES = _module_names()
globals().update(_NAMES)


def uid_to_sop_class(uid: str) -> SOPClass:
    """Return the SOPClass for `uid`; a bare one if hsscp has no name for it."""
    try:
        return _BY_UID[uid]
    except KeyError:
        return SOPClass(uid)


__all__ = ["STORAGE_SOP_CLASSES", "SOPClass", "uid_to_sop_class", *sorted(_NAMES)]
