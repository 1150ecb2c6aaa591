"""File Meta Information from a template per (SOP class, transfer syntax, source AE), patched per instance.

Of the group only the SOP Instance UID and the group length change from one
instance of a sender to the next: the rest is encoded once and kept (a
bounded cache: a peer naming ever new classes or syntaxes only refills it).
The bytes are exactly :func:`hsscp.part10.build_file_meta`'s.
"""

from __future__ import annotations

import struct

from hsscp.part10 import build_file_meta

__all__ = ["FileMetaTemplates"]

MAX_TEMPLATES = 1024
_UI = struct.Struct("<HH2sH")  # tag group, element, VR, 16-bit length: the SOP Instance UID element
_UL = struct.Struct("<I")
_INSTANCE = "9" * 64  # a placeholder UID of maximal length, to find where the instance UID goes
_PREAMBLE = 128 + 4  # preamble and "DICM"
_GROUP_LENGTH_VALUE = _PREAMBLE + 8  # offset of the group length's value


class FileMetaTemplates:
    """Builds File Meta groups for one implementation class UID and version name."""

    def __init__(self, implementation_class_uid: str, implementation_version_name: str) -> None:
        self.implementation_class_uid = implementation_class_uid
        self.implementation_version_name = implementation_version_name
        self._templates: dict[tuple[str, str, str], tuple[bytes, bytes, int]] = {}

    def build(self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae_title: str) -> bytes:
        """Preamble, ``DICM`` and the group (ValueError if a UID or the AE title is not ASCII)."""
        template = self._templates.get((sop_class_uid, transfer_syntax, source_ae_title))
        if template is None:
            template = self._template(sop_class_uid, transfer_syntax, source_ae_title)
        before, after, fixed = template
        uid = sop_instance_uid.encode("ascii")
        if len(uid) % 2:
            uid += b"\0"
        return b"".join((before[:_GROUP_LENGTH_VALUE], _UL.pack(fixed + len(uid)), before[_GROUP_LENGTH_VALUE + 4 :],
                         _UI.pack(0x0002, 0x0003, b"UI", len(uid)), uid, after))

    def _template(self, sop_class_uid: str, transfer_syntax: str, source_ae_title: str) -> tuple[bytes, bytes, int]:
        """The bytes before the instance UID element and after it, and the group length less its value."""
        whole = build_file_meta(sop_class_uid, _INSTANCE, transfer_syntax, self.implementation_class_uid,
                                self.implementation_version_name, source_ae_title)
        element = _UI.pack(0x0002, 0x0003, b"UI", len(_INSTANCE)) + _INSTANCE.encode()
        start = whole.index(element, _PREAMBLE)
        (group_length,) = _UL.unpack_from(whole, _GROUP_LENGTH_VALUE)
        template = (whole[:start], whole[start + len(element) :], group_length - len(_INSTANCE))
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()
        self._templates[(sop_class_uid, transfer_syntax, source_ae_title)] = template
        return template
