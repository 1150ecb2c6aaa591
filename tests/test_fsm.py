"""Every transition of PS3.8 table 9-10, reached through the engine's public inputs."""

from __future__ import annotations

import pytest

from hsscp import dimse, fsm, pdu
from hsscp.engine import Engine, Role
from hsscp.errors import LocalProtocolError

from .engine_pair import IMPLICIT_LE, VERIFICATION, accept_all, associate_rq

REQUEST = associate_rq([(VERIFICATION, (IMPLICIT_LE,))])
RESPONSE = accept_all(REQUEST)
ECHO_PDATA = pdu.encode_pdu(pdu.PDataTF([pdu.PDV(1, 3, dimse.encode_command(dimse.CEchoRQ(1)))]))

# How each event is caused from outside the engine.
CAUSES = {
    "Evt1": lambda e: e.request_association(REQUEST),
    "Evt2": lambda e: e.connection_made(),
    "Evt3": lambda e: e.receive_data(pdu.encode_pdu(RESPONSE)),
    "Evt4": lambda e: e.receive_data(pdu.encode_pdu(pdu.AAssociateRJ(1, 1, 1))),
    "Evt5": lambda e: e.connection_made(),
    "Evt6": lambda e: e.receive_data(pdu.encode_pdu(REQUEST)),
    "Evt7": lambda e: e.accept(RESPONSE),
    "Evt8": lambda e: e.reject(1, 1, 1),
    "Evt9": lambda e: e.send_message(1, dimse.CEchoRQ(1)),
    "Evt10": lambda e: e.receive_data(ECHO_PDATA),
    "Evt11": lambda e: e.release(),
    "Evt12": lambda e: e.receive_data(pdu.encode_pdu(pdu.AReleaseRQ())),
    "Evt13": lambda e: e.receive_data(pdu.encode_pdu(pdu.AReleaseRP())),
    "Evt14": lambda e: e.release_response(),
    "Evt15": lambda e: e.abort(),
    "Evt16": lambda e: e.receive_data(pdu.encode_pdu(pdu.AAbort(0, 0))),
    "Evt17": lambda e: e.connection_lost(),
    "Evt18": lambda e: e.timer_expired(),
    "Evt19": lambda e: e.receive_data(b"\x09\x00\x00\x00\x00\x00"),
}

REQUESTOR_STATES = {"Sta4", "Sta5", "Sta9", "Sta11"}
REQUESTOR_EVENTS = {"Evt1", "Evt2"}


def engine_in(state: str, event: str) -> Engine:
    role = Role.REQUESTOR if state in REQUESTOR_STATES or event in REQUESTOR_EVENTS else Role.ACCEPTOR
    engine = Engine(role)
    engine.state = state
    engine.request = REQUEST
    engine.response = RESPONSE if state not in ("Sta2", "Sta3", "Sta4", "Sta5") else None
    engine.accepted_context_ids = frozenset({1})
    return engine


@pytest.mark.parametrize(("event", "state"), sorted(fsm.TRANSITIONS))
def test_transition(event, state):
    action = fsm.TRANSITIONS[(event, state)]
    engine = engine_in(state, event)
    CAUSES[event](engine)
    assert engine.last_action == action
    expected = fsm.NEXT_STATE[action]
    if isinstance(expected, tuple):
        expected = expected[0] if engine.role is Role.REQUESTOR or action == "AE-6" else expected[1]
    assert engine.state == expected


def test_every_state_event_and_action_is_named_as_the_standard_does():
    assert set(fsm.STATES) == {f"Sta{n}" for n in range(1, 14)}
    assert set(fsm.EVENTS) == {f"Evt{n}" for n in range(1, 20)}
    assert set(fsm.TRANSITIONS.values()) == set(fsm.ACTIONS) == set(fsm.NEXT_STATE)
    assert {event for event, _ in fsm.TRANSITIONS} == set(fsm.EVENTS)


@pytest.mark.parametrize("event", sorted(fsm.LOCAL_EVENTS))
def test_local_events_outside_the_table_raise(event):
    for state in fsm.STATES:
        if (event, state) in fsm.TRANSITIONS:
            continue
        engine = engine_in(state, event)
        with pytest.raises(LocalProtocolError):
            CAUSES[event](engine)
        assert engine.state == state


def test_aa8_sends_a_provider_abort_with_unexpected_pdu():
    engine = engine_in("Sta6", "Evt6")
    CAUSES["Evt6"](engine)
    assert pdu.decode_pdu(b"".join(engine.pop_output())) == pdu.AAbort(2, 2)
    assert engine.artim_running
