"""An in-process hsscp SCP and a pynetdicom one, for the drop-in tests to put side by side."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from pynetdicom import AE as PynetdicomAE
from pynetdicom import evt as pynetdicom_evt

from hsscp import AE

from .peers import HOST

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "the condition") -> None:
    """Wait for ``condition()`` (handlers of the other side run on their own threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def scp_ae(ae_class: type = AE, ae_title: str = "DROPIN-SCP") -> Any:
    """An AE (hsscp's or pynetdicom's) supporting Verification and CT in the default syntaxes."""
    ae = ae_class(ae_title=ae_title)
    ae.add_supported_context(VERIFICATION)
    ae.add_supported_context(CT_IMAGE, [EXPLICIT_LE, IMPLICIT_LE])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    return ae


def for_pynetdicom(handlers: list) -> list:
    """The same bindings with pynetdicom's own event objects (it checks their class, not their value)."""
    return [(getattr(pynetdicom_evt, event.name), *rest) for event, *rest in handlers]


@contextlib.contextmanager
def serving(handlers: list, ae_class: type = AE, **kwargs: Any) -> Iterator[tuple[Any, int]]:
    """An SCP (hsscp by default, or pynetdicom) on a free port: yields (server, port)."""
    ae = scp_ae(ae_class)
    if ae_class is PynetdicomAE:
        handlers = for_pynetdicom(handlers)
    server = ae.start_server((HOST, 0), block=False, evt_handlers=handlers, **kwargs)
    try:
        yield server, server.server_address[1]
    finally:
        server.shutdown()


def requestor(ae_class: type = PynetdicomAE) -> Any:
    """An AE (pynetdicom's by default) requesting Verification and CT."""
    ae = ae_class(ae_title="DROPIN-SCU")
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CT_IMAGE, [EXPLICIT_LE, IMPLICIT_LE])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    return ae
