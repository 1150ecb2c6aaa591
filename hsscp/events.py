"""Events a user's handlers can bind to, the :class:`Event` they receive, and their bindings.

The events themselves (names, descriptions, the notification/intervention
split, pynetdicom's default handlers) are in :mod:`hsscp.event_types` and
re-exported here; this module adds what a handler is given and how
handlers are bound and called.
"""

from __future__ import annotations

import logging
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from hsscp import event_types
from hsscp.aet import normalize_ae_title
from hsscp.event_types import *  # noqa: F403 (the events are this module's public names too)
from hsscp.event_types import (
    EVT_C_ECHO,
    EVT_C_STORE,
    WIRE_EVENTS,
    EventType,
    InterventionEvent,
    NotificationEvent,
    canonical,
    get_default_handler,
)
from hsscp.part10 import build_file_meta
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

LOGGER = logging.getLogger("hsscp.events")

__all__ = [
    *event_types.__all__,
    "Event",
    "HandlerSet",
    "decode_dataset",
    "normalize_handlers",
    "status_from_result",
]


# What pynetdicom answers when no handler is bound, or the handler raises:
# its default C-ECHO handler returns Success, its C-STORE one raises (0xC211).
_FALLBACK_STATUS = {EVT_C_ECHO: 0x0000, EVT_C_STORE: 0xC211}
# pynetdicom's "Cannot understand" answers to a handler's unusable return.
_NO_STATUS_ELEMENT = 0xC001
_INVALID_RETURN = 0xC002

_NOT_STORE = "The corresponding event is not a C-STORE request and has no 'Data Set' parameter"


class Event:
    """What a handler receives: the association, the event and its attributes.

    ``attrs`` become attributes of the event (``event.address``,
    ``event.pdu`` ...). DIMSE events carry ``request`` (the command, e.g.
    :class:`hsscp.dimse.CStoreRQ`), ``context`` (a
    :class:`~hsscp.presentation.PresentationContextTuple`) and, for C-STORE,
    ``encoded_dataset`` (the data set bytes as received). Nothing is decoded
    until a handler asks for :attr:`dataset`.
    """

    __slots__ = ("_attrs", "_dataset", "assoc", "event", "timestamp")

    def __init__(self, assoc: Any, event: EventType, attrs: dict[str, Any] | None = None) -> None:
        self.assoc = assoc
        self.event = event
        self.timestamp = datetime.now()
        attrs = attrs or {}
        if not _RESERVED.isdisjoint(attrs):
            clash = sorted(_RESERVED.intersection(attrs))[0]
            raise AttributeError(f"'Event' object already has an attribute '{clash}'")
        self._attrs = attrs
        self._dataset: Dataset | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails; guard against a half-built instance.
        if name.startswith("__") or name == "_attrs":
            raise AttributeError(name)
        member = type(self).__dict__.get(name)
        if isinstance(member, property):
            # A property raised AttributeError: run it again so its message surfaces.
            return member.fget(self)  # type: ignore[misc]
        try:
            return self._attrs[name]
        except KeyError:
            raise AttributeError(f"'Event' object has no attribute '{name}'") from None

    def __repr__(self) -> str:
        return f"<Event {self.event.name} at {self.timestamp.isoformat()}>"

    @property
    def context(self) -> Any:
        """The presentation context (ID, abstract syntax, transfer syntax) of a DIMSE event."""
        try:
            return self._attrs["context"]
        except KeyError:
            raise AttributeError("The corresponding event has no presentation context") from None

    @property
    def request(self) -> Any:
        """The DIMSE request command, e.g. :class:`hsscp.dimse.CStoreRQ`."""
        try:
            return self._attrs["request"]
        except KeyError:
            raise AttributeError("The corresponding event is not a DIMSE service request") from None

    @property
    def message_id(self) -> int:
        """The request's (0000,0110) Message ID."""
        try:
            return self._attrs["request"].message_id
        except (KeyError, AttributeError):
            raise AttributeError(
                "The corresponding event is not a DIMSE service request and "
                "has no 'Message ID' parameter"
            ) from None

    def _received(self) -> Any:
        try:
            return self._attrs["encoded_dataset"]
        except KeyError:
            raise AttributeError(_NOT_STORE) from None

    @property
    def dataset(self) -> Dataset:
        """The C-STORE data set, decoded by pydicom on first access and cached.

        As in pynetdicom, pydicom defers parsing element values, so an element
        may still raise when first read: handlers should be ready for that.
        """
        if self._dataset is None:
            self._dataset = decode_dataset(self._received(), self.context.transfer_syntax)
        return self._dataset

    def _store_uids(self) -> tuple[str, str, str]:
        self._received()
        try:
            request = self._attrs["request"]
            return (
                request.affected_sop_class_uid,
                request.affected_sop_instance_uid,
                str(self._attrs["context"].transfer_syntax),
            )
        except (KeyError, AttributeError):
            raise AttributeError("The corresponding event is not a C-STORE request") from None

    def _source_ae_title(self) -> str:
        """The requestor's AE title, or "" when unknown or unusable in a file."""
        title = getattr(getattr(self.assoc, "requestor", None), "ae_title", None)
        if not title:
            return ""
        try:
            return normalize_ae_title(title)
        except (TypeError, ValueError):
            return ""

    @property
    def file_meta(self) -> FileMetaDataset:
        """File Meta Information for the C-STORE data set, as pynetdicom builds it."""
        sop_class, sop_instance, transfer_syntax = self._store_uids()
        meta = FileMetaDataset()
        meta.FileMetaInformationGroupLength = 0  # pydicom fills it in when writing
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_instance
        meta.TransferSyntaxUID = transfer_syntax
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        source = self._source_ae_title()
        if source:
            meta.SourceApplicationEntityTitle = source
        meta.set_original_encoding(False, True)
        return meta

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        """The C-STORE data set exactly as received, never decoded.

        With `include_meta` the bytes are a DICOM Part 10 file: preamble,
        ``DICM`` and a File Meta Information group come first.
        """
        data = self._received()
        if not include_meta:
            return bytes(data)
        sop_class, sop_instance, transfer_syntax = self._store_uids()
        meta = build_file_meta(
            sop_class,
            sop_instance,
            transfer_syntax,
            IMPLEMENTATION_CLASS_UID,
            IMPLEMENTATION_VERSION_NAME,
            self._source_ae_title(),
        )
        return b"".join((meta, data))


# Names attrs must not shadow ("context", "request" and "encoded_dataset" are
# read from attrs by the members of the same name).
_RESERVED = frozenset(
    name
    for name in (*Event.__slots__, *vars(Event))
    if not name.startswith("_")
) - {"context", "request", "encoded_dataset"}


def decode_dataset(data: Any, transfer_syntax: Any) -> Dataset:
    """Decode received data set bytes with pydicom, as pynetdicom does."""
    if not data:
        return Dataset()
    transfer_syntax = UID(transfer_syntax)
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    if transfer_syntax.is_deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    dataset = read_dataset(BytesIO(data), implicit, little)
    dataset.set_original_encoding(implicit, little)
    return dataset


# -- handler binding -----------------------------------------------------------

Handler = tuple[Callable[..., Any], list[Any]]


def _checked(event: Any, handler: Any, args: Any) -> tuple[EventType, Handler]:
    event = canonical(event)
    if not callable(handler):
        raise TypeError(f"The handler bound to 'evt.{event.name}' must be callable, got {handler!r}")
    if args is None:
        args = []
    elif isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise TypeError(f"The arguments for the handler bound to 'evt.{event.name}' must be a list")
    return event, (handler, list(args))


def _add(handlers: dict[EventType, list[Handler]], event: EventType, entry: Handler) -> None:
    if event.is_intervention:
        handlers[event] = [entry]  # one handler only: the last bound wins
    elif entry not in handlers.get(event, []):
        # Copy-on-write, so a notify() running in another thread keeps its snapshot.
        handlers[event] = [*handlers.get(event, []), entry]


def _remove(handlers: dict[EventType, list[Handler]], event: EventType, handler: Callable) -> None:
    remaining = [entry for entry in handlers.get(event, []) if entry[0] != handler]
    if remaining:
        handlers[event] = remaining
    else:
        handlers.pop(event, None)


def normalize_handlers(evt_handlers: Iterable[Any] | None) -> dict[EventType, list[Handler]]:
    """Check a pynetdicom-style ``evt_handlers`` list and index it by event.

    Each item is ``(event, handler)`` or ``(event, handler, args)``. Returns
    ``{event: [(handler, args), ...]}``; an intervention event keeps only the
    last handler bound to it. Raises TypeError or ValueError saying what is wrong.
    """
    handlers: dict[EventType, list[Handler]] = {}
    if evt_handlers is None:
        return handlers
    if isinstance(evt_handlers, (str, bytes)) or not isinstance(evt_handlers, Iterable):
        raise TypeError("'evt_handlers' must be a list of (event, handler[, args]) tuples")
    for item in evt_handlers:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise TypeError(
                f"Each item of 'evt_handlers' must be (event, handler) or "
                f"(event, handler, args), got {item!r}"
            )
        event, entry = _checked(item[0], item[1], item[2] if len(item) == 3 else None)
        _add(handlers, event, entry)
    return handlers


def _handler_name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__name__", repr(handler))


class HandlerSet:
    """The handlers bound to one association (or server): bind, unbind, call.

    Reads need no lock: every change replaces the event's list rather than
    mutating it. A server's set hands each of its associations a
    :meth:`follower`, as pynetdicom copies a server's handlers into each
    association and binds later ones to the active associations too.
    ``on_change`` (if set) is called after every bind or unbind, so that an
    owner computes once what its bindings cost (see :attr:`watches_wire`).
    """

    __slots__ = ("__weakref__", "_followers", "_handlers", "_lock", "on_change")

    def __init__(self, evt_handlers: Iterable[Any] | None = None) -> None:
        self._handlers = normalize_handlers(evt_handlers)
        self._followers: weakref.WeakSet[HandlerSet] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.on_change: Callable[[], None] | None = None

    def follower(self) -> HandlerSet:
        """A set holding these bindings now, which also takes every later bind and unbind made here."""
        follower = HandlerSet()
        follower._handlers = dict(self._handlers)
        with self._lock:
            self._followers.add(follower)
        return follower

    def bind(self, event: EventType, handler: Callable[..., Any], args: list[Any] | None = None) -> None:
        """Bind `handler` (called as ``handler(event, *args)``) to `event`."""
        event, entry = _checked(event, handler, args)
        _add(self._handlers, event, entry)
        self._changed()
        for follower in self._each_follower():
            follower.bind(event, handler, args)

    def unbind(self, event: EventType, handler: Callable[..., Any]) -> None:
        """Unbind `handler` from `event`; unknown bindings are ignored."""
        event = canonical(event)
        _remove(self._handlers, event, handler)
        self._changed()
        for follower in self._each_follower():
            follower.unbind(event, handler)

    def _each_follower(self) -> list[HandlerSet]:
        with self._lock:
            return list(self._followers)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def get_handlers(self, event: EventType) -> list[Handler]:
        """The ``(handler, args)`` bound to `event`, in binding order."""
        return list(self._handlers.get(canonical(event), []))

    def bound(self, event: EventType) -> Any:
        """What pynetdicom's ``get_handlers(event)`` returns for these bindings.

        A notification event: a list of ``(handler, args)``, ``args`` None
        when none were given. An intervention event: its ``(handler, args)``,
        unbound its default handler's, ``(default handler, None)`` (pynetdicom
        binds the defaults on servers and associations alike).
        """
        event = canonical(event)
        shaped = [(handler, args or None) for handler, args in self._handlers.get(event, [])]
        if event.is_notification:
            return shaped
        return shaped[0] if shaped else (get_default_handler(event), None)

    def has(self, event: EventType) -> bool:
        """Whether any handler is bound to `event`."""
        return canonical(event) in self._handlers

    @property
    def watches_wire(self) -> bool:
        """Whether a handler wants something per PDU (data, PDUs, state machine steps)."""
        return not WIRE_EVENTS.isdisjoint(self._handlers)

    def notify(self, assoc: Any, event: NotificationEvent, **attrs: Any) -> None:
        """Call every handler bound to a notification event.

        A handler's exception is logged and the remaining handlers still run.
        """
        handlers = self._handlers.get(event)
        if not handlers:
            return
        evt = Event(assoc, event, attrs)
        for handler, args in handlers:
            try:
                handler(evt, *args)
            except Exception:
                LOGGER.exception(
                    "Exception raised in user's 'evt.%s' event handler '%s'",
                    event.name, _handler_name(handler),
                )

    def answer(self, assoc: Any, event: InterventionEvent, **attrs: Any) -> Any:
        """What the handler of an intervention event returns (its default handler's, unbound).

        As pynetdicom's ``trigger``: a handler's exception propagates, and a
        default handler raising NotImplementedError means "nobody answers".
        """
        handlers = self._handlers.get(event)
        handler, args = handlers[0] if handlers else (get_default_handler(event), [])
        return handler(Event(assoc, event, attrs), *args)

    def intervene(self, assoc: Any, event: InterventionEvent, **attrs: Any) -> Any:
        """Call the handler of a C-ECHO or C-STORE request and return its result.

        Without a handler, or when the handler raises (which is logged), the
        answer is pynetdicom's: Success (0x0000) for C-ECHO, 0xC211 for C-STORE.
        """
        if not event.is_intervention:
            raise ValueError(f"'evt.{event.name}' is not an intervention event")
        fallback = _FALLBACK_STATUS.get(event)
        handlers = self._handlers.get(event)
        if not handlers:
            if event == EVT_C_STORE:
                LOGGER.error("No handler has been bound to 'evt.EVT_C_STORE'")
            return fallback
        handler, args = handlers[0]
        try:
            return handler(Event(assoc, event, attrs), *args)
        except Exception:
            status = "" if fallback is None else f", responding with 0x{fallback:04X}"
            LOGGER.exception("Exception in the handler bound to 'evt.%s'%s", event.name, status)
            return fallback


# -- handler results -----------------------------------------------------------

# Status data set keywords each response can carry, as the response's field
# names (a C-ECHO-RSP has only an Error Comment, PS3.7 9.1.5.1).
_STATUS_FIELDS = {
    EVT_C_STORE: {
        "ErrorComment": "error_comment",
        "OffendingElement": "offending_element",
        "ErrorID": "error_id",
    },
    EVT_C_ECHO: {"ErrorComment": "error_comment"},
}


def _offending(value: Any) -> list[int]:
    # pydicom gives one AT value as a tag (an int) and several as a sequence of tags.
    return [int(value)] if isinstance(value, int) else [int(tag) for tag in value]


def _status_fields(result: Dataset, event: EventType) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for element in result:
        keyword = element.keyword
        if keyword == "Status":
            continue
        field = _STATUS_FIELDS[event].get(keyword)
        if field is None or element.value is None:
            LOGGER.warning(
                "The status dataset returned by the handler bound to 'evt.%s' "
                "contained an unsupported element '%s'", event.name, keyword or element.tag,
            )
            continue
        value = element.value
        if field == "offending_element":
            value = _offending(value)
        elif field == "error_id":
            value = int(value)
        else:
            value = str(value)
        extra[field] = value
    return extra


def status_from_result(result: Any, event: EventType = EVT_C_STORE) -> tuple[int, dict[str, Any]]:
    """Turn a C-ECHO/C-STORE handler's return value into ``(status, extra fields)``.

    The handler may return an int or a pydicom Dataset with a (0000,0900)
    Status and optionally ErrorComment (both services), OffendingElement and
    ErrorID (C-STORE); those come back as the response's field names
    (:class:`hsscp.dimse.CStoreRSP`, :class:`hsscp.dimse.CEchoRSP`). Unusable returns
    are logged and answered as pynetdicom does: for C-STORE 0xC001 (a Dataset
    without Status) or 0xC002 (anything else), for C-ECHO Success.
    """
    if isinstance(result, Dataset):
        status = result.get("Status")
        if isinstance(status, int) and 0 <= status <= 0xFFFF:
            return int(status), _status_fields(result, event)
        LOGGER.error(
            "The status dataset returned by the handler bound to 'evt.%s' "
            "has no valid (0000,0900) Status element", event.name,
        )
        return (0x0000 if event == EVT_C_ECHO else _NO_STATUS_ELEMENT), {}
    if isinstance(result, int) and 0 <= result <= 0xFFFF:
        return int(result), {}
    LOGGER.error("Invalid status %r returned by the handler bound to 'evt.%s'", result, event.name)
    return (0x0000 if event == EVT_C_ECHO else _INVALID_RETURN), {}
