"""Feed byte streams through the PDU reader the way a transport would."""

from __future__ import annotations

from hsscp import pdu
from hsscp.reader import PDATA, PDATA_WHOLE, PDU, PduReader


def pieces(data: bytes, size: int):
    """``data`` as consecutive memoryviews of ``size`` bytes (the last may be shorter)."""
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(view), size)]


def read_pdus(chunks, reader: PduReader | None = None) -> list:
    """Run chunks through a reader; rebuild each P-DATA-TF from its streamed PDV pieces."""
    reader = reader or PduReader()
    out: list = []
    current: list | None = None
    for chunk in chunks:
        for item in reader.feed(chunk):
            if item[0] == PDU:
                out.append(item[1])
            elif item[0] == PDATA:
                current = []
                out.append(current)
            elif item[0] == PDATA_WHOLE:
                _, context_id, control, data = item
                out.append([[context_id, control, bytearray(data), True]])
                current = None
            else:
                _, context_id, control, data, end = item
                if not current or current[-1][3]:
                    current.append([context_id, control, bytearray(), False])
                current[-1][2] += data  # copy: the view dies with the chunk
                current[-1][3] = end
    return [
        pdu.PDataTF([pdu.PDV(c, k, bytes(d)) for c, k, d, _ in x]) if isinstance(x, list) else x
        for x in out
    ]
