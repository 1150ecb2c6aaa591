"""Split a received byte stream into PDUs, streaming P-DATA-TF values as they arrive.

The reader never waits for a whole P-DATA-TF: each PDV's value is handed on
in pieces, as memoryviews into the very buffer that was fed, so the only
copy of dataset bytes is the one the consumer makes into its sink. Only the
6-byte headers are staged across reads, plus the (small) bodies of the other
PDU types. Nothing is allocated from a length field before the bytes that
length announces have actually arrived.
"""

from __future__ import annotations

from collections.abc import Iterator

from hsscp.errors import invalid
from hsscp.pdu import (
    PDATA_SINGLE_HEADER,
    PDU_HEADER,
    PDU_HEADER_LENGTH,
    PDV_HEADER,
    PDV_HEADER_LENGTH,
    PduType,
    check_header,
    decode_body,
)

# What ``PduReader.feed`` yields, as the first element of each tuple:
PDU = 0  # (PDU, pdu): a complete PDU other than P-DATA-TF
PDATA = 1  # (PDATA, length): a P-DATA-TF begins; its PDVs follow
PDV = 2  # (PDV, context_id, control, chunk, pdv_end): part of one PDV's value
# (PDATA_WHOLE, context_id, control, value): a P-DATA-TF of exactly one PDV,
# all of it in the bytes fed. The common case, read in one step.
PDATA_WHOLE = 3

# A-ASSOCIATE PDUs hold at most 128 contexts and 64 KiB items: 2 MiB is generous.
MAX_CONTROL_PDU_LENGTH = 2 * 1024 * 1024

_HEADER, _BODY, _PDV_HEADER, _PDV_DATA = range(4)
# Plain ints and a bound method: enum and attribute lookups cost on the hot path.
_P_DATA_TF = int(PduType.P_DATA_TF)
_PDATA_HEADER_SIZE = PDATA_SINGLE_HEADER.size
_unpack_pdata_header = PDATA_SINGLE_HEADER.unpack_from
_EMPTY = memoryview(b"")


class PduReader:
    """Incremental PDU splitter; ``max_pdata_length`` 0 means no limit."""

    def __init__(self, max_pdata_length: int = 0, max_control_length: int = MAX_CONTROL_PDU_LENGTH):
        self.max_pdata_length = max_pdata_length
        self.max_control_length = max_control_length
        self._phase = _HEADER
        self._staged = bytearray()  # a split header, or a control PDU's body so far
        self._pdu_type = 0
        self._body_length = 0
        self._pdu_left = 0  # P-DATA-TF bytes not yet read
        self._pdv_left = 0  # current PDV value bytes not yet read
        self._context_id = 0
        self._control = 0

    @property
    def idle(self) -> bool:
        """True between PDUs, with no partial PDU buffered."""
        return self._phase == _HEADER and not self._staged

    def feed(self, data) -> Iterator[tuple]:
        view = data if isinstance(data, memoryview) else memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            phase = self._phase
            if phase == _PDV_DATA:
                take = min(self._pdv_left, end - pos)
                self._pdv_left -= take
                self._pdu_left -= take
                done = self._pdv_left == 0
                if done:
                    self._phase = _PDV_HEADER if self._pdu_left else _HEADER
                yield PDV, self._context_id, self._control, view[pos : pos + take], done
                pos += take
            elif phase == _HEADER:
                if view[pos] == _P_DATA_TF and end - pos >= _PDATA_HEADER_SIZE and not self._staged:
                    _, length, pdv_length, context_id, control = _unpack_pdata_header(view, pos)
                    stop = pos + PDU_HEADER_LENGTH + length
                    if pdv_length + 4 == length and stop <= end and pdv_length >= 2 and (
                        not self.max_pdata_length or length <= self.max_pdata_length
                    ):
                        yield PDATA_WHOLE, context_id, control, view[pos + _PDATA_HEADER_SIZE : stop]
                        pos = stop
                        continue
                header, pos = self._gather(view, pos, PDU_HEADER_LENGTH)
                if header is not None:
                    yield from self._start_pdu(*PDU_HEADER.unpack_from(header))
                    if self._phase == _BODY:
                        pos = yield from self._control_body(view, pos)
            elif phase == _PDV_HEADER:
                header, pos = self._gather(view, pos, PDV_HEADER_LENGTH)
                if header is not None:
                    yield from self._start_pdv(*PDV_HEADER.unpack_from(header))
            else:
                pos = yield from self._control_body(view, pos)

    def _gather(self, view: memoryview, pos: int, size: int):
        """Return (header view or None if still incomplete, new position)."""
        staged = self._staged
        if not staged and len(view) - pos >= size:
            return view[pos : pos + size], pos + size
        take = min(size - len(staged), len(view) - pos)
        staged += view[pos : pos + take]
        if len(staged) < size:
            return None, pos + take
        self._staged = bytearray()
        return memoryview(staged), pos + take

    def _start_pdu(self, pdu_type: int, length: int) -> Iterator[tuple]:
        check_header(pdu_type, length)
        self._pdu_type = pdu_type
        if pdu_type == PduType.P_DATA_TF:
            if self.max_pdata_length and length > self.max_pdata_length:
                raise invalid(f"P-DATA-TF of {length} bytes exceeds the negotiated maximum {self.max_pdata_length}")
            if length < PDV_HEADER_LENGTH:
                raise invalid(f"P-DATA-TF of {length} bytes cannot hold a PDV")
            self._pdu_left = length
            self._phase = _PDV_HEADER
            yield PDATA, length
        else:
            if length > self.max_control_length:
                raise invalid(f"{PduType(pdu_type).name} of {length} bytes is larger than accepted")
            self._body_length = length
            self._phase = _BODY

    def _control_body(self, view: memoryview, pos: int):
        need = self._body_length - len(self._staged)
        if not self._staged and len(view) - pos >= need:
            body = view[pos : pos + need]  # whole body in this read: decode in place
        else:
            take = min(need, len(view) - pos)
            self._staged += view[pos : pos + take]
            if take < need:
                return pos + take
            body = memoryview(self._staged)
        self._staged = bytearray()
        self._phase = _HEADER
        yield PDU, decode_body(self._pdu_type, body)
        return pos + need

    def _start_pdv(self, length: int, context_id: int, control: int) -> Iterator[tuple]:
        if self._pdu_left < PDV_HEADER_LENGTH or length < 2 or length + 4 > self._pdu_left:
            raise invalid(f"PDV of {length} bytes does not fit its P-DATA-TF")
        self._pdu_left -= PDV_HEADER_LENGTH
        self._pdv_left = length - 2
        self._context_id = context_id
        self._control = control
        if self._pdv_left:
            self._phase = _PDV_DATA
        else:
            self._phase = _PDV_HEADER if self._pdu_left else _HEADER
            yield PDV, context_id, control, _EMPTY, True

