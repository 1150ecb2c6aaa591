"""DCMTK storescp's transfer syntax preferences (+x= +xe +xi ...) and promiscuous mode (-pm).

Without a preference flag hsscp takes the requestor's first proposed syntax; with one it
accepts only the flag's syntaxes and picks by their order, as DCMTK does. With ``-pm`` a
storage SOP class no supported context names is accepted and stored all the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hsscp import AE
from hsscp.cli import parse_storescp
from hsscp.part10 import read_file_meta
from hsscp.presentation import build_context

from .datagen import instance, write_instance, write_instances
from .hsscp_process import hsscp_storescp
from .peers import HOST

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
PRIVATE_CLASS = "1.2.826.0.1.3680043.10.543.900.1"  # no storage class of the standard


def test_a_preference_flag_orders_and_limits_what_the_ae_accepts() -> None:
    ae = parse_storescp(["+xi"]).application_entity()
    assert not ae.prefer_requestor_syntax
    ct = next(cx for cx in ae.supported_contexts if cx.abstract_syntax == CT)
    assert [str(ts) for ts in ct.transfer_syntax] == [ImplicitVRLittleEndian]
    default = parse_storescp([]).application_entity()
    assert default.prefer_requestor_syntax and default.promiscuous_syntaxes == []
    assert parse_storescp(["-pm"]).application_entity().promiscuous_syntaxes


def _store(port: int, paths: list[Path], syntaxes: list[str], abstract: str = CT) -> list[int]:
    ae = AE(ae_title="SCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate(HOST, port, contexts=[build_context(abstract, syntaxes)])
    try:
        assert assoc.is_established
        statuses = [assoc.send_c_store(str(path), msg_id=i).Status for i, path in enumerate(paths, 1)]
        assoc.release()
        return statuses
    finally:
        assoc.abort()


def _stored_syntaxes(out: Path) -> set[str]:
    syntaxes = set()
    for path in out.rglob("*.dcm"):
        with open(path, "rb") as stream:
            syntaxes.add(read_file_meta(stream).transfer_syntax)
    return syntaxes


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], ExplicitVRLittleEndian), (["+xi"], ImplicitVRLittleEndian), (["+xe"], ExplicitVRLittleEndian)],
    ids=["requestor-first", "implicit-only", "prefer-little"],
)
def test_the_accepted_syntax_follows_the_flag(tmp_path: Path, flags: list[str], expected: str) -> None:
    sources = write_instances(tmp_path / "src", 2)  # Explicit VR Little Endian files
    with hsscp_storescp(tmp_path / "out", *flags, workers=1, writers=1) as scp:
        # Proposed Explicit first: the default takes it; +xi accepts Implicit only, so the
        # SCU converts; +xe lists Explicit first.
        statuses = _store(scp.port, sources, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assert statuses == [0x0000, 0x0000]
    assert _stored_syntaxes(tmp_path / "out") == {expected}


def test_promiscuous_mode_stores_an_unknown_storage_class(tmp_path: Path) -> None:
    ds = instance(1)
    ds.SOPClassUID = PRIVATE_CLASS
    (tmp_path / "src").mkdir()
    sources = [write_instance(tmp_path / "src", ds)]
    with hsscp_storescp(tmp_path / "refused", workers=1, writers=1) as scp:
        ae = AE(ae_title="SCU")
        assoc = ae.associate(HOST, scp.port, contexts=[build_context(PRIVATE_CLASS, [ExplicitVRLittleEndian])])
        assert not assoc.is_established or not assoc.accepted_contexts
        assoc.abort()
    with hsscp_storescp(tmp_path / "out", "-pm", workers=1, writers=1) as scp:
        assert _store(scp.port, sources, [ExplicitVRLittleEndian], abstract=PRIVATE_CLASS) == [0x0000]
    (stored,) = (tmp_path / "out").rglob("*.dcm")
    assert stored.read_bytes().endswith(sources[0].read_bytes()[-1000:])
