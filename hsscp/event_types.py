"""The events handlers bind to, as pynetdicom's ``evt`` module names them, and their defaults.

An event is a plain tuple, equal to pynetdicom's tuple of the same name, so
handlers bound with pynetdicom's ``evt.EVT_*`` are accepted too. The default
handlers answer an intervention event nobody bound the way pynetdicom's do:
raising NotImplementedError means "no handler: do what the standard does
without one".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "EVT_ABORTED",
    "EVT_ACCEPTED",
    "EVT_ACSE_RECV",
    "EVT_ACSE_SENT",
    "EVT_ASYNC_OPS",
    "EVT_CONN_CLOSE",
    "EVT_CONN_OPEN",
    "EVT_C_ECHO",
    "EVT_C_STORE",
    "EVT_DATA_RECV",
    "EVT_DATA_SENT",
    "EVT_DIMSE_RECV",
    "EVT_DIMSE_SENT",
    "EVT_ESTABLISHED",
    "EVT_FSM_TRANSITION",
    "EVT_PDU_RECV",
    "EVT_PDU_SENT",
    "EVT_REJECTED",
    "EVT_RELEASED",
    "EVT_REQUESTED",
    "EVT_SOP_COMMON",
    "EVT_SOP_EXTENDED",
    "EVT_USER_ID",
    "EventType",
    "InterventionEvent",
    "NotificationEvent",
    "get_default_handler",
]


class NotificationEvent(NamedTuple):
    """An event handlers are told about; any number of handlers, results ignored."""

    name: str
    description: str
    is_intervention: bool = False
    is_notification: bool = True

    def __str__(self) -> str:
        return self.name


class InterventionEvent(NamedTuple):
    """An event whose single handler decides the answer (e.g. a C-STORE status)."""

    name: str
    description: str
    is_intervention: bool = True
    is_notification: bool = False

    def __str__(self) -> str:
        return self.name


EventType = NotificationEvent | InterventionEvent

EVT_ABORTED = NotificationEvent("EVT_ABORTED", "Association aborted")
EVT_ACCEPTED = NotificationEvent("EVT_ACCEPTED", "Association request accepted")
EVT_ACSE_RECV = NotificationEvent("EVT_ACSE_RECV", "ACSE primitive received from DUL")
EVT_ACSE_SENT = NotificationEvent("EVT_ACSE_SENT", "ACSE primitive sent to DUL")
EVT_CONN_CLOSE = NotificationEvent("EVT_CONN_CLOSE", "Connection closed")
EVT_CONN_OPEN = NotificationEvent("EVT_CONN_OPEN", "Connection opened")
EVT_DATA_RECV = NotificationEvent("EVT_DATA_RECV", "PDU data received from remote")
EVT_DATA_SENT = NotificationEvent("EVT_DATA_SENT", "PDU data sent to remote")
EVT_DIMSE_RECV = NotificationEvent(
    "EVT_DIMSE_RECV", "Complete DIMSE message received and decoded"
)
EVT_DIMSE_SENT = NotificationEvent(
    "EVT_DIMSE_SENT", "DIMSE message encoded and P-DATA primitives sent to DUL"
)
EVT_ESTABLISHED = NotificationEvent("EVT_ESTABLISHED", "Association established")
EVT_FSM_TRANSITION = NotificationEvent("EVT_FSM_TRANSITION", "State machine about to transition")
EVT_PDU_RECV = NotificationEvent("EVT_PDU_RECV", "PDU received and decoded")
EVT_PDU_SENT = NotificationEvent("EVT_PDU_SENT", "PDU encoded and sent")
EVT_REJECTED = NotificationEvent("EVT_REJECTED", "Association request rejected")
EVT_RELEASED = NotificationEvent("EVT_RELEASED", "Association released")
EVT_REQUESTED = NotificationEvent("EVT_REQUESTED", "Association requested")

EVT_ASYNC_OPS = InterventionEvent(
    "EVT_ASYNC_OPS", "Asynchronous operations negotiation requested"
)
EVT_SOP_COMMON = InterventionEvent(
    "EVT_SOP_COMMON", "SOP class common extended negotiation requested"
)
EVT_SOP_EXTENDED = InterventionEvent(
    "EVT_SOP_EXTENDED", "SOP class extended negotiation requested"
)
EVT_USER_ID = InterventionEvent("EVT_USER_ID", "User identity negotiation requested")
EVT_C_ECHO = InterventionEvent("EVT_C_ECHO", "C-ECHO request received")
EVT_C_STORE = InterventionEvent("EVT_C_STORE", "C-STORE request received")

# The events that cost work per PDU (a copy, a decode, a call): a driver
# watches for them only while one of them has a handler.
WIRE_EVENTS = frozenset(
    {EVT_DATA_RECV, EVT_DATA_SENT, EVT_PDU_RECV, EVT_PDU_SENT, EVT_FSM_TRANSITION}
)

# Canonical instance of every supported event, looked up by tuple equality.
_EVENTS: dict[EventType, EventType] = {
    event: event
    for event in (
        EVT_ABORTED, EVT_ACCEPTED, EVT_ACSE_RECV, EVT_ACSE_SENT, EVT_CONN_CLOSE, EVT_CONN_OPEN,
        EVT_DATA_RECV, EVT_DATA_SENT, EVT_DIMSE_RECV, EVT_DIMSE_SENT, EVT_ESTABLISHED,
        EVT_FSM_TRANSITION, EVT_PDU_RECV, EVT_PDU_SENT, EVT_REJECTED, EVT_RELEASED,
        EVT_REQUESTED, EVT_ASYNC_OPS, EVT_SOP_COMMON, EVT_SOP_EXTENDED, EVT_USER_ID,
        EVT_C_ECHO, EVT_C_STORE,
    )
}  # fmt: skip

# -- hsscp's own notification events: after the built-in storage put a file in place.
# Emitted by the multiprocess server (workers=N), whose pipeline process runs their
# handlers; attributes: see workers.pipeline. In-process servers have no built-in storage.
EVT_INSTANCE_STORED = NotificationEvent("EVT_INSTANCE_STORED", "Instance stored by the built-in storage")
EVT_SERIES_COMPLETE = NotificationEvent("EVT_SERIES_COMPLETE", "No new instance of a series for its timeout")
EVT_STUDY_COMPLETE = NotificationEvent("EVT_STUDY_COMPLETE", "No new instance of a study for its timeout")
PIPELINE_EVENTS = (EVT_INSTANCE_STORED, EVT_SERIES_COMPLETE, EVT_STUDY_COMPLETE)
_EVENTS.update({event: event for event in PIPELINE_EVENTS})
__all__ += ["EVT_INSTANCE_STORED", "EVT_SERIES_COMPLETE", "EVT_STUDY_COMPLETE", "PIPELINE_EVENTS"]


def canonical(event: Any) -> EventType:
    """hsscp's instance of ``event`` (ours or pynetdicom's tuple); TypeError/ValueError if none."""
    try:
        return _EVENTS[event]
    except TypeError:
        raise TypeError(f"{event!r} is not an event: use one of the evt.EVT_* events") from None
    except KeyError:
        pass
    if isinstance(event, tuple) and len(event) == 4 and isinstance(event[0], str):
        raise ValueError(f"hsscp does not support the event '{event[0]}'")
    raise TypeError(f"{event!r} is not an event: use one of the evt.EVT_* events")


# -- what happens when nobody bound an intervention event (pynetdicom's defaults) ------


def _async_ops_handler(event: Any) -> tuple[int, int]:
    raise NotImplementedError(
        "No handler has been bound to 'evt.EVT_ASYNC_OPS', so the server's own "
        "Asynchronous Operations Window answer is sent"
    )


def _sop_common_handler(event: Any) -> dict:
    return {}


def _sop_extended_handler(event: Any) -> dict:
    return {}


def _user_identity_handler(event: Any) -> tuple[bool, bytes | None]:
    raise NotImplementedError(
        "No handler has been bound to 'evt.EVT_USER_ID', so the User Identity "
        "Negotiation will be ignored and the association accepted (unless "
        "rejected for another reason)"
    )


def _c_echo_handler(event: Any) -> int:
    return 0x0000


def _c_store_handler(event: Any) -> int:
    raise NotImplementedError("No handler has been bound to 'evt.EVT_C_STORE'")


_DEFAULT_HANDLERS: dict[EventType, Callable[[Any], Any]] = {
    EVT_ASYNC_OPS: _async_ops_handler,
    EVT_SOP_COMMON: _sop_common_handler,
    EVT_SOP_EXTENDED: _sop_extended_handler,
    EVT_USER_ID: _user_identity_handler,
    EVT_C_ECHO: _c_echo_handler,
    EVT_C_STORE: _c_store_handler,
}


def get_default_handler(event: InterventionEvent) -> Callable[[Any], Any]:
    """The handler that answers ``event`` when none is bound, as pynetdicom's ``get_default_handler``."""
    return _DEFAULT_HANDLERS[canonical(event)]
