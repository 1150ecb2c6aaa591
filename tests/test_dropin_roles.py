"""SCP/SCU Role Selection as PS3.7 D.3.3.4 says: one item per SOP class, one of three role values.

The planner proposes several contexts per SOP class; a requestor proposing
roles must still send one Role Selection item for the class, and never one
proposing neither role (pynetdicom refuses to build that too).
"""

from __future__ import annotations

import pytest
from pynetdicom import AE as PynetdicomAE
from pynetdicom import build_role

import hsscp
from hsscp import evt
from hsscp.acse import LocalIdentity, build_request
from hsscp.presentation import build_context

from .dropin_peers import CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE, scp_ae
from .peers import HOST

IDENTITY = LocalIdentity("SCU", 16382, "1.2.3", "")


def _context(syntax: str, scu: bool | None, scp: bool | None):
    context = build_context(CT_IMAGE, syntax)
    context.scu_role, context.scp_role = scu, scp
    return context


def test_one_role_item_per_sop_class_whatever_the_number_of_its_contexts() -> None:
    request, _ = build_request(IDENTITY, "SCP", [_context(EXPLICIT_LE, True, True), _context(IMPLICIT_LE, True, True)])
    roles = request.user_information.role_selections
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in roles] == [(CT_IMAGE, 1, 1)]


@pytest.mark.parametrize(("scu", "scp"), [(False, False), (False, None)])
def test_a_proposal_of_neither_role_is_refused(scu, scp) -> None:
    with pytest.raises(ValueError, match="cannot both be unsupported"):
        build_request(IDENTITY, "SCP", [_context(EXPLICIT_LE, scu, scp)])


def test_contexts_of_one_class_proposing_different_roles_are_refused() -> None:
    with pytest.raises(ValueError, match="different SCP/SCU roles"):
        build_request(IDENTITY, "SCP", [_context(EXPLICIT_LE, True, False), _context(IMPLICIT_LE, False, True)])


def test_both_contexts_of_a_class_get_the_roles_a_pynetdicom_acceptor_grants() -> None:
    sent = []
    ae = scp_ae(PynetdicomAE)
    ae.add_supported_context(CT_IMAGE, [EXPLICIT_LE, IMPLICIT_LE], scu_role=True, scp_role=True)
    server = ae.start_server((HOST, 0), block=False)
    try:
        scu = hsscp.AE()
        contexts = [build_context(CT_IMAGE, EXPLICIT_LE), build_context(CT_IMAGE, IMPLICIT_LE)]
        assoc = scu.associate(
            HOST, server.server_address[1], contexts=contexts, ext_neg=[build_role(CT_IMAGE, scu_role=True, scp_role=True)],
            evt_handlers=[(evt.EVT_PDU_SENT, lambda e: sent.append(e.pdu))],
        )
        assert assoc.is_established
        assert [(cx.as_scu, cx.as_scp) for cx in assoc.accepted_contexts] == [(True, True), (True, True)]
        assoc.release()
    finally:
        server.shutdown()
    assert len(sent[0].user_information.role_selections) == 1
