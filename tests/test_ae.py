"""ApplicationEntity: defaults, validation, presentation contexts, delegation, registry."""

from __future__ import annotations

import logging
import subprocess
import sys
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

import hsscp
from hsscp import AE, ApplicationEntity, build_context
from hsscp.acse import AcceptorPolicy, LocalIdentity
from hsscp.presentation import (
    StoragePresentationContexts,
    VerificationPresentationContexts,
)
from hsscp.sop_class import CTImageStorage, MRImageStorage, Verification, VerificationSOPClass
from hsscp.uid import (
    DEFAULT_TRANSFER_SYNTAXES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
)

IMPLICIT, EXPLICIT, BIG = ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian
TOO_MANY = (
    "Failed to add the requested presentation context as there "
    "are already the maximum allowed number of requested contexts"
)
INVALID_TITLES = ["", "    ", "A" * 17, "AB\\CD", "AB\nCD", "\n", b"", b"    ", b"A" * 17, b"AB\\C", b"\xe9T\xe9"]


def snapshot(contexts: list) -> list:
    return [(cx.abstract_syntax, list(cx.transfer_syntax), cx.scu_role, cx.scp_role) for cx in contexts]


# -- defaults ------------------------------------------------------------------------------


def test_defaults() -> None:
    ae = AE()
    assert ae.ae_title == b"HSSCP           "
    assert ae.acse_timeout == 30
    assert ae.dimse_timeout == 30
    assert ae.network_timeout == 60
    assert ae.maximum_associations == 10
    assert ae.maximum_pdu_size == 16382
    assert ae.require_calling_aet == []
    assert ae.require_called_aet is False
    assert ae.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert ae.implementation_version_name == IMPLEMENTATION_VERSION_NAME
    assert ae.requested_contexts == []
    assert ae.supported_contexts == []
    assert ae.active_associations == []


def test_ae_is_application_entity() -> None:
    assert AE is ApplicationEntity


# -- AE title ---------------------------------------------------------------------------------


def test_ae_title_bytes_read_back_padded_to_16() -> None:
    ae = AE(b"STORESCP")
    assert ae.ae_title == b"STORESCP        "
    assert len(ae.ae_title) == 16
    assert ae._ae_title_str == "STORESCP"


def test_ae_title_str_reads_back_as_str() -> None:
    ae = AE("STORESCP")
    assert ae.ae_title == "STORESCP"
    ae.ae_title = "  PADDED  "
    assert ae.ae_title == "PADDED" and ae._ae_title_str == "PADDED"
    ae.ae_title = b"BYTES"
    assert ae.ae_title == b"BYTES           "


def test_ae_title_sixteen_characters() -> None:
    assert AE("A" * 16).ae_title == "A" * 16
    assert AE(b"A" * 16).ae_title == b"A" * 16


@pytest.mark.parametrize("title", INVALID_TITLES)
def test_invalid_ae_title(title: str | bytes) -> None:
    with pytest.raises(ValueError):
        AE(title)
    ae = AE("KEEP")
    with pytest.raises(ValueError):
        ae.ae_title = title
    assert ae.ae_title == "KEEP"


@pytest.mark.parametrize("title", [None, 5, ["AE"]])
def test_ae_title_type(title: object) -> None:
    with pytest.raises(TypeError):
        AE(title)  # type: ignore[arg-type]


# -- timeouts and limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "default"), [("acse_timeout", 30), ("dimse_timeout", 30), ("network_timeout", 60)]
)
def test_timeouts(name: str, default: int, caplog: pytest.LogCaptureFixture) -> None:
    ae = AE()
    for value in (None, 0, 5, 2.5):
        setattr(ae, name, value)
        assert getattr(ae, name) == value
    for bad in (-1, -0.5, "10", True, [1]):
        setattr(ae, name, 99)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hsscp.ae"):
            setattr(ae, name, bad)
        assert getattr(ae, name) == default  # pynetdicom: warn and use the default
        assert name in caplog.text


def test_timeouts_reach_live_associations() -> None:
    ae = AE()
    assoc = SimpleNamespace(acse_timeout=30, dimse_timeout=30, network_timeout=60)
    ae._register(assoc)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 1, 2, None
    assert (assoc.acse_timeout, assoc.dimse_timeout, assoc.network_timeout) == (1, 2, None)
    ae._register(object())  # one without timeouts is left alone
    ae.acse_timeout = 3


def test_maximum_associations(caplog: pytest.LogCaptureFixture) -> None:
    ae = AE()
    ae.maximum_associations = 50
    assert ae.maximum_associations == 50
    for bad in (0, -3, "5", 2.5, True):
        ae.maximum_associations = 50
        with caplog.at_level(logging.WARNING, logger="hsscp.ae"):
            ae.maximum_associations = bad
        assert ae.maximum_associations == 1
    assert "maximum_associations" in caplog.text


def test_maximum_pdu_size(caplog: pytest.LogCaptureFixture) -> None:
    ae = AE()
    for value in (0, 1, 8, 65536, 2**32 - 1):
        ae.maximum_pdu_size = value
        assert ae.maximum_pdu_size == value
    for bad in (-1, 2**32, "16382", 1.5, None, False):
        ae.maximum_pdu_size = 0
        with caplog.at_level(logging.WARNING, logger="hsscp.ae"):
            ae.maximum_pdu_size = bad
        assert ae.maximum_pdu_size == 16382
    assert "maximum_pdu_size" in caplog.text


# -- acceptor checks ----------------------------------------------------------------------------


def test_require_called_aet() -> None:
    ae = AE()
    ae.require_called_aet = True
    assert ae.require_called_aet is True
    ae.require_called_aet = False
    assert ae.require_called_aet is False
    for bad in (1, "True", None):
        with pytest.raises(TypeError, match="require_called_aet"):
            ae.require_called_aet = bad


def test_require_calling_aet_keeps_each_form() -> None:
    ae = AE()
    ae.require_calling_aet = [b"MODALITY", "  WORKSTATION ", b"A" * 16]
    assert ae.require_calling_aet == [b"MODALITY        ", "WORKSTATION", b"A" * 16]
    assert ae._require_calling_aet_str == ["MODALITY", "WORKSTATION", "A" * 16]
    ae.require_calling_aet = []
    assert ae.require_calling_aet == []


def test_require_calling_aet_accepts_any_iterable() -> None:
    ae = AE()
    ae.require_calling_aet = ("ONE", "TWO")
    assert ae.require_calling_aet == ["ONE", "TWO"]


def test_require_calling_aet_returns_a_copy() -> None:
    ae = AE()
    ae.require_calling_aet = ["ONE"]
    ae.require_calling_aet.append("bad\\title")
    assert ae.require_calling_aet == ["ONE"]


@pytest.mark.parametrize("title", INVALID_TITLES)
def test_invalid_require_calling_aet(title: str | bytes) -> None:
    ae = AE()
    ae.require_calling_aet = ["KEEP"]
    with pytest.raises(ValueError):
        ae.require_calling_aet = ["GOOD", title]
    assert ae.require_calling_aet == ["KEEP"]


@pytest.mark.parametrize("value", ["MODALITY", b"MODALITY", None, 5])
def test_require_calling_aet_must_be_a_list(value: object) -> None:
    with pytest.raises(TypeError, match="list"):
        AE().require_calling_aet = value  # type: ignore[assignment]


# -- implementation identity ------------------------------------------------------------------------


def test_implementation_class_uid() -> None:
    ae = AE()
    ae.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.2"
    assert ae.implementation_class_uid == "1.2.826.0.1.3680043.9.3811.2"
    assert ae.implementation_class_uid.name  # a pydicom UID


@pytest.mark.parametrize("uid", ["", "abc", "1.02.3", "1..2", "1.2.", "1." * 32 + "1", "1.2\0x"])
def test_invalid_implementation_class_uid(uid: str) -> None:
    ae = AE()
    with pytest.raises(ValueError, match="Invalid 'implementation_class_uid' value"):
        ae.implementation_class_uid = uid
    assert ae.implementation_class_uid == IMPLEMENTATION_CLASS_UID


def test_implementation_class_uid_type() -> None:
    with pytest.raises(TypeError):
        AE().implementation_class_uid = 1.2  # type: ignore[assignment]


@pytest.mark.parametrize("name", ["MY_SCP_1", b"MY_SCP_1", "A" * 16, None])
def test_implementation_version_name_reads_back_as_set(name: str | bytes | None) -> None:
    ae = AE()
    ae.implementation_version_name = name
    assert ae.implementation_version_name == name
    expected = "" if name is None else (name.decode() if isinstance(name, bytes) else name)
    assert ae._implementation_version_name_str == expected


@pytest.mark.parametrize("name", ["", "  ", "A" * 17, "A\\B", "A\nB", b"", b"\xffAB", b"A" * 17])
def test_invalid_implementation_version_name(name: str | bytes) -> None:
    ae = AE()
    with pytest.raises(ValueError, match="implementation_version_name"):
        ae.implementation_version_name = name
    assert ae.implementation_version_name == IMPLEMENTATION_VERSION_NAME


def test_implementation_version_name_type() -> None:
    with pytest.raises(TypeError):
        AE().implementation_version_name = 5  # type: ignore[assignment]


def test_local_identity_and_acceptor_policy() -> None:
    ae = AE(b"SCP")
    ae.maximum_pdu_size = 0
    ae.require_calling_aet = [b"SCU"]
    ae.require_called_aet = True
    ae.implementation_version_name = None
    ae.add_supported_context(Verification)
    assert ae._local_identity() == LocalIdentity("SCP", 0, IMPLEMENTATION_CLASS_UID, "")
    assert ae._local_identity(b"OTHER ").ae_title == "OTHER"
    policy = ae._acceptor_policy()
    assert isinstance(policy, AcceptorPolicy)
    assert policy.require_calling_aet == ["SCU"] and policy.require_called_aet
    assert snapshot(policy.supported_contexts) == snapshot(ae.supported_contexts)
    assert ae._acceptor_policy(contexts=[build_context(CTImageStorage)]).supported_contexts[0].abstract_syntax == CTImageStorage


# -- requested contexts -------------------------------------------------------------------------------


def test_add_requested_context_defaults() -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    (context,) = ae.requested_contexts
    assert context.abstract_syntax == "1.2.840.10008.1.1"
    assert context.transfer_syntax == DEFAULT_TRANSFER_SYNTAXES
    assert context.context_id is None


def test_add_requested_context_forms() -> None:
    ae = AE()
    ae.add_requested_context("1.2.840.10008.1.1", IMPLICIT)
    ae.add_requested_context(VerificationSOPClass, [IMPLICIT, BIG])
    ae.add_requested_context(Verification, (EXPLICIT,))
    assert [cx.transfer_syntax for cx in ae.requested_contexts] == [[IMPLICIT], [IMPLICIT, BIG], [EXPLICIT]]


def test_at_most_128_requested_contexts() -> None:
    ae = AE()
    for _ in range(128):
        ae.add_requested_context(Verification)
    with pytest.raises(ValueError) as raised:
        ae.add_requested_context(Verification)
    assert str(raised.value) == TOO_MANY
    assert len(ae.requested_contexts) == 128


def test_set_requested_contexts_copies() -> None:
    before = snapshot(VerificationPresentationContexts)
    ae = AE()
    ae.requested_contexts = VerificationPresentationContexts
    assert snapshot(ae.requested_contexts) == before
    assert ae.requested_contexts[0] is not VerificationPresentationContexts[0]
    ae.remove_requested_context(Verification, IMPLICIT)
    ae.requested_contexts[0].transfer_syntax = [BIG]
    assert snapshot(VerificationPresentationContexts) == before


def test_set_requested_contexts_adds_like_pynetdicom() -> None:
    ae = AE()
    ae.requested_contexts = VerificationPresentationContexts
    ae.requested_contexts = StoragePresentationContexts
    assert len(ae.requested_contexts) == 121
    ae.requested_contexts = []
    assert ae.requested_contexts == []


def test_set_requested_contexts_keeps_roles() -> None:
    context = build_context(CTImageStorage)
    context.scu_role, context.scp_role = False, True
    ae = AE()
    ae.requested_contexts = [context]
    assert (ae.requested_contexts[0].scu_role, ae.requested_contexts[0].scp_role) == (False, True)


def test_set_requested_contexts_limits() -> None:
    ae = AE()
    with pytest.raises(ValueError, match="maximum allowed number of requested presentation contexts is 128"):
        ae.requested_contexts = [build_context(Verification)] * 129
    ae.requested_contexts = StoragePresentationContexts
    with pytest.raises(ValueError, match="already the maximum allowed number"):
        ae.requested_contexts = [build_context(Verification)] * 9
    assert len(ae.requested_contexts) == 120  # nothing added on failure
    ae.requested_contexts = [build_context(Verification)] * 8
    assert len(ae.requested_contexts) == 128


@pytest.mark.parametrize("bad", [["1.2.840.10008.1.1"], [build_context(Verification), None], build_context(Verification)])
def test_set_requested_contexts_needs_contexts(bad: Any) -> None:
    ae = AE()
    with pytest.raises(ValueError, match="list of PresentationContext items"):
        ae.requested_contexts = bad
    assert ae.requested_contexts == []


def test_remove_requested_context_all_with_the_abstract_syntax() -> None:
    ae = AE()
    ae.add_requested_context(Verification, IMPLICIT)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification, EXPLICIT)
    ae.remove_requested_context("1.2.840.10008.1.1")
    assert [cx.abstract_syntax for cx in ae.requested_contexts] == [CTImageStorage]
    ae.remove_requested_context(MRImageStorage)  # not requested: nothing happens
    assert len(ae.requested_contexts) == 1


def test_remove_requested_transfer_syntaxes() -> None:
    ae = AE()
    ae.add_requested_context(Verification, IMPLICIT)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, IMPLICIT)
    ae.remove_requested_context(Verification, IMPLICIT)
    # The context left with none goes; the other keeps the rest; CT is untouched.
    assert snapshot(ae.requested_contexts) == [
        (Verification, [EXPLICIT, BIG], None, None),
        (CTImageStorage, [IMPLICIT], None, None),
    ]
    ae.remove_requested_context(Verification, [EXPLICIT, BIG, "1.2.840.10008.1.2.4.50"])
    assert [cx.abstract_syntax for cx in ae.requested_contexts] == [CTImageStorage]


def test_requested_contexts_list_stays_live() -> None:
    ae = AE()
    contexts = ae.requested_contexts
    ae.add_requested_context(Verification)
    ae.remove_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assert contexts is ae.requested_contexts and len(contexts) == 1


# -- supported contexts ---------------------------------------------------------------------------------


def test_add_supported_context_merges_transfer_syntaxes() -> None:
    ae = AE()
    ae.add_supported_context(Verification, [IMPLICIT, BIG])
    ae.add_supported_context("1.2.840.10008.1.1", EXPLICIT)
    ae.add_supported_context(Verification, IMPLICIT)
    (context,) = ae.supported_contexts
    assert context.transfer_syntax == [IMPLICIT, BIG, EXPLICIT]


def test_supported_contexts_ordered_by_abstract_syntax() -> None:
    ae = AE()
    for uid in (MRImageStorage, Verification, CTImageStorage):
        ae.add_supported_context(uid)
    assert [cx.abstract_syntax for cx in ae.supported_contexts] == sorted([MRImageStorage, Verification, CTImageStorage])


def test_add_supported_context_roles() -> None:
    ae = AE()
    ae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
    (context,) = ae.supported_contexts
    assert (context.scu_role, context.scp_role) == (True, True)
    ae.add_supported_context(CTImageStorage, EXPLICIT)
    assert (context.scu_role, context.scp_role) == (None, None)  # replaced, as in pynetdicom
    with pytest.raises(TypeError, match="scu_role"):
        ae.add_supported_context(CTImageStorage, scu_role=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scp_role"):
        ae.add_supported_context(CTImageStorage, scp_role="yes")  # type: ignore[arg-type]


def test_set_supported_contexts_copies_and_merges() -> None:
    before = snapshot(VerificationPresentationContexts)
    ae = AE()
    ae.supported_contexts = VerificationPresentationContexts
    ae.remove_supported_context(Verification, [IMPLICIT, EXPLICIT])
    assert snapshot(ae.supported_contexts) == [(Verification, [BIG], None, None)]
    assert snapshot(VerificationPresentationContexts) == before
    ae.supported_contexts = StoragePresentationContexts
    assert len(ae.supported_contexts) == 121
    assert ae.supported_contexts[0] is not StoragePresentationContexts[0]
    ae.supported_contexts = []
    assert ae.supported_contexts == []


def test_set_supported_contexts_keeps_roles() -> None:
    context = build_context(CTImageStorage)
    context.scu_role, context.scp_role = True, False
    ae = AE()
    ae.supported_contexts = [context]
    assert (ae.supported_contexts[0].scu_role, ae.supported_contexts[0].scp_role) == (True, False)


def test_set_supported_contexts_needs_contexts() -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    with pytest.raises(ValueError, match="list of PresentationContext items"):
        ae.supported_contexts = [build_context(CTImageStorage), "1.2.3"]
    assert [cx.abstract_syntax for cx in ae.supported_contexts] == [Verification]


def test_remove_supported_context() -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, [IMPLICIT, EXPLICIT])
    ae.remove_supported_context(CTImageStorage, IMPLICIT)
    ae.remove_supported_context(Verification)
    assert snapshot(ae.supported_contexts) == [(CTImageStorage, [EXPLICIT], None, None)]
    ae.remove_supported_context(CTImageStorage, [EXPLICIT, BIG])
    assert ae.supported_contexts == []
    ae.remove_supported_context(MRImageStorage)  # not supported: nothing to do


# -- associate / servers / registry -----------------------------------------------------------------------


@pytest.fixture
def fake_association(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    module = ModuleType("hsscp.association")

    def open_association(ae: AE, addr: Any, port: int, **kwargs: Any) -> str:
        calls.append((ae, addr, port, kwargs))
        return "assoc"

    module.open_association = open_association  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hsscp.association", module)
    return calls


def test_associate_without_contexts(fake_association: list) -> None:
    with pytest.raises(RuntimeError, match="At least one requested presentation context"):
        AE().associate("127.0.0.1", 11112)
    with pytest.raises(RuntimeError):
        AE().associate("127.0.0.1", 11112, contexts=[])
    assert fake_association == []


def test_associate_delegates(fake_association: list) -> None:
    ae = AE()
    ae.add_requested_context(Verification)

    def handler(event: Any) -> None:
        pass

    handlers = [(hsscp.evt.EVT_CONN_OPEN, handler)]
    assert ae.associate("127.0.0.1", 104, ae_title="PACS", evt_handlers=handlers) == "assoc"
    ((called_ae, addr, port, kwargs),) = fake_association
    assert (called_ae, addr, port) == (ae, "127.0.0.1", 104)
    assert snapshot(kwargs.pop("contexts")) == snapshot(ae.requested_contexts)
    assert kwargs == {
        "ae_title": "PACS",
        "max_pdu": 16382,
        "ext_neg": None,
        "bind_address": ("", 0),
        "tls_args": None,
        "evt_handlers": handlers,
    }


def test_associate_with_given_contexts(fake_association: list) -> None:
    contexts = [build_context(CTImageStorage)]
    AE().associate("::1", 104, contexts=contexts, ae_title=b"ANY-SCP", max_pdu=0)
    kwargs = fake_association[0][3]
    assert kwargs["contexts"] == contexts and kwargs["max_pdu"] == 0 and kwargs["ae_title"] == b"ANY-SCP"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"addr": 127, "port": 104}, TypeError),
        ({"addr": ("::1", 0), "port": 104}, TypeError),
        ({"addr": "h", "port": "104"}, TypeError),
        ({"addr": "h", "port": 104, "ae_title": "BAD\\AE"}, ValueError),
        ({"addr": "h", "port": 104, "ae_title": ""}, ValueError),
        ({"addr": "h", "port": 104, "contexts": ["1.2.3"]}, ValueError),
        ({"addr": "h", "port": 104, "contexts": [build_context(Verification)] * 129}, ValueError),
        ({"addr": "h", "port": 104, "evt_handlers": [(1, print)]}, TypeError),
    ],
)
def test_associate_validates_before_connecting(kwargs: dict, error: type, fake_association: list) -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    with pytest.raises(error):
        ae.associate(**kwargs)
    assert fake_association == []


def test_associate_accepts_an_ipv6_address_tuple(fake_association: list) -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    ae.associate(("fe80::1", 0, 2), 104)
    assert fake_association[0][1] == ("fe80::1", 0, 2)


class FakeServer:
    def __init__(self, ae: AE, address: Any, **kwargs: Any) -> None:
        self.ae, self.address, self.kwargs = ae, address, kwargs
        self.calls: list[str] = []
        self.interrupt = False

    def start(self) -> None:
        self.calls.append("start")

    def serve_forever(self) -> None:
        self.calls.append("serve_forever")
        assert self in self.ae._servers
        if self.interrupt:
            raise KeyboardInterrupt

    def shutdown(self) -> None:
        self.calls.append("shutdown")


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list:
    made: list[FakeServer] = []
    module = ModuleType("hsscp.server")

    def make_server(ae: AE, address: Any, **kwargs: Any) -> FakeServer:
        made.append(FakeServer(ae, address, **kwargs))
        if kwargs.get("interrupt"):
            made[-1].interrupt = True
        return made[-1]

    module.make_server = make_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hsscp.server", module)
    return made


def test_make_server_delegates_with_resolved_settings(fake_server: list) -> None:
    ae = AE(b"STORESCP")
    ae.add_supported_context(CTImageStorage)
    server = ae.make_server(("", 11112), extra=1)
    assert server.address == ("", 11112)
    kwargs = server.kwargs
    assert kwargs["ae_title"] == "STORESCP"
    assert snapshot(kwargs["contexts"]) == snapshot(ae.supported_contexts)
    assert (kwargs["ssl_context"], kwargs["evt_handlers"], kwargs["server_class"]) == (None, [], None)
    assert kwargs["extra"] == 1
    assert ae._servers == []  # make_server only builds


def test_make_server_with_own_title_and_contexts(fake_server: list) -> None:
    contexts = [build_context(Verification)]
    server = AE().make_server(("", 0), ae_title=b"OTHER", contexts=contexts, server_class=dict)
    assert server.kwargs["ae_title"] == "OTHER"
    assert server.kwargs["contexts"] == contexts and server.kwargs["server_class"] is dict


def test_make_server_needs_contexts(fake_server: list) -> None:
    with pytest.raises(ValueError, match="No supported Presentation Contexts"):
        AE().make_server(("", 0))


def test_make_server_rejects_half_set_roles(fake_server: list) -> None:
    ae = AE()
    context = build_context(CTImageStorage)
    context.scu_role = True
    with pytest.raises(ValueError, match="inconsistent scu_role/scp_role"):
        ae.make_server(("", 0), contexts=[context])
    with pytest.raises(ValueError):
        ae.make_server(("", 0), ae_title="BAD\\", contexts=[build_context(CTImageStorage)])
    assert fake_server == []


def test_start_server_non_blocking(fake_server: list) -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    server = ae.start_server(("", 0), block=False, ae_title="SCP")
    assert server.calls == ["start"] and ae._servers == [server]
    assert server.kwargs["ae_title"] == "SCP"
    ae.shutdown()
    assert server.calls == ["start", "shutdown"] and ae._servers == []


def test_start_server_blocking(fake_server: list) -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    assert ae.start_server(("", 0)) is None
    assert fake_server[0].calls == ["serve_forever"] and ae._servers == []


def test_start_server_interrupted(fake_server: list) -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    assert ae.start_server(("", 0), interrupt=True) is None
    assert fake_server[0].calls == ["serve_forever", "shutdown"] and ae._servers == []


class FakeAssociation:
    def __init__(self, ae: AE, fail: bool = False) -> None:
        self.ae, self.fail, self.aborted = ae, fail, 0
        self.remote = {"ae_title": "PEER", "address": "10.0.0.1", "port": 104}

    def abort(self) -> None:
        self.aborted += 1
        self.ae._unregister(self)
        if self.fail:
            raise OSError("already gone")


def test_registry() -> None:
    ae = AE()
    first, second = FakeAssociation(ae), FakeAssociation(ae)
    ae._register(first)
    ae._register(second)
    ae._register(first)
    assert ae.active_associations == [first, second]
    ae.active_associations.clear()  # a copy
    ae._unregister(first)
    ae._unregister(first)
    assert ae.active_associations == [second]


def test_shutdown_aborts_associations_after_servers(fake_server: list) -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    server = ae.start_server(("", 0), block=False)
    failing, fine = FakeAssociation(ae, fail=True), FakeAssociation(ae)
    ae._register(failing)
    ae._register(fine)
    ae.shutdown()
    assert server.calls[-1] == "shutdown"
    assert (failing.aborted, fine.aborted) == (1, 1)  # one failure does not stop the rest
    assert ae.active_associations == []


def test_str_summarises_the_ae() -> None:
    ae = AE("SUMMARY")
    ae.add_requested_context(Verification, IMPLICIT)
    ae.require_calling_aet = [b"SCU"]
    ae._register(FakeAssociation(ae))
    text = str(ae)
    assert "Application Entity SUMMARY" in text
    assert "\tVerification SOP Class\n\t\tImplicit VR Little Endian" in text
    assert "Supported Presentation Contexts:\n\tNone" in text
    assert "ACSE timeout: 30 s" in text and "Network timeout: 60 s" in text
    assert "Required calling AE title(s): SCU" in text
    assert "Association(s): 1/10" in text and "Peer: PEER on 10.0.0.1:104" in text


# -- the package ---------------------------------------------------------------------------------------------


def test_package_exports() -> None:
    assert set(hsscp.__all__) == {
        "AE", "AllStoragePresentationContexts", "ApplicationEntity", "PresentationContext",
        "StoragePresentationContexts", "VerificationPresentationContexts", "__version__",
        "build_context", "debug_logger", "evt", "sop_class",
        "ALL_TRANSFER_SYNTAXES", "DEFAULT_TRANSFER_SYNTAXES", "build_role", "register_uid", "service_class",
        "status",
    }
    assert hsscp.__version__ == "0.1.0"
    assert hsscp.evt.EVT_C_STORE.name == "EVT_C_STORE"
    assert hsscp.sop_class.CTImageStorage == "1.2.840.10008.5.1.4.1.1.2"
    assert hsscp.VerificationPresentationContexts is VerificationPresentationContexts


def test_import_is_light() -> None:
    code = "import sys, hsscp; print(sorted(m for m in sys.modules if m.split('.')[0] in ('uvloop', 'pynetdicom', 'asyncio')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_debug_logger() -> None:
    logger = logging.getLogger("hsscp")
    saved = logger.handlers[:], logger.level
    try:
        hsscp.debug_logger()
        hsscp.debug_logger()
        streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        assert len(streams) == 1 and logger.level == logging.DEBUG
    finally:
        logger.handlers = saved[0]
        logger.setLevel(saved[1])
