"""Fuzzing properties of everything that reads untrusted bytes.

Each reader either succeeds or raises the protocol error (RemoteProtocolError;
PeekError for the data set peek; LocalProtocolError for a local request the
state forbids), never any other exception; no allocation follows a length
field before the bytes it announces have arrived; nothing hangs (every
example runs under an alarm). Inputs are the PDUs recorded from real peers
(tests/fixtures) and generated ones, mutated: bit flips, lying lengths,
truncations, insertions, splices. HSSCP_FUZZ_EXAMPLES sets how many examples
each property tries (100 by default; the state machine gets twice that).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from hsscp import dimse, fsm, items, pdu
from hsscp.dataset_peek import PeekError, peek_elements
from hsscp.engine import Engine, Role
from hsscp.errors import LocalProtocolError, RemoteProtocolError
from hsscp.reader import PDATA, PDATA_WHOLE, PDU, PDV, PduReader

from . import strategies
from .datagen import instance
from .engine_pair import accept_all, associate_rq
from .streams import read_pdus

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
RECORDED = [(FIXTURES / entry["file"]).read_bytes() for entry in MANIFEST["fixtures"]]
EXAMPLES = int(os.environ.get("HSSCP_FUZZ_EXAMPLES", "100"))  # raise it for a longer hunt
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a hang is caught by the alarm; slow CI machines are not failures
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
EXAMPLE_SECONDS = 10  # far beyond what any example needs: only a hang gets here


@contextlib.contextmanager
def bounded(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """Turn a hang into a failure: SIGALRM raises in the main thread after ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- seeds: what real peers sent, taken apart ----------------------------------------


def _decoded(kind: type) -> list:
    found = []
    for data in RECORDED:
        message = pdu.decode_pdu(data)
        if isinstance(message, kind):
            found.append(message)
    return found


ASSOCIATE = _decoded(pdu.AAssociateRQ) + _decoded(pdu.AAssociateAC)
SUB_ITEMS = sorted({sub.encode() for message in ASSOCIATE for sub in message.user_information.sub_items})
CONTEXT_ITEMS = sorted({context.encode() for message in ASSOCIATE for context in message.presentation_contexts})
COMMANDS = sorted(
    {bytes(pdv.data) for message in _decoded(pdu.PDataTF) for pdv in message.pdvs if pdv.is_command and pdv.is_last}
)
assert SUB_ITEMS and CONTEXT_ITEMS and COMMANDS, "the recorded fixtures should hold every kind of seed"

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
STORAGE_TAGS = frozenset({0x00080016, 0x00080018, 0x0020000D, 0x0020000E})


def _dataset_seed() -> Dataset:
    ds = instance(7, pixel_bytes=256)
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = [item, item]  # between the SOP and the study UIDs
    return ds


def _encoded(ds: Dataset, little: bool, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


_SEED_DATASET = _dataset_seed()
DATASETS = {
    IMPLICIT_LE: _encoded(_SEED_DATASET, True, True),
    EXPLICIT_LE: _encoded(_SEED_DATASET, True, False),
    EXPLICIT_BE: _encoded(_SEED_DATASET, False, False),
}
DATASETS[DEFLATED] = _deflated(DATASETS[EXPLICIT_LE])


# -- mutations ---------------------------------------------------------------------------

LYING_LENGTHS = [0, 1, 2, 3, 4, 5, 6, 7, 0x7F, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]


def _flip(draw, data: bytearray) -> bytearray:
    if data:
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
    return data


def _set_byte(draw, data: bytearray) -> bytearray:
    if data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return data


def _lie_about_a_length(draw, data: bytearray) -> bytearray:
    """Overwrite 2 or 4 bytes (either byte order) with a length that is likely to be wrong."""
    width = draw(st.sampled_from([2, 4]))
    if len(data) < width:
        return data
    at = draw(st.integers(0, len(data) - width))
    value = draw(st.one_of(st.sampled_from(LYING_LENGTHS), st.integers(0, 2 ** (8 * width) - 1)))
    order = draw(st.sampled_from(["big", "little"]))
    data[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, order)
    return data


def _truncate(draw, data: bytearray) -> bytearray:
    return data[: draw(st.integers(0, len(data)))]


def _delete(draw, data: bytearray) -> bytearray:
    if data:
        start = draw(st.integers(0, len(data) - 1))
        del data[start : start + draw(st.integers(1, 64))]
    return data


def _insert(draw, data: bytearray) -> bytearray:
    at = draw(st.integers(0, len(data)))
    data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return data


def _duplicate(draw, data: bytearray) -> bytearray:
    if data:
        start = draw(st.integers(0, len(data) - 1))
        piece = data[start : start + draw(st.integers(1, 256))]
        at = draw(st.integers(0, len(data)))
        data[at:at] = piece
    return data


MUTATIONS: list[Callable] = [_flip, _set_byte, _lie_about_a_length, _truncate, _delete, _insert, _duplicate]


@st.composite
def mutated(draw, seeds: st.SearchStrategy[bytes], most: int = 4) -> bytes:
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(0, most))):
        data = draw(st.sampled_from(MUTATIONS))(draw, data)
    return bytes(data)


recorded_pdus = st.sampled_from(RECORDED)
generated_pdus = strategies.pdus.map(pdu.encode_pdu)
any_pdu_bytes = st.one_of(recorded_pdus, generated_pdus)
pdu_inputs = st.one_of(mutated(any_pdu_bytes), st.binary(max_size=64))
streams = st.lists(any_pdu_bytes, min_size=1, max_size=3).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[memoryview]:
    view = memoryview(data)
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [view[a:b] for a, b in zip(points, points[1:], strict=False)]


# -- the PDU decoder and the streaming reader ------------------------------------------------


NON_ASCII_CALLING = pdu.encode_pdu(associate_rq([("1.2.840.10008.1.1", ("1.2.840.10008.1.2",))])).replace(
    b"TEST-SCU", b"TEST-SC\xe9"
)


@FUZZ
@given(pdu_inputs)
def test_decode_pdu_parses_or_raises_the_protocol_error(data):
    with bounded(), contextlib.suppress(RemoteProtocolError):
        pdu.decode_pdu(data)


@FUZZ
@given(pdu_inputs)
@example(NON_ASCII_CALLING)
def test_what_decodes_encodes_again(data):
    """A PDU accepted from the wire can be encoded again: an acceptor echoes its AE titles.

    Otherwise the answer to a request decoded without complaint fails to encode.
    """
    with bounded():
        try:
            decoded = pdu.decode_pdu(data)
        except RemoteProtocolError:
            return
        assert pdu.decode_pdu(pdu.encode_pdu(decoded)) == decoded


def _outcome(chunks, max_pdata_length: int) -> tuple:
    """The PDUs a reader makes of ``chunks``, and the abort reason if it gave up."""
    reader = PduReader(max_pdata_length)
    try:
        return read_pdus(chunks, reader), None
    except RemoteProtocolError as error:
        return None, error.reason


@FUZZ
@given(
    st.one_of(mutated(streams), st.binary(max_size=128)),
    st.lists(st.integers(0, 2**16), max_size=12),
    st.sampled_from([0, 4096, 16384]),
)
def test_reader_gives_the_same_answer_for_any_chunking(data, cuts, max_pdata_length):
    with bounded():
        whole = _outcome([memoryview(data)], max_pdata_length)
        assert _outcome(chunked(data, cuts), max_pdata_length) == whole
        assert _outcome(chunked(data, list(range(1, len(data)))), max_pdata_length) == whole


@FUZZ
@given(st.one_of(mutated(streams), st.binary(max_size=128)), st.lists(st.integers(0, 2**16), max_size=12))
def test_reader_stages_no_more_than_has_arrived(data, cuts):
    reader = PduReader(0, max_control_length=4096)
    fed = 0
    with bounded(), contextlib.suppress(RemoteProtocolError):
        for chunk in chunked(data, cuts):
            fed += len(chunk)
            for item in reader.feed(chunk):
                if item[0] in (PDV, PDATA_WHOLE) and len(item[3]):
                    assert item[3].obj is chunk.obj  # a view of what was fed, not a copy
                assert len(reader._staged) <= min(fed, reader.max_control_length)


@pytest.mark.parametrize("pdu_type", [0x01, 0x02, 0x04, 0x07, 0x00, 0x99])
def test_a_length_field_of_4_gib_allocates_nothing(pdu_type):
    """Headers claiming 4 GiB, then 4 MiB of what follows: the reader allocates as it goes, not as told."""
    header = bytes([pdu_type, 0]) + (0xFFFFFFFF).to_bytes(4, "big")
    pdv_header = (0xFFFFFFFF - 4).to_bytes(4, "big") + b"\x01\x00"
    payload = memoryview(bytes(64 * 1024))
    reader = PduReader()
    kinds: list[int] = []
    tracemalloc.start()
    try:
        with bounded():
            kinds += [item[0] for item in reader.feed(header + pdv_header)]
            for _ in range(64):
                kinds += [item[0] for item in reader.feed(payload)]
    except RemoteProtocolError:
        assert pdu_type != 0x04, "a P-DATA-TF with no negotiated maximum streams; it is not refused"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 256 * 1024, f"{peak} bytes allocated while reading a 4 GiB header"
    assert len(reader._staged) <= 6
    if pdu_type == 0x04:
        assert kinds[0] == PDATA and set(kinds[1:]) == {PDV}


@pytest.mark.parametrize("role", list(Role))
def test_engine_refuses_a_pdata_over_the_negotiated_maximum_before_buffering_it(role):
    """After association, a length above what we announced aborts at the header (reason 6)."""
    requestor, acceptor = Engine(Role.REQUESTOR), Engine(Role.ACCEPTOR)
    requestor.request_association(associate_rq([("1.2.840.10008.1.1", (IMPLICIT_LE,))], max_pdu=16384))
    requestor.connection_made()
    acceptor.connection_made()
    acceptor.receive_data(b"".join(requestor.pop_output()))
    requestor.receive_data(b"".join(bytes(b) for b in acceptor.accept(accept_all(acceptor.request, 16384))))
    engine = requestor if role is Role.REQUESTOR else acceptor
    assert engine.state == "Sta6"
    (aborted,) = engine.receive_data(bytes([0x04, 0]) + (0xFFFFFFFF).to_bytes(4, "big"))
    assert (aborted.source, aborted.reason) == (2, 6)
    assert pdu.decode_pdu(b"".join(engine.pop_output())) == pdu.AAbort(2, 6)
    assert len(engine._reader._staged) == 0


# -- A-ASSOCIATE items and user information sub-items --------------------------------------------


sub_item_bytes = st.one_of(st.sampled_from(SUB_ITEMS), strategies.sub_items.map(lambda sub: sub.encode()))


def _value_of(item: bytes) -> tuple[int, int, memoryview]:
    view = memoryview(item)
    return (view[0], view[1], view[4:]) if len(view) >= 4 else (0, 0, view)


@FUZZ
@given(mutated(sub_item_bytes), st.lists(mutated(sub_item_bytes, most=2), max_size=4))
def test_user_information_sub_items_parse_or_raise_the_protocol_error(item, more):
    with bounded():
        _, version, value = _value_of(item)
        decoders = [*items.SUB_ITEM_DECODERS.values(), items.PresentationContextRQ.decode, items.PresentationContextAC.decode]
        for decode in decoders:  # every decoder meets every value, not only its own
            with contextlib.suppress(RemoteProtocolError):
                decode(value)
        with contextlib.suppress(RemoteProtocolError):
            items.SOPClassCommonExtendedNegotiation.decode(value, version)
        with contextlib.suppress(RemoteProtocolError):
            info = items.UserInformation.decode(memoryview(item + b"".join(more)))
            for name in ("maximum_length", "implementation_class_uid", "implementation_version_name",
                         "async_operations_window", "role_selections", "user_identity"):
                getattr(info, name)


@FUZZ
@given(mutated(st.sampled_from(CONTEXT_ITEMS)))
def test_presentation_context_items_parse_or_raise_the_protocol_error(item):
    with bounded():
        value = memoryview(item)[4:]
        for decode in (items.PresentationContextRQ.decode, items.PresentationContextAC.decode):
            with contextlib.suppress(RemoteProtocolError):
                decode(value)


# -- DIMSE command sets and message assembly -------------------------------------------------


def _command_of(command) -> bytes:
    return dimse.encode_command(command)


generated_commands = st.one_of(
    st.builds(dimse.CEchoRQ, st.integers(0, 0xFFFF)),
    st.builds(dimse.CEchoRSP, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(dimse.CStoreRQ, st.integers(0, 0xFFFF), strategies.uids, strategies.uids),
    st.builds(dimse.CStoreRSP, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), strategies.uids, strategies.uids,
              st.one_of(st.none(), st.text(max_size=80))),
).map(_command_of)
raw_elements = st.lists(
    st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=24), st.booleans()), max_size=8
).map(
    lambda elements: b"".join(
        (0).to_bytes(2, "little") + tag.to_bytes(2, "little")
        + (len(value) if honest else len(value) + 7).to_bytes(4, "little") + value
        for tag, value, honest in elements
    )
)
command_inputs = st.one_of(
    mutated(st.one_of(st.sampled_from(COMMANDS), generated_commands)), raw_elements, st.binary(max_size=64)
)


@FUZZ
@given(command_inputs)
def test_decode_command_parses_or_raises_the_protocol_error(data):
    with bounded():
        try:
            command = dimse.decode_command(data)
        except RemoteProtocolError:
            return
        assert isinstance(command, dimse.CEchoRQ | dimse.CEchoRSP | dimse.CStoreRQ | dimse.CStoreRSP | dimse.UnknownCommand)
        dimse.command_name(command.command_field)


fragments = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 1, 3, 0, 255]),
        st.integers(0, 255),  # message control header: bits 2-7 are not to be tested
        st.one_of(command_inputs, st.binary(max_size=200)),
        st.booleans(),
    ),
    max_size=10,
)


@FUZZ
@given(fragments)
def test_message_assembly_completes_messages_or_raises_the_protocol_error(pieces):
    assembler = dimse.MessageAssembler(max_command_length=1024)
    with bounded():
        for context_id, control, chunk, pdv_end in pieces:
            try:
                message = assembler.feed(context_id, control, memoryview(chunk), pdv_end)
            except RemoteProtocolError:
                assembler = dimse.MessageAssembler(max_command_length=1024)  # that association is over
                continue
            if message is not None:
                assert message.context_id == context_id
                assert (message.dataset is not None) == message.command.has_dataset


# -- the data set peek ----------------------------------------------------------------------------


tag_sets = st.one_of(
    st.just(STORAGE_TAGS),
    st.just(frozenset({0x00080016, 0x00080018})),
    st.frozensets(st.integers(0x00020000, 0xFFFEDFFF), min_size=1, max_size=4),
)


@FUZZ
@given(st.data(), st.sampled_from(sorted(DATASETS)), tag_sets, st.booleans())
def test_peek_elements_returns_text_or_raises_peek_error(data, syntax, tags, complete):
    seed = DATASETS[syntax]
    if syntax == DEFLATED:  # mutate the inflated bytes too, not only the compressed stream
        raw = data.draw(mutated(st.just(DATASETS[EXPLICIT_LE])))
        blob = data.draw(st.one_of(st.just(_deflated(raw)), mutated(st.just(seed))))
    else:
        blob = data.draw(st.one_of(mutated(st.just(seed)), st.binary(max_size=64)))
    with bounded():
        try:
            found = peek_elements(blob, syntax, tags, complete=complete)
        except PeekError:
            return
    assert set(found) <= tags
    assert all(isinstance(value, str) for value in found.values())


def test_peek_finds_the_uids_in_every_seed():
    for syntax, blob in DATASETS.items():
        found = peek_elements(blob, syntax, STORAGE_TAGS)
        assert found[0x00080018] == _SEED_DATASET.SOPInstanceUID
        assert found[0x0020000E] == _SEED_DATASET.SeriesInstanceUID


# -- the state machine, for both roles --------------------------------------------------------------


VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _message(context_id: int, command, dataset: bytes | None, fragment: int) -> bytes:
    encoded = dimse.encode_command(command)
    return b"".join(
        bytes(b)
        for control, payload in dimse.iter_fragments(encoded, dataset, fragment)
        for b in pdu.pdata_buffers(context_id, control, payload)
    )


CONTEXTS = [(VERIFICATION, (IMPLICIT_LE,)), (CT, (EXPLICIT_LE,))]  # proposed as IDs 1 and 3
REQUEST = associate_rq(CONTEXTS)
_contexts = st.one_of(st.sampled_from([1, 3]), st.integers(0, 255))
_fragments = st.sampled_from([2, 64, 16378])
_requests = st.one_of(
    st.builds(dimse.CEchoRQ, st.integers(0, 0xFFFF)).map(lambda c: (c, None)),
    st.tuples(st.builds(dimse.CStoreRQ, st.integers(0, 0xFFFF), st.just(CT), strategies.uids), st.binary(max_size=300)),
)
_responses = st.one_of(
    st.builds(dimse.CEchoRSP, st.integers(0, 0xFFFF)),
    st.builds(dimse.CStoreRSP, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
).map(lambda c: (c, None))


def _messages(commands) -> st.SearchStrategy[bytes]:
    """Well-formed P-DATA-TF PDUs carrying one DIMSE message, on accepted or other contexts."""
    return st.builds(lambda c, pair, f: _message(c, pair[0], pair[1], f), _contexts, commands, _fragments)


def _wire(messages) -> st.SearchStrategy[bytes]:
    fixed = [REQUEST, accept_all(REQUEST), pdu.AReleaseRQ(), pdu.AReleaseRP(), pdu.AAbort(0, 0), pdu.AAbort(2, 6)]
    valid = st.one_of(st.sampled_from([pdu.encode_pdu(p) for p in fixed]), messages, messages, any_pdu_bytes)
    return st.one_of(
        valid, valid, mutated(valid), st.lists(valid, min_size=2, max_size=3).map(b"".join), st.binary(max_size=32)
    )


WIRE = {Role.ACCEPTOR: _wire(_messages(_requests)), Role.REQUESTOR: _wire(_messages(_responses))}


def _local_accept(engine: Engine, data) -> list:
    response = accept_all(engine.request or REQUEST)
    response.called_ae_title, response.calling_ae_title = "ANY-SCP", "TEST-SCU"  # ours to choose
    return engine.accept(response)


def _local_send(engine: Engine, data) -> list:
    contexts = sorted(engine.accepted_context_ids) or [1]
    context = data.draw(st.sampled_from(contexts))
    if engine.role is Role.ACCEPTOR:
        return engine.send_message(context, dimse.CEchoRSP(data.draw(st.integers(0, 0xFFFF))))
    payload = data.draw(st.binary(max_size=2000))
    return engine.send_message(context, dimse.CStoreRQ(1, CT, "1.2.3.4"), payload)


LOCAL = {
    "request_association": lambda engine, data: engine.request_association(
        associate_rq(CONTEXTS, data.draw(st.sampled_from([0, 4096, 16384])))
    ),
    "accept": _local_accept,
    "reject": lambda engine, data: engine.reject(*data.draw(st.sampled_from([(1, 1, 1), (2, 3, 2), (1, 2, 2)]))),
    "send_message": _local_send,
    "release": lambda engine, data: engine.release(),
    "release_response": lambda engine, data: engine.release_response(),
    "abort": lambda engine, data: engine.abort(data.draw(st.integers(0, 6))),
}
_LOCAL_EVENT = {  # the PS3.8 event each local request is
    "request_association": "Evt1",
    "accept": "Evt7",
    "reject": "Evt8",
    "send_message": "Evt9",
    "release": "Evt11",
    "release_response": "Evt14",
    "abort": "Evt15",
}
DRIVER = {
    "connection_made": lambda engine, data: engine.connection_made(),
    "connection_lost": lambda engine, data: engine.connection_lost(),
    "timer_expired": lambda engine, data: engine.timer_expired(),
}


def _receive(engine: Engine, data) -> int:
    """Feed the engine bytes as reads of one size; how many."""
    wire = data.draw(WIRE[engine.role])
    step = data.draw(st.sampled_from([1, 7, 64, 4096, 1 << 20]))
    for start in range(0, len(wire), step):
        engine.receive_data(memoryview(wire)[start : start + step])
    return len(wire)


def _feed(engine: Engine, wire: bytes) -> int:
    engine.receive_data(memoryview(wire))
    return len(wire)


def _advance(engine: Engine, data) -> tuple[list, int]:
    """The step a well-behaved peer and driver would take next: (buffers written, bytes fed).

    Without it a random walk seldom gets past association; with it, every
    state is reached and the random steps land in all of them.
    """
    state = engine.state
    if state == "Sta13":  # the peer closes after an abort or a release: start over
        engine.connection_lost()
        return [], 0
    if engine.role is Role.ACCEPTOR:
        if state == "Sta1":
            engine.connection_made()
        elif state == "Sta2":
            return [], _feed(engine, REQUEST_BYTES)
        elif state == "Sta3":
            return _local_accept(engine, data), 0
        elif state == "Sta6":
            wire = data.draw(st.one_of(_messages(_requests), st.just(RELEASE_RQ_BYTES)))
            return [], _feed(engine, wire)
        elif state == "Sta8":
            return engine.release_response(), 0
        return [], _receive(engine, data)
    if state == "Sta1":
        LOCAL["request_association"](engine, data)
    elif state == "Sta4":
        engine.connection_made()
    elif state == "Sta5":
        return [], _feed(engine, ACCEPT_BYTES)
    elif state == "Sta6":
        step = data.draw(st.sampled_from(["send", "send", "receive", "release"]))
        if step == "send":
            return _local_send(engine, data), 0
        if step == "release":
            return engine.release(), 0
        return [], _feed(engine, data.draw(_messages(_responses)))
    elif state == "Sta7":
        return [], _feed(engine, data.draw(st.sampled_from([RELEASE_RP_BYTES, RELEASE_RQ_BYTES])))
    else:
        return [], _receive(engine, data)
    return [], 0


REQUEST_BYTES = pdu.encode_pdu(REQUEST)
ACCEPT_BYTES = pdu.encode_pdu(accept_all(REQUEST))
RELEASE_RQ_BYTES = pdu.encode_pdu(pdu.AReleaseRQ())
RELEASE_RP_BYTES = pdu.encode_pdu(pdu.AReleaseRP())
OPERATIONS = [*LOCAL, *DRIVER, *["receive"] * 4, *["advance"] * 12]


@settings(FUZZ, max_examples=2 * EXAMPLES)
@given(st.sampled_from(list(Role)), st.data())
def test_engine_takes_any_sequence_of_inputs(role, data):
    """Random driver events, local requests and received bytes, in any order, for either role.

    Received bytes never raise (the peer's errors become A-ABORTs); a local
    request the state forbids raises LocalProtocolError and changes nothing;
    everything the engine writes is a well-formed PDU; the reader stages no
    more than has arrived.
    """
    engine = Engine(role)
    written = PduReader()
    fed = 0
    with bounded():
        for _ in range(data.draw(st.integers(1, 30), label="steps")):
            operation = data.draw(st.sampled_from(OPERATIONS), label="operation")
            state = engine.state
            buffers: list = []
            if operation in LOCAL:
                try:
                    buffers = LOCAL[operation](engine, data) or []
                except LocalProtocolError:
                    assert fsm.action_for(_LOCAL_EVENT[operation], state) is None
                    assert engine.state == state and not engine.has_output
                    continue
            elif operation in DRIVER:
                DRIVER[operation](engine, data)
            elif operation == "advance":
                buffers, n = _advance(engine, data)
                fed += n
            else:
                fed += _receive(engine, data)
            assert engine.state in fsm.STATES
            out = b"".join(bytes(b) for b in [*buffers, *engine.pop_output()])
            for item in written.feed(out):  # raises on anything malformed
                if item[0] == PDU and item[1].pdu_type == pdu.PduType.A_ASSOCIATE_RQ:
                    assert role is Role.REQUESTOR, "an acceptor sent an A-ASSOCIATE-RQ"
            assert len(engine._reader._staged) <= fed
    assert written.idle, "the engine left a PDU half-written"
