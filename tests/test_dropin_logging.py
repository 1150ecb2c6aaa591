"""hsscp prints the lines pynetdicom prints for the same exchange: at INFO, and at DEBUG.

The yardstick is pynetdicom itself: the same exchange is run with a
pynetdicom AE in this process and with an hsscp AE in its place, the peer
being one of pynetdicom's bundled apps in a process of its own (so that
only one side's lines are in this process's log). At DEBUG only the values
that name the implementation (UIDs, version names, AE titles) may differ.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE as PynetdicomAE
from pynetdicom import evt as pynetdicom_evt

import hsscp
from hsscp import evt

from .dropin_peers import CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE, VERIFICATION
from .peers import HOST, free_port, wait_for_port

CT_FILE = get_testdata_file("CT_small.dcm")  # Explicit VR Little Endian
# Values that name the implementation or the AE, not the exchange.
_OWN_VALUES = ("Implementation Class UID", "Implementation Version Name", "Application Name")


class Lines(logging.Handler):
    """The lines one logger tree printed, as ``I: message``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname[0]}: {record.getMessage()}")


@contextlib.contextmanager
def captured(name: str, level: int) -> Iterator[list[str]]:
    """Every line of the ``name`` logger tree at ``level`` (its children inherit the level)."""
    logger, exchange = logging.getLogger(name), logging.getLogger("hsscp.exchange")
    handler, old_levels = Lines(), (logger.level, exchange.level)
    logger.addHandler(handler)
    logger.setLevel(level)
    exchange.setLevel(logging.NOTSET)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_levels[0])
        exchange.setLevel(old_levels[1])


def _app(*args: str) -> list[str]:
    return [sys.executable, "-m", "pynetdicom", *args]


@contextlib.contextmanager
def pynetdicom_scp_app(app: str, tmp_path) -> Iterator[int]:
    port = free_port()
    argv = _app(app, str(port), *(["-od", str(tmp_path)] if app == "storescp" else []))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, 20, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def scu_lines(ae_class: type, app: str, level: int, tmp_path) -> list[str]:
    """What an SCU of ``ae_class`` logs for one echo or store, then release, with a pynetdicom peer."""
    ae = ae_class(ae_title="LOGSCU")
    ae.add_requested_context(VERIFICATION, [IMPLICIT_LE])
    ae.add_requested_context(CT_IMAGE, [EXPLICIT_LE])
    logger = "pynetdicom" if ae_class is PynetdicomAE else "hsscp"
    with pynetdicom_scp_app(app, tmp_path) as port, captured(logger, level) as lines:
        assoc = ae.associate(HOST, port)
        status = assoc.send_c_echo() if app == "echoscp" else assoc.send_c_store(CT_FILE)
        assoc.release()
    assert status.Status == 0x0000
    return lines


def scp_lines(ae_class: type, app: str, level: int) -> list[str]:
    """What an SCP of ``ae_class`` logs while one of pynetdicom's SCU apps echoes or stores."""
    ae = ae_class(ae_title="LOGSCP")
    ae.add_supported_context(VERIFICATION, [IMPLICIT_LE])
    ae.add_supported_context(CT_IMAGE, [EXPLICIT_LE])
    pynetdicom = ae_class is PynetdicomAE
    store = (pynetdicom_evt if pynetdicom else evt).EVT_C_STORE
    closed = (pynetdicom_evt if pynetdicom else evt).EVT_CONN_CLOSE
    done = []
    port = free_port()
    argv = _app("echoscu", HOST, str(port)) if app == "echoscu" else _app("storescu", HOST, str(port), CT_FILE)
    with captured("pynetdicom" if pynetdicom else "hsscp", level) as lines:
        server = ae.start_server((HOST, port), block=False,
                                 evt_handlers=[(store, lambda event: 0x0000), (closed, done.append)])  # fmt: skip
        try:
            finished = subprocess.run(argv, capture_output=True, timeout=60)
            assert finished.returncode == 0, finished.stderr
            _wait(lambda: done)
        finally:
            server.shutdown()
    return lines


def _wait(condition) -> None:
    import time

    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the association did not close"
        time.sleep(0.01)


def _exchange_only(lines: list[str]) -> list[str]:
    """The lines with the values that name each side blanked out.

    (pynetdicom decodes each command set with pydicom, which says so: not a line of the exchange.)
    """
    masked = []
    for line in lines:
        if line.startswith("D: pydicom."):
            continue
        if any(name in line for name in _OWN_VALUES):
            line = line.split(":", 2)[0] + ": " + line.split(":", 2)[1] + ": ..."
        masked.append(line)
    return masked


@pytest.mark.parametrize("app", ["echoscp", "storescp"])
def test_the_scu_prints_pynetdicoms_info_lines(app, tmp_path) -> None:
    theirs = scu_lines(PynetdicomAE, app, logging.INFO, tmp_path)
    ours = scu_lines(hsscp.AE, app, logging.INFO, tmp_path)
    assert ours == theirs
    assert "I: Requesting Association" in ours and any(line.startswith("I: Received ") for line in ours)


@pytest.mark.parametrize("app", ["echoscu", "storescu"])
def test_the_scp_prints_pynetdicoms_info_lines(app) -> None:
    theirs = scp_lines(PynetdicomAE, app, logging.INFO)
    ours = scp_lines(hsscp.AE, app, logging.INFO)
    assert ours == theirs
    assert ours[0] == "I: Accepting Association" and ours[-1] == "I: Association Released"


def test_the_scu_prints_pynetdicoms_pdu_summaries_and_dimse_blocks_at_debug(tmp_path) -> None:
    theirs = scu_lines(PynetdicomAE, "storescp", logging.DEBUG, tmp_path)
    ours = scu_lines(hsscp.AE, "storescp", logging.DEBUG, tmp_path)
    assert _exchange_only(ours) == _exchange_only(theirs)
    assert "D: Request Parameters:" in ours and "D: Accept Parameters:" in ours


def test_the_scp_prints_pynetdicoms_pdu_summaries_and_dimse_blocks_at_debug() -> None:
    theirs = scp_lines(PynetdicomAE, "storescu", logging.DEBUG)
    ours = scp_lines(hsscp.AE, "storescu", logging.DEBUG)
    assert _exchange_only(ours) == _exchange_only(theirs)
    assert "D: Message Type                  : C-STORE RQ" in ours


def test_the_lines_per_message_are_not_formatted_when_their_level_is_off(monkeypatch) -> None:
    from hsscp import protocol_log

    def formatted(*args, **kwargs):
        raise AssertionError("a DIMSE line was formatted with INFO off")

    monkeypatch.setattr(protocol_log, "_store_request", formatted)
    monkeypatch.setattr(protocol_log, "_echo_request", formatted)
    logger = logging.getLogger("hsscp.exchange")
    old_level = logger.level
    logger.setLevel(logging.WARNING)  # setLevel, not the attribute: it clears the level cache
    ae = hsscp.AE()
    ae.add_supported_context(CT_IMAGE, [EXPLICIT_LE])
    ae.add_supported_context(VERIFICATION, [IMPLICIT_LE])
    with contextlib.ExitStack() as stack:
        stack.callback(logger.setLevel, old_level)
        server = ae.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])
        stack.callback(server.shutdown)
        scu = hsscp.AE()
        scu.add_requested_context(CT_IMAGE, [EXPLICIT_LE])
        scu.add_requested_context(VERIFICATION, [IMPLICIT_LE])
        assoc = scu.associate(HOST, server.server_address[1])
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(CT_FILE).Status == 0x0000
        assoc.release()
