"""An hsscp SCP running in-process for tests, recording what its handlers receive."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom.data import get_testdata_file

from hsscp import AE, AllStoragePresentationContexts, VerificationPresentationContexts, evt
from hsscp.part10 import read_file_meta
from hsscp.uid import ALL_TRANSFER_SYNTAXES

# Files pydicom ships, covering several SOP classes and transfer syntaxes.
SAMPLE_FILES = [
    "CT_small.dcm",  # CT, explicit VR little endian
    "MR_small_implicit.dcm",  # MR, implicit VR little endian
    "MR_small_bigendian.dcm",  # MR, explicit VR big endian
    "image_dfl.dcm",  # secondary capture, deflated explicit VR little endian
    "JPEG2000.dcm",  # secondary capture, JPEG 2000
    "SC_rgb_rle.dcm",  # secondary capture, RLE lossless
    "rtplan.dcm",  # RT plan, implicit VR little endian
]


def sample_path(name: str) -> str:
    return get_testdata_file(name)


def dataset_bytes(path: str) -> tuple[str, bytes]:
    """(SOP instance UID, the dataset bytes after the file meta) of a Part 10 file."""
    with open(path, "rb") as fp:
        meta = read_file_meta(fp)
        return meta.sop_instance_uid, fp.read()


@dataclass
class Received:
    stores: list[tuple[str, bytes]] = field(default_factory=list)  # (SOP instance UID, dataset bytes)
    echoes: int = 0
    status: int = 0x0000

    def on_store(self, event) -> int:
        self.stores.append((event.request.affected_sop_instance_uid, event.encoded_dataset(include_meta=False)))
        return self.status

    def on_echo(self, event) -> int:
        self.echoes += 1
        return 0x0000


def storage_ae(ae_title: str = "HSSCP") -> AE:
    """An AE accepting Verification and every storage class in every transfer syntax."""
    ae = AE(ae_title)
    for context in [*VerificationPresentationContexts, *AllStoragePresentationContexts]:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    return ae


@contextlib.contextmanager
def running_scp(ae: AE | None = None, ssl_context=None) -> Iterator[tuple[AE, int, Received]]:
    ae = ae or storage_ae()
    received = Received()
    handlers = [(evt.EVT_C_STORE, received.on_store), (evt.EVT_C_ECHO, received.on_echo)]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    try:
        yield ae, server.server_address[1], received
    finally:
        ae.shutdown()


def datasets_sent(pdus: list[tuple[str, bytes]], direction: str = "rq") -> list[bytes]:
    """The data sets a recorded conversation carried from one side, rebuilt from its P-DATA-TFs.

    The oracle for "stored as sent": peers may re-encode a file (DCMTK drops
    trailing padding, for one), so compare with the wire, not the file.
    """
    from hsscp import pdu

    datasets, current = [], bytearray()
    for sender, data in pdus:
        if sender != direction or data[0] != pdu.PduType.P_DATA_TF:
            continue
        for pdv in pdu.decode_pdu(data).pdvs:
            if not pdv.is_command:
                current += pdv.data
                if pdv.is_last:
                    datasets.append(bytes(current))
                    current = bytearray()
    return datasets
