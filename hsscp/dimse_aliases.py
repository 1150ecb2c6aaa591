"""pynetdicom's primitive attribute names for hsscp's DIMSE commands, as read-only properties.

Handlers written for pynetdicom read ``event.request.AffectedSOPInstanceUID``
and the like; the command structs of :mod:`hsscp.dimse` offer those names
beside their own, with pynetdicom's types. Sans-IO like :mod:`hsscp.dimse`:
pydicom is imported only when a UID or tag property is read.
"""

from __future__ import annotations

import operator

__all__ = ["CLASS", "COMMENT", "INSTANCE", "MESSAGE_ID", "OFFENDING", "RESPONDED_TO", "STATUS",
           "plain", "tags", "uid"]

MESSAGE_ID = "(0000,0110) Message ID, as pynetdicom names it."
RESPONDED_TO = "(0000,0120) Message ID Being Responded To, as pynetdicom names it."
STATUS = "(0000,0900) Status, as pynetdicom names it."
CLASS = "(0000,0002) Affected SOP Class UID as a pydicom UID (None if absent), as pynetdicom names it."
INSTANCE = "(0000,1000) Affected SOP Instance UID as a pydicom UID (None if absent), as pynetdicom names it."
COMMENT = "(0000,0902) Error Comment (None if absent), as pynetdicom names it."
OFFENDING = "(0000,0901) Offending Element as pydicom tags (None if absent), as pynetdicom names it."


def plain(field: str, doc: str) -> property:
    """A read-only property returning the command's field ``field`` as it is."""
    return property(operator.attrgetter(field), doc=doc)


def uid(field: str, doc: str) -> property:
    """A read-only property returning a UID field as pydicom's ``UID``, None when empty."""

    def get(self: object) -> object:
        value = getattr(self, field)
        if not value:
            return None
        from pydicom import config
        from pydicom.uid import UID

        return UID(value, validation_mode=config.IGNORE)

    return property(get, doc=doc)


def tags(field: str, doc: str) -> property:
    """A read-only property returning AT values as pydicom tags (None when absent)."""

    def get(self: object) -> object:
        value = getattr(self, field)
        if value is None:
            return None
        from pydicom.tag import Tag

        return [Tag(tag) for tag in value]

    return property(get, doc=doc)
