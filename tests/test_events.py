"""Events: pynetdicom's names, handler binding, handler results and lazy data sets."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import UID
from pynetdicom import evt as pynetdicom_evt

from hsscp import events, evt
from hsscp.dimse import CEchoRQ, CStoreRQ
from hsscp.events import (
    EVT_C_ECHO,
    EVT_C_STORE,
    EVT_CONN_OPEN,
    EVT_PDU_RECV,
    Event,
    HandlerSet,
    normalize_handlers,
    status_from_result,
)
from hsscp.part10 import read_file_meta
from hsscp.presentation import PresentationContextTuple
from hsscp.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

NOTIFICATIONS = [
    "EVT_ABORTED", "EVT_ACCEPTED", "EVT_CONN_CLOSE", "EVT_CONN_OPEN", "EVT_DIMSE_RECV",
    "EVT_DIMSE_SENT", "EVT_ESTABLISHED", "EVT_PDU_RECV", "EVT_PDU_SENT", "EVT_REJECTED",
    "EVT_RELEASED", "EVT_REQUESTED",
]
INTERVENTIONS = ["EVT_C_ECHO", "EVT_C_STORE"]


def received(name: str) -> tuple[bytes, object]:
    """The data set bytes of a pydicom test file, as a peer would send them, and its meta."""
    with open(get_testdata_file(name), "rb") as fp:
        meta = read_file_meta(fp)
        return fp.read(), meta


def store_event(name: str = "CT_small.dcm", assoc: object = None) -> Event:
    data, meta = received(name)
    request = CStoreRQ(7, meta.sop_class_uid, meta.sop_instance_uid)
    context = PresentationContextTuple(1, UID(meta.sop_class_uid), UID(meta.transfer_syntax))
    attrs = {"request": request, "context": context, "encoded_dataset": memoryview(data)}
    return Event(assoc, EVT_C_STORE, attrs)


def echo_event() -> Event:
    context = PresentationContextTuple(1, UID("1.2.840.10008.1.1"), UID("1.2.840.10008.1.2"))
    return Event(None, EVT_C_ECHO, {"request": CEchoRQ(3), "context": context})


# -- event types -----------------------------------------------------------------


@pytest.mark.parametrize("name", NOTIFICATIONS + INTERVENTIONS)
def test_events_match_pynetdicom(name: str) -> None:
    ours, theirs = getattr(evt, name), getattr(pynetdicom_evt, name)
    assert ours == theirs
    assert (ours.name, ours.description) == (theirs.name, theirs.description)
    assert (ours.is_intervention, ours.is_notification) == (theirs.is_intervention, theirs.is_notification)
    assert str(ours) == name
    assert ours is getattr(events, name)


def test_event_kinds() -> None:
    assert all(getattr(evt, name).is_notification for name in NOTIFICATIONS)
    assert all(isinstance(getattr(evt, name), evt.NotificationEvent) for name in NOTIFICATIONS)
    assert all(isinstance(getattr(evt, name), evt.InterventionEvent) for name in INTERVENTIONS)
    assert not EVT_C_STORE.is_notification and EVT_C_STORE.is_intervention


# -- normalize_handlers --------------------------------------------------------------


def handler_a(event: Event) -> None:
    pass


def handler_b(event: Event, *args: object) -> None:
    pass


def test_normalize_two_and_three_tuples() -> None:
    handlers = normalize_handlers([(EVT_CONN_OPEN, handler_a), (EVT_CONN_OPEN, handler_b, ["x", 1])])
    assert handlers == {EVT_CONN_OPEN: [(handler_a, []), (handler_b, ["x", 1])]}


def test_normalize_nothing() -> None:
    assert normalize_handlers(None) == {}
    assert normalize_handlers([]) == {}


def test_normalize_drops_duplicate_notification_bindings() -> None:
    handlers = normalize_handlers([(EVT_CONN_OPEN, handler_a), (EVT_CONN_OPEN, handler_a)])
    assert handlers[EVT_CONN_OPEN] == [(handler_a, [])]


def test_intervention_event_keeps_the_last_handler() -> None:
    handlers = normalize_handlers([(EVT_C_STORE, handler_a), (EVT_C_STORE, handler_b, [1])])
    assert handlers == {EVT_C_STORE: [(handler_b, [1])]}


def test_pynetdicom_event_tuples_are_accepted() -> None:
    handlers = normalize_handlers([(pynetdicom_evt.EVT_C_STORE, handler_a)])
    assert handlers[EVT_C_STORE] == [(handler_a, [])]
    assert next(iter(handlers)) is EVT_C_STORE


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ([("EVT_C_STORE", handler_a)], TypeError, "not an event"),
        ([(42, handler_a)], TypeError, "not an event"),
        ([([1], handler_a)], TypeError, "not an event"),
        ([(pynetdicom_evt.EVT_C_FIND, handler_a)], ValueError, "does not support the event 'EVT_C_FIND'"),
        ([(evt.InterventionEvent("EVT_X", "made up"), handler_a)], ValueError, "EVT_X"),
        ([(EVT_C_STORE, "handler")], TypeError, "must be callable"),
        ([(EVT_C_STORE, handler_a, "args")], TypeError, "must be a list"),
        ([(EVT_C_STORE, handler_a, 5)], TypeError, "must be a list"),
        ([(EVT_C_STORE,)], TypeError, r"\(event, handler\)"),
        ([(EVT_C_STORE, handler_a, [], 4)], TypeError, r"\(event, handler\)"),
        ([EVT_C_STORE], TypeError, r"\(event, handler\)"),
        ((EVT_C_STORE, handler_a), TypeError, r"\(event, handler\)"),
        ("EVT_C_STORE", TypeError, "must be a list"),
        (5, TypeError, "must be a list"),
    ],
)
def test_normalize_rejects(bad: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        normalize_handlers(bad)


# -- HandlerSet -----------------------------------------------------------------------


def test_bind_unbind_get_has() -> None:
    handlers = HandlerSet([(EVT_CONN_OPEN, handler_a)])
    assert handlers.has(EVT_CONN_OPEN) and not handlers.has(EVT_PDU_RECV)
    handlers.bind(EVT_CONN_OPEN, handler_b, ["arg"])
    assert handlers.get_handlers(EVT_CONN_OPEN) == [(handler_a, []), (handler_b, ["arg"])]
    handlers.unbind(EVT_CONN_OPEN, handler_a)
    assert handlers.get_handlers(EVT_CONN_OPEN) == [(handler_b, ["arg"])]
    handlers.unbind(EVT_CONN_OPEN, handler_b)
    assert not handlers.has(EVT_CONN_OPEN)
    assert handlers.get_handlers(EVT_CONN_OPEN) == []
    handlers.unbind(EVT_CONN_OPEN, handler_b)  # unknown bindings are ignored


def test_bind_intervention_replaces() -> None:
    handlers = HandlerSet()
    handlers.bind(EVT_C_ECHO, handler_a)
    handlers.bind(EVT_C_ECHO, handler_b)
    assert handlers.get_handlers(EVT_C_ECHO) == [(handler_b, [])]


def test_bind_validates() -> None:
    with pytest.raises(TypeError, match="callable"):
        HandlerSet().bind(EVT_C_ECHO, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an event"):
        HandlerSet().has("EVT_C_ECHO")  # type: ignore[arg-type]


def test_get_handlers_returns_a_copy() -> None:
    handlers = HandlerSet([(EVT_CONN_OPEN, handler_a)])
    handlers.get_handlers(EVT_CONN_OPEN).clear()
    assert handlers.has(EVT_CONN_OPEN)


def test_notify_calls_every_handler_with_its_args() -> None:
    calls = []
    assoc = object()
    handlers = HandlerSet([
        (EVT_CONN_OPEN, lambda event: calls.append(("first", event))),
        (EVT_CONN_OPEN, lambda event, *args: calls.append(("second", event, args)), [1, 2]),
    ])
    handlers.notify(assoc, EVT_CONN_OPEN, address=("127.0.0.1", 104))
    (first, event), (second, same, args) = calls
    assert (first, second, args) == ("first", "second", (1, 2))
    assert event is same and event.assoc is assoc and event.event is EVT_CONN_OPEN
    assert event.address == ("127.0.0.1", 104)


def test_notify_without_handlers_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "Event", None)  # would fail if called
    HandlerSet().notify(None, EVT_CONN_OPEN, address=("", 0))


def test_notify_logs_and_swallows_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    handlers = HandlerSet([(EVT_CONN_OPEN, broken), (EVT_CONN_OPEN, lambda event: calls.append(1))])
    with caplog.at_level(logging.ERROR, logger="hsscp.events"):
        handlers.notify(None, EVT_CONN_OPEN)
    assert calls == [1]
    assert "EVT_CONN_OPEN" in caplog.text and "broken" in caplog.text and "boom" in caplog.text


@pytest.mark.parametrize(("event", "status"), [(EVT_C_ECHO, 0x0000), (EVT_C_STORE, 0xC211)])
def test_intervene_default_without_handler(event: events.InterventionEvent, status: int) -> None:
    assert HandlerSet().intervene(None, event) == status


@pytest.mark.parametrize(("event", "status"), [(EVT_C_ECHO, 0x0000), (EVT_C_STORE, 0xC211)])
def test_intervene_handler_exception(
    event: events.InterventionEvent, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> int:
        raise ValueError("bad handler")

    with caplog.at_level(logging.ERROR, logger="hsscp.events"):
        assert HandlerSet([(event, broken)]).intervene(None, event) == status
    assert "bad handler" in caplog.text and event.name in caplog.text


def test_intervene_returns_the_handler_result() -> None:
    seen = []

    def handle(event: Event, extra: str) -> Dataset:
        seen.append((event.event, event.message_id, extra))
        result = Dataset()
        result.Status = 0xB000
        return result

    handlers = HandlerSet([(EVT_C_STORE, handle, ["x"])])
    result = handlers.intervene(None, EVT_C_STORE, request=CStoreRQ(9, "1.2", "1.3"))
    assert result.Status == 0xB000
    assert seen == [(EVT_C_STORE, 9, "x")]


def test_intervene_needs_an_intervention_event() -> None:
    with pytest.raises(ValueError, match="not an intervention event"):
        HandlerSet().intervene(None, EVT_CONN_OPEN)  # type: ignore[arg-type]


# -- status_from_result ----------------------------------------------------------------


def test_status_from_int() -> None:
    assert status_from_result(0x0000) == (0x0000, {})
    assert status_from_result(0xA700) == (0xA700, {})
    assert status_from_result(0x0000, EVT_C_ECHO) == (0x0000, {})


def test_status_from_dataset_with_store_fields() -> None:
    result = Dataset()
    result.Status = 0xC000
    result.ErrorComment = "Cannot parse"
    result.OffendingElement = [0x00100010, 0x00100020]
    result.ErrorID = 5
    status, extra = status_from_result(result)
    assert status == 0xC000
    assert extra == {
        "error_comment": "Cannot parse",
        "offending_element": [0x00100010, 0x00100020],
        "error_id": 5,
    }
    assert all(type(value) in (str, int, list) for value in extra.values())


def test_status_from_dataset_single_offending_element() -> None:
    result = Dataset()
    result.Status = 0xA900
    result.OffendingElement = 0x00080016
    assert status_from_result(result) == (0xA900, {"offending_element": [0x00080016]})


def test_status_dataset_unsupported_elements_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    result = Dataset()
    result.Status = 0x0000
    result.PatientName = "X"
    with caplog.at_level(logging.WARNING, logger="hsscp.events"):
        assert status_from_result(result) == (0x0000, {})
    assert "PatientName" in caplog.text


def test_echo_status_dataset_keeps_the_error_comment_only() -> None:
    # A C-ECHO-RSP carries an Error Comment (PS3.7 9.1.5.1), nothing else of a status data set.
    result = Dataset()
    result.Status = 0x0122
    result.ErrorComment = "not today"
    result.OffendingElement = 0x00080016
    assert status_from_result(result, EVT_C_ECHO) == (0x0122, {"error_comment": "not today"})


@pytest.mark.parametrize(
    ("result", "store", "echo"),
    [
        (Dataset(), 0xC001, 0x0000),  # no Status element
        (None, 0xC002, 0x0000),
        ("0x0000", 0xC002, 0x0000),
        (1.0, 0xC002, 0x0000),
        (-1, 0xC002, 0x0000),
        (0x10000, 0xC002, 0x0000),
    ],
)
def test_unusable_results(result: object, store: int, echo: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="hsscp.events"):
        assert status_from_result(result) == (store, {})
        assert status_from_result(result, EVT_C_ECHO) == (echo, {})
    assert caplog.records


# -- Event ---------------------------------------------------------------------------------


def test_event_basics() -> None:
    before = datetime.now()
    event = echo_event()
    assert before <= event.timestamp <= datetime.now()
    assert event.event is EVT_C_ECHO and event.assoc is None
    assert event.message_id == 3
    assert event.request == CEchoRQ(3)
    assert event.context.context_id == 1
    assert not hasattr(event, "__dict__")


def test_event_attrs_are_attributes() -> None:
    event = Event(None, EVT_PDU_RECV, {"pdu": b"\x01", "address": ("h", 1)})
    assert event.pdu == b"\x01" and event.address == ("h", 1)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = event.missing


def test_event_attrs_cannot_shadow_members() -> None:
    with pytest.raises(AttributeError, match="already has an attribute 'timestamp'"):
        Event(None, EVT_CONN_OPEN, {"timestamp": 1})
    with pytest.raises(AttributeError, match="already has an attribute 'dataset'"):
        Event(None, EVT_CONN_OPEN, {"dataset": 1})


@pytest.mark.parametrize("name", ["dataset", "file_meta", "message_id", "request", "context"])
def test_event_without_dimse_attributes(name: str) -> None:
    with pytest.raises(AttributeError):
        getattr(Event(None, EVT_CONN_OPEN), name)


def test_echo_event_has_no_dataset() -> None:
    event = echo_event()
    with pytest.raises(AttributeError, match="not a C-STORE request"):
        _ = event.dataset
    with pytest.raises(AttributeError, match="not a C-STORE request"):
        _ = event.file_meta
    with pytest.raises(AttributeError, match="not a C-STORE request"):
        event.encoded_dataset()


def test_dataset_is_decoded_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = events.read_dataset

    def counting(*args: object, **kwargs: object) -> Dataset:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(events, "read_dataset", counting)
    event = store_event()
    assert event.encoded_dataset(include_meta=False)
    _ = event.file_meta
    assert calls == []
    first = event.dataset
    assert len(calls) == 1
    assert event.dataset is first
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("name", "implicit", "little"),
    [
        ("CT_small.dcm", False, True),
        ("MR_small_implicit.dcm", True, True),
        ("MR_small_bigendian.dcm", False, False),
        ("image_dfl.dcm", False, True),
    ],
)
def test_dataset_decoding(name: str, implicit: bool, little: bool) -> None:
    expected = dcmread(get_testdata_file(name))
    ds = store_event(name).dataset
    assert ds.SOPInstanceUID == expected.SOPInstanceUID
    assert ds.PatientName == expected.PatientName
    assert ds.original_encoding == (implicit, little)
    assert ds == expected  # every element, pixel data included


def test_empty_dataset_decodes_empty() -> None:
    request = CStoreRQ(1, "1.2.840.10008.5.1.4.1.1.7", "1.2.3")
    context = PresentationContextTuple(1, UID("1.2.840.10008.5.1.4.1.1.7"), UID("1.2.840.10008.1.2"))
    event = Event(None, EVT_C_STORE, {"request": request, "context": context, "encoded_dataset": b""})
    assert event.dataset == Dataset()


def test_file_meta() -> None:
    data, meta = received("MR_small_bigendian.dcm")
    fm = store_event("MR_small_bigendian.dcm").file_meta
    assert fm.MediaStorageSOPClassUID == meta.sop_class_uid
    assert fm.MediaStorageSOPInstanceUID == meta.sop_instance_uid
    assert fm.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    assert fm.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert fm.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert "SourceApplicationEntityTitle" not in fm


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"])
def test_encoded_dataset_is_a_part10_file_of_the_received_bytes(name: str) -> None:
    data, meta = received(name)
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="STORESCU  "))
    event = store_event(name, assoc)
    encoded = event.encoded_dataset()
    assert isinstance(encoded, bytes)
    assert encoded.endswith(data)
    assert encoded[128:132] == b"DICM"
    ds = dcmread(DicomBytesIO(encoded))
    assert ds.file_meta.MediaStorageSOPClassUID == meta.sop_class_uid
    assert ds.file_meta.MediaStorageSOPInstanceUID == meta.sop_instance_uid
    assert ds.file_meta.TransferSyntaxUID == meta.transfer_syntax
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert ds.file_meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert ds.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert ds == dcmread(get_testdata_file(name))
    assert event.file_meta.SourceApplicationEntityTitle == "STORESCU"


def test_encoded_dataset_without_meta_is_the_bare_bytes() -> None:
    data, _ = received("CT_small.dcm")
    bare = store_event().encoded_dataset(include_meta=False)
    assert bare == data and isinstance(bare, bytes)


@pytest.mark.parametrize("title", [None, "", b"BAD\\TITLE", 7])
def test_unusable_source_ae_title_is_left_out(title: object) -> None:
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title=title))
    ds = dcmread(DicomBytesIO(store_event(assoc=assoc).encoded_dataset()))
    assert "SourceApplicationEntityTitle" not in ds.file_meta
