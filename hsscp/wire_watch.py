"""The per-PDU events of one association, for drivers to feed only while a handler wants them.

``EVT_DATA_RECV``/``EVT_DATA_SENT`` carry each whole PDU's bytes (``event.data``),
``EVT_PDU_RECV``/``EVT_PDU_SENT`` the PDU decoded (``event.pdu``), as
pynetdicom's do; ``EVT_FSM_TRANSITION`` each step of the state machine
(``current_state``, ``fsm_event``, ``action``, ``next_state``). All of them
copy or call per PDU, so a driver asks :func:`wire_watch` once per change
of the bindings and, while nobody watches, does nothing per PDU at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hsscp.event_types import (
    EVT_DATA_RECV,
    EVT_DATA_SENT,
    EVT_FSM_TRANSITION,
    EVT_PDU_RECV,
    EVT_PDU_SENT,
    NotificationEvent,
)
from hsscp.pdu import PDU_HEADER_LENGTH
from hsscp.pdu_observer import PduObserver

__all__ = ["PduFramer", "WireWatch", "transition_hook", "wire_watch"]

Notify = Callable[..., None]  # notify(event, **attrs)


class PduFramer:
    """Cuts a byte stream into whole PDUs (header and body), each as its own bytes."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: Any) -> list[bytes]:
        pending = self._pending
        pending += data
        whole, offset = [], 0
        while len(pending) - offset >= PDU_HEADER_LENGTH:
            end = offset + PDU_HEADER_LENGTH + int.from_bytes(pending[offset + 2 : offset + 6], "big")
            if end > len(pending):
                break
            whole.append(bytes(pending[offset:end]))
            offset = end
        del pending[:offset]
        return whole


class _Direction:
    """One direction of the stream: its bytes framed for the data event, decoded for the PDU one."""

    __slots__ = ("_data_event", "_framer", "_observer", "_pdu_event")

    def __init__(self, data_event: NotificationEvent | None, pdu_event: NotificationEvent | None) -> None:
        self._data_event, self._pdu_event = data_event, pdu_event
        self._framer = PduFramer() if data_event is not None else None
        self._observer = PduObserver() if pdu_event is not None else None

    def feed(self, data: Any, notify: Notify) -> None:
        if self._framer is not None:
            for pdu_bytes in self._framer.feed(data):
                notify(self._data_event, data=pdu_bytes)
        if self._observer is not None:
            try:
                pdus = list(self._observer.feed(data))
            except Exception:  # the engine reports malformed input; watching only observes
                self._observer = None
                return
            for pdu in pdus:
                notify(self._pdu_event, pdu=pdu)


class WireWatch:
    """What was read and written on one association, told to its handlers PDU by PDU."""

    __slots__ = ("_notify", "_received", "_sent")

    def __init__(self, has: Callable[[NotificationEvent], bool], notify: Notify) -> None:
        self._notify = notify
        self._received = _Direction(
            EVT_DATA_RECV if has(EVT_DATA_RECV) else None, EVT_PDU_RECV if has(EVT_PDU_RECV) else None
        )
        self._sent = _Direction(
            EVT_DATA_SENT if has(EVT_DATA_SENT) else None, EVT_PDU_SENT if has(EVT_PDU_SENT) else None
        )

    def received(self, data: Any) -> None:
        """Bytes just read from the peer (before the engine parses them)."""
        self._received.feed(data, self._notify)

    def sent(self, buffers: list) -> None:
        """Buffers just written to the peer, in order."""
        for buffer in buffers:
            self._sent.feed(buffer, self._notify)


_BYTE_EVENTS = (EVT_DATA_RECV, EVT_DATA_SENT, EVT_PDU_RECV, EVT_PDU_SENT)


def wire_watch(has: Callable[[NotificationEvent], bool], notify: Notify) -> WireWatch | None:
    """A watch for the data and PDU events bound (``has(event)``), or None when none is."""
    return WireWatch(has, notify) if any(has(event) for event in _BYTE_EVENTS) else None


def transition_hook(
    has: Callable[[NotificationEvent], bool], notify: Notify
) -> Callable[[str, str, str, str], None] | None:
    """An ``Engine.on_transition`` hook for EVT_FSM_TRANSITION, or None when nobody watches."""
    if not has(EVT_FSM_TRANSITION):
        return None

    def transition(state: str, event: str, action: str, next_state: str) -> None:
        notify(
            EVT_FSM_TRANSITION,
            current_state=state,
            fsm_event=event,
            action=action,
            next_state=next_state,
        )

    return transition
