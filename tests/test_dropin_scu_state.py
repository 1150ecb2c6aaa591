"""The blocking SCU knows what the peer did while nobody called it, without a reader thread.

pynetdicom's requestor has a reactor thread that sees an A-ABORT, an
A-RELEASE-RQ or a closed connection as it comes, and aborts an association
idle past the network timeout. hsscp's requestor reads what came when its
state is looked at or before it is used; these tests look only after the
peer has acted, and check that no thread was started for it.
"""

from __future__ import annotations

import threading
import time

import pytest
from pynetdicom import AE as PynetdicomAE

import hsscp
from hsscp import evt

from .dropin_peers import requestor, serving, until
from .peers import HOST


def _abort_when_established(event) -> None:
    event.assoc.abort()


@pytest.mark.parametrize("ae_class", [PynetdicomAE, None], ids=["pynetdicom-scp", "hsscp-scp"])
def test_an_abort_sent_while_nobody_reads_is_seen_when_the_state_is_read(ae_class) -> None:
    aborted = []
    kwargs = {} if ae_class is None else {"ae_class": ae_class}
    with serving([(evt.EVT_ESTABLISHED, _abort_when_established)], **kwargs) as (_, port):
        before = set(threading.enumerate())
        assoc = requestor(hsscp.AE).associate(HOST, port, evt_handlers=[(evt.EVT_ABORTED, aborted.append)])
        if ae_class is None:  # (a pynetdicom acceptor in this process starts threads of its own)
            assert set(threading.enumerate()) <= before  # the requestor started no reader thread
        until(lambda: assoc.is_aborted, what="the peer's abort to be read")
        assert not assoc.is_established and len(aborted) == 1
        if ae_class is None:  # pynetdicom's acceptor may close before its A-ABORT is out
            assert assoc.abort_indication.by_peer
        with pytest.raises(RuntimeError, match="must be established"):
            assoc.send_c_echo()


def test_a_connection_the_peer_closed_is_seen_before_the_next_operation() -> None:
    with serving([(evt.EVT_ESTABLISHED, _abort_when_established)]) as (_, port):
        assoc = requestor(hsscp.AE).associate(HOST, port)
        time.sleep(0.3)  # the abort and the close are in our socket; nothing has read them
        with pytest.raises(RuntimeError, match="must be established"):
            assoc.send_c_echo()  # checked first: nothing is written to a dead association
    assert assoc.is_aborted


def test_an_association_idle_past_the_network_timeout_is_aborted_when_next_used() -> None:
    peer_saw = []
    with serving([(evt.EVT_ABORTED, lambda event: peer_saw.append("aborted"))]) as (_, port):
        ae = requestor(hsscp.AE)
        ae.network_timeout = 0.3
        assoc = ae.associate(HOST, port)
        assert assoc.send_c_echo().Status == 0x0000  # used within the timeout: fine
        time.sleep(0.5)
        with pytest.raises(RuntimeError, match="must be established"):
            assoc.send_c_echo()
        assert assoc.is_aborted and not assoc.is_released
        until(lambda: peer_saw == ["aborted"], what="the peer to receive our A-ABORT")
        assert ae.active_associations == []


def test_an_association_in_use_is_not_idle() -> None:
    with serving([]) as (_, port):
        ae = requestor(hsscp.AE)
        ae.network_timeout = 0.4
        assoc = ae.associate(HOST, port)
        for msg_id in range(1, 9):  # 0.8 s in all, each answer within the timeout
            time.sleep(0.1)
            assert assoc.send_c_echo(msg_id=msg_id).Status == 0x0000
        assert assoc.is_established
        assoc.release()
        assert assoc.is_released


def test_pynetdicom_aborts_an_idle_association_too() -> None:
    # The behaviour the checks above reproduce, seen on pynetdicom's own requestor.
    with serving([]) as (_, port):
        ae = requestor(PynetdicomAE)
        ae.network_timeout = 0.3
        assoc = ae.associate(HOST, port)
        until(lambda: assoc.is_aborted, what="pynetdicom's reactor to abort")


def test_connection_timeout_is_pynetdicoms(caplog) -> None:
    ours, theirs = hsscp.AE(), PynetdicomAE()
    assert ours.connection_timeout is theirs.connection_timeout is None
    for value in (2.5, 0, -1, "3", None):
        ours.connection_timeout = theirs.connection_timeout = value
        assert ours.connection_timeout == theirs.connection_timeout
    assert "connection_timeout set to None" in caplog.text
    ours.connection_timeout = 4
    with serving([]) as (_, port):
        assoc = ours.associate(HOST, port, contexts=requestor(hsscp.AE).requested_contexts)
        assert assoc.connection_timeout == 4
        ours.connection_timeout = 7  # as in pynetdicom, a new value reaches the live associations
        assert assoc.connection_timeout == 7
        assoc.release()
