"""Whole PDU objects out of a byte stream, for those who only watch it (PDU events).

Built on the one streaming reader, :class:`hsscp.reader.PduReader`, fed the
same bytes the engine is (or the buffers it wrote). Unlike the engine's data
path this copies every PDV value, so that what an observer keeps outlives the
read buffer: a driver creates one only while a handler is bound.
"""

from __future__ import annotations

from collections.abc import Iterator

from hsscp.pdu import PDU, PDV_HEADER_LENGTH, PDataTF
from hsscp.pdu import PDV as PresentationDataValue
from hsscp.reader import PDATA, PDATA_WHOLE, PDV, PduReader

__all__ = ["PduObserver"]


class PduObserver:
    """Feed it bytes as they come; it yields each PDU once it is complete.

    Malformed input raises the reader's RemoteProtocolError; an observer
    that raised is left in an undefined state and should be dropped.
    """

    def __init__(self) -> None:
        self._reader = PduReader()
        self._pdvs: list[PresentationDataValue] = []
        self._value = bytearray()  # the current PDV's value so far
        self._pdata_left = 0  # bytes of the current P-DATA-TF not yet seen

    def feed(self, data) -> Iterator[PDU]:
        for item in self._reader.feed(data):
            kind = item[0]
            if kind == PDATA_WHOLE:
                _, context_id, control, value = item
                yield PDataTF([PresentationDataValue(context_id, control, bytes(value))])
            elif kind == PDATA:
                self._pdata_left = item[1]
            elif kind == PDV:
                pdata = self._pdv_piece(*item[1:])
                if pdata is not None:
                    yield pdata
            else:
                yield item[1]

    def _pdv_piece(self, context_id: int, control: int, chunk, pdv_end: bool) -> PDataTF | None:
        """Gather one piece of a PDV; the P-DATA-TF once its last PDV is whole."""
        self._value += chunk
        self._pdata_left -= len(chunk)
        if not pdv_end:
            return None
        self._pdvs.append(PresentationDataValue(context_id, control, bytes(self._value)))
        self._value.clear()
        self._pdata_left -= PDV_HEADER_LENGTH
        if self._pdata_left > 0:
            return None
        pdvs, self._pdvs = self._pdvs, []
        return PDataTF(pdvs)
